-- The delivery table is a queue: every delivery is claimed (lease and attempt count set)
-- and then settled, and each settled row leaves a dead version behind in the claim
-- index until VACUUM removes it.
--
-- Room on each page for a claim's new row version: a claim changes only columns no
-- index covers, so with free space on the page PostgreSQL writes it as a heap-only
-- tuple, with no new entry in any of the table's indexes. Pages written before this
-- keep their layout until rewritten; new deliveries get the room.
--
-- Autovacuum after 2 % of the table has changed instead of 20 %, so that a large
-- backlog being drained does not leave hundreds of thousands of dead index entries for
-- claims to step over.

ALTER TABLE ckan_webhooks.delivery SET (fillfactor = 70,
    autovacuum_vacuum_scale_factor = 0.02);
