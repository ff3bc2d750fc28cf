-- Capture: statement-level triggers with transition tables on CKAN's package, resource
-- and (where they exist) package_extra, package_tag and member tables. Each statement
-- costs one trigger call and one INSERT ... SELECT into the change log, whatever the
-- number of rows. Rows are stored with to_jsonb(row), never a column list, so the same
-- functions work on every CKAN schema from 2.8 to 2.12.
--
-- CKAN's writes must never fail because of us: the functions are SECURITY DEFINER with a
-- fixed search_path and qualified names, and when the change log is missing or not
-- writable they raise a WARNING and return instead of aborting CKAN's transaction.
-- There is deliberately no EXCEPTION block: each one is a subtransaction, and a CKAN
-- action issues dozens of statements per transaction.

-- True when the change log can be written; otherwise warns once per statement.
CREATE OR REPLACE FUNCTION ckan_webhooks.capture_ready(tbl text) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
    IF to_regclass('ckan_webhooks.change') IS NULL
       OR NOT has_table_privilege('ckan_webhooks.change', 'INSERT') THEN
        RAISE WARNING 'ckan_webhooks: change log unavailable, change to % not captured', tbl;
        RETURN false;
    END IF;
    RETURN true;
END
$fn$;

-- Wakes the service. One empty notification per transaction: PostgreSQL merges
-- identical ones. Set ckan_webhooks.notify = off (per database or role) to rely on
-- the service's timer alone.
CREATE OR REPLACE FUNCTION ckan_webhooks.wake() RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
    IF coalesce(current_setting('ckan_webhooks.notify', true), '') <> 'off' THEN
        PERFORM pg_notify('ckan_webhooks', '');
    END IF;
END
$fn$;

-- package: the whole new row; of the old row its visibility columns, a content hash
-- (without metadata_modified) and the changed keys, or the whole old row when a
-- visibility column (state, private, owner_org) changed, so deletes carry it.
CREATE OR REPLACE FUNCTION ckan_webhooks.capture_package() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
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
        SELECT 'package', 'U', j.id, j.id,
               CASE WHEN (j.o -> 'state', j.o -> 'private', j.o -> 'owner_org')
                         IS DISTINCT FROM (j.n -> 'state', j.n -> 'private', j.n -> 'owner_org')
                    THEN j.o
                    ELSE jsonb_build_object('__head', true, 'id', j.o -> 'id',
                                            'state', j.o -> 'state',
                                            'private', j.o -> 'private',
                                            'owner_org', j.o -> 'owner_org',
                                            'type', j.o -> 'type', 'name', j.o -> 'name')
               END
               || jsonb_build_object(
                   '__old_hash', md5((j.o - 'metadata_modified')::text),
                   '__new_hash', md5((j.n - 'metadata_modified')::text),
                   '__changed', (SELECT coalesce(jsonb_agg(e.key), '[]'::jsonb)
                                 FROM jsonb_each(j.n) e
                                 WHERE e.value IS DISTINCT FROM j.o -> e.key)),
               j.n
        FROM (SELECT nr.id, to_jsonb(orow) AS o, to_jsonb(nr) AS n
              FROM old_rows orow JOIN new_rows nr ON nr.id = orow.id) j
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

-- resource: as package, with state and package_id as the visibility columns.
CREATE OR REPLACE FUNCTION ckan_webhooks.capture_resource() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
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
        SELECT 'resource', 'U', j.id, j.n ->> 'package_id',
               CASE WHEN (j.o -> 'state', j.o -> 'package_id')
                         IS DISTINCT FROM (j.n -> 'state', j.n -> 'package_id')
                    THEN j.o
                    ELSE jsonb_build_object('__head', true, 'id', j.o -> 'id',
                                            'state', j.o -> 'state',
                                            'package_id', j.o -> 'package_id',
                                            'format', j.o -> 'format')
               END
               || jsonb_build_object(
                   '__old_hash', md5((j.o - 'metadata_modified')::text),
                   '__new_hash', md5((j.n - 'metadata_modified')::text),
                   '__changed', (SELECT coalesce(jsonb_agg(e.key), '[]'::jsonb)
                                 FROM jsonb_each(j.n) e
                                 WHERE e.value IS DISTINCT FROM j.o -> e.key)),
               j.n
        FROM (SELECT nr.id, to_jsonb(orow) AS o, to_jsonb(nr) AS n
              FROM old_rows orow JOIN new_rows nr ON nr.id = orow.id) j
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
-- change makes their dataset's content change; both images are kept whole.
CREATE OR REPLACE FUNCTION ckan_webhooks.capture_child() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
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
              FROM new_rows r) j
        WHERE TG_TABLE_NAME <> 'member' OR j.n ->> 'table_name' = 'package';
    ELSIF TG_OP = 'UPDATE' THEN
        INSERT INTO ckan_webhooks.change (table_name, op, row_id, package_id, old_row, new_row)
        SELECT TG_TABLE_NAME, 'U', j.n ->> 'id', j.pkg, j.o, j.n
        FROM (SELECT to_jsonb(orow) AS o, to_jsonb(nr) AS n,
                     CASE WHEN TG_TABLE_NAME = 'member' THEN to_jsonb(nr) ->> 'table_id'
                          ELSE to_jsonb(nr) ->> 'package_id' END AS pkg
              FROM old_rows orow JOIN new_rows nr ON nr.id = orow.id) j
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

-- Three statement-level triggers per captured table that exists in this CKAN version
-- (a trigger with transition tables fires for one event only). Re-creating them is
-- idempotent; the notices of DROP TRIGGER IF EXISTS are noise.
SET LOCAL client_min_messages = warning;

DO $do$
DECLARE
    t record;
    op text;
BEGIN
    FOR t IN
        SELECT c.relname, f.fn
        FROM (VALUES ('package', 'capture_package'), ('resource', 'capture_resource'),
                     ('package_extra', 'capture_child'), ('package_tag', 'capture_child'),
                     ('member', 'capture_child')) AS f (tbl, fn)
        JOIN pg_class c ON c.relname = f.tbl AND c.relkind IN ('r', 'p')
        JOIN pg_namespace ns ON ns.oid = c.relnamespace AND ns.nspname = 'public'
    LOOP
        FOREACH op IN ARRAY ARRAY['insert', 'update', 'delete'] LOOP
            EXECUTE format('DROP TRIGGER IF EXISTS %I ON public.%I',
                           'ckan_webhooks_' || op, t.relname);
            EXECUTE format(
                'CREATE TRIGGER %I AFTER %s ON public.%I REFERENCING %s '
                'FOR EACH STATEMENT EXECUTE FUNCTION ckan_webhooks.%I()',
                'ckan_webhooks_' || op, upper(op), t.relname,
                CASE op WHEN 'insert' THEN 'NEW TABLE AS new_rows'
                        WHEN 'update' THEN 'OLD TABLE AS old_rows NEW TABLE AS new_rows'
                        ELSE 'OLD TABLE AS old_rows' END,
                t.fn);
        END LOOP;
    END LOOP;
END
$do$;
