//! Shared test support: databases, receivers, and the service started in-process.
// Each test module uses part of the support; unused helpers are not errors.
#![allow(dead_code)]

pub mod ckan;
pub mod db;
pub mod receiver;
