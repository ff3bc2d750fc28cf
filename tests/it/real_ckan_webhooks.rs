//! Conformance across CKAN versions: real CKAN (installed from PyPI, driven in-process
//! through ckanapi) with the whole service running, one scenario of CKAN actions, and
//! after each action exactly the webhooks DESIGN.md §3 prescribes. The hooks are created
//! through our API with a real CKAN credential.
//!
//! The scenario is [`scenario`], run per CKAN version and per [`Mode`]. What differs
//! between versions is how CKAN writes (see `../shared/ckan/trace.md`), never what a
//! subscriber should receive, so the expectations are the same for every version except
//! where CKAN lacks a feature (collaborators before 2.9) or where its UI drives a
//! different action (publishing a draft is `package_update` before 2.10). Each step is
//! one CKAN action followed by one wait and one comparison ([`Watch::step`]), so a mode
//! that may merge the changes of one cycle still sees them one step at a time.
//!
//! Trigger mode runs on 2.8.12, 2.9.11, 2.10.11, 2.11.6 and 2.12.0 (required from 2.9 on).
//! Needs `bash scripts/ckan-venv.sh VERSION` for each version; a version whose venv is
//! missing skips unless it is required (see `support::ckan::version_required`).
//! `CKAN_WEBHOOKS_SKIP_REAL_CKAN=1` skips them all.

use crate::real_ckan::real_ckan_version_enabled;
use crate::support::api::call_at;
use crate::support::ckan::Ckan;
use crate::support::db::{Schema, TestDb};
use crate::support::events;
use crate::support::receiver::Receiver;
use crate::support::service::{self, TestService};
use chrono::{DateTime, Utc};
use ckan_webhooks::store::users;
use ckan_webhooks::{config, install, sign};
use serde_json::{json, Value};
use std::time::Duration;

/// How the service learns about CKAN's writes.
///
/// Poll mode (DESIGN.md §4) plugs in here: add the variant, then an arm in each of the
/// two `match mode` below, [`start_service`] (install and start the service in poll
/// mode) and [`settled`] (everything CKAN committed is derived and delivered), and a
/// `#[tokio::test]` per version at the end of this file. The steps and their expectations
/// stay: every step waits until the service has settled before the next action, so a
/// poll cycle never spans two steps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Triggers on CKAN's tables write the change log (DESIGN.md §2).
    Trigger,
    /// No triggers: passes compare CKAN's rows with the shadow (DESIGN.md §4).
    Poll,
}

/// A CKAN version as (major, minor), for the few places where CKAN itself differs.
fn release(version: &str) -> (u32, u32) {
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap());
    (parts.next().unwrap(), parts.next().unwrap())
}

/// Installs what `mode` needs in CKAN's database and starts the service, configured as
/// an admin would from CKAN's ini and as `run` does from the database.
async fn start_service(mode: Mode, db: &TestDb, ckan: &Ckan) -> TestService {
    let mut client = db.client().await;
    let mut config = service::config(db);
    config.token_secret = config::parse_token_secret(ckan.token_secret()).unwrap();
    config.site_url = ckan.site_url().to_string();
    // The harness's ini turns collaborators on, as an admin would read it from there.
    config.allow_dataset_collaborators = true;
    // `run` tells the release from the database and takes legacy API keys where CKAN
    // does (2.9 and older).
    let line = users::ckan_release_line(&client).await.unwrap();
    let (major, minor) = release(ckan.version());
    assert_eq!(
        line,
        Some(format!("{major}.{minor}").as_str()),
        "release line"
    );
    config.accept_api_keys = users::release_accepts_api_keys(line);
    match mode {
        Mode::Trigger => {
            install::install(&mut client)
                .await
                .unwrap_or_else(|err| panic!("install on CKAN {}: {err}", ckan.version()));
        }
        Mode::Poll => {
            install::install_with(&mut client, false)
                .await
                .unwrap_or_else(|err| panic!("install on CKAN {}: {err}", ckan.version()));
            config.capture.mode = config::Mode::Poll;
            config.capture.poll_cycle = Duration::from_millis(100);
        }
    }
    let started = TestService::start_with(config).await;
    if mode == Mode::Poll {
        // CKAN's setup (users, organizations) is the baseline; actions come after it.
        events::wait_for_baseline(&client).await;
    }
    started
}

/// True once everything CKAN had committed by `mark` (the database's clock when the
/// step began) is derived and every delivery is done.
async fn settled(mode: Mode, sql: &tokio_postgres::Client, mark: DateTime<Utc>) -> bool {
    match mode {
        Mode::Poll => {
            // A pass whose snapshot was taken after the mark has seen the step's writes.
            let row = sql
                .query_one(
                    "SELECT coalesce((SELECT (value ->> 'snapshot_at')::timestamptz > $1
                                      FROM ckan_webhooks.poll_state
                                      WHERE name = 'last_pass'), false)",
                    &[&mark],
                )
                .await
                .unwrap();
            row.get::<_, bool>(0) && Box::pin(settled(Mode::Trigger, sql, mark)).await
        }
        Mode::Trigger => {
            let row = sql
                .query_one(
                    "SELECT (SELECT count(*) FROM ckan_webhooks.change),
                            (SELECT count(*) FROM ckan_webhooks.delivery
                             WHERE status = 'pending')",
                    &[],
                )
                .await
                .unwrap();
            row.get::<_, i64>(0) == 0 && row.get::<_, i64>(1) == 0
        }
    }
}

/// An event as the tests compare it: topic, entity id, changed fields (or null).
type Event = (String, String, Value);

/// Follows one hook's deliveries and its receiver step by step.
struct Watch {
    mode: Mode,
    sql: tokio_postgres::Client,
    hook: String,
    receiver: Receiver,
    secret: String,
    last_seq: i64,
    received: usize,
}

impl Watch {
    /// Waits until the service has settled, then answers the events delivered to this
    /// hook since the last call, and checks the receiver got exactly those, signed.
    async fn step(&mut self, what: &str) -> Vec<Event> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let mark: DateTime<Utc> = self
            .sql
            .query_one("SELECT clock_timestamp()", &[])
            .await
            .unwrap()
            .get(0);
        while !settled(self.mode, &self.sql, mark).await {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{what}: not derived and delivered"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }

        let rows = self
            .sql
            .query(
                "SELECT e.seq, e.topic, e.entity->>'id', coalesce(e.changes, 'null'::jsonb), e.id
                 FROM ckan_webhooks.event e
                 JOIN ckan_webhooks.delivery d ON d.event_id = e.id AND d.subscription_id = $2
                 WHERE e.seq > $1 ORDER BY e.seq",
                &[&self.last_seq, &self.hook],
            )
            .await
            .unwrap();
        if let Some(last) = rows.last() {
            self.last_seq = last.get(0);
        }
        let events: Vec<Event> = rows
            .iter()
            .map(|r| (r.get(1), r.get(2), r.get(3)))
            .collect();

        // The receiver got one signed webhook per event, no more.
        self.received += events.len();
        let got = self
            .receiver
            .wait_for(self.received, Duration::from_secs(10))
            .await;
        assert_eq!(got.len(), self.received, "{what}: webhooks received");
        let new = &got[self.received - events.len()..];
        let mut sent: Vec<String> = new
            .iter()
            .map(|r| r.json()["id"].as_str().unwrap().into())
            .collect();
        let mut expected: Vec<String> = rows.iter().map(|r| r.get(4)).collect();
        sent.sort();
        expected.sort();
        assert_eq!(sent, expected, "{what}: the webhooks are the events");
        for recorded in new {
            let id = recorded.header("webhook-id").unwrap();
            let ts: i64 = recorded
                .header("webhook-timestamp")
                .unwrap()
                .parse()
                .unwrap();
            let signature = sign::signature(&self.secret, id, ts, &recorded.body);
            assert_eq!(
                recorded.header("webhook-signature"),
                Some(signature.as_str())
            );
        }
        events
    }

    /// [`Watch::step`], then asserts the events are `resources` in any order (DESIGN.md
    /// §3 orders parents and children, not siblings), then `dataset`.
    async fn expect_resources_then(
        &mut self,
        what: &str,
        resources: &[(&str, &str)],
        dataset: (&str, &str),
    ) -> Vec<Event> {
        let events = self.step(what).await;
        let mut got = topics(&events);
        let last = got.pop();
        got.sort();
        let mut expected = resources.to_vec();
        expected.sort();
        assert_eq!(got, expected, "{what}: {events:?}");
        assert_eq!(last, Some(dataset), "{what}: {events:?}");
        events
    }

    /// [`Watch::step`], then asserts the (topic, id) list is `expected`, in order.
    async fn expect(&mut self, what: &str, expected: &[(&str, &str)]) -> Vec<Event> {
        let events = self.step(what).await;
        assert_eq!(topics(&events), expected, "{what}: {events:?}");
        events
    }
}

/// Creates a `*` hook with `credential` to a new receiver and follows it.
async fn watch_hook(mode: Mode, service: &TestService, db: &TestDb, credential: &str) -> Watch {
    let receiver = Receiver::start().await;
    let (status, created) = call_at(
        service.addr,
        "webhook_create",
        Some(credential),
        json!({"topic": "*", "address": receiver.url()}),
    )
    .await;
    assert_eq!(status, 200, "a real CKAN credential is accepted: {created}");
    let hook = created["result"].as_str().unwrap().to_string();
    let (_, shown) = call_at(
        service.addr,
        "webhook_show",
        Some(credential),
        json!({"id": hook}),
    )
    .await;
    let secret = shown["result"]["secret"].as_str().unwrap().to_string();
    Watch {
        mode,
        sql: db.client().await,
        hook,
        receiver,
        secret,
        last_seq: 0,
        received: 0,
    }
}

fn topics(events: &[Event]) -> Vec<(&str, &str)> {
    events
        .iter()
        .map(|(t, id, _)| (t.as_str(), id.as_str()))
        .collect()
}

/// Runs a CKAN action as `user` with `context`; panics on failure.
async fn act_with(ckan: &mut Ckan, action: &str, user: &str, data: Value, ctx: Value) -> Value {
    let what = format!("CKAN {}: {action} as {user}", ckan.version());
    ckan.call(action, user, data, ctx)
        .await
        .unwrap_or_else(|err| panic!("{what}: {err}"))
}

/// Runs a CKAN action as `user` with no extra context; panics on failure.
async fn act(ckan: &mut Ckan, action: &str, user: &str, data: Value) -> Value {
    act_with(ckan, action, user, data, Value::Null).await
}

fn id(object: &Value) -> String {
    object["id"].as_str().unwrap().to_string()
}

fn rid(dataset: &Value, n: usize) -> String {
    dataset["resources"][n]["id"].as_str().unwrap().to_string()
}

/// The web UI's last stage of creating a dataset: the draft becomes active. CKAN 2.10+
/// does `package_patch state=active`; 2.8 and 2.9 read the dataset and
/// `package_update` it with `allow_state_change`.
async fn publish_draft(ckan: &mut Ckan, user: &str, dataset: &str) {
    if release(ckan.version()) >= (2, 10) {
        let data = json!({"id": dataset, "state": "active"});
        act(ckan, "package_patch", user, data).await;
    } else {
        let mut shown = act(ckan, "package_show", user, json!({"id": dataset})).await;
        shown["state"] = json!("active");
        let ctx = json!({"allow_state_change": true});
        act_with(ckan, "package_update", user, shown, ctx).await;
    }
}

/// The scenario: every step is one CKAN action and the webhooks it must give.
async fn scenario(version: &str, mode: Mode) {
    let test = format!("real_ckan_webhooks {version} {mode:?}");
    if !real_ckan_version_enabled(&test, version) {
        return;
    }
    // CKAN 2.9 brought collaborators (package_member) and dropped the revision_id
    // columns of package and resource.
    let collaborators = release(version) >= (2, 9);
    // Poll mode leaves revision_id out of a row's content: 2.8 changes it on every write.
    let revisions = !collaborators && mode == Mode::Trigger;
    let db = TestDb::create(Schema::Empty, false)
        .await
        .expect("an empty database");
    let mut ckan = Ckan::start_version(&db.url, version).await;
    ckan.setup().await;
    let service = start_service(mode, &db, &ckan).await;
    let credential = ckan.token("lab_editor").await;
    let mut watch = watch_hook(mode, &service, &db, &credential).await;
    let ck = &mut ckan;

    // package_create with resources, tags and extras: the dataset, then its resources.
    let data = json!({"name": "rc-public", "owner_org": "lab-org", "tags": [{"name": "air"}],
                      "extras": [{"key": "k1", "value": "v1"}],
                      "resources": [{"name": "a", "url": "http://x/a.csv", "format": "CSV"},
                                    {"name": "b", "url": "http://x/b.csv", "format": "CSV"}]});
    let public = act(ck, "package_create", "lab_editor", data).await;
    let (p, ra, rb) = (id(&public), rid(&public, 0), rid(&public, 1));
    let created = [
        ("dataset/create", p.as_str()),
        ("resource/create", &ra),
        ("resource/create", &rb),
    ];
    watch.expect("package_create", &created).await;

    // The web UI: a draft, a resource added to it (edits to drafts emit nothing), then
    // the draft made active: the dataset, then its resource.
    let data = json!({"name": "rc-draft", "owner_org": "lab-org", "state": "draft"});
    let ctx = json!({"allow_state_change": true});
    let d = id(&act_with(ck, "package_create", "lab_editor", data, ctx).await);
    watch.expect("draft package_create", &[]).await;
    let data = json!({"package_id": d, "name": "d1", "url": "http://x/d1.csv"});
    let dr = id(&act(ck, "resource_create", "lab_editor", data).await);
    watch.expect("resource_create on a draft", &[]).await;
    publish_draft(ck, "lab_editor", &d).await;
    let created = [("dataset/create", d.as_str()), ("resource/create", &dr)];
    watch.expect("draft made active", &created).await;

    // Tags only (2.9-2.11: child rows and a metadata_modified bump).
    let data = json!({"id": p, "tags": [{"name": "air"}, {"name": "water"}]});
    act(ck, "package_patch", "lab_editor", data).await;
    let events = watch
        .expect("package_patch tags", &[("dataset/update", &p)])
        .await;
    assert_eq!(events[0].2, json!(["tags"]), "package_patch tags");

    // Extras only: rows of package_extra up to 2.11, a column of package in 2.12.
    let data = json!({"id": p, "extras": [{"key": "k1", "value": "v2"}]});
    act(ck, "package_patch", "lab_editor", data).await;
    let events = watch
        .expect("package_patch extras", &[("dataset/update", &p)])
        .await;
    assert_eq!(events[0].2, json!(["extras"]), "package_patch extras");

    // package_update with the whole dataset, two fields changed.
    let mut shown = act(ck, "package_show", "lab_editor", json!({"id": p})).await;
    shown["title"] = json!("Public, renamed");
    shown["notes"] = json!("Now with notes.");
    act(ck, "package_update", "lab_editor", shown).await;
    let events = watch
        .expect("package_update", &[("dataset/update", &p)])
        .await;
    let changed = own_columns(revisions, &["notes", "title"]);
    assert_eq!(sorted(&events[0].2), changed, "package_update");

    // Into a group: a member row only.
    let data = json!({"id": "lab-group", "object": p, "object_type": "package",
                      "capacity": "public"});
    act(ck, "member_create", "lab_sysadmin", data).await;
    let events = watch
        .expect("member_create into a group", &[("dataset/update", &p)])
        .await;
    assert_eq!(events[0].2, json!(["groups"]), "member_create into a group");

    // resource_update: the resource, then its dataset.
    let data = json!({"id": ra, "url": "http://x/a2.csv", "description": "new", "name": "a"});
    act(ck, "resource_update", "lab_editor", data).await;
    let updated = [("resource/update", ra.as_str()), ("dataset/update", &p)];
    let events = watch.expect("resource_update", &updated).await;
    let changed = events[0].2.as_array().unwrap();
    assert!(changed.contains(&json!("url")) && changed.contains(&json!("description")));
    assert_eq!(events[1].2, json!(["resources"]));

    // package_resource_reorder: both resources moved (their position is content), then
    // their dataset; the order of two resources' events in one transaction is not
    // prescribed.
    let data = json!({"id": p, "order": [rb, ra]});
    act(ck, "package_resource_reorder", "lab_editor", data).await;
    let moved = [("resource/update", ra.as_str()), ("resource/update", &rb)];
    let what = "package_resource_reorder";
    let position = own_columns(revisions, &["position"]);
    let events = watch
        .expect_resources_then(what, &moved, ("dataset/update", &p))
        .await;
    for (topic, _, changes) in &events[..2] {
        assert_eq!(sorted(changes), position, "{what}: {topic}");
    }

    // resource_delete of the first resource: CKAN moves the other one up (position 1 to
    // 0), which is a change of its content too.
    act(ck, "resource_delete", "lab_editor", json!({"id": rb})).await;
    let changed = [("resource/delete", rb.as_str()), ("resource/update", &ra)];
    let what = "resource_delete";
    let events = watch
        .expect_resources_then(what, &changed, ("dataset/update", &p))
        .await;
    let moved = events
        .iter()
        .find(|(topic, _, _)| topic == "resource/update");
    assert_eq!(sorted(&moved.unwrap().2), position, "{what}");

    // A no-op package_patch (up to 2.11: metadata_modified alone changes): nothing.
    act(ck, "package_patch", "lab_editor", json!({"id": p})).await;
    watch.expect("no-op package_patch", &[]).await;

    // package_delete: the remaining resource, then the dataset.
    act(ck, "package_delete", "lab_editor", json!({"id": p})).await;
    let deleted = [("resource/delete", ra.as_str()), ("dataset/delete", &p)];
    watch.expect("package_delete", &deleted).await;

    // A sysadmin undeletes it (2.9-2.11 also hard-delete the soft-deleted resource b,
    // which emits nothing): the dataset is back, with its active resource.
    let data = json!({"id": p, "state": "active"});
    act(ck, "package_patch", "lab_sysadmin", data).await;
    let created = [("dataset/create", p.as_str()), ("resource/create", &ra)];
    watch.expect("undelete by package_patch", &created).await;

    // A new resource in a dataset with a soft-deleted one: 2.9+ also hard-deletes the
    // deleted resource's row, which emits nothing more.
    act(ck, "resource_delete", "lab_editor", json!({"id": ra})).await;
    let deleted = [("resource/delete", ra.as_str()), ("dataset/update", &p)];
    watch
        .expect("resource_delete after the undelete", &deleted)
        .await;
    let data = json!({"package_id": p, "name": "c", "url": "http://x/c.csv"});
    let rc = id(&act(ck, "resource_create", "lab_editor", data).await);
    let created = [("resource/create", rc.as_str()), ("dataset/update", &p)];
    watch
        .expect("resource_create beside a deleted resource", &created)
        .await;

    // Deleted again, then purged: the purge of a deleted dataset emits nothing.
    act(ck, "package_delete", "lab_sysadmin", json!({"id": p})).await;
    let deleted = [("resource/delete", rc.as_str()), ("dataset/delete", &p)];
    watch.expect("package_delete again", &deleted).await;
    act(ck, "dataset_purge", "lab_sysadmin", json!({"id": p})).await;
    watch
        .expect("dataset_purge of a deleted dataset", &[])
        .await;

    // dataset_purge of an active dataset: its resource, then the dataset.
    act(ck, "dataset_purge", "lab_sysadmin", json!({"id": d})).await;
    let deleted = [("resource/delete", dr.as_str()), ("dataset/delete", &d)];
    watch
        .expect("dataset_purge of an active dataset", &deleted)
        .await;

    // A dataset that reuses a deleted one's name (the old row is renamed: nothing).
    let data = json!({"name": "rc-reuse", "owner_org": "lab-org"});
    let first = id(&act(ck, "package_create", "lab_editor", data.clone()).await);
    watch
        .expect("package_create rc-reuse", &[("dataset/create", &first)])
        .await;
    act(ck, "package_delete", "lab_editor", json!({"id": first})).await;
    watch
        .expect("package_delete rc-reuse", &[("dataset/delete", &first)])
        .await;
    let second = id(&act(ck, "package_create", "lab_editor", data).await);
    assert_ne!(first, second);
    watch
        .expect(
            "package_create reusing the name",
            &[("dataset/create", &second)],
        )
        .await;

    // Moved to another organization by the dedicated action (up to 2.11 the member row
    // follows in a second transaction, which is no change of package_show's groups).
    let data = json!({"id": second, "organization_id": "lab-org-2"});
    act(ck, "package_owner_org_update", "lab_sysadmin", data).await;
    let events = watch
        .expect("package_owner_org_update", &[("dataset/update", &second)])
        .await;
    let changed = own_columns(revisions, &["owner_org"]);
    assert_eq!(sorted(&events[0].2), changed, "package_owner_org_update");

    // A private dataset reaches those who may read it. lab_editor is editor of lab-org
    // and lab-org-2, lab_member a member of lab-org only, lab_outsider of nothing.
    let credential = ck.token("lab_member").await;
    let mut member = watch_hook(mode, &service, &db, &credential).await;
    let credential = ck.token("lab_outsider").await;
    let mut outsider = watch_hook(mode, &service, &db, &credential).await;
    let data = json!({"name": "rc-private", "owner_org": "lab-org", "private": true,
                      "resources": [{"name": "p", "url": "http://x/p.csv"}]});
    let private = act(ck, "package_create", "lab_editor", data).await;
    let (v, vr) = (id(&private), rid(&private, 0));
    let created = [("dataset/create", v.as_str()), ("resource/create", &vr)];
    let deleted = [("resource/delete", vr.as_str()), ("dataset/delete", &v)];
    let updated = [("dataset/update", v.as_str())];
    let what = "private package_create";
    watch.expect(what, &created).await;
    member.expect(what, &created).await;
    outsider.expect(what, &[]).await;

    // Made public: a create for the outsider, an update for the members.
    let data = json!({"id": v, "private": false});
    act(ck, "package_patch", "lab_editor", data).await;
    let what = "private made public";
    watch.expect(what, &updated).await;
    member.expect(what, &updated).await;
    outsider.expect(what, &created).await;

    // Made private again by the bulk action (2.9-2.11: one UPDATE of `private` alone).
    let org = act(
        ck,
        "organization_show",
        "lab_sysadmin",
        json!({"id": "lab-org"}),
    )
    .await;
    let data = json!({"org_id": id(&org), "datasets": [v]});
    act(ck, "bulk_update_private", "lab_sysadmin", data).await;
    let what = "bulk_update_private";
    watch.expect(what, &updated).await;
    member.expect(what, &updated).await;
    outsider.expect(what, &deleted).await;

    // Moved to lab-org-2: still readable by its editor (an update), gone for the member
    // of lab-org only (a delete), still nothing for the outsider.
    let data = json!({"id": v, "owner_org": "lab-org-2"});
    act(ck, "package_patch", "lab_editor", data).await;
    let what = "private dataset moved to lab-org-2";
    watch.expect(what, &updated).await;
    member.expect(what, &deleted).await;
    outsider.expect(what, &[]).await;

    // A change the member may no longer read reaches only the editor.
    let data = json!({"id": v, "title": "Moved"});
    act(ck, "package_patch", "lab_editor", data).await;
    let what = "package_patch in lab-org-2";
    watch.expect(what, &updated).await;
    member.expect(what, &[]).await;
    outsider.expect(what, &[]).await;

    if collaborators {
        // The outsider made a collaborator reads the private dataset: later changes
        // reach them (joining replays nothing); removed again, nothing more.
        let data = json!({"id": v, "user_id": "lab_outsider", "capacity": "member"});
        act(ck, "package_collaborator_create", "lab_sysadmin", data).await;
        let what = "package_collaborator_create";
        watch.expect(what, &[]).await;
        outsider.expect(what, &[]).await;

        let data = json!({"id": v, "title": "Shared"});
        act(ck, "package_patch", "lab_editor", data).await;
        let what = "package_patch with a collaborator";
        watch.expect(what, &updated).await;
        outsider.expect(what, &updated).await;
        member.expect(what, &[]).await;

        let data = json!({"id": v, "user_id": "lab_outsider"});
        act(ck, "package_collaborator_delete", "lab_sysadmin", data).await;
        let what = "package_collaborator_delete";
        watch.expect(what, &[]).await;
        outsider.expect(what, &[]).await;

        let data = json!({"id": v, "title": "Unshared"});
        act(ck, "package_patch", "lab_editor", data).await;
        let what = "package_patch after the collaborator left";
        watch.expect(what, &updated).await;
        outsider.expect(what, &[]).await;
    }

    // package_patch resources=[]: CKAN marks every resource deleted.
    let data = json!({"id": v, "resources": []});
    act(ck, "package_patch", "lab_editor", data).await;
    let what = "package_patch resources=[]";
    let dropped = [("resource/delete", vr.as_str()), ("dataset/update", &v)];
    watch.expect(what, &dropped).await;
    member.expect(what, &[]).await;
    outsider.expect(what, &[]).await;

    // bulk_update_delete (2.9-2.11: one UPDATE of `state` alone) of the reused name's
    // dataset, now in lab-org-2 and public: a delete for every hook.
    let org = act(
        ck,
        "organization_show",
        "lab_sysadmin",
        json!({"id": "lab-org-2"}),
    )
    .await;
    let data = json!({"org_id": id(&org), "datasets": [second]});
    act(ck, "bulk_update_delete", "lab_sysadmin", data).await;
    let what = "bulk_update_delete";
    let deleted = [("dataset/delete", second.as_str())];
    watch.expect(what, &deleted).await;
    member.expect(what, &deleted).await;
    outsider.expect(what, &deleted).await;

    service.stop().await;
}

/// The changed columns of a package or resource row, sorted, as `changes` names them: CKAN 2.8
/// (`revisions`) also stamps the row with a new `revision_id`, a column of its own that
/// package_show shows.
fn own_columns(revisions: bool, columns: &[&str]) -> Value {
    let mut names = columns.to_vec();
    if revisions {
        names.push("revision_id");
    }
    names.sort();
    json!(names)
}

/// A JSON array of strings, sorted (an event's `changes` names fields in no set order).
fn sorted(list: &Value) -> Value {
    let mut names: Vec<&str> = list
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|name| name.as_str().unwrap())
        .collect();
    names.sort();
    json!(names)
}

#[tokio::test(flavor = "multi_thread")]
async fn conformance_trigger_ckan_2_9_11() {
    scenario("2.9.11", Mode::Trigger).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn conformance_trigger_ckan_2_10_11() {
    scenario("2.10.11", Mode::Trigger).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn conformance_trigger_ckan_2_11_6() {
    scenario("2.11.6", Mode::Trigger).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn conformance_trigger_ckan_2_12_0() {
    scenario("2.12.0", Mode::Trigger).await;
}

/// Trigger mode is not required on CKAN 2.8 (DESIGN.md §4 has poll mode read its
/// revision tables), but the scenario passes there too; it runs when the 2.8 venv exists.
#[tokio::test(flavor = "multi_thread")]
async fn conformance_trigger_ckan_2_8_12() {
    scenario("2.8.12", Mode::Trigger).await;
}

// Poll mode on every version, 2.8 included (DESIGN.md §4). Each step waits for a pass
// that began after the step's action, so a pass never merges two steps.

#[tokio::test(flavor = "multi_thread")]
async fn conformance_poll_ckan_2_8_12() {
    scenario("2.8.12", Mode::Poll).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn conformance_poll_ckan_2_9_11() {
    scenario("2.9.11", Mode::Poll).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn conformance_poll_ckan_2_10_11() {
    scenario("2.10.11", Mode::Poll).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn conformance_poll_ckan_2_11_6() {
    scenario("2.11.6", Mode::Poll).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn conformance_poll_ckan_2_12_0() {
    scenario("2.12.0", Mode::Poll).await;
}
