//! The real `ckan-webhooks run` binary as a child process on a test database, so tests
//! can kill it with SIGKILL mid-delivery, or run two of them side by side.

use super::ckan_users::TOKEN_SECRET;
use super::db::TestDb;
use super::service::SITE_URL;
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};

/// A running `ckan-webhooks run`; killed when dropped.
pub struct RunProcess {
    child: Child,
}

impl RunProcess {
    /// Starts `run` on `db` with loopback receivers allowed, its API on a free port, and
    /// `extra` flags.
    pub fn start(db: &TestDb, extra: &[&str]) -> RunProcess {
        let secret = format!("string:{}", String::from_utf8_lossy(TOKEN_SECRET));
        let child = Command::new(env!("CARGO_BIN_EXE_ckan-webhooks"))
            .arg("run")
            .args(["--database-url", &db.url])
            .args(["--listen", "127.0.0.1:0"])
            .args(["--site-url", SITE_URL])
            .args(["--token-secret", &secret])
            .args(["--poll-interval-ms", "200"])
            .arg("--allow-private-targets")
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("start the ckan-webhooks binary");
        RunProcess { child }
    }

    /// Kills it with SIGKILL (no shutdown, no cleanup) and waits until it is gone.
    pub async fn kill9(&mut self) {
        self.child.start_kill().expect("send SIGKILL");
        tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .expect("the process dies")
            .expect("wait for the process");
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}
