-- CKAN 2.12 resource_create, trace.md 2.12.0 #17: in one transaction the package row
-- locked (SELECT ... FOR UPDATE), the reads, INSERT resource at the next position and
-- UPDATE package SET metadata_modified; then the activity row in its own transaction.
\set p random(1, :datasets)
BEGIN;
SELECT * FROM package WHERE id = bench_id('p', :p) FOR UPDATE;
SELECT * FROM resource WHERE package_id = bench_id('p', :p) AND state = 'active' ORDER BY position;
SELECT tag.name FROM package_tag JOIN tag ON tag.id = package_tag.tag_id WHERE package_tag.package_id = bench_id('p', :p) AND package_tag.state = 'active';
INSERT INTO resource (id, url, format, description, position, state, extras, name, mimetype, size, created, package_id, metadata_modified) SELECT gen_random_uuid()::text, 'https://example.invalid/data/' || :p || '/new.csv', 'CSV', repeat('A resource description of moderate length. ', 4), coalesce(max(position) + 1, 0), 'active', '{}', 'new.csv', 'text/csv', 4096, now(), bench_id('p', :p), now() FROM resource WHERE package_id = bench_id('p', :p);
UPDATE package SET metadata_modified = now() WHERE id = bench_id('p', :p);
COMMIT;
INSERT INTO activity (id, "timestamp", user_id, object_id, activity_type, data, permission_labels) VALUES (gen_random_uuid()::text, now(), bench_id('u', 1), bench_id('p', :p), 'changed package', repeat('{"package": "the whole package dict as JSON"} ', 40), ARRAY['public']);
