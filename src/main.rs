//! The `ckan-webhooks` command: install, uninstall, run, check and demo.

use anyhow::Context;
use ckan_webhooks::ckan_ini::{self, CkanIni};
use ckan_webhooks::config::{self, DeliveryConfig, MinimumAuth, RunConfig};
use ckan_webhooks::store::users;
use ckan_webhooks::{check, demo, install, service, shutdown, state_db, store};
use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Webhooks for any CKAN portal, attached to its PostgreSQL database from outside.
#[derive(Parser)]
#[command(name = "ckan-webhooks", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create the side schema and the capture triggers (idempotent).
    Install {
        #[command(flatten)]
        database: DatabaseArgs,
        /// Create the side schema only, without triggers on CKAN's tables: `run` then
        /// polls (for a role that may not create triggers).
        #[arg(long)]
        no_triggers: bool,
        /// Put the side schema in this database instead, reading CKAN's tables through
        /// postgres_fdw (for a CKAN database the service may only read); implies
        /// --no-triggers. Give `run` the same URL.
        #[arg(long, env = "CKAN_WEBHOOKS_STATE_DATABASE_URL", hide_env_values = true)]
        state_database_url: Option<String>,
    },
    /// Remove the capture triggers and functions; with --drop-data the side schema too.
    Uninstall {
        #[command(flatten)]
        database: DatabaseArgs,
        /// Also drop the ckan_webhooks schema with its subscriptions and delivery records.
        #[arg(long)]
        drop_data: bool,
    },
    /// Run the service: action API, change watcher and deliverer.
    Run(Box<RunArgs>),
    /// Report CKAN's version, capture, column drift, rights and NOTIFY; exit 1 if unhealthy.
    Check(DatabaseArgs),
    /// Show webhooks end to end on a throwaway PostgreSQL (or on --database-url).
    Demo {
        /// A database to use instead of a throwaway cluster.
        #[arg(long, env = "CKAN_WEBHOOKS_DATABASE_URL", hide_env_values = true)]
        database_url: Option<String>,
    },
}

#[derive(Args)]
struct DatabaseArgs {
    /// The CKAN database, e.g. postgres://ckan@127.0.0.1/ckan (default: --ckan-ini's
    /// sqlalchemy.url).
    #[arg(long, env = "CKAN_WEBHOOKS_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// CKAN's ini file: the database URL, site URL, token secret and collaborator setting
    /// are read from its [app:main]; flags and environment variables override them.
    #[arg(long, env = "CKAN_WEBHOOKS_CKAN_INI")]
    ckan_ini: Option<PathBuf>,
}

impl DatabaseArgs {
    /// The CKAN ini, when one is given.
    fn ini(&self) -> anyhow::Result<Option<CkanIni>> {
        Ok(self.ckan_ini.as_deref().map(CkanIni::load).transpose()?)
    }

    /// The database URL: the flag's, else the ini's.
    fn url(&self, ini: Option<&CkanIni>) -> anyhow::Result<String> {
        match (&self.database_url, ini) {
            (Some(url), _) => Ok(url.clone()),
            (None, Some(ini)) => Ok(ini.database_url()?),
            (None, None) => anyhow::bail!(
                "no database: give --database-url (CKAN_WEBHOOKS_DATABASE_URL) or --ckan-ini"
            ),
        }
    }
}

#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    database: DatabaseArgs,
    /// Address the action API listens on.
    #[arg(long, env = "CKAN_WEBHOOKS_LISTEN", default_value = "127.0.0.1:8099")]
    listen: SocketAddr,
    /// The CKAN site URL, sent in every payload (default: --ckan-ini's ckan.site_url).
    #[arg(long, env = "CKAN_WEBHOOKS_SITE_URL")]
    site_url: Option<String>,
    /// CKAN's API token secret: string:VALUE, file:PATH or the bare value (default: the
    /// secret --ckan-ini's CKAN verifies tokens with).
    #[arg(long, env = "CKAN_WEBHOOKS_TOKEN_SECRET", hide_env_values = true)]
    token_secret: Option<String>,
    /// Who may create webhooks: none (any active user), editor, admin or sysadmin.
    #[arg(long, env = "CKAN_WEBHOOKS_MINIMUM_AUTH", default_value = "none")]
    minimum_auth: String,
    /// Accept legacy API keys (user.apikey) whatever the CKAN version; without it they
    /// are accepted only on CKAN 2.9 and older, as CKAN itself does.
    #[arg(long, env = "CKAN_WEBHOOKS_ACCEPT_API_KEYS")]
    accept_api_keys: bool,
    /// Collaborators of a private dataset may read it (CKAN's
    /// ckan.auth.allow_dataset_collaborators; default: --ckan-ini's value, else false).
    #[arg(
        long,
        env = "CKAN_WEBHOOKS_ALLOW_DATASET_COLLABORATORS",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = parse_bool
    )]
    allow_dataset_collaborators: Option<bool>,
    /// Allow receivers on loopback, private and link-local addresses.
    #[arg(long, env = "CKAN_WEBHOOKS_ALLOW_PRIVATE_TARGETS")]
    allow_private_targets: bool,
    /// Milliseconds between change-log reads when no NOTIFY arrives.
    #[arg(long, env = "CKAN_WEBHOOKS_POLL_INTERVAL_MS", default_value_t = 1000)]
    poll_interval_ms: u64,
    /// Database connections in the service's pool.
    #[arg(long, env = "CKAN_WEBHOOKS_POOL_SIZE", default_value_t = 8)]
    pool_size: usize,
    /// Seconds allowed for one delivery attempt.
    #[arg(
        long,
        env = "CKAN_WEBHOOKS_DELIVERY_TIMEOUT_SECS",
        default_value_t = 10
    )]
    delivery_timeout_secs: u64,
    /// Attempts before a delivery is declared dead.
    #[arg(long, env = "CKAN_WEBHOOKS_MAX_ATTEMPTS", default_value_t = 30)]
    max_attempts: u32,
    /// Requests per second to one destination (scheme, host, port).
    #[arg(long, env = "CKAN_WEBHOOKS_RATE_PER_DESTINATION", default_value_t = 50)]
    rate_per_destination: u32,
    /// Delivery attempts in flight at once.
    #[arg(long, env = "CKAN_WEBHOOKS_CONCURRENCY", default_value_t = 64)]
    concurrency: usize,
    /// Delivery attempts in flight at once to one destination.
    #[arg(
        long,
        env = "CKAN_WEBHOOKS_PER_DESTINATION_CONCURRENCY",
        default_value_t = 8
    )]
    per_destination_concurrency: usize,
    /// Seconds a claimed delivery stays reserved for this instance; must exceed the
    /// delivery timeout.
    #[arg(long, env = "CKAN_WEBHOOKS_LEASE_SECS", default_value_t = 30)]
    lease_secs: u64,
    /// Hours after which a failing delivery is dead, whatever its attempt count.
    #[arg(long, env = "CKAN_WEBHOOKS_MAX_AGE_HOURS", default_value_t = 72)]
    max_age_hours: u64,
    /// Hours of continuous failure after which a subscription is disabled.
    #[arg(long, env = "CKAN_WEBHOOKS_DISABLE_AFTER_HOURS", default_value_t = 72)]
    disable_after_hours: u64,
    /// Days after which finished deliveries, their attempts, unreferenced events and
    /// long-disabled or deleted subscriptions are removed (default: keep everything).
    #[arg(long, env = "CKAN_WEBHOOKS_RETENTION_DAYS")]
    retention_days: Option<u64>,
    /// How changes are captured: trigger, poll, or auto (trigger mode when the capture
    /// triggers are installed, else poll mode).
    #[arg(long, env = "CKAN_WEBHOOKS_MODE", default_value = "auto")]
    mode: String,
    /// Poll mode: seconds between passes over CKAN's datasets and resources.
    #[arg(long, env = "CKAN_WEBHOOKS_POLL_CYCLE_SECS", default_value_t = 10)]
    poll_cycle_secs: u64,
    /// The database holding the side schema when it is not CKAN's (see `install
    /// --state-database-url`); the service then only reads CKAN, through it.
    #[arg(long, env = "CKAN_WEBHOOKS_STATE_DATABASE_URL", hide_env_values = true)]
    state_database_url: Option<String>,
    /// Trigger mode: seconds between reconciliation passes, which deliver what capture
    /// missed; 0 turns them off.
    #[arg(long, env = "CKAN_WEBHOOKS_RECONCILE_SECS", default_value_t = 600)]
    reconcile_secs: u64,
}

/// Fails with a one-line message naming `flag` and its value unless `ok`.
fn check(ok: bool, flag: &str, value: impl std::fmt::Display, rule: &str) -> anyhow::Result<()> {
    if !ok {
        anyhow::bail!("invalid --{flag} {value}: {rule}");
    }
    Ok(())
}

/// Hours as a duration; None when too large to represent.
fn hours(value: u64) -> Option<Duration> {
    value.checked_mul(3600).map(Duration::from_secs)
}

/// A boolean flag value, spelled as CKAN spells booleans.
fn parse_bool(value: &str) -> Result<bool, String> {
    ckan_ini::parse_ckan_bool(value).ok_or_else(|| format!("{value:?} is not true or false"))
}

impl RunArgs {
    async fn into_config(self) -> anyhow::Result<RunConfig> {
        let mode = self.mode.parse::<ckan_webhooks::config::Mode>()?;
        check(
            self.poll_cycle_secs > 0,
            "poll-cycle-secs",
            self.poll_cycle_secs,
            "must be at least 1",
        )?;
        let capture = ckan_webhooks::config::CaptureConfig {
            mode,
            poll_cycle: Duration::from_secs(self.poll_cycle_secs),
            reconcile_interval: (self.reconcile_secs > 0)
                .then(|| Duration::from_secs(self.reconcile_secs)),
        };
        if self.poll_interval_ms == 0 {
            anyhow::bail!("invalid --poll-interval-ms 0: must be at least 1");
        }
        if self.pool_size < 2 {
            anyhow::bail!("invalid --pool-size {}: must be at least 2", self.pool_size);
        }
        check(
            self.max_attempts > 0,
            "max-attempts",
            self.max_attempts,
            "must be at least 1",
        )?;
        check(
            self.rate_per_destination > 0,
            "rate-per-destination",
            self.rate_per_destination,
            "must be at least 1",
        )?;
        check(
            self.concurrency > 0,
            "concurrency",
            self.concurrency,
            "must be at least 1",
        )?;
        check(
            (1..=self.concurrency).contains(&self.per_destination_concurrency),
            "per-destination-concurrency",
            self.per_destination_concurrency,
            &format!("must be from 1 to --concurrency ({})", self.concurrency),
        )?;
        let timeout = self.delivery_timeout_secs.max(1);
        check(
            self.lease_secs > timeout && self.lease_secs <= 86_400,
            "lease-secs",
            self.lease_secs,
            &format!("must exceed --delivery-timeout-secs ({timeout}) and be at most 86400"),
        )?;
        let max_age = hours(self.max_age_hours).filter(|_| self.max_age_hours > 0);
        check(
            max_age.is_some(),
            "max-age-hours",
            self.max_age_hours,
            "must be a positive number of hours",
        )?;
        let disable_after =
            hours(self.disable_after_hours).filter(|_| self.disable_after_hours > 0);
        check(
            disable_after.is_some(),
            "disable-after-hours",
            self.disable_after_hours,
            "must be a positive number of hours",
        )?;
        let retention = match self.retention_days {
            None => None,
            Some(days) => {
                let kept = (1..=36_500).contains(&days).then(|| days * 86_400);
                check(
                    kept.is_some(),
                    "retention-days",
                    days,
                    "must be from 1 to 36500 days",
                )?;
                kept.map(Duration::from_secs)
            }
        };

        // Flags and environment first, then CKAN's ini.
        let ini = self.database.ini()?;
        let database_url = match &self.state_database_url {
            Some(url) => url.clone(),
            None => self.database.url(ini.as_ref())?,
        };
        let site_url = match (&self.site_url, &ini) {
            (Some(url), _) => config::parse_site_url(url)?,
            (None, Some(ini)) => ini.site_url()?,
            (None, None) => {
                anyhow::bail!("no site URL: give --site-url (CKAN_WEBHOOKS_SITE_URL) or --ckan-ini")
            }
        };
        if let Some(ini) = &ini {
            ini.check_algorithm()?;
        }
        let allow_dataset_collaborators = match (self.allow_dataset_collaborators, &ini) {
            (Some(allow), _) => allow,
            (None, Some(ini)) => ini.allow_dataset_collaborators()?,
            (None, None) => false,
        };

        // The CKAN release decides whether legacy keys work and which secret CKAN
        // falls back to; it is told once, here.
        let line = {
            let flag = if self.state_database_url.is_some() {
                "--state-database-url"
            } else {
                "--database-url"
            };
            let client = connect(&database_url, flag).await?;
            users::ckan_release_line(&client)
                .await
                .context("cannot tell the CKAN version")?
        };
        let token_secret = match (&self.token_secret, &ini) {
            (Some(secret), _) => config::parse_token_secret(secret)?,
            (None, Some(ini)) => ini.token_secret(line)?,
            (None, None) => anyhow::bail!(
                "no token secret: give --token-secret (CKAN_WEBHOOKS_TOKEN_SECRET) or --ckan-ini"
            ),
        };
        let accept_api_keys = self.accept_api_keys || users::release_accepts_api_keys(line);
        tracing::info!(
            ckan = line.unwrap_or("unknown"),
            ckan_ini = ini.as_ref().map(|ini| ini.path().display().to_string()),
            accept_api_keys,
            allow_dataset_collaborators,
            "ckan identity settings"
        );

        Ok(RunConfig {
            database_url,
            listen: self.listen,
            site_url,
            token_secret,
            minimum_auth: self.minimum_auth.parse::<MinimumAuth>()?,
            accept_api_keys,
            allow_dataset_collaborators,
            poll_interval: Duration::from_millis(self.poll_interval_ms),
            pool_size: self.pool_size,
            delivery: DeliveryConfig {
                allow_private_targets: self.allow_private_targets,
                timeout: Duration::from_secs(timeout),
                max_attempts: self.max_attempts,
                rate_per_destination: self.rate_per_destination,
                concurrency: self.concurrency,
                per_destination_concurrency: self.per_destination_concurrency,
                lease: Duration::from_secs(self.lease_secs),
                max_age: max_age.unwrap_or_default(),
                disable_after: disable_after.unwrap_or_default(),
                ..DeliveryConfig::default()
            },
            retention,
            capture,
        })
    }
}

/// Logs to stderr; `RUST_LOG` overrides the default level (`default`).
fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    // The demo prints what happens itself; its logs would only interleave.
    init_logging(if matches!(cli.command, Command::Demo { .. }) {
        "warn"
    } else {
        "info"
    });
    if let Err(err) = dispatch(cli.command).await {
        eprintln!("ckan-webhooks: {err:#}");
        std::process::exit(1);
    }
}

async fn dispatch(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Install {
            database: db,
            no_triggers,
            state_database_url,
        } => {
            let ckan_url = db.url(db.ini()?.as_ref())?;
            let report = match state_database_url {
                Some(state_url) => {
                    // Fail early and clearly when CKAN's database cannot be read as given.
                    connect(&ckan_url, "--database-url").await?;
                    let mut state = connect(&state_url, "--state-database-url").await?;
                    state_db::attach(&mut state, &ckan_url).await?;
                    println!("CKAN's tables are read through postgres_fdw from the state database");
                    install::install_with(&mut state, false).await?
                }
                None => {
                    let mut client = connect(&ckan_url, "--database-url").await?;
                    install::install_with(&mut client, !no_triggers).await?
                }
            };
            if report.applied.is_empty() {
                println!("already installed; nothing changed");
            } else {
                println!("applied {}", report.applied.join(", "));
            }
            if report.captured_tables.is_empty() {
                println!("no capture triggers: `run` will poll");
            } else {
                println!("capture triggers on: {}", report.captured_tables.join(", "));
            }
        }
        Command::Uninstall {
            database,
            drop_data,
        } => {
            let url = database.url(database.ini()?.as_ref())?;
            let mut client = connect(&url, "--database-url").await?;
            let removed = install::uninstall(&mut client, drop_data).await?;
            match (removed.schema_existed, drop_data) {
                (false, _) => println!("nothing to remove: ckan_webhooks is not installed"),
                (true, true) => println!(
                    "removed {} capture triggers and the ckan_webhooks schema",
                    removed.triggers
                ),
                (true, false) => println!(
                    "removed {} capture triggers; the ckan_webhooks schema and its data stay",
                    removed.triggers
                ),
            }
        }
        Command::Run(args) => {
            let config = args.into_config().await?;
            service::run(config, shutdown::on_signals()).await?;
        }
        Command::Check(db) => {
            let report = check::check(&db.url(db.ini()?.as_ref())?).await?;
            print!("{report}");
            if !report.healthy() {
                std::process::exit(1);
            }
        }
        Command::Demo { database_url } => demo::run(database_url).await?,
    }
    Ok(())
}

/// Connects to `url`, naming `flag` (where the URL came from) in any error.
async fn connect(url: &str, flag: &str) -> anyhow::Result<tokio_postgres::Client> {
    let _: tokio_postgres::Config = url
        .parse()
        .with_context(|| format!("invalid {flag} {:?}", store::redact_password(url)))?;
    store::connect(url)
        .await
        .with_context(|| format!("cannot connect to the {flag} database"))
}
