//! The one integration test binary: everything that touches PostgreSQL or HTTP.

mod api;
mod support;
