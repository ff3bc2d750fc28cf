-- Lean capture: the trigger functions of 0002 replaced, same triggers, same change-log
-- table. Measured by scripts/bench.sh (docs/benchmarks.md), 0002 cost CKAN far more than
-- the images it stored, for two reasons fixed here:
--
-- 1. Each row's to_jsonb was computed in a subquery the planner flattened, so every
--    later reference recomputed it: jsonb_each(new) compared each key against
--    to_jsonb(old) built again, about twenty times per row. The images are now built
--    once per row behind OFFSET 0.
-- 2. The per-row content hashes (md5 of both images as text) and changed-key list
--    (jsonb_each) are gone. An update now stores the whole old row beside the whole new
--    one, and src/derive/track.rs compares them: more bytes per row, much less CPU per
--    row, and the deriver's view of a row before its transaction is exact.
--
-- Also: SET enable_nestloop = off. PL/pgSQL caches the plan of each statement in a
-- session; a plan made when the transition tables held one row (CKAN's usual single-row
-- UPDATE) joins old_rows to new_rows by nested loop, and a later UPDATE of 100 000 rows in
-- that session would reuse it: 10^10 comparisons. Without nested loops the join is a
-- hash join whatever the plan was made for.
--
-- Changes captured by 0002 (with __head, __old_hash, __new_hash, __changed) may still be
-- in the change log when this is installed; the deriver reads both formats.

-- package: both images whole for an update, computed once per row (OFFSET 0 keeps the
-- planner from inlining to_jsonb into every later reference); nothing else per row.
CREATE OR REPLACE FUNCTION ckan_webhooks.capture_package() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp SET enable_nestloop = off AS $fn$
DECLARE
    n bigint;
BEGIN
    IF NOT ckan_webhooks.capture_ready(TG_TABLE_NAME) THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'INSERT' THEN
        INSERT INTO ckan_webhooks.change (table_name, op, row_id, package_id, new_row)
        SELECT 'package', 'I', r.id, r.id, to_jsonb(r) FROM new_rows r;
    ELSIF TG_OP = 'UPDATE' THEN
        INSERT INTO ckan_webhooks.change (table_name, op, row_id, package_id, old_row, new_row)
        SELECT 'package', 'U', j.id, j.id, j.o, j.n
        FROM (SELECT nr.id, to_jsonb(orow) AS o, to_jsonb(nr) AS n
              FROM old_rows orow JOIN new_rows nr ON nr.id = orow.id OFFSET 0) j
        WHERE j.o IS DISTINCT FROM j.n;
    ELSE
        INSERT INTO ckan_webhooks.change (table_name, op, row_id, package_id, old_row)
        SELECT 'package', 'D', r.id, r.id, to_jsonb(r) FROM old_rows r;
    END IF;
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n > 0 THEN
        PERFORM ckan_webhooks.wake();
    END IF;
    RETURN NULL;
END
$fn$;

-- resource: as package.
CREATE OR REPLACE FUNCTION ckan_webhooks.capture_resource() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp SET enable_nestloop = off AS $fn$
DECLARE
    n bigint;
BEGIN
    IF NOT ckan_webhooks.capture_ready(TG_TABLE_NAME) THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'INSERT' THEN
        INSERT INTO ckan_webhooks.change (table_name, op, row_id, package_id, new_row)
        SELECT 'resource', 'I', r.id, r.package_id, to_jsonb(r) FROM new_rows r;
    ELSIF TG_OP = 'UPDATE' THEN
        INSERT INTO ckan_webhooks.change (table_name, op, row_id, package_id, old_row, new_row)
        SELECT 'resource', 'U', j.id, j.n ->> 'package_id', j.o, j.n
        FROM (SELECT nr.id, to_jsonb(orow) AS o, to_jsonb(nr) AS n
              FROM old_rows orow JOIN new_rows nr ON nr.id = orow.id OFFSET 0) j
        WHERE j.o IS DISTINCT FROM j.n;
    ELSE
        INSERT INTO ckan_webhooks.change (table_name, op, row_id, package_id, old_row)
        SELECT 'resource', 'D', r.id, r.package_id, to_jsonb(r) FROM old_rows r;
    END IF;
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n > 0 THEN
        PERFORM ckan_webhooks.wake();
    END IF;
    RETURN NULL;
END
$fn$;

-- package_extra, package_tag and member (dataset-in-group rows only): small rows whose
-- change makes their dataset's content change; both images are kept whole, as before.
CREATE OR REPLACE FUNCTION ckan_webhooks.capture_child() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp SET enable_nestloop = off AS $fn$
DECLARE
    n bigint;
BEGIN
    IF NOT ckan_webhooks.capture_ready(TG_TABLE_NAME) THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'INSERT' THEN
        INSERT INTO ckan_webhooks.change (table_name, op, row_id, package_id, new_row)
        SELECT TG_TABLE_NAME, 'I', j.n ->> 'id', j.pkg, j.n
        FROM (SELECT to_jsonb(r) AS n,
                     CASE WHEN TG_TABLE_NAME = 'member' THEN to_jsonb(r) ->> 'table_id'
                          ELSE to_jsonb(r) ->> 'package_id' END AS pkg
              FROM new_rows r OFFSET 0) j
        WHERE TG_TABLE_NAME <> 'member' OR j.n ->> 'table_name' = 'package';
    ELSIF TG_OP = 'UPDATE' THEN
        INSERT INTO ckan_webhooks.change (table_name, op, row_id, package_id, old_row, new_row)
        SELECT TG_TABLE_NAME, 'U', j.n ->> 'id', j.pkg, j.o, j.n
        FROM (SELECT to_jsonb(orow) AS o, to_jsonb(nr) AS n,
                     CASE WHEN TG_TABLE_NAME = 'member' THEN to_jsonb(nr) ->> 'table_id'
                          ELSE to_jsonb(nr) ->> 'package_id' END AS pkg
              FROM old_rows orow JOIN new_rows nr ON nr.id = orow.id OFFSET 0) j
        WHERE j.o IS DISTINCT FROM j.n
          AND (TG_TABLE_NAME <> 'member' OR j.n ->> 'table_name' = 'package');
    ELSE
        INSERT INTO ckan_webhooks.change (table_name, op, row_id, package_id, old_row)
        SELECT TG_TABLE_NAME, 'D', j.o ->> 'id', j.pkg, j.o
        FROM (SELECT to_jsonb(r) AS o,
                     CASE WHEN TG_TABLE_NAME = 'member' THEN to_jsonb(r) ->> 'table_id'
                          ELSE to_jsonb(r) ->> 'package_id' END AS pkg
              FROM old_rows r) j
        WHERE TG_TABLE_NAME <> 'member' OR j.o ->> 'table_name' = 'package';
    END IF;
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n > 0 THEN
        PERFORM ckan_webhooks.wake();
    END IF;
    RETURN NULL;
END
$fn$;
