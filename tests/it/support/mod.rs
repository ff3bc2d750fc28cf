//! Shared test support: databases, receivers, and the service started in-process.

pub mod db;
