//! The Entra ID integration's state: key/value settings written by the admin
//! CLI through the server and read by the sync worker.

use rusqlite::{Connection, OptionalExtension, params};

use super::StoreError;

/// Keys in use.
pub mod keys {
    pub const ENABLED: &str = "enabled";
    pub const TENANT_ID: &str = "tenant_id";
    pub const CLIENT_ID: &str = "client_id";
    /// JSON array of domain names.
    pub const SELECTED_DOMAINS: &str = "selected_domains";
    /// Set when the selection changed: the next users round re-enumerates.
    pub const RESCOPE_PENDING: &str = "rescope_pending";
    /// The application's object id (automatic provisioning only).
    pub const APP_OBJECT_ID: &str = "app_object_id";
    /// Unix seconds when the application was provisioned or recorded.
    pub const PROVISIONED_AT: &str = "provisioned_at";
    /// `automatic` or `manual`.
    pub const PROVISIONED_BY: &str = "provisioned_by";
    /// JSON: the last consent check (`{"checked_at", "granted", "missing", "error"}`).
    pub const CONSENT: &str = "consent";
    /// Marks a state directory that `serve --demo` owns and may reset.
    pub const DEMO: &str = "demo";
}

pub(super) fn get(conn: &Connection, key: &str) -> Result<Option<String>, StoreError> {
    Ok(conn
        .query_row("SELECT value FROM integration_state WHERE key = ?1", [key], |r| {
            r.get(0)
        })
        .optional()?)
}

/// Sets (or, with `None`, removes) one setting.
pub(super) fn set(conn: &Connection, key: &str, value: Option<&str>, now: i64) -> Result<(), StoreError> {
    match value {
        Some(v) => conn.execute(
            "INSERT INTO integration_state (key, value, updated_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
            params![key, v, now],
        )?,
        None => conn.execute("DELETE FROM integration_state WHERE key = ?1", [key])?,
    };
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    #[test]
    fn set_get_remove() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(d.path()).unwrap();
        let c = s.connect().unwrap();
        assert_eq!(get(&c, keys::TENANT_ID).unwrap(), None);
        set(&c, keys::TENANT_ID, Some("t1"), 1).unwrap();
        set(&c, keys::TENANT_ID, Some("t2"), 2).unwrap();
        assert_eq!(get(&c, keys::TENANT_ID).unwrap().as_deref(), Some("t2"));
        set(&c, keys::TENANT_ID, None, 3).unwrap();
        assert_eq!(get(&c, keys::TENANT_ID).unwrap(), None);
    }
}
