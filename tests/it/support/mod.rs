//! Shared test support: databases, receivers, and the service started in-process.

pub mod ckan;
// Helpers here serve tests on other branches too; unused ones are not errors.
#[allow(dead_code)]
pub mod db;
