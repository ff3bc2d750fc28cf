//! Queries on the change log and on the CKAN rows derivation needs, and the recording of
//! derived events with their deliveries.

use crate::derive::{Change, Lookups, Op, ScopedEvent, Table, Transaction};
use crate::error::Result;
use std::collections::HashMap;
use tokio_postgres::GenericClient;

/// Advisory lock key held by the one instance deriving at a time ("ckanwhk2").
pub const DERIVE_LOCK: i64 = 0x636b_616e_7768_6b32;

/// Takes the derive lock for the current transaction; false when another instance has it.
pub async fn try_derive_lock(client: &impl GenericClient) -> Result<bool> {
    let row = client
        .query_one("SELECT pg_try_advisory_xact_lock($1)", &[&DERIVE_LOCK])
        .await?;
    Ok(row.get(0))
}

// TODO: a transaction is read whole, so one CKAN statement updating 100 000 resources
// holds all their images in memory at once; issue 6 asks for paged reads and flat memory.
/// Up to `limit` committed transactions waiting in the change log, oldest first.
/// Transactions are ordered by their last change id: when two transactions write the
/// same row, the row lock makes the second wait, so its change for that row, and thus
/// its last change, comes after every change of the first.
pub async fn pending_transactions(
    client: &impl GenericClient,
    limit: i64,
) -> Result<Vec<Transaction>> {
    let rows = client
        .query(
            "WITH tx AS (
                 SELECT txid, max(id) AS last
                 FROM ckan_webhooks.change
                 GROUP BY txid
                 ORDER BY last
                 LIMIT $1
             )
             SELECT c.id, c.txid::text, c.table_name, c.op::text, c.row_id, c.package_id,
                    c.old_row, c.new_row, c.captured_at
             FROM ckan_webhooks.change c
             JOIN tx ON tx.txid = c.txid
             ORDER BY tx.last, c.id",
            &[&limit],
        )
        .await?;

    let mut transactions: Vec<Transaction> = Vec::new();
    for row in rows {
        let txid: i64 = row.get::<_, String>(1).parse().unwrap_or_default();
        let Some(table) = Table::from_name(row.get(2)) else {
            continue;
        };
        let op = match row.get::<_, String>(3).as_str() {
            "I" => Op::Insert,
            "U" => Op::Update,
            _ => Op::Delete,
        };
        let change = Change {
            id: row.get(0),
            table,
            op,
            row_id: row.get(4),
            package_id: row.get(5),
            old_row: row.get(6),
            new_row: row.get(7),
            captured_at: row.get(8),
        };
        match transactions.last_mut() {
            Some(tx) if tx.txid == txid => tx.changes.push(change),
            _ => transactions.push(Transaction {
                txid,
                changes: vec![change],
            }),
        }
    }
    Ok(transactions)
}

/// Fetches the rows a transaction's derivation needs but did not capture, as they
/// stood right after it: the current row, overlaid with the old image of the first
/// change a later transaction (one still in the change log, other than `derived`, the
/// transactions of this batch already handled plus this one) made to it. Rows a later
/// transaction inserted are left out; rows it deleted come back from its old image.
pub async fn lookups(
    client: &impl GenericClient,
    tx: &Transaction,
    derived: &[String],
) -> Result<Lookups> {
    let mut lookups = Lookups::default();

    let needs = tx.needs();
    let untouched = needs.untouched;
    if !untouched.is_empty() {
        let rows = client
            .query(
                "WITH later AS (
                     SELECT DISTINCT ON (c.row_id) c.row_id, c.op, c.old_row
                     FROM ckan_webhooks.change c
                     WHERE c.table_name = 'package' AND c.row_id = ANY($1)
                       AND c.txid::text <> ALL($2)
                     ORDER BY c.row_id, c.id
                 )
                 SELECT ids.id, coalesce(to_jsonb(p), '{}'::jsonb)
                                || coalesce(later.old_row, '{}'::jsonb)
                 FROM unnest($1::text[]) AS ids (id)
                 LEFT JOIN public.package p ON p.id = ids.id
                 LEFT JOIN later ON later.row_id = ids.id
                 WHERE (p.id IS NOT NULL OR later.old_row IS NOT NULL)
                   AND later.op IS DISTINCT FROM 'I'",
                &[&untouched, &derived],
            )
            .await?;
        lookups.packages = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    }

    let flipped = needs.visibility_changed;
    if !flipped.is_empty() {
        let rows = client
            .query(
                "WITH later AS (
                     SELECT DISTINCT ON (c.row_id) c.row_id, c.op, c.old_row
                     FROM ckan_webhooks.change c
                     WHERE c.table_name = 'resource' AND c.package_id = ANY($1)
                       AND c.txid::text <> ALL($2)
                     ORDER BY c.row_id, c.id
                 ), current AS (
                     SELECT r.id, to_jsonb(r) AS row
                     FROM public.resource r
                     WHERE r.package_id = ANY($1)
                 ), merged AS (
                     SELECT coalesce(current.row, '{}'::jsonb)
                            || coalesce(later.old_row, '{}'::jsonb) AS row
                     FROM current
                     FULL JOIN later ON later.row_id = current.id
                     WHERE later.op IS DISTINCT FROM 'I'
                       AND (current.id IS NOT NULL OR later.old_row IS NOT NULL)
                 )
                 SELECT row ->> 'package_id', row
                 FROM merged
                 WHERE row ->> 'package_id' = ANY($1)
                 ORDER BY row ->> 'package_id', (row ->> 'position')::int NULLS LAST,
                          row ->> 'id'",
                &[&flipped, &derived],
            )
            .await?;
        let mut resources: HashMap<String, Vec<serde_json::Value>> = HashMap::new();
        for row in rows {
            resources.entry(row.get(0)).or_default().push(row.get(1));
        }
        lookups.resources = resources;
    }
    Ok(lookups)
}

/// Whether this CKAN has dataset collaborators (`package_member`, CKAN 2.9 and later).
pub async fn has_collaborators(client: &impl GenericClient) -> Result<bool> {
    let row = client
        .query_one(
            "SELECT to_regclass('public.package_member') IS NOT NULL",
            &[],
        )
        .await?;
    Ok(row.get(0))
}

/// Stores one event and creates a pending delivery for every active subscription whose
/// topic and filters match, whose owner is an active CKAN user, and whose owner's
/// reader class is in the event's audience. The class comes from the owner's rights
/// now: a sysadmin reads everything; an active member (any capacity) of an active
/// organization reads its datasets; with `collaborators`, a dataset's collaborators
/// read it. Returns the number of deliveries created.
pub async fn record_event(
    client: &impl GenericClient,
    txid: i64,
    scoped: &ScopedEvent,
    collaborators: bool,
) -> Result<u64> {
    let event = &scoped.event;
    client
        .execute(
            "INSERT INTO ckan_webhooks.event
                 (id, txid, topic, dataset_id, organization_id, dataset_type, entity, changes,
                  occurred_at, audience, organization_before, organization_after)
             VALUES ($1, $2::text::xid8, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
            &[
                &event.id,
                &txid.to_string(),
                &event.topic,
                &event.dataset_id,
                &event.organization_id,
                &event.dataset_type,
                &event.entity,
                &event.changes,
                &event.occurred_at,
                &scoped.audience.bits(),
                &scoped.organization_before,
                &scoped.organization_after,
            ],
        )
        .await?;

    // Filters: dataset by id or current name, organization by id or name, dataset
    // type, and resource format (which only resource events can match).
    let is_resource = event.topic.starts_with("resource/");
    let dataset_name = if is_resource {
        None
    } else {
        event.entity["name"].as_str()
    };
    let format = if is_resource {
        event.entity["format"].as_str()
    } else {
        None
    };

    // The owner's class: reads_before + 2 * reads_after, from their rights now. Public
    // events (audience 15) skip the rights lookups: CASE evaluates only its branch.
    let everywhere = if collaborators {
        // Named only when the setting is on, so CKAN 2.8 (no such table) never sees it.
        "u.sysadmin OR EXISTS (SELECT 1 FROM public.package_member pm
                               WHERE pm.package_id = e.dataset_id AND pm.user_id = u.id)"
    } else {
        "u.sysadmin"
    };
    let member_of = |organization: &str| {
        format!(
            "EXISTS (SELECT 1 FROM public.member m
                     JOIN public.\"group\" g ON g.id = m.group_id AND g.state = 'active'
                     WHERE m.table_name = 'user' AND m.table_id = u.id
                       AND m.state = 'active' AND m.group_id = {organization})"
        )
    };
    let reads_before = format!("({everywhere} OR {})", member_of("e.organization_before"));
    let reads_after = format!("({everywhere} OR {})", member_of("e.organization_after"));
    let created = client
        .execute(
            &format!(
                "INSERT INTO ckan_webhooks.delivery (id, event_id, subscription_id, dataset_id)
                 SELECT md5(gen_random_uuid()::text || s.id), e.id, s.id, e.dataset_id
                 FROM ckan_webhooks.event e
                 JOIN ckan_webhooks.subscription s ON s.state = 'active'
                 JOIN public.\"user\" u ON u.id = s.owner_id AND u.state = 'active'
                 WHERE e.id = $1
                   AND (s.topic = $3 OR s.topic = '*' OR s.topic = split_part($3, '/', 1) || '/*')
                   AND (NOT s.filters ? 'dataset'
                        OR s.filters ->> 'dataset' IN ($2, $6)
                        OR s.filters ->> 'dataset' =
                           (SELECT p.name FROM public.package p WHERE p.id = $2))
                   AND (NOT s.filters ? 'organization'
                        OR s.filters ->> 'organization' = $4
                        OR s.filters ->> 'organization' =
                           (SELECT g.name FROM public.\"group\" g WHERE g.id = $4))
                   AND (NOT s.filters ? 'dataset_type' OR s.filters ->> 'dataset_type' = $5)
                   AND (NOT s.filters ? 'resource_format'
                        OR lower(s.filters ->> 'resource_format') = lower($7))
                   AND CASE WHEN e.audience = 15 THEN true
                            ELSE e.audience & (1 << ({reads_before}::int
                                                     + 2 * {reads_after}::int)) <> 0
                       END
                 ORDER BY s.id"
            ),
            &[
                &event.id,
                &event.dataset_id,
                &event.topic,
                &event.organization_id,
                &event.dataset_type,
                &dataset_name,
                &format,
            ],
        )
        .await?;
    Ok(created)
}

/// Removes derived changes from the log.
pub async fn delete_changes(client: &impl GenericClient, ids: &[i64]) -> Result<()> {
    client
        .execute(
            "DELETE FROM ckan_webhooks.change WHERE id = ANY($1)",
            &[&ids],
        )
        .await?;
    Ok(())
}
