//! The one integration test binary: everything that touches PostgreSQL or HTTP.

mod capture;
mod install;
mod support;
mod watch;
