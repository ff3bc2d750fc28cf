//! The real `ckan-webhooks run` binary as a child process, so that memory and CPU time
//! read from `/proc` are the service's own and not the benchmark's.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running `ckan-webhooks run`, stopped with SIGTERM (then killed) when dropped.
pub struct RunProcess {
    child: Child,
}

/// Memory and CPU time of a process, from `/proc/<pid>/status` and `/proc/<pid>/stat`.
#[derive(Debug, Clone, Copy)]
pub struct Usage {
    /// Resident set size now, in bytes.
    pub rss: u64,
    /// The highest resident set size so far, in bytes.
    pub hwm: u64,
    /// User plus system CPU time so far.
    pub cpu: Duration,
}

impl RunProcess {
    /// Starts `run` on `database_url` with loopback receivers allowed, its API on a
    /// free port, logs at `log_level` to /dev/null, and `extra` flags.
    pub fn start(database_url: &str, log_level: &str, extra: &[&str]) -> RunProcess {
        let child = Command::new(env!("CARGO_BIN_EXE_ckan-webhooks"))
            .arg("run")
            .args(["--database-url", database_url])
            .args(["--listen", "127.0.0.1:0"])
            .args(["--site-url", "http://ckan.bench"])
            .args(["--token-secret", "string:bench-token-secret"])
            .arg("--allow-private-targets")
            .args(extra)
            .env("RUST_LOG", log_level)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the ckan-webhooks binary");
        RunProcess { child }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Its memory and CPU time now.
    pub fn usage(&self) -> Usage {
        usage(self.pid())
    }
}

impl Drop for RunProcess {
    fn drop(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        for _ in 0..100 {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads a process's memory and CPU time from `/proc`.
pub fn usage(pid: u32) -> Usage {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib = |key: &str| -> u64 {
        status
            .lines()
            .find_map(|line| line.strip_prefix(key))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
            * 1024
    };

    // utime and stime are fields 14 and 15, counted after the parenthesised name.
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks: u64 = fields
        .get(11..13)
        .map_or(0, |f| f.iter().filter_map(|t| t.parse::<u64>().ok()).sum());
    Usage {
        rss: kib("VmRSS:"),
        hwm: kib("VmHWM:"),
        cpu: Duration::from_secs_f64(ticks as f64 / clock_ticks() as f64),
    }
}

/// Clock ticks per second (`getconf CLK_TCK`, 100 on Linux).
fn clock_ticks() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

/// Bytes as megabytes (10^6), for tables.
pub fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}
