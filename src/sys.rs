//! Process-level helpers that belong to no layer.

/// Hands the heap pages freed since startup back to the kernel. Parsing a
/// config with 100k local users, loading the replica and a sync round's
/// pages peak well above what stays live; glibc keeps the freed pages
/// otherwise, and they would count as the server's resident memory for as
/// long as it runs.
pub fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free pages; it has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Makes the calling thread run only on CPU time nobody else wants: the
/// `SCHED_IDLE` policy (Linux), under which any other thread that wakes up
/// takes the CPU at once, falling back to nice 19 where that is refused.
/// For background writers that must not take CPU time from the RADIUS
/// threads at full load, nor delay their wake-ups (at nice 19 a waking
/// reader could still wait behind the writer for part of a slice). Such a
/// thread may be starved for as long as the CPUs are busy: it must hold no
/// lock that anyone else waits for. Best effort: a refusal (a seccomp
/// filter, say) leaves the priority as it was.
pub fn lower_thread_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: sched_setscheduler with a valid sched_param, gettid and
    // setpriority have no preconditions; pid 0 and a thread id both name
    // the calling thread.
    unsafe {
        let param = libc::sched_param { sched_priority: 0 };
        if libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) != 0 {
            let tid = libc::gettid();
            libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 19);
        }
    }
}

/// Niceness of the threads whose work may wait a little: the pools that
/// run long CPU work (argon2, EAP-TLS handshakes) and the accounting
/// writer. Weight 110 against a RADIUS thread's 1024, so a reader that
/// wakes up with a PAP request takes the CPU from a handshake instead of
/// waiting behind it, while the handshake still gets the CPU nobody else
/// uses and a tenth of a busy one (unlike `SCHED_IDLE`, it is not starved
/// while readers are busy, so a lock it holds is soon released).
pub const WORKER_NICE: i32 = 10;

/// Makes the calling thread nicer: its niceness becomes `nice`, or stays
/// where it is if that is already nicer (never raises a priority).
/// Best effort, like [`lower_thread_priority`].
pub fn nice_thread(nice: i32) {
    #[cfg(target_os = "linux")]
    // SAFETY: gettid, getpriority and setpriority have no preconditions; a
    // thread id names the calling thread. getpriority can return -1 as a
    // value, so errno is cleared first and checked.
    unsafe {
        let tid = libc::gettid() as libc::id_t;
        *libc::__errno_location() = 0;
        let now = libc::getpriority(libc::PRIO_PROCESS, tid);
        if (now != -1 || *libc::__errno_location() == 0) && now < nice {
            libc::setpriority(libc::PRIO_PROCESS, tid, nice);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = nice;
}

/// How many CPUs the calling thread may run on now (its affinity mask,
/// which `taskset` or a cgroup's cpuset can narrow while the process runs);
/// `None` where that cannot be asked.
pub fn allowed_cpus() -> Option<usize> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: an all-zero cpu_set_t is a valid empty set; the kernel
        // fills at most its size.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
                return None;
            }
            usize::try_from(libc::CPU_COUNT(&set)).ok().filter(|n| *n > 0)
        }
    }
    #[cfg(not(target_os = "linux"))]
    None
}

/// Tells the service manager about the server's state (`sd_notify(3)`): one
/// datagram such as `READY=1` to the socket named in `NOTIFY_SOCKET`
/// (a path, or `@name` for the abstract namespace). Without that variable
/// (not started by systemd with `Type=notify`) it does nothing. A failure
/// is returned for the caller to log; the server goes on either way.
pub fn notify(state: &str) -> std::io::Result<()> {
    let Some(target) = std::env::var_os("NOTIFY_SOCKET") else {
        return Ok(());
    };
    notify_to(&target, state)
}

fn notify_to(target: &std::ffi::OsStr, state: &str) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::net::{SocketAddr, UnixDatagram};
    let bytes = target.as_bytes();
    let addr = match bytes.split_first() {
        #[cfg(target_os = "linux")]
        Some((b'@', name)) => {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(name)?
        }
        Some((b'/', _)) => SocketAddr::from_pathname(std::path::Path::new(target))?,
        _ => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("NOTIFY_SOCKET {target:?} is neither a path nor @abstract"),
            ));
        }
    };
    let socket = UnixDatagram::unbound()?;
    socket.send_to_addr(state.as_bytes(), &addr)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixDatagram;

    #[test]
    fn a_lowered_thread_runs_under_sched_idle() {
        let policy = std::thread::spawn(|| {
            lower_thread_priority();
            // SAFETY: no preconditions; 0 is the calling thread.
            unsafe { libc::sched_getscheduler(0) }
        })
        .join()
        .unwrap();
        assert_eq!(policy, libc::SCHED_IDLE);
        // This thread is untouched.
        // SAFETY: as above.
        assert_eq!(unsafe { libc::sched_getscheduler(0) }, libc::SCHED_OTHER);
    }

    fn thread_nice() -> i32 {
        // SAFETY: no preconditions; the thread id names the calling thread.
        unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) }
    }

    #[test]
    fn a_niced_thread_gets_nicer_and_never_less_nice() {
        let before = thread_nice();
        let (niced, again) = std::thread::spawn(|| {
            nice_thread(WORKER_NICE);
            let niced = thread_nice();
            // Asking for less niceness later changes nothing.
            nice_thread(0);
            (niced, thread_nice())
        })
        .join()
        .unwrap();
        assert_eq!(niced, WORKER_NICE.max(before));
        assert_eq!(again, niced);
        // This thread is untouched.
        assert_eq!(thread_nice(), before);
    }

    #[test]
    fn allowed_cpus_counts_this_threads_affinity() {
        let n = allowed_cpus().expect("sched_getaffinity works here");
        assert!(n >= 1);
        // Narrowed to one CPU in a thread of its own, it says so.
        let one = std::thread::spawn(|| {
            // SAFETY: as in allowed_cpus; the set names CPU 0 only.
            unsafe {
                let mut set: libc::cpu_set_t = std::mem::zeroed();
                libc::CPU_SET(0, &mut set);
                assert_eq!(
                    libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set),
                    0
                );
            }
            allowed_cpus()
        })
        .join()
        .unwrap();
        assert_eq!(one, Some(1));
    }

    #[test]
    fn notify_sends_one_datagram_to_the_named_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let listener = UnixDatagram::bind(&path).unwrap();
        notify_to(path.as_os_str(), "READY=1").unwrap();
        let mut buf = [0u8; 64];
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
        let e = notify_to(std::ffi::OsStr::new("relative"), "READY=1").unwrap_err();
        assert!(e.to_string().contains("\"relative\""), "{e}");
    }
}
