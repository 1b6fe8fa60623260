//! Accepted connections with a switch that an injected fault flips, so the
//! emulator can fail the way a network does and not only the way Graph
//! answers: the next answer on the connection is never sent (the client sees
//! the connection close under it, as after a reset), or is cut off a few
//! bytes into its body.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// Body bytes a cut-off answer still delivers: enough to be a started body,
/// far too few to be a whole Graph page.
const CUT_BODY_BYTES: usize = 16;

const PASS: u8 = 0;
const RESET: u8 = 1;
const TRUNCATE: u8 = 2;

/// The switch of one connection. The request middleware reaches it as
/// `ConnectInfo<Cut>` and flips it before its answer is written.
#[derive(Clone, Debug, Default)]
pub(crate) struct Cut(Arc<AtomicU8>);

impl Cut {
    /// Nothing more is written: the connection closes without an answer.
    pub(crate) fn reset(&self) {
        self.0.store(RESET, Ordering::SeqCst);
    }

    /// The next answer's head and a few body bytes are written, then the
    /// connection closes.
    pub(crate) fn truncate(&self) {
        self.0.store(TRUNCATE, Ordering::SeqCst);
    }
}

/// A TCP listener whose connections carry a [`Cut`].
pub(crate) struct CuttableListener(pub TcpListener);

impl Listener for CuttableListener {
    type Io = Conn;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Conn, SocketAddr) {
        loop {
            match self.0.accept().await {
                Ok((io, addr)) => {
                    let conn = Conn {
                        io,
                        cut: Cut::default(),
                        scan: Scan::default(),
                    };
                    return (conn, addr);
                }
                // Out of file descriptors and the like: waiting is all a
                // test server can do (as axum's own TCP listener does).
                Err(e) => {
                    tracing::debug!(error = %e, "graph emulator: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }
}

impl Connected<IncomingStream<'_, CuttableListener>> for Cut {
    fn connect_info(stream: IncomingStream<'_, CuttableListener>) -> Self {
        stream.io().cut.clone()
    }
}

/// An accepted connection.
pub(crate) struct Conn {
    io: TcpStream,
    cut: Cut,
    scan: Scan,
}

/// Where a cut-off answer stands: how much of the end-of-head marker
/// (`\r\n\r\n`) has been written, then how many body bytes may still go.
#[derive(Clone, Copy, Default)]
struct Scan {
    marker: usize,
    body_left: Option<usize>,
}

impl Scan {
    /// How many leading bytes of `bytes` may still be written.
    fn pass(&mut self, bytes: &[u8]) -> usize {
        let mut n = 0;
        for &b in bytes {
            match &mut self.body_left {
                Some(0) => break,
                Some(left) => *left -= 1,
                None => {
                    self.marker = match (self.marker, b) {
                        (0 | 2, b'\r') | (1 | 3, b'\n') => self.marker + 1,
                        (_, b'\r') => 1,
                        _ => 0,
                    };
                    if self.marker == 4 {
                        self.body_left = Some(CUT_BODY_BYTES);
                    }
                }
            }
            n += 1;
        }
        n
    }
}

fn cut_error() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionReset, "connection cut by an injected fault")
}

impl AsyncRead for Conn {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match this.cut.0.load(Ordering::SeqCst) {
            PASS => Pin::new(&mut this.io).poll_write(cx, buf),
            RESET => Poll::Ready(Err(cut_error())),
            _ => {
                let mut probe = this.scan;
                let allowed = probe.pass(buf);
                if allowed == 0 {
                    return Poll::Ready(Err(cut_error()));
                }
                let written = Pin::new(&mut this.io).poll_write(cx, &buf[..allowed]);
                if let Poll::Ready(Ok(n)) = written {
                    this.scan.pass(&buf[..n]);
                }
                written
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cut_answer_keeps_its_head_and_a_few_body_bytes() {
        let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{\"value\":[{\"id\":\"1\"},{\"id\":\"2\"}]}";
        let head = answer.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let mut scan = Scan::default();
        assert_eq!(scan.pass(answer), head + CUT_BODY_BYTES);
        assert_eq!(scan.pass(b"more"), 0);
        // Written in small pieces, with the marker split across them.
        let mut scan = Scan::default();
        let passed: usize = answer.chunks(3).map(|c| scan.pass(c)).sum();
        assert_eq!(passed, head + CUT_BODY_BYTES);
        // A lone "\r\n" inside a header line is not the end of the head.
        let mut scan = Scan::default();
        assert_eq!(scan.pass(b"a: b\r\nc: d\r\r\n"), 13);
        assert_eq!(scan.body_left, None);
    }
}
