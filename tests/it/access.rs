//! The access matrix: hook owners × datasets × changes on real PostgreSQL through the
//! capture triggers and the watcher, asserting the delivery rows of every subscription:
//! every expected delivery exists and nothing else. The expectation comes from a small
//! oracle of its own here (who may read what, and §3's four-row table), not from the
//! code under test. Every combination starts from fresh datasets and the baseline
//! memberships, so the combinations do not depend on one another.

use crate::support::db::TestDb;
use ckan_webhooks::{store, watch};
use std::collections::{BTreeMap, BTreeSet};

const ORG_A: &str = "org-a";
const ORG_B: &str = "org-b";

/// A hook owner: a CKAN user with one `*` hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Owner {
    Sysadmin,
    AdminOfA,
    EditorOfA,
    MemberOfA,
    /// Collaborator (editor) on the private dataset of org A, member of nothing.
    Collaborator,
    MemberOfB,
    Plain,
    /// A member of A whose account is deleted.
    Deleted,
}

const OWNERS: [Owner; 8] = [
    Owner::Sysadmin,
    Owner::AdminOfA,
    Owner::EditorOfA,
    Owner::MemberOfA,
    Owner::Collaborator,
    Owner::MemberOfB,
    Owner::Plain,
    Owner::Deleted,
];

impl Owner {
    fn id(self) -> String {
        format!("user-{self:?}").to_lowercase()
    }

    /// Organization memberships before any change: (organization, capacity).
    fn baseline(self) -> Option<(&'static str, &'static str)> {
        match self {
            Owner::AdminOfA => Some((ORG_A, "admin")),
            Owner::EditorOfA | Owner::Deleted => Some((ORG_A, "editor")),
            Owner::MemberOfA => Some((ORG_A, "member")),
            Owner::MemberOfB => Some((ORG_B, "member")),
            _ => None,
        }
    }
}

/// The datasets, by the state each starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Public,
    PrivateInA,
    PrivateInB,
    /// A private draft of org A (the UI's first stage).
    Draft,
    /// A soft-deleted public dataset of org A.
    Deleted,
}

const KINDS: [Kind; 5] = [
    Kind::Public,
    Kind::PrivateInA,
    Kind::PrivateInB,
    Kind::Draft,
    Kind::Deleted,
];

/// A dataset row as the oracle sees it; `None` when there is no row.
#[derive(Debug, Clone, PartialEq)]
struct Row {
    state: &'static str,
    private: bool,
    org: &'static str,
}

impl Kind {
    fn start(self) -> Row {
        let (state, private, org) = match self {
            Kind::Public => ("active", false, ORG_A),
            Kind::PrivateInA => ("active", true, ORG_A),
            Kind::PrivateInB => ("active", true, ORG_B),
            Kind::Draft => ("draft", true, ORG_A),
            Kind::Deleted => ("deleted", false, ORG_A),
        };
        Row {
            state,
            private,
            org,
        }
    }
}

/// What a change does to a dataset's content when it stays visible.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Content {
    Unchanged,
    Fields,
    Resource,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Change {
    Create,
    Update,
    ResourceEdit,
    Delete,
    Purge,
    MakePrivate,
    MakePublic,
    /// A → B, and B → A for the dataset of B.
    MoveOrganization,
    /// Everyone outside org A joins it, then each dataset is updated.
    MembershipAdded,
    /// Every member of org A leaves it, then each dataset is updated.
    MembershipRemoved,
    /// Each dataset is updated, then every member of A leaves before the fan-out.
    RemovedBeforeFanOut,
}

const CHANGES: [Change; 11] = [
    Change::Create,
    Change::Update,
    Change::ResourceEdit,
    Change::Delete,
    Change::Purge,
    Change::MakePrivate,
    Change::MakePublic,
    Change::MoveOrganization,
    Change::MembershipAdded,
    Change::MembershipRemoved,
    Change::RemovedBeforeFanOut,
];

fn other(org: &'static str) -> &'static str {
    if org == ORG_A {
        ORG_B
    } else {
        ORG_A
    }
}

/// The oracle's world at fan-out time: memberships and collaborations.
struct World {
    members: BTreeMap<Owner, BTreeSet<&'static str>>,
    /// Whether the collaborator's row on the private dataset of A still exists.
    collaboration: bool,
    collaborators_setting: bool,
}

impl World {
    fn reads(&self, owner: Owner, kind: Kind, org: &'static str) -> bool {
        if owner == Owner::Deleted {
            return false;
        }
        owner == Owner::Sysadmin
            || self.members.get(&owner).is_some_and(|m| m.contains(org))
            || (owner == Owner::Collaborator
                && kind == Kind::PrivateInA
                && self.collaboration
                && self.collaborators_setting)
    }
}

fn visible(row: &Option<Row>, reads: bool) -> bool {
    row.as_ref()
        .is_some_and(|r| r.state == "active" && (!r.private || reads))
}

/// The oracle: the (topic, entity id) deliveries one owner gets for one dataset.
fn expected(owner: Owner, kind: Kind, change: Change, world: &World, id: &str) -> Vec<String> {
    let before = (change != Change::Create).then(|| kind.start());
    let mut after = Some(kind.start());
    let mut content = Content::Fields;
    match change {
        Change::Create | Change::Update => {}
        Change::ResourceEdit => content = Content::Resource,
        Change::Delete => after.as_mut().unwrap().state = "deleted",
        Change::Purge => after = None,
        Change::MakePrivate => after.as_mut().unwrap().private = true,
        Change::MakePublic => after.as_mut().unwrap().private = false,
        Change::MoveOrganization => {
            let row = after.as_mut().unwrap();
            row.org = other(row.org);
        }
        Change::MembershipAdded | Change::MembershipRemoved | Change::RemovedBeforeFanOut => {}
    }
    // Changes of the modelled columns only: setting what is already so changes nothing.
    let columns_only = matches!(
        change,
        Change::Delete | Change::MakePrivate | Change::MakePublic | Change::MoveOrganization
    );
    if columns_only && before == after {
        content = Content::Unchanged;
    }
    // Deleted (and pending) users' hooks receive nothing, public data included.
    if owner == Owner::Deleted {
        return vec![];
    }

    let org_of = |row: &Option<Row>| row.as_ref().map(|r| r.org).unwrap_or("");
    let was = visible(&before, world.reads(owner, kind, org_of(&before)));
    let is = visible(&after, world.reads(owner, kind, org_of(&after)));
    let dataset = |topic: &str| format!("dataset/{topic} {id}");
    let resource = |topic: &str| format!("resource/{topic} r-{id}");
    match (was, is, content) {
        (false, true, _) => vec![dataset("create"), resource("create")],
        (true, false, _) => vec![resource("delete"), dataset("delete")],
        (true, true, Content::Fields) => vec![dataset("update")],
        (true, true, Content::Resource) => vec![resource("update"), dataset("update")],
        _ => vec![],
    }
}

/// SQL that creates a dataset of `kind` with one resource, as one CKAN transaction.
fn create_sql(kind: Kind, id: &str) -> String {
    let row = kind.start();
    let collaborator = if kind == Kind::PrivateInA {
        format!(
            "INSERT INTO package_member (package_id, user_id, capacity, modified) \
             VALUES ('{id}', '{}', 'editor', now());",
            Owner::Collaborator.id()
        )
    } else {
        String::new()
    };
    format!(
        "BEGIN;
         INSERT INTO package (id, name, title, type, owner_org, private, state, metadata_modified)
         VALUES ('{id}', '{id}', 'T', 'dataset', '{org}', {private}, '{state}', now());
         INSERT INTO resource (id, package_id, url, position, state)
         VALUES ('r-{id}', '{id}', 'http://x/a.csv', 0, 'active');
         INSERT INTO member (id, table_name, table_id, capacity, group_id, state)
         VALUES ('m-{id}', 'package', '{id}', 'organization', '{org}', 'active');
         {collaborator}
         COMMIT;",
        org = row.org,
        private = row.private,
        state = row.state,
    )
}

/// SQL of `change` on one dataset (memberships aside).
fn change_sql(change: Change, kind: Kind, id: &str) -> String {
    let update =
        format!("UPDATE package SET title = 'T2', metadata_modified = now() WHERE id = '{id}';");
    match change {
        Change::Create => create_sql(kind, id),
        Change::Update
        | Change::MembershipAdded
        | Change::MembershipRemoved
        | Change::RemovedBeforeFanOut => update,
        Change::ResourceEdit => format!(
            "BEGIN; UPDATE package SET metadata_modified = now() WHERE id = '{id}';
             UPDATE resource SET url = 'http://x/b.csv' WHERE id = 'r-{id}'; COMMIT;"
        ),
        Change::Delete => format!("UPDATE package SET state = 'deleted' WHERE id = '{id}';"),
        Change::Purge => format!(
            "BEGIN; DELETE FROM package_member WHERE package_id = '{id}';
             DELETE FROM member WHERE table_id = '{id}';
             DELETE FROM resource WHERE package_id = '{id}';
             DELETE FROM package WHERE id = '{id}'; COMMIT;"
        ),
        Change::MakePrivate | Change::MakePublic => format!(
            "BEGIN; UPDATE package SET private = {} WHERE id = '{id}';
             UPDATE package SET metadata_modified = now() WHERE id = '{id}'; COMMIT;",
            change == Change::MakePrivate
        ),
        Change::MoveOrganization => format!(
            "BEGIN; UPDATE package SET owner_org = '{to}' WHERE id = '{id}';
             UPDATE member SET state = 'deleted' WHERE id = 'm-{id}';
             INSERT INTO member (id, table_name, table_id, capacity, group_id, state)
             VALUES ('m2-{id}', 'package', '{id}', 'organization', '{to}', 'active'); COMMIT;",
            to = other(kind.start().org)
        ),
    }
}

/// Puts every user's organization membership back to the baseline.
fn baseline_memberships_sql() -> String {
    let mut sql = String::from("DELETE FROM member WHERE table_name = 'user';");
    for owner in OWNERS {
        if let Some((org, capacity)) = owner.baseline() {
            sql.push_str(&format!(
                "INSERT INTO member (id, table_name, table_id, capacity, group_id, state)
                 VALUES ('um-{0}', 'user', '{0}', '{capacity}', '{org}', 'active');",
                owner.id()
            ));
        }
    }
    sql
}

/// Users, organizations and one `*` hook per owner.
async fn setup(client: &tokio_postgres::Client) {
    let mut sql = format!(
        "INSERT INTO \"group\" (id, name, type, is_organization, state) VALUES
           ('{ORG_A}', '{ORG_A}', 'organization', true, 'active'),
           ('{ORG_B}', '{ORG_B}', 'organization', true, 'active');"
    );
    for owner in OWNERS {
        let state = if owner == Owner::Deleted {
            "deleted"
        } else {
            "active"
        };
        sql.push_str(&format!(
            "INSERT INTO \"user\" (id, name, sysadmin, state) VALUES ('{0}', '{0}', {1}, '{state}');
             INSERT INTO ckan_webhooks.subscription (id, owner_id, topic, address, secret)
             VALUES ('hook-{0}', '{0}', '*', 'http://127.0.0.1:9/', 'whsec_x');",
            owner.id(),
            owner == Owner::Sysadmin
        ));
    }
    client.batch_execute(&sql).await.unwrap();
}

/// Deliveries per (owner, dataset id), as "topic entity-id" in event order.
async fn deliveries(client: &tokio_postgres::Client) -> BTreeMap<(String, String), Vec<String>> {
    let rows = client
        .query(
            "SELECT s.owner_id, e.dataset_id, e.topic || ' ' || (e.entity ->> 'id')
             FROM ckan_webhooks.delivery d
             JOIN ckan_webhooks.event e ON e.id = d.event_id
             JOIN ckan_webhooks.subscription s ON s.id = d.subscription_id
             ORDER BY e.seq",
            &[],
        )
        .await
        .unwrap();
    let mut got: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for row in rows {
        got.entry((row.get(0), row.get(1)))
            .or_default()
            .push(row.get(2));
    }
    got
}

/// Runs the whole matrix with the collaborator setting as given; returns the number of
/// (owner, dataset, change) combinations checked and the mismatches.
async fn run_matrix(collaborators_setting: bool) -> (usize, Vec<String>) {
    let db = TestDb::installed().await;
    let client = db.client().await;
    let pool = store::pool(&db.url, 2).unwrap();
    let options = watch::Options {
        allow_dataset_collaborators: collaborators_setting,
        ..Default::default()
    };
    setup(&client).await;

    let mut checked = 0;
    let mut mismatches = Vec::new();
    for change in CHANGES {
        client
            .batch_execute(&baseline_memberships_sql())
            .await
            .unwrap();
        let id = |kind: Kind| format!("{kind:?}-{change:?}").to_lowercase();

        // Fresh datasets in their starting state; what that delivered is not the test.
        if change != Change::Create {
            for kind in KINDS {
                client
                    .batch_execute(&create_sql(kind, &id(kind)))
                    .await
                    .unwrap();
            }
        }
        watch::derive_pending(&pool, &options).await.unwrap();
        client
            .batch_execute("DELETE FROM ckan_webhooks.delivery")
            .await
            .unwrap();

        // The change, with the membership moves around it.
        let outsiders_join = OWNERS
            .iter()
            .filter(|o| o.baseline().is_none_or(|(org, _)| org != ORG_A))
            .map(|o| {
                format!(
                    "INSERT INTO member (id, table_name, table_id, capacity, group_id, state)
                     VALUES ('join-{0}', 'user', '{0}', 'member', '{ORG_A}', 'active');",
                    o.id()
                )
            })
            .collect::<String>();
        let members_leave = format!(
            "UPDATE member SET state = 'deleted' WHERE table_name = 'user' AND group_id = '{ORG_A}';"
        );
        match change {
            Change::MembershipAdded => client.batch_execute(&outsiders_join).await.unwrap(),
            Change::MembershipRemoved => client.batch_execute(&members_leave).await.unwrap(),
            _ => {}
        }
        for kind in KINDS {
            let sql = change_sql(change, kind, &id(kind));
            client
                .batch_execute(&sql)
                .await
                .unwrap_or_else(|err| panic!("{change:?} on {kind:?}: {err}\n{sql}"));
        }
        if change == Change::RemovedBeforeFanOut {
            client.batch_execute(&members_leave).await.unwrap();
        }
        watch::derive_pending(&pool, &options).await.unwrap();

        // The oracle's world as it stands at fan-out.
        let mut world = World {
            members: BTreeMap::new(),
            collaboration: change != Change::Purge,
            collaborators_setting,
        };
        for owner in OWNERS {
            let orgs = world.members.entry(owner).or_default();
            if let Some((org, _)) = owner.baseline() {
                orgs.insert(org);
            }
            match change {
                Change::MembershipAdded => {
                    orgs.insert(ORG_A);
                }
                Change::MembershipRemoved | Change::RemovedBeforeFanOut => {
                    orgs.remove(ORG_A);
                }
                _ => {}
            }
        }

        let mut got = deliveries(&client).await;
        for owner in OWNERS {
            for kind in KINDS {
                let want = expected(owner, kind, change, &world, &id(kind));
                let have = got.remove(&(owner.id(), id(kind))).unwrap_or_default();
                checked += 1;
                if want != have {
                    mismatches.push(format!(
                        "{owner:?} × {kind:?} × {change:?} (collaborators {collaborators_setting}): \
                         expected {want:?}, got {have:?}"
                    ));
                }
            }
        }
        for ((owner, dataset), have) in got {
            mismatches.push(format!("unexpected for {owner} on {dataset}: {have:?}"));
        }
    }
    (checked, mismatches)
}

#[tokio::test]
async fn access_matrix() {
    let (with_setting, mut mismatches) = run_matrix(true).await;
    let (without_setting, more) = run_matrix(false).await;
    mismatches.extend(more);

    // The collaborator counts as two owners (setting on, setting off); the others are
    // checked under both settings.
    let owners = OWNERS.len() + 1;
    let combinations = owners * KINDS.len() * CHANGES.len();
    println!(
        "access matrix: {owners} owners × {} datasets × {} changes = {combinations} \
         (owner, dataset, change) combinations; {} checks across both settings",
        KINDS.len(),
        CHANGES.len(),
        with_setting + without_setting
    );
    assert!(
        mismatches.is_empty(),
        "{} of {} checks failed:\n{}",
        mismatches.len(),
        with_setting + without_setting,
        mismatches.join("\n")
    );
}
