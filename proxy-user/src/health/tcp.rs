//! TCP connect check (`check` without `option httpchk`): the server is
//! healthy if it accepts a TCP connection within the timeout. The connection
//! is closed right away.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpStream;

use super::{CheckError, CheckOutcome, CheckPass, HealthCheck};

/// HAProxy's default when neither `timeout check` nor `timeout connect` is
/// set is `inter` (2s).
pub const DEFAULT_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// Connect-only health check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcpCheck {
    /// Connect timeout.
    pub timeout: Duration,
}

impl Default for TcpCheck {
    fn default() -> Self {
        Self {
            timeout: DEFAULT_CHECK_TIMEOUT,
        }
    }
}

impl TcpCheck {
    /// A check with the given connect timeout.
    pub fn new(timeout: Duration) -> Self {
        Self { timeout }
    }
}

/// Connect to `addr` within `timeout`, mapping failures to Layer4 errors.
pub(crate) async fn connect(addr: SocketAddr, timeout: Duration) -> Result<TcpStream, CheckError> {
    match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(e)) => Err(CheckError::from_connect(&e)),
        Err(_) => Err(CheckError::L4Timeout),
    }
}

impl HealthCheck for TcpCheck {
    async fn check(&self, addr: SocketAddr) -> CheckOutcome {
        connect(addr, self.timeout)
            .await
            .map(|_stream| CheckPass::Layer4)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::{TcpListener, TcpSocket};

    #[tokio::test]
    async fn listening_server_passes() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        assert_eq!(TcpCheck::default().check(addr).await, Ok(CheckPass::Layer4));
    }

    #[tokio::test]
    async fn closed_port_is_connection_refused() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        let err = TcpCheck::default().check(addr).await.unwrap_err();
        assert_eq!(err, CheckError::L4Connection("Connection refused".into()));
    }

    #[tokio::test]
    async fn full_accept_queue_times_out() {
        // A listener that never accepts, with a backlog of 1: once the queue
        // is full Linux drops further SYNs, so a connect hangs until our
        // timeout fires.
        let sock = TcpSocket::new_v4().unwrap();
        sock.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let l = sock.listen(1).unwrap();
        let addr = l.local_addr().unwrap();
        let check = TcpCheck::new(Duration::from_millis(100));
        // Bounded: the queue is full after a couple of connections.
        for _ in 0..8 {
            match check.check(addr).await {
                Err(CheckError::L4Timeout) => return,
                // Even closed by us, the connection waits in the queue.
                Ok(_) => {}
                Err(e) => panic!("unexpected {e}"),
            }
        }
        panic!("connect never timed out");
    }
}
