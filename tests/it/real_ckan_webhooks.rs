//! Real CKAN 2.12 (installed from PyPI, driven in-process through ckanapi) with our
//! triggers installed and the whole service running: each action gives exactly the
//! webhooks DESIGN.md §3 prescribes. The hook is created through our API with a real
//! CKAN API token.
//!
//! Needs `bash scripts/ckan-venv.sh` once; `CKAN_WEBHOOKS_SKIP_REAL_CKAN=1` skips.

use crate::real_ckan::real_ckan_enabled;
use crate::support::api::call_at;
use crate::support::ckan::Ckan;
use crate::support::db::{Schema, TestDb};
use crate::support::receiver::Receiver;
use crate::support::service::{self, TestService};
use ckan_webhooks::{config, install, sign};
use serde_json::{json, Value};
use std::time::Duration;

/// Follows one hook's deliveries and its receiver step by step.
struct Watch {
    sql: tokio_postgres::Client,
    hook: String,
    receiver: Receiver,
    secret: String,
    last_seq: i64,
    received: usize,
}

impl Watch {
    /// Waits until every captured change is derived and every delivery is done, then
    /// answers the events delivered to this hook since the last call as (topic, entity
    /// id, changes), and checks the receiver got exactly those, signed.
    async fn step(&mut self, what: &str) -> Vec<(String, String, Value)> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let row = self
                .sql
                .query_one(
                    "SELECT (SELECT count(*) FROM ckan_webhooks.change),
                            (SELECT count(*) FROM ckan_webhooks.delivery WHERE status = 'pending')",
                    &[],
                )
                .await
                .unwrap();
            if row.get::<_, i64>(0) == 0 && row.get::<_, i64>(1) == 0 {
                break;
            }
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
        let events: Vec<(String, String, Value)> = rows
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
}

/// Creates a `*` hook with `token` to a new receiver and follows it.
async fn watch_hook(service: &TestService, db: &TestDb, token: &str) -> Watch {
    let receiver = Receiver::start().await;
    let (status, created) = call_at(
        service.addr,
        "webhook_create",
        Some(token),
        json!({"topic": "*", "address": receiver.url()}),
    )
    .await;
    assert_eq!(status, 200, "a real CKAN token is accepted: {created}");
    let hook = created["result"].as_str().unwrap().to_string();
    let (_, shown) = call_at(
        service.addr,
        "webhook_show",
        Some(token),
        json!({"id": hook}),
    )
    .await;
    let secret = shown["result"]["secret"].as_str().unwrap().to_string();
    Watch {
        sql: db.client().await,
        hook,
        receiver,
        secret,
        last_seq: 0,
        received: 0,
    }
}

fn topics(events: &[(String, String, Value)]) -> Vec<(&str, &str)> {
    events
        .iter()
        .map(|(t, id, _)| (t.as_str(), id.as_str()))
        .collect()
}

/// Runs a CKAN action as `user` with no extra context; panics on failure.
async fn act(ckan: &mut Ckan, action: &str, user: &str, data: Value) -> Value {
    let what = format!("{action} as {user}");
    ckan.call(action, user, data, Value::Null)
        .await
        .unwrap_or_else(|err| panic!("{what}: {err}"))
}

fn rid(dataset: &Value, n: usize) -> String {
    dataset["resources"][n]["id"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn real_ckan_actions_give_the_exact_webhooks() {
    if !real_ckan_enabled("real_ckan_actions_give_the_exact_webhooks") {
        return;
    }
    let db = TestDb::create(Schema::Empty, false)
        .await
        .expect("an empty database");
    let mut ckan = Ckan::start(&db.url).await;
    let mut client = db.client().await;
    install::install(&mut client)
        .await
        .expect("install on CKAN 2.12's own schema");
    ckan.setup().await;

    // The service, configured as an admin would from CKAN's ini.
    let mut config = service::config(&db);
    config.token_secret = config::parse_token_secret(ckan.token_secret()).unwrap();
    config.site_url = ckan.site_url().to_string();
    // The harness's ini turns collaborators on, as an admin would read it from there.
    config.allow_dataset_collaborators = true;
    let service = TestService::start_with(config).await;
    let token = ckan.token("lab_editor").await;
    let mut watch = watch_hook(&service, &db, &token).await;

    // package_create with resources.
    let public = act(
        &mut ckan,
        "package_create",
        "lab_editor",
        json!({"name": "rc-public", "owner_org": "lab-org", "tags": [{"name": "air"}],
                   "resources": [{"name": "a", "url": "http://x/a.csv", "format": "CSV"},
                                 {"name": "b", "url": "http://x/b.csv", "format": "CSV"}]}),
    )
    .await;
    let p = public["id"].as_str().unwrap().to_string();
    let (ra, rb) = (rid(&public, 0), rid(&public, 1));
    let events = watch.step("package_create").await;
    assert_eq!(
        topics(&events),
        vec![
            ("dataset/create", p.as_str()),
            ("resource/create", &ra),
            ("resource/create", &rb)
        ]
    );

    // The web UI: draft, resources, then active.
    let draft = ckan
        .call(
            "package_create",
            "lab_editor",
            json!({"name": "rc-draft", "owner_org": "lab-org", "state": "draft"}),
            json!({"allow_state_change": true}),
        )
        .await
        .unwrap();
    let d = draft["id"].as_str().unwrap().to_string();
    assert!(watch.step("draft package_create").await.is_empty());
    let dr = act(
        &mut ckan,
        "resource_create",
        "lab_editor",
        json!({"package_id": d, "name": "d1", "url": "http://x/d1.csv"}),
    )
    .await;
    let dr = dr["id"].as_str().unwrap().to_string();
    assert!(watch.step("resource_create on a draft").await.is_empty());
    act(
        &mut ckan,
        "package_patch",
        "lab_editor",
        json!({"id": d, "state": "active"}),
    )
    .await;
    let events = watch.step("draft made active").await;
    assert_eq!(
        topics(&events),
        vec![("dataset/create", d.as_str()), ("resource/create", &dr)]
    );

    // package_patch of tags only.
    act(
        &mut ckan,
        "package_patch",
        "lab_editor",
        json!({"id": p, "tags": [{"name": "air"}, {"name": "water"}]}),
    )
    .await;
    let events = watch.step("package_patch tags").await;
    assert_eq!(topics(&events), vec![("dataset/update", p.as_str())]);
    assert_eq!(events[0].2, json!(["tags"]));

    // resource_update.
    act(
        &mut ckan,
        "resource_update",
        "lab_editor",
        json!({"id": ra, "url": "http://x/a2.csv", "description": "new", "name": "a"}),
    )
    .await;
    let events = watch.step("resource_update").await;
    assert_eq!(
        topics(&events),
        vec![("resource/update", ra.as_str()), ("dataset/update", &p)]
    );
    let changed = events[0].2.as_array().unwrap();
    assert!(changed.contains(&json!("url")) && changed.contains(&json!("description")));
    assert_eq!(events[1].2, json!(["resources"]));

    // resource_delete.
    act(
        &mut ckan,
        "resource_delete",
        "lab_editor",
        json!({"id": rb}),
    )
    .await;
    let events = watch.step("resource_delete").await;
    assert_eq!(
        topics(&events),
        vec![("resource/delete", rb.as_str()), ("dataset/update", &p)]
    );

    // A no-op package_patch: no webhook.
    act(&mut ckan, "package_patch", "lab_editor", json!({"id": p})).await;
    assert!(watch.step("no-op package_patch").await.is_empty());

    // package_delete: the remaining resource, then the dataset.
    act(&mut ckan, "package_delete", "lab_editor", json!({"id": p})).await;
    let events = watch.step("package_delete").await;
    assert_eq!(
        topics(&events),
        vec![("resource/delete", ra.as_str()), ("dataset/delete", &p)]
    );

    // dataset_purge of the deleted dataset: nothing more; of an active one: deletes.
    act(&mut ckan, "dataset_purge", "lab_sysadmin", json!({"id": p})).await;
    assert!(watch
        .step("dataset_purge of a deleted dataset")
        .await
        .is_empty());
    act(&mut ckan, "dataset_purge", "lab_sysadmin", json!({"id": d})).await;
    let events = watch.step("dataset_purge of an active dataset").await;
    assert_eq!(
        topics(&events),
        vec![("resource/delete", dr.as_str()), ("dataset/delete", &d)]
    );

    // A dataset that reuses a deleted one's name.
    let first = act(
        &mut ckan,
        "package_create",
        "lab_editor",
        json!({"name": "rc-reuse", "owner_org": "lab-org"}),
    )
    .await;
    let first = first["id"].as_str().unwrap().to_string();
    act(
        &mut ckan,
        "package_delete",
        "lab_editor",
        json!({"id": first}),
    )
    .await;
    let events = watch.step("create then delete rc-reuse").await;
    assert_eq!(
        topics(&events),
        vec![
            ("dataset/create", first.as_str()),
            ("dataset/delete", &first)
        ]
    );
    let second = act(
        &mut ckan,
        "package_create",
        "lab_editor",
        json!({"name": "rc-reuse", "owner_org": "lab-org"}),
    )
    .await;
    let second = second["id"].as_str().unwrap().to_string();
    assert_ne!(first, second);
    let events = watch.step("package_create reusing the name").await;
    assert_eq!(topics(&events), vec![("dataset/create", second.as_str())]);

    // A private dataset reaches those who may read it. lab_editor is editor of lab-org
    // and lab-org-2, lab_member a member of lab-org only, lab_outsider of nothing.
    let token = ckan.token("lab_member").await;
    let mut member = watch_hook(&service, &db, &token).await;
    let token = ckan.token("lab_outsider").await;
    let mut outsider = watch_hook(&service, &db, &token).await;
    let private = act(
        &mut ckan,
        "package_create",
        "lab_editor",
        json!({"name": "rc-private", "owner_org": "lab-org", "private": true,
               "resources": [{"name": "p", "url": "http://x/p.csv"}]}),
    )
    .await;
    let v = private["id"].as_str().unwrap().to_string();
    let vr = rid(&private, 0);
    let created = vec![("dataset/create", v.as_str()), ("resource/create", &vr)];
    let deleted = vec![("resource/delete", vr.as_str()), ("dataset/delete", &v)];
    let updated = vec![("dataset/update", v.as_str())];
    let what = "private package_create";
    assert_eq!(topics(&watch.step(what).await), created);
    assert_eq!(topics(&member.step(what).await), created);
    assert!(outsider.step(what).await.is_empty());

    // Made public: a create for the outsider, an update for the members.
    act(
        &mut ckan,
        "package_patch",
        "lab_editor",
        json!({"id": v, "private": false}),
    )
    .await;
    let what = "private made public";
    assert_eq!(topics(&watch.step(what).await), updated);
    assert_eq!(topics(&member.step(what).await), updated);
    assert_eq!(topics(&outsider.step(what).await), created);

    // Made private again: a delete for the outsider, an update for the members.
    act(
        &mut ckan,
        "package_patch",
        "lab_editor",
        json!({"id": v, "private": true}),
    )
    .await;
    let what = "public made private";
    assert_eq!(topics(&watch.step(what).await), updated);
    assert_eq!(topics(&member.step(what).await), updated);
    assert_eq!(topics(&outsider.step(what).await), deleted);

    // Moved to lab-org-2: still readable by its editor (an update), gone for the member
    // of lab-org only (a delete), still nothing for the outsider.
    act(
        &mut ckan,
        "package_patch",
        "lab_editor",
        json!({"id": v, "owner_org": "lab-org-2"}),
    )
    .await;
    let what = "private dataset moved to lab-org-2";
    assert_eq!(topics(&watch.step(what).await), updated);
    assert_eq!(topics(&member.step(what).await), deleted);
    assert!(outsider.step(what).await.is_empty());

    // A change the member may no longer read reaches only the editor.
    act(
        &mut ckan,
        "package_patch",
        "lab_editor",
        json!({"id": v, "title": "Moved"}),
    )
    .await;
    let what = "package_patch in lab-org-2";
    assert_eq!(topics(&watch.step(what).await), updated);
    assert!(member.step(what).await.is_empty());
    assert!(outsider.step(what).await.is_empty());

    // The outsider made a collaborator reads the private dataset: later changes reach
    // them (joining replays nothing); removed again, nothing more.
    act(
        &mut ckan,
        "package_collaborator_create",
        "lab_sysadmin",
        json!({"id": v, "user_id": "lab_outsider", "capacity": "member"}),
    )
    .await;
    act(
        &mut ckan,
        "package_patch",
        "lab_editor",
        json!({"id": v, "title": "Shared"}),
    )
    .await;
    let what = "package_patch with a collaborator";
    assert_eq!(topics(&watch.step(what).await), updated);
    assert_eq!(topics(&outsider.step(what).await), updated);
    assert!(member.step(what).await.is_empty());
    act(
        &mut ckan,
        "package_collaborator_delete",
        "lab_sysadmin",
        json!({"id": v, "user_id": "lab_outsider"}),
    )
    .await;
    act(
        &mut ckan,
        "package_patch",
        "lab_editor",
        json!({"id": v, "title": "Unshared"}),
    )
    .await;
    let what = "package_patch after the collaborator left";
    assert_eq!(topics(&watch.step(what).await), updated);
    assert!(outsider.step(what).await.is_empty());

    service.stop().await;
}
