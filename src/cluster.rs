//! A throwaway PostgreSQL cluster: `initdb` into a temporary directory, `pg_ctl start` on
//! a free 127.0.0.1 port with trust authentication, stopped and removed on drop. Used by
//! the demo when no database is given, and by the tests where no server runs.

use crate::error::{Error, ErrorKind, Result};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A running throwaway cluster; dropping it stops the server and deletes its files.
#[derive(Debug)]
pub struct Cluster {
    dir: PathBuf,
    port: u16,
    bindir: PathBuf,
    /// The OS user the server runs as when we are root (PostgreSQL refuses root).
    run_as: Option<(u32, u32)>,
}

/// Where `initdb` and `pg_ctl` live: `pg_config --bindir`, else Debian's usual place.
fn bindir() -> Result<PathBuf> {
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        if out.status.success() {
            let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
            if dir.join("initdb").exists() {
                return Ok(dir);
            }
        }
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| entries.flatten().map(|e| e.path().join("bin")).collect())
        .unwrap_or_default();
    versions.sort();
    versions
        .into_iter()
        .rev()
        .find(|d| d.join("initdb").exists())
        .ok_or_else(|| {
            Error::new(
                ErrorKind::Io,
                "initdb not found: install PostgreSQL server binaries",
            )
        })
}

/// The uid and gid of the `postgres` OS user, when we run as root.
fn unprivileged_user() -> Result<Option<(u32, u32)>> {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc_geteuid() };
    if euid != 0 {
        return Ok(None);
    }
    let passwd = std::fs::read_to_string("/etc/passwd")?;
    for line in passwd.lines() {
        let fields: Vec<&str> = line.split(':').collect();
        if fields.len() > 3 && fields[0] == "postgres" {
            let uid = fields[2].parse().unwrap_or(0);
            let gid = fields[3].parse().unwrap_or(0);
            return Ok(Some((uid, gid)));
        }
    }
    Err(Error::new(
        ErrorKind::Io,
        "running as root and there is no 'postgres' OS user to run a throwaway cluster",
    ))
}

extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

/// A port on 127.0.0.1 that nothing listens on right now.
fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

impl Cluster {
    /// Creates and starts a cluster; returns once it accepts connections.
    pub async fn start() -> Result<Cluster> {
        let bindir = bindir()?;
        let run_as = unprivileged_user()?;
        let dir = std::env::temp_dir().join(format!(
            "ckan-webhooks-pg-{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&dir)?;
        if let Some((uid, gid)) = run_as {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid))?;
        }
        let port = free_port()?;
        let cluster = Cluster {
            dir,
            port,
            bindir,
            run_as,
        };

        let data = cluster.data_dir();
        cluster.run(
            "initdb",
            &[
                "-D",
                path_str(&data),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
            ],
        )?;
        let options = format!(
            "-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={} \
             -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
             -c max_connections=200",
            path_str(&cluster.dir)
        );
        let log = cluster.dir.join("postgres.log");
        cluster.run(
            "pg_ctl",
            &[
                "-D",
                path_str(&data),
                "-l",
                path_str(&log),
                "-o",
                &options,
                "-w",
                "start",
            ],
        )?;
        tracing::info!(port, dir = %cluster.dir.display(), "throwaway postgresql started");
        Ok(cluster)
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A connection URL for `database` as the `postgres` superuser.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn run(&self, tool: &str, args: &[&str]) -> Result<()> {
        let mut command = Command::new(self.bindir.join(tool));
        command.args(args).current_dir(&self.dir);
        if let Some((uid, gid)) = self.run_as {
            command.uid(uid).gid(gid);
        }
        let out = command.output().map_err(|err| {
            Error::new(ErrorKind::Io, format!("cannot run {tool}")).with_source(err)
        })?;
        if !out.status.success() {
            return Err(Error::new(
                ErrorKind::Io,
                format!(
                    "{tool} failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            ));
        }
        Ok(())
    }
}

fn path_str(path: &Path) -> &str {
    path.to_str().unwrap_or_default()
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let data = self.data_dir();
        let _ = self.run(
            "pg_ctl",
            &["-D", path_str(&data), "-m", "immediate", "-w", "stop"],
        );
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
