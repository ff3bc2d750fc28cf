-- The side schema's own tables: the change log written by the capture triggers, the
-- events derived from it, the subscriptions (webhooks) and one delivery row per
-- (event, subscription). Nothing here touches CKAN's own tables.

-- One row per captured row change. The capture triggers insert here; the deriver reads
-- whole committed transactions (grouped by txid) and deletes them in the transaction that
-- records their events, so the log only holds work not yet derived.
CREATE TABLE ckan_webhooks.change (
    id bigserial PRIMARY KEY,
    txid xid8 NOT NULL DEFAULT pg_current_xact_id(),
    table_name text NOT NULL,
    op "char" NOT NULL CHECK (op IN ('I', 'U', 'D')),
    row_id text NOT NULL,
    -- The dataset the row belongs to (the package itself, or the resource's dataset).
    package_id text,
    -- UPDATE: the old row's visibility columns, content hash and changed keys, or the
    -- whole old row when a visibility column changed. DELETE: the whole old row.
    old_row jsonb,
    -- INSERT and UPDATE: the whole new row.
    new_row jsonb,
    captured_at timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE INDEX change_txid_idx ON ckan_webhooks.change (txid);

-- A webhook: who owns it, what it listens to and where it goes.
CREATE TABLE ckan_webhooks.subscription (
    id text PRIMARY KEY,
    -- CKAN user id of the owner (the payload's user_ref).
    owner_id text NOT NULL,
    topic text NOT NULL,
    address text NOT NULL,
    filters jsonb NOT NULL DEFAULT '{}'::jsonb,
    -- Standard Webhooks signing secret ("whsec_" + base64).
    secret text NOT NULL,
    -- active | disabled | deleted. Deleted hooks are kept so their delivery records stay.
    state text NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'disabled', 'deleted')),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX subscription_owner_idx ON ckan_webhooks.subscription (owner_id);

-- A CKAN event derived from one committed transaction.
CREATE TABLE ckan_webhooks.event (
    id text PRIMARY KEY,
    -- Derivation order: events of one transaction in the order section 3 prescribes.
    seq bigserial UNIQUE,
    txid xid8 NOT NULL,
    topic text NOT NULL,
    dataset_id text NOT NULL,
    organization_id text,
    dataset_type text,
    entity jsonb NOT NULL,
    changes jsonb,
    occurred_at timestamptz NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- One delivery per (event, subscription); its id is the webhook-id for life.
CREATE TABLE ckan_webhooks.delivery (
    id text PRIMARY KEY,
    seq bigserial UNIQUE,
    event_id text NOT NULL REFERENCES ckan_webhooks.event (id),
    subscription_id text NOT NULL REFERENCES ckan_webhooks.subscription (id),
    dataset_id text NOT NULL,
    -- pending | delivered | dead | cancelled
    status text NOT NULL DEFAULT 'pending',
    attempts integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    lease_until timestamptz,
    last_status integer,
    last_error text,
    last_response text,
    last_attempt_at timestamptz,
    -- Milliseconds from sending the request to the end of the kept response of the last
    -- attempt; null when no response arrived.
    last_latency_ms integer,
    delivered_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX delivery_due_idx ON ckan_webhooks.delivery (next_attempt_at)
    WHERE status = 'pending';
CREATE INDEX delivery_order_idx ON ckan_webhooks.delivery (subscription_id, dataset_id, seq)
    WHERE status = 'pending';
