//! Request and response heads: parsing and read access.
//!
//! Parsing is done by `httparse` (strict configuration: no obs-fold, no
//! whitespace before the colon, no extra spaces in the start line) followed by
//! our own checks, which `httparse` leaves out:
//!
//! * the request line and the whole head are bounded ([`Limits`]: 414 / 431);
//! * a LF must be preceded by CR (httparse accepts bare LF; RFC 9112 §2.2 only
//!   says a recipient MAY);
//! * HTTP/1.1 requests need exactly one valid Host (RFC 9112 §3.2);
//! * field names that are not exactly `Content-Length`/`Transfer-Encoding`
//!   but would be read as one by a lenient parser (`Transfer_Encoding`,
//!   `content--length`) are rejected;
//! * the request's message framing is decided at parse time (see
//!   [`super::framing`]), so a head that [`RequestHead::parse`]
//!   returned always has a trustworthy body length.
//!
//! A parsed head keeps the raw head bytes (a [`Bytes`], shared with the read
//! buffer when parsed from a [`BytesMut`]) plus offsets into them: parsing
//! does one allocation per head (the span table), none per header.

use std::mem::MaybeUninit;

use bytes::{Bytes, BytesMut};

use super::error::{Error, ParseError, Side};
use super::framing::{self, Framing};
use super::limits::{Limits, MAX_HEADERS_CEILING};
use super::syntax::{is_tchar, trim_ows};

/// HTTP version of a message. Only 1.0 and 1.1 are accepted (RFC 9112 §2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    /// `HTTP/1.0`
    Http10,
    /// `HTTP/1.1`
    Http11,
}

impl Version {
    /// The protocol string, e.g. `HTTP/1.1`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Version::Http10 => "HTTP/1.0",
            Version::Http11 => "HTTP/1.1",
        }
    }
}

/// Request method. Methods the proxy treats specially have their own variant;
/// every other token is [`Method::Other`] (see [`RequestHead::method_bytes`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// `GET`
    Get,
    /// `HEAD`: the response never has a body (RFC 9112 §6.3 rule 1).
    Head,
    /// `POST`
    Post,
    /// `PUT`
    Put,
    /// `DELETE`
    Delete,
    /// `CONNECT`: a 2xx response turns the connection into a tunnel.
    Connect,
    /// `OPTIONS`
    Options,
    /// `TRACE`
    Trace,
    /// `PATCH`
    Patch,
    /// Any other token (methods are case-sensitive, RFC 9110 §9.1).
    Other,
}

impl Method {
    /// Classify a method token (case-sensitive).
    pub fn from_bytes(b: &[u8]) -> Method {
        match b {
            b"GET" => Method::Get,
            b"HEAD" => Method::Head,
            b"POST" => Method::Post,
            b"PUT" => Method::Put,
            b"DELETE" => Method::Delete,
            b"CONNECT" => Method::Connect,
            b"OPTIONS" => Method::Options,
            b"TRACE" => Method::Trace,
            b"PATCH" => Method::Patch,
            _ => Method::Other,
        }
    }
}

/// Whether a connection may carry another message after this one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeepAlive {
    /// The connection may be reused.
    KeepAlive,
    /// The connection must be closed after this exchange.
    Close,
}

/// A byte range into a head's raw bytes. u32 keeps the span table small;
/// heads are bounded by [`Limits::max_head_bytes`] anyway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Span {
    start: u32,
    end: u32,
}

impl Span {
    fn of(base: &[u8], part: &[u8]) -> Span {
        let start = part.as_ptr() as usize - base.as_ptr() as usize;
        Span::new(start, start + part.len())
    }

    fn new(start: usize, end: usize) -> Span {
        debug_assert!(start <= end && end <= u32::MAX as usize);
        Span {
            start: start as u32,
            end: end as u32,
        }
    }

    #[inline]
    fn get(self, raw: &[u8]) -> &[u8] {
        &raw[self.start as usize..self.end as usize]
    }
}

/// Offsets of one field line: its name and its value, OWS-trimmed, and the
/// name classified once at parse time so that later lookups of the fields the
/// codec cares about compare one byte instead of strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HeaderSpan {
    name: Span,
    value: Span,
    known: KnownName,
}

/// Field names the codec itself looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KnownName {
    Host,
    ContentLength,
    TransferEncoding,
    Connection,
    KeepAlive,
    ProxyConnection,
    Te,
    Upgrade,
    Expect,
    XForwardedFor,
    XForwardedProto,
    Other,
}

impl KnownName {
    /// Fields that only concern one connection (RFC 9110 §7.6.1), whatever
    /// `Connection` lists.
    pub(crate) fn is_hop_by_hop(self) -> bool {
        matches!(
            self,
            KnownName::Connection
                | KnownName::KeepAlive
                | KnownName::ProxyConnection
                | KnownName::Te
                | KnownName::TransferEncoding
                | KnownName::Upgrade
        )
    }
}

/// Classify a field name (ASCII case-insensitive): dispatch on the length,
/// then at most two comparisons.
pub(crate) fn known_name(name: &[u8]) -> KnownName {
    let is = |n: &[u8]| name.eq_ignore_ascii_case(n);
    match name.len() {
        2 if is(b"te") => KnownName::Te,
        4 if is(b"host") => KnownName::Host,
        6 if is(b"expect") => KnownName::Expect,
        7 if is(b"upgrade") => KnownName::Upgrade,
        10 if is(b"connection") => KnownName::Connection,
        10 if is(b"keep-alive") => KnownName::KeepAlive,
        14 if is(b"content-length") => KnownName::ContentLength,
        15 if is(b"x-forwarded-for") => KnownName::XForwardedFor,
        16 if is(b"proxy-connection") => KnownName::ProxyConnection,
        17 if is(b"transfer-encoding") => KnownName::TransferEncoding,
        17 if is(b"x-forwarded-proto") => KnownName::XForwardedProto,
        _ => KnownName::Other,
    }
}

/// One field line, borrowed from a head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header<'a> {
    /// Field name as received (case preserved).
    pub name: &'a [u8],
    /// Field value without leading and trailing whitespace.
    pub value: &'a [u8],
}

/// A read-only view of a head's field lines, in order of arrival.
#[derive(Debug, Clone, Copy)]
pub struct Headers<'a> {
    raw: &'a [u8],
    spans: &'a [HeaderSpan],
}

impl<'a> Headers<'a> {
    /// Number of field lines.
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// True when there are no field lines.
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// All field lines in order.
    pub fn iter(&self) -> impl Iterator<Item = Header<'a>> + 'a {
        let raw = self.raw;
        self.spans.iter().map(move |s| Header {
            name: s.name.get(raw),
            value: s.value.get(raw),
        })
    }

    /// Value of the first field named `name` (ASCII case-insensitive).
    pub fn get(&self, name: &str) -> Option<&'a [u8]> {
        self.get_all(name).next()
    }

    /// Values of every field named `name` (ASCII case-insensitive).
    pub fn get_all<'n>(&self, name: &'n str) -> impl Iterator<Item = &'a [u8]> + use<'a, 'n> {
        let raw = self.raw;
        let name = name.as_bytes();
        let known = known_name(name);
        self.spans
            .iter()
            .filter(move |s| {
                if known == KnownName::Other {
                    s.known == KnownName::Other && s.name.get(raw).eq_ignore_ascii_case(name)
                } else {
                    s.known == known
                }
            })
            .map(move |s| s.value.get(raw))
    }

    /// True when some field named `name` exists.
    pub fn contains(&self, name: &str) -> bool {
        self.get_all(name).next().is_some()
    }

    /// True when a field named `name` holds `token` in its comma-separated
    /// list (both compared ASCII case-insensitively), e.g.
    /// `has_token("connection", "close")`.
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.get_all(name)
            .any(|v| list_contains(v, token.as_bytes()))
    }

    /// Field lines with their classified names.
    pub(crate) fn iter_known(&self) -> impl Iterator<Item = (KnownName, Header<'a>)> + 'a {
        let raw = self.raw;
        self.spans.iter().map(move |s| {
            (
                s.known,
                Header {
                    name: s.name.get(raw),
                    value: s.value.get(raw),
                },
            )
        })
    }
}

/// True when a comma-separated list contains `token` (case-insensitive).
pub(crate) fn list_contains(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|&b| b == b',')
        .any(|item| trim_ows(item).eq_ignore_ascii_case(token))
}

/// A parsed request head.
#[derive(Debug, Clone)]
pub struct RequestHead {
    raw: Bytes,
    method: Method,
    method_span: Span,
    target: Span,
    version: Version,
    headers: Vec<HeaderSpan>,
    framing: Framing,
}

impl RequestHead {
    /// Parse a request head at the start of `buf`.
    ///
    /// * `Ok(None)`: the head is incomplete; read more and call again with
    ///   the grown buffer (the limits are checked on every call, so a peer
    ///   cannot make the buffer grow without bound).
    /// * `Ok(Some((head, consumed)))`: `buf[..consumed]` was the head; the body
    ///   (see [`RequestHead::framing`]) or the next request starts at `consumed`.
    ///   The head bytes are copied once into the returned head; use
    ///   [`RequestHead::parse_buf`] to avoid the copy.
    /// * `Err(e)`: reject with `e.status()` and close the connection.
    pub fn parse(buf: &[u8], limits: &Limits) -> Result<Option<(RequestHead, usize)>, Error> {
        match parse_request_parts(buf, limits)? {
            None => Ok(None),
            Some(parts) => {
                let n = parts.len;
                let head = parts.into_head(Bytes::copy_from_slice(&buf[..n]));
                Ok(Some((head, n)))
            }
        }
    }

    /// Like [`RequestHead::parse`] but takes the head out of `buf` without
    /// copying: on success `buf` starts at the first byte after the head.
    /// On `Ok(None)` and on error `buf` is left untouched.
    pub fn parse_buf(buf: &mut BytesMut, limits: &Limits) -> Result<Option<RequestHead>, Error> {
        match parse_request_parts(buf, limits)? {
            None => Ok(None),
            Some(parts) => {
                // Framing was validated by `parse_request_parts`, so an error
                // leaves `buf` untouched.
                let n = parts.len;
                Ok(Some(parts.into_head(buf.split_to(n).freeze())))
            }
        }
    }

    /// The method.
    pub fn method(&self) -> Method {
        self.method
    }

    /// The method token as received.
    pub fn method_bytes(&self) -> &[u8] {
        self.method_span.get(&self.raw)
    }

    /// The request-target as received (origin-form, absolute-form,
    /// authority-form or asterisk-form; RFC 9112 §3.2).
    pub fn target(&self) -> &[u8] {
        self.target.get(&self.raw)
    }

    /// The HTTP version.
    pub fn version(&self) -> Version {
        self.version
    }

    /// The field lines.
    pub fn headers(&self) -> Headers<'_> {
        Headers {
            raw: &self.raw,
            spans: &self.headers,
        }
    }

    /// How the body that follows this head is delimited, decided by
    /// [`framing::request_framing`] during parsing.
    pub fn framing(&self) -> Framing {
        self.framing
    }

    /// The raw bytes of the head as received, final empty line included.
    pub fn raw(&self) -> &Bytes {
        &self.raw
    }

    /// The Host field value, if any (there is at most one: more are rejected).
    pub fn host(&self) -> Option<&[u8]> {
        self.headers().get("host")
    }

    /// Whether the client may send another request on this connection after
    /// this one (RFC 9112 §9.3): HTTP/1.1 persists unless `Connection: close`;
    /// HTTP/1.0 closes unless `Connection: keep-alive`.
    pub fn keep_alive(&self) -> KeepAlive {
        keep_alive_for(self.version, self.headers())
    }

    /// `Expect: 100-continue` (RFC 9110 §10.1.1). Ignored for HTTP/1.0
    /// requests, as that section requires. Other expectations are ignored.
    pub fn expects_continue(&self) -> bool {
        self.version == Version::Http11 && self.headers().has_token("expect", "100-continue")
    }

    /// The protocols requested in `Upgrade` when `Connection` lists `upgrade`
    /// (RFC 9110 §7.8), e.g. `Some(b"websocket")`. `None` otherwise, and for
    /// HTTP/1.0 (Upgrade is an HTTP/1.1 mechanism).
    pub fn upgrade(&self) -> Option<&[u8]> {
        if self.version != Version::Http11 {
            return None;
        }
        let headers = self.headers();
        if !headers.has_token("connection", "upgrade") {
            return None;
        }
        headers.get("upgrade").filter(|v| !v.is_empty())
    }
}

/// A parsed response head.
#[derive(Debug, Clone)]
pub struct ResponseHead {
    raw: Bytes,
    status: u16,
    reason: Span,
    version: Version,
    headers: Vec<HeaderSpan>,
}

impl ResponseHead {
    /// Parse a response head at the start of `buf`. Same contract as
    /// [`RequestHead::parse`]; errors have [`Side::Server`] (answer 502).
    /// The body length depends on the request: use
    /// [`framing::response_framing`].
    pub fn parse(buf: &[u8], limits: &Limits) -> Result<Option<(ResponseHead, usize)>, Error> {
        match parse_response_parts(buf, limits)? {
            None => Ok(None),
            Some(parts) => {
                let n = parts.len;
                Ok(Some((
                    parts.into_head(Bytes::copy_from_slice(&buf[..n])),
                    n,
                )))
            }
        }
    }

    /// Like [`ResponseHead::parse`] but splits the head off `buf` without copying.
    pub fn parse_buf(buf: &mut BytesMut, limits: &Limits) -> Result<Option<ResponseHead>, Error> {
        match parse_response_parts(buf, limits)? {
            None => Ok(None),
            Some(parts) => {
                let n = parts.len;
                Ok(Some(parts.into_head(buf.split_to(n).freeze())))
            }
        }
    }

    /// The status code (100..=999; RFC 9112 §4 allows three digits).
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The reason phrase as received (may be empty).
    pub fn reason(&self) -> &[u8] {
        self.reason.get(&self.raw)
    }

    /// The HTTP version.
    pub fn version(&self) -> Version {
        self.version
    }

    /// The field lines.
    pub fn headers(&self) -> Headers<'_> {
        Headers {
            raw: &self.raw,
            spans: &self.headers,
        }
    }

    /// The raw bytes of the head as received.
    pub fn raw(&self) -> &Bytes {
        &self.raw
    }

    /// An interim 1xx response other than 101: the final response follows
    /// (RFC 9110 §15.2).
    pub fn is_interim(&self) -> bool {
        (100..200).contains(&self.status) && self.status != 101
    }

    /// Whether the *server* connection may be reused after this response, per
    /// its own version and Connection field. The body framing also matters: a
    /// [`Framing::CloseDelimited`] body always ends the connection; see
    /// [`framing::server_connection_reusable`].
    pub fn keep_alive(&self) -> KeepAlive {
        keep_alive_for(self.version, self.headers())
    }
}

fn keep_alive_for(version: Version, headers: Headers<'_>) -> KeepAlive {
    let close = headers.has_token("connection", "close");
    match version {
        Version::Http11 if !close => KeepAlive::KeepAlive,
        Version::Http10 if !close && headers.has_token("connection", "keep-alive") => {
            KeepAlive::KeepAlive
        }
        _ => KeepAlive::Close,
    }
}

// ---------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------

/// What httparse told us about a request, as offsets into the parsed buffer.
struct RequestParts {
    len: usize,
    method: Method,
    method_span: Span,
    target: Span,
    version: Version,
    headers: Vec<HeaderSpan>,
    framing: Framing,
}

impl RequestParts {
    /// `raw` must hold the same bytes as the buffer these parts came from.
    fn into_head(self, raw: Bytes) -> RequestHead {
        RequestHead {
            raw,
            method: self.method,
            method_span: self.method_span,
            target: self.target,
            version: self.version,
            headers: self.headers,
            framing: self.framing,
        }
    }
}

struct ResponseParts {
    len: usize,
    status: u16,
    reason: Span,
    version: Version,
    headers: Vec<HeaderSpan>,
}

impl ResponseParts {
    fn into_head(self, raw: Bytes) -> ResponseHead {
        ResponseHead {
            raw,
            status: self.status,
            reason: self.reason,
            version: self.version,
            headers: self.headers,
        }
    }
}

fn httparse_config() -> httparse::ParserConfig {
    // The defaults are the strict settings; spelled out so that a change of
    // defaults upstream cannot loosen us silently.
    let mut config = httparse::ParserConfig::default();
    config
        .allow_spaces_after_header_name_in_responses(false)
        .allow_obsolete_multiline_headers_in_responses(false)
        .allow_multiple_spaces_in_request_line_delimiters(false)
        .allow_multiple_spaces_in_response_status_delimiters(false)
        .allow_space_before_first_header_name(false)
        .ignore_invalid_headers_in_responses(false)
        .ignore_invalid_headers_in_requests(false);
    config
}

/// Bytes before the start line that RFC 9112 §2.2 lets a server skip (empty
/// lines left over from a previous message). httparse skips them too.
fn leading_empty_lines(buf: &[u8]) -> usize {
    buf.iter()
        .take_while(|&&b| b == b'\r' || b == b'\n')
        .count()
}

/// Enforce the start-line limit before handing the buffer to httparse.
fn check_start_line(buf: &[u8], limits: &Limits, side: Side) -> Result<(), Error> {
    let skip = leading_empty_lines(buf);
    let rest = &buf[skip..];
    let line_len = match memchr::memchr(b'\n', rest) {
        Some(lf) if lf > 0 && rest[lf - 1] == b'\r' => lf - 1,
        Some(lf) => lf,
        None => rest.len(),
    };
    if line_len > limits.max_request_line {
        return Err(Error::new(side, ParseError::RequestLineTooLong));
    }
    Ok(())
}

/// Checks on a complete head that httparse does not do: no bare LF.
/// (NUL and bare CR are already rejected by httparse; checked again in
/// [`classify`] only to report a precise error.)
fn check_line_endings(head: &[u8], side: Side) -> Result<(), Error> {
    for lf in memchr::memchr_iter(b'\n', head) {
        if lf == 0 || head[lf - 1] != b'\r' {
            return Err(Error::new(side, ParseError::BareLf));
        }
    }
    Ok(())
}

/// The length of a head httparse found complete, after the checks both
/// directions share: the head size limit (431 / 502) whether complete or
/// not, httparse's rejection classified, and CRLF line endings.
/// `Ok(None)`: more bytes are needed.
fn complete_head_len(
    status: Result<httparse::Status<usize>, httparse::Error>,
    buf: &[u8],
    limits: &Limits,
    side: Side,
) -> Result<Option<usize>, Error> {
    let len = match status {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            if buf.len() > limits.max_head_bytes {
                return Err(Error::new(side, ParseError::HeadersTooLarge));
            }
            return Ok(None);
        }
        Err(e) => return Err(Error::new(side, classify(buf, e, side))),
    };
    if len > limits.max_head_bytes {
        return Err(Error::new(side, ParseError::HeadersTooLarge));
    }
    check_line_endings(&buf[..len], side)?;
    Ok(Some(len))
}

fn parse_request_parts(buf: &[u8], limits: &Limits) -> Result<Option<RequestParts>, Error> {
    let side = Side::Client;
    check_start_line(buf, limits, side)?;
    let mut storage =
        [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS_CEILING];
    let mut req = httparse::Request::new(&mut []);
    let status = httparse_config().parse_request_with_uninit_headers(
        &mut req,
        buf,
        &mut storage[..limits.header_count()],
    );
    let Some(len) = complete_head_len(status, buf, limits, side)? else {
        return Ok(None);
    };

    let (Some(method), Some(target), Some(minor)) = (req.method, req.path, req.version) else {
        // httparse returns Complete only with every part present.
        return Err(Error::client(ParseError::InvalidMethod));
    };
    let method_kind = Method::from_bytes(method.as_bytes());
    if !is_valid_target_form(method_kind, target.as_bytes()) {
        return Err(Error::client(ParseError::InvalidTarget));
    }
    let version = match minor {
        0 => Version::Http10,
        1 => Version::Http11,
        _ => return Err(Error::client(ParseError::InvalidVersion)),
    };
    let headers = collect_headers(buf, req.headers, side)?;

    let view = Headers {
        raw: buf,
        spans: &headers,
    };
    check_host(view, version, limits)?;
    check_authority_matches_host(target.as_bytes(), view)?;
    let framing = framing::request_framing_of(method_kind, version, view, limits)?;
    Ok(Some(RequestParts {
        len,
        method: method_kind,
        method_span: Span::of(buf, method.as_bytes()),
        target: Span::of(buf, target.as_bytes()),
        version,
        headers,
        framing,
    }))
}

fn parse_response_parts(buf: &[u8], limits: &Limits) -> Result<Option<ResponseParts>, Error> {
    let side = Side::Server;
    check_start_line(buf, limits, side)?;
    let mut storage =
        [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS_CEILING];
    let mut resp = httparse::Response::new(&mut []);
    let status = httparse_config().parse_response_with_uninit_headers(
        &mut resp,
        buf,
        &mut storage[..limits.header_count()],
    );
    let Some(len) = complete_head_len(status, buf, limits, side)? else {
        return Ok(None);
    };

    let (Some(minor), Some(status)) = (resp.version, resp.code) else {
        return Err(Error::server(ParseError::InvalidStatus));
    };
    let version = match minor {
        0 => Version::Http10,
        1 => Version::Http11,
        _ => return Err(Error::server(ParseError::InvalidVersion)),
    };
    if status < 100 {
        return Err(Error::server(ParseError::InvalidStatus));
    }
    // httparse reports an empty reason for obs-text; keep the raw bytes
    // instead: "HTTP/1.1 200 " is 13 bytes, the reason follows.
    let head = &buf[..len];
    let skip = leading_empty_lines(head);
    let line_end = skip + memchr::memchr(b'\r', &head[skip..]).unwrap_or(0);
    let reason = if line_end >= skip + 13 {
        Span::new(skip + 13, line_end)
    } else {
        Span::new(line_end, line_end)
    };
    let headers = collect_headers(buf, resp.headers, side)?;
    Ok(Some(ResponseParts {
        len,
        status,
        reason,
        version,
        headers,
    }))
}

/// Turn httparse's field slices into spans and apply the per-field checks.
fn collect_headers(
    buf: &[u8],
    parsed: &[httparse::Header<'_>],
    side: Side,
) -> Result<Vec<HeaderSpan>, Error> {
    let mut spans = Vec::with_capacity(parsed.len());
    for h in parsed {
        let name = h.name.as_bytes();
        if name.is_empty() {
            return Err(Error::new(side, ParseError::InvalidHeaderName));
        }
        let known = known_name(name);
        if known == KnownName::Other && is_suspicious_framing_name(name) {
            return Err(Error::new(side, ParseError::SuspiciousFramingHeader));
        }
        spans.push(HeaderSpan {
            name: Span::of(buf, name),
            value: Span::of(buf, trim_ows(h.value)),
            known,
        });
    }
    Ok(spans)
}

/// RFC 9112 §3.2: "A server MUST respond with a 400 (Bad Request) status code
/// to any HTTP/1.1 request message that lacks a Host header field and to any
/// request message that contains more than one Host header field line or a
/// Host header field with an invalid field value."
fn check_host(headers: Headers<'_>, version: Version, limits: &Limits) -> Result<(), Error> {
    let mut hosts = headers.get_all("host");
    match (hosts.next(), hosts.next()) {
        (None, _) if limits.require_host && version == Version::Http11 => {
            Err(Error::client(ParseError::MissingHost))
        }
        (None, _) => Ok(()),
        (Some(_), Some(_)) => Err(Error::client(ParseError::InvalidHost)),
        (Some(host), None) if host.iter().all(|&b| is_host_byte(b)) => Ok(()),
        (Some(_), None) => Err(Error::client(ParseError::InvalidHost)),
    }
}

/// An absolute-form target's authority must equal the Host value (ASCII
/// case-insensitively, userinfo left out), as HAProxy checks: RFC 9112
/// §3.2.2 tells the proxy to ignore Host then, but the server behind it may
/// route on Host, so the two would disagree on which site is asked for.
/// Origin-form, asterisk-form and CONNECT targets have no authority to
/// compare (a CONNECT's authority-form is the tunnel's destination).
fn check_authority_matches_host(target: &[u8], headers: Headers<'_>) -> Result<(), Error> {
    let Some(authority) = absolute_form_authority(target) else {
        return Ok(());
    };
    match headers.get("host") {
        Some(host) if !host.eq_ignore_ascii_case(authority) => {
            Err(Error::client(ParseError::HostMismatch))
        }
        _ => Ok(()),
    }
}

/// The authority of `scheme://authority/...` without its userinfo, or
/// `None` for other target forms (and for an empty authority).
pub(crate) fn absolute_form_authority(target: &[u8]) -> Option<&[u8]> {
    if target.first() == Some(&b'/') {
        return None; // origin-form: the common case, decided at once
    }
    // `scheme "://"`: the first colon ends the scheme (which has none).
    let colon = memchr::memchr(b':', target)?;
    let rest = target[colon + 1..].strip_prefix(b"//")?;
    let end = rest
        .iter()
        .position(|&b| matches!(b, b'/' | b'?' | b'#'))
        .unwrap_or(rest.len());
    let authority = &rest[..end];
    let authority = match memchr::memrchr(b'@', authority) {
        Some(at) => &authority[at + 1..],
        None => authority,
    };
    (!authority.is_empty()).then_some(authority)
}

/// RFC 9112 §3.2: the request-target is in one of four forms, depending on
/// the method. httparse only checks its bytes.
///
/// * origin-form `/path?query`: any method but CONNECT;
/// * absolute-form `scheme:rest` (e.g. `http://host/path`): any method but
///   CONNECT (§3.2.2);
/// * authority-form `host:port`: CONNECT only, and CONNECT needs it (§3.2.3);
/// * asterisk-form `*`: OPTIONS only (§3.2.4).
fn is_valid_target_form(method: Method, target: &[u8]) -> bool {
    match (method, target) {
        (_, []) => false,
        (Method::Connect, t) => is_authority_form(t),
        (Method::Options, b"*") => true,
        (_, [b'/', ..]) => true,
        (_, t) => is_absolute_form(t),
    }
}

/// `absolute-URI = scheme ":" hier-part [ "?" query ]` with
/// `scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )` (RFC 3986 §3.1).
fn is_absolute_form(t: &[u8]) -> bool {
    let Some(colon) = t.iter().position(|&b| b == b':') else {
        return false;
    };
    let (scheme, rest) = (&t[..colon], &t[colon + 1..]);
    matches!(scheme.first(), Some(b) if b.is_ascii_alphabetic())
        && scheme
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
        && !rest.is_empty()
}

/// `authority-form = uri-host ":" port` (RFC 9112 §3.2.3).
fn is_authority_form(t: &[u8]) -> bool {
    let Some(colon) = t.iter().rposition(|&b| b == b':') else {
        return false;
    };
    let (host, port) = (&t[..colon], &t[colon + 1..]);
    !host.is_empty()
        && host.iter().all(|&b| is_host_byte(b) && b != b'@')
        && !port.is_empty()
        && port.len() <= 5
        && port.iter().all(u8::is_ascii_digit)
}

/// Bytes allowed in `Host = uri-host [ ":" port ]` (RFC 3986 §3.2.2:
/// reg-name, IP-literal, IPv4address).
fn is_host_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.'
                | b'_'
                | b'~'
                | b'%'
                | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b':'
                | b'['
                | b']'
        )
}

/// A name that is not exactly Content-Length or Transfer-Encoding (ignoring
/// case) but equals one of them once non-alphanumeric bytes are dropped:
/// `Transfer_Encoding`, `Content.Length`, `Transfer---Encoding`. Some servers
/// (CGI-style `_`/`-` folding, lenient normalisers) read these as the real
/// field, so a proxy that does not would disagree on the body length.
fn is_suspicious_framing_name(name: &[u8]) -> bool {
    const CL: &[u8] = b"content-length";
    const TE: &[u8] = b"transfer-encoding";
    if name.eq_ignore_ascii_case(CL) || name.eq_ignore_ascii_case(TE) {
        return false;
    }
    // Quick reject: too short to squash into either name.
    if name.len() < b"contentlength".len() {
        return false;
    }
    squashed_eq(name, b"contentlength") || squashed_eq(name, b"transferencoding")
}

/// Compare `name` with lowercase alphanumeric `target`, skipping every
/// non-alphanumeric byte of `name`. No allocation.
fn squashed_eq(name: &[u8], target: &[u8]) -> bool {
    let mut it = name.iter().filter(|b| b.is_ascii_alphanumeric());
    for &t in target {
        match it.next() {
            Some(b) if b.to_ascii_lowercase() == t => {}
            _ => return false,
        }
    }
    it.next().is_none()
}

/// Turn an httparse error into a precise [`ParseError`] by looking at the
/// bytes. Only runs on the error path.
fn classify(buf: &[u8], err: httparse::Error, side: Side) -> ParseError {
    // Only look at the head: up to the first empty line, if there is one.
    let scope = match memchr::memmem::find(buf, b"\r\n\r\n") {
        Some(end) => &buf[..end + 2],
        None => buf,
    };
    if memchr::memchr(0, scope).is_some() {
        return ParseError::NulByte;
    }
    for cr in memchr::memchr_iter(b'\r', scope) {
        if matches!(scope.get(cr + 1), Some(&b) if b != b'\n') {
            return ParseError::BareCr;
        }
    }
    let skip = leading_empty_lines(scope);
    let body = &scope[skip..];
    let first_lf = memchr::memchr(b'\n', body);
    if let Some(first_lf) = first_lf {
        for lf in memchr::memchr_iter(b'\n', body) {
            if lf == 0 || body[lf - 1] != b'\r' {
                return ParseError::BareLf;
            }
            let next = body.get(lf + 1).copied();
            if lf > first_lf && matches!(next, Some(b' ' | b'\t')) {
                return ParseError::ObsFold;
            }
        }
        // A field line whose name is followed by whitespace (before the
        // colon, or inside the name). Decided without needing the colon, so
        // the error is the same however the bytes were split across reads.
        for line in body[first_lf + 1..].split(|&b| b == b'\n') {
            let name_len = line.iter().take_while(|&&b| is_tchar(b)).count();
            if name_len > 0 && matches!(line.get(name_len), Some(b' ' | b'\t')) {
                return ParseError::WhitespaceBeforeColon;
            }
        }
    }
    match err {
        httparse::Error::HeaderName => ParseError::InvalidHeaderName,
        httparse::Error::HeaderValue => ParseError::InvalidHeaderValue,
        // Real bare CR/LF were found above; httparse also reports NewLine for
        // junk after the version ("HTTP/1.1 x").
        httparse::Error::NewLine => match side {
            Side::Client => ParseError::InvalidVersion,
            Side::Server => ParseError::InvalidStatus,
        },
        httparse::Error::Status => ParseError::InvalidStatus,
        httparse::Error::Version => ParseError::InvalidVersion,
        httparse::Error::TooManyHeaders => ParseError::TooManyHeaders,
        httparse::Error::Token => match side {
            Side::Server => ParseError::InvalidStatus,
            Side::Client => {
                let method_end = memchr::memchr(b' ', body).unwrap_or(body.len());
                let method = &body[..method_end];
                if !method.is_empty() && method.iter().all(|&b| is_tchar(b)) {
                    ParseError::InvalidTarget
                } else {
                    ParseError::InvalidMethod
                }
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits::default()
    }

    fn parse(input: &[u8]) -> Result<Option<(RequestHead, usize)>, Error> {
        RequestHead::parse(input, &limits())
    }

    fn parse_err(input: &[u8]) -> ParseError {
        match parse(input) {
            Err(e) => {
                assert_eq!(e.side, Side::Client);
                e.kind
            }
            Ok(r) => panic!(
                "expected an error for {:?}, got {:?}",
                String::from_utf8_lossy(input),
                r
            ),
        }
    }

    fn parse_ok(input: &[u8]) -> RequestHead {
        let (head, n) = parse(input).expect("parse ok").expect("complete");
        assert_eq!(n, input.len());
        head
    }

    #[test]
    fn simple_get_is_parsed() {
        let head = parse_ok(b"GET /a?b=c HTTP/1.1\r\nHost: example.com\r\nX-Y:  z \r\n\r\n");
        assert_eq!(head.method(), Method::Get);
        assert_eq!(head.method_bytes(), b"GET");
        assert_eq!(head.target(), b"/a?b=c");
        assert_eq!(head.version(), Version::Http11);
        assert_eq!(head.host(), Some(&b"example.com"[..]));
        assert_eq!(head.headers().get("x-y"), Some(&b"z"[..]));
        assert_eq!(head.headers().len(), 2);
        assert_eq!(head.framing(), Framing::Empty);
        assert_eq!(head.keep_alive(), KeepAlive::KeepAlive);
    }

    #[test]
    fn partial_head_needs_more() {
        assert!(parse(b"GET / HTTP/1.1\r\nHost: a\r\n").unwrap().is_none());
        assert!(parse(b"").unwrap().is_none());
    }

    #[test]
    fn parse_buf_splits_without_touching_rest() {
        let mut buf = BytesMut::from(&b"GET / HTTP/1.1\r\nHost: a\r\n\r\nNEXT"[..]);
        let head = RequestHead::parse_buf(&mut buf, &limits())
            .unwrap()
            .unwrap();
        assert_eq!(head.target(), b"/");
        assert_eq!(&buf[..], b"NEXT");
        let mut bad =
            BytesMut::from(&b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: x\r\n\r\n"[..]);
        let len = bad.len();
        assert!(RequestHead::parse_buf(&mut bad, &limits()).is_err());
        assert_eq!(bad.len(), len);
    }

    #[test]
    fn long_request_line_is_414() {
        let l = Limits {
            max_request_line: 32,
            ..Limits::default()
        };
        let mut req = b"GET /".to_vec();
        req.extend(std::iter::repeat_n(b'a', 40));
        // Incomplete line already too long: reject without waiting.
        let e = RequestHead::parse(&req, &l).unwrap_err();
        assert_eq!(e.kind, ParseError::RequestLineTooLong);
        assert_eq!(e.status(), 414);
        req.extend_from_slice(b" HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(
            RequestHead::parse(&req, &l).unwrap_err().kind,
            ParseError::RequestLineTooLong
        );
    }

    #[test]
    fn large_header_section_is_431() {
        let l = Limits {
            max_head_bytes: 64,
            ..Limits::default()
        };
        let mut req = b"GET / HTTP/1.1\r\nHost: a\r\nX: ".to_vec();
        req.extend(std::iter::repeat_n(b'a', 64));
        let e = RequestHead::parse(&req, &l).unwrap_err();
        assert_eq!((e.kind, e.status()), (ParseError::HeadersTooLarge, 431));
        req.extend_from_slice(b"\r\n\r\n");
        assert_eq!(RequestHead::parse(&req, &l).unwrap_err().status(), 431);
    }

    #[test]
    fn too_many_headers_is_431() {
        let l = Limits {
            max_headers: 3,
            ..Limits::default()
        };
        let req = b"GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";
        let e = RequestHead::parse(req, &l).unwrap_err();
        assert_eq!((e.kind, e.status()), (ParseError::TooManyHeaders, 431));
    }

    #[test]
    fn obs_fold_is_rejected() {
        assert_eq!(
            parse_err(b"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n"),
            ParseError::ObsFold
        );
        assert_eq!(
            parse_err(b"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n\tb\r\n\r\n"),
            ParseError::ObsFold
        );
    }

    #[test]
    fn whitespace_before_colon_is_rejected() {
        assert_eq!(
            parse_err(b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n"),
            ParseError::WhitespaceBeforeColon
        );
        assert_eq!(
            parse_err(b"GET / HTTP/1.1\r\nHost\t: a\r\n\r\n"),
            ParseError::WhitespaceBeforeColon
        );
    }

    #[test]
    fn bare_cr_lf_and_nul_are_rejected() {
        assert_eq!(
            parse_err(b"GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n"),
            ParseError::BareCr
        );
        assert_eq!(
            parse_err(b"GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n"),
            ParseError::BareLf
        );
        assert_eq!(
            parse_err(b"GET / HTTP/1.1\nHost: a\n\n"),
            ParseError::BareLf
        );
        assert_eq!(
            parse_err(b"GET / HTTP/1.1\r\nHost: a\0b\r\n\r\n"),
            ParseError::NulByte
        );
        assert_eq!(
            parse_err(b"GET /\0 HTTP/1.1\r\nHost: a\r\n\r\n"),
            ParseError::NulByte
        );
    }

    #[test]
    fn invalid_names_and_values_are_rejected() {
        assert_eq!(
            parse_err(b"GET / HTTP/1.1\r\nHost: a\r\nX\x01Y: b\r\n\r\n"),
            ParseError::InvalidHeaderName
        );
        assert_eq!(
            parse_err(b"GET / HTTP/1.1\r\nHost: a\r\n: b\r\n\r\n"),
            ParseError::InvalidHeaderName
        );
        assert_eq!(
            parse_err(b"GET / HTTP/1.1\r\nHost: a\r\nX: b\x7fc\r\n\r\n"),
            ParseError::InvalidHeaderValue
        );
    }

    #[test]
    fn invalid_start_line_is_rejected() {
        assert_eq!(
            parse_err(b"G(T / HTTP/1.1\r\nHost: a\r\n\r\n"),
            ParseError::InvalidMethod
        );
        assert_eq!(
            parse_err(b"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n"),
            ParseError::InvalidVersion
        );
        assert_eq!(
            parse_err(b"GET /a\x7f HTTP/1.1\r\nHost: a\r\n\r\n"),
            ParseError::InvalidTarget
        );
        assert_eq!(
            parse_err(b"GET  HTTP/1.1\r\nHost: a\r\n\r\n"),
            ParseError::InvalidTarget
        );
        assert_eq!(
            parse_err(b"GET / HTTP/1.2\r\nHost: a\r\n\r\n"),
            ParseError::InvalidVersion
        );
        assert_eq!(
            parse_err(b"GET / HTTP/2.0\r\nHost: a\r\n\r\n"),
            ParseError::InvalidVersion
        );
        assert_eq!(
            parse_err(b"GET / HTTP/1.1 \r\nHost: a\r\n\r\n"),
            ParseError::InvalidVersion
        );
    }

    #[test]
    fn request_target_forms() {
        parse_ok(b"GET http://example.com/a?b HTTP/1.1\r\nHost: example.com\r\n\r\n");
        parse_ok(b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n");
        parse_ok(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n");
        parse_ok(b"CONNECT [::1]:8443 HTTP/1.1\r\nHost: [::1]:8443\r\n\r\n");
        for bad in [
            &b"GET example.com HTTP/1.1\r\nHost: a\r\n\r\n"[..],
            b"GET * HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET 1http://a/ HTTP/1.1\r\nHost: a\r\n\r\n",
            b"CONNECT /x HTTP/1.1\r\nHost: a\r\n\r\n",
            b"CONNECT example.com HTTP/1.1\r\nHost: a\r\n\r\n",
            b"CONNECT user@example.com:443 HTTP/1.1\r\nHost: a\r\n\r\n",
            b"CONNECT example.com:4x3 HTTP/1.1\r\nHost: a\r\n\r\n",
        ] {
            assert_eq!(
                parse_err(bad),
                ParseError::InvalidTarget,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn absolute_form_authority_must_match_host() {
        let ok = parse_ok(b"GET http://Example.com/a HTTP/1.1\r\nHost: example.COM\r\n\r\n");
        assert_eq!(ok.target(), b"http://Example.com/a");
        parse_ok(b"GET http://a:8080?q HTTP/1.1\r\nHost: a:8080\r\n\r\n");
        // Userinfo is not part of the compared authority (HAProxy too).
        parse_ok(b"GET http://u:p@a/ HTTP/1.1\r\nHost: a\r\n\r\n");
        // HTTP/1.0 may omit Host; nothing to compare.
        parse_ok(b"GET http://a/ HTTP/1.0\r\n\r\n");
        // No authority (no "//"): nothing to compare.
        parse_ok(b"GET urn:x HTTP/1.1\r\nHost: a\r\n\r\n");
        parse_ok(b"GET urn:x?y=http://b HTTP/1.1\r\nHost: a\r\n\r\n");
        for bad in [
            &b"GET http://a/ HTTP/1.1\r\nHost: b\r\n\r\n"[..],
            b"GET http://a:80/ HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET https://a/x HTTP/1.1\r\nHost: a.evil\r\n\r\n",
            b"GET http://a/ HTTP/1.1\r\nHost:\r\n\r\n",
        ] {
            assert_eq!(
                parse_err(bad),
                ParseError::HostMismatch,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(Error::client(ParseError::HostMismatch).status(), 400);
    }

    #[test]
    fn host_rules() {
        assert_eq!(
            parse_err(b"GET / HTTP/1.1\r\n\r\n"),
            ParseError::MissingHost
        );
        assert_eq!(
            parse_err(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
            ParseError::InvalidHost
        );
        assert_eq!(
            parse_err(b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n"),
            ParseError::InvalidHost
        );
        // HTTP/1.0 may omit Host; an empty Host is allowed.
        parse_ok(b"GET / HTTP/1.0\r\n\r\n");
        parse_ok(b"GET / HTTP/1.1\r\nHost:\r\n\r\n");
        parse_ok(b"GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n");
        let lax = Limits {
            require_host: false,
            ..Limits::default()
        };
        assert!(RequestHead::parse(b"GET / HTTP/1.1\r\n\r\n", &lax)
            .unwrap()
            .is_some());
    }

    #[test]
    fn suspicious_framing_names_are_rejected() {
        for name in [
            "Transfer_Encoding",
            "Content_Length",
            "transfer---encoding",
            "Content.Length",
        ] {
            let req = format!("POST / HTTP/1.1\r\nHost: a\r\n{name}: 5\r\n\r\n");
            assert_eq!(
                parse_err(req.as_bytes()),
                ParseError::SuspiciousFramingHeader,
                "{name}"
            );
        }
        // Look-alikes that are not squashed framing names pass.
        parse_ok(
            b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length-X: 5\r\nX-Content-Length: 1\r\n\r\n",
        );
        assert!(!is_suspicious_framing_name(b"CONTENT-LENGTH"));
    }

    #[test]
    fn known_names_are_classified_case_insensitively() {
        assert_eq!(known_name(b"CONTENT-length"), KnownName::ContentLength);
        assert_eq!(
            known_name(b"Transfer-Encoding"),
            KnownName::TransferEncoding
        );
        assert_eq!(known_name(b"X-Forwarded-Proto"), KnownName::XForwardedProto);
        assert_eq!(known_name(b"Keep-Alive"), KnownName::KeepAlive);
        assert_eq!(known_name(b"TE"), KnownName::Te);
        assert_eq!(known_name(b"Content-Lengths"), KnownName::Other);
        assert_eq!(known_name(b"Hast"), KnownName::Other);
        let h = parse_ok(b"GET / HTTP/1.1\r\nhOsT: a\r\nX-Custom: 1\r\nx-custom: 2\r\n\r\n");
        assert_eq!(h.headers().get("HOST"), Some(&b"a"[..]));
        assert_eq!(
            h.headers().get_all("X-CUSTOM").collect::<Vec<_>>(),
            [&b"1"[..], b"2"]
        );
        assert!(!h.headers().contains("content-length"));
    }

    #[test]
    fn leading_empty_lines_are_skipped() {
        let head = parse_ok(b"\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(head.target(), b"/");
    }

    #[test]
    fn keep_alive_semantics() {
        let h = parse_ok(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: foo, Close\r\n\r\n");
        assert_eq!(h.keep_alive(), KeepAlive::Close);
        let h = parse_ok(b"GET / HTTP/1.0\r\n\r\n");
        assert_eq!(h.keep_alive(), KeepAlive::Close);
        let h = parse_ok(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        assert_eq!(h.keep_alive(), KeepAlive::KeepAlive);
        let h = parse_ok(b"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n");
        assert_eq!(h.keep_alive(), KeepAlive::Close);
    }

    #[test]
    fn expect_continue_detection() {
        let h = parse_ok(
            b"PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n",
        );
        assert!(h.expects_continue());
        let h = parse_ok(b"PUT / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n");
        assert!(!h.expects_continue());
        let h = parse_ok(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
        assert!(!h.expects_continue());
    }

    #[test]
    fn upgrade_detection() {
        let h = parse_ok(
            b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n",
        );
        assert_eq!(h.upgrade(), Some(&b"websocket"[..]));
        let h = parse_ok(b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n");
        assert_eq!(h.upgrade(), None);
    }

    #[test]
    fn response_head_is_parsed() {
        let buf = b"HTTP/1.1 404 Not \x80Found\r\nContent-Length: 0\r\n\r\nrest";
        let (head, n) = ResponseHead::parse(buf, &limits()).unwrap().unwrap();
        assert_eq!(n, buf.len() - 4);
        assert_eq!(head.status(), 404);
        assert_eq!(head.reason(), b"Not \x80Found");
        assert_eq!(head.version(), Version::Http11);
        assert!(!head.is_interim());
        let (head, _) = ResponseHead::parse(b"HTTP/1.1 200\r\n\r\n", &limits())
            .unwrap()
            .unwrap();
        assert_eq!(head.reason(), b"");
    }

    #[test]
    fn response_errors_are_server_side() {
        let e =
            ResponseHead::parse(b"HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n", &limits()).unwrap_err();
        assert_eq!(e.side, Side::Server);
        assert_eq!(e.kind, ParseError::ObsFold);
        assert_eq!(e.status(), 502);
        let e = ResponseHead::parse(b"HTTP/1.1 20x OK\r\n\r\n", &limits()).unwrap_err();
        assert_eq!(e.kind, ParseError::InvalidStatus);
        let e = ResponseHead::parse(b"HTTP/1.1 200 OK\r\nX : a\r\n\r\n", &limits()).unwrap_err();
        assert_eq!(e.kind, ParseError::WhitespaceBeforeColon);
    }
}
