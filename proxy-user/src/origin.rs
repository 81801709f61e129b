//! The built-in origin server (`weir origin`, like HAProxy's `haterm`): a
//! small, fast HTTP/1.1 server for demos, tests and benchmarks.
//!
//! Routes:
//! - `GET /size/N`: N bytes of body (capped at [`MAX_BODY`]).
//! - `/echo` (any method): the request body back, same length.
//! - anything else: `hello from NAME\n`.
//!
//! Every response carries `X-Origin: NAME` so tests can see which server
//! answered. Keep-alive is honoured (HTTP/1.1 default, 1.0 with
//! `Connection: keep-alive`); request bodies with Content-Length are read.
//! Chunked request bodies are answered with 501: this is a test origin, not a
//! general server.

use std::{net::SocketAddr, sync::Arc};

use anyhow::{Context, Result};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// Largest body `/size/N` and `/echo` will produce.
pub const MAX_BODY: usize = 64 * 1024 * 1024;
/// Largest request head accepted.
const MAX_HEAD: usize = 64 * 1024;
const MAX_HEADERS: usize = 64;

/// Binds every address and serves until the task is dropped.
pub async fn serve(name: String, addrs: &[SocketAddr]) -> Result<Vec<SocketAddr>> {
    let name: Arc<str> = name.into();
    let mut bound = Vec::new();
    for addr in addrs {
        let listener = crate::net::listen_reuseport(*addr)
            .with_context(|| format!("origin '{name}': cannot bind {addr}"))?;
        bound.push(listener.local_addr()?);
        let name = name.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                tokio::spawn(serve_connection(stream, name.clone()));
            }
        });
    }
    Ok(bound)
}

async fn serve_connection(mut stream: TcpStream, name: Arc<str>) {
    let mut buf = Vec::with_capacity(4096);
    let mut out = Vec::with_capacity(4096);
    loop {
        // Read until a full head is buffered.
        let (head_len, req) = loop {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut req = httparse::Request::new(&mut headers);
            match req.parse(&buf) {
                Ok(httparse::Status::Complete(n)) => break (n, RequestInfo::from(&req)),
                Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => {}
                _ => {
                    let _ = stream
                        .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                        .await;
                    return;
                }
            }
            let mut chunk = [0u8; 8192];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        buf.drain(..head_len);
        if req.chunked {
            let _ = stream
                .write_all(b"HTTP/1.1 501 Not Implemented\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                .await;
            return;
        }
        // Read (and keep, for /echo) the request body.
        let body_len = req.content_length.min(MAX_BODY);
        while buf.len() < body_len {
            let mut chunk = [0u8; 65536];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let body: Vec<u8> = buf.drain(..body_len).collect();
        let reply = respond(&req, body, &name);
        out.clear();
        out.extend_from_slice(
            format!(
                "HTTP/1.1 {}\r\ncontent-length: {}\r\ncontent-type: text/plain\r\nx-origin: {}\r\n{}\r\n",
                reply.status,
                reply.body.len(),
                name,
                if req.keep_alive { "" } else { "connection: close\r\n" }
            )
            .as_bytes(),
        );
        if !req.head {
            out.extend_from_slice(&reply.body);
        }
        if stream.write_all(&out).await.is_err() || !req.keep_alive {
            return;
        }
    }
}

struct RequestInfo {
    path: String,
    head: bool,
    keep_alive: bool,
    chunked: bool,
    content_length: usize,
}

impl From<&httparse::Request<'_, '_>> for RequestInfo {
    fn from(req: &httparse::Request<'_, '_>) -> Self {
        let header = |name: &str| {
            req.headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(name))
                .map(|h| String::from_utf8_lossy(h.value).to_ascii_lowercase())
        };
        let connection = header("connection").unwrap_or_default();
        let http11 = req.version == Some(1);
        Self {
            path: req.path.unwrap_or("/").to_string(),
            head: req.method == Some("HEAD"),
            keep_alive: if http11 {
                !connection.contains("close")
            } else {
                connection.contains("keep-alive")
            },
            chunked: header("transfer-encoding").is_some(),
            content_length: header("content-length")
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0),
        }
    }
}

struct Reply {
    status: &'static str,
    body: Vec<u8>,
}

fn respond(req: &RequestInfo, body: Vec<u8>, name: &str) -> Reply {
    if let Some(n) = req.path.strip_prefix("/size/") {
        return match n.parse::<usize>() {
            Ok(n) if n <= MAX_BODY => Reply {
                status: "200 OK",
                body: vec![b'x'; n],
            },
            _ => Reply {
                status: "400 Bad Request",
                body: b"bad size\n".to_vec(),
            },
        };
    }
    if req.path == "/echo" {
        return Reply {
            status: "200 OK",
            body,
        };
    }
    Reply {
        status: "200 OK",
        body: format!("hello from {name}\n").into_bytes(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get(addr: SocketAddr, request: &str) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(request.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn origin_answers_with_its_name_and_closes_when_asked() {
        let addrs = serve("o1".into(), &["127.0.0.1:0".parse().unwrap()])
            .await
            .unwrap();
        let out = get(
            addrs[0],
            "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
        assert!(out.contains("x-origin: o1\r\n"));
        assert!(out.ends_with("hello from o1\n"));
    }

    #[tokio::test]
    async fn origin_echoes_the_body_and_serves_sized_bodies_on_one_connection() {
        let addrs = serve("o2".into(), &["127.0.0.1:0".parse().unwrap()])
            .await
            .unwrap();
        let out = get(
            addrs[0],
            "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhelloGET /size/3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await;
        let first = out.find("\r\n\r\nhello").expect("echoed body");
        assert!(out[first..].contains("HTTP/1.1 200 OK"), "{out}");
        assert!(out.ends_with("\r\n\r\nxxx"), "{out}");
    }
}
