-- Delivery that can be audited and replayed: one row per attempt, a second signing
-- secret during rotation, a per-subscription rate, and the bookkeeping that disables a
-- subscription failing for too long.

ALTER TABLE ckan_webhooks.subscription
    -- The secret before the last rotation, still used to sign until the given time.
    ADD COLUMN previous_secret text,
    ADD COLUMN previous_secret_until timestamptz,
    -- Requests per second to this subscription's destination; null: the service default.
    ADD COLUMN rate_per_second integer CHECK (rate_per_second > 0),
    -- Since when every attempt has failed; null after a success.
    ADD COLUMN failing_since timestamptz,
    -- When and why the subscription was disabled (410, or failing too long).
    ADD COLUMN disabled_at timestamptz,
    ADD COLUMN disabled_reason text;

-- One row per attempt, kept for `webhook_deliveries`.
CREATE TABLE ckan_webhooks.attempt (
    id bigserial PRIMARY KEY,
    delivery_id text NOT NULL REFERENCES ckan_webhooks.delivery (id) ON DELETE CASCADE,
    subscription_id text NOT NULL,
    attempt integer NOT NULL,
    attempted_at timestamptz NOT NULL DEFAULT now(),
    -- The HTTP status, or null when no response came.
    status integer,
    latency_ms integer,
    error text,
    -- The first bytes of the response body.
    response_head text
);

CREATE INDEX attempt_subscription_idx
    ON ckan_webhooks.attempt (subscription_id, attempted_at DESC, id DESC);
CREATE INDEX attempt_delivery_idx ON ckan_webhooks.attempt (delivery_id, id);
CREATE INDEX delivery_subscription_idx
    ON ckan_webhooks.delivery (subscription_id, created_at);
