//! The accounting writer: one OS thread, one connection, group commit.
//!
//! SQLite calls block, and one commit per Accounting-Request would cap the
//! server at the disk's commit rate. So the RADIUS side only queues records;
//! this thread takes everything queued at that moment, writes it in a single
//! transaction, and then acknowledges each record with a call made on this
//! thread (which [`AcctWriter::record`] turns into an answer to its task).
//! Under load the batches grow by themselves, and the cost of a commit is
//! shared among them.

use std::thread::{self, JoinHandle};

use rusqlite::{Connection, TransactionBehavior};
use tokio::sync::{mpsc, oneshot};

use super::{AcctRecord, Applied, Store, StoreError, acct};

/// Most records written in one transaction: the first one waited for, plus
/// up to 256 already queued. Bounds how long one commit (and so the first
/// record's answer) can be held up by the ones behind it.
pub const MAX_BATCH: usize = 1 + 256;
/// Page cache of the accounting writer's connection, in KiB.
const ACCT_CACHE_KIB: i64 = 4096;

struct Job {
    rec: AcctRecord,
    /// Told how the write went, on the writer thread.
    done: Box<dyn FnOnce(Result<Applied, StoreError>) + Send>,
}

/// Handle for queueing accounting records to the writer thread. Cheap to
/// clone; share one per server.
///
/// There is no explicit shutdown: the thread stops once every `AcctWriter`
/// clone has been dropped and the queue is drained. Join the handle returned
/// by [`AcctWriter::spawn`] after dropping them to wait for the last commit.
#[derive(Debug, Clone)]
pub struct AcctWriter {
    tx: mpsc::Sender<Job>,
}

impl AcctWriter {
    /// Starts one dedicated OS thread owning one connection. `queue` bounds
    /// the channel (backpressure: [`AcctWriter::record`] waits while it is
    /// full); 0 is treated as 1.
    pub fn spawn(store: &Store, queue: usize) -> Result<(AcctWriter, JoinHandle<()>), StoreError> {
        // Connected here, not in the thread, so that a failure is returned
        // to the caller instead of dying silently in the thread.
        let conn = store.connect()?;
        // The store's 32 MiB page cache is for the sync's keyed updates over
        // the replica; accounting appends and updates the sessions of the
        // moment, and with that cache its connection alone grew the server
        // by 30 MiB in a soak.
        conn.pragma_update(None, "cache_size", -ACCT_CACHE_KIB)
            .map_err(|source| StoreError::Open {
                path: store.path().to_path_buf(),
                source,
            })?;
        let (tx, rx) = mpsc::channel(queue.max(1));
        let handle = thread::Builder::new()
            .name("acct-writer".into())
            .spawn(move || {
                // Accounting is answered once stored, and NASes wait seconds
                // for that; a RADIUS thread waking up takes the CPU first.
                crate::sys::nice_thread(crate::sys::WORKER_NICE);
                run(conn, rx)
            })
            .map_err(StoreError::Spawn)?;
        Ok((AcctWriter { tx }, handle))
    }

    /// Resolves after the record is committed, with what it did to the
    /// session table, or with the error that prevented it.
    ///
    /// Cancel safety: once the record is queued, dropping this future does
    /// not stop the write; only the answer is lost. Dropped while still
    /// waiting for queue space, the record is not written.
    pub async fn record(&self, rec: AcctRecord) -> Result<Applied, StoreError> {
        let (done, answer) = oneshot::channel();
        let done = Box::new(move |result| {
            // The caller may have gone away (cancelled); the write stands.
            let _ = done.send(result);
        });
        self.tx.send(Job { rec, done }).await.map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// Queues the record without waiting, from any thread, and calls `then`
    /// with the outcome: on the writer thread once the record's batch is
    /// committed (so `then` must not block), or here at once when the
    /// queue is full or the writer is gone. No task and no thread is woken
    /// but the writer's, which is what makes it cheaper than
    /// [`AcctWriter::record`] on the RADIUS path.
    pub fn record_then(&self, rec: AcctRecord, then: impl FnOnce(Result<Applied, StoreError>) + Send + 'static) {
        let job = Job {
            rec,
            done: Box::new(then),
        };
        if let Err(e) = self.tx.try_send(job) {
            let (job, error) = match e {
                mpsc::error::TrySendError::Full(job) => (job, StoreError::QueueFull),
                mpsc::error::TrySendError::Closed(job) => (job, StoreError::Closed),
            };
            (job.done)(Err(error));
        }
    }
}

fn run(mut conn: Connection, mut rx: mpsc::Receiver<Job>) {
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    // `None` once every sender is gone and the queue is empty.
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let recs: Vec<&AcctRecord> = batch.iter().map(|j| &j.rec).collect();
        let results = write_batch(&mut conn, &recs);
        drop(recs);
        for (job, result) in batch.drain(..).zip(results) {
            (job.done)(result);
        }
    }
    tracing::debug!("accounting writer stopped: all handles dropped");
}

/// Writes `recs` in one transaction; if that fails, writes each in its own
/// transaction so that one bad record does not fail the others. Returns one
/// result per record, in order.
pub(crate) fn write_batch(conn: &mut Connection, recs: &[&AcctRecord]) -> Vec<Result<Applied, StoreError>> {
    match write_in_one_tx(conn, recs) {
        Ok(applied) => applied.into_iter().map(Ok).collect(),
        Err(e) if recs.len() == 1 => vec![Err(e.into())],
        Err(e) => {
            // Nothing of the batch was committed (the transaction rolled
            // back), so redoing each record cannot apply one twice.
            tracing::warn!(
                error = %e,
                records = recs.len(),
                "accounting batch failed; retrying records one by one"
            );
            recs.iter()
                .map(|rec| {
                    let one = write_in_one_tx(conn, std::slice::from_ref(rec)).map_err(|e| {
                        tracing::warn!(
                            error = %e,
                            nas = %rec.nas,
                            session_id = %rec.session_id,
                            status = ?rec.status,
                            "accounting record not stored"
                        );
                        StoreError::from(e)
                    })?;
                    Ok(one.into_iter().next().unwrap_or(Applied::Ignored))
                })
                .collect()
        }
    }
}

fn write_in_one_tx(conn: &mut Connection, recs: &[&AcctRecord]) -> rusqlite::Result<Vec<Applied>> {
    // IMMEDIATE: the merge reads a row and writes it back, so take the write
    // lock up front; a deferred read-then-write could fail with BUSY_SNAPSHOT
    // if another process wrote in between, which busy_timeout does not retry.
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut applied = Vec::with_capacity(recs.len());
    for rec in recs {
        applied.push(acct::apply(&tx, rec)?);
    }
    tx.commit()?;
    Ok(applied)
}
