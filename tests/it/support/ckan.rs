//! A real CKAN (2.8.12 to 2.12.0) for a test: `tests/ckan/make_ini.py` writes an ini for
//! the test's (empty) database and runs CKAN's `db init` and migrations, then
//! `tests/ckan/driver.py` keeps CKAN loaded in one Python process and runs actions sent
//! as JSON lines.
//!
//! Each version needs its venv, made by `scripts/ckan-venv.sh VERSION` at
//! `<venvs>/ckan-venv-<VERSION>` (`<venvs>` is `CKAN_WEBHOOKS_CKAN_VENVS`, default
//! `<repo>/target`). No Solr and no Redis are needed. Set `CKAN_WEBHOOKS_KEEP_CKAN_DIR=1`
//! to keep the ini and the driver's log after the test.

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// How long one action (or setup, or token) may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// How long writing the ini plus `db init` and migrations may take (about 15 s here,
/// several times that when four CKANs initialise at once on two cores).
const INIT_TIMEOUT: Duration = Duration::from_secs(300);
/// How long the driver may take to load CKAN (about 3 s here).
const LOAD_TIMEOUT: Duration = Duration::from_secs(120);

/// The CKAN the tests use unless they name one.
pub const DEFAULT_VERSION: &str = "2.12.0";

/// Every CKAN version the harness knows, oldest first.
pub const VERSIONS: [&str; 5] = ["2.8.12", "2.9.11", "2.10.11", "2.11.6", "2.12.0"];

/// The versions whose venv must exist when real-CKAN tests run, unless
/// `CKAN_WEBHOOKS_CKAN_VERSIONS` lists others: what scripts/test.sh builds by default.
pub const REQUIRED_VERSIONS: [&str; 2] = ["2.9.11", "2.12.0"];

/// A running in-process CKAN (the driver), its ini and scratch directory.
pub struct Ckan {
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
    ini: PathBuf,
    token_secret: String,
    site_url: String,
    ckan_version: String,
    /// Dropped last: removes the ini, storage and logs.
    dir: ScratchDir,
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Where scripts/ckan-venv.sh puts the venv of CKAN `version`.
pub fn venv_dir(version: &str) -> PathBuf {
    let venvs = match std::env::var_os("CKAN_WEBHOOKS_CKAN_VENVS") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => repo().join("target"),
    };
    venvs.join(format!("ckan-venv-{version}"))
}

/// Whether a missing venv for `version` fails a test (true) or skips it (false): the
/// versions in `CKAN_WEBHOOKS_CKAN_VERSIONS` (space-separated; scripts/test.sh sets it to
/// what it built), else [`REQUIRED_VERSIONS`].
pub fn version_required(version: &str) -> bool {
    match std::env::var("CKAN_WEBHOOKS_CKAN_VERSIONS") {
        Ok(list) if !list.trim().is_empty() => list.split_whitespace().any(|v| v == version),
        _ => REQUIRED_VERSIONS.contains(&version),
    }
}

/// A scratch directory under the system temp dir, removed on drop.
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn new() -> ScratchDir {
        let dir = std::env::temp_dir().join(format!("ckwh-ckan-{:016x}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).expect("create the CKAN scratch directory");
        ScratchDir(dir)
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if std::env::var_os("CKAN_WEBHOOKS_KEEP_CKAN_DIR").is_some_and(|v| v == "1") {
            eprintln!("keeping CKAN scratch directory {}", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// The last `max` bytes of a log file, for panic messages.
fn tail(path: &Path, max: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let start = bytes.len().saturating_sub(max);
            String::from_utf8_lossy(&bytes[start..]).into_owned()
        }
        Err(err) => format!("(cannot read {}: {err})", path.display()),
    }
}

/// A command for the venv's python with CKAN's own environment overrides removed: CKAN
/// reads `CKAN_SQLALCHEMY_URL`, `CKAN_SOLR_URL`, `CKAN___<option>` and others over the
/// ini, and a developer's shell must not redirect the test's CKAN.
fn python(py: &Path) -> Command {
    let mut cmd = Command::new(py);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("CKAN_") {
            cmd.env_remove(key);
        }
    }
    cmd.env("PYTHONDONTWRITEBYTECODE", "1");
    cmd.current_dir(repo());
    cmd
}

impl Ckan {
    /// The python of `version`'s venv if scripts/ckan-venv.sh has built it, else None.
    pub fn venv(version: &str) -> Option<PathBuf> {
        let dir = venv_dir(version);
        let py = dir.join("bin/python");
        (py.exists() && dir.join(".ckan-webhooks-stamp").exists()).then_some(py)
    }

    /// [`Ckan::start_version`] with [`DEFAULT_VERSION`].
    pub async fn start(database_url: &str) -> Ckan {
        Self::start_version(database_url, DEFAULT_VERSION).await
    }

    /// Writes an ini for `database_url` (an empty database), runs CKAN `version`'s db
    /// init (and migrations), starts driver.py in that version's venv.
    pub async fn start_version(database_url: &str, version: &str) -> Ckan {
        let py = Self::venv(version).unwrap_or_else(|| {
            panic!(
                "no CKAN {version} venv at {}: run `bash scripts/ckan-venv.sh {version}`",
                venv_dir(version).display()
            )
        });
        let dir = ScratchDir::new();

        let started = Instant::now();
        let make_ini = python(&py)
            .arg(repo().join("tests/ckan/make_ini.py"))
            .arg("--database-url")
            .arg(database_url)
            .arg("--dir")
            .arg(&dir.0)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output();
        let out = match tokio::time::timeout(INIT_TIMEOUT, make_ini).await {
            Ok(out) => out.expect("run tests/ckan/make_ini.py"),
            Err(_) => panic!(
                "make_ini.py (ckan db init) took over {INIT_TIMEOUT:?}; its log:\n{}",
                tail(&dir.0.join("make_ini.log"), 4000)
            ),
        };
        if !out.status.success() {
            panic!(
                "make_ini.py failed ({}):\n{}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr),
                tail(&dir.0.join("make_ini.log"), 4000)
            );
        }
        let made: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|err| {
            panic!(
                "make_ini.py printed no JSON ({err}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        });
        let field = |name: &str| {
            made[name]
                .as_str()
                .unwrap_or_else(|| panic!("make_ini.py output has no {name}: {made}"))
                .to_string()
        };
        let ini = PathBuf::from(field("ini"));
        let token_secret = field("token_secret");
        let site_url = field("site_url");
        eprintln!(
            "CKAN database initialised in {:.1?} ({})",
            started.elapsed(),
            made["seconds"]
        );

        let started = Instant::now();
        let stderr = std::fs::File::create(dir.0.join("driver.stderr"))
            .expect("create the driver's log file");
        let mut child = python(&py)
            .arg(repo().join("tests/ckan/driver.py"))
            .arg("--ini")
            .arg(&ini)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .expect("start tests/ckan/driver.py");
        let stdin = child.stdin.take().expect("driver stdin");
        let stdout = BufReader::new(child.stdout.take().expect("driver stdout")).lines();
        let mut ckan = Ckan {
            child,
            stdin,
            stdout,
            ini,
            token_secret,
            site_url,
            ckan_version: String::new(),
            dir,
        };
        let ready = ckan.read_line(LOAD_TIMEOUT, "loading CKAN").await;
        if ready["ready"] != json!(true) {
            ckan.fail(&format!("expected the ready line, got {ready}"));
        }
        ckan.ckan_version = ready["ckan_version"].as_str().unwrap_or("?").to_string();
        if ckan.ckan_version != version {
            ckan.fail(&format!(
                "the venv for {version} loaded CKAN {}",
                ckan.ckan_version
            ));
        }
        eprintln!(
            "CKAN {} loaded in {:.1?}",
            ckan.ckan_version,
            started.elapsed()
        );
        ckan
    }

    /// Runs one action as `user`; Ok(result) or Err(error json). `user = ""` runs it as
    /// CKAN's site user. `context` (an object, or null) is merged into the action's
    /// context, e.g. `{"allow_state_change": true}`.
    pub async fn call(
        &mut self,
        action: &str,
        user: &str,
        data: Value,
        context: Value,
    ) -> Result<Value, Value> {
        let user = if user.is_empty() {
            Value::Null
        } else {
            json!(user)
        };
        self.request(json!({"action": action, "user": user, "data": data, "context": context}))
            .await
    }

    /// Creates the standard users, organisations and group (see SETUP in driver.py):
    /// users lab_sysadmin (sysadmin), lab_admin (admin of lab-org), lab_editor (editor
    /// of lab-org and lab-org-2, member of lab-group), lab_member (member of lab-org),
    /// lab_outsider (no membership). Returns `{"users": {name: id}, "orgs": {..},
    /// "groups": {..}}`.
    pub async fn setup(&mut self) -> Value {
        match self.request(json!({"cmd": "setup"})).await {
            Ok(ids) => ids,
            Err(err) => self.fail(&format!("setup failed: {err}")),
        }
    }

    /// A credential for `user`: a new CKAN API token (a JWT signed with `token_secret`),
    /// or on CKAN 2.8, which has no tokens, the user's legacy API key.
    pub async fn token(&mut self, user: &str) -> String {
        match self.request(json!({"cmd": "token", "user": user})).await {
            Ok(Value::String(token)) => token,
            other => self.fail(&format!("token for {user}: {other:?}")),
        }
    }

    /// `api_token.jwt.encode.secret` as written in the ini, e.g. "string:...".
    pub fn token_secret(&self) -> &str {
        &self.token_secret
    }

    /// `ckan.site_url` of the ini (nothing serves it: CKAN runs in-process).
    pub fn site_url(&self) -> &str {
        &self.site_url
    }

    /// The CKAN version the driver loaded.
    pub fn version(&self) -> &str {
        &self.ckan_version
    }

    /// The ini the driver runs with.
    pub fn ini(&self) -> &Path {
        &self.ini
    }

    /// Sends one request line and reads its answer.
    async fn request(&mut self, req: Value) -> Result<Value, Value> {
        let mut line = serde_json::to_string(&req).expect("serialise a driver request");
        line.push('\n');
        let what = req
            .get("action")
            .or_else(|| req.get("cmd"))
            .cloned()
            .unwrap_or(Value::Null);
        let sent = async {
            self.stdin.write_all(line.as_bytes()).await?;
            self.stdin.flush().await
        };
        if let Err(err) = sent.await {
            self.fail(&format!("writing {what} to the driver: {err}"));
        }
        let resp = self.read_line(CALL_TIMEOUT, &what.to_string()).await;
        match resp["ok"] {
            Value::Bool(true) => Ok(resp["result"].clone()),
            Value::Bool(false) => Err(resp["error"].clone()),
            _ => self.fail(&format!("malformed answer to {what}: {resp}")),
        }
    }

    async fn read_line(&mut self, timeout: Duration, what: &str) -> Value {
        match tokio::time::timeout(timeout, self.stdout.next_line()).await {
            Err(_) => self.fail(&format!("no answer to {what} within {timeout:?}")),
            Ok(Err(err)) => self.fail(&format!("reading the answer to {what}: {err}")),
            Ok(Ok(None)) => {
                let status = tokio::time::timeout(Duration::from_secs(5), self.child.wait())
                    .await
                    .map(|s| format!("{s:?}"))
                    .unwrap_or_else(|_| "still running".into());
                self.fail(&format!("the driver exited during {what} ({status})"))
            }
            Ok(Ok(Some(line))) => serde_json::from_str(&line).unwrap_or_else(|err| {
                self.fail(&format!("not JSON from the driver ({err}): {line}"))
            }),
        }
    }

    fn fail(&self, msg: &str) -> ! {
        panic!(
            "CKAN driver: {msg}\n--- driver stderr (tail) ---\n{}",
            tail(&self.dir.0.join("driver.stderr"), 6000)
        )
    }
}

impl Drop for Ckan {
    fn drop(&mut self) {
        // The driver also exits on EOF, but do not leave it to finish a slow action.
        let _ = self.child.start_kill();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            match self.child.try_wait() {
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                _ => break,
            }
        }
    }
}
