//! Why a proxied exchange failed, and what follows from it.
//!
//! Every failure of the engine is one [`ProxyError`]. Like pingora's error
//! classification, each variant knows:
//!
//! * which [`ErrorSide`] caused it (client, server, or the proxy itself),
//!   which decides the counter that moves ([`ProxyError::counter`]);
//! * the status the client gets, if a response can still be sent
//!   ([`ProxyError::status`]): 400/413/414/431/501 for malformed requests,
//!   408 for a client that is too slow, 502 for a broken server response,
//!   503 when no server can take the request, 504 for a server timeout;
//! * whether another attempt may succeed ([`ProxyError::retryable`]): only
//!   failures before the server saw the request (connect errors, a pooled
//!   connection found closed) are retried;
//! * HAProxy's two-letter termination state for the access log
//!   ([`ProxyError::termination`]).

use std::io;

use crate::health::passive::Observation;
use crate::http;
use crate::stats::Counter;

/// Who caused a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorSide {
    /// The client (bad request, timeout, abort).
    Client,
    /// A server (connect failure, bad response, timeout).
    Server,
    /// The proxy (no backend matched, no server available).
    Internal,
}

/// One failure of a proxied exchange.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The request is malformed or ambiguous; never forwarded.
    #[error("bad request: {0}")]
    BadRequest(http::Error),
    /// The client sent no complete head within `timeout http-request`
    /// (or `timeout client` while a body was expected).
    #[error("client timeout while {0}")]
    ClientTimeout(&'static str),
    /// The client closed or reset its connection mid-exchange.
    #[error("client aborted: {0}")]
    ClientAborted(io::Error),
    /// No `use_backend` matched and there is no `default_backend`.
    #[error("no backend for this request")]
    NoBackend,
    /// Every server of the backend is down (or has weight 0, or already
    /// failed this request).
    #[error("no server available in backend")]
    NoServer,
    /// The request waited `timeout queue` for a slot: in that server's own
    /// queue (`Some`, hashing) or the backend queue (`None`).
    #[error("queue timeout")]
    QueueTimeout {
        /// The server whose queue it waited in.
        server: Option<usize>,
    },
    /// The chosen server's own queue was at its `maxqueue`.
    #[error("server queue full")]
    QueueFull {
        /// The server.
        server: usize,
    },
    /// A TCP connect to a server failed.
    #[error("connect to {server} failed: {source}")]
    Connect {
        /// Server name.
        server: String,
        /// Why.
        source: io::Error,
    },
    /// The TLS handshake with an `ssl` server failed (certificate refused,
    /// no common parameters, timeout, closed). The server has not seen the
    /// request, so it is retried like a connect error.
    #[error("tls handshake with {server} failed: {source}")]
    Tls {
        /// Server name.
        server: String,
        /// Why.
        source: crate::tls::TlsConnectError,
    },
    /// A TCP connect to a server took longer than `timeout connect`.
    #[error("connect to {server} timed out")]
    ConnectTimeout {
        /// Server name.
        server: String,
    },
    /// A pooled (reused) server connection was closed before it answered
    /// anything: the request can be sent again on a fresh connection.
    #[error("reused server connection closed before answering")]
    StaleConnection,
    /// The server's response is malformed (broken framing, bad head).
    #[error("bad response: {0}")]
    BadResponse(http::Error),
    /// The server closed or failed mid-exchange.
    #[error("server aborted: {0}")]
    ServerAborted(io::Error),
    /// The server did not answer (or stalled) within `timeout server`.
    #[error("server timeout")]
    ServerTimeout,
    /// Health checks marked the server DOWN during the exchange and it has
    /// `on-marked-down shutdown-sessions`: the exchange was cut off.
    #[error("server marked down (on-marked-down shutdown-sessions)")]
    ServerMarkedDown,
    /// A bug: the exchange panicked. The client gets a 500 and the
    /// connection is closed; the process goes on.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ProxyError {
    /// Who caused it.
    pub fn side(&self) -> ErrorSide {
        match self {
            ProxyError::BadRequest(_)
            | ProxyError::ClientTimeout(_)
            | ProxyError::ClientAborted(_) => ErrorSide::Client,
            ProxyError::NoBackend
            | ProxyError::NoServer
            | ProxyError::QueueTimeout { .. }
            | ProxyError::QueueFull { .. }
            | ProxyError::Internal(_) => ErrorSide::Internal,
            ProxyError::Connect { .. }
            | ProxyError::Tls { .. }
            | ProxyError::ConnectTimeout { .. }
            | ProxyError::StaleConnection
            | ProxyError::BadResponse(_)
            | ProxyError::ServerAborted(_)
            | ProxyError::ServerTimeout
            | ProxyError::ServerMarkedDown => ErrorSide::Server,
        }
    }

    /// The status to answer with while no response byte has been sent yet;
    /// `None` when the client is gone (nothing to answer).
    pub fn status(&self) -> Option<u16> {
        match self {
            ProxyError::BadRequest(e) => Some(e.status()),
            ProxyError::ClientTimeout(_) => Some(408),
            ProxyError::ClientAborted(_) => None,
            ProxyError::NoBackend
            | ProxyError::NoServer
            | ProxyError::QueueTimeout { .. }
            | ProxyError::QueueFull { .. }
            | ProxyError::Connect { .. }
            | ProxyError::Tls { .. }
            | ProxyError::ConnectTimeout { .. } => Some(503),
            ProxyError::StaleConnection
            | ProxyError::BadResponse(_)
            | ProxyError::ServerAborted(_)
            | ProxyError::ServerMarkedDown => Some(502),
            ProxyError::ServerTimeout => Some(504),
            ProxyError::Internal(_) => Some(500),
        }
    }

    /// True when the server cannot have seen the request, so another
    /// attempt (same or another server) is safe.
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            ProxyError::Connect { .. }
                | ProxyError::Tls { .. }
                | ProxyError::ConnectTimeout { .. }
                | ProxyError::StaleConnection
        )
    }

    /// The counter this failure moves (on the frontend for client errors,
    /// on the backend and server for server errors). Server failures count
    /// as HAProxy's: every failed connect, `timeout connect` included, is a
    /// connect error (`econ`); every failed response, `timeout server`
    /// included, a response error (`eresp`). A request no server could
    /// take (none usable, queue timeout, server queue full) is also a failed
    /// connection (`econ`) of the backend, and of the server whose queue it
    /// waited in, not a denial.
    pub fn counter(&self) -> Option<Counter> {
        match self {
            ProxyError::BadRequest(_) => Some(Counter::RequestErrors),
            ProxyError::ClientTimeout(_) => Some(Counter::Timeouts),
            ProxyError::ClientAborted(_) => None,
            ProxyError::NoBackend => Some(Counter::Denied),
            // Cut off by configuration, not a failure of the server's answer.
            ProxyError::Internal(_) | ProxyError::ServerMarkedDown => None,
            ProxyError::NoServer
            | ProxyError::QueueTimeout { .. }
            | ProxyError::QueueFull { .. }
            | ProxyError::Connect { .. }
            | ProxyError::Tls { .. }
            | ProxyError::ConnectTimeout { .. } => Some(Counter::ConnectErrors),
            ProxyError::StaleConnection
            | ProxyError::BadResponse(_)
            | ProxyError::ServerAborted(_)
            | ProxyError::ServerTimeout => Some(Counter::ResponseErrors),
        }
    }

    /// What this failure tells passive health about the server (HAProxy's
    /// health-analyze statuses); `None` for failures that say nothing
    /// about it (client side, internal, a pooled connection found closed,
    /// which is simply sent again).
    pub fn observation(&self) -> Option<Observation> {
        match self {
            ProxyError::Connect { .. }
            | ProxyError::Tls { .. }
            | ProxyError::ConnectTimeout { .. } => Some(Observation::ConnectFailed),
            ProxyError::BadResponse(_) => Some(Observation::InvalidResponse),
            ProxyError::ServerAborted(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                Some(Observation::WriteError)
            }
            ProxyError::ServerAborted(_) => Some(Observation::ReadError),
            ProxyError::ServerTimeout => Some(Observation::ReadTimeout),
            ProxyError::StaleConnection
            | ProxyError::BadRequest(_)
            | ProxyError::ClientTimeout(_)
            | ProxyError::ClientAborted(_)
            | ProxyError::NoBackend
            | ProxyError::NoServer
            | ProxyError::QueueTimeout { .. }
            | ProxyError::QueueFull { .. }
            | ProxyError::ServerMarkedDown
            | ProxyError::Internal(_) => None,
        }
    }

    /// The server a queue failure happened on (its queue), if any.
    pub fn queued_server(&self) -> Option<usize> {
        match self {
            ProxyError::QueueTimeout { server } => *server,
            ProxyError::QueueFull { server } => Some(*server),
            _ => None,
        }
    }

    /// HAProxy's termination state (first letter: who, second: when).
    /// `phase` is the letter of the step the session was in.
    pub fn termination(&self, phase: u8) -> [u8; 2] {
        let who = match self {
            ProxyError::BadRequest(_) => b'P',
            ProxyError::ClientTimeout(_) => b'c',
            ProxyError::ClientAborted(_) => b'C',
            // HAProxy: no server is a connection-stage failure (`SC`), a
            // full server queue `SQ`, a queue timeout `sQ`.
            ProxyError::NoServer => return *b"SC",
            ProxyError::QueueFull { .. } => return *b"SQ",
            ProxyError::QueueTimeout { .. } => return *b"sQ",
            ProxyError::NoBackend => b'S',
            ProxyError::Connect { .. } | ProxyError::Tls { .. } | ProxyError::StaleConnection => {
                b'S'
            }
            ProxyError::ConnectTimeout { .. } | ProxyError::ServerTimeout => b's',
            ProxyError::BadResponse(_) => b'P',
            ProxyError::ServerAborted(_) => b'S',
            // HAProxy's 'D': killed because the server went DOWN.
            ProxyError::ServerMarkedDown => b'D',
            ProxyError::Internal(_) => b'I',
        };
        [who, phase]
    }
}

/// Reason phrases for the statuses the engine generates.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        407 => "Proxy Authentication Required",
        408 => "Request Time-out",
        409 => "Conflict",
        410 => "Gone",
        425 => "Too Early",
        429 => "Too Many Requests",
        413 => "Content Too Large",
        414 => "URI Too Long",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Time-out",
        200..=299 => "OK",
        305..=399 => "Redirection",
        _ => "Error",
    }
}

/// Appends a complete error response with a short HTML body, like
/// HAProxy's built-in error pages, always with `connection: close`.
pub fn write_error_response(status: u16, dst: &mut bytes::BytesMut) {
    write_local_response(status, None, false, Some("close"), dst);
}

/// Appends a response the proxy makes itself: `body` is `(content-type,
/// text)`; without one, error statuses (4xx/5xx) get HAProxy-style HTML
/// pages and others an empty body. `head_only` (a HEAD request) leaves the
/// body out but keeps its length. `connection` is the `Connection` value
/// to send, if any.
pub fn write_local_response(
    status: u16,
    body: Option<(&str, &str)>,
    head_only: bool,
    connection: Option<&str>,
    dst: &mut bytes::BytesMut,
) {
    use std::fmt::Write as _;
    let reason = reason_phrase(status);
    let page;
    let (content_type, text) = match body {
        Some(b) => b,
        None if status >= 400 => {
            page = error_page(status);
            ("text/html", page.as_str())
        }
        None => ("", ""),
    };
    let mut head = String::with_capacity(192);
    let _ = write!(head, "HTTP/1.1 {status} {reason}\r\n");
    if !matches!(status, 204 | 304) {
        let _ = write!(head, "content-length: {}\r\n", text.len());
    }
    head.push_str("cache-control: no-cache\r\n");
    if !content_type.is_empty() {
        let _ = write!(head, "content-type: {content_type}\r\n");
    }
    if let Some(c) = connection {
        let _ = write!(head, "connection: {c}\r\n");
    }
    head.push_str("\r\n");
    dst.extend_from_slice(head.as_bytes());
    if !head_only && !matches!(status, 204 | 304) {
        dst.extend_from_slice(text.as_bytes());
    }
}

/// HAProxy-style HTML body of an error status.
fn error_page(status: u16) -> String {
    let reason = reason_phrase(status);
    let detail = match status {
        400 => "Your browser sent an invalid request.",
        403 => "Request forbidden by administrative rules.",
        404 => "The requested URL was not found.",
        408 => "Your browser didn't send a complete request in time.",
        413 => "The request body is too large.",
        414 => "The request URI is too long.",
        431 => "The request header fields are too large.",
        500 => "An internal server error occurred.",
        501 => "The request uses an unsupported feature.",
        502 => "The server returned an invalid or incomplete response.",
        503 => "No server is available to handle this request.",
        504 => "The server didn't respond in time.",
        _ => "The request could not be handled.",
    };
    format!("<html><body><h1>{status} {reason}</h1>\n{detail}\n</body></html>\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_response_length_matches_body() {
        for status in [400, 408, 413, 414, 431, 500, 502, 503, 504] {
            let mut b = bytes::BytesMut::new();
            write_error_response(status, &mut b);
            let text = std::str::from_utf8(&b).unwrap();
            let (head, body) = text.split_once("\r\n\r\n").unwrap();
            assert!(head.starts_with(&format!("HTTP/1.1 {status} ")));
            assert!(
                head.contains(&format!("content-length: {}\r\n", body.len())),
                "{text}"
            );
            assert!(body.contains(&status.to_string()));
        }
    }

    #[test]
    fn no_server_and_queue_failures_are_failed_connections_with_haproxy_flags() {
        let cases = [
            (ProxyError::NoServer, *b"SC", None),
            (ProxyError::QueueTimeout { server: None }, *b"sQ", None),
            (
                ProxyError::QueueTimeout { server: Some(2) },
                *b"sQ",
                Some(2),
            ),
            (ProxyError::QueueFull { server: 1 }, *b"SQ", Some(1)),
        ];
        for (e, flags, server) in cases {
            assert_eq!(e.status(), Some(503), "{e}");
            assert_eq!(e.counter(), Some(Counter::ConnectErrors), "{e}");
            assert_eq!(e.termination(b'Q'), flags, "{e}");
            assert_eq!(e.queued_server(), server, "{e}");
            assert!(!e.retryable());
        }
        assert_eq!(ProxyError::NoBackend.counter(), Some(Counter::Denied));
    }

    #[test]
    fn classification_decides_status_retry_and_side() {
        let c = ProxyError::Connect {
            server: "s1".into(),
            source: io::Error::from(io::ErrorKind::ConnectionRefused),
        };
        assert_eq!(
            (c.status(), c.retryable(), c.side()),
            (Some(503), true, ErrorSide::Server)
        );
        assert_eq!(ProxyError::ServerTimeout.status(), Some(504));
        let timeout = ProxyError::ConnectTimeout {
            server: "s1".into(),
        };
        assert_eq!(
            (timeout.counter(), timeout.status(), timeout.retryable()),
            (Some(Counter::ConnectErrors), Some(503), true)
        );
        assert_eq!(
            ProxyError::ServerTimeout.counter(),
            Some(Counter::ResponseErrors)
        );
        assert_eq!(
            ProxyError::ClientTimeout("x").counter(),
            Some(Counter::Timeouts)
        );
        assert!(!ProxyError::ServerTimeout.retryable());
        let bad =
            ProxyError::BadResponse(http::Error::server(http::ParseError::MultipleContentLength));
        assert_eq!(
            (bad.status(), bad.counter()),
            (Some(502), Some(Counter::ResponseErrors))
        );
        let req = ProxyError::BadRequest(http::Error::client(http::ParseError::HeadersTooLarge));
        assert_eq!((req.status(), req.side()), (Some(431), ErrorSide::Client));
        assert_eq!(ProxyError::ClientTimeout("x").status(), Some(408));
        assert_eq!(ProxyError::NoBackend.side(), ErrorSide::Internal);
        assert_eq!(&ProxyError::ServerTimeout.termination(b'H'), b"sH");
    }
}
