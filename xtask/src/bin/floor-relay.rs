//! `floor-relay`: the floor under any L7 proxy's CPU per request.
//!
//! A byte relay with no HTTP in it: each client connection gets its own
//! origin connection, and whatever one side sends is passed to the other
//! unparsed. A proxy must at least receive and send every request and
//! response, so this program's CPU per keep-alive request is what the
//! kernel work alone costs; `cargo xtask bench l7` prints it beside the
//! real proxies. Two ways to drive the sockets:
//!
//! * `epoll`: edge-triggered epoll, one `recv` and one `send` per message,
//!   the same system calls HAProxy and weir make;
//! * `io-uring`: every `recv` and `send` goes through one io_uring
//!   (single issuer, deferred task work), so one `io_uring_enter` submits
//!   and reaps the work of all ready connections: the fewest system calls
//!   a proxy can make.
//!
//! Usage: `floor-relay epoll|io-uring LISTEN ORIGIN` (one thread, runs until
//! killed). Benchmark tooling only: no timeouts, no limits, no HTTP.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, IntoRawFd, RawFd};

use anyhow::{bail, Context, Result};

/// Bytes read per `recv`: larger than any request or response of the benchmark.
const BUF: usize = 16 * 1024;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [mode, listen, origin] = args.as_slice() else {
        bail!("usage: floor-relay epoll|io-uring LISTEN ORIGIN");
    };
    let listen: SocketAddr = listen.parse().context("LISTEN: an address:port")?;
    let origin: SocketAddr = origin.parse().context("ORIGIN: an address:port")?;
    let listener =
        TcpListener::bind(listen).with_context(|| format!("cannot listen on {listen}"))?;
    match mode.as_str() {
        "epoll" => epoll::run(&listener, origin),
        "io-uring" => uring::run(&listener, origin),
        other => bail!("unknown mode {other:?}: epoll or io-uring"),
    }
}

/// One relayed client: `fd[0]` the client, `fd[1]` its origin connection;
/// `buf[s]` carries what side `s` sent to the other side.
struct Pair {
    fd: [RawFd; 2],
    buf: [Box<[u8]>; 2],
}

/// Accepts a client and connects its origin connection (blocking: only at
/// set-up, before the measured traffic).
fn open_pair(client: TcpStream, origin: SocketAddr) -> io::Result<Pair> {
    let upstream = TcpStream::connect(origin)?;
    for s in [&client, &upstream] {
        s.set_nodelay(true)?;
        s.set_nonblocking(true)?;
    }
    Ok(Pair {
        fd: [client.into_raw_fd(), upstream.into_raw_fd()],
        buf: [vec![0; BUF].into(), vec![0; BUF].into()],
    })
}

fn close_pair(p: &Pair) {
    for fd in p.fd {
        // SAFETY: the pair owns both descriptors and is dropped right after.
        unsafe {
            libc::shutdown(fd, libc::SHUT_RDWR);
            libc::close(fd);
        }
    }
}

mod epoll {
    use super::*;

    const LISTENER: u64 = u64::MAX;

    pub(super) fn run(listener: &TcpListener, origin: SocketAddr) -> Result<()> {
        listener.set_nonblocking(true)?;
        // SAFETY: plain system calls on descriptors this function owns.
        let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if ep < 0 {
            return Err(io::Error::last_os_error()).context("epoll_create1");
        }
        add(ep, listener.as_raw_fd(), LISTENER)?;
        let mut pairs: Vec<Option<Pair>> = Vec::new();
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
        loop {
            // SAFETY: `events` has room for the count passed.
            let n = unsafe { libc::epoll_wait(ep, events.as_mut_ptr(), events.len() as i32, -1) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e).context("epoll_wait");
            }
            for ev in &events[..n as usize] {
                let key = ev.u64;
                if key == LISTENER {
                    while let Ok((client, _)) = listener.accept() {
                        let pair = open_pair(client, origin).context("origin connection")?;
                        let idx = pairs.len() as u64;
                        add(ep, pair.fd[0], idx << 1)?;
                        add(ep, pair.fd[1], idx << 1 | 1)?;
                        pairs.push(Some(pair));
                    }
                    continue;
                }
                let (idx, side) = ((key >> 1) as usize, (key & 1) as usize);
                let Some(pair) = pairs[idx].as_mut() else {
                    continue;
                };
                if !relay(pair, side) {
                    close_pair(pair);
                    pairs[idx] = None;
                }
            }
        }
    }

    fn add(ep: RawFd, fd: RawFd, key: u64) -> Result<()> {
        let mut ev = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLET) as u32,
            u64: key,
        };
        // SAFETY: valid descriptors and a pointer to a local event.
        if unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, fd, &mut ev) } < 0 {
            return Err(io::Error::last_os_error()).context("epoll_ctl");
        }
        Ok(())
    }

    /// Reads what side `side` sent and writes it to the other side; a short
    /// read means the socket is drained (no extra `recv` to see `EAGAIN`).
    /// False when the pair is done.
    fn relay(pair: &mut Pair, side: usize) -> bool {
        let (from, to) = (pair.fd[side], pair.fd[1 - side]);
        let buf = &mut pair.buf[side];
        loop {
            // SAFETY: `buf` is valid for `buf.len()` bytes.
            let n = unsafe { libc::recv(from, buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n == 0 {
                return false;
            }
            if n < 0 {
                return io::Error::last_os_error().kind() == io::ErrorKind::WouldBlock;
            }
            let n = n as usize;
            if !send_all(to, &buf[..n]) {
                return false;
            }
            if n < buf.len() {
                return true;
            }
        }
    }

    /// Sends all of `data`; a full socket buffer is waited out with poll(2)
    /// (the benchmark's messages are far smaller than one).
    fn send_all(fd: RawFd, mut data: &[u8]) -> bool {
        while !data.is_empty() {
            // SAFETY: `data` is valid for its length.
            let n = unsafe { libc::send(fd, data.as_ptr().cast(), data.len(), libc::MSG_NOSIGNAL) };
            if n > 0 {
                data = &data[n as usize..];
                continue;
            }
            if n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::WouldBlock {
                let mut p = libc::pollfd {
                    fd,
                    events: libc::POLLOUT,
                    revents: 0,
                };
                // SAFETY: one valid pollfd.
                unsafe { libc::poll(&mut p, 1, 1000) };
                continue;
            }
            return false;
        }
        true
    }
}

mod uring {
    use super::*;
    use io_uring::{opcode, squeue, types, IoUring};

    // user_data: pair index << 3 | side << 2 | operation.
    const ACCEPT: u64 = 0;
    const RECV: u64 = 1;
    const SEND: u64 = 2;

    fn tag(idx: usize, side: usize, op: u64) -> u64 {
        (idx as u64) << 3 | (side as u64) << 2 | op
    }

    struct Relay {
        ring: IoUring,
        pairs: Vec<Option<Pair>>,
        /// Per pair and side: bytes of `buf[side]` still to send, and from where.
        pending: Vec<[(usize, usize); 2]>,
    }

    pub(super) fn run(listener: &TcpListener, origin: SocketAddr) -> Result<()> {
        let ring = IoUring::builder()
            .setup_single_issuer()
            .setup_defer_taskrun()
            .build(4096)
            .context("io_uring_setup (single issuer, deferred task work; Linux 6.1 or later)")?;
        let mut r = Relay {
            ring,
            pairs: Vec::new(),
            pending: Vec::new(),
        };
        let lfd = types::Fd(listener.as_raw_fd());
        r.push(
            &opcode::Accept::new(lfd, std::ptr::null_mut(), std::ptr::null_mut())
                .build()
                .user_data(ACCEPT),
        )?;
        let mut done = Vec::with_capacity(1024);
        loop {
            match r.ring.submit_and_wait(1) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e).context("io_uring_enter"),
            }
            done.extend(r.ring.completion().map(|c| (c.user_data(), c.result())));
            for (key, res) in done.drain(..) {
                let (idx, side, op) = ((key >> 3) as usize, ((key >> 2) & 1) as usize, key & 3);
                match op {
                    ACCEPT => {
                        if res >= 0 {
                            // SAFETY: the kernel handed us this new descriptor.
                            let client =
                                unsafe { <TcpStream as std::os::fd::FromRawFd>::from_raw_fd(res) };
                            let pair = open_pair(client, origin).context("origin connection")?;
                            let idx = r.pairs.len();
                            let fds = pair.fd;
                            r.pairs.push(Some(pair));
                            r.pending.push([(0, 0); 2]);
                            for (side, fd) in fds.into_iter().enumerate() {
                                r.recv(idx, side, fd)?;
                            }
                        }
                        r.push(
                            &opcode::Accept::new(lfd, std::ptr::null_mut(), std::ptr::null_mut())
                                .build()
                                .user_data(ACCEPT),
                        )?;
                    }
                    RECV => r.on_recv(idx, side, res)?,
                    _ => r.on_send(idx, side, res)?,
                }
            }
        }
    }

    impl Relay {
        fn push(&mut self, sqe: &squeue::Entry) -> Result<()> {
            // SAFETY: every buffer an entry points at lives in a Pair, which
            // is never dropped (indices are not reused) while the ring runs.
            while unsafe { self.ring.submission().push(sqe) }.is_err() {
                self.ring.submit().context("io_uring_enter")?;
            }
            Ok(())
        }

        fn recv(&mut self, idx: usize, side: usize, fd: RawFd) -> Result<()> {
            let Some(pair) = self.pairs[idx].as_mut() else {
                return Ok(());
            };
            let buf = &mut pair.buf[side];
            let sqe = opcode::Recv::new(types::Fd(fd), buf.as_mut_ptr(), buf.len() as u32)
                .build()
                .user_data(tag(idx, side, RECV));
            self.push(&sqe)
        }

        fn send(&mut self, idx: usize, side: usize) -> Result<()> {
            let Some(pair) = self.pairs[idx].as_ref() else {
                return Ok(());
            };
            let (off, len) = self.pending[idx][side];
            let data = &pair.buf[side][off..off + len];
            let sqe = opcode::Send::new(types::Fd(pair.fd[1 - side]), data.as_ptr(), len as u32)
                .flags(libc::MSG_NOSIGNAL)
                .build()
                .user_data(tag(idx, side, SEND));
            self.push(&sqe)
        }

        fn close(&mut self, idx: usize) {
            if let Some(pair) = self.pairs[idx].take() {
                close_pair(&pair);
                // The buffers may still be named by entries in flight: keep
                // them until the process ends (benchmark connections are few).
                std::mem::forget(pair);
            }
        }

        fn on_recv(&mut self, idx: usize, side: usize, res: i32) -> Result<()> {
            if self.pairs[idx].is_none() {
                return Ok(());
            }
            if res <= 0 {
                self.close(idx);
                return Ok(());
            }
            self.pending[idx][side] = (0, res as usize);
            self.send(idx, side)
        }

        fn on_send(&mut self, idx: usize, side: usize, res: i32) -> Result<()> {
            let Some(pair) = self.pairs[idx].as_ref() else {
                return Ok(());
            };
            if res < 0 {
                self.close(idx);
                return Ok(());
            }
            let from = pair.fd[side];
            let (off, len) = self.pending[idx][side];
            let sent = res as usize;
            if sent < len {
                self.pending[idx][side] = (off + sent, len - sent);
                return self.send(idx, side);
            }
            self.recv(idx, side, from)
        }
    }
}
