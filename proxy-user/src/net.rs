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
