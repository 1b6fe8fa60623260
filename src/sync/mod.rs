//! Keeping the Entra replica in step with Microsoft Graph: what Graph items
//! mean for the replica (`mapping`), nested group expansion (`groups`), and
//! sync rounds with per-page checkpoints and sweeping full resyncs
//! (`worker`), over any `PageSource`.

pub mod groups;
pub mod mapping;
pub mod worker;
