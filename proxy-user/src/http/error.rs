//! Errors of the HTTP/1.1 codec.
//!
//! Every rejection is a [`ParseError`] variant (a closed set) wrapped in an
//! [`Error`] that records which [`Side`] sent the offending bytes:
//!
//! * [`Side::Client`]: the request (head or body) is malformed. The proxy answers
//!   with [`Error::status`] (400, 413, 414, 431 or 501) and closes the client
//!   connection. The request is never forwarded.
//! * [`Side::Server`]: the origin's response is malformed. The proxy discards it,
//!   closes the server connection and answers 502 to the client.
//!
//! In both cases the connection is closed: after a framing error the byte
//! stream cannot be resynchronised (RFC 9112 §6.3, rules 4 and 5).

use std::fmt;

/// Which peer produced the bytes that failed to parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// The downstream client (we were parsing a request).
    Client,
    /// The upstream origin server (we were parsing a response).
    Server,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::Client => "client",
            Side::Server => "server",
        })
    }
}

/// Why a message was rejected. The set is closed: the proxy can map every
/// variant to a status code with [`ParseError::status`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum ParseError {
    // ----- start line -----
    /// The request line is longer than [`Limits::max_request_line`](super::Limits::max_request_line).
    #[error("request line too long")]
    RequestLineTooLong,
    /// The method is not a token (RFC 9110 §9.1).
    #[error("invalid method")]
    InvalidMethod,
    /// The request-target contains a forbidden byte or is empty (RFC 9112 §3.2).
    #[error("invalid request target")]
    InvalidTarget,
    /// The HTTP-version is not `HTTP/1.0` or `HTTP/1.1` (RFC 9112 §2.3).
    #[error("invalid or unsupported http version")]
    InvalidVersion,
    /// The status line of a response is malformed (RFC 9112 §4).
    #[error("invalid status line")]
    InvalidStatus,

    // ----- field lines -----
    /// The head (start line plus fields) exceeds
    /// [`Limits::max_head_bytes`](super::Limits::max_head_bytes).
    #[error("header section too large")]
    HeadersTooLarge,
    /// More field lines than [`Limits::max_headers`](super::Limits::max_headers).
    #[error("too many header fields")]
    TooManyHeaders,
    /// A field name is empty or contains a byte that is not a `tchar`
    /// (RFC 9110 §5.1).
    #[error("invalid header name")]
    InvalidHeaderName,
    /// A field value contains a forbidden byte (RFC 9110 §5.5).
    #[error("invalid header value")]
    InvalidHeaderValue,
    /// Whitespace between a field name and the colon (RFC 9112 §5.1: MUST
    /// reject with 400), or inside a field name.
    #[error("whitespace in header name or before colon")]
    WhitespaceBeforeColon,
    /// A field line starts with SP/HTAB: obsolete line folding (RFC 9112 §5.2).
    #[error("obsolete line folding")]
    ObsFold,
    /// A CR not followed by LF (RFC 9112 §2.2).
    #[error("bare cr in message head")]
    BareCr,
    /// A LF not preceded by CR. RFC 9112 §2.2 allows recipients to accept it;
    /// we do not, since parsers disagree on it.
    #[error("bare lf in message head")]
    BareLf,
    /// A NUL byte in the head (RFC 9110 §5.5).
    #[error("nul byte in message head")]
    NulByte,
    /// An HTTP/1.1 request without Host (RFC 9112 §3.2).
    #[error("missing host header")]
    MissingHost,
    /// More than one Host field line, or an invalid Host value (RFC 9112 §3.2).
    #[error("multiple or invalid host headers")]
    InvalidHost,
    /// An absolute-form request-target whose authority is not the Host
    /// value (RFC 9112 §3.2.2: the recipient MUST ignore Host then; a
    /// server behind us may not, so the two could route differently).
    /// HAProxy rejects it too.
    #[error("host header does not match the request-target authority")]
    HostMismatch,
    /// A field name that is not `Content-Length`/`Transfer-Encoding` but that
    /// some implementations would normalise into one, e.g. `Transfer_Encoding`
    /// or `Content--Length`. A classic request-smuggling vector.
    #[error("suspicious framing header name")]
    SuspiciousFramingHeader,

    // ----- message framing (RFC 9112 §6) -----
    /// Both Content-Length and Transfer-Encoding (RFC 9112 §6.3 rule 3, §6.1).
    #[error("both content-length and transfer-encoding present")]
    ContentLengthWithTransferEncoding,
    /// Content-Length is not a single `1*DIGIT`, or overflows u64 (RFC 9110 §8.6).
    #[error("invalid content-length")]
    InvalidContentLength,
    /// More than one Content-Length value, identical or not. RFC 9110 §8.6 lets
    /// a recipient either reject or merge identical values; we always reject.
    #[error("multiple content-length values")]
    MultipleContentLength,
    /// Transfer-Encoding in an HTTP/1.0 message (RFC 9112 §6.1: faulty framing).
    #[error("transfer-encoding in http/1.0 message")]
    TransferEncodingInHttp10,
    /// A request whose final transfer coding is not `chunked` (RFC 9112 §6.3 rule 4).
    #[error("final transfer coding is not chunked")]
    ChunkedNotFinal,
    /// `chunked` applied more than once (RFC 9112 §6.1: MUST NOT).
    #[error("chunked transfer coding applied more than once")]
    ChunkedTwice,
    /// Transfer-Encoding value that is not a list of transfer codings.
    #[error("invalid transfer-encoding")]
    InvalidTransferEncoding,
    /// A well-formed transfer coding that we do not know (RFC 9112 §6.1: 501).
    #[error("unsupported transfer coding")]
    UnsupportedTransferCoding,
    /// A body on a method that must not carry one here: TRACE and CONNECT
    /// always, GET and HEAD with
    /// [`Limits::reject_body_without_semantics`](super::Limits::reject_body_without_semantics).
    #[error("request body not allowed for this method")]
    BodyNotAllowed,
    /// The body exceeds [`Limits::max_body`](super::Limits::max_body).
    #[error("payload too large")]
    PayloadTooLarge,

    // ----- chunked body (RFC 9112 §7.1) -----
    /// A chunk size that is empty or has a non-hex digit.
    #[error("invalid chunk size")]
    InvalidChunkSize,
    /// A chunk size with more than
    /// [`Limits::max_chunk_size_digits`](super::Limits::max_chunk_size_digits)
    /// digits or that overflows u64.
    #[error("chunk size overflow")]
    ChunkSizeOverflow,
    /// A chunk extension that does not match RFC 9112 §7.1.1.
    #[error("invalid chunk extension")]
    InvalidChunkExtension,
    /// Chunk extensions of a message add up to more than
    /// [`Limits::max_chunk_ext_bytes`](super::Limits::max_chunk_ext_bytes).
    #[error("chunk extensions too long")]
    ChunkExtensionTooLong,
    /// Chunk data not followed by CRLF, or a chunk-size line not ended by CRLF.
    #[error("invalid chunk delimiter")]
    InvalidChunkDelimiter,
    /// A malformed trailer field line (RFC 9112 §7.1.2).
    #[error("invalid trailer field")]
    InvalidTrailer,
    /// The trailer section exceeds
    /// [`Limits::max_trailer_bytes`](super::Limits::max_trailer_bytes).
    #[error("trailer section too large")]
    TrailersTooLarge,
    /// The connection closed before the body was complete (RFC 9112 §8).
    #[error("connection closed before message completed")]
    IncompleteBody,
}

impl ParseError {
    /// Status code to answer the client with when the *client* sent this.
    ///
    /// When the server sent it, the answer is always 502: use [`Error::status`].
    pub const fn status(self) -> u16 {
        use ParseError::*;
        match self {
            RequestLineTooLong => 414,
            HeadersTooLarge | TooManyHeaders | TrailersTooLarge => 431,
            PayloadTooLarge => 413,
            UnsupportedTransferCoding => 501,
            InvalidMethod
            | InvalidTarget
            | InvalidVersion
            | InvalidStatus
            | InvalidHeaderName
            | InvalidHeaderValue
            | WhitespaceBeforeColon
            | ObsFold
            | BareCr
            | BareLf
            | NulByte
            | MissingHost
            | InvalidHost
            | HostMismatch
            | SuspiciousFramingHeader
            | ContentLengthWithTransferEncoding
            | InvalidContentLength
            | MultipleContentLength
            | TransferEncodingInHttp10
            | ChunkedNotFinal
            | ChunkedTwice
            | InvalidTransferEncoding
            | BodyNotAllowed
            | InvalidChunkSize
            | ChunkSizeOverflow
            | InvalidChunkExtension
            | ChunkExtensionTooLong
            | InvalidChunkDelimiter
            | InvalidTrailer
            | IncompleteBody => 400,
        }
    }

    /// The reason phrase of [`ParseError::status`].
    pub const fn reason_phrase(self) -> &'static str {
        reason_phrase(self.status())
    }
}

/// A rejected message: what was wrong and who sent it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[error("{side} sent a malformed message: {kind}")]
pub struct Error {
    /// Who sent the bytes.
    pub side: Side,
    /// What was wrong.
    pub kind: ParseError,
}

impl Error {
    /// A client-side error (request).
    pub const fn client(kind: ParseError) -> Self {
        Error {
            side: Side::Client,
            kind,
        }
    }

    /// A server-side error (response).
    pub const fn server(kind: ParseError) -> Self {
        Error {
            side: Side::Server,
            kind,
        }
    }

    /// An error of `kind` sent by `side`.
    pub const fn new(side: Side, kind: ParseError) -> Self {
        Error { side, kind }
    }

    /// Status code the proxy sends to the client: the variant's own code for a
    /// client error, 502 for anything the server sent.
    pub const fn status(&self) -> u16 {
        match self.side {
            Side::Client => self.kind.status(),
            Side::Server => 502,
        }
    }

    /// Reason phrase for [`Error::status`].
    pub const fn reason_phrase(&self) -> &'static str {
        reason_phrase(self.status())
    }

    /// Always true: after any parse error the connection that sent the bytes
    /// must be closed, since its framing can no longer be trusted.
    pub const fn must_close(&self) -> bool {
        true
    }
}

/// Reason phrases for the status codes the codec produces.
const fn reason_phrase(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        413 => "Content Too Large",
        414 => "URI Too Long",
        431 => "Request Header Fields Too Large",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        _ => "Error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_errors_map_to_502() {
        let e = Error::server(ParseError::ContentLengthWithTransferEncoding);
        assert_eq!(e.status(), 502);
        assert_eq!(e.reason_phrase(), "Bad Gateway");
        assert_eq!(Error::server(ParseError::HeadersTooLarge).status(), 502);
    }

    #[test]
    fn client_errors_use_variant_status() {
        assert_eq!(Error::client(ParseError::RequestLineTooLong).status(), 414);
        assert_eq!(Error::client(ParseError::TooManyHeaders).status(), 431);
        assert_eq!(Error::client(ParseError::PayloadTooLarge).status(), 413);
        assert_eq!(
            Error::client(ParseError::UnsupportedTransferCoding).status(),
            501
        );
        assert_eq!(Error::client(ParseError::ObsFold).status(), 400);
        assert_eq!(
            Error::client(ParseError::ObsFold).reason_phrase(),
            "Bad Request"
        );
    }

    #[test]
    fn messages_are_lowercase() {
        let e = Error::client(ParseError::BareCr);
        assert_eq!(
            e.to_string(),
            "client sent a malformed message: bare cr in message head"
        );
    }
}
