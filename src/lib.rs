//! tmp
pub mod config;
pub mod directory;
pub mod proto;
pub mod store;
