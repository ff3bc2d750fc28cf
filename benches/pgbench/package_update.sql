-- CKAN 2.12 package_update (full dict, title + notes), trace.md 2.12.0 #21: in one
-- transaction the package_show-style reads CKAN makes (a subset of its 76 statements),
-- UPDATE package SET title, notes and UPDATE package SET metadata_modified; then the
-- activity row in a second transaction of its own, as CKAN commits it.
\set p random(1, :datasets)
\set v random(1, 1000000000)
BEGIN;
SELECT * FROM package WHERE id = bench_id('p', :p);
SELECT * FROM resource WHERE package_id = bench_id('p', :p) AND state = 'active' ORDER BY position;
SELECT tag.name FROM package_tag JOIN tag ON tag.id = package_tag.tag_id WHERE package_tag.package_id = bench_id('p', :p) AND package_tag.state = 'active';
SELECT "group".name FROM member JOIN "group" ON "group".id = member.group_id WHERE member.table_id = bench_id('p', :p) AND member.table_name = 'package' AND member.state = 'active';
UPDATE package SET title = 'Dataset ' || :p || ' revision ' || :v, notes = repeat('Updated notes of the dataset, revision ' || :v || '. ', 8) WHERE id = bench_id('p', :p);
UPDATE package SET metadata_modified = now() WHERE id = bench_id('p', :p);
COMMIT;
INSERT INTO activity (id, "timestamp", user_id, object_id, activity_type, data, permission_labels) VALUES (gen_random_uuid()::text, now(), bench_id('u', 1), bench_id('p', :p), 'changed package', repeat('{"package": "the whole package dict as JSON"} ', 40), ARRAY['public']);
