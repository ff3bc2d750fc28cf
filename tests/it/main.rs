//! The one integration test binary: everything that touches PostgreSQL or HTTP.

mod access;
mod api;
mod capture;
mod check;
mod deliver;
mod e2e;
mod install;
mod real_ckan;
mod real_ckan_webhooks;
mod support;
mod watch;
