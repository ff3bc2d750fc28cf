//! Read-only lookups of CKAN datasets and organizations by id or name, which turn a
//! webhook's `dataset` and `organization` filters into ids when it is created, so that
//! renaming the dataset or organization later does not break the filter.

use super::users::CkanUser;
use crate::error::Result;
use tokio_postgres::GenericClient;

/// The id of the dataset whose id or name is `value`, if `reader` may read it now:
/// sysadmins any dataset that is not deleted; anyone a public active one; for a private
/// or draft one, its creator, active members of its active organization and, when
/// `collaborators` is on, its collaborators. An id wins over a name.
pub async fn readable_dataset_id<C: GenericClient>(
    client: &C,
    value: &str,
    reader: &CkanUser,
    collaborators: bool,
) -> Result<Option<String>> {
    // package_member only exists from CKAN 2.9 on, so it is named only when needed.
    let collaborator = if collaborators {
        "OR EXISTS (SELECT 1 FROM public.package_member pm \
                    WHERE pm.package_id = p.id AND pm.user_id = $3)"
    } else {
        ""
    };
    let sql = format!(
        "SELECT p.id FROM public.package p \
         WHERE (p.id = $1 OR p.name = $1) AND p.state <> 'deleted' \
           AND ($2 OR (NOT p.private AND p.state = 'active') OR p.creator_user_id = $3 \
                OR EXISTS (SELECT 1 FROM public.member m \
                           JOIN public.\"group\" g ON g.id = m.group_id \
                           WHERE m.group_id = p.owner_org AND m.table_name = 'user' \
                             AND m.table_id = $3 AND m.state = 'active' \
                             AND g.state = 'active' AND g.is_organization) \
                {collaborator}) \
         ORDER BY p.id = $1 DESC LIMIT 1"
    );
    let row = client
        .query_opt(&sql, &[&value, &reader.sysadmin, &reader.id])
        .await?;
    Ok(row.map(|row| row.get(0)))
}

/// The id of the active organization whose id or name is `value`; an id wins over a
/// name. Organizations are public in CKAN, so no reader is needed.
pub async fn organization_id<C: GenericClient>(client: &C, value: &str) -> Result<Option<String>> {
    let row = client
        .query_opt(
            "SELECT id FROM public.\"group\" \
             WHERE (id = $1 OR name = $1) AND is_organization AND state = 'active' \
             ORDER BY id = $1 DESC LIMIT 1",
            &[&value],
        )
        .await?;
    Ok(row.map(|row| row.get(0)))
}
