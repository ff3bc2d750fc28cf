//! Queries on the shadow (what the service last saw of each dataset and resource) and on
//! the CKAN rows a poll or reconciliation pass compares with it. The SQL is built once
//! per pass from the columns and tables this CKAN has, so a column dropped or renamed
//! under a running service changes the query instead of breaking it.

mod layout;
mod snapshot;

pub use layout::{layout, Layout};
pub use snapshot::{snapshot, Current, Seen, Snapshot};

use crate::error::Result;
use serde_json::Value;
use tokio_postgres::GenericClient;

/// Whether the shadow holds a baseline (a first complete picture of CKAN).
pub async fn has_baseline(client: &impl GenericClient) -> Result<bool> {
    let row = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM ckan_webhooks.poll_state WHERE name = 'baseline')",
            &[],
        )
        .await?;
    Ok(row.get(0))
}

/// Replaces the shadow with every dataset and resource as they are now, and records
/// the baseline. Returns the number of datasets and resources recorded.
pub async fn take_baseline(client: &impl GenericClient, layout: &Layout) -> Result<(u64, u64)> {
    client
        .batch_execute(
            "DELETE FROM ckan_webhooks.shadow_resource;
             DELETE FROM ckan_webhooks.shadow_package;",
        )
        .await?;
    let packages = client
        .execute(&upsert_packages(layout, "true"), &[])
        .await?;
    let resources = client
        .execute(&upsert_resources(layout, "true"), &[])
        .await?;
    record_layouts(client).await?;
    if layout.revisions {
        client
            .execute(
                "INSERT INTO ckan_webhooks.poll_state (name, value)
                 SELECT 'revision_watermark', to_jsonb(coalesce(max(timestamp), 'epoch'))
                 FROM public.revision
                 ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = now()",
                &[],
            )
            .await?;
    }
    client
        .execute(
            "INSERT INTO ckan_webhooks.poll_state (name, value)
             VALUES ('baseline', jsonb_build_object('datasets', $1::bigint,
                                                    'resources', $2::bigint, 'at', now()))
             ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = now()",
            &[&(packages as i64), &(resources as i64)],
        )
        .await?;
    Ok((packages, resources))
}

/// The upsert of shadow_package rows for the packages matching `filter` (SQL on `p`).
fn upsert_packages(layout: &Layout, filter: &str) -> String {
    let [extras, tags, groups] = layout.children();
    format!(
        "INSERT INTO ckan_webhooks.shadow_package AS s
             (id, name, type, state, private, owner_org, metadata_modified, content, fields,
              layout, extras, tags, groups)
         SELECT p.id, {cheap}, h.content, h.fields, h.layout, {extras}, {tags}, {groups}
         FROM public.package p
         CROSS JOIN LATERAL ckan_webhooks.row_hashes(to_jsonb(p)) h
         WHERE {filter}
         ON CONFLICT (id) DO UPDATE SET
             name = excluded.name, type = excluded.type, state = excluded.state,
             private = excluded.private, owner_org = excluded.owner_org,
             metadata_modified = excluded.metadata_modified, content = excluded.content,
             fields = excluded.fields, layout = excluded.layout, extras = excluded.extras,
             tags = excluded.tags, groups = excluded.groups",
        cheap = layout.package_cheap_columns(),
    )
}

/// The upsert of shadow_resource rows for the resources matching `filter` (SQL on `r`).
fn upsert_resources(layout: &Layout, filter: &str) -> String {
    let format = if layout.resource_has("format") {
        "r.format"
    } else {
        "NULL::text"
    };
    format!(
        "INSERT INTO ckan_webhooks.shadow_resource AS s
             (id, package_id, state, format, position, modified, revision_id, content, fields,
              layout)
         SELECT r.id, r.package_id, r.state, {format}, {position}, {modified}, {revision},
                h.content, h.fields, h.layout
         FROM public.resource r
         CROSS JOIN LATERAL ckan_webhooks.row_hashes(to_jsonb(r)) h
         WHERE {filter}
         ON CONFLICT (id) DO UPDATE SET
             package_id = excluded.package_id, state = excluded.state,
             format = excluded.format, position = excluded.position,
             modified = excluded.modified, revision_id = excluded.revision_id,
             content = excluded.content, fields = excluded.fields, layout = excluded.layout",
        position = layout.resource_position(),
        modified = layout.resource_stamps().0,
        revision = layout.resource_stamps().1,
    )
}

/// Records the column lists the shadow's per-column hashes are aligned to.
async fn record_layouts(client: &impl GenericClient) -> Result<()> {
    client
        .batch_execute(
            "INSERT INTO ckan_webhooks.shadow_layout (id, columns)
             SELECT DISTINCT h.layout, h.columns
             FROM (SELECT to_jsonb(p) AS j FROM public.package p LIMIT 1) one
             CROSS JOIN LATERAL ckan_webhooks.row_hashes(one.j) h
             ON CONFLICT (id) DO NOTHING;
             INSERT INTO ckan_webhooks.shadow_layout (id, columns)
             SELECT DISTINCT h.layout, h.columns
             FROM (SELECT to_jsonb(r) AS j FROM public.resource r LIMIT 1) one
             CROSS JOIN LATERAL ckan_webhooks.row_hashes(one.j) h
             ON CONFLICT (id) DO NOTHING;",
        )
        .await?;
    Ok(())
}

/// Datasets whose cheap columns, or whose resources' cheap columns, differ from the
/// shadow, including datasets and resources that appeared or vanished; on CKAN 2.8
/// also the datasets named by revisions since the watermark. Sorted, deduplicated.
pub async fn moved_datasets(client: &impl GenericClient, layout: &Layout) -> Result<Vec<String>> {
    let mut sql = format!(
        "SELECT coalesce(p.id, s.id)
         FROM public.package p
         FULL JOIN ckan_webhooks.shadow_package s ON s.id = p.id
         WHERE p.id IS NULL OR s.id IS NULL
            OR ({cheap})
               IS DISTINCT FROM
               (s.name, s.type, s.state, s.private, s.owner_org, s.metadata_modified)
         UNION
         SELECT moved.package_id
         FROM public.resource r
         FULL JOIN ckan_webhooks.shadow_resource s ON s.id = r.id
         CROSS JOIN LATERAL unnest(ARRAY[r.package_id, s.package_id]) AS moved (package_id)
         WHERE moved.package_id IS NOT NULL
           AND (r.id IS NULL OR s.id IS NULL
                OR (r.package_id, r.state, {position}, {resource_modified}, {revision})
                   IS DISTINCT FROM
                   (s.package_id, s.state, s.position, s.modified, s.revision_id))",
        cheap = layout.package_cheap_columns(),
        position = layout.resource_position(),
        resource_modified = layout.resource_stamps().0,
        revision = layout.resource_stamps().1,
    );
    if layout.member {
        // Adding a dataset to a group writes only a member row: compare the groups too.
        sql.push_str(
            "
         UNION
         SELECT coalesce(g.id, s.id)
         FROM (SELECT m.table_id AS id,
                      int8send(sum(hashtext(m.group_id || ':' || coalesce(m.capacity, ''))))
                          AS groups
               FROM public.member m
               WHERE m.table_name = 'package' AND m.state = 'active'
                 AND m.capacity IS DISTINCT FROM 'organization'
               GROUP BY m.table_id) g
         FULL JOIN (SELECT id, groups FROM ckan_webhooks.shadow_package
                    WHERE groups IS NOT NULL) s ON s.id = g.id
         WHERE g.groups IS DISTINCT FROM s.groups",
        );
    }
    if layout.revisions {
        // Revision timestamps are set in Python before commit, so a late commit can
        // carry an older timestamp: read back an overlap; the shadow makes re-reads free.
        sql.push_str(
            "
         UNION
         SELECT x.id FROM (
             SELECT pr.continuity_id AS id, rv.timestamp
             FROM public.package_revision pr JOIN public.revision rv ON rv.id = pr.revision_id
             UNION ALL
             SELECT rr.package_id, rv.timestamp
             FROM public.resource_revision rr JOIN public.revision rv ON rv.id = rr.revision_id
         ) x
         WHERE x.id IS NOT NULL
           AND x.timestamp > (SELECT (value #>> '{}')::timestamp - interval '10 minutes'
                              FROM ckan_webhooks.poll_state
                              WHERE name = 'revision_watermark')",
        );
    }
    sql.push_str(" ORDER BY 1");
    let rows = client.query(&sql, &[]).await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Moves the CKAN 2.8 revision watermark to the newest revision now visible.
pub async fn advance_watermark(client: &impl GenericClient) -> Result<()> {
    client
        .execute(
            "UPDATE ckan_webhooks.poll_state
             SET value = to_jsonb((SELECT coalesce(max(timestamp), 'epoch') FROM public.revision)),
                 updated_at = now()
             WHERE name = 'revision_watermark'",
            &[],
        )
        .await?;
    Ok(())
}

/// Datasets among `ids` with changes still waiting in the change log, or derived but
/// with their shadow not refreshed yet: capture has them, so reconciliation leaves them.
pub async fn pending_datasets(client: &impl GenericClient, ids: &[String]) -> Result<Vec<String>> {
    let rows = client
        .query(
            "SELECT package_id FROM ckan_webhooks.change WHERE package_id = ANY($1)
             UNION
             SELECT package_id FROM ckan_webhooks.shadow_dirty WHERE package_id = ANY($1)",
            &[&ids],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Marks datasets whose captured changes were just derived, for [`refresh_dirty`].
pub async fn mark_dirty(client: &impl GenericClient, ids: &[String]) -> Result<()> {
    client
        .execute(
            "INSERT INTO ckan_webhooks.shadow_dirty (package_id)
             SELECT DISTINCT unnest($1::text[]) ON CONFLICT DO NOTHING",
            &[&ids],
        )
        .await?;
    Ok(())
}

/// Refreshes the shadow of the datasets marked dirty and unmarks them, in the caller's
/// transaction; without a baseline it only unmarks (the baseline will see them).
/// Returns how many were refreshed.
pub async fn refresh_dirty(client: &impl GenericClient) -> Result<usize> {
    let rows = client
        .query(
            "DELETE FROM ckan_webhooks.shadow_dirty RETURNING package_id",
            &[],
        )
        .await?;
    let ids: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    if ids.is_empty() || !has_baseline(client).await? {
        return Ok(0);
    }
    let layout = layout(client).await?;
    refresh(client, &layout, &ids).await?;
    Ok(ids.len())
}

/// Brings the shadow of the datasets `ids` and their resources up to the rows as they
/// are now (in the caller's snapshot): upserts what exists, removes what is gone.
pub async fn refresh(client: &impl GenericClient, layout: &Layout, ids: &[String]) -> Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    // One statement: the four writes touch disjoint rows (what exists is upserted, what
    // does not is deleted), and a layout is the same for every row of a table.
    let sql = format!(
        "WITH gone_packages AS (
             DELETE FROM ckan_webhooks.shadow_package s WHERE s.id = ANY($1)
               AND NOT EXISTS (SELECT 1 FROM public.package p WHERE p.id = s.id)
         ), packages AS (
             {packages}
         ), gone_resources AS (
             DELETE FROM ckan_webhooks.shadow_resource s WHERE s.package_id = ANY($1)
               AND NOT EXISTS (SELECT 1 FROM public.resource r
                               WHERE r.id = s.id AND r.package_id = ANY($1))
         ), resources AS (
             {resources}
         )
         INSERT INTO ckan_webhooks.shadow_layout (id, columns)
         SELECT DISTINCT h.layout, h.columns
         FROM (SELECT (SELECT to_jsonb(p) FROM public.package p WHERE p.id = ANY($1) LIMIT 1)
               UNION ALL
               SELECT (SELECT to_jsonb(r) FROM public.resource r
                       WHERE r.package_id = ANY($1) LIMIT 1)) x (j)
         CROSS JOIN LATERAL ckan_webhooks.row_hashes(x.j) h
         WHERE x.j IS NOT NULL
         ON CONFLICT (id) DO NOTHING",
        packages = upsert_packages(layout, "p.id = ANY($1)"),
        resources = upsert_resources(layout, "r.package_id = ANY($1)"),
    );
    client.execute(&sql, &[&ids]).await?;
    Ok(())
}

/// Makes the shadow of the datasets `ids` what `snapshot` read of them (in the same
/// transaction), without hashing the rows again: what exists is upserted, what is gone
/// is deleted.
pub async fn store(client: &impl GenericClient, snapshot: &Snapshot, ids: &[String]) -> Result<()> {
    let opt_hex = |bytes: &Option<Vec<u8>>| bytes.as_deref().map(hex);
    let field = |row: &Value, key: &str| row.get(key).cloned().unwrap_or(Value::Null);
    let packages: Vec<Value> = snapshot
        .packages
        .iter()
        .map(|c| {
            serde_json::json!({
                "id": c.id, "name": field(&c.row, "name"), "type": field(&c.row, "type"),
                "state": field(&c.row, "state"), "private": field(&c.row, "private"),
                "owner_org": field(&c.row, "owner_org"),
                "metadata_modified": field(&c.row, "metadata_modified"),
                "content": hex(&c.content), "fields": c.fields,
                "layout": c.layout, "extras": opt_hex(&c.children[0]), "tags": opt_hex(&c.children[1]),
                "groups": opt_hex(&c.children[2]),
            })
        })
        .collect();
    let resources: Vec<Value> = snapshot
        .resources
        .iter()
        .map(|c| {
            serde_json::json!({
                "id": c.id, "package_id": c.package_id, "state": field(&c.row, "state"),
                "format": field(&c.row, "format"), "position": field(&c.row, "position"),
                "modified": field(&c.row, "metadata_modified"),
                "revision_id": field(&c.row, "revision_id"),
                "content": hex(&c.content), "fields": c.fields,
                "layout": c.layout,
            })
        })
        .collect();
    let mut layouts: Vec<Value> = snapshot
        .packages
        .iter()
        .chain(&snapshot.resources)
        .map(|c| serde_json::json!({"id": c.layout, "columns": c.columns}))
        .collect();
    layouts.dedup();
    client
        .execute(
            "WITH p AS (
                 SELECT * FROM jsonb_to_recordset($2::jsonb) AS x (
                     id text, name text, type text, state text, private boolean,
                     owner_org text, metadata_modified timestamp, content text,
                     fields integer[], layout integer, extras text, tags text, groups text)
             ), r AS (
                 SELECT * FROM jsonb_to_recordset($3::jsonb) AS x (
                     id text, package_id text, state text, format text, position integer,
                     modified timestamp, revision_id text, content text, fields integer[],
                     layout integer)
             ), gone_packages AS (
                 DELETE FROM ckan_webhooks.shadow_package s WHERE s.id = ANY($1)
                   AND s.id NOT IN (SELECT id FROM p)
             ), packages AS (
                 INSERT INTO ckan_webhooks.shadow_package AS s
                     (id, name, type, state, private, owner_org, metadata_modified, content,
                      fields, layout, extras, tags, groups)
                 SELECT id, name, type, state, private, owner_org, metadata_modified,
                        decode(content, 'hex'), fields, layout, decode(extras, 'hex'),
                        decode(tags, 'hex'), decode(groups, 'hex')
                 FROM p
                 ON CONFLICT (id) DO UPDATE SET
                     name = excluded.name, type = excluded.type, state = excluded.state,
                     private = excluded.private, owner_org = excluded.owner_org,
                     metadata_modified = excluded.metadata_modified,
                     content = excluded.content, fields = excluded.fields,
                     layout = excluded.layout, extras = excluded.extras, tags = excluded.tags,
                     groups = excluded.groups
             ), gone_resources AS (
                 DELETE FROM ckan_webhooks.shadow_resource s WHERE s.package_id = ANY($1)
                   AND s.id NOT IN (SELECT id FROM r)
             ), resources AS (
                 INSERT INTO ckan_webhooks.shadow_resource AS s
                     (id, package_id, state, format, position, modified, revision_id, content,
                      fields, layout)
                 SELECT id, package_id, state, format, position, modified, revision_id,
                        decode(content, 'hex'), fields, layout
                 FROM r
                 ON CONFLICT (id) DO UPDATE SET
                     package_id = excluded.package_id, state = excluded.state,
                     format = excluded.format, position = excluded.position,
                     modified = excluded.modified, revision_id = excluded.revision_id,
                     content = excluded.content, fields = excluded.fields,
                     layout = excluded.layout
             )
             INSERT INTO ckan_webhooks.shadow_layout (id, columns)
             SELECT DISTINCT ON (x.id) x.id, x.columns
             FROM jsonb_to_recordset($4::jsonb) AS x (id integer, columns text[])
             ON CONFLICT (id) DO NOTHING",
            &[
                &ids,
                &Value::Array(packages),
                &Value::Array(resources),
                &Value::Array(layouts),
            ],
        )
        .await?;
    Ok(())
}

/// Writes synthesised row changes into the change log, in order, as one transaction's.
pub async fn record_changes(client: &impl GenericClient, changes: &[Value]) -> Result<u64> {
    if changes.is_empty() {
        return Ok(0);
    }
    let n = client
        .execute(
            "INSERT INTO ckan_webhooks.change (table_name, op, row_id, package_id, old_row,
                                               new_row)
             SELECT e.j ->> 'table_name', (e.j ->> 'op')::\"char\", e.j ->> 'row_id',
                    e.j ->> 'package_id', nullif(e.j -> 'old_row', 'null'),
                    nullif(e.j -> 'new_row', 'null')
             FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY AS e (j, n)
             ORDER BY e.n",
            &[&Value::Array(changes.to_vec())],
        )
        .await?;
    Ok(n)
}

/// Stores a figure of the last pass (e.g. how long it took) in the poll state.
pub async fn record_pass(client: &impl GenericClient, name: &str, value: &Value) -> Result<()> {
    client
        .execute(
            "INSERT INTO ckan_webhooks.poll_state (name, value) VALUES ($1, $2)
             ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = now()",
            &[&name, value],
        )
        .await?;
    Ok(())
}

/// Lowercase hex of a hash, as the change log and the shadow's JSON transport carry it.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
