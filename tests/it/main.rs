//! The one integration test binary: everything that touches PostgreSQL or HTTP.

mod real_ckan;
mod support;
