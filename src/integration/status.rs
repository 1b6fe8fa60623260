//! The integration's status as data: what `entra status`, `sync status`,
//! `sync now --wait` and `/metrics` show.

use serde::{Deserialize, Serialize};

use crate::sync::worker::ObjectType;

/// One object type's last round, and the one running.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ObjectStatus {
    /// Unix seconds of the last successful round.
    pub last_success: Option<i64>,
    pub last_duration_ms: u64,
    /// Pages and items of the last successful round.
    pub pages: u64,
    pub items: u64,
    /// The last successful round was a full enumeration.
    pub full: bool,
    pub last_error: Option<String>,
    /// Failed rounds since the server started.
    pub failures: u64,
    /// Pages and items of the round running now (0 when none runs).
    pub running_pages: u64,
    pub running_items: u64,
    /// The last time a round had to start its enumeration over (Graph no
    /// longer accepted a stored link), and why; kept after later rounds, so
    /// the admin sees it happened. The round itself succeeded: nothing to do.
    pub restarted: Option<String>,
    pub restarted_at: Option<i64>,
}

impl ObjectStatus {
    pub(super) fn succeeded(&mut self, pages: u64, items: u64, full: bool) {
        self.last_success = Some(crate::clock::now_unix());
        self.pages = pages;
        self.items = items;
        self.full = full;
        self.last_error = None;
    }

    /// Records a round's start-over, if it had one.
    pub(super) fn note_restart(&mut self, why: Option<&str>) {
        if let Some(why) = why {
            self.restarted = Some(why.to_string());
            self.restarted_at = Some(crate::clock::now_unix());
        }
    }

    pub(super) fn failed(&mut self, error: String) {
        self.last_error = Some(error);
        self.failures += 1;
    }
}

/// The sync's state as data.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SyncStatus {
    /// What stops the sync, or what it is doing, in words.
    pub state: String,
    pub running: bool,
    /// The object type being synced (`users`, `devices`, `groups`, `intune`).
    pub current: Option<String>,
    /// Rounds started and finished since the server started; `sync now`
    /// answers with the number of the round that will serve it.
    pub rounds_started: u64,
    pub rounds_finished: u64,
    pub round_started_at: Option<i64>,
    pub last_round_ok: Option<bool>,
    pub last_round_error: Option<String>,
    pub users: ObjectStatus,
    pub devices: ObjectStatus,
    pub groups: ObjectStatus,
    /// Intune managed devices (MAC addresses for MAB).
    pub intune: ObjectStatus,
    pub federated_domains: Vec<String>,
    /// `state` names what blocked the last round; it is stale once the
    /// administrator has fixed that (see [`SyncStatus::as_of`]).
    #[serde(skip)]
    pub(super) blocked: bool,
}

impl SyncStatus {
    /// The status with `state` as of the settings now rather than as of the
    /// last round: what blocks the next round, if anything does, or that
    /// the block is gone. `entra status` and `sync status` both show this,
    /// so they agree right after `entra enable` or `domains select`.
    pub(super) fn current(mut self, blocker: Option<&str>) -> SyncStatus {
        if !self.running {
            match blocker {
                Some(b) => self.state = b.into(),
                None if self.blocked => self.state = "ready: the next round starts shortly".into(),
                None => {}
            }
        }
        self
    }

    pub(super) fn object_mut(&mut self, o: ObjectType) -> &mut ObjectStatus {
        match o {
            ObjectType::Users => &mut self.users,
            ObjectType::Devices => &mut self.devices,
            ObjectType::Groups => &mut self.groups,
        }
    }

    pub(super) fn objects_mut(&mut self) -> [&mut ObjectStatus; 4] {
        [&mut self.users, &mut self.devices, &mut self.groups, &mut self.intune]
    }

    /// `(name, status)` for every object type, in sync order.
    pub fn objects(&self) -> [(&'static str, &ObjectStatus); 4] {
        [
            ("users", &self.users),
            ("devices", &self.devices),
            ("groups", &self.groups),
            ("intune", &self.intune),
        ]
    }
}

/// The last check of the application's granted permissions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsentRecord {
    pub checked_at: i64,
    /// Application permissions the token carried.
    pub granted: Vec<String>,
    /// Required permissions it did not carry.
    pub missing: Vec<String>,
    /// Why the check or the consent failed, explained.
    pub error: Option<String>,
}

impl ConsentRecord {
    pub fn complete(&self) -> bool {
        self.error.is_none() && self.missing.is_empty() && !self.granted.is_empty()
    }
}
