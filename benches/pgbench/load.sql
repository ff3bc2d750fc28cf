-- Benchmark data on top of sql/ckan/ckan-2.12-core.sql: the indexes and the activity
-- table a CKAN 2.12 database has beyond the project's core copy (so the statements of
-- the pgbench scripts are planned as on a real portal), then a portal of
-- :datasets datasets with :resources resources each, three tags and one organization
-- membership per dataset, a few extras and CKAN-sized text.
--
--   psql -v datasets=10000 -v resources=5 -f load.sql
--
-- Ids are UUID-shaped text as CKAN writes them: bench_id('p', 42) is dataset 42.

CREATE INDEX IF NOT EXISTS idx_package_resource_package_id ON resource (package_id);
CREATE INDEX IF NOT EXISTS idx_package_tag_package_id ON package_tag (package_id);
CREATE INDEX IF NOT EXISTS idx_member_table_id ON member (table_id);
CREATE INDEX IF NOT EXISTS idx_pkg_owner_org ON package (owner_org);
CREATE UNIQUE INDEX IF NOT EXISTS tag_name_vocabulary_id_key ON tag (name, vocabulary_id);

-- CKAN 2.12's activity plugin table (ckanext/activity), where each action's second
-- transaction writes one row.
CREATE TABLE IF NOT EXISTS activity (
    id text PRIMARY KEY,
    "timestamp" timestamp without time zone,
    user_id text,
    object_id text,
    revision_id text,
    activity_type text,
    data text,
    permission_labels text[]
);
CREATE INDEX IF NOT EXISTS idx_activity_object_id ON activity (object_id, "timestamp");
CREATE INDEX IF NOT EXISTS idx_activity_user_id ON activity (user_id, "timestamp");

CREATE OR REPLACE FUNCTION bench_id(kind text, n bigint) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE kind WHEN 'p' THEN '00000000' WHEN 'r' THEN '11111111'
                     WHEN 't' THEN '22222222' WHEN 'g' THEN '33333333'
                     WHEN 'u' THEN '44444444' ELSE '55555555' END
           || '-0000-4000-8000-' || lpad(n::text, 12, '0')
$$;

INSERT INTO "user" (id, name, state)
SELECT bench_id('u', 1), 'bench-editor', 'active';

INSERT INTO "group" (id, name, title, type, state, is_organization)
SELECT bench_id('g', g), 'org-' || g, 'Organization ' || g, 'organization', 'active', true
FROM generate_series(1, 20) g;

INSERT INTO tag (id, name)
SELECT bench_id('t', t), 'tag-' || t FROM generate_series(1, 200) t;

INSERT INTO package (id, name, title, version, url, notes, author, author_email,
                     maintainer, maintainer_email, state, license_id, type, owner_org,
                     private, metadata_modified, creator_user_id, metadata_created,
                     plugin_data, extras)
SELECT bench_id('p', p), 'dataset-' || p, 'Dataset number ' || p || ' of the benchmark portal',
       '1.0', 'https://example.invalid/source/' || p,
       repeat('Notes describing the dataset in a paragraph or two of markdown. ', 8),
       'Author ' || p % 97, 'author' || p % 97 || '@example.invalid',
       'Maintainer ' || p % 89, 'maintainer' || p % 89 || '@example.invalid',
       'active', 'cc-by', 'dataset', bench_id('g', 1 + p % 20),
       p % 10 = 0, now() - (p || ' minutes')::interval, bench_id('u', 1),
       now() - (p || ' hours')::interval, NULL,
       jsonb_build_object('spatial', '{"type": "Point", "coordinates": [4.5, 51.2]}',
                          'frequency', 'monthly', 'source', 'harvest-' || p % 7)
FROM generate_series(1, :datasets) p;

INSERT INTO resource (id, url, format, description, position, hash, state, extras, name,
                      resource_type, mimetype, size, last_modified, created, url_type,
                      package_id, metadata_modified)
SELECT bench_id('r', (p - 1) * :resources + r),
       'https://example.invalid/data/' || p || '/file-' || r || '.csv', 'CSV',
       repeat('A resource description of moderate length. ', 4), r - 1, md5(p || '-' || r),
       'active', '{"datastore_active": false}', 'file-' || r || '.csv', NULL, 'text/csv',
       1000 * r, now() - interval '2 days', now() - interval '30 days', NULL,
       bench_id('p', p), now() - interval '1 day'
FROM generate_series(1, :datasets) p, generate_series(1, :resources) r;

INSERT INTO package_tag (id, state, package_id, tag_id)
SELECT bench_id('x', (p - 1) * 3 + k), 'active', bench_id('p', p),
       bench_id('t', 1 + (p * 7 + k * 13) % 200)
FROM generate_series(1, :datasets) p, generate_series(1, 3) k;

INSERT INTO member (id, group_id, table_id, state, table_name, capacity)
SELECT bench_id('m', p), bench_id('g', 1 + p % 20), bench_id('p', p), 'active', 'package',
       'organization'
FROM generate_series(1, :datasets) p;

VACUUM ANALYZE;
