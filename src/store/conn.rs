//! Typed operations on the replica objects, the sync checkpoints and the
//! integration settings, so that no caller outside `store` handles SQLite.
//!
//! A [`Conn`] is one connection held by one thread for a series of
//! operations (a sync round, the startup load): they share its page cache
//! and prepared statements, which is what keeps a delta round's keyed
//! updates fast. The one-shot methods on [`Store`] open a connection for a
//! single operation (admin paths, tools, tests).

use super::objects::{self, Checkpoint, ObjectOp};
use super::{Store, StoreError, integration};

/// One connection to the store with typed operations; each write is one
/// transaction. `Send`, not `Sync`: it belongs to the thread using it.
#[derive(Debug)]
pub struct Conn {
    conn: rusqlite::Connection,
}

impl Store {
    /// A connection for a series of operations (see [`Conn`]).
    pub fn conn(&self) -> Result<Conn, StoreError> {
        Ok(Conn { conn: self.connect()? })
    }

    /// A connection for one sequential read of many objects
    /// ([`Conn::load_kinds`] at startup). Its page cache is small: it would
    /// only hold pages already read, memory that glibc then keeps for the
    /// process.
    pub fn conn_for_scan(&self) -> Result<Conn, StoreError> {
        let conn = self.connect()?;
        conn.pragma_update(None, "cache_size", -512)?;
        Ok(Conn { conn })
    }

    /// The value of checkpoint `name`, if it is set.
    pub fn checkpoint(&self, name: &str) -> Result<Option<String>, StoreError> {
        self.conn()?.checkpoint(name)
    }

    /// Every checkpoint as `(name, value, updated_at)`, by name.
    pub fn checkpoints(&self) -> Result<Vec<(String, String, i64)>, StoreError> {
        self.conn()?.checkpoints()
    }

    /// [`Conn::apply`] on a connection of its own.
    pub fn apply(&self, ops: &[ObjectOp<'_>], checkpoints: &[Checkpoint<'_>], now: i64) -> Result<(), StoreError> {
        self.conn()?.apply(ops, checkpoints, now)
    }

    /// [`Conn::purge`] on a connection of its own.
    pub fn purge(&self) -> Result<u64, StoreError> {
        self.conn()?.purge()
    }

    /// The integration setting `key` (see [`integration::keys`]), if set.
    pub fn setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.conn()?.setting(key)
    }

    /// Sets (or, with `None`, removes) the integration setting `key`.
    pub fn set_setting(&self, key: &str, value: Option<&str>, now: i64) -> Result<(), StoreError> {
        self.conn()?.set_setting(key, value, now)
    }
}

impl Conn {
    /// The value of checkpoint `name`, if it is set.
    pub fn checkpoint(&self, name: &str) -> Result<Option<String>, StoreError> {
        objects::checkpoint(&self.conn, name)
    }

    /// Every checkpoint as `(name, value, updated_at)`, by name.
    pub fn checkpoints(&self) -> Result<Vec<(String, String, i64)>, StoreError> {
        objects::checkpoints(&self.conn)
    }

    /// Applies `ops` and records `checkpoints` in one transaction (an empty
    /// checkpoint value removes the checkpoint).
    pub fn apply(&mut self, ops: &[ObjectOp<'_>], checkpoints: &[Checkpoint<'_>], now: i64) -> Result<(), StoreError> {
        objects::apply(&mut self.conn, ops, checkpoints, now)
    }

    /// Replaces every stored object with `objects` (`(object_id, kind,
    /// data)`) and records `checkpoints`, in one transaction: what a full
    /// resync produces. Returns the number stored.
    pub fn replace_all<'a>(
        &mut self,
        objects: impl IntoIterator<Item = (&'a str, &'a str, &'a [u8])>,
        checkpoints: &[Checkpoint<'_>],
        now: i64,
    ) -> Result<u64, StoreError> {
        objects::replace_all(&mut self.conn, objects, checkpoints, now)
    }

    /// Calls `f(object_id, kind, data)` for every stored object of `kinds`
    /// (all with `None`), inside one read transaction: a consistent snapshot
    /// even while a writer runs. Returns how many were visited.
    pub fn load_kinds(&mut self, kinds: Option<&[&str]>, f: impl FnMut(&str, &str, &[u8])) -> Result<u64, StoreError> {
        objects::load_kinds(&mut self.conn, kinds, f)
    }

    /// Object ids of `kind` last written before `before` (unix seconds): what
    /// a full resync that started at `before` did not see again.
    pub fn ids_written_before(&self, kind: &str, before: i64) -> Result<Vec<String>, StoreError> {
        objects::ids_written_before(&self.conn, kind, before)
    }

    /// The latest write time (unix seconds) of any object of `kind`, if any.
    pub fn last_written(&self, kind: &str) -> Result<Option<i64>, StoreError> {
        objects::last_written(&self.conn, kind)
    }

    /// Deletes every stored object and every checkpoint in one transaction.
    /// Returns the number of objects deleted.
    pub fn purge(&mut self) -> Result<u64, StoreError> {
        objects::purge(&mut self.conn)
    }

    /// The integration setting `key` (see [`integration::keys`]), if set.
    pub fn setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        integration::get(&self.conn, key)
    }

    /// Sets (or, with `None`, removes) the integration setting `key`.
    pub fn set_setting(&self, key: &str, value: Option<&str>, now: i64) -> Result<(), StoreError> {
        integration::set(&self.conn, key, value, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::integration::keys;

    #[test]
    fn typed_operations_on_the_store_and_on_a_held_connection_agree() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(d.path()).unwrap();
        let mut conn = store.conn().unwrap();
        let put = ObjectOp::Put {
            object_id: "a",
            kind: "user",
            data: b"1",
        };
        conn.apply(&[put], &[("users.delta", "L1")], 5).unwrap();
        assert_eq!(store.checkpoint("users.delta").unwrap().as_deref(), Some("L1"));
        assert_eq!(
            store.checkpoints().unwrap(),
            vec![("users.delta".into(), "L1".into(), 5)]
        );
        assert_eq!(conn.last_written("user").unwrap(), Some(5));
        assert_eq!(conn.ids_written_before("user", 6).unwrap(), vec!["a".to_string()]);

        store.set_setting(keys::TENANT_ID, Some("t1"), 1).unwrap();
        assert_eq!(conn.setting(keys::TENANT_ID).unwrap().as_deref(), Some("t1"));
        conn.set_setting(keys::TENANT_ID, None, 2).unwrap();
        assert_eq!(store.setting(keys::TENANT_ID).unwrap(), None);

        let mut seen = Vec::new();
        let n = store
            .conn_for_scan()
            .unwrap()
            .load_kinds(Some(&["user"]), |id, _, data| {
                seen.push((id.to_string(), data.to_vec()))
            })
            .unwrap();
        assert_eq!((n, seen), (1, vec![("a".to_string(), b"1".to_vec())]));

        assert_eq!(store.purge().unwrap(), 1);
        assert!(conn.checkpoints().unwrap().is_empty());
        assert_eq!(conn.load_kinds(None, |_, _, _| {}).unwrap(), 0);
    }
}
