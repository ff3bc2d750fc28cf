//! Which CKAN tables and columns exist, read at every pass, and the SQL fragments that
//! stand for a column or a child table whether or not this CKAN has it.

use crate::error::Result;
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
    pub(super) fn package_has(&self, column: &str) -> bool {
        self.package_columns.iter().any(|c| c == column)
    }

    pub(super) fn resource_has(&self, column: &str) -> bool {
        self.resource_columns.iter().any(|c| c == column)
    }

    /// `alias.column`, or a typed NULL when the column is gone.
    pub(super) fn package_col(&self, column: &str, ty: &str) -> String {
        if self.package_has(column) {
            format!("p.{column}")
        } else {
            format!("NULL::{ty}")
        }
    }

    /// The dataset columns the scan compares and the shadow keeps, in the shadow's
    /// order: name, type, state, private, owner_org, metadata_modified.
    pub(super) fn package_cheap_columns(&self) -> String {
        [
            ("name", "text"),
            ("type", "text"),
            ("state", "text"),
            ("private", "boolean"),
            ("owner_org", "text"),
            ("metadata_modified", "timestamp"),
        ]
        .iter()
        .map(|(column, ty)| self.package_col(column, ty))
        .collect::<Vec<_>>()
        .join(", ")
    }

    /// The resource columns the scan compares to notice a change: CKAN 2.9+ sets
    /// `metadata_modified` on every resource write, 2.8 a new `revision_id`.
    pub(super) fn resource_stamps(&self) -> (String, String) {
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

    pub(super) fn resource_position(&self) -> String {
        if self.resource_has("position") {
            "r.position".into()
        } else {
            "NULL::integer".into()
        }
    }

    /// The sha256 of a package's active extras, tags and groups, as three expressions.
    pub(super) fn children(&self) -> [String; 3] {
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
    let row = client
        .query_one(
            "SELECT (SELECT coalesce(array_agg(a.attname::text ORDER BY a.attnum), '{}')
                     FROM pg_attribute a
                     WHERE a.attrelid = to_regclass('public.package') AND a.attnum > 0
                       AND NOT a.attisdropped),
                    (SELECT coalesce(array_agg(a.attname::text ORDER BY a.attnum), '{}')
                     FROM pg_attribute a
                     WHERE a.attrelid = to_regclass('public.resource') AND a.attnum > 0
                       AND NOT a.attisdropped),
                    to_regclass('public.package_extra') IS NOT NULL,
                    to_regclass('public.package_tag') IS NOT NULL
                        AND to_regclass('public.tag') IS NOT NULL,
                    to_regclass('public.member') IS NOT NULL,
                    to_regclass('public.revision') IS NOT NULL
                        AND to_regclass('public.package_revision') IS NOT NULL",
            &[],
        )
        .await?;
    let package_columns: Vec<String> = row.get(0);
    let revisions = row.get::<_, bool>(5) && package_columns.iter().any(|c| c == "revision_id");
    Ok(Layout {
        package_columns,
        resource_columns: row.get(1),
        package_extra: row.get(2),
        tags: row.get(3),
        member: row.get(4),
        revisions,
    })
}
