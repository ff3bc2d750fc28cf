//! The one integration test binary: everything that touches PostgreSQL or HTTP.

mod capture;
mod deliver;
mod install;
mod real_ckan;
mod support;
mod watch;
