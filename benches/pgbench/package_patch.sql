-- CKAN 2.12 package_patch (tags only), trace.md 2.12.0 #22: in one transaction the
-- package row locked, the reads, one tag removed (UPDATE package_tag SET state =
-- 'deleted'), one added (INSERT package_tag) and UPDATE package SET
-- metadata_modified; then the activity row in its own transaction. CKAN selects the
-- package_tag id first and updates by id; here a subselect finds it.
\set p random(1, :datasets)
\set t random(1, 200)
BEGIN;
SELECT * FROM package WHERE id = bench_id('p', :p) FOR UPDATE;
SELECT * FROM resource WHERE package_id = bench_id('p', :p) AND state = 'active' ORDER BY position;
SELECT tag.name FROM package_tag JOIN tag ON tag.id = package_tag.tag_id WHERE package_tag.package_id = bench_id('p', :p) AND package_tag.state = 'active';
UPDATE package_tag SET state = 'deleted' WHERE id = (SELECT min(id) FROM package_tag WHERE package_id = bench_id('p', :p) AND state = 'active');
INSERT INTO package_tag (id, state, package_id, tag_id) VALUES (gen_random_uuid()::text, 'active', bench_id('p', :p), bench_id('t', :t));
UPDATE package SET metadata_modified = now() WHERE id = bench_id('p', :p);
COMMIT;
INSERT INTO activity (id, "timestamp", user_id, object_id, activity_type, data, permission_labels) VALUES (gen_random_uuid()::text, now(), bench_id('u', 1), bench_id('p', :p), 'changed package', repeat('{"package": "the whole package dict as JSON"} ', 40), ARRAY['public']);
