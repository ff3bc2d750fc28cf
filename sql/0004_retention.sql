-- Retention removes finished deliveries by the time of their last attempt, events once
-- no delivery refers to them, and subscriptions gone for long. These indexes let each
-- batch find its rows without scanning whole tables, and let an event's deletion check
-- its references cheaply.

CREATE INDEX delivery_finished_idx
    ON ckan_webhooks.delivery ((coalesce(last_attempt_at, created_at)))
    WHERE status <> 'pending';
CREATE INDEX delivery_event_idx ON ckan_webhooks.delivery (event_id);
CREATE INDEX event_created_idx ON ckan_webhooks.event (created_at);
