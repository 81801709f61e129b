//! HTTP check: `option httpchk [METHOD] [URI]` and
//! `http-check expect status N`.
//!
//! Sends one minimal HTTP/1.1 request with `Connection: close`, reads only
//! the status line and compares the status. The body is never read: a
//! health endpoint's verdict is its status, and not reading keeps the check
//! cheap and immune to huge or endless bodies.

use std::net::SocketAddr;
use std::time::Duration;

use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::{timeout_at, Instant};

use super::tcp::{connect, DEFAULT_CHECK_TIMEOUT};
use super::{io_info, CheckError, CheckOutcome, CheckPass, HealthCheck};

/// Longest status line we wait for; a real one is ~20 bytes.
const MAX_STATUS_LINE: usize = 1024;

/// Which statuses mean healthy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ExpectStatus {
    /// No `http-check expect`: 2xx and 3xx pass (HAProxy's default).
    #[default]
    SuccessOrRedirect,
    /// `http-check expect status N`.
    Exactly(u16),
}

impl ExpectStatus {
    /// Does `status` pass?
    pub fn matches(self, status: u16) -> bool {
        match self {
            ExpectStatus::SuccessOrRedirect => (200..400).contains(&status),
            ExpectStatus::Exactly(n) => status == n,
        }
    }
}

/// Invalid `option httpchk` / `http-check expect` arguments.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum HttpCheckConfigError {
    /// More arguments than `METHOD URI [VERSION]`.
    #[error("option httpchk takes at most METHOD URI [VERSION], got {0} arguments")]
    TooManyArgs(usize),
    /// Method is not an HTTP token.
    #[error("invalid HTTP method {0:?}")]
    BadMethod(String),
    /// URI empty or containing spaces/control characters.
    #[error("invalid check URI {0:?}")]
    BadUri(String),
    /// Only HTTP/1.x makes sense for a raw status-line check.
    #[error("unsupported HTTP version {0:?} (checks are sent as HTTP/1.1)")]
    BadVersion(String),
    /// Status not in 100..=599.
    #[error("invalid expected status {0:?}")]
    BadStatus(String),
}

/// An HTTP health check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpCheck {
    /// Request method (default `OPTIONS`, like HAProxy).
    pub method: String,
    /// Request target (default `/`).
    pub uri: String,
    /// `Host` header; `None` sends the server's `ip:port`.
    pub host: Option<String>,
    /// Healthy statuses.
    pub expect: ExpectStatus,
    /// Whole check (connect + status line) timeout.
    pub timeout: Duration,
}

impl Default for HttpCheck {
    fn default() -> Self {
        Self {
            method: "OPTIONS".into(),
            uri: "/".into(),
            host: None,
            expect: ExpectStatus::default(),
            timeout: DEFAULT_CHECK_TIMEOUT,
        }
    }
}

impl HttpCheck {
    /// From the arguments after `option httpchk`: `[]`, `[URI]`,
    /// `[METHOD, URI]` or `[METHOD, URI, VERSION]` (VERSION must be
    /// HTTP/1.x; the request always goes out as HTTP/1.1).
    pub fn from_httpchk_args(args: &[&str]) -> Result<Self, HttpCheckConfigError> {
        let mut c = Self::default();
        let (method, uri) = match args {
            [] => (None, None),
            [uri] => (None, Some(*uri)),
            [method, uri] => (Some(*method), Some(*uri)),
            [method, uri, version] => {
                if !version.starts_with("HTTP/1.") {
                    return Err(HttpCheckConfigError::BadVersion((*version).into()));
                }
                (Some(*method), Some(*uri))
            }
            _ => return Err(HttpCheckConfigError::TooManyArgs(args.len())),
        };
        if let Some(m) = method {
            let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
            if m.is_empty() || !m.bytes().all(token) {
                return Err(HttpCheckConfigError::BadMethod(m.into()));
            }
            c.method = m.into();
        }
        if let Some(u) = uri {
            // No spaces or control bytes: they would break the request line
            // (or smuggle headers).
            if u.is_empty() || u.bytes().any(|b| b <= b' ' || b == 0x7f) {
                return Err(HttpCheckConfigError::BadUri(u.into()));
            }
            c.uri = u.into();
        }
        Ok(c)
    }

    /// Apply `http-check expect status N`.
    pub fn expect_status(mut self, status: &str) -> Result<Self, HttpCheckConfigError> {
        match status.parse::<u16>() {
            Ok(n) if (100..=599).contains(&n) => {
                self.expect = ExpectStatus::Exactly(n);
                Ok(self)
            }
            _ => Err(HttpCheckConfigError::BadStatus(status.into())),
        }
    }

    /// The request bytes sent to `addr`.
    pub fn request(&self, addr: SocketAddr) -> String {
        let host = self.host.clone().unwrap_or_else(|| addr.to_string());
        format!(
            "{} {} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: weir-health-check\r\nAccept: */*\r\nConnection: close\r\n\r\n",
            self.method, self.uri
        )
    }
}

/// Parse `HTTP/1.x SSS reason` into (status, reason).
pub fn parse_status_line(line: &str) -> Result<(u16, &str), CheckError> {
    let bad = || CheckError::L7InvalidResponse(format!("bad status line {line:?}"));
    let rest = line.strip_prefix("HTTP/1.").ok_or_else(bad)?;
    let mut parts = rest.splitn(3, ' ');
    let minor = parts.next().ok_or_else(bad)?;
    let code = parts.next().ok_or_else(bad)?;
    if minor.len() != 1 || !minor.as_bytes()[0].is_ascii_digit() {
        return Err(bad());
    }
    if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let status: u16 = code.parse().map_err(|_| bad())?;
    if !(100..=599).contains(&status) {
        return Err(bad());
    }
    Ok((status, parts.next().unwrap_or("")))
}

impl HttpCheck {
    /// Sends the request on an open connection (plain TCP, or TLS for an
    /// `ssl` server) and judges the status line, all before `deadline`.
    pub(crate) async fn exchange<S>(
        &self,
        stream: &mut S,
        addr: SocketAddr,
        deadline: Instant,
    ) -> CheckOutcome
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let exchange = async {
            stream
                .write_all(self.request(addr).as_bytes())
                .await
                .map_err(|e| CheckError::L7InvalidResponse(io_info(&e)))?;
            // A TLS writer may still hold the record.
            stream
                .flush()
                .await
                .map_err(|e| CheckError::L7InvalidResponse(io_info(&e)))?;
            let mut buf = Vec::with_capacity(128);
            let mut chunk = [0u8; 256];
            loop {
                if let Some(end) = buf.windows(2).position(|w| w == b"\r\n") {
                    buf.truncate(end);
                    break;
                }
                if buf.len() > MAX_STATUS_LINE {
                    return Err(CheckError::L7InvalidResponse("status line too long".into()));
                }
                let n = stream
                    .read(&mut chunk)
                    .await
                    .map_err(|e| CheckError::L7InvalidResponse(io_info(&e)))?;
                if n == 0 {
                    return Err(CheckError::L7InvalidResponse(if buf.is_empty() {
                        "connection closed without response".into()
                    } else {
                        "connection closed inside status line".into()
                    }));
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            let line = String::from_utf8_lossy(&buf);
            let (status, reason) = parse_status_line(&line)?;
            if self.expect.matches(status) {
                Ok(CheckPass::Layer7 {
                    status,
                    reason: reason.to_owned(),
                })
            } else {
                Err(CheckError::L7WrongStatus {
                    status,
                    reason_phrase: reason.to_owned(),
                })
            }
        };
        timeout_at(deadline, exchange)
            .await
            .unwrap_or(Err(CheckError::L7Timeout))
    }
}

impl HealthCheck for HttpCheck {
    async fn check(&self, addr: SocketAddr) -> CheckOutcome {
        let deadline = Instant::now() + self.timeout;
        // One budget for the whole check, but a slow connect is reported as
        // a Layer4 problem and a slow answer as a Layer7 one.
        let mut stream = connect(addr, self.timeout).await?;
        self.exchange(&mut stream, addr, deadline).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tokio::net::TcpListener;

    /// A one-shot-per-connection origin: records each request head and
    /// answers with `response` (raw bytes), then closes.
    async fn origin(response: &'static [u8]) -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let log = log.clone();
                tokio::spawn(async move {
                    let mut req = Vec::new();
                    let mut chunk = [0u8; 512];
                    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => req.extend_from_slice(&chunk[..n]),
                        }
                    }
                    log.lock()
                        .unwrap()
                        .push(String::from_utf8_lossy(&req).into_owned());
                    let _ = s.write_all(response).await;
                });
            }
        });
        (addr, seen)
    }

    #[tokio::test]
    async fn status_200_passes_and_request_is_minimal() {
        let (addr, seen) = origin(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").await;
        let check = HttpCheck::from_httpchk_args(&["GET", "/healthz"])
            .unwrap()
            .expect_status("200")
            .unwrap();
        let r = check.check(addr).await;
        assert_eq!(
            r,
            Ok(CheckPass::Layer7 {
                status: 200,
                reason: "OK".into()
            })
        );
        let req = seen.lock().unwrap()[0].clone();
        assert_eq!(
            req,
            format!(
                "GET /healthz HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: weir-health-check\r\nAccept: */*\r\nConnection: close\r\n\r\n"
            )
        );
    }

    #[tokio::test]
    async fn status_500_is_wrong_status() {
        let (addr, _) = origin(b"HTTP/1.1 500 Internal Server Error\r\n\r\n").await;
        let err = HttpCheck::default().check(addr).await.unwrap_err();
        assert_eq!(
            err,
            CheckError::L7WrongStatus {
                status: 500,
                reason_phrase: "Internal Server Error".into()
            }
        );
    }

    #[tokio::test]
    async fn default_expect_accepts_redirects_exact_does_not() {
        let (addr, _) = origin(b"HTTP/1.0 302 Found\r\nLocation: /x\r\n\r\n").await;
        assert!(HttpCheck::default().check(addr).await.is_ok());
        let exact = HttpCheck::default().expect_status("200").unwrap();
        assert_eq!(exact.check(addr).await.unwrap_err().code(), Some(302));
    }

    #[tokio::test]
    async fn garbage_and_early_close_are_invalid_responses() {
        let (addr, _) = origin(b"SSH-2.0-OpenSSH\r\n").await;
        assert!(matches!(
            HttpCheck::default().check(addr).await,
            Err(CheckError::L7InvalidResponse(_))
        ));
        let (addr, _) = origin(b"").await;
        assert_eq!(
            HttpCheck::default().check(addr).await,
            Err(CheckError::L7InvalidResponse(
                "connection closed without response".into()
            ))
        );
    }

    #[tokio::test]
    async fn silent_server_is_layer7_timeout() {
        // Accepts and reads, never answers.
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (s, _) = l.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(5)).await;
            drop(s);
        });
        let check = HttpCheck {
            timeout: Duration::from_millis(100),
            ..HttpCheck::default()
        };
        assert_eq!(check.check(addr).await, Err(CheckError::L7Timeout));
        server.abort();
    }

    #[test]
    fn status_line_parsing() {
        assert_eq!(
            parse_status_line("HTTP/1.1 204 No Content"),
            Ok((204, "No Content"))
        );
        assert_eq!(parse_status_line("HTTP/1.0 200"), Ok((200, "")));
        for bad in [
            "HTTP/2 200 OK",
            "HTTP/1.1 20 OK",
            "HTTP/1.1 999 X",
            "HTTP/1.1 2x0 OK",
            "",
        ] {
            assert!(parse_status_line(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn httpchk_arguments() {
        let d = HttpCheck::from_httpchk_args(&[]).unwrap();
        assert_eq!((d.method.as_str(), d.uri.as_str()), ("OPTIONS", "/"));
        let u = HttpCheck::from_httpchk_args(&["/ping"]).unwrap();
        assert_eq!((u.method.as_str(), u.uri.as_str()), ("OPTIONS", "/ping"));
        let v = HttpCheck::from_httpchk_args(&["HEAD", "/", "HTTP/1.0"]).unwrap();
        assert_eq!(v.method, "HEAD");
        assert_eq!(
            HttpCheck::from_httpchk_args(&["GET", "/", "HTTP/2"]),
            Err(HttpCheckConfigError::BadVersion("HTTP/2".into()))
        );
        assert_eq!(
            HttpCheck::from_httpchk_args(&["GET", "/a b"]),
            Err(HttpCheckConfigError::BadUri("/a b".into()))
        );
        assert_eq!(
            HttpCheck::from_httpchk_args(&["G(T", "/"]),
            Err(HttpCheckConfigError::BadMethod("G(T".into()))
        );
        assert_eq!(
            HttpCheck::from_httpchk_args(&["a", "b", "HTTP/1.1", "d"]),
            Err(HttpCheckConfigError::TooManyArgs(4))
        );
        assert_eq!(
            HttpCheck::default().expect_status("abc"),
            Err(HttpCheckConfigError::BadStatus("abc".into()))
        );
    }
}
