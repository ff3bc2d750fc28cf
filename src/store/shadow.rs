//! Queries on the shadow (what the service last saw of each dataset and resource) and on
//! the CKAN rows a poll or reconciliation pass compares with it. The SQL is built once
//! per pass from the columns and tables this CKAN has, so a column dropped or renamed
//! under a running service changes the query instead of breaking it.

use crate::error::Result;
use serde_json::Value;
use std::collections::HashMap;
use tokio_postgres::GenericClient;

/// What this CKAN database has that the poll queries depend on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Layout {
    /// Columns of `public.package`.
    pub package_columns: Vec<String>,
    /// Columns of `public.resource`.
    pub resource_columns: Vec<String>,
    /// `package_extra` exists (CKAN ≤ 2.11 keeps extras as rows).
    pub package_extra: bool,
    /// `package_tag` and `tag` exist.
    pub tags: bool,
    /// `member` and `group` exist.
    pub member: bool,
    /// Revisions are live: CKAN 2.8 and older (`package.revision_id` and `revision`).
    pub revisions: bool,
}

impl Layout {
    fn package_has(&self, column: &str) -> bool {
        self.package_columns.iter().any(|c| c == column)
    }

    fn resource_has(&self, column: &str) -> bool {
        self.resource_columns.iter().any(|c| c == column)
    }

    /// `alias.column`, or a typed NULL when the column is gone.
    fn package_col(&self, column: &str, ty: &str) -> String {
        if self.package_has(column) {
            format!("p.{column}")
        } else {
            format!("NULL::{ty}")
        }
    }

    /// The resource columns the scan compares to notice a change: CKAN 2.9+ sets
    /// `metadata_modified` on every resource write, 2.8 a new `revision_id`.
    fn resource_stamps(&self) -> (String, String) {
        let modified = if self.resource_has("metadata_modified") {
            "r.metadata_modified"
        } else {
            "NULL::timestamp"
        };
        let revision = if self.resource_has("revision_id") {
            "r.revision_id"
        } else {
            "NULL::text"
        };
        (modified.into(), revision.into())
    }

    fn resource_position(&self) -> String {
        if self.resource_has("position") {
            "r.position".into()
        } else {
            "NULL::integer".into()
        }
    }

    /// The sha256 of a package's active extras, tags and groups, as three expressions.
    fn children(&self) -> [String; 3] {
        let extras = if self.package_extra {
            "(SELECT sha256(convert_to(string_agg(x.key || '=' || coalesce(x.value, ''),
                                                  E'\\n' ORDER BY x.key), 'UTF8'))
              FROM public.package_extra x WHERE x.package_id = p.id AND x.state = 'active')"
                .to_string()
        } else {
            "NULL::bytea".to_string()
        };
        let tags = if self.tags {
            "(SELECT sha256(convert_to(string_agg(t.name, E'\\n' ORDER BY t.name), 'UTF8'))
              FROM public.package_tag pt JOIN public.tag t ON t.id = pt.tag_id
              WHERE pt.package_id = p.id AND pt.state = 'active')"
                .to_string()
        } else {
            "NULL::bytea".to_string()
        };
        let groups = if self.member {
            "(SELECT int8send(sum(hashtext(m.group_id || ':' || coalesce(m.capacity, ''))))
              FROM public.member m
              WHERE m.table_name = 'package' AND m.table_id = p.id AND m.state = 'active'
                AND m.capacity IS DISTINCT FROM 'organization')"
                .to_string()
        } else {
            "NULL::bytea".to_string()
        };
        [extras, tags, groups]
    }
}

/// Reads which CKAN tables and columns exist now.
pub async fn layout(client: &impl GenericClient) -> Result<Layout> {
    let columns = |table: &'static str| async move {
        let rows = client
            .query(
                "SELECT a.attname::text FROM pg_attribute a
                 WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped
                 ORDER BY a.attnum",
                &[&table],
            )
            .await?;
        Ok::<_, crate::error::Error>(rows.iter().map(|r| r.get::<_, String>(0)).collect())
    };
    let package_columns: Vec<String> = columns("public.package").await?;
    let resource_columns: Vec<String> = columns("public.resource").await?;
    let row = client
        .query_one(
            "SELECT to_regclass('public.package_extra') IS NOT NULL,
                    to_regclass('public.package_tag') IS NOT NULL
                        AND to_regclass('public.tag') IS NOT NULL,
                    to_regclass('public.member') IS NOT NULL,
                    to_regclass('public.revision') IS NOT NULL
                        AND to_regclass('public.package_revision') IS NOT NULL",
            &[],
        )
        .await?;
    let revisions = row.get::<_, bool>(3) && package_columns.iter().any(|c| c == "revision_id");
    Ok(Layout {
        package_columns,
        resource_columns,
        package_extra: row.get(0),
        tags: row.get(1),
        member: row.get(2),
        revisions,
    })
}

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
    record_layouts(client, layout).await?;
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
         SELECT p.id, {name}, {ty}, {state}, {private}, {owner_org}, {modified},
                h.content, h.fields, h.layout, {extras}, {tags}, {groups}
         FROM public.package p
         CROSS JOIN LATERAL ckan_webhooks.row_hashes(to_jsonb(p)) h
         WHERE {filter}
         ON CONFLICT (id) DO UPDATE SET
             name = excluded.name, type = excluded.type, state = excluded.state,
             private = excluded.private, owner_org = excluded.owner_org,
             metadata_modified = excluded.metadata_modified, content = excluded.content,
             fields = excluded.fields, layout = excluded.layout, extras = excluded.extras,
             tags = excluded.tags, groups = excluded.groups",
        name = layout.package_col("name", "text"),
        ty = layout.package_col("type", "text"),
        state = layout.package_col("state", "text"),
        private = layout.package_col("private", "boolean"),
        owner_org = layout.package_col("owner_org", "text"),
        modified = layout.package_col("metadata_modified", "timestamp"),
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
async fn record_layouts(client: &impl GenericClient, _layout: &Layout) -> Result<()> {
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
            OR ({name}, {ty}, {state}, {private}, {owner_org}, {modified})
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
        name = layout.package_col("name", "text"),
        ty = layout.package_col("type", "text"),
        state = layout.package_col("state", "text"),
        private = layout.package_col("private", "boolean"),
        owner_org = layout.package_col("owner_org", "text"),
        modified = layout.package_col("metadata_modified", "timestamp"),
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

/// Datasets among `ids` with changes still waiting in the change log: capture has them,
/// so reconciliation leaves them to it.
pub async fn pending_datasets(client: &impl GenericClient, ids: &[String]) -> Result<Vec<String>> {
    let rows = client
        .query(
            "SELECT DISTINCT package_id FROM ckan_webhooks.change WHERE package_id = ANY($1)",
            &[&ids],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// A dataset or resource as the shadow last saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct Seen {
    /// The entity's id.
    pub id: String,
    /// The dataset it belongs to (itself for a dataset).
    pub package_id: String,
    /// Its visibility columns, as the "before" image: a dataset's name, type, state,
    /// private and owner_org; a resource's package_id, state and format.
    pub head: Value,
    /// sha256 of its content.
    pub content: Vec<u8>,
    /// One hash per column, aligned to `layout`.
    pub fields: Vec<i32>,
    /// The column list `fields` is aligned to.
    pub layout: i32,
    /// A dataset's extras, tags and groups hashes.
    pub children: [Option<Vec<u8>>; 3],
}

/// A dataset or resource as it is now.
#[derive(Debug, Clone, PartialEq)]
pub struct Current {
    /// The entity's id.
    pub id: String,
    /// The dataset it belongs to (itself for a dataset).
    pub package_id: String,
    /// The whole row.
    pub row: Value,
    /// sha256 of its content.
    pub content: Vec<u8>,
    /// One hash per column, aligned to `columns`.
    pub fields: Vec<i32>,
    /// The row's column names, in `fields` order.
    pub columns: Vec<String>,
    /// A dataset's extras, tags and groups hashes.
    pub children: [Option<Vec<u8>>; 3],
}

/// Everything one pass compares for a set of datasets.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Datasets as the shadow saw them.
    pub seen_packages: Vec<Seen>,
    /// Datasets as they are.
    pub packages: Vec<Current>,
    /// Their resources as the shadow saw them.
    pub seen_resources: Vec<Seen>,
    /// Their resources as they are.
    pub resources: Vec<Current>,
    /// Column lists of the shadow's layouts.
    pub layouts: HashMap<i32, Vec<String>>,
    /// hashtext('null'): the hash of a column that is absent on one side.
    pub null_hash: i32,
}

/// Reads the shadow and the current rows of the datasets `ids` and their resources.
pub async fn snapshot(
    client: &impl GenericClient,
    layout: &Layout,
    ids: &[String],
) -> Result<Snapshot> {
    let mut snapshot = Snapshot::default();
    let [extras, tags, groups] = layout.children();

    let rows = client
        .query(
            "SELECT id, jsonb_build_object('id', id, 'name', name, 'type', type, 'state', state,
                                           'private', private, 'owner_org', owner_org),
                    content, fields, layout, extras, tags, groups
             FROM ckan_webhooks.shadow_package WHERE id = ANY($1)",
            &[&ids],
        )
        .await?;
    snapshot.seen_packages = rows
        .iter()
        .map(|r| Seen {
            id: r.get(0),
            package_id: r.get(0),
            head: r.get(1),
            content: r.get(2),
            fields: r.get(3),
            layout: r.get(4),
            children: [r.get(5), r.get(6), r.get(7)],
        })
        .collect();

    let rows = client
        .query(
            &format!(
                "SELECT p.id, to_jsonb(p), h.content, h.fields, h.columns, {extras}, {tags},
                        {groups}
                 FROM public.package p
                 CROSS JOIN LATERAL ckan_webhooks.row_hashes(to_jsonb(p)) h
                 WHERE p.id = ANY($1)"
            ),
            &[&ids],
        )
        .await?;
    snapshot.packages = rows
        .iter()
        .map(|r| Current {
            id: r.get(0),
            package_id: r.get(0),
            row: r.get(1),
            content: r.get(2),
            fields: r.get(3),
            columns: r.get(4),
            children: [r.get(5), r.get(6), r.get(7)],
        })
        .collect();

    let rows = client
        .query(
            "SELECT id, package_id, jsonb_build_object('id', id, 'package_id', package_id,
                                                       'state', state, 'format', format),
                    content, fields, layout
             FROM ckan_webhooks.shadow_resource WHERE package_id = ANY($1)
             ORDER BY package_id, position NULLS LAST, id",
            &[&ids],
        )
        .await?;
    snapshot.seen_resources = rows
        .iter()
        .map(|r| Seen {
            id: r.get(0),
            package_id: r.get(1),
            head: r.get(2),
            content: r.get(3),
            fields: r.get(4),
            layout: r.get(5),
            children: [None, None, None],
        })
        .collect();

    let rows = client
        .query(
            &format!(
                "SELECT r.id, r.package_id, to_jsonb(r), h.content, h.fields, h.columns
                 FROM public.resource r
                 CROSS JOIN LATERAL ckan_webhooks.row_hashes(to_jsonb(r)) h
                 WHERE r.package_id = ANY($1)
                 ORDER BY r.package_id, {position} NULLS LAST, r.id",
                position = layout.resource_position(),
            ),
            &[&ids],
        )
        .await?;
    snapshot.resources = rows
        .iter()
        .map(|r| Current {
            id: r.get(0),
            package_id: r.get(1),
            row: r.get(2),
            content: r.get(3),
            fields: r.get(4),
            columns: r.get(5),
            children: [None, None, None],
        })
        .collect();

    let mut wanted: Vec<i32> = snapshot
        .seen_packages
        .iter()
        .chain(&snapshot.seen_resources)
        .map(|s| s.layout)
        .collect();
    wanted.sort_unstable();
    wanted.dedup();
    let rows = client
        .query(
            "SELECT id, columns FROM ckan_webhooks.shadow_layout WHERE id = ANY($1)",
            &[&wanted],
        )
        .await?;
    snapshot.layouts = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    snapshot.null_hash = client
        .query_one("SELECT hashtext('null')", &[])
        .await?
        .get(0);
    Ok(snapshot)
}

/// Brings the shadow of the datasets `ids` and their resources up to the rows as they
/// are now (in the caller's snapshot): upserts what exists, removes what is gone.
pub async fn refresh(client: &impl GenericClient, layout: &Layout, ids: &[String]) -> Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    client
        .execute(
            "DELETE FROM ckan_webhooks.shadow_package s WHERE s.id = ANY($1)
               AND NOT EXISTS (SELECT 1 FROM public.package p WHERE p.id = s.id)",
            &[&ids],
        )
        .await?;
    client
        .execute(&upsert_packages(layout, "p.id = ANY($1)"), &[&ids])
        .await?;
    client
        .execute(
            "DELETE FROM ckan_webhooks.shadow_resource s WHERE s.package_id = ANY($1)",
            &[&ids],
        )
        .await?;
    client
        .execute(&upsert_resources(layout, "r.package_id = ANY($1)"), &[&ids])
        .await?;
    client
        .execute(
            "INSERT INTO ckan_webhooks.shadow_layout (id, columns)
             SELECT DISTINCT h.layout, h.columns
             FROM (SELECT to_jsonb(p) AS j FROM public.package p WHERE p.id = ANY($1)
                   UNION ALL
                   SELECT to_jsonb(r) FROM public.resource r WHERE r.package_id = ANY($1)) x
             CROSS JOIN LATERAL ckan_webhooks.row_hashes(x.j) h
             ON CONFLICT (id) DO NOTHING",
            &[&ids],
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
