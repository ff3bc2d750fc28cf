//! One chunk of datasets as the shadow saw them and as they are, read for comparison.

use super::Layout;
use crate::error::Result;
use serde_json::Value;
use std::collections::HashMap;
use tokio_postgres::GenericClient;

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
    /// The id of that column list.
    pub layout: i32,
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
                                           'private', private, 'owner_org', owner_org,
                                           'metadata_modified', metadata_modified),
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
                        {groups}, h.layout
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
            layout: r.get(8),
            children: [r.get(5), r.get(6), r.get(7)],
        })
        .collect();

    let rows = client
        .query(
            "SELECT id, package_id,
                    jsonb_build_object('id', id, 'package_id', package_id, 'state', state,
                                       'format', format, 'position', position)
                    || CASE WHEN modified IS NULL THEN '{}'::jsonb
                            ELSE jsonb_build_object('metadata_modified', modified) END,
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
                "SELECT r.id, r.package_id, to_jsonb(r), h.content, h.fields, h.columns,
                        h.layout
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
            layout: r.get(6),
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
