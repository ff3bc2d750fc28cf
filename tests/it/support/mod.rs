//! Shared test support: databases, CKAN users, receivers, the API and the whole service
//! started in-process, and the real CKAN driver.
// Each test module uses part of the support; unused helpers are not errors.
#![allow(dead_code)]

pub mod api;
pub mod ckan;
pub mod ckan_users;
pub mod db;
pub mod events;
pub mod process;
pub mod raw;
pub mod receiver;
pub mod service;
pub mod worker;
