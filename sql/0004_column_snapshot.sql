-- The columns of CKAN's package and resource tables as they were when capture was
-- installed, so that `check` can tell when CKAN's schema has since moved under us (a
-- column added, dropped, renamed or retyped). Install fills it; capture itself never
-- reads it, because the triggers store whole rows with to_jsonb.
CREATE TABLE ckan_webhooks.column_snapshot (
    table_name text NOT NULL,
    column_name text NOT NULL,
    -- format_type() of the column, e.g. "text" or "timestamp without time zone".
    data_type text NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (table_name, column_name)
);
