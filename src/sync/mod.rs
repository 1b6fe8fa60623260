//! Keeping the Entra replica in step with Microsoft Entra ID: what Graph
//! items mean for the replica (`mapping`), and sync rounds with per-page
//! checkpoints and sweeping full resyncs (`worker`). Pages come through the
//! worker's `PageSource` trait; the Graph client behind it lives in
//! `graph` and is wired in by `integration`.

pub mod mapping;
pub mod worker;
