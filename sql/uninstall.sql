-- Removes every capture trigger and function, leaving the side schema's data in place.
-- The ledger forgets the capture files so that a later install puts them back.
DO $do$
DECLARE
    t record;
BEGIN
    FOR t IN
        SELECT tg.tgname, c.relname
        FROM pg_trigger tg
        JOIN pg_class c ON c.oid = tg.tgrelid
        JOIN pg_namespace ns ON ns.oid = c.relnamespace AND ns.nspname = 'public'
        WHERE tg.tgname IN ('ckan_webhooks_insert', 'ckan_webhooks_update', 'ckan_webhooks_delete')
    LOOP
        EXECUTE format('DROP TRIGGER IF EXISTS %I ON public.%I', t.tgname, t.relname);
    END LOOP;
END
$do$;

DROP FUNCTION IF EXISTS ckan_webhooks.capture_package();
DROP FUNCTION IF EXISTS ckan_webhooks.capture_resource();
DROP FUNCTION IF EXISTS ckan_webhooks.capture_child();
DROP FUNCTION IF EXISTS ckan_webhooks.wake();
DROP FUNCTION IF EXISTS ckan_webhooks.capture_ready(text);
