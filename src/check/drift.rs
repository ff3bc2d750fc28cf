//! Schema drift: the columns of CKAN's `package` and `resource` now, against the columns
//! recorded when capture was installed (`ckan_webhooks.column_snapshot`).

use std::collections::BTreeMap;

/// One column of a CKAN table.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Column {
    /// `package` or `resource`.
    pub table: String,
    /// The column's name.
    pub name: String,
    /// Its type as `format_type()` spells it.
    pub data_type: String,
}

/// Columns the deriver and the capture functions read by name: losing one of these
/// changes what events come out, so it is a problem rather than a note.
const NEEDED: [(&str, &str); 11] = [
    ("package", "id"),
    ("package", "name"),
    ("package", "state"),
    ("package", "private"),
    ("package", "owner_org"),
    ("package", "type"),
    ("package", "metadata_modified"),
    ("resource", "id"),
    ("resource", "package_id"),
    ("resource", "state"),
    ("resource", "format"),
];

/// How the columns moved since install.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Drift {
    /// Columns that exist now and did not then.
    pub added: Vec<Column>,
    /// Columns that existed then and do not now (renames excluded).
    pub dropped: Vec<Column>,
    /// A dropped and an added column of the same table and type: most likely a rename.
    pub renamed: Vec<(Column, Column)>,
    /// Columns whose type changed: (then, type now).
    pub retyped: Vec<(Column, String)>,
}

impl Drift {
    /// True when nothing moved.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty()
            && self.dropped.is_empty()
            && self.renamed.is_empty()
            && self.retyped.is_empty()
    }

    /// Columns capture and derivation rely on that are gone or renamed.
    pub fn lost_needed(&self) -> Vec<&Column> {
        self.dropped
            .iter()
            .chain(self.renamed.iter().map(|(old, _)| old))
            .filter(|c| is_needed(c))
            .collect()
    }
}

fn is_needed(column: &Column) -> bool {
    NEEDED
        .iter()
        .any(|(t, n)| *t == column.table && *n == column.name)
}

/// Compares the recorded columns with the current ones.
pub fn compare(then: &[Column], now: &[Column]) -> Drift {
    let key = |c: &Column| (c.table.clone(), c.name.clone());
    let then_map: BTreeMap<_, _> = then.iter().map(|c| (key(c), c)).collect();
    let now_map: BTreeMap<_, _> = now.iter().map(|c| (key(c), c)).collect();

    let mut drift = Drift::default();
    let mut added: Vec<Column> = now
        .iter()
        .filter(|c| !then_map.contains_key(&key(c)))
        .cloned()
        .collect();
    for old in then {
        match now_map.get(&key(old)) {
            Some(new) if new.data_type != old.data_type => {
                drift.retyped.push((old.clone(), new.data_type.clone()))
            }
            Some(_) => {}
            None => {
                // Pair it with the first added column of the same table and type.
                let partner = added
                    .iter()
                    .position(|a| a.table == old.table && a.data_type == old.data_type);
                match partner {
                    Some(at) => drift.renamed.push((old.clone(), added.remove(at))),
                    None => drift.dropped.push(old.clone()),
                }
            }
        }
    }
    drift.added = added;
    drift
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(table: &str, name: &str, ty: &str) -> Column {
        Column {
            table: table.into(),
            name: name.into(),
            data_type: ty.into(),
        }
    }

    #[test]
    fn added_dropped_renamed_and_retyped() {
        let then = vec![
            col("package", "id", "text"),
            col("package", "title", "text"),
            col("package", "private", "boolean"),
            col("resource", "size", "bigint"),
            col("resource", "url", "text"),
        ];
        let now = vec![
            col("package", "id", "text"),
            col("package", "headline", "text"),
            col("package", "is_private", "integer"),
            col("resource", "size", "numeric"),
            col("resource", "url", "text"),
            col("resource", "extra_flag", "boolean"),
        ];
        let drift = compare(&then, &now);
        assert_eq!(
            drift.renamed,
            vec![(
                col("package", "title", "text"),
                col("package", "headline", "text")
            )]
        );
        assert_eq!(drift.dropped, vec![col("package", "private", "boolean")]);
        assert_eq!(
            drift.added,
            vec![
                col("package", "is_private", "integer"),
                col("resource", "extra_flag", "boolean")
            ]
        );
        assert_eq!(
            drift.retyped,
            vec![(col("resource", "size", "bigint"), "numeric".to_string())]
        );
        assert_eq!(
            drift.lost_needed(),
            vec![&col("package", "private", "boolean")]
        );
    }

    #[test]
    fn no_change_is_empty() {
        let cols = vec![col("package", "id", "text")];
        assert!(compare(&cols, &cols).is_empty());
    }
}
