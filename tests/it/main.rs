//! The one integration test binary: everything that touches PostgreSQL or HTTP.

mod access;
mod api;
mod capture;
mod check;
mod ckan_ini;
mod deliver;
mod deliver_audit;
mod deliver_crash;
mod deliver_misbehaving;
mod e2e;
mod install;
mod poll;
mod real_ckan;
mod real_ckan_webhooks;
mod retention;
mod run_flags;
mod state_db;
mod support;
mod watch;
