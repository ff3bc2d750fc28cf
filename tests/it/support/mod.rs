//! Shared test support: databases, receivers, and the service started in-process.

// Not every test uses every helper (real-schema databases, for one).
#![allow(dead_code)]

pub mod api;
pub mod ckan_users;
pub mod db;
