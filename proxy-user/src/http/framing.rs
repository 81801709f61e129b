//! Message body length: the RFC 9112 §6.3 decision, for requests and responses.
//!
//! Section numbers below are RFC 9112 unless stated otherwise. The rules of
//! §6.3, in order:
//!
//! 1. Responses to HEAD, and 1xx, 204 and 304 responses, end at the head.
//! 2. A 2xx response to CONNECT turns the connection into a tunnel.
//! 3. Transfer-Encoding together with Content-Length "ought to be handled as
//!    an error": we always reject (400 for requests, 502 for responses).
//! 4. Transfer-Encoding with `chunked` as the final coding: chunked body.
//!    Otherwise: for a response, the body runs until the server closes; for a
//!    request, 400 and close.
//! 5. An invalid Content-Length (including several different values) is an
//!    unrecoverable error: 400 for requests, 502 for responses.
//! 6. A valid Content-Length gives the body length.
//! 7. A request with neither has no body.
//! 8. A response with neither runs until the server closes.
//!
//! On top of that (all documented in `docs/http.md`):
//!
//! * Transfer-Encoding in an HTTP/1.0 message is faulty framing (§6.1):
//!   rejected rather than "processed then closed".
//! * Several Content-Length values are rejected even when identical
//!   (RFC 9110 §8.6 allows rejecting or merging; merging leaves the
//!   duplicate visible to the next hop, which may disagree).
//! * `chunked` twice is rejected (§6.1: a sender MUST NOT).
//! * A request body on TRACE (RFC 9110 §9.3.8: a client MUST NOT send one)
//!   or CONNECT (§9.3.6: no defined semantics; HAProxy ignores the framing
//!   fields of a CONNECT, which we cannot do without re-framing) is always
//!   rejected; on GET or HEAD only when
//!   [`Limits::reject_body_without_semantics`] is set.
//! * A 101 response is a tunnel only if the request asked for an upgrade.

use super::error::{Error, ParseError};
use super::head::{Headers, KeepAlive, Method, RequestHead, ResponseHead, Version};
use super::limits::Limits;
use super::syntax::{is_qdtext, is_quoted_pair_byte, is_token, trim_ows};

/// How the body of a message is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Framing {
    /// No body: the message ends with its head.
    Empty,
    /// Exactly this many bytes follow the head (never 0: that is `Empty`).
    Length(u64),
    /// A chunked body (§7.1).
    Chunked,
    /// Responses only: the body is everything until the server closes the
    /// connection (§6.3 rule 8). The server connection cannot be reused.
    CloseDelimited,
    /// After this response head the connection carries another protocol
    /// (CONNECT 2xx, or 101 Switching Protocols): copy bytes both ways
    /// until either side closes.
    Tunnel,
}

impl Framing {
    /// True when body bytes (or tunnel bytes) follow the head.
    pub fn has_body(self) -> bool {
        !matches!(self, Framing::Empty)
    }
}

/// The framing of a request (rules 3–7 of §6.3 plus our extra checks).
///
/// [`RequestHead::parse`] already calls this and stores the result in
/// [`RequestHead::framing`]; it is public for callers that build policies on
/// top of it.
pub fn request_framing(head: &RequestHead, limits: &Limits) -> Result<Framing, Error> {
    request_framing_of(head.method(), head.version(), head.headers(), limits)
}

pub(crate) fn request_framing_of(
    method: Method,
    version: Version,
    headers: Headers<'_>,
    limits: &Limits,
) -> Result<Framing, Error> {
    let err = Error::client;
    let has_te = headers.contains("transfer-encoding");
    let framing = if has_te {
        // §6.1: "A server or client that receives an HTTP/1.0 message containing
        // a Transfer-Encoding header field MUST treat the message as if the
        // framing were faulty".
        if version == Version::Http10 {
            return Err(err(ParseError::TransferEncodingInHttp10));
        }
        // §6.3 rule 3 / §6.1: TE + CL may be a smuggling attempt.
        if headers.contains("content-length") {
            return Err(err(ParseError::ContentLengthWithTransferEncoding));
        }
        let codings = transfer_codings(headers).map_err(err)?;
        // §6.3 rule 4: "If a Transfer-Encoding header field is present in a
        // request and the chunked transfer coding is not the final encoding,
        // the message body length cannot be determined reliably; the server
        // MUST respond with the 400 (Bad Request) status code and then close
        // the connection."
        if !codings.chunked_final {
            return Err(err(ParseError::ChunkedNotFinal));
        }
        // §6.1: "A server that receives a request message with a transfer
        // coding it does not understand SHOULD respond with 501".
        if codings.unknown {
            return Err(err(ParseError::UnsupportedTransferCoding));
        }
        Framing::Chunked
    } else {
        // §6.3 rules 5-7.
        match content_length(headers).map_err(err)? {
            Some(0) | None => Framing::Empty,
            Some(n) => Framing::Length(n),
        }
    };

    if framing != Framing::Empty {
        let refused = match method {
            Method::Trace | Method::Connect => true,
            Method::Get | Method::Head => limits.reject_body_without_semantics,
            _ => false,
        };
        if refused {
            return Err(err(ParseError::BodyNotAllowed));
        }
    }
    if let (Framing::Length(n), Some(max)) = (framing, limits.max_body) {
        if n > max {
            return Err(err(ParseError::PayloadTooLarge));
        }
    }
    Ok(framing)
}

/// The framing of `response`, received for `request` (all of §6.3).
/// Errors are [`Side::Server`](super::Side::Server): answer 502 and close the server connection.
///
/// For an interim response ([`ResponseHead::is_interim`]) this returns
/// [`Framing::Empty`]: forward it and parse the next response head.
pub fn response_framing(request: &RequestHead, response: &ResponseHead) -> Result<Framing, Error> {
    response_framing_for(request.method(), request.upgrade().is_some(), response)
}

/// [`response_framing`] for callers that only kept the request's method and
/// whether it asked for an upgrade ([`RequestHead::upgrade`]).
pub fn response_framing_for(
    request_method: Method,
    upgrade_requested: bool,
    response: &ResponseHead,
) -> Result<Framing, Error> {
    let err = Error::server;
    let status = response.status();
    let headers = response.headers();

    // RFC 9110 §15.2.2: a server MUST NOT switch protocols unless asked.
    if status == 101 {
        return if upgrade_requested {
            Ok(Framing::Tunnel)
        } else {
            Err(err(ParseError::InvalidStatus))
        };
    }
    // §6.3 rule 1: HEAD responses and 1xx/204/304 end at the head,
    // whatever their fields say.
    if request_method == Method::Head
        || (100..200).contains(&status)
        || status == 204
        || status == 304
    {
        return Ok(Framing::Empty);
    }
    // §6.3 rule 2: a 2xx to CONNECT switches to tunnel mode.
    if request_method == Method::Connect && (200..300).contains(&status) {
        return Ok(Framing::Tunnel);
    }
    if headers.contains("transfer-encoding") {
        // §6.1: Transfer-Encoding in HTTP/1.0 is faulty framing.
        if response.version() == Version::Http10 {
            return Err(err(ParseError::TransferEncodingInHttp10));
        }
        // §6.3 rule 3: we treat TE + CL as an error rather than let TE win.
        if headers.contains("content-length") {
            return Err(err(ParseError::ContentLengthWithTransferEncoding));
        }
        let codings = transfer_codings(headers).map_err(err)?;
        // §6.3 rule 4: chunked final -> chunked; otherwise read until close.
        return Ok(if codings.chunked_final {
            Framing::Chunked
        } else {
            Framing::CloseDelimited
        });
    }
    // §6.3 rules 5, 6 and 8.
    Ok(match content_length(headers).map_err(err)? {
        Some(0) => Framing::Empty,
        Some(n) => Framing::Length(n),
        None => Framing::CloseDelimited,
    })
}

/// Whether the server connection can carry another request once this
/// response (with this framing) has been read completely.
pub fn server_connection_reusable(response: &ResponseHead, framing: Framing) -> KeepAlive {
    match framing {
        Framing::CloseDelimited | Framing::Tunnel => KeepAlive::Close,
        Framing::Empty | Framing::Length(_) | Framing::Chunked => response.keep_alive(),
    }
}

/// Content-Length (RFC 9110 §8.6): `None` if absent.
///
/// Exactly one field line with one `1*DIGIT` value is accepted. A list
/// (`5, 5`), a repeated field (identical or not), a sign, spaces inside, or a
/// value over u64 are rejected.
pub(crate) fn content_length(headers: Headers<'_>) -> Result<Option<u64>, ParseError> {
    let mut values = headers.get_all("content-length");
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() || value.contains(&b',') {
        return Err(ParseError::MultipleContentLength);
    }
    parse_decimal(value).map(Some)
}

/// `1*DIGIT` into u64, rejecting anything else.
fn parse_decimal(value: &[u8]) -> Result<u64, ParseError> {
    if value.is_empty() {
        return Err(ParseError::InvalidContentLength);
    }
    let mut n: u64 = 0;
    for &b in value {
        if !b.is_ascii_digit() {
            return Err(ParseError::InvalidContentLength);
        }
        n = n
            .checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(b - b'0')))
            .ok_or(ParseError::InvalidContentLength)?;
    }
    Ok(n)
}

/// What the Transfer-Encoding fields of a message say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Codings {
    /// `chunked` is the last coding.
    pub chunked_final: bool,
    /// Some coding other than the ones in [`KNOWN_CODINGS`].
    pub unknown: bool,
}

/// Transfer codings we let through (IANA HTTP Transfer Coding Registry plus
/// `identity`, which older clients still send). Names are case-insensitive.
const KNOWN_CODINGS: &[&[u8]] = &[
    b"chunked",
    b"gzip",
    b"x-gzip",
    b"deflate",
    b"compress",
    b"x-compress",
    b"identity",
];

/// Parse every Transfer-Encoding field line as one list (RFC 9110 §5.3:
/// field lines with the same name combine into a comma-separated list) of
/// `transfer-coding = token *( OWS ";" OWS transfer-parameter )` (§7).
///
/// Empty list elements are skipped (RFC 9110 §5.6.1). Parameters are checked
/// for syntax; a bare parameter name (`chunked;foo`) is tolerated.
pub(crate) fn transfer_codings(headers: Headers<'_>) -> Result<Codings, ParseError> {
    let mut seen_any = false;
    let mut seen_chunked = false;
    let mut codings = Codings {
        chunked_final: false,
        unknown: false,
    };
    for element in transfer_coding_elements(headers) {
        let mut parts = element.split(|&b| b == b';');
        let name = trim_ows(parts.next().unwrap_or_default());
        if !is_token(name) {
            return Err(ParseError::InvalidTransferEncoding);
        }
        for param in parts {
            if !is_transfer_parameter(trim_ows(param)) {
                return Err(ParseError::InvalidTransferEncoding);
            }
        }
        seen_any = true;
        if name.eq_ignore_ascii_case(b"chunked") {
            // §6.1: "A sender MUST NOT apply the chunked transfer coding more
            // than once to a message body".
            if seen_chunked {
                return Err(ParseError::ChunkedTwice);
            }
            seen_chunked = true;
            codings.chunked_final = true;
        } else {
            codings.chunked_final = false;
            if !KNOWN_CODINGS.iter().any(|k| name.eq_ignore_ascii_case(k)) {
                codings.unknown = true;
            }
        }
    }
    if !seen_any {
        return Err(ParseError::InvalidTransferEncoding);
    }
    Ok(codings)
}

/// The non-empty, OWS-trimmed elements of all Transfer-Encoding field lines,
/// parameters included (`gzip;q=1`).
pub(crate) fn transfer_coding_elements<'a>(
    headers: Headers<'a>,
) -> impl Iterator<Item = &'a [u8]> + 'a {
    headers
        .get_all("transfer-encoding")
        .flat_map(|v| v.split(|&b| b == b','))
        .map(trim_ows)
        .filter(|e| !e.is_empty())
}

/// The coding name of an element from [`transfer_coding_elements`].
pub(crate) fn coding_name(element: &[u8]) -> &[u8] {
    trim_ows(element.split(|&b| b == b';').next().unwrap_or_default())
}

/// `transfer-parameter = token BWS "=" BWS ( token / quoted-string )`, or an
/// empty parameter (`gzip;`), or a bare token (`chunked;foo`).
fn is_transfer_parameter(param: &[u8]) -> bool {
    if param.is_empty() {
        return true;
    }
    let Some(eq) = param.iter().position(|&b| b == b'=') else {
        return is_token(param);
    };
    let name = trim_ows(&param[..eq]);
    let value = trim_ows(&param[eq + 1..]);
    is_token(name) && (is_token(value) || is_quoted_string(value))
}

/// `quoted-string = DQUOTE *( qdtext / quoted-pair ) DQUOTE` (RFC 9110 §5.6.4).
pub(crate) fn is_quoted_string(s: &[u8]) -> bool {
    let [b'"', inner @ .., b'"'] = s else {
        return false;
    };
    let mut i = 0;
    while i < inner.len() {
        match inner[i] {
            b'\\' => {
                if !inner.get(i + 1).is_some_and(|&b| is_quoted_pair_byte(b)) {
                    return false;
                }
                i += 2;
            }
            b if is_qdtext(b) => i += 1,
            _ => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::super::error::Side;
    use super::*;

    fn req(input: &str) -> Result<Framing, ParseError> {
        req_with(input, &Limits::default())
    }

    fn req_with(input: &str, limits: &Limits) -> Result<Framing, ParseError> {
        RequestHead::parse(input.as_bytes(), limits)
            .map(|r| r.expect("complete head").0.framing())
            .map_err(|e| {
                assert_eq!(e.side, Side::Client);
                e.kind
            })
    }

    fn resp(method: &str, response: &str) -> Result<Framing, Error> {
        let request = format!("{method} / HTTP/1.1\r\nHost: a\r\n\r\n");
        let (request, _) = RequestHead::parse(request.as_bytes(), &Limits::default())
            .unwrap()
            .unwrap();
        let (response, _) = ResponseHead::parse(response.as_bytes(), &Limits::default())
            .unwrap()
            .unwrap();
        response_framing(&request, &response)
    }

    #[test]
    fn content_length_with_transfer_encoding_is_rejected() {
        let r = req(
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
        );
        assert_eq!(r, Err(ParseError::ContentLengthWithTransferEncoding));
        let r = resp(
            "GET",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
        );
        let e = r.unwrap_err();
        assert_eq!((e.side, e.status()), (Side::Server, 502));
    }

    #[test]
    fn content_length_rules() {
        assert_eq!(
            req("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 42\r\n\r\n"),
            Ok(Framing::Length(42))
        );
        assert_eq!(
            req("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n"),
            Ok(Framing::Empty)
        );
        assert_eq!(
            req("POST / HTTP/1.1\r\nHost: a\r\n\r\n"),
            Ok(Framing::Empty)
        );
        assert_eq!(
            req("POST / HTTP/1.1\r\nHost: a\r\nContent-Length:  7 \r\n\r\n"),
            Ok(Framing::Length(7))
        );
    }

    #[test]
    fn differing_content_lengths_are_rejected() {
        let r = req("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n");
        assert_eq!(r, Err(ParseError::MultipleContentLength));
    }

    #[test]
    fn identical_duplicate_content_lengths_are_rejected() {
        let r = req("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n");
        assert_eq!(r, Err(ParseError::MultipleContentLength));
        let r = req("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\n\r\n");
        assert_eq!(r, Err(ParseError::MultipleContentLength));
    }

    #[test]
    fn invalid_content_length_is_rejected() {
        for v in [
            "-1",
            "+1",
            "1 2",
            "0x10",
            "1.0",
            "",
            "18446744073709551616",
            "abc",
        ] {
            let r = req(&format!(
                "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: {v}\r\n\r\n"
            ));
            assert_eq!(r, Err(ParseError::InvalidContentLength), "{v:?}");
        }
        assert_eq!(
            req("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 18446744073709551615\r\n\r\n"),
            Ok(Framing::Length(u64::MAX))
        );
    }

    #[test]
    fn transfer_encoding_final_coding_must_be_chunked() {
        for v in ["gzip", "chunked, gzip", "xchunked", "chunk"] {
            let r = req(&format!(
                "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: {v}\r\n\r\n"
            ));
            assert_eq!(r, Err(ParseError::ChunkedNotFinal), "{v:?}");
        }
        for v in [
            "chunked",
            "CHUNKED",
            "gzip, chunked",
            "gzip ,, chunked",
            "chunked;foo",
            "deflate;q=\"a b\", chunked",
        ] {
            let r = req(&format!(
                "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: {v}\r\n\r\n"
            ));
            assert_eq!(r, Ok(Framing::Chunked), "{v:?}");
        }
        let r = req("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert_eq!(r, Ok(Framing::Chunked));
    }

    #[test]
    fn chunked_twice_is_rejected() {
        let r = req("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n");
        assert_eq!(r, Err(ParseError::ChunkedTwice));
        let r = req("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert_eq!(r, Err(ParseError::ChunkedTwice));
    }

    #[test]
    fn invalid_transfer_encoding_syntax_is_rejected() {
        for v in [
            "chunked\u{a0}",
            "\"chunked\"",
            ",",
            "gzip;=x, chunked",
            "chunked;a=\"b",
        ] {
            let r = req(&format!(
                "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: {v}\r\n\r\n"
            ));
            assert_eq!(r, Err(ParseError::InvalidTransferEncoding), "{v:?}");
        }
    }

    #[test]
    fn unknown_transfer_coding_is_501() {
        let (e, _) = match RequestHead::parse(
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: cow, chunked\r\n\r\n",
            &Limits::default(),
        ) {
            Err(e) => (e, ()),
            Ok(_) => panic!("accepted"),
        };
        assert_eq!(
            (e.kind, e.status()),
            (ParseError::UnsupportedTransferCoding, 501)
        );
    }

    #[test]
    fn transfer_encoding_in_http10_is_rejected() {
        let r = req("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert_eq!(r, Err(ParseError::TransferEncodingInHttp10));
        let e = resp(
            "GET",
            "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        )
        .unwrap_err();
        assert_eq!(
            (e.kind, e.status()),
            (ParseError::TransferEncodingInHttp10, 502)
        );
    }

    #[test]
    fn body_on_get_is_forwarded_unless_strict() {
        // Default (HAProxy's): a well-framed body on GET, HEAD or DELETE
        // keeps its framing.
        assert_eq!(
            req("GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n"),
            Ok(Framing::Length(5))
        );
        assert_eq!(
            req("HEAD / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Ok(Framing::Chunked)
        );
        assert_eq!(
            req("DELETE / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n"),
            Ok(Framing::Length(2))
        );
        // Framing is as strict as for any other method.
        assert_eq!(
            req("GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Err(ParseError::ContentLengthWithTransferEncoding)
        );
        let strict = Limits {
            reject_body_without_semantics: true,
            ..Limits::default()
        };
        assert_eq!(
            req_with(
                "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n",
                &strict
            ),
            Err(ParseError::BodyNotAllowed)
        );
        assert_eq!(
            req_with(
                "HEAD / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
                &strict
            ),
            Err(ParseError::BodyNotAllowed)
        );
        assert_eq!(
            req_with(
                "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
                &strict
            ),
            Ok(Framing::Empty)
        );
    }

    #[test]
    fn body_on_trace_or_connect_is_always_rejected() {
        assert_eq!(
            req("TRACE / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n"),
            Err(ParseError::BodyNotAllowed)
        );
        assert_eq!(
            req("CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Err(ParseError::BodyNotAllowed)
        );
        assert_eq!(
            req("TRACE / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n"),
            Ok(Framing::Empty)
        );
    }

    #[test]
    fn content_length_over_max_body_is_413() {
        let l = Limits {
            max_body: Some(10),
            ..Limits::default()
        };
        assert_eq!(
            req_with(
                "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n",
                &l
            ),
            Err(ParseError::PayloadTooLarge)
        );
        assert_eq!(
            req_with(
                "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n",
                &l
            ),
            Ok(Framing::Length(10))
        );
    }

    #[test]
    fn responses_without_body() {
        assert_eq!(
            resp("HEAD", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n"),
            Ok(Framing::Empty)
        );
        assert_eq!(
            resp("GET", "HTTP/1.1 204 No Content\r\n\r\n"),
            Ok(Framing::Empty)
        );
        assert_eq!(
            resp(
                "GET",
                "HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n"
            ),
            Ok(Framing::Empty)
        );
        assert_eq!(
            resp("GET", "HTTP/1.1 100 Continue\r\n\r\n"),
            Ok(Framing::Empty)
        );
        assert_eq!(
            resp("GET", "HTTP/1.1 103 Early Hints\r\n\r\n"),
            Ok(Framing::Empty)
        );
    }

    #[test]
    fn response_lengths() {
        assert_eq!(
            resp("GET", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n"),
            Ok(Framing::Length(10))
        );
        assert_eq!(
            resp("GET", "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
            Ok(Framing::Empty)
        );
        assert_eq!(
            resp(
                "GET",
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            ),
            Ok(Framing::Chunked)
        );
        // §6.3 rule 4: chunked not final in a response -> read until close.
        assert_eq!(
            resp("GET", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n"),
            Ok(Framing::CloseDelimited)
        );
        // §6.3 rule 8.
        assert_eq!(
            resp("GET", "HTTP/1.1 200 OK\r\n\r\n"),
            Ok(Framing::CloseDelimited)
        );
        let e = resp(
            "GET",
            "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        )
        .unwrap_err();
        assert_eq!(
            (e.kind, e.status()),
            (ParseError::MultipleContentLength, 502)
        );
        let e = resp("GET", "HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n").unwrap_err();
        assert_eq!(
            (e.kind, e.status()),
            (ParseError::InvalidContentLength, 502)
        );
    }

    #[test]
    fn connect_and_upgrade_become_tunnels() {
        let request = b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n";
        let (request, _) = RequestHead::parse(request, &Limits::default())
            .unwrap()
            .unwrap();
        assert_eq!(request.framing(), Framing::Empty);
        let (ok, _) = ResponseHead::parse(b"HTTP/1.1 200 OK\r\n\r\n", &Limits::default())
            .unwrap()
            .unwrap();
        assert_eq!(response_framing(&request, &ok), Ok(Framing::Tunnel));
        let (no, _) = ResponseHead::parse(
            b"HTTP/1.1 407 No\r\nContent-Length: 2\r\n\r\n",
            &Limits::default(),
        )
        .unwrap()
        .unwrap();
        assert_eq!(response_framing(&request, &no), Ok(Framing::Length(2)));

        let (switch, _) = ResponseHead::parse(
            b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
            &Limits::default(),
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            response_framing_for(Method::Get, true, &switch),
            Ok(Framing::Tunnel)
        );
        let e = response_framing_for(Method::Get, false, &switch).unwrap_err();
        assert_eq!(e.status(), 502);
        assert_eq!(
            server_connection_reusable(&switch, Framing::Tunnel),
            KeepAlive::Close
        );
    }

    #[test]
    fn server_reuse_depends_on_framing_and_connection() {
        let (r, _) = ResponseHead::parse(
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n",
            &Limits::default(),
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            server_connection_reusable(&r, Framing::Length(1)),
            KeepAlive::KeepAlive
        );
        assert_eq!(
            server_connection_reusable(&r, Framing::CloseDelimited),
            KeepAlive::Close
        );
        let (r, _) = ResponseHead::parse(
            b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n",
            &Limits::default(),
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            server_connection_reusable(&r, Framing::Empty),
            KeepAlive::Close
        );
    }

    #[test]
    fn quoted_strings() {
        assert!(is_quoted_string(b"\"\""));
        assert!(is_quoted_string(b"\"a \\\" b\""));
        assert!(!is_quoted_string(b"\"a"));
        assert!(!is_quoted_string(b"\"a\\\""));
        assert!(!is_quoted_string(b"\"a\"b\""));
    }
}
