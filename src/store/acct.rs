//! Accounting records (RFC 2866) and how they merge into `sessions` rows.
//!
//! Packets for one session can arrive out of order (UDP, NAS-side queues,
//! retransmissions after a lost response), so every rule here is written to
//! give the same row whatever the arrival order and however often a packet
//! is repeated:
//!
//! * `started_at` is the earliest Start seen; only Starts set it.
//! * `stopped_at` is the earliest close seen (Stop or Accounting-On/Off);
//!   nothing ever clears it, so a late Start or Interim cannot reopen a
//!   session.
//! * Counters (`session_time`, octets, packets) only move forward: a packet
//!   whose Acct-Session-Time is lower than the stored one leaves them alone.
//!   Packets without Acct-Session-Time are ordered by `event_time` instead,
//!   and never override counters that came with one.
//! * `interim_count` counts Interim-Updates that advanced the session, i.e.
//!   whose Acct-Session-Time is strictly greater than the stored one (or,
//!   without that attribute, whose event time is strictly later). Hence a
//!   retransmitted or replayed interim is not counted twice, and neither is a
//!   delayed old one. (Caveat: without Acct-Session-Time and with the caller
//!   using "now" as event time, a retransmission looks newer and counts.)
//! * `terminate_cause`: a Stop's cause replaces the stored one (the NAS knows
//!   best, e.g. after an Accounting-On closed the session as NAS-Reboot); a
//!   Stop without one keeps it.
//! * Descriptive attributes (user name, station ids, ...) present in a packet
//!   replace the stored ones; absent ones keep them.
//! * `updated_at` is the latest event time seen.

use std::cmp::Ordering;

use rusqlite::{Connection, Row, named_params};

/// Acct-Terminate-Cause 11, NAS-Reboot (RFC 2866 §5.10).
pub const TERMINATE_CAUSE_NAS_REBOOT: u32 = 11;

/// Acct-Status-Type (RFC 2866 §5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcctStatus {
    Start,
    Stop,
    InterimUpdate,
    AccountingOn,
    AccountingOff,
    /// Any other code (e.g. 9-15: failed, tunnel accounting). Should not hold
    /// one of the codes named above; [`AcctStatus::from_code`] never produces
    /// that.
    Other(u32),
}

/// `Other(0)`: 0 is no Acct-Status-Type, so a record left at its default
/// status is accepted and stored nowhere rather than taken for a Start.
impl Default for AcctStatus {
    fn default() -> Self {
        AcctStatus::Other(0)
    }
}

impl AcctStatus {
    pub fn from_code(code: u32) -> Self {
        match code {
            1 => AcctStatus::Start,
            2 => AcctStatus::Stop,
            3 => AcctStatus::InterimUpdate,
            7 => AcctStatus::AccountingOn,
            8 => AcctStatus::AccountingOff,
            other => AcctStatus::Other(other),
        }
    }

    pub fn code(self) -> u32 {
        match self {
            AcctStatus::Start => 1,
            AcctStatus::Stop => 2,
            AcctStatus::InterimUpdate => 3,
            AcctStatus::AccountingOn => 7,
            AcctStatus::AccountingOff => 8,
            AcctStatus::Other(code) => code,
        }
    }
}

/// One decoded Accounting-Request, as the server hands it to the store.
#[derive(Debug, Clone, Default)]
pub struct AcctRecord {
    /// NAS key computed by the caller (NAS-IP-Address, else NAS-Identifier,
    /// else source IP). Must not be empty.
    pub nas: String,
    /// Configured client name.
    pub client_name: String,
    pub status: AcctStatus,
    /// Acct-Session-Id. May be empty only for Accounting-On/Off and other
    /// statuses that are not stored per session.
    pub session_id: String,
    pub user_name: Option<String>,
    pub calling_station_id: Option<String>,
    pub called_station_id: Option<String>,
    pub framed_ip: Option<String>,
    pub nas_port: Option<u32>,
    pub nas_port_id: Option<String>,
    pub session_time: Option<u32>,
    /// Already combined with Acct-Input-Gigawords by the caller.
    pub input_octets: Option<u64>,
    /// Already combined with Acct-Output-Gigawords by the caller.
    pub output_octets: Option<u64>,
    pub input_packets: Option<u32>,
    pub output_packets: Option<u32>,
    pub terminate_cause: Option<u32>,
    /// Unix seconds, supplied by the caller (Event-Timestamp, else now).
    pub event_time: i64,
    /// Source address of the packet: where the NAS is, for Disconnect.
    pub nas_addr: Option<String>,
    /// The account the User-Name resolved to when the packet arrived.
    pub account: Option<SessionAccount>,
}

/// The account a session resolved to, and the `[[policy]]` rule that
/// account got, when its accounting first named it. A sync round compares
/// the account as it now stands against this to find the sessions it
/// changed; sending a Disconnect-Request moves it to the new state, so that
/// one change is acted on once.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SessionAccount {
    /// `entra`, `local`, … (`DirectoryKind::as_str`).
    pub directory: String,
    /// `user` or `device`.
    pub kind: String,
    /// The directory's id of the account (Entra object id, local name).
    pub object_id: String,
    pub enabled: bool,
    /// Index into `[[policy]]` of the rule it got; `None`: no rule matched.
    pub policy_rule: Option<u32>,
    pub vlan: Option<String>,
}

/// What applying one record did, for the in-memory session index.
#[derive(Debug, Clone, PartialEq)]
pub enum Applied {
    /// The session's row as it now stands.
    Session(Box<SessionRow>),
    /// Accounting-On/Off: the NAS's sessions last updated at or before `at`
    /// are closed.
    NasClosed { nas: String, at: i64 },
    /// Not stored (another status type).
    Ignored,
}

/// One row of `sessions`: the merged state of one accounting session.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionRow {
    pub nas: String,
    pub session_id: String,
    pub client_name: String,
    pub user_name: Option<String>,
    pub calling_station_id: Option<String>,
    pub called_station_id: Option<String>,
    pub framed_ip: Option<String>,
    pub nas_port: Option<u32>,
    pub nas_port_id: Option<String>,
    /// Earliest Start event time; `None` if no Start arrived (yet).
    pub started_at: Option<i64>,
    /// Latest event time of any packet for this session.
    pub updated_at: i64,
    /// Earliest close (Stop, or Accounting-On/Off of its NAS).
    pub stopped_at: Option<i64>,
    pub session_time: Option<u32>,
    pub input_octets: Option<u64>,
    pub output_octets: Option<u64>,
    pub input_packets: Option<u32>,
    pub output_packets: Option<u32>,
    pub terminate_cause: Option<u32>,
    /// Interim-Updates that advanced the session (see the module doc).
    pub interim_count: u32,
    /// Source address of its latest accounting packet.
    pub nas_addr: Option<String>,
    /// First account its User-Name resolved to, moved on by Disconnect.
    pub account: Option<SessionAccount>,
    /// Outcome of the last Disconnect-Request for it (`ack`, `nak: …`,
    /// `timeout`, `no coa_port`), and when.
    pub disconnect_outcome: Option<String>,
    pub disconnect_at: Option<i64>,
}

impl SessionRow {
    /// A session known by its key and client only, nothing recorded yet.
    pub fn new(nas: String, session_id: String, client_name: String, updated_at: i64) -> SessionRow {
        SessionRow {
            nas,
            session_id,
            client_name,
            user_name: None,
            calling_station_id: None,
            called_station_id: None,
            framed_ip: None,
            nas_port: None,
            nas_port_id: None,
            started_at: None,
            updated_at,
            stopped_at: None,
            session_time: None,
            input_octets: None,
            output_octets: None,
            input_packets: None,
            output_packets: None,
            terminate_cause: None,
            interim_count: 0,
            nas_addr: None,
            account: None,
            disconnect_outcome: None,
            disconnect_at: None,
        }
    }

    fn empty(rec: &AcctRecord) -> SessionRow {
        SessionRow::new(
            rec.nas.clone(),
            rec.session_id.clone(),
            rec.client_name.clone(),
            rec.event_time,
        )
    }
}

/// Where `rec`'s counters stand relative to the stored ones.
fn counter_order(stored: &SessionRow, rec: &AcctRecord) -> Ordering {
    match (rec.session_time, stored.session_time) {
        (Some(new), Some(old)) => new.cmp(&old),
        (Some(_), None) => Ordering::Greater,
        // Counters that came with a session time are better evidence than
        // any packet without one.
        (None, Some(_)) => Ordering::Less,
        (None, None) => rec.event_time.cmp(&stored.updated_at),
    }
}

fn take_counters(row: &mut SessionRow, rec: &AcctRecord) {
    // A NAS may omit an attribute in one packet; keep what we knew.
    row.session_time = rec.session_time.or(row.session_time);
    row.input_octets = rec.input_octets.or(row.input_octets);
    row.output_octets = rec.output_octets.or(row.output_octets);
    row.input_packets = rec.input_packets.or(row.input_packets);
    row.output_packets = rec.output_packets.or(row.output_packets);
}

fn earliest(stored: Option<i64>, new: i64) -> Option<i64> {
    Some(stored.map_or(new, |s| s.min(new)))
}

/// Folds a Start, Interim-Update or Stop into the stored row (or a new one).
/// Pure, so that the ordering rules can be tested without a database.
pub(crate) fn merge(stored: Option<SessionRow>, rec: &AcctRecord) -> SessionRow {
    let mut row = stored.unwrap_or_else(|| SessionRow::empty(rec));
    // Computed before `updated_at` moves, which it is compared against.
    let order = counter_order(&row, rec);

    row.client_name.clone_from(&rec.client_name);
    macro_rules! overlay {
        ($($field:ident),*) => {$(
            if rec.$field.is_some() {
                row.$field.clone_from(&rec.$field);
            }
        )*};
    }
    overlay!(
        user_name,
        calling_station_id,
        called_station_id,
        framed_ip,
        nas_port,
        nas_port_id,
        nas_addr
    );
    // The first resolution is the baseline a sync round compares against;
    // a later packet must not move it silently past a change.
    if row.account.is_none() {
        row.account.clone_from(&rec.account);
    }

    match rec.status {
        AcctStatus::Start => {
            row.started_at = earliest(row.started_at, rec.event_time);
            // A Start normally carries no counters; if it does, they are
            // subject to the same forward-only rule.
            if order.is_ge() {
                take_counters(&mut row, rec);
            }
        }
        AcctStatus::InterimUpdate => {
            if order.is_ge() {
                take_counters(&mut row, rec);
            }
            if order.is_gt() {
                row.interim_count = row.interim_count.saturating_add(1);
            }
        }
        AcctStatus::Stop => {
            if order.is_ge() {
                take_counters(&mut row, rec);
            }
            row.terminate_cause = rec.terminate_cause.or(row.terminate_cause);
            row.stopped_at = earliest(row.stopped_at, rec.event_time);
        }
        AcctStatus::AccountingOn | AcctStatus::AccountingOff | AcctStatus::Other(_) => {}
    }
    row.updated_at = row.updated_at.max(rec.event_time);
    row
}

/// Applies one record inside the caller's transaction.
pub(crate) fn apply(conn: &Connection, rec: &AcctRecord) -> rusqlite::Result<Applied> {
    match rec.status {
        AcctStatus::Start | AcctStatus::InterimUpdate | AcctStatus::Stop => {
            let stored = match load_session(conn, &rec.nas, &rec.session_id) {
                Ok(row) => Some(row),
                Err(rusqlite::Error::QueryReturnedNoRows) => None,
                Err(e) => return Err(e),
            };
            let row = merge(stored, rec);
            store_session(conn, &row)?;
            Ok(Applied::Session(Box::new(row)))
        }
        AcctStatus::AccountingOn | AcctStatus::AccountingOff => {
            close_nas_sessions(conn, rec)?;
            Ok(Applied::NasClosed {
                nas: rec.nas.clone(),
                at: rec.event_time,
            })
        }
        AcctStatus::Other(code) => {
            tracing::debug!(
                nas = %rec.nas,
                client = %rec.client_name,
                code,
                "accounting status type not stored"
            );
            Ok(Applied::Ignored)
        }
    }
}

/// The NAS (re)booted or is going down: every session it still had open is
/// over. Sessions whose last news is later than the event belong to the new
/// boot (a delayed or retransmitted Accounting-On) and stay open.
fn close_nas_sessions(conn: &Connection, rec: &AcctRecord) -> rusqlite::Result<()> {
    let closed = conn
        .prepare_cached(
            "UPDATE sessions
                SET stopped_at = :t,
                    terminate_cause = coalesce(terminate_cause, :cause),
                    updated_at = max(updated_at, :t)
              WHERE nas = :nas AND stopped_at IS NULL AND updated_at <= :t",
        )?
        .execute(named_params! {
            ":t": rec.event_time,
            ":cause": TERMINATE_CAUSE_NAS_REBOOT,
            ":nas": rec.nas,
        })?;
    tracing::info!(
        nas = %rec.nas,
        client = %rec.client_name,
        status = ?rec.status,
        closed,
        "NAS restarted; closed its open sessions"
    );
    Ok(())
}

/// SQLite integers are i64. Octet counts beyond i64::MAX (8 EiB) cannot occur
/// in practice; saturating keeps such a record storable instead of failing it
/// and making the NAS retransmit it forever.
fn octets_to_sql(v: Option<u64>) -> Option<i64> {
    v.map(|v| i64::try_from(v).unwrap_or(i64::MAX))
}

fn octets_from_sql(row: &Row<'_>, idx: &str) -> rusqlite::Result<Option<u64>> {
    let v: Option<i64> = row.get(idx)?;
    v.map(|v| {
        u64::try_from(v)
            .map_err(|e| rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Integer, e.into()))
    })
    .transpose()
}

fn store_session(conn: &Connection, row: &SessionRow) -> rusqlite::Result<()> {
    // An upsert rather than INSERT OR REPLACE: REPLACE deletes the old row
    // first, which would fire ON DELETE actions of future foreign keys.
    conn.prepare_cached(
        "INSERT INTO sessions (
            nas, session_id, client_name, user_name, calling_station_id,
            called_station_id, framed_ip, nas_port, nas_port_id, started_at,
            updated_at, stopped_at, session_time, input_octets, output_octets,
            input_packets, output_packets, terminate_cause, interim_count,
            nas_addr, account_directory, account_kind, account_id, account_enabled,
            policy_rule, vlan
         ) VALUES (
            :nas, :session_id, :client_name, :user_name, :calling_station_id,
            :called_station_id, :framed_ip, :nas_port, :nas_port_id, :started_at,
            :updated_at, :stopped_at, :session_time, :input_octets, :output_octets,
            :input_packets, :output_packets, :terminate_cause, :interim_count,
            :nas_addr, :account_directory, :account_kind, :account_id, :account_enabled,
            :policy_rule, :vlan
         )
         ON CONFLICT (nas, session_id) DO UPDATE SET
            client_name = excluded.client_name,
            user_name = excluded.user_name,
            calling_station_id = excluded.calling_station_id,
            called_station_id = excluded.called_station_id,
            framed_ip = excluded.framed_ip,
            nas_port = excluded.nas_port,
            nas_port_id = excluded.nas_port_id,
            started_at = excluded.started_at,
            updated_at = excluded.updated_at,
            stopped_at = excluded.stopped_at,
            session_time = excluded.session_time,
            input_octets = excluded.input_octets,
            output_octets = excluded.output_octets,
            input_packets = excluded.input_packets,
            output_packets = excluded.output_packets,
            terminate_cause = excluded.terminate_cause,
            interim_count = excluded.interim_count,
            nas_addr = excluded.nas_addr,
            account_directory = excluded.account_directory,
            account_kind = excluded.account_kind,
            account_id = excluded.account_id,
            account_enabled = excluded.account_enabled,
            policy_rule = excluded.policy_rule,
            vlan = excluded.vlan",
    )?
    .execute(named_params! {
        ":nas": row.nas,
        ":session_id": row.session_id,
        ":client_name": row.client_name,
        ":user_name": row.user_name,
        ":calling_station_id": row.calling_station_id,
        ":called_station_id": row.called_station_id,
        ":framed_ip": row.framed_ip,
        ":nas_port": row.nas_port,
        ":nas_port_id": row.nas_port_id,
        ":started_at": row.started_at,
        ":updated_at": row.updated_at,
        ":stopped_at": row.stopped_at,
        ":session_time": row.session_time,
        ":input_octets": octets_to_sql(row.input_octets),
        ":output_octets": octets_to_sql(row.output_octets),
        ":input_packets": row.input_packets,
        ":output_packets": row.output_packets,
        ":terminate_cause": row.terminate_cause,
        ":interim_count": row.interim_count,
        ":nas_addr": row.nas_addr,
        ":account_directory": row.account.as_ref().map(|a| &a.directory),
        ":account_kind": row.account.as_ref().map(|a| &a.kind),
        ":account_id": row.account.as_ref().map(|a| &a.object_id),
        ":account_enabled": row.account.as_ref().map(|a| a.enabled),
        ":policy_rule": row.account.as_ref().and_then(|a| a.policy_rule),
        ":vlan": row.account.as_ref().and_then(|a| a.vlan.as_ref()),
    })?;
    Ok(())
}

const SESSION_COLUMNS: &str = "nas, session_id, client_name, user_name, calling_station_id,
    called_station_id, framed_ip, nas_port, nas_port_id, started_at, updated_at,
    stopped_at, session_time, input_octets, output_octets, input_packets,
    output_packets, terminate_cause, interim_count, nas_addr, account_directory,
    account_kind, account_id, account_enabled, policy_rule, vlan, disconnect_outcome,
    disconnect_at";

fn session_from_row(r: &Row<'_>) -> rusqlite::Result<SessionRow> {
    Ok(SessionRow {
        nas: r.get("nas")?,
        session_id: r.get("session_id")?,
        client_name: r.get("client_name")?,
        user_name: r.get("user_name")?,
        calling_station_id: r.get("calling_station_id")?,
        called_station_id: r.get("called_station_id")?,
        framed_ip: r.get("framed_ip")?,
        nas_port: r.get("nas_port")?,
        nas_port_id: r.get("nas_port_id")?,
        started_at: r.get("started_at")?,
        updated_at: r.get("updated_at")?,
        stopped_at: r.get("stopped_at")?,
        session_time: r.get("session_time")?,
        input_octets: octets_from_sql(r, "input_octets")?,
        output_octets: octets_from_sql(r, "output_octets")?,
        input_packets: r.get("input_packets")?,
        output_packets: r.get("output_packets")?,
        terminate_cause: r.get("terminate_cause")?,
        interim_count: r.get("interim_count")?,
        nas_addr: r.get("nas_addr")?,
        account: match r.get::<_, Option<String>>("account_id")? {
            Some(object_id) => Some(SessionAccount {
                directory: r.get::<_, Option<String>>("account_directory")?.unwrap_or_default(),
                kind: r.get::<_, Option<String>>("account_kind")?.unwrap_or_default(),
                object_id,
                enabled: r.get::<_, Option<bool>>("account_enabled")?.unwrap_or(true),
                policy_rule: r.get("policy_rule")?,
                vlan: r.get("vlan")?,
            }),
            None => None,
        },
        disconnect_outcome: r.get("disconnect_outcome")?,
        disconnect_at: r.get("disconnect_at")?,
    })
}

/// `Err(QueryReturnedNoRows)` when absent (use `.optional()`).
pub(crate) fn load_session(conn: &Connection, nas: &str, session_id: &str) -> rusqlite::Result<SessionRow> {
    conn.prepare_cached(&format!(
        "SELECT {SESSION_COLUMNS} FROM sessions WHERE nas = ?1 AND session_id = ?2"
    ))?
    .query_row((nas, session_id), session_from_row)
}

pub(crate) fn open_sessions(conn: &Connection, nas: &str) -> rusqlite::Result<Vec<SessionRow>> {
    conn.prepare_cached(&format!(
        "SELECT {SESSION_COLUMNS} FROM sessions
          WHERE nas = ?1 AND stopped_at IS NULL ORDER BY session_id"
    ))?
    .query_map([nas], session_from_row)?
    .collect()
}

/// The `limit` most recently updated sessions without a Stop (nor an
/// Accounting-On/Off of their NAS): what the session index loads at startup.
pub(crate) fn newest_open_sessions(conn: &Connection, limit: usize) -> rusqlite::Result<Vec<SessionRow>> {
    conn.prepare_cached(&format!(
        "SELECT {SESSION_COLUMNS} FROM sessions WHERE stopped_at IS NULL ORDER BY updated_at DESC LIMIT ?1"
    ))?
    .query_map([i64::try_from(limit).unwrap_or(i64::MAX)], session_from_row)?
    .collect()
}

/// Acct-Terminate-Cause 6, Admin-Reset (RFC 2866 §5.10): how a session ended
/// by a Disconnect-ACK is closed until its NAS's Stop says more.
pub const TERMINATE_CAUSE_ADMIN_RESET: u32 = 6;

/// The outcome of one Disconnect-Request, to be written on its session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisconnectOutcome {
    pub nas: String,
    pub session_id: String,
    /// `ack`, `nak: <Error-Cause>`, `timeout`, `no coa_port`, …
    pub outcome: String,
    pub at: i64,
    /// A Disconnect-ACK: the session is over.
    pub ended: bool,
    /// The account state the request acted on: the new baseline.
    pub account: Option<SessionAccount>,
}

pub(crate) fn record_disconnect(conn: &Connection, d: &DisconnectOutcome) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE sessions
            SET disconnect_outcome = :outcome,
                disconnect_at = :at,
                stopped_at = CASE WHEN :ended THEN coalesce(stopped_at, :at) ELSE stopped_at END,
                terminate_cause = CASE WHEN :ended THEN coalesce(terminate_cause, :cause)
                                       ELSE terminate_cause END
          WHERE nas = :nas AND session_id = :session_id",
    )?
    .execute(named_params! {
        ":outcome": d.outcome,
        ":at": d.at,
        ":ended": d.ended,
        ":cause": TERMINATE_CAUSE_ADMIN_RESET,
        ":nas": d.nas,
        ":session_id": d.session_id,
    })?;
    if let Some(a) = &d.account {
        set_baseline(conn, &d.nas, &d.session_id, a)?;
    }
    Ok(())
}

/// Moves a session's account baseline (after a Disconnect was sent for a
/// change, or after a reload re-numbered the `[[policy]]` rules).
pub(crate) fn set_baseline(conn: &Connection, nas: &str, session_id: &str, a: &SessionAccount) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE sessions
            SET account_enabled = :enabled, policy_rule = :rule, vlan = :vlan
          WHERE nas = :nas AND session_id = :session_id",
    )?
    .execute(named_params! {
        ":enabled": a.enabled,
        ":rule": a.policy_rule,
        ":vlan": a.vlan,
        ":nas": nas,
        ":session_id": session_id,
    })?;
    Ok(())
}
