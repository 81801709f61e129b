//! [`UringStream`]: a TCP connection whose reads and writes go through the
//! thread's io_uring (see [`super::driver`]), with tokio's `AsyncRead` and
//! `AsyncWrite` so the L7 session code drives it like any other stream.
//!
//! * Reads: one receive at a time, with a provided buffer picked by the
//!   kernel when bytes arrive (a waiting connection holds no buffer). The
//!   bytes are copied out as the reader asks for them, then the buffer
//!   goes back to the ring. If the ring is empty (`ENOBUFS`) the stream
//!   waits for readiness and reads directly instead.
//! * Writes are queued: `poll_write` copies the bytes into the send it
//!   queues and returns at once, so a response and the read that follows
//!   go to the kernel in the same `io_uring_enter`. One send at a time; the
//!   next write, a flush or a shutdown waits for it, and its error (if
//!   any) is reported there. Short sends are completed by the driver.
//! * The last send before a close can go out with the FIN in one segment
//!   (a flush does not wait for it): see [`UringStream::fin_with_next_send`].
//! * Drop: a pending receive is cancelled; a pending send still finishes.
//!   The descriptor is closed only once the ring is done with it, so a
//!   queued operation can never reach a reused descriptor number.

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::pin::Pin;
use std::task::{Context, Poll};

use io_uring::{cqueue, opcode, squeue, types};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::driver::{self, OpId};

/// Send buffers larger than this are not kept for the next write.
const KEEP_SEND_CAPACITY: usize = 64 * 1024;

/// What the pending receive is.
#[derive(Debug, Clone, Copy)]
enum Recv {
    /// A receive into a provided buffer.
    Buffered(OpId),
    /// Provided buffers ran out: waiting for readiness, then a direct read.
    Poll(OpId),
}

/// A TCP connection driven by this thread's io_uring.
#[derive(Debug)]
pub struct UringStream {
    /// The socket (non-blocking). `None` only while being dropped.
    socket: Option<TcpStream>,
    recv: Option<Recv>,
    /// A received provided buffer not yet read to its end: id, length, offset.
    held: Option<(u16, usize, usize)>,
    /// Readiness seen after `ENOBUFS`: the next read goes straight to the socket.
    direct: bool,
    eof: bool,
    send: Option<OpId>,
    /// The buffer of the last finished send, reused by the next.
    spare: Vec<u8>,
    /// The next send is the last (see [`Self::fin_with_next_send`]).
    last_next: bool,
    /// The send in flight is that last one.
    send_is_last: bool,
}

impl UringStream {
    /// Wraps a connected, non-blocking socket (tokio's sockets are; the
    /// direct reads after `ENOBUFS` rely on it, and a blocking socket would
    /// send the ring's operations to its worker threads). The stream must
    /// stay on this thread. Costs no system call.
    pub fn new(socket: TcpStream) -> io::Result<UringStream> {
        Ok(UringStream {
            socket: Some(socket),
            recv: None,
            held: None,
            direct: false,
            eof: false,
            send: None,
            spare: Vec::new(),
            last_next: false,
            send_is_last: false,
        })
    }

    /// Connects to `addr` through the ring (`TCP_NODELAY` set).
    pub async fn connect(addr: SocketAddr) -> io::Result<UringStream> {
        let domain = if addr.is_ipv4() {
            libc::AF_INET
        } else {
            libc::AF_INET6
        };
        // SAFETY: plain socket(2); checked below.
        let fd = unsafe {
            libc::socket(
                domain,
                libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                0,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a new descriptor nobody else owns.
        let socket = unsafe { TcpStream::from_raw_fd(fd) };
        socket.set_nodelay(true)?;
        let sockaddr = sockaddr_bytes(addr);
        let sqe = opcode::Connect::new(
            types::Fd(fd),
            sockaddr.as_ptr().cast(),
            sockaddr.len() as libc::socklen_t,
        )
        .build();
        let id = driver::submit(sqe, sockaddr, -1)?;
        let mut pending = PendingOp {
            id: Some(id),
            socket: Some(socket),
        };
        let done = std::future::poll_fn(|cx| pending.poll(cx)).await;
        let socket = pending.socket.take().expect("kept until completion");
        if done.result < 0 {
            return Err(io::Error::from_raw_os_error(-done.result));
        }
        UringStream::new(socket)
    }

    /// Are there received bytes not read yet, here or still in the
    /// socket? (Closing a socket with unread bytes resets the connection.)
    /// Costs one system call unless bytes are already held here.
    pub fn has_unread_input(&self) -> bool {
        if self.held.is_some() || self.direct {
            return true;
        }
        let mut queued: libc::c_int = 0;
        // SAFETY: FIONREAD writes one int.
        let rc = unsafe { libc::ioctl(self.fd(), libc::FIONREAD, &mut queued) };
        rc == 0 && queued > 0
    }

    /// The next send is the last before this connection is closed (or
    /// shut down for writing), and the close comes right behind it: the
    /// send goes with `MSG_MORE`, so the kernel keeps its final partial
    /// segment until the close, which sends it with the FIN. One segment
    /// instead of two (data, then FIN), and the peer acknowledges both at
    /// once: two packets fewer per `Connection: close` request, and the
    /// loopback work of each.
    ///
    /// So that the response does not wait for the close, a flush does not
    /// wait for this send, and dropping the stream queues the close right
    /// behind it in the same ring submission (see
    /// [`driver::forget_last_send`]). Only for a send that nothing follows
    /// but the close or a shutdown: a `MSG_MORE` tail that is never pushed
    /// waits for the kernel's probe timer (a fraction of a second). A later
    /// write or a shutdown waits for the send, then goes on as usual.
    pub fn fin_with_next_send(&mut self) {
        self.last_next = true;
    }

    fn fd(&self) -> i32 {
        self.socket.as_ref().map_or(-1, AsRawFd::as_raw_fd)
    }

    /// Ready when bytes, the end of the stream or an error can be read
    /// without waiting; queues a receive otherwise. Holds no buffer while
    /// it waits.
    pub fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            if self.held.is_some() || self.eof || self.direct {
                return Poll::Ready(Ok(()));
            }
            match self.recv {
                None => {
                    let sqe = opcode::Recv::new(types::Fd(self.fd()), std::ptr::null_mut(), 0)
                        .buf_group(0)
                        .build()
                        .flags(squeue::Flags::BUFFER_SELECT);
                    self.recv = Some(Recv::Buffered(driver::submit(sqe, Vec::new(), -1)?));
                }
                Some(Recv::Buffered(id)) => {
                    let done = std::task::ready!(driver::poll(id, cx));
                    self.recv = None;
                    match done.result {
                        n if n > 0 => {
                            let bid = cqueue::buffer_select(done.flags).ok_or_else(|| {
                                io::Error::other("io_uring receive without a buffer")
                            })?;
                            self.held = Some((bid, n as usize, 0));
                        }
                        0 => self.eof = true,
                        e if e == -libc::ENOBUFS => {
                            let sqe =
                                opcode::PollAdd::new(types::Fd(self.fd()), libc::POLLIN as u32)
                                    .build();
                            self.recv = Some(Recv::Poll(driver::submit(sqe, Vec::new(), -1)?));
                        }
                        e => return Poll::Ready(Err(io::Error::from_raw_os_error(-e))),
                    }
                }
                Some(Recv::Poll(id)) => {
                    let done = std::task::ready!(driver::poll(id, cx));
                    self.recv = None;
                    if done.result < 0 {
                        return Poll::Ready(Err(io::Error::from_raw_os_error(-done.result)));
                    }
                    self.direct = true;
                }
            }
        }
    }

    /// Waits for the send in flight, if any; its error is returned.
    fn poll_send_done(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(id) = self.send {
            let done = std::task::ready!(driver::poll(id, cx));
            self.send = None;
            self.send_is_last = false;
            if done.hold.capacity() <= KEEP_SEND_CAPACITY {
                self.spare = done.hold;
            }
            if done.result < 0 {
                return Poll::Ready(Err(io::Error::from_raw_os_error(-done.result)));
            }
        }
        Poll::Ready(Ok(()))
    }

    fn queue_send<'a>(&mut self, parts: impl IntoIterator<Item = &'a [u8]>) -> io::Result<usize> {
        let mut data = std::mem::take(&mut self.spare);
        data.clear();
        for p in parts {
            data.extend_from_slice(p);
        }
        let len = data.len();
        if len == 0 {
            self.spare = data;
            return Ok(0);
        }
        let fd = self.fd();
        self.send_is_last = std::mem::take(&mut self.last_next);
        // The last send is never short (MSG_WAITALL: the kernel sends the
        // rest itself), so the driver never resends it after the close.
        let last = if self.send_is_last {
            libc::MSG_MORE | libc::MSG_WAITALL
        } else {
            0
        };
        let sqe = opcode::Send::new(types::Fd(fd), data.as_ptr(), len as u32)
            .flags(libc::MSG_NOSIGNAL | last)
            .build();
        // The Vec's heap bytes do not move when the Vec itself is moved
        // into the driver's slot.
        self.send = Some(driver::submit(sqe, data, fd)?);
        Ok(len)
    }
}

impl AsyncRead for UringStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        std::task::ready!(this.poll_ready(cx))?;
        if let Some((bid, len, offset)) = this.held {
            // SAFETY: only bytes are written into the unfilled part.
            let n = driver::copy_from_buffer(bid, len, offset, unsafe { buf.unfilled_mut() });
            // SAFETY: copy_from_buffer initialised the first n bytes.
            unsafe { buf.assume_init(n) };
            buf.advance(n);
            if offset + n >= len {
                driver::recycle(bid);
                this.held = None;
            } else {
                this.held = Some((bid, len, offset + n));
            }
            return Poll::Ready(Ok(()));
        }
        if this.direct {
            // SAFETY: the kernel only writes bytes into the unfilled part.
            let out = unsafe { buf.unfilled_mut() };
            let room = out.len();
            // SAFETY: `out` is valid for writes of its length.
            let n = unsafe { libc::recv(this.fd(), out.as_mut_ptr().cast(), room, 0) };
            if n < 0 {
                let e = io::Error::last_os_error();
                this.direct = false;
                if e.kind() == io::ErrorKind::WouldBlock {
                    // Spurious readiness: wait again (through the ring).
                    return Pin::new(this).poll_read(cx, buf);
                }
                return Poll::Ready(Err(e));
            }
            // A short read drained the socket: back to ring receives.
            if (n as usize) < room {
                this.direct = false;
            }
            if n == 0 {
                this.eof = true;
            }
            // SAFETY: recv wrote the first n bytes.
            unsafe { buf.assume_init(n as usize) };
            buf.advance(n as usize);
            return Poll::Ready(Ok(()));
        }
        // End of stream: nothing added.
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for UringStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        std::task::ready!(this.poll_send_done(cx))?;
        Poll::Ready(this.queue_send([data]))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        std::task::ready!(this.poll_send_done(cx))?;
        Poll::Ready(this.queue_send(bufs.iter().map(|b| &**b)))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.send_is_last {
            // Sent with the close that follows (see `fin_with_next_send`).
            return Poll::Ready(Ok(()));
        }
        this.poll_send_done(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        std::task::ready!(this.poll_send_done(cx))?;
        // SAFETY: shutdown(2) on our own socket.
        if unsafe { libc::shutdown(this.fd(), libc::SHUT_WR) } < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::ENOTCONN) {
                return Poll::Ready(Err(e));
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl AsRawFd for UringStream {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.fd()
    }
}

impl Drop for UringStream {
    fn drop(&mut self) {
        if let Some((bid, _, _)) = self.held.take() {
            driver::recycle(bid);
        }
        let mut socket = self.socket.take().map(OwnedFd::from);
        if let Some(id) = self.send.take() {
            match socket.take() {
                Some(socket) if self.send_is_last => driver::forget_last_send(id, socket),
                socket => driver::forget(id, false, socket),
            }
        }
        if let Some(Recv::Buffered(id) | Recv::Poll(id)) = self.recv.take() {
            driver::forget(id, true, socket.take());
        }
        // No operation needs it any more: closed now (through the ring).
        if let Some(socket) = socket {
            driver::close(socket);
        }
    }
}

/// An operation whose future may be dropped before it completes: it is
/// then cancelled, and the socket is closed once the ring lets go of it.
#[derive(Debug)]
pub(super) struct PendingOp {
    pub(super) id: Option<OpId>,
    pub(super) socket: Option<TcpStream>,
}

impl PendingOp {
    pub(super) fn poll(&mut self, cx: &mut Context<'_>) -> Poll<driver::Completion> {
        let id = self.id.expect("polled after completion");
        let done = std::task::ready!(driver::poll(id, cx));
        self.id = None;
        Poll::Ready(done)
    }
}

impl Drop for PendingOp {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            driver::forget(id, true, self.socket.take().map(OwnedFd::from));
        }
    }
}

/// `addr` as the bytes of a `sockaddr_in` or `sockaddr_in6`.
fn sockaddr_bytes(addr: SocketAddr) -> Vec<u8> {
    fn bytes_of<T>(v: &T) -> Vec<u8> {
        // SAFETY: a plain C struct, read as bytes.
        unsafe {
            std::slice::from_raw_parts((v as *const T).cast::<u8>(), std::mem::size_of::<T>())
        }
        .to_vec()
    }
    match addr {
        SocketAddr::V4(a) => {
            // SAFETY: all-zero is a valid sockaddr_in.
            let mut sa: libc::sockaddr_in = unsafe { std::mem::zeroed() };
            sa.sin_family = libc::AF_INET as libc::sa_family_t;
            sa.sin_port = a.port().to_be();
            sa.sin_addr.s_addr = u32::from_ne_bytes(a.ip().octets());
            bytes_of(&sa)
        }
        SocketAddr::V6(a) => {
            // SAFETY: all-zero is a valid sockaddr_in6.
            let mut sa: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
            sa.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sa.sin6_port = a.port().to_be();
            sa.sin6_addr.s6_addr = a.ip().octets();
            sa.sin6_flowinfo = a.flowinfo();
            sa.sin6_scope_id = a.scope_id();
            bytes_of(&sa)
        }
    }
}
