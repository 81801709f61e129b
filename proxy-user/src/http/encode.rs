//! Writing heads (with the proxy's modifications) and chunked bodies.
//!
//! [`encode_request_head`] and [`encode_response_head`] write a parsed head
//! to a [`BytesMut`] as the proxy forwards it:
//!
//! 1. The start line, with our own version `HTTP/1.1` (RFC 9110 §6.2: an
//!    intermediary sends its own HTTP-version).
//! 2. Every received field line, except:
//!    * hop-by-hop fields (RFC 9110 §7.6.1): `Connection`, `Keep-Alive`,
//!      `Proxy-Connection`, `TE`, `Transfer-Encoding`, `Upgrade`, and every
//!      field named in `Connection` (but never `Host`, which a client could
//!      otherwise strip that way);
//!    * `Content-Length` (re-written from [`HeadRewrite::body`]);
//!    * fields in [`HeadRewrite::del_headers`] or [`HeadRewrite::set_headers`]
//!      (not [`HeadRewrite::add_headers`]: those are written in addition);
//!    * `X-Forwarded-For` / `X-Forwarded-Proto` when we write our own.
//!
//!    Kept fields are written as `name: value` with the received name case and
//!    the OWS-trimmed value.
//! 3. The proxy's fields: `X-Forwarded-For`, `X-Forwarded-Proto`,
//!    [`HeadRewrite::set_headers`], [`HeadRewrite::add_headers`], the body
//!    framing field and `Connection`.
//!
//! Framing fields are derived from [`HeadRewrite::body`], never copied, so the
//! next hop sees exactly one unambiguous length: `Transfer-Encoding` is
//! rewritten as one field with the received codings, names lowercased, and
//! `chunked` last (this is how `chunked;foo` or `Chunked` reach the next hop
//! as plain `chunked`).
//!
//! Chunked re-encoding, for when the proxy must re-frame a body (e.g. a
//! close-delimited response to a keep-alive client): [`encode_chunk`] and
//! [`encode_last_chunk`].

use std::fmt::Write as _;
use std::net::IpAddr;

use bytes::{BufMut, BytesMut};

use super::error::Error;
use super::framing::{self, coding_name, transfer_coding_elements, Framing};
use super::head::{
    known_name, list_contains, Headers, KnownName, RequestHead, ResponseHead, Version,
};

/// How the proxy will delimit the body it writes after the head. Decides the
/// `Content-Length` / `Transfer-Encoding` field written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutgoingBody {
    /// No body follows. A received `Content-Length` is passed through when it
    /// is valid (it describes the representation in a HEAD or 304 response);
    /// `Transfer-Encoding` is dropped.
    #[default]
    None,
    /// `Content-Length: n`, then n bytes.
    Length(u64),
    /// `Transfer-Encoding: <received codings>, chunked`, then a chunked body.
    Chunked,
    /// Responses only: neither field; the body ends when we close.
    CloseDelimited,
}

impl From<Framing> for OutgoingBody {
    /// The outgoing body that forwards a received body unchanged.
    fn from(f: Framing) -> Self {
        match f {
            Framing::Empty | Framing::Tunnel => OutgoingBody::None,
            Framing::Length(n) => OutgoingBody::Length(n),
            Framing::Chunked => OutgoingBody::Chunked,
            Framing::CloseDelimited => OutgoingBody::CloseDelimited,
        }
    }
}

/// How to combine our `X-Forwarded-For` with one the client sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum XffMode {
    /// Keep the received addresses and append the client's:
    /// `X-Forwarded-For: <received>, <client>`.
    #[default]
    Append,
    /// Drop the received field and write only the client's address (for
    /// edge proxies that must not trust what clients claim).
    Replace,
}

/// The modifications applied while writing a head.
#[derive(Debug, Clone, Default)]
pub struct HeadRewrite<'a> {
    /// Write `X-Forwarded-For` with this client address (requests).
    pub forwarded_for: Option<IpAddr>,
    /// How to treat a received `X-Forwarded-For` when `forwarded_for` is set.
    pub xff_mode: XffMode,
    /// The field `forwarded_for` goes into (`option forwardfor header
    /// NAME`); `None`: `X-Forwarded-For`.
    pub forwarded_for_header: Option<&'a str>,
    /// Write `X-Forwarded-Proto: <proto>` (`http` / `https`), replacing any
    /// received one (requests).
    pub forwarded_proto: Option<&'a str>,
    /// Fields to set: every received field with the same name is dropped and
    /// `name: value` is written once per entry (HAProxy's `set-header`).
    pub set_headers: &'a [(&'a str, &'a str)],
    /// Fields to append after the received ones, which are kept (HAProxy's
    /// `add-header`).
    pub add_headers: &'a [(&'a str, &'a str)],
    /// Fields to remove (HAProxy's `del-header`), case-insensitive.
    pub del_headers: &'a [&'a str],
    /// How the body after this head is delimited.
    pub body: OutgoingBody,
    /// Write `Connection: <value>` (e.g. `close`, or `keep-alive` towards an
    /// HTTP/1.0 peer). Ignored when the upgrade is forwarded.
    pub connection: Option<&'a str>,
    /// Forward an upgrade: keep `Upgrade` and write `Connection: upgrade`.
    /// Only takes effect when the head has an `Upgrade` field.
    pub keep_upgrade: bool,
}

/// Write the request head as forwarded to the server.
pub fn encode_request_head(head: &RequestHead, rewrite: &HeadRewrite<'_>, dst: &mut BytesMut) {
    dst.reserve(head.raw().len() + 128);
    dst.put_slice(head.method_bytes());
    dst.put_u8(b' ');
    dst.put_slice(head.target());
    dst.put_u8(b' ');
    dst.put_slice(Version::Http11.as_str().as_bytes());
    dst.put_slice(b"\r\n");
    write_fields(head.headers(), rewrite, dst);
}

/// Write the response head as forwarded to the client. The reason phrase is
/// kept as received.
pub fn encode_response_head(head: &ResponseHead, rewrite: &HeadRewrite<'_>, dst: &mut BytesMut) {
    dst.reserve(head.raw().len() + 64);
    dst.put_slice(Version::Http11.as_str().as_bytes());
    dst.put_u8(b' ');
    write_decimal(u64::from(head.status()), dst);
    dst.put_u8(b' ');
    dst.put_slice(head.reason());
    dst.put_slice(b"\r\n");
    write_fields(head.headers(), rewrite, dst);
}

/// A complete error response for a rejected message: `HTTP/1.1 <status>
/// <reason>`, `Content-Length: 0` and `Connection: close` (every parse error
/// closes the connection).
pub fn encode_error_response(error: &Error, dst: &mut BytesMut) {
    let _ = write!(
        ByteWriter(dst),
        "HTTP/1.1 {} {}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
        error.status(),
        error.reason_phrase()
    );
}

/// The interim `100 Continue` response, for a request that
/// [`expects_continue`](RequestHead::expects_continue).
pub const CONTINUE_RESPONSE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// Append one chunk (`size CRLF data CRLF`). Empty `data` writes nothing:
/// an empty chunk would end the body.
pub fn encode_chunk(data: &[u8], dst: &mut BytesMut) {
    if data.is_empty() {
        return;
    }
    dst.reserve(data.len() + 20);
    let _ = write!(ByteWriter(dst), "{:x}\r\n", data.len());
    dst.put_slice(data);
    dst.put_slice(b"\r\n");
}

/// Append the last chunk and an empty trailer section: `0 CRLF CRLF`.
pub fn encode_last_chunk(dst: &mut BytesMut) {
    dst.put_slice(b"0\r\n\r\n");
}

fn write_fields(headers: Headers<'_>, rw: &HeadRewrite<'_>, dst: &mut BytesMut) {
    let forward_upgrade = rw.keep_upgrade && headers.contains("upgrade");
    let connection = ConnectionTokens::of(headers);
    let mut xff_received = false;
    // A custom client-address field is an `Other` name: compared by name.
    let custom_xff = rw
        .forwarded_for
        .and(rw.forwarded_for_header)
        .filter(|h| known_name(h.as_bytes()) != KnownName::XForwardedFor);

    for (known, h) in headers.iter_known() {
        let name = h.name;
        let is = |n: &str| name.eq_ignore_ascii_case(n.as_bytes());
        if rw.del_headers.iter().any(|n| is(n)) || rw.set_headers.iter().any(|(n, _)| is(n)) {
            continue;
        }
        let keep = match known {
            // Never hop-by-hop, even if `Connection` names it.
            KnownName::Host => true,
            KnownName::Upgrade if forward_upgrade => true,
            // Re-written from `rw.body`.
            KnownName::ContentLength => false,
            k if k.is_hop_by_hop() => false,
            KnownName::XForwardedProto if rw.forwarded_proto.is_some() => false,
            KnownName::XForwardedFor if rw.forwarded_for.is_some() && custom_xff.is_none() => {
                xff_received = true;
                false
            }
            KnownName::Other if custom_xff.is_some_and(is) => {
                xff_received = true;
                false
            }
            _ => !connection.lists(name),
        };
        if keep {
            put_field(name, h.value, dst);
        }
    }

    if let Some(client) = rw.forwarded_for {
        let xff_name = custom_xff.unwrap_or("x-forwarded-for");
        dst.put_slice(xff_name.as_bytes());
        dst.put_slice(b": ");
        if rw.xff_mode == XffMode::Append && xff_received {
            for v in headers.get_all(xff_name) {
                if !v.is_empty() {
                    dst.put_slice(v);
                    dst.put_slice(b", ");
                }
            }
        }
        let _ = write!(ByteWriter(dst), "{client}\r\n");
    }
    if let Some(proto) = rw.forwarded_proto {
        put_field(b"x-forwarded-proto", proto.as_bytes(), dst);
    }
    for (name, value) in rw.set_headers.iter().chain(rw.add_headers) {
        put_field(name.as_bytes(), value.as_bytes(), dst);
    }

    match rw.body {
        OutgoingBody::None => {
            if let Ok(Some(n)) = framing::content_length(headers) {
                dst.put_slice(b"content-length: ");
                write_decimal(n, dst);
                dst.put_slice(b"\r\n");
            }
        }
        OutgoingBody::Length(n) => {
            dst.put_slice(b"content-length: ");
            write_decimal(n, dst);
            dst.put_slice(b"\r\n");
        }
        OutgoingBody::Chunked => {
            dst.put_slice(b"transfer-encoding: ");
            for element in transfer_coding_elements(headers) {
                if coding_name(element).eq_ignore_ascii_case(b"chunked") {
                    continue;
                }
                // Coding names are case-insensitive (RFC 9112 §7); write them
                // lowercased, parameters as received.
                // `element` is OWS-trimmed, so it starts with the name.
                let name = coding_name(element);
                for &b in name {
                    dst.put_u8(b.to_ascii_lowercase());
                }
                dst.put_slice(&element[name.len()..]);
                dst.put_slice(b", ");
            }
            dst.put_slice(b"chunked\r\n");
        }
        OutgoingBody::CloseDelimited => {}
    }

    if forward_upgrade {
        dst.put_slice(b"connection: upgrade\r\n");
    } else if let Some(c) = rw.connection {
        put_field(b"connection", c.as_bytes(), dst);
    }
    dst.put_slice(b"\r\n");
}

/// The values of the `Connection` fields, collected once per head so that
/// checking whether a field is named there does not rescan all fields.
struct ConnectionTokens<'a> {
    values: [&'a [u8]; 4],
    len: usize,
    /// More than `values.len()` Connection fields: fall back to a scan.
    headers: Option<Headers<'a>>,
}

impl<'a> ConnectionTokens<'a> {
    fn of(headers: Headers<'a>) -> Self {
        let mut tokens = ConnectionTokens {
            values: [&[]; 4],
            len: 0,
            headers: None,
        };
        for v in headers.get_all("connection") {
            if tokens.len == tokens.values.len() {
                tokens.headers = Some(headers);
                break;
            }
            tokens.values[tokens.len] = v;
            tokens.len += 1;
        }
        tokens
    }

    /// True when `Connection` lists `name` (RFC 9110 §7.6.1).
    fn lists(&self, name: &[u8]) -> bool {
        match self.headers {
            Some(headers) => headers
                .get_all("connection")
                .any(|v| list_contains(v, name)),
            None => self.values[..self.len]
                .iter()
                .any(|v| list_contains(v, name)),
        }
    }
}

fn put_field(name: &[u8], value: &[u8], dst: &mut BytesMut) {
    dst.reserve(name.len() + value.len() + 4);
    dst.put_slice(name);
    dst.put_slice(b": ");
    dst.put_slice(value);
    dst.put_slice(b"\r\n");
}

fn write_decimal(n: u64, dst: &mut BytesMut) {
    let _ = write!(ByteWriter(dst), "{n}");
}

/// `fmt::Write` into a `BytesMut` (formatting without a temporary String).
struct ByteWriter<'a>(&'a mut BytesMut);

impl std::fmt::Write for ByteWriter<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.put_slice(s.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::error::ParseError;
    use super::super::limits::Limits;
    use super::*;

    fn request(raw: &str) -> RequestHead {
        RequestHead::parse(raw.as_bytes(), &Limits::default())
            .unwrap()
            .unwrap()
            .0
    }

    fn encode_req(raw: &str, rw: &HeadRewrite<'_>) -> String {
        let mut dst = BytesMut::new();
        encode_request_head(&request(raw), rw, &mut dst);
        String::from_utf8(dst.to_vec()).unwrap()
    }

    #[test]
    fn hop_by_hop_headers_are_removed() {
        let out = encode_req(
            "GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, X-Secret, host\r\nKeep-Alive: 5\r\nX-Secret: 1\r\nTE: trailers\r\nProxy-Connection: x\r\nUpgrade: h2c\r\nAccept: */*\r\n\r\n",
            &HeadRewrite::default(),
        );
        assert_eq!(out, "GET / HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n\r\n");
    }

    #[test]
    fn many_connection_fields_still_remove_listed_headers() {
        let out = encode_req(
            "GET / HTTP/1.1\r\nHost: a\r\nConnection: a\r\nConnection: b\r\nConnection: c\r\nConnection: d\r\nConnection: e\r\nA: 1\r\nE: 5\r\nF: 6\r\n\r\n",
            &HeadRewrite::default(),
        );
        assert_eq!(out, "GET / HTTP/1.1\r\nHost: a\r\nF: 6\r\n\r\n");
    }

    #[test]
    fn forwarded_headers_append_and_replace() {
        let raw = "GET /x HTTP/1.0\r\nX-Forwarded-For: 10.0.0.1\r\nX-Forwarded-Proto: http\r\nX-Forwarded-For: 10.0.0.2\r\n\r\n";
        let rw = HeadRewrite {
            forwarded_for: Some("192.0.2.7".parse().unwrap()),
            forwarded_proto: Some("https"),
            ..HeadRewrite::default()
        };
        assert_eq!(
            encode_req(raw, &rw),
            "GET /x HTTP/1.1\r\nx-forwarded-for: 10.0.0.1, 10.0.0.2, 192.0.2.7\r\nx-forwarded-proto: https\r\n\r\n"
        );
        let rw = HeadRewrite {
            forwarded_for: Some("2001:db8::1".parse().unwrap()),
            xff_mode: XffMode::Replace,
            ..HeadRewrite::default()
        };
        assert_eq!(
            encode_req(raw, &rw),
            "GET /x HTTP/1.1\r\nX-Forwarded-Proto: http\r\nx-forwarded-for: 2001:db8::1\r\n\r\n"
        );
    }

    #[test]
    fn forwarded_for_goes_into_a_custom_header() {
        let raw = "GET / HTTP/1.1\r\nHost: a\r\nX-Client-IP: 10.0.0.1\r\nX-Forwarded-For: 10.9.9.9\r\n\r\n";
        let rw = HeadRewrite {
            forwarded_for: Some("192.0.2.7".parse().unwrap()),
            forwarded_for_header: Some("X-Client-IP"),
            ..HeadRewrite::default()
        };
        // The custom field is appended to; X-Forwarded-For is left alone.
        assert_eq!(
            encode_req(raw, &rw),
            "GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 10.9.9.9\r\nX-Client-IP: 10.0.0.1, 192.0.2.7\r\n\r\n"
        );
        // Any spelling of X-Forwarded-For is the default field.
        let rw = HeadRewrite {
            forwarded_for: Some("192.0.2.7".parse().unwrap()),
            forwarded_for_header: Some("x-forwarded-FOR"),
            ..HeadRewrite::default()
        };
        assert_eq!(
            encode_req(raw, &rw),
            "GET / HTTP/1.1\r\nHost: a\r\nX-Client-IP: 10.0.0.1\r\nx-forwarded-for: 10.9.9.9, 192.0.2.7\r\n\r\n"
        );
    }

    #[test]
    fn set_and_del_headers() {
        let raw = "GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\nX-B: 2\r\nx-a: 3\r\nCookie: c\r\n\r\n";
        let rw = HeadRewrite {
            set_headers: &[("X-A", "new")],
            del_headers: &["cookie"],
            ..HeadRewrite::default()
        };
        assert_eq!(
            encode_req(raw, &rw),
            "GET / HTTP/1.1\r\nHost: a\r\nX-B: 2\r\nX-A: new\r\n\r\n"
        );
        let rw = HeadRewrite {
            set_headers: &[("X-A", "new")],
            add_headers: &[("X-B", "added"), ("X-C", "c")],
            ..HeadRewrite::default()
        };
        assert_eq!(
            encode_req(raw, &rw),
            "GET / HTTP/1.1\r\nHost: a\r\nX-B: 2\r\nCookie: c\r\nX-A: new\r\nX-B: added\r\nX-C: c\r\n\r\n"
        );
    }

    #[test]
    fn body_framing_is_rewritten() {
        let rw = HeadRewrite {
            body: OutgoingBody::Chunked,
            ..HeadRewrite::default()
        };
        assert_eq!(
            encode_req(
                "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: GZip;q=1\r\nTransfer-Encoding: Chunked;foo\r\n\r\n",
                &rw
            ),
            "POST / HTTP/1.1\r\nHost: a\r\ntransfer-encoding: gzip;q=1, chunked\r\n\r\n"
        );
        let head = request("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n");
        let rw = HeadRewrite {
            body: head.framing().into(),
            connection: Some("close"),
            ..HeadRewrite::default()
        };
        let mut dst = BytesMut::new();
        encode_request_head(&head, &rw, &mut dst);
        assert_eq!(
            &dst[..],
            b"POST / HTTP/1.1\r\nHost: a\r\ncontent-length: 5\r\nconnection: close\r\n\r\n"
        );
    }

    #[test]
    fn encoded_heads_parse_back_identically() {
        let head = request(
            "POST /up?x=1 HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\nX-Y: z\r\n\r\n",
        );
        let mut dst = BytesMut::new();
        encode_request_head(
            &head,
            &HeadRewrite {
                body: head.framing().into(),
                ..HeadRewrite::default()
            },
            &mut dst,
        );
        let (again, n) = RequestHead::parse(&dst, &Limits::default())
            .unwrap()
            .unwrap();
        assert_eq!(n, dst.len());
        assert_eq!(again.framing(), head.framing());
        assert_eq!(again.target(), head.target());
        assert_eq!(again.host(), head.host());
    }

    #[test]
    fn upgrade_is_kept_when_asked() {
        let raw = "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: k\r\n\r\n";
        let rw = HeadRewrite {
            keep_upgrade: true,
            connection: Some("close"),
            ..HeadRewrite::default()
        };
        assert_eq!(
            encode_req(raw, &rw),
            "GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nSec-WebSocket-Key: k\r\nconnection: upgrade\r\n\r\n"
        );
    }

    #[test]
    fn response_head_keeps_length_for_head_requests() {
        let (resp, _) = ResponseHead::parse(
            b"HTTP/1.0 200 Fine\r\nContent-Length: 42\r\nConnection: keep-alive\r\nServer: s\r\n\r\n",
            &Limits::default(),
        )
        .unwrap()
        .unwrap();
        let mut dst = BytesMut::new();
        encode_response_head(&resp, &HeadRewrite::default(), &mut dst);
        assert_eq!(
            &dst[..],
            b"HTTP/1.1 200 Fine\r\nServer: s\r\ncontent-length: 42\r\n\r\n"
        );
        let mut dst = BytesMut::new();
        let rw = HeadRewrite {
            body: OutgoingBody::Chunked,
            ..HeadRewrite::default()
        };
        encode_response_head(&resp, &rw, &mut dst);
        assert_eq!(
            &dst[..],
            b"HTTP/1.1 200 Fine\r\nServer: s\r\ntransfer-encoding: chunked\r\n\r\n"
        );
    }

    #[test]
    fn chunk_encoding() {
        let mut dst = BytesMut::new();
        encode_chunk(b"hello world, this is 30 bytes!", &mut dst);
        encode_chunk(b"", &mut dst);
        encode_last_chunk(&mut dst);
        assert_eq!(
            &dst[..],
            b"1e\r\nhello world, this is 30 bytes!\r\n0\r\n\r\n"
        );
    }

    #[test]
    fn error_response() {
        let mut dst = BytesMut::new();
        encode_error_response(&Error::client(ParseError::RequestLineTooLong), &mut dst);
        assert_eq!(
            &dst[..],
            b"HTTP/1.1 414 URI Too Long\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
        );
        let mut dst = BytesMut::new();
        encode_error_response(&Error::server(ParseError::InvalidChunkSize), &mut dst);
        assert!(dst.starts_with(b"HTTP/1.1 502 Bad Gateway\r\n"));
    }
}
