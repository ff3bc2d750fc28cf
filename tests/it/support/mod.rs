//! Shared test support: databases, receivers, and the service started in-process.

// Each test module uses a different part of the support code.
#![allow(dead_code)]

pub mod db;
pub mod receiver;
