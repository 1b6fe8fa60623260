//! The Entra replica in the store: accounts serialised as JSON blobs next to
//! the sync checkpoints. Loading streams rows from a reader thread into the
//! replica's bulk build, so the decode of one row overlaps the indexing of
//! the previous ones and no second copy of the whole replica is ever held.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::{Account, AccountData, AccountKind, EntraReplica};
use crate::store::replica::{self as rows, Checkpoint, ObjectOp};
use crate::store::{Store, StoreError};

/// What a load found.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    pub loaded: u64,
    /// Rows that did not decode (logged with their object id, then skipped:
    /// one bad row must not keep the server from answering for the rest).
    pub skipped: u64,
    pub elapsed: Duration,
}

/// Replaces the replica's contents with what the store holds.
pub fn load_replica(store: &Store, replica: &EntraReplica) -> Result<LoadReport, StoreError> {
    let start = Instant::now();
    let mut conn = store.connect()?;
    let (tx, rx) = mpsc::sync_channel::<Account>(4096);
    let reader = std::thread::Builder::new()
        .name("replica-load".into())
        .spawn(move || {
            let mut skipped = 0u64;
            let result = rows::load_all(&mut conn, |id, _kind, data| {
                match serde_json::from_slice::<AccountData>(data) {
                    Ok(a) => {
                        // The receiver only goes away if the build panicked.
                        let _ = tx.send(Account::from(a));
                    }
                    Err(e) => {
                        skipped += 1;
                        tracing::error!(object_id = %id, error = %e, "stored replica object does not decode; skipped");
                    }
                }
            });
            (result, skipped)
        })
        .map_err(StoreError::Spawn)?;
    replica.load(rx);
    let (result, skipped) = reader.join().unwrap_or_else(|_| (Ok(0), 0));
    let total = result?;
    Ok(LoadReport {
        loaded: total - skipped,
        skipped,
        elapsed: start.elapsed(),
    })
}

fn kind_str(k: AccountKind) -> &'static str {
    k.as_str()
}

/// Stores `accounts` (upserts) and removes `deleted` object ids, with the
/// checkpoints, in one transaction.
pub fn save(
    conn: &mut rusqlite::Connection,
    accounts: &[AccountData],
    deleted: &[&str],
    checkpoints: &[Checkpoint<'_>],
    now: i64,
) -> Result<(), StoreError> {
    let blobs: Vec<Vec<u8>> = accounts
        .iter()
        .map(|a| serde_json::to_vec(a).expect("account data always serialises"))
        .collect();
    let mut ops: Vec<ObjectOp<'_>> = accounts
        .iter()
        .zip(&blobs)
        .map(|(a, b)| ObjectOp::Put {
            object_id: &a.object_id,
            kind: kind_str(a.kind),
            data: b,
        })
        .collect();
    ops.extend(deleted.iter().map(|id| ObjectOp::Delete { object_id: id }));
    rows::apply(conn, &ops, checkpoints, now)
}

/// Replaces every stored account with `accounts`, with the checkpoints, in
/// one transaction (a full resync).
pub fn replace_all(
    conn: &mut rusqlite::Connection,
    accounts: &[AccountData],
    checkpoints: &[Checkpoint<'_>],
    now: i64,
) -> Result<u64, StoreError> {
    let blobs: Vec<Vec<u8>> = accounts
        .iter()
        .map(|a| serde_json::to_vec(a).expect("account data always serialises"))
        .collect();
    rows::replace_all(
        conn,
        accounts
            .iter()
            .zip(&blobs)
            .map(|(a, b)| (a.object_id.as_str(), kind_str(a.kind), b.as_slice())),
        checkpoints,
        now,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory::{DirectoryKind, GroupRef, Identity, MacAddr};

    fn user(i: u32) -> AccountData {
        let mut a = AccountData::new(
            DirectoryKind::Entra,
            AccountKind::User,
            format!("00000000-0000-0000-0000-{i:012}"),
        );
        a.upn = Some(format!("user{i}@contoso.com"));
        a.enabled = i.is_multiple_of(2);
        a.groups = vec![GroupRef {
            id: "g1".into(),
            name: "Engineering".into(),
        }];
        a
    }

    #[test]
    fn save_then_load_round_trips() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(d.path()).unwrap();
        let mut conn = store.connect().unwrap();
        let mut dev = AccountData::new(DirectoryKind::Entra, AccountKind::Device, "dev-1");
        dev.macs = vec![MacAddr::parse("02-00-00-00-00-01").unwrap()];
        dev.enabled = true;
        let mut accounts: Vec<AccountData> = (0..100).map(user).collect();
        accounts.push(dev);
        save(&mut conn, &accounts, &[], &[("users.delta", "L1")], 1).unwrap();
        save(&mut conn, &[], &["00000000-0000-0000-0000-000000000003"], &[], 2).unwrap();
        // A row from a future or broken build is skipped, not fatal.
        rows::apply(
            &mut conn,
            &[ObjectOp::Put {
                object_id: "junk",
                kind: "user",
                data: b"{not json",
            }],
            &[],
            3,
        )
        .unwrap();

        let replica = EntraReplica::new();
        let report = load_replica(&store, &replica).unwrap();
        assert_eq!((report.loaded, report.skipped), (100, 1));
        let a = replica.lookup(&Identity::parse("USER4@contoso.com")).unwrap();
        assert!(a.enabled());
        assert!(a.in_group("engineering"));
        assert!(replica.lookup(&Identity::parse("user3@contoso.com")).is_none());
        assert!(replica.lookup(&Identity::parse("02:00:00:00:00:01")).is_some());
    }
}
