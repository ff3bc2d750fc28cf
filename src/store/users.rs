//! Read-only queries on CKAN's own identity tables (`user`, `api_token`, `member`,
//! `group`), used to authenticate API callers with CKAN's tokens and to check their
//! organization rights. Nothing here writes to CKAN's tables.

use crate::error::Result;
use tokio_postgres::GenericClient;

/// A CKAN user as the API needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CkanUser {
    /// `user.id`, the owner id of the webhooks this user creates.
    pub id: String,
    /// `user.name`, for the log.
    pub name: String,
    /// Whether the user is a CKAN sysadmin.
    pub sysadmin: bool,
    /// `active`, `pending` or `deleted`; only active users may call the API.
    pub state: String,
}

/// The highest organization capacity a user holds in any active organization.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Capacity {
    /// No editor or admin membership (members and non-members alike).
    None,
    /// Editor of at least one organization.
    Editor,
    /// Admin of at least one organization.
    Admin,
}

fn from_row(row: &tokio_postgres::Row) -> CkanUser {
    CkanUser {
        id: row.get("id"),
        name: row.get("name"),
        sysadmin: row.get::<_, Option<bool>>("sysadmin").unwrap_or(false),
        state: row.get("state"),
    }
}

/// The owner of the API token whose id (the JWT's `jti`) is `token_id`.
pub async fn user_by_token_id<C: GenericClient>(
    client: &C,
    token_id: &str,
) -> Result<Option<CkanUser>> {
    // PostgreSQL text cannot hold NUL, so no row matches; asking would be an error.
    if token_id.contains('\0') {
        return Ok(None);
    }
    // CKAN 2.8 has no api_token table: no token can name anyone there.
    let has_tokens: bool = client
        .query_one("SELECT to_regclass('public.api_token') IS NOT NULL", &[])
        .await?
        .get(0);
    if !has_tokens {
        return Ok(None);
    }
    let row = client
        .query_opt(
            "SELECT u.id, u.name, u.sysadmin, u.state \
             FROM public.api_token t JOIN public.\"user\" u ON u.id = t.user_id \
             WHERE t.id = $1",
            &[&token_id],
        )
        .await?;
    Ok(row.as_ref().map(from_row))
}

/// The user holding a legacy API key (`user.apikey`, CKAN 2.9 and older). CKAN puts
/// no unique constraint on the column; a key that two users share identifies nobody.
pub async fn user_by_api_key<C: GenericClient>(
    client: &C,
    api_key: &str,
) -> Result<Option<CkanUser>> {
    if api_key.contains('\0') {
        return Ok(None);
    }
    let rows = client
        .query(
            "SELECT id, name, sysadmin, state FROM public.\"user\" WHERE apikey = $1 LIMIT 2",
            &[&api_key],
        )
        .await?;
    match rows.as_slice() {
        [row] => Ok(Some(from_row(row))),
        _ => Ok(None),
    }
}

/// The highest capacity the user holds through an active membership of an active
/// organization.
pub async fn organization_capacity<C: GenericClient>(
    client: &C,
    user_id: &str,
) -> Result<Capacity> {
    let row = client
        .query_one(
            "SELECT coalesce(bool_or(m.capacity = 'admin'), false), count(*) > 0 \
             FROM public.member m JOIN public.\"group\" g ON g.id = m.group_id \
             WHERE m.table_name = 'user' AND m.table_id = $1 AND m.state = 'active' \
               AND m.capacity IN ('editor', 'admin') \
               AND g.is_organization AND g.state = 'active'",
            &[&user_id],
        )
        .await?;
    let (admin, editor): (bool, bool) = (row.get(0), row.get(1));
    Ok(if admin {
        Capacity::Admin
    } else if editor {
        Capacity::Editor
    } else {
        Capacity::None
    })
}

/// The CKAN release line of the database ("2.9", "2.12", …; None when it cannot be
/// told), read from the migration tables and the shape of `package` as `check` does.
/// It decides whether legacy API keys are accepted and which secret CKAN falls back to.
pub async fn ckan_release_line<C: GenericClient>(client: &C) -> Result<Option<&'static str>> {
    use crate::check::version::{ckan_version, Migrations};

    let tables: std::collections::BTreeSet<String> = client
        .query(
            // Foreign tables count too: a state database reads CKAN through them.
            "SELECT c.relname::text FROM pg_class c
             JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'public'
             WHERE c.relkind IN ('r', 'p', 'f')",
            &[],
        )
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let package_columns = client
        .query(
            "SELECT column_name::text FROM information_schema.columns \
             WHERE table_schema = 'public' AND table_name = 'package'",
            &[],
        )
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let migrations = if tables.contains("alembic_version") {
        let rows = client
            .query("SELECT version_num::text FROM public.alembic_version", &[])
            .await?;
        Migrations::Alembic(rows.iter().map(|row| row.get(0)).collect())
    } else if tables.contains("migrate_version") {
        Migrations::Migrate(None)
    } else {
        Migrations::None
    };
    Ok(ckan_version(&migrations, &tables, &package_columns).line)
}

/// Whether CKAN release `line` itself accepted legacy API keys (2.9 and older).
pub fn release_accepts_api_keys(line: Option<&str>) -> bool {
    matches!(line, Some("2.8" | "2.9"))
}

/// A user by `user.id`, whatever their state.
pub async fn user_by_id<C: GenericClient>(client: &C, id: &str) -> Result<Option<CkanUser>> {
    let row = client
        .query_opt(
            "SELECT id, name, sysadmin, state FROM public.\"user\" WHERE id = $1",
            &[&id],
        )
        .await?;
    Ok(row.as_ref().map(from_row))
}
