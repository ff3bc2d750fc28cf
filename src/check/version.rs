//! Which CKAN this is: from its migration tables first, and from the shape of its tables
//! when the migration table says nothing we know.

use std::collections::BTreeSet;

/// The last core alembic revision of each CKAN release line, read from the migration
/// scripts shipped in the CKAN wheels (2.10.11, 2.11.6, 2.12.0) and in the 2.9 sources.
const ALEMBIC_HEADS: [(&str, &str); 4] = [
    ("ccd38ad5fced", "2.9"),
    ("9f33a0280c51", "2.10"),
    ("4a5e3465beb6", "2.11"),
    ("9445ce34fc23", "2.12"),
];

/// What CKAN's migration bookkeeping says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Migrations {
    /// CKAN 2.9 and later: the revisions in `alembic_version` (empty when unreadable).
    Alembic(Vec<String>),
    /// CKAN 2.8 and older: the sqlalchemy-migrate version, when readable.
    Migrate(Option<i32>),
    /// Neither table exists: this is not a CKAN database.
    None,
}

/// The CKAN version as far as the database tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CkanVersion {
    /// The release line ("2.8", "2.9", … "2.12") when it could be told, else None.
    pub line: Option<&'static str>,
    /// A sentence for the report, saying how the version was told.
    pub description: String,
}

/// Tells the CKAN version from the migration tables, the public tables and the columns of
/// `package` and `resource`.
pub fn ckan_version(
    migrations: &Migrations,
    tables: &BTreeSet<String>,
    package_columns: &BTreeSet<String>,
) -> CkanVersion {
    match migrations {
        Migrations::None => CkanVersion {
            line: None,
            description: "unknown: neither alembic_version nor migrate_version exists".into(),
        },
        Migrations::Migrate(version) => CkanVersion {
            line: Some("2.8"),
            description: match version {
                Some(v) => format!("2.8 or older (sqlalchemy-migrate version {v})"),
                None => "2.8 or older (migrate_version)".into(),
            },
        },
        Migrations::Alembic(revisions) => {
            let known = revisions.iter().find_map(|rev| {
                ALEMBIC_HEADS
                    .iter()
                    .find(|(head, _)| head == rev)
                    .map(|(head, line)| (*head, *line))
            });
            let shape = shape_of(tables, package_columns);
            match (known, revisions.first()) {
                (Some((head, line)), _) => CkanVersion {
                    line: Some(line),
                    description: format!("{line} (alembic revision {head})"),
                },
                (None, Some(rev)) => CkanVersion {
                    line: None,
                    description: format!(
                        "2.9 or later (alembic revision {rev}; its tables look like {shape})"
                    ),
                },
                (None, None) => CkanVersion {
                    line: Some(shape),
                    description: format!("{shape}, by its tables (alembic_version is empty)"),
                },
            }
        }
    }
}

/// The release line whose fresh schema these tables match (2.9 and later only).
fn shape_of(tables: &BTreeSet<String>, package_columns: &BTreeSet<String>) -> &'static str {
    if !tables.contains("package_extra") && package_columns.contains("extras") {
        // 2.12 moved extras into package.extras and dropped the revision tables.
        "2.12"
    } else if !package_columns.contains("plugin_data") {
        // package.plugin_data arrived in 2.10.
        "2.9"
    } else if tables.contains("rating") {
        // 2.11's schema sync dropped the unused rating table.
        "2.10"
    } else {
        "2.11"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn known_heads_name_their_release() {
        let v = ckan_version(
            &Migrations::Alembic(vec!["4a5e3465beb6".into()]),
            &set(&[]),
            &set(&[]),
        );
        assert_eq!(v.line, Some("2.11"));
        assert_eq!(v.description, "2.11 (alembic revision 4a5e3465beb6)");
    }

    #[test]
    fn unknown_revisions_fall_back_to_the_shape() {
        let v = ckan_version(
            &Migrations::Alembic(vec!["abc".into()]),
            &set(&["package_extra", "rating"]),
            &set(&["plugin_data"]),
        );
        assert_eq!(v.line, None);
        assert!(v.description.contains("revision abc"), "{}", v.description);
        assert!(
            v.description.contains("look like 2.10"),
            "{}",
            v.description
        );

        let empty = ckan_version(&Migrations::Alembic(vec![]), &set(&[]), &set(&["extras"]));
        assert_eq!(empty.line, Some("2.12"));
    }

    #[test]
    fn migrate_version_is_2_8_and_nothing_is_unknown() {
        let v = ckan_version(&Migrations::Migrate(Some(87)), &set(&[]), &set(&[]));
        assert_eq!(v.line, Some("2.8"));
        assert!(v.description.contains("87"));
        assert_eq!(
            ckan_version(&Migrations::None, &set(&[]), &set(&[])).line,
            None
        );
    }
}
