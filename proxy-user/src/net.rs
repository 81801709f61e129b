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

/// Sets `TCP_CORK` on `socket`: partial segments wait (at most 200 ms)
/// for more data, a shutdown or the close, which then sends the last
/// bytes and the FIN in one segment.
pub fn set_cork(socket: &impl std::os::fd::AsRawFd) -> std::io::Result<()> {
    set_int_option(socket, libc::TCP_CORK, 1)
}
