//! ckan-webhooks: webhooks for any CKAN portal, attached to its PostgreSQL database from
//! outside. The map of the crate, in the order data flows through it:
//!
//! - [`install`]: the side schema and the capture triggers (`sql/`), with a ledger.
//! - [`watch`]: wakes on NOTIFY or a timer and turns committed change-log transactions
//!   into events and delivery rows, one transaction at a time.
//! - [`poll`]: poll mode and reconciliation: the shadow of every dataset and resource
//!   against CKAN's rows, written to the change log as the changes a trigger would catch.
//! - [`state_db`]: the side schema in a second database, reading CKAN through
//!   `postgres_fdw`, for a CKAN database the service may only read.
//! - [`derive`]: the pure rules that turn one transaction's row changes into CKAN events.
//! - [`audience`]: the reader classes of a private dataset and the audience of an event.
//! - [`payload`]: the JSON body a receiver gets.
//! - [`deliver`]: claims due deliveries and sends them with a rate-limited hyper client.
//! - [`retry`]: the backoff schedule.
//! - [`retention`]: removes old delivery records and long-gone subscriptions, in batches.
//! - [`sign`]: Standard Webhooks signatures and secrets.
//! - [`target`]: which receiver addresses may be called.
//! - [`api`]: the CKAN-style action API for subscriptions, with CKAN's own tokens.
//! - [`store`]: connections and every query on the side schema.
//! - [`service`]: `run(config, shutdown)`, which starts all of the above.
//! - [`check`]: the health report: CKAN version, capture, column drift, rights, NOTIFY.
//! - [`cluster`]: a throwaway PostgreSQL cluster, for the demo and the tests.
//! - [`demo`]: the self-contained demonstration.
//! - [`config`], [`error`], [`shutdown`]: settings, the error type, graceful stop.
//! - [`ckan_ini`]: the settings `--ckan-ini` reads from CKAN's config file, through
//!   [`ini`], a reader following Python's configparser as CKAN uses it.

pub mod api;
pub mod audience;
pub mod check;
pub mod ckan_ini;
pub mod cluster;
pub mod config;
pub mod deliver;
pub mod demo;
pub mod derive;
pub mod error;
pub mod ini;
pub mod install;
pub mod payload;
pub mod poll;
pub mod retention;
pub mod retry;
pub mod service;
pub mod shutdown;
pub mod sign;
pub mod state_db;
pub mod store;
pub mod target;
pub mod watch;
