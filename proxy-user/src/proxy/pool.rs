//! Per-server pool of idle keep-alive connections.
//!
//! After a response that leaves the server connection reusable, the
//! connection (with its read buffer, so no allocation on reuse) goes back
//! here; the next request to the same server takes the most recently used
//! one (LIFO: the warmest, least likely to have been closed by the server's
//! own keep-alive timeout). A taken connection is checked for a close or
//! stray bytes with a non-blocking read before it is used.
//!
//! A connection is a [`ServerStream`]: plain TCP, or TLS over TCP for
//! `server ... ssl`. Both are pooled and reused the same way, so a
//! kept-alive TLS connection pays its handshake once.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::tls::ClientTlsStream;
use crate::uring::UringStream;

/// Idle connections kept per server at most.
pub const DEFAULT_MAX_IDLE_PER_SERVER: usize = 256;
/// An idle connection older than this is closed rather than reused.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// The transport of a server connection.
#[derive(Debug)]
pub enum ServerStream {
    /// Plain TCP.
    Plain(TcpStream),
    /// Plain TCP through this thread's io_uring.
    Uring(UringStream),
    /// TLS over TCP (`server ... ssl`), after the handshake.
    Tls(Box<ClientTlsStream<TcpStream>>),
}

impl ServerStream {
    /// True for a TLS connection.
    pub fn is_tls(&self) -> bool {
        matches!(self, ServerStream::Tls(_))
    }

    /// Is this idle connection still usable? Without waiting: a close, an
    /// error or bytes nobody asked for make it unusable. For TLS the probe
    /// goes through the TLS layer, so post-handshake records the server
    /// sends on its own (TLS 1.3 session tickets) are consumed and do not
    /// count as stray bytes, and a `close_notify` counts as a close.
    pub fn is_idle_and_open(&mut self) -> bool {
        match self {
            ServerStream::Plain(tcp) => {
                let mut probe = [0u8; 1];
                matches!(tcp.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
            }
            ServerStream::Uring(stream) => {
                // Pending: a receive is (now) waiting on it with nothing
                // arrived; it stays queued and reads the next response.
                let mut cx = Context::from_waker(Waker::noop());
                stream.poll_ready(&mut cx).is_pending()
            }
            ServerStream::Tls(tls) => {
                let mut probe = [0u8; 1];
                let mut buf = ReadBuf::new(&mut probe);
                let mut cx = Context::from_waker(Waker::noop());
                // Pending: nothing to read and not closed. The no-op waker
                // is replaced by the real one at the next real read.
                Pin::new(tls.as_mut())
                    .poll_read(&mut cx, &mut buf)
                    .is_pending()
            }
        }
    }
}

impl From<TcpStream> for ServerStream {
    fn from(tcp: TcpStream) -> Self {
        ServerStream::Plain(tcp)
    }
}

impl From<ClientTlsStream<TcpStream>> for ServerStream {
    fn from(tls: ClientTlsStream<TcpStream>) -> Self {
        ServerStream::Tls(Box::new(tls))
    }
}

impl AsyncRead for ServerStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ServerStream::Plain(io) => Pin::new(io).poll_read(cx, buf),
            ServerStream::Uring(io) => Pin::new(io).poll_read(cx, buf),
            ServerStream::Tls(tls) => Pin::new(tls.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ServerStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ServerStream::Plain(io) => Pin::new(io).poll_write(cx, buf),
            ServerStream::Uring(io) => Pin::new(io).poll_write(cx, buf),
            ServerStream::Tls(tls) => Pin::new(tls.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ServerStream::Plain(io) => Pin::new(io).poll_write_vectored(cx, bufs),
            ServerStream::Uring(io) => Pin::new(io).poll_write_vectored(cx, bufs),
            ServerStream::Tls(tls) => Pin::new(tls.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            ServerStream::Plain(io) => io.is_write_vectored(),
            ServerStream::Uring(io) => io.is_write_vectored(),
            ServerStream::Tls(tls) => tls.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ServerStream::Plain(io) => Pin::new(io).poll_flush(cx),
            ServerStream::Uring(io) => Pin::new(io).poll_flush(cx),
            ServerStream::Tls(tls) => Pin::new(tls.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ServerStream::Plain(io) => Pin::new(io).poll_shutdown(cx),
            ServerStream::Uring(io) => Pin::new(io).poll_shutdown(cx),
            ServerStream::Tls(tls) => Pin::new(tls.as_mut()).poll_shutdown(cx),
        }
    }
}

/// One open connection to a server, with its read buffer.
#[derive(Debug)]
pub struct ServerConn {
    /// The transport (plain or TLS).
    pub stream: ServerStream,
    /// Bytes read from the server and not consumed yet.
    pub buf: BytesMut,
    /// True when it came from the pool (it may turn out to be stale).
    pub reused: bool,
}

/// Idle connections of one server, one list per L7 worker thread
/// ([`super::worker`]): a connection is registered with the event loop of
/// the worker that opened it, so it is only handed out on that worker (and
/// each list's lock is taken by one thread only).
#[derive(Debug)]
pub struct Pool {
    slots: Box<[Slot]>,
    max_idle: usize,
    idle_timeout: Duration,
    reuses: AtomicU64,
}

/// One worker's idle list, on its own cache line.
#[derive(Debug, Default)]
#[repr(align(64))]
struct Slot {
    idle: Mutex<Vec<(ServerConn, Instant)>>,
}

impl Default for Pool {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_IDLE_PER_SERVER, DEFAULT_IDLE_TIMEOUT)
    }
}

impl Pool {
    /// A pool keeping at most `max_idle` connections (per worker), each for
    /// at most `idle_timeout`; one idle list.
    pub fn new(max_idle: usize, idle_timeout: Duration) -> Self {
        Self::with_workers(1, max_idle, idle_timeout)
    }

    /// [`Pool::new`] with one idle list per L7 worker.
    pub fn with_workers(workers: usize, max_idle: usize, idle_timeout: Duration) -> Self {
        Self {
            slots: (0..workers.max(1)).map(|_| Slot::default()).collect(),
            max_idle,
            idle_timeout,
            reuses: AtomicU64::new(0),
        }
    }

    /// The calling worker's idle list.
    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<(ServerConn, Instant)>> {
        let slot = &self.slots[super::worker::current() % self.slots.len()];
        slot.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A live idle connection, if any. Closed, expired or dirty ones are dropped.
    pub fn take(&self) -> Option<ServerConn> {
        loop {
            let (mut conn, since) = self.idle().pop()?;
            if since.elapsed() > self.idle_timeout || !conn.buf.is_empty() {
                continue;
            }
            // EOF, an error, or bytes nobody asked for: unusable.
            if conn.stream.is_idle_and_open() {
                conn.reused = true;
                self.reuses.fetch_add(1, Ordering::Relaxed);
                return Some(conn);
            }
        }
    }

    /// Returns a connection whose last response ended cleanly.
    pub fn put(&self, mut conn: ServerConn) {
        if !conn.buf.is_empty() {
            return;
        }
        // An io_uring connection gets its receive queued now, so that a
        // close by the server while it idles is seen by `take`'s probe.
        if matches!(conn.stream, ServerStream::Uring(_)) && !conn.stream.is_idle_and_open() {
            return;
        }
        let mut idle = self.idle();
        if idle.len() >= self.max_idle {
            idle.remove(0); // the coldest one
        }
        idle.push((conn, Instant::now()));
    }

    /// Connections idle in the pool now.
    pub fn idle_count(&self) -> usize {
        self.slots
            .iter()
            .map(|s| s.idle.lock().unwrap_or_else(|e| e.into_inner()).len())
            .sum()
    }

    /// How many times a pooled connection was handed out.
    pub fn reuses(&self) -> u64 {
        self.reuses.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    #[tokio::test]
    async fn pool_hands_back_live_connections_and_drops_closed_ones() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let pool = Pool::default();
        let a = TcpStream::connect(addr).await.unwrap();
        let (server_a, _) = listener.accept().await.unwrap();
        pool.put(ServerConn {
            stream: a.into(),
            buf: BytesMut::new(),
            reused: false,
        });
        let c = pool.take().expect("live connection");
        assert!(c.reused);
        pool.put(c);
        // The server closes: the pooled connection must not be handed out.
        let mut server_a = server_a;
        server_a.shutdown().await.unwrap();
        drop(server_a);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(pool.take().is_none());
        assert_eq!(pool.idle_count(), 0);
        assert_eq!(pool.reuses(), 1);
    }
}
