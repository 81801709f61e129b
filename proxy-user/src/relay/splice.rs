//! Zero-copy relaying of plain TCP with splice(2).
//!
//! Each direction moves bytes socket -> pipe -> socket inside the kernel, so
//! the payload never enters userspace: no copy to and from a buffer, no
//! page faults on one. Driven by tokio's readiness (`poll_*_ready` +
//! `try_io`), so a spliced connection costs no thread. Same contract as
//! `tokio::io::copy_bidirectional`: both directions run at once, a side that
//! reaches EOF has its half shut down on the other side once everything it
//! sent has been written, and the first error ends both.
//!
//! Writing to a socket whose peer is gone may raise SIGPIPE (splice does not
//! pass MSG_NOSIGNAL); Rust's runtime ignores SIGPIPE, so it comes back as
//! EPIPE.

use std::{
    future::poll_fn,
    io,
    os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd},
    pin::Pin,
    task::{ready, Context, Poll},
};

use tokio::{
    io::{AsyncWrite, Interest},
    net::{
        tcp::{ReadHalf, WriteHalf},
        TcpStream,
    },
};

/// Pipe size asked for: 64 pages. The default (16 pages) would mean 4 times
/// more splice calls per byte; the per-user limit of pipe memory
/// (`fs.pipe-user-pages-soft`) may refuse it, which only costs speed.
const PIPE_SIZE: libc::c_int = 256 * 1024;

/// One direction's pipe: the kernel-side buffer between two sockets.
pub(crate) struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
    /// Capacity in bytes, as reported by the kernel.
    capacity: usize,
}

impl Pipe {
    /// A non-blocking pipe, grown to [`PIPE_SIZE`] if allowed.
    pub(crate) fn new() -> io::Result<Self> {
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: `fds` is a valid array of two ints for pipe2 to fill.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pipe2 succeeded, so both fds are open and owned by nobody
        // else; OwnedFd closes them when the pipe is dropped.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // SAFETY: fcntl on an fd we own, with the int argument F_SETPIPE_SZ
        // expects; it returns the new size, or -1 (then the size is kept).
        let mut size = unsafe { libc::fcntl(write.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_SIZE) };
        if size <= 0 {
            // SAFETY: as above; F_GETPIPE_SZ takes no argument.
            size = unsafe { libc::fcntl(write.as_raw_fd(), libc::F_GETPIPE_SZ) };
        }
        Ok(Self {
            read,
            write,
            // 4096 is the smallest a pipe can be; never trust 0 or -1.
            capacity: usize::try_from(size).unwrap_or(0).max(4096),
        })
    }
}

/// splice(2) between two fds without offsets (sockets and pipes have none).
fn splice(from: BorrowedFd<'_>, to: BorrowedFd<'_>, len: usize) -> io::Result<usize> {
    // SAFETY: both fds are open for the duration of the call (borrowed);
    // null offsets are what splice expects for pipes and sockets.
    let n = unsafe {
        libc::splice(
            from.as_raw_fd(),
            std::ptr::null_mut(),
            to.as_raw_fd(),
            std::ptr::null_mut(),
            len,
            libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// One direction: `from` -> pipe -> `to`.
struct OneWay<'a> {
    from: ReadHalf<'a>,
    to: WriteHalf<'a>,
    pipe: Pipe,
    /// Bytes in the pipe, not yet written to `to`.
    in_pipe: usize,
    /// Bytes written to `to`.
    total: u64,
    /// `from` reached EOF.
    eof: bool,
    /// A fill got EAGAIN while the pipe held data: the pipe may be full (its
    /// slots are used up by partial pages before `capacity` bytes are in),
    /// so wait for the drain instead of waiting for the socket.
    fill_blocked: bool,
    /// `to` has been shut down for writing: this direction is over.
    done: bool,
}

impl<'a> OneWay<'a> {
    fn new(from: ReadHalf<'a>, to: WriteHalf<'a>, pipe: Pipe) -> Self {
        Self {
            from,
            to,
            pipe,
            in_pipe: 0,
            total: 0,
            eof: false,
            fill_blocked: false,
            done: false,
        }
    }

    /// Moves what can be moved now; Ready with the byte count once `from`
    /// is at EOF, everything is written and `to` is shut down for writing.
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<u64>> {
        if self.done {
            return Poll::Ready(Ok(self.total));
        }
        loop {
            let mut progress = false;
            let room = self.pipe.capacity.saturating_sub(self.in_pipe);
            if !self.eof && !self.fill_blocked && room > 0 {
                let from: &TcpStream = self.from.as_ref();
                if let Poll::Ready(r) = from.poll_read_ready(cx) {
                    r?;
                    let fill = || splice(from.as_fd(), self.pipe.write.as_fd(), room);
                    // EAGAIN on an empty pipe can only mean "no data on the
                    // socket": let try_io clear the readiness. With data in
                    // the pipe it may mean "pipe full", and clearing the
                    // readiness then could lose the only wakeup.
                    let r = if self.in_pipe == 0 {
                        from.try_io(Interest::READABLE, fill)
                    } else {
                        fill()
                    };
                    match r {
                        Ok(0) => self.eof = true,
                        Ok(n) => self.in_pipe += n,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            // Empty pipe: readiness was cleared; the next
                            // poll_read_ready registers the waker.
                            self.fill_blocked = self.in_pipe > 0;
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Poll::Ready(Err(e)),
                    }
                    progress = true;
                }
            }
            if self.in_pipe > 0 {
                let to: &TcpStream = self.to.as_ref();
                if let Poll::Ready(r) = to.poll_write_ready(cx) {
                    r?;
                    let drain = || splice(self.pipe.read.as_fd(), to.as_fd(), self.in_pipe);
                    match to.try_io(Interest::WRITABLE, drain) {
                        // The pipe held data, so 0 cannot happen; never spin.
                        Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                        Ok(n) => {
                            self.in_pipe -= n;
                            self.total += n as u64;
                            self.fill_blocked = false;
                        }
                        Err(e)
                            if matches!(
                                e.kind(),
                                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                            ) => {}
                        Err(e) => return Poll::Ready(Err(e)),
                    }
                    progress = true;
                }
            }
            if self.eof && self.in_pipe == 0 {
                // Everything `from` sent is out: pass its FIN on.
                ready!(Pin::new(&mut self.to).poll_shutdown(cx))?;
                self.done = true;
                return Poll::Ready(Ok(self.total));
            }
            if !progress {
                // Both sides are waiting on readiness, wakers are registered.
                // (A long busy stream yields through tokio's budget, which
                // the poll_*_ready calls consume.)
                return Poll::Pending;
            }
        }
    }
}

/// Relays `a` <-> `b` with splice until both directions end or one fails.
/// Returns (bytes a -> b, bytes b -> a), like `copy_bidirectional`.
/// `pipes` are (a -> b, b -> a); they are closed when this returns.
pub(crate) async fn splice_bidirectional(
    a: &mut TcpStream,
    b: &mut TcpStream,
    pipes: (Pipe, Pipe),
) -> io::Result<(u64, u64)> {
    let (a_read, a_write) = a.split();
    let (b_read, b_write) = b.split();
    let mut a_to_b = OneWay::new(a_read, b_write, pipes.0);
    let mut b_to_a = OneWay::new(b_read, a_write, pipes.1);
    poll_fn(|cx| {
        let ab = a_to_b.poll(cx)?;
        let ba = b_to_a.poll(cx)?;
        match (ab, ba) {
            (Poll::Ready(ab), Poll::Ready(ba)) => Poll::Ready(Ok((ab, ba))),
            _ => Poll::Pending,
        }
    })
    .await
}
