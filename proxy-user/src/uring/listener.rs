//! [`UringListener`]: a listening socket whose connections are accepted
//! through the thread's ring.
//!
//! With `Connection: close` traffic every request is a new connection, and
//! accepting it the epoll way costs three system calls (accept4, then
//! tokio's epoll_ctl ADD and, to hand the socket to the ring, DEL) plus one
//! to set `TCP_NODELAY`. Here the accept is one more operation in the
//! ring's batch, the socket comes back non-blocking, and `TCP_NODELAY` is
//! inherited from the listener.
//!
//! Several accepts are kept in flight: when connections arrive in a burst,
//! one `io_uring_enter` accepts up to [`ACCEPTS_IN_FLIGHT`] of them. With a
//! single accept, each connection of the burst cost a trip through the
//! ring of its own (an `io_uring_enter` per connection). The kernel wakes
//! only one waiting accept per new connection (exclusive wait), so the
//! extra ones cost nothing while they wait.

use std::collections::VecDeque;
use std::io;
use std::net::{
    Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, TcpListener, TcpStream,
};
use std::os::fd::{AsRawFd, FromRawFd};
use std::task::Poll;

use io_uring::{opcode, types};

use super::driver;
use super::stream::PendingOp;
use super::UringStream;

/// Room for the peer's address (a `sockaddr_storage`), then its length.
const ADDR_ROOM: usize = std::mem::size_of::<libc::sockaddr_storage>();

/// Accepts queued on the ring at once. A connection they accept before
/// the owner asks for it waits here, as it would in the kernel's backlog.
pub(crate) const ACCEPTS_IN_FLIGHT: usize = 16;

/// A listening socket served by this thread's ring. Its connections must
/// stay on this thread (as every [`UringStream`]).
#[derive(Debug)]
pub struct UringListener {
    socket: TcpListener,
    /// Accepts queued on the ring, oldest first. Dropped with the
    /// listener: cancelled, and connections they accepted are closed.
    accepts: VecDeque<PendingOp>,
}

impl UringListener {
    /// Takes a bound, listening socket (not registered with tokio: its
    /// readiness would wake the event loop for nothing) and sets
    /// `TCP_NODELAY` on it, which accepted connections inherit.
    pub fn new(socket: TcpListener) -> io::Result<UringListener> {
        crate::net::set_nodelay(&socket)?;
        Ok(UringListener {
            socket,
            accepts: VecDeque::with_capacity(ACCEPTS_IN_FLIGHT),
        })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// The next connection and its peer's address. Cancel-safe: dropping
    /// the future loses no connection (it stays queued here).
    pub async fn accept(&mut self) -> io::Result<(UringStream, SocketAddr)> {
        while self.accepts.len() < ACCEPTS_IN_FLIGHT {
            let op = self.queue_accept()?;
            self.accepts.push_back(op);
        }
        let accepts = &mut self.accepts;
        let done = std::future::poll_fn(|cx| {
            // Every pending accept keeps the waker, so any of them
            // finishing wakes this task.
            let mut ready = None;
            for (i, op) in accepts.iter_mut().enumerate() {
                if let Poll::Ready(done) = op.poll(cx) {
                    ready = Some((i, done));
                    break;
                }
            }
            match ready {
                Some((i, done)) => {
                    accepts.remove(i);
                    Poll::Ready(done)
                }
                None => Poll::Pending,
            }
        })
        .await;
        if done.result < 0 {
            return Err(io::Error::from_raw_os_error(-done.result));
        }
        // SAFETY: a new connection nobody else owns.
        let socket = unsafe { TcpStream::from_raw_fd(done.result) };
        let peer = match parse_sockaddr(&done.hold) {
            Some(peer) => peer,
            None => socket.peer_addr()?,
        };
        Ok((UringStream::new(socket)?, peer))
    }

    /// Queues one accept on the ring.
    fn queue_accept(&self) -> io::Result<PendingOp> {
        let mut hold = vec![0u8; ADDR_ROOM + std::mem::size_of::<libc::socklen_t>()];
        let len = ADDR_ROOM as libc::socklen_t;
        hold[ADDR_ROOM..].copy_from_slice(&len.to_ne_bytes());
        // The kernel writes the address and its length into `hold`, which
        // the operation's slot owns until it completes.
        let addr = hold.as_mut_ptr();
        // SAFETY: inside `hold`, which is ADDR_ROOM + 4 bytes long.
        let addr_len = unsafe { addr.add(ADDR_ROOM) };
        let sqe = opcode::Accept::new(
            types::Fd(self.socket.as_raw_fd()),
            addr.cast(),
            addr_len.cast(),
        )
        .flags(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC)
        .build();
        let id = driver::submit_accept(sqe, hold)?;
        // Dropped before completion: cancelled, and a connection that was
        // accepted anyway is closed by the driver.
        Ok(PendingOp {
            id: Some(id),
            socket: None,
        })
    }
}

/// The peer address an accept wrote into `hold` (`None` if it is not an
/// IPv4 or IPv6 one).
fn parse_sockaddr(hold: &[u8]) -> Option<SocketAddr> {
    let len = libc::socklen_t::from_ne_bytes(hold.get(ADDR_ROOM..ADDR_ROOM + 4)?.try_into().ok()?);
    let addr = hold.get(..(len as usize).min(ADDR_ROOM))?;
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
