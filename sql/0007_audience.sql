-- Private datasets reach exactly those who may read them. Each event records the reader
-- classes it is for (src/audience.rs: bit 1 << (reads_before + 2 * reads_after), 15 for
-- everyone) and the dataset's organization before and after its transaction, so fan-out
-- can place each hook owner in a class from the owner's rights at that moment. Events
-- recorded before this file were all public ones: everyone.
ALTER TABLE ckan_webhooks.event
    ADD COLUMN audience smallint NOT NULL DEFAULT 15 CHECK (audience BETWEEN 1 AND 15),
    ADD COLUMN organization_before text,
    ADD COLUMN organization_after text;
