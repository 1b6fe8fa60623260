//! The Entra replica in the store: accounts serialised as compact blobs next
//! to the sync checkpoints. Loading streams rows from a reader thread into the
//! replica's bulk build, so the decode of one row overlaps the indexing of
//! the previous ones and no second copy of the whole replica is ever held.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::account::StoredView;
use super::groups::{GroupState, GroupTable};
use super::{Account, AccountData, AccountKind, EntraReplica};
use crate::store::objects::{Checkpoint, ObjectOp};
use crate::store::{Conn, Store, StoreError};

/// First byte of a blob in the postcard encoding. Postcard is several times
/// smaller and faster to decode than JSON, which is what keeps the startup
/// load of a million accounts within seconds; it is not self-describing, so
/// the byte leaves room for a later encoding. A blob starting with `{` is
/// JSON (readable, accepted for hand-made or older rows).
const FORMAT_POSTCARD_V1: u8 = 1;

/// Serialises an account for the store.
pub fn encode(a: &AccountData) -> Vec<u8> {
    let mut out = vec![FORMAT_POSTCARD_V1];
    // Serialising plain owned data into a Vec cannot fail.
    out.extend(postcard::to_allocvec(a).expect("account data always serialises"));
    out
}

/// Serialises a replica account for the store: the same bytes as
/// `encode(&account.to_data())`, without the owned copy.
pub fn encode_account(a: &Account) -> Vec<u8> {
    let mut out = vec![FORMAT_POSTCARD_V1];
    out.extend(postcard::to_allocvec(&StoredView(a)).expect("account data always serialises"));
    out
}

/// Why a stored account could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    #[error("{0}")]
    Postcard(postcard::Error),
    #[error("{0}")]
    Json(serde_json::Error),
    #[error("unknown encoding {0:#04x} (written by a newer build?)")]
    UnknownEncoding(u8),
    #[error("empty blob")]
    Empty,
}

/// Reads an account blob in any encoding this build knows.
pub fn decode(data: &[u8]) -> Result<AccountData, DecodeError> {
    match data.first() {
        Some(&FORMAT_POSTCARD_V1) => postcard::from_bytes(&data[1..]).map_err(DecodeError::Postcard),
        Some(b'{') => serde_json::from_slice(data).map_err(DecodeError::Json),
        Some(&b) => Err(DecodeError::UnknownEncoding(b)),
        None => Err(DecodeError::Empty),
    }
}

/// The stored kinds that are accounts.
const ACCOUNT_KINDS: &[&str] = &["user", "device"];

/// Stored kind of group rows: a group's name and direct members, the sync
/// worker's state for expanding nested memberships. Accounts are stored with
/// their expanded groups, so loading needs no expansion: the startup path
/// stays as fast as reading the accounts.
pub const GROUP_KIND: &str = "group";

/// Serialises a group row.
pub fn encode_group(g: &GroupState) -> Vec<u8> {
    postcard::to_allocvec(g).expect("group state always serialises")
}

/// Reads the stored group table.
pub fn load_groups(store: &Store) -> Result<GroupTable, StoreError> {
    let mut conn = store.conn()?;
    let mut table = GroupTable::default();
    conn.load_kinds(Some(&[GROUP_KIND]), |id, _, data| {
        match postcard::from_bytes::<GroupState>(data) {
            Ok(g) => {
                table.groups.insert(id.to_string(), g);
            }
            Err(e) => tracing::error!(group = %id, error = %e, "stored group does not decode; skipped"),
        }
    })?;
    Ok(table)
}

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
    // One sequential scan: a connection with a small page cache.
    let mut conn = store.conn_for_scan()?;
    let (tx, rx) = mpsc::sync_channel::<Account>(4096);
    let reader = std::thread::Builder::new()
        .name("replica-load".into())
        .spawn(move || {
            let mut skipped = 0u64;
            let result = conn.load_kinds(Some(ACCOUNT_KINDS), |id, _kind, data| {
                match decode(data) {
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
    conn: &mut Conn,
    accounts: &[AccountData],
    deleted: &[&str],
    checkpoints: &[Checkpoint<'_>],
    now: i64,
) -> Result<(), StoreError> {
    let blobs: Vec<Vec<u8>> = accounts.iter().map(encode).collect();
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
    conn.apply(&ops, checkpoints, now)
}

/// [`save`] for accounts of the replica, encoded without owned copies.
pub fn save_accounts(
    conn: &mut Conn,
    accounts: &[std::sync::Arc<Account>],
    deleted: &[&str],
    checkpoints: &[Checkpoint<'_>],
    now: i64,
) -> Result<(), StoreError> {
    let blobs: Vec<Vec<u8>> = accounts.iter().map(|a| encode_account(a)).collect();
    let mut ops: Vec<ObjectOp<'_>> = accounts
        .iter()
        .zip(&blobs)
        .map(|(a, b)| ObjectOp::Put {
            object_id: a.object_id(),
            kind: kind_str(a.kind()),
            data: b,
        })
        .collect();
    ops.extend(deleted.iter().map(|id| ObjectOp::Delete { object_id: id }));
    conn.apply(&ops, checkpoints, now)
}

/// Replaces every stored account with `accounts`, with the checkpoints, in
/// one transaction (a full resync).
pub fn replace_all(
    conn: &mut Conn,
    accounts: &[AccountData],
    checkpoints: &[Checkpoint<'_>],
    now: i64,
) -> Result<u64, StoreError> {
    let blobs: Vec<Vec<u8>> = accounts.iter().map(encode).collect();
    conn.replace_all(
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
    fn encodings_round_trip() {
        let mut a = user(7);
        a.macs = vec![MacAddr::parse("02:00:00:00:00:07").unwrap()];
        a.attributes.insert("k".into(), "v".into());
        assert_eq!(decode(&encode(&a)).map_err(|e| e.to_string()), Ok(a.clone()));
        assert_eq!(decode(&serde_json::to_vec(&a).unwrap()).unwrap(), a);
        assert!(decode(&[]).is_err());
        assert!(decode(&[7]).unwrap_err().to_string().contains("newer build"));
        assert!(decode(&encode(&a)[..10]).is_err());
    }

    #[test]
    fn save_then_load_round_trips() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(d.path()).unwrap();
        let mut conn = store.conn().unwrap();
        let mut dev = AccountData::new(DirectoryKind::Entra, AccountKind::Device, "dev-1");
        dev.macs = vec![MacAddr::parse("02-00-00-00-00-01").unwrap()];
        dev.enabled = true;
        let mut accounts: Vec<AccountData> = (0..100).map(user).collect();
        accounts.push(dev);
        save(&mut conn, &accounts, &[], &[("users.delta", "L1")], 1).unwrap();
        // A group row (the sync worker's state) is not an account: loading
        // skips it rather than counting it as undecodable.
        let mut eng = GroupState {
            name: "Engineering".into(),
            ..GroupState::default()
        };
        for i in (0..100).step_by(2) {
            eng.members
                .insert(format!("00000000-0000-0000-0000-{i:012}"), "user".into());
        }
        let blob = encode_group(&eng);
        conn.apply(
            &[ObjectOp::Put {
                object_id: "g1",
                kind: GROUP_KIND,
                data: &blob,
            }],
            &[],
            1,
        )
        .unwrap();
        save(&mut conn, &[], &["00000000-0000-0000-0000-000000000003"], &[], 2).unwrap();
        // A row from a future or broken build is skipped, not fatal.
        conn.apply(
            &[
                ObjectOp::Put {
                    object_id: "junk",
                    kind: "user",
                    data: b"{not json",
                },
                ObjectOp::Put {
                    object_id: "future",
                    kind: "user",
                    data: &[9, 1, 2],
                },
            ],
            &[],
            3,
        )
        .unwrap();
        // JSON rows (hand-made, or from before the compact encoding) still load.
        let mut json_user = user(200);
        json_user.upn = Some("json@contoso.com".into());
        let json = serde_json::to_vec(&json_user).unwrap();
        let op = ObjectOp::Put {
            object_id: &json_user.object_id,
            kind: "user",
            data: &json,
        };
        conn.apply(&[op], &[], 4).unwrap();

        let replica = EntraReplica::new();
        let report = load_replica(&store, &replica).unwrap();
        assert_eq!((report.loaded, report.skipped), (101, 2));
        assert!(replica.lookup(&Identity::parse("json@contoso.com")).is_some());
        let a = replica.lookup(&Identity::parse("USER4@contoso.com")).unwrap();
        assert!(a.enabled());
        assert!(a.in_group("engineering"));
        assert!(replica.lookup(&Identity::parse("user3@contoso.com")).is_none());
        assert!(replica.lookup(&Identity::parse("02:00:00:00:00:01")).is_some());
    }
}
