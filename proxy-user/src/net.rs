//! Socket helpers shared by the listeners.

use std::net::SocketAddr;

use tokio::net::TcpListener;

/// Backlog of every listening socket.
pub const LISTEN_BACKLOG: u32 = 1024;

/// A listening TCP socket with SO_REUSEPORT, so a new weir process can
/// listen on the same addresses while the old one still runs (a reload with
/// overlap, as HAProxy does it); the kernel spreads new connections over
/// both until the old one closes its sockets.
pub fn listen_reuseport(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.set_reuseport(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// [`listen_reuseport`] as a non-blocking std socket, not registered with
/// any runtime (for a listener that a worker thread's own runtime will
/// drive). Must be called within a tokio runtime.
pub fn listen_reuseport_std(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    listen_reuseport(addr)?.into_std()
}

/// `bind ... defer-accept`: the kernel hands a connection over only once
/// its first bytes have arrived (or, at worst, after one SYN-ACK
/// retransmission, about a second), so accepting it and reading the
/// request take one wake-up instead of two. For protocols where the client
/// speaks first (HTTP, TLS). The option HAProxy sets for the same keyword.
pub fn set_defer_accept(socket: &impl std::os::fd::AsRawFd) -> std::io::Result<()> {
    set_int_option(socket, libc::TCP_DEFER_ACCEPT, 1)
}

fn set_int_option(
    socket: &impl std::os::fd::AsRawFd,
    option: libc::c_int,
    value: libc::c_int,
) -> std::io::Result<()> {
    // SAFETY: setsockopt(2) with an int option on a descriptor the caller owns.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            option,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Sets `TCP_NODELAY` on `socket`; on a listening socket, the connections
/// it accepts inherit it (Linux copies the option to each one), which saves
/// a system call per connection.
pub fn set_nodelay(socket: &impl std::os::fd::AsRawFd) -> std::io::Result<()> {
    set_int_option(socket, libc::TCP_NODELAY, 1)
}

/// Turns quick ACKs off on a listening socket (`TCP_QUICKACK` 0, which
/// the connections it accepts inherit), as HAProxy's `option
/// tcp-smart-accept` does in HTTP mode. Linux acknowledges the first bytes
/// of a connection at once; an HTTP client sends its request right after
/// the handshake, so that ACK would leave as a packet of its own, just
/// before the response. Without it, the ACK rides on the response: one
/// packet fewer per `Connection: close` connection, and the work of
/// sending and receiving it (on loopback, paid by the client). The delayed
/// ACK timer (40 ms at most) still acknowledges a request that no quick
/// response follows.
pub fn set_delayed_first_ack(socket: &impl std::os::fd::AsRawFd) -> std::io::Result<()> {
    set_int_option(socket, libc::TCP_QUICKACK, 0)
}

/// Sets `TCP_CORK` on `socket`: partial segments wait (at most 200 ms)
/// for more data, a shutdown or the close, which then sends the last
/// bytes and the FIN in one segment.
pub fn set_cork(socket: &impl std::os::fd::AsRawFd) -> std::io::Result<()> {
    set_int_option(socket, libc::TCP_CORK, 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn int_option(socket: &impl std::os::fd::AsRawFd, option: libc::c_int) -> libc::c_int {
        let mut value: libc::c_int = -1;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: getsockopt(2) into a local int.
        let rc = unsafe {
            libc::getsockopt(
                socket.as_raw_fd(),
                libc::IPPROTO_TCP,
                option,
                (&mut value as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        assert_eq!(rc, 0, "getsockopt: {}", std::io::Error::last_os_error());
        value
    }

    /// The listener options are set once and must reach every accepted
    /// connection; that inheritance is the kernel's, so it is checked here.
    #[test]
    fn accepted_connections_inherit_nodelay_and_delayed_first_ack() {
        for delayed in [false, true] {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            set_nodelay(&listener).unwrap();
            if delayed {
                set_delayed_first_ack(&listener).unwrap();
            }
            let _client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
            let (accepted, _) = listener.accept().unwrap();
            assert_eq!(int_option(&accepted, libc::TCP_NODELAY), 1);
            // TCP_QUICKACK reads 0 while quick ACKs are off.
            let quick = int_option(&accepted, libc::TCP_QUICKACK);
            assert_eq!(quick == 0, delayed, "TCP_QUICKACK reads {quick}");
        }
    }
}
