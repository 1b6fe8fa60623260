//! Batched datagram I/O for the reader threads: on Linux one `recvmmsg`
//! takes up to [`BATCH`] requests and one `sendmmsg` sends the replies
//! decided from them, instead of a system call per packet each way.
//! Elsewhere it falls back to one datagram per call. [`Poller`] is how a
//! reader thread waits: in `poll(2)` on its sockets, woken by the kernel
//! itself. The sockets are not registered with tokio, whose I/O driver
//! would otherwise be woken by every datagram that arrives.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

use tracing::debug;

use crate::proto::packet::MAX_PACKET_LEN;

/// Datagrams per system call. Enough to empty a busy socket in a few
/// calls; small enough that the buffers (4 KiB each) stay in cache.
pub const BATCH: usize = 32;

/// One byte more than the largest legal packet, to tell oversize apart.
const BUF_LEN: usize = MAX_PACKET_LEN + 1;

/// Receive calls between two reads of the drop count when no batch comes
/// back full.
const DROPS_EVERY: u32 = 1024;

/// Receive buffers and, after [`RecvBatch::recv`], the datagrams in them.
pub struct RecvBatch {
    bufs: Box<[[u8; BUF_LEN]]>,
    got: Vec<(usize, SocketAddr)>,
    /// The socket's count of datagrams dropped (a full receive queue), if
    /// read with the last batch.
    dropped: Option<u32>,
    /// Receive calls since the drop count was last read.
    since_drops: u32,
}

impl Default for RecvBatch {
    fn default() -> Self {
        RecvBatch {
            bufs: vec![[0u8; BUF_LEN]; BATCH].into_boxed_slice(),
            got: Vec::with_capacity(BATCH),
            dropped: None,
            since_drops: 0,
        }
    }
}

/// The socket's running count of dropped datagrams (Linux `SO_MEMINFO`'s
/// `SK_MEMINFO_DROPS`: for UDP, a full receive queue).
///
/// Read with a system call of its own after a full batch rather than
/// carried by every datagram (`SO_RXQ_OVFL`, which cost the kernel about
/// 1.5 % of the CPU at full load): a queue that overflowed was full, so the
/// batches that empty it come back full and the count is read then; and
/// every `DROPS_EVERY` receive calls in any case.
#[cfg(target_os = "linux")]
fn read_drops(socket: &UdpSocket) -> Option<u32> {
    let mut info = [0u32; 9];
    let mut len = std::mem::size_of_val(&info) as libc::socklen_t;
    // SAFETY: a valid fd, a buffer and its length; the kernel writes at
    // most `len` bytes and says how many.
    let r = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_MEMINFO,
            info.as_mut_ptr().cast(),
            &mut len,
        )
    };
    let at = libc::SK_MEMINFO_DROPS as usize;
    (r == 0 && len as usize >= (at + 1) * 4).then(|| info[at])
}

#[cfg(not(target_os = "linux"))]
fn read_drops(_socket: &UdpSocket) -> Option<u32> {
    None
}

impl RecvBatch {
    /// Reads what is waiting, without waiting; `WouldBlock` when nothing is.
    pub fn recv(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        self.got.clear();
        self.recv_now(socket)?;
        self.since_drops += 1;
        self.dropped = None;
        if self.got.len() == BATCH || self.since_drops >= DROPS_EVERY {
            self.since_drops = 0;
            self.dropped = read_drops(socket);
        }
        Ok(self.got.len())
    }

    /// The socket's running count of datagrams dropped for a full receive
    /// queue, if it was read with the last batch (see `read_drops`).
    pub fn dropped(&self) -> Option<u32> {
        self.dropped
    }

    /// The `i`th datagram and its source.
    pub fn get(&self, i: usize) -> (&[u8], SocketAddr) {
        let (len, src) = self.got[i];
        (&self.bufs[i][..len], src)
    }

    #[cfg(target_os = "linux")]
    fn recv_now(&mut self, socket: &UdpSocket) -> io::Result<()> {
        // SAFETY (all three): plain C structs, for which all-zero is valid.
        let mut names: [libc::sockaddr_storage; BATCH] = unsafe { std::mem::zeroed() };
        let mut iov: [libc::iovec; BATCH] = unsafe { std::mem::zeroed() };
        let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
        for i in 0..BATCH {
            iov[i].iov_base = self.bufs[i].as_mut_ptr().cast();
            iov[i].iov_len = BUF_LEN;
            hdrs[i].msg_hdr.msg_name = (&mut names[i] as *mut libc::sockaddr_storage).cast();
            hdrs[i].msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            hdrs[i].msg_hdr.msg_iov = &mut iov[i];
            hdrs[i].msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: every header points at a name, an iovec and a buffer that
        // outlive the call; the kernel writes at most the lengths given.
        let n = unsafe {
            libc::recvmmsg(
                socket.as_raw_fd(),
                hdrs.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        for (i, hdr) in hdrs.iter().enumerate().take(n as usize) {
            let len = (hdr.msg_len as usize).min(BUF_LEN);
            match from_sockaddr(&names[i]) {
                Some(src) => self.got.push((len, src)),
                // Keep indexes aligned with the buffers; an empty datagram
                // from nowhere is dropped by the caller as malformed.
                None => self.got.push((0, SocketAddr::from(([0, 0, 0, 0], 0)))),
            }
        }
        Ok(())
    }

    #[cfg(not(target_os = "linux"))]
    fn recv_now(&mut self, socket: &UdpSocket) -> io::Result<()> {
        let (len, src) = socket.recv_from(&mut self.bufs[0])?;
        self.got.push((len, src));
        Ok(())
    }
}

/// Replies waiting to be sent, each to its own destination.
#[derive(Default)]
pub struct SendBatch {
    pending: Vec<(Arc<[u8]>, SocketAddr)>,
}

impl SendBatch {
    pub fn push(&mut self, bytes: Arc<[u8]>, to: SocketAddr) {
        self.pending.push((bytes, to));
    }

    /// Sends everything pending. A full socket buffer is waited out a few
    /// times, [`FULL_WAIT`] at most each; what still does not fit is
    /// dropped, and the NAS's retransmission is answered from the response
    /// cache.
    pub fn flush(&mut self, socket: &UdpSocket) {
        let mut sent = 0;
        let mut waits = 0;
        while sent < self.pending.len() {
            match send_now(socket, &self.pending[sent..]) {
                Ok(n) => sent += n.max(1),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && waits < 3 => {
                    waits += 1;
                    let mut fd = [pollfd(socket.as_raw_fd(), libc::POLLOUT)];
                    let _ = poll(&mut fd, FULL_WAIT);
                }
                Err(e) => {
                    // This destination failed (or the buffer stayed full);
                    // go on with the rest.
                    debug!(destination = %self.pending[sent].1, error = %e, "sending reply failed");
                    sent += 1;
                }
            }
        }
        self.pending.clear();
    }
}

/// How long a full send buffer is waited out, each time.
const FULL_WAIT: Duration = Duration::from_millis(10);

/// Sends one reply from a task (slow work: EAP, Active Directory,
/// accounting). A full send buffer is waited out a few times without
/// holding the worker thread.
pub async fn send_to(socket: &UdpSocket, bytes: &[u8], to: SocketAddr) -> io::Result<()> {
    let mut waits = 0;
    loop {
        match socket.send_to(bytes, to) {
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && waits < 3 => {
                waits += 1;
                tokio::time::sleep(FULL_WAIT).await;
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(target_os = "linux")]
fn send_now(socket: &UdpSocket, batch: &[(Arc<[u8]>, SocketAddr)]) -> io::Result<usize> {
    let batch = &batch[..batch.len().min(BATCH)];
    // SAFETY (all three): plain C structs, for which all-zero is valid.
    let mut names: [libc::sockaddr_storage; BATCH] = unsafe { std::mem::zeroed() };
    let mut iov: [libc::iovec; BATCH] = unsafe { std::mem::zeroed() };
    let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
    for (i, (bytes, to)) in batch.iter().enumerate() {
        let len = to_sockaddr(*to, &mut names[i]);
        iov[i].iov_base = bytes.as_ptr() as *mut libc::c_void;
        iov[i].iov_len = bytes.len();
        hdrs[i].msg_hdr.msg_name = (&mut names[i] as *mut libc::sockaddr_storage).cast();
        hdrs[i].msg_hdr.msg_namelen = len;
        hdrs[i].msg_hdr.msg_iov = &mut iov[i];
        hdrs[i].msg_hdr.msg_iovlen = 1;
    }
    // SAFETY: every header points at a name, an iovec and bytes that
    // outlive the call; the kernel only reads them.
    let n = unsafe {
        libc::sendmmsg(
            socket.as_raw_fd(),
            hdrs.as_mut_ptr(),
            batch.len() as libc::c_uint,
            libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

#[cfg(not(target_os = "linux"))]
fn send_now(socket: &UdpSocket, batch: &[(Arc<[u8]>, SocketAddr)]) -> io::Result<usize> {
    socket.send_to(&batch[0].0, batch[0].1).map(|_| 1)
}

/// What a reader thread waits on: its sockets, and a descriptor that
/// becomes readable at shutdown (and stays so: it is never read).
pub struct Poller {
    /// The sockets, in the order given, then the shutdown descriptor.
    fds: Vec<libc::pollfd>,
}

impl Poller {
    pub fn new(sockets: impl IntoIterator<Item = RawFd>, shutdown: Option<RawFd>) -> Poller {
        let mut fds: Vec<libc::pollfd> = sockets.into_iter().map(|fd| pollfd(fd, libc::POLLIN)).collect();
        // Without one (it could not be made), a negative descriptor is
        // ignored by poll(2); the caller's timeout notices shutdown.
        fds.push(pollfd(shutdown.unwrap_or(-1), libc::POLLIN));
        Poller { fds }
    }

    /// Waits until a socket has something to read, shutdown, or `timeout`;
    /// how many of the descriptors are ready.
    pub fn wait(&mut self, timeout: Duration) -> io::Result<usize> {
        poll(&mut self.fds, timeout)
    }

    /// Waits for shutdown or `timeout` only: a reader standing by.
    pub fn sleep(&mut self, timeout: Duration) {
        let last = self.fds.len() - 1;
        let _ = poll(&mut self.fds[last..], timeout);
    }

    /// Whether the `i`th socket had something (or an error) to read at the
    /// last [`Poller::wait`].
    pub fn ready(&self, i: usize) -> bool {
        self.fds[i].revents & (libc::POLLIN | libc::POLLERR) != 0
    }
}

fn pollfd(fd: RawFd, events: libc::c_short) -> libc::pollfd {
    libc::pollfd { fd, events, revents: 0 }
}

/// `poll(2)`; an interrupted call counts as a timeout with nothing ready.
fn poll(fds: &mut [libc::pollfd], timeout: Duration) -> io::Result<usize> {
    for f in fds.iter_mut() {
        f.revents = 0;
    }
    let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: a valid array of pollfd and its length; the kernel writes
    // only `revents`.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
    if n < 0 {
        let e = io::Error::last_os_error();
        return if e.kind() == io::ErrorKind::Interrupted {
            Ok(0)
        } else {
            Err(e)
        };
    }
    Ok(n as usize)
}

#[cfg(target_os = "linux")]
fn from_sockaddr(s: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match s.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let a = unsafe { &*(s as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            let ip = std::net::Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
            Some(SocketAddr::from((ip, u16::from_be(a.sin_port))))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let a = unsafe { &*(s as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            let ip = std::net::Ipv6Addr::from(a.sin6_addr.s6_addr);
            Some(SocketAddr::V6(std::net::SocketAddrV6::new(
                ip,
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

#[cfg(target_os = "linux")]
fn to_sockaddr(addr: SocketAddr, out: &mut libc::sockaddr_storage) -> libc::socklen_t {
    match addr {
        SocketAddr::V4(a) => {
            // SAFETY: sockaddr_storage is large and aligned enough for any sockaddr.
            let s = unsafe { &mut *(out as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            s.sin_family = libc::AF_INET as libc::sa_family_t;
            s.sin_port = a.port().to_be();
            s.sin_addr.s_addr = u32::from(*a.ip()).to_be();
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        SocketAddr::V6(a) => {
            // SAFETY: as above.
            let s = unsafe { &mut *(out as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            s.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            s.sin6_port = a.port().to_be();
            s.sin6_addr.s6_addr = a.ip().octets();
            s.sin6_flowinfo = a.flowinfo();
            s.sin6_scope_id = a.scope_id();
            std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn socket_addresses_round_trip() {
        for a in ["127.0.0.1:1812", "[::1]:1645", "[fe80::1%2]:7"] {
            let addr: SocketAddr = a.parse().unwrap();
            // SAFETY: all-zero is a valid sockaddr_storage.
            let mut s: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
            to_sockaddr(addr, &mut s);
            assert_eq!(from_sockaddr(&s), Some(addr));
        }
    }

    /// A reader's wait ends when one of its sockets has a datagram, and at
    /// shutdown, for every reader at once, whether it reads or stands by.
    /// Zero timeouts throughout: nothing here depends on timing.
    #[test]
    fn a_reader_wakes_for_its_sockets_and_for_shutdown() {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        a.set_nonblocking(true).unwrap();
        let (stop, stopped) = std::os::unix::net::UnixDatagram::pair().unwrap();
        let mut reading = Poller::new([a.as_raw_fd(), b.as_raw_fd()], Some(stopped.as_raw_fd()));
        let mut standing_by = Poller::new([a.as_raw_fd(), b.as_raw_fd()], Some(stopped.as_raw_fd()));
        assert_eq!(reading.wait(Duration::ZERO).unwrap(), 0);
        assert!(!reading.ready(0) && !reading.ready(1));

        let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
        peer.send_to(b"request", a.local_addr().unwrap()).unwrap();
        let mut rx = RecvBatch::default();
        // Loopback delivers at once; the bound only keeps a broken poll
        // from hanging the test.
        assert!((0..50).any(|_| reading.wait(Duration::from_millis(100)).unwrap() > 0));
        assert!(reading.ready(0) && !reading.ready(1));
        assert_eq!(rx.recv(&a).unwrap(), 1);
        assert_eq!(rx.get(0), (&b"request"[..], peer.local_addr().unwrap()));
        assert_eq!(rx.recv(&a).unwrap_err().kind(), io::ErrorKind::WouldBlock);
        assert_eq!(reading.wait(Duration::ZERO).unwrap(), 0);

        stop.send(&[1]).unwrap();
        // Never read, so it wakes both, and again on every later wait.
        for _ in 0..2 {
            assert_eq!(reading.wait(Duration::ZERO).unwrap(), 1);
            assert!(!reading.ready(0) && !reading.ready(1));
            assert_eq!(standing_by.wait(Duration::ZERO).unwrap(), 1);
        }
        // Without a shutdown descriptor only the sockets count.
        let mut alone = Poller::new([b.as_raw_fd()], None);
        assert_eq!(alone.wait(Duration::ZERO).unwrap(), 0);
    }
}
