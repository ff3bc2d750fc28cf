//! The API driven by the real `ckanapi.RemoteCKAN` (`tests/ckanapi/client.py`), so that
//! CKAN's own client library is the judge of our envelopes and error mapping.
//!
//! The Python is the CKAN 2.12.0 venv's (`support::ckan::venv_dir`, made by
//! `scripts/ckan-venv.sh`). `CKAN_WEBHOOKS_SKIP_REAL_CKAN=1` skips the test.

use crate::support::api::ApiServer;
use crate::support::ckan::{venv_dir, DEFAULT_VERSION};
use crate::support::ckan_users;
use crate::support::db::TestDb;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn python() -> PathBuf {
    venv_dir(DEFAULT_VERSION).join("bin/python")
}

#[tokio::test]
async fn ckanapi_remote_client_round_trip() {
    if std::env::var_os("CKAN_WEBHOOKS_SKIP_REAL_CKAN").is_some_and(|v| v == "1") {
        eprintln!("ckanapi_remote_client_round_trip: skipped (CKAN_WEBHOOKS_SKIP_REAL_CKAN=1)");
        return;
    }
    let python = python();
    assert!(
        python.exists(),
        "{} is missing: run `bash scripts/ckan-venv.sh` first \
         (or set CKAN_WEBHOOKS_SKIP_REAL_CKAN=1 to skip the real-CKAN tests)",
        python.display()
    );

    let db = TestDb::installed().await;
    let client = db.client().await;
    let owner = ckan_users::user(&client, "owner", false).await;
    let other = ckan_users::user(&client, "other", false).await;
    let api = ApiServer::start(&db).await;

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ckanapi/client.py");
    let run = tokio::process::Command::new(&python)
        .arg(&script)
        .arg(api.url())
        .arg(&owner.token)
        .arg(&other.token)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("client.py finishes within 120 s")
        .expect("start client.py");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.trim_end().ends_with("ok"),
        "client.py failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    api.stop().await;
}
