-- Redelivery restarts a delivery's retry clock: the age limit counts from the later of
-- its creation and its last requeue, so a replayed old delivery gets a full schedule.

ALTER TABLE ckan_webhooks.delivery ADD COLUMN requeued_at timestamptz;
