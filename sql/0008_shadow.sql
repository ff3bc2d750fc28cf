-- The shadow: what the service last saw of every CKAN dataset and resource, for poll
-- mode (where no trigger captures changes) and for reconciliation in trigger mode (which
-- heals what capture missed). Each row keeps the cheap columns a scan compares, the
-- visibility columns derivation needs as the "before" image, a sha2 of the entity's
-- content and one small hash per column, so that a change can be named field by field
-- without keeping whole rows. Purged entities leave no CKAN row: their shadow row is
-- what a delete event shows.

CREATE TABLE ckan_webhooks.shadow_package (
    id text PRIMARY KEY,
    name text,
    type text,
    state text,
    private boolean,
    owner_org text,
    -- Compared by the scan; CKAN sets it in Python on every package_update, so it says
    -- "look again", never "this came after that".
    metadata_modified timestamp,
    -- sha256 of the row without metadata_modified, revision_id and null columns.
    content bytea NOT NULL,
    -- hashtext() of each column's value, in the column order of `layout`.
    fields integer[] NOT NULL,
    layout integer NOT NULL,
    -- sha256 of the active extras rows (CKAN <= 2.11) and tags; of the groups a sum of
    -- hashes, which the scan recomputes for every dataset each pass without sorting.
    extras bytea,
    tags bytea,
    groups bytea
);

CREATE TABLE ckan_webhooks.shadow_resource (
    id text PRIMARY KEY,
    package_id text,
    state text,
    format text,
    -- The scan's cheap columns: metadata_modified on CKAN 2.9+, revision_id on 2.8.
    position integer,
    modified timestamp,
    revision_id text,
    content bytea NOT NULL,
    fields integer[] NOT NULL,
    layout integer NOT NULL
);

CREATE INDEX shadow_resource_package_idx ON ckan_webhooks.shadow_resource (package_id);

-- Trigger mode: datasets whose captured changes were derived but whose shadow is not yet
-- refreshed. Derivation adds them in its transaction, a step after it (off the latency
-- path) refreshes and removes them; reconciliation leaves them alone meanwhile.
CREATE TABLE ckan_webhooks.shadow_dirty (
    package_id text PRIMARY KEY
);

-- Column lists the per-column hashes are aligned to, by hashtext() of the list.
CREATE TABLE ckan_webhooks.shadow_layout (
    id integer PRIMARY KEY,
    columns text[] NOT NULL
);

-- Poll and reconciliation bookkeeping: when the baseline was taken, the CKAN 2.8
-- revision watermark, the last cycle's figures.
CREATE TABLE ckan_webhooks.poll_state (
    name text PRIMARY KEY,
    value jsonb NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- The hashes of one row image: content (sha256 of the non-null columns other than
-- metadata_modified and revision_id), one hashtext() per column in key order, and the
-- layout (hashtext() of the column list).
CREATE FUNCTION ckan_webhooks.row_hashes(r jsonb, OUT content bytea, OUT fields integer[],
                                         OUT layout integer, OUT columns text[])
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $fn$
    SELECT sha256(convert_to(jsonb_strip_nulls(r - 'metadata_modified' - 'revision_id')::text,
                             'UTF8')),
           array_agg(hashtext(e.value::text) ORDER BY e.key),
           hashtext(string_agg(e.key, ',' ORDER BY e.key)),
           array_agg(e.key ORDER BY e.key)
    FROM jsonb_each(r - 'metadata_modified' - 'revision_id') e
$fn$;
