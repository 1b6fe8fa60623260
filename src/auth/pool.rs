//! A few threads of our own for argon2. Each verification holds about
//! 19 MiB for tens of milliseconds; on tokio's blocking pool (up to 512
//! threads) a PAP flood for a `password_hash` user grew the server to
//! gigabytes. Here at most `threads` run at once, so memory stays at
//! `threads` × 19 MiB whatever arrives; how many may wait is bounded by the
//! server's admission (`server::limits`), not here.

use std::sync::mpsc;
use std::thread::JoinHandle;

type Job = Box<dyn FnOnce() + Send>;

/// Threads that run CPU-heavy closures one at a time each, at nice
/// [`crate::sys::WORKER_NICE`] so that they never hold up a RADIUS
/// thread (with `eapmix` in `cargo bench --bench load`: PAP p99 under
/// EAP-TLS load 1.8–2.5 ms at nice 0, 0.9–1.5 ms at nice 10). Dropping the
/// pool lets the queued jobs finish, then joins the threads.
pub struct CpuPool {
    /// `None` only while dropping, so that the threads see the channel close.
    jobs: Option<mpsc::Sender<Job>>,
    threads: Vec<JoinHandle<()>>,
}

impl CpuPool {
    /// `threads` worker threads (at least one), named `name-N`.
    pub fn new(name: &str, threads: usize) -> CpuPool {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = std::sync::Arc::new(std::sync::Mutex::new(rx));
        let threads = (0..threads.max(1))
            .map(|i| {
                let rx = rx.clone();
                std::thread::Builder::new()
                    .name(format!("{name}-{i}"))
                    .spawn(move || {
                        crate::sys::nice_thread(crate::sys::WORKER_NICE);
                        loop {
                            // An idle thread waits for a job holding the lock, the
                            // others wait for the lock; it is released before the
                            // job runs, so jobs run side by side.
                            let job = match rx.lock().unwrap_or_else(|p| p.into_inner()).recv() {
                                Ok(job) => job,
                                Err(_) => break,
                            };
                            job();
                        }
                    })
                    .expect("spawning a pool thread")
            })
            .collect();
        CpuPool {
            jobs: Some(tx),
            threads,
        }
    }

    /// The number of threads, which is how many jobs run at once.
    pub fn threads(&self) -> usize {
        self.threads.len()
    }

    /// Runs `f` on a pool thread and waits for it without blocking the
    /// caller's thread. `None` if the job panicked.
    pub async fn run<R: Send + 'static>(&self, f: impl FnOnce() -> R + Send + 'static) -> Option<R> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
            let _ = tx.send(r.ok());
        });
        self.jobs.as_ref()?.send(job).ok()?;
        rx.await.ok().flatten()
    }
}

impl Drop for CpuPool {
    fn drop(&mut self) {
        drop(self.jobs.take());
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Threads for argon2 on this machine: one per CPU this process may use, at
/// most four (memory is 19 MiB a thread; more threads would not shorten a
/// flood, only raise its memory).
pub fn default_argon2_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get()).min(4)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_more_jobs_run_at_once_than_threads() {
        let pool = Arc::new(CpuPool::new("t", 2));
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for i in 0..16 {
            let (pool, running, peak) = (pool.clone(), running.clone(), peak.clone());
            tasks.push(tokio::spawn(async move {
                pool.run(move || {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    std::thread::sleep(std::time::Duration::from_millis(5));
                    running.fetch_sub(1, Ordering::SeqCst);
                    i * 2
                })
                .await
            }));
        }
        let mut sum = 0;
        for t in tasks {
            sum += t.await.unwrap().unwrap();
        }
        assert_eq!(sum, (0..16).map(|i| i * 2).sum::<i32>());
        assert!(peak.load(Ordering::SeqCst) <= 2, "peak {}", peak.load(Ordering::SeqCst));
    }

    #[tokio::test]
    async fn jobs_run_nicer_than_the_caller() {
        // SAFETY: no preconditions; the thread id names the calling thread.
        let nice = || unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) };
        let caller = nice();
        let pool = CpuPool::new("t", 1);
        let in_job = pool.run(nice).await.unwrap();
        assert_eq!(in_job, crate::sys::WORKER_NICE.max(caller));
        assert_eq!(nice(), caller);
    }

    #[tokio::test]
    async fn a_panicking_job_is_none_and_the_pool_goes_on() {
        let pool = CpuPool::new("t", 1);
        assert_eq!(pool.run(|| -> u8 { panic!("boom") }).await, None);
        assert_eq!(pool.run(|| 7u8).await, Some(7));
    }
}
