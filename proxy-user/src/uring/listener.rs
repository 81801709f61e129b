//! [`UringListener`]: a listening socket whose connections go straight
//! to this thread's ring.
//!
//! The listener waits in tokio's epoll and accepts with `accept4`
//! (non-blocking, close-on-exec), until `EAGAIN`, as HAProxy does. The new
//! socket is never registered with epoll: it is a [`UringStream`] from
//! the start. `TCP_NODELAY` and delayed first ACKs are inherited from the
//! listener, so a connection costs one system call to set up.
//!
//! Why not accept through the ring: an accept pending in the ring is
//! finished by task work on this thread. When the thread sleeps in
//! `epoll_wait`, the client's `connect` wakes it by signalling task work,
//! which interrupts the wait (`EINTR`); the thread then runs the accept,
//! posts its completion, signals the ring's eventfd and waits again to
//! see it. Readiness through epoll is a plain wake-up. Measured with
//! `Connection: close` traffic (wrk `-c50`, medians of 5 interleaved
//! rounds), epoll readiness with `accept4` took about 2 µs less of weir's
//! CPU per request (29.7 against 31.7 µs), and wrk, which bounds req/s on
//! two cores, about 3.5 µs less (47.3 against 50.8 µs): req/s went up 7%,
//! even though weir makes more system calls (4.2 against 3.0 per request).

use std::io;
use std::net::{
    Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, TcpListener, TcpStream,
};
use std::os::fd::{AsRawFd, FromRawFd};

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use super::UringStream;

/// Room for the peer's address (a `sockaddr_storage`).
const ADDR_ROOM: usize = std::mem::size_of::<libc::sockaddr_storage>();

/// A listening socket whose connections are served by this thread's ring.
/// Its connections must stay on this thread (as every [`UringStream`]).
#[derive(Debug)]
pub struct UringListener {
    socket: AsyncFd<TcpListener>,
}

impl UringListener {
    /// Takes a bound, listening socket, makes it non-blocking, registers
    /// it with this thread's tokio runtime (call it on the thread that will
    /// accept) and sets `TCP_NODELAY` on it, which accepted connections
    /// inherit.
    pub fn new(socket: TcpListener) -> io::Result<UringListener> {
        crate::net::set_nodelay(&socket)?;
        socket.set_nonblocking(true)?;
        // SAFETY: the AsyncFd owns the socket, so the descriptor stays
        // open for as long as it is registered.
        let socket = unsafe { AsyncFd::register_with_interest(socket, Interest::READABLE) }?;
        Ok(UringListener { socket })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.get_ref().local_addr()
    }

    /// The next connection and its peer's address. Cancel-safe: a
    /// connection not accepted yet waits in the kernel's backlog.
    pub async fn accept(&mut self) -> io::Result<(UringStream, SocketAddr)> {
        loop {
            let mut ready = self.socket.readable().await?;
            // Readiness stays set until accept4 says EAGAIN, so a burst of
            // connections is accepted without waiting in between.
            match ready.try_io(|l| accept4(l.get_ref())) {
                Ok(Ok((socket, peer))) => {
                    let peer = match peer {
                        Some(peer) => peer,
                        None => socket.peer_addr()?,
                    };
                    super::coalesce::accepted();
                    return Ok((UringStream::new(socket)?, peer));
                }
                // A connection reset before it was accepted, or a signal:
                // nothing wrong with the listener.
                Ok(Err(e))
                    if matches!(
                        e.kind(),
                        io::ErrorKind::ConnectionAborted | io::ErrorKind::Interrupted
                    ) =>
                {
                    continue
                }
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
    }
}

/// One `accept4`, non-blocking and close-on-exec: the connection and its
/// peer's address (`None` if not IPv4 or IPv6).
fn accept4(listener: &TcpListener) -> io::Result<(TcpStream, Option<SocketAddr>)> {
    let mut addr = [0u8; ADDR_ROOM];
    let mut len = ADDR_ROOM as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes of address into `addr`.
    let fd = unsafe {
        libc::accept4(
            listener.as_raw_fd(),
            addr.as_mut_ptr().cast(),
            &mut len,
            libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new connection nobody else owns.
    let socket = unsafe { TcpStream::from_raw_fd(fd) };
    Ok((
        socket,
        parse_sockaddr(&addr[..(len as usize).min(ADDR_ROOM)]),
    ))
}

/// The address in `addr`, the bytes of a `sockaddr` (`None` if it is not
/// an IPv4 or IPv6 one).
fn parse_sockaddr(addr: &[u8]) -> Option<SocketAddr> {
    let family = libc::sa_family_t::from_ne_bytes(addr.get(..2)?.try_into().ok()?);
    match i32::from(family) {
        libc::AF_INET if addr.len() >= std::mem::size_of::<libc::sockaddr_in>() => {
            // Offsets of sockaddr_in: port at 2, address at 4 (both network order).
            let port = u16::from_be_bytes([addr[2], addr[3]]);
            let ip = Ipv4Addr::new(addr[4], addr[5], addr[6], addr[7]);
            Some(SocketAddr::V4(SocketAddrV4::new(ip, port)))
        }
        libc::AF_INET6 if addr.len() >= std::mem::size_of::<libc::sockaddr_in6>() => {
            // sockaddr_in6: port at 2, flowinfo at 4, address at 8, scope id at 24.
            let port = u16::from_be_bytes([addr[2], addr[3]]);
            let flowinfo = u32::from_ne_bytes(addr[4..8].try_into().ok()?);
            let octets: [u8; 16] = addr[8..24].try_into().ok()?;
            let scope = u32::from_ne_bytes(addr[24..28].try_into().ok()?);
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(octets),
                port,
                flowinfo,
                scope,
            )))
        }
        _ => None,
    }
}
