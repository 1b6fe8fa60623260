//! Persistence of the Entra ID replica: objects as opaque blobs keyed by
//! object id, and the sync checkpoints (delta links, page positions) that
//! describe how far the stored objects go.
//!
//! Every write is one transaction holding both the objects and the
//! checkpoints, so that after a crash at any instant the next start loads a
//! set of objects together with the checkpoint that produced exactly them.

use rusqlite::{Connection, TransactionBehavior, params};

use super::StoreError;

/// One change to the stored replica.
#[derive(Debug, Clone, Copy)]
pub enum ObjectOp<'a> {
    Put {
        object_id: &'a str,
        kind: &'a str,
        data: &'a [u8],
    },
    Delete {
        object_id: &'a str,
    },
}

/// A checkpoint to record with a batch: `(name, value)`. An empty value
/// removes the checkpoint (a sync round that must start over).
pub type Checkpoint<'a> = (&'a str, &'a str);

fn write_checkpoints(tx: &Connection, checkpoints: &[Checkpoint<'_>], now: i64) -> rusqlite::Result<()> {
    let mut upsert = tx.prepare_cached(
        "INSERT INTO sync_checkpoints (name, value, updated_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
    )?;
    let mut delete = tx.prepare_cached("DELETE FROM sync_checkpoints WHERE name = ?1")?;
    for (name, value) in checkpoints {
        if value.is_empty() {
            delete.execute([name])?;
        } else {
            upsert.execute(params![name, value, now])?;
        }
    }
    Ok(())
}

/// Applies `ops` and records `checkpoints` in one transaction.
pub(super) fn apply(
    conn: &mut Connection,
    ops: &[ObjectOp<'_>],
    checkpoints: &[Checkpoint<'_>],
    now: i64,
) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    {
        let mut put = tx.prepare_cached(
            "INSERT INTO replica_objects (object_id, kind, data, updated_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (object_id) DO UPDATE SET kind = excluded.kind, data = excluded.data, updated_at = excluded.updated_at",
        )?;
        let mut del = tx.prepare_cached("DELETE FROM replica_objects WHERE object_id = ?1")?;
        for op in ops {
            match op {
                ObjectOp::Put { object_id, kind, data } => {
                    put.execute(params![object_id, kind, data, now])?;
                }
                ObjectOp::Delete { object_id } => {
                    del.execute([object_id])?;
                }
            }
        }
        write_checkpoints(&tx, checkpoints, now)?;
    }
    tx.commit()?;
    Ok(())
}

/// Replaces every stored object with `objects` and records `checkpoints`, in
/// one transaction: what a full resync produces. Returns the number stored.
pub(super) fn replace_all<'a>(
    conn: &mut Connection,
    objects: impl IntoIterator<Item = (&'a str, &'a str, &'a [u8])>,
    checkpoints: &[Checkpoint<'_>],
    now: i64,
) -> Result<u64, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut n = 0u64;
    {
        tx.execute("DELETE FROM replica_objects", [])?;
        let mut put = tx.prepare_cached(
            "INSERT OR REPLACE INTO replica_objects (object_id, kind, data, updated_at) VALUES (?1, ?2, ?3, ?4)",
        )?;
        for (object_id, kind, data) in objects {
            put.execute(params![object_id, kind, data, now])?;
            n += 1;
        }
        write_checkpoints(&tx, checkpoints, now)?;
    }
    tx.commit()?;
    Ok(n)
}

/// Calls `f(object_id, kind, data)` for every stored object, inside one read
/// transaction (a consistent snapshot even while a writer runs). Returns how
/// many were visited.
#[cfg(test)]
pub(super) fn load_all(conn: &mut Connection, f: impl FnMut(&str, &str, &[u8])) -> Result<u64, StoreError> {
    load_kinds(conn, None, f)
}

/// `load_all` restricted to objects of the given kinds.
pub(super) fn load_kinds(
    conn: &mut Connection,
    kinds: Option<&[&str]>,
    mut f: impl FnMut(&str, &str, &[u8]),
) -> Result<u64, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Deferred)?;
    let mut n = 0u64;
    {
        let mut stmt = tx.prepare("SELECT object_id, kind, data FROM replica_objects")?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let id: &str = row.get_ref(0)?.as_str().map_err(rusqlite::Error::from)?;
            let kind: &str = row.get_ref(1)?.as_str().map_err(rusqlite::Error::from)?;
            let data: &[u8] = row.get_ref(2)?.as_blob().map_err(rusqlite::Error::from)?;
            if kinds.is_some_and(|k| !k.contains(&kind)) {
                continue;
            }
            f(id, kind, data);
            n += 1;
        }
    }
    tx.commit()?;
    Ok(n)
}

/// Object ids of `kind` last written before `before` (unix seconds): what a
/// full resync that started at `before` did not see again.
pub(super) fn ids_written_before(conn: &Connection, kind: &str, before: i64) -> Result<Vec<String>, StoreError> {
    let mut stmt = conn.prepare("SELECT object_id FROM replica_objects WHERE kind = ?1 AND updated_at < ?2")?;
    let rows = stmt.query_map(params![kind, before], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The latest write time (unix seconds) of any object of `kind`, if any:
/// a full resync marks its own writes as later than every earlier one.
pub(super) fn last_written(conn: &Connection, kind: &str) -> Result<Option<i64>, StoreError> {
    Ok(conn.query_row(
        "SELECT max(updated_at) FROM replica_objects WHERE kind = ?1",
        [kind],
        |r| r.get(0),
    )?)
}

/// Every checkpoint as `(name, value, updated_at)`, by name.
pub(super) fn checkpoints(conn: &Connection) -> Result<Vec<(String, String, i64)>, StoreError> {
    let mut stmt = conn.prepare("SELECT name, value, updated_at FROM sync_checkpoints ORDER BY name")?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub(super) fn checkpoint(conn: &Connection, name: &str) -> Result<Option<String>, StoreError> {
    use rusqlite::OptionalExtension;
    Ok(conn
        .query_row("SELECT value FROM sync_checkpoints WHERE name = ?1", [name], |r| {
            r.get(0)
        })
        .optional()?)
}

/// Deletes every stored object and every checkpoint in one transaction
/// (`entra disable --purge`, or a change of tenant). Returns the number of
/// objects deleted.
pub(super) fn purge(conn: &mut Connection) -> Result<u64, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let n = tx.execute("DELETE FROM replica_objects", [])?;
    tx.execute("DELETE FROM sync_checkpoints", [])?;
    tx.commit()?;
    Ok(n as u64)
}

/// Stored objects per kind.
#[cfg(test)]
pub(super) fn count_by_kind(conn: &Connection) -> Result<Vec<(String, u64)>, StoreError> {
    let mut stmt = conn.prepare("SELECT kind, count(*) FROM replica_objects GROUP BY kind ORDER BY kind")?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?.unsigned_abs())))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    fn store() -> (tempfile::TempDir, Store) {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(d.path()).unwrap();
        (d, s)
    }

    fn all(conn: &mut Connection) -> Vec<(String, String, Vec<u8>)> {
        let mut v = Vec::new();
        load_all(conn, |a, b, c| v.push((a.to_string(), b.to_string(), c.to_vec()))).unwrap();
        v.sort();
        v
    }

    #[test]
    fn apply_puts_deletes_and_checkpoints_together() {
        let (_d, s) = store();
        let mut c = s.connect().unwrap();
        apply(
            &mut c,
            &[
                ObjectOp::Put {
                    object_id: "a",
                    kind: "user",
                    data: b"1",
                },
                ObjectOp::Put {
                    object_id: "b",
                    kind: "device",
                    data: b"2",
                },
            ],
            &[("users.delta", "link-1")],
            10,
        )
        .unwrap();
        apply(
            &mut c,
            &[
                ObjectOp::Put {
                    object_id: "a",
                    kind: "user",
                    data: b"1b",
                },
                ObjectOp::Delete { object_id: "b" },
                ObjectOp::Delete { object_id: "zz" },
            ],
            &[("users.delta", "link-2"), ("devices.delta", "d-1")],
            11,
        )
        .unwrap();
        assert_eq!(all(&mut c), vec![("a".into(), "user".into(), b"1b".to_vec())]);
        assert_eq!(checkpoint(&c, "users.delta").unwrap().as_deref(), Some("link-2"));
        assert_eq!(checkpoints(&c).unwrap().len(), 2);
        apply(&mut c, &[], &[("devices.delta", "")], 12).unwrap();
        assert_eq!(checkpoint(&c, "devices.delta").unwrap(), None);
        assert_eq!(count_by_kind(&c).unwrap(), vec![("user".to_string(), 1)]);
    }

    #[test]
    fn a_failed_batch_changes_nothing() {
        let (_d, s) = store();
        let mut c = s.connect().unwrap();
        apply(
            &mut c,
            &[ObjectOp::Put {
                object_id: "a",
                kind: "user",
                data: b"1",
            }],
            &[("cp", "1")],
            1,
        )
        .unwrap();
        // The empty object id violates the CHECK constraint half-way through.
        let err = apply(
            &mut c,
            &[
                ObjectOp::Put {
                    object_id: "b",
                    kind: "user",
                    data: b"2",
                },
                ObjectOp::Put {
                    object_id: "",
                    kind: "user",
                    data: b"3",
                },
            ],
            &[("cp", "2")],
            2,
        );
        assert!(err.is_err());
        assert_eq!(all(&mut c).len(), 1);
        assert_eq!(checkpoint(&c, "cp").unwrap().as_deref(), Some("1"));
    }

    /// Stores one object of `kind` written at `at`.
    fn put(c: &mut Connection, object_id: &str, kind: &str, at: i64) {
        apply(
            c,
            &[ObjectOp::Put {
                object_id,
                kind,
                data: b"x",
            }],
            &[],
            at,
        )
        .unwrap();
    }

    #[test]
    fn ids_written_before_a_time() {
        let (_d, s) = store();
        let mut c = s.connect().unwrap();
        put(&mut c, "old", "user", 5);
        put(&mut c, "dev", "device", 5);
        put(&mut c, "new", "user", 10);
        assert_eq!(ids_written_before(&c, "user", 10).unwrap(), vec!["old".to_string()]);
        assert!(ids_written_before(&c, "user", 5).unwrap().is_empty());
        assert_eq!(last_written(&c, "user").unwrap(), Some(10));
        assert_eq!(last_written(&c, "device").unwrap(), Some(5));
        assert_eq!(last_written(&c, "group").unwrap(), None);
    }

    #[test]
    fn replace_all_swaps_the_whole_set() {
        let (_d, s) = store();
        let mut c = s.connect().unwrap();
        put(&mut c, "old", "user", 1);
        let n = replace_all(
            &mut c,
            [("n1", "user", &b"a"[..]), ("n2", "device", &b"b"[..])],
            &[("users.delta", "fresh")],
            2,
        )
        .unwrap();
        assert_eq!(n, 2);
        let ids: Vec<String> = all(&mut c).into_iter().map(|r| r.0).collect();
        assert_eq!(ids, vec!["n1", "n2"]);
    }
}
