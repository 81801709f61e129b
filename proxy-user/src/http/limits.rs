//! Named, documented limits and strictness switches of the codec.
//!
//! Every limit maps to a status code when a *client* exceeds it (see
//! [`ParseError::status`](super::ParseError::status)); a server exceeding it
//! yields 502.

/// Hard upper bound on [`Limits::max_headers`]: the head parser keeps its
/// field table on the stack, sized by this constant.
pub const MAX_HEADERS_CEILING: usize = 256;

/// Limits applied while parsing heads and decoding bodies.
///
/// `Limits::default()` is what the proxy uses unless configured otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Longest request line (method, target, version, without the CRLF), in
    /// bytes. Exceeding it gives 414 URI Too Long (RFC 9112 §3: "A server that
    /// receives a request-target longer than any URI it wishes to parse MUST
    /// respond with a 414"). Also bounds a response's status line.
    /// Default 8 KiB.
    pub max_request_line: usize,
    /// Largest head (start line, all field lines and the final empty line), in
    /// bytes. Exceeding it gives 431 Request Header Fields Too Large (RFC 6585 §5).
    /// Default 64 KiB.
    pub max_head_bytes: usize,
    /// Most field lines in a head. Exceeding it gives 431. Clamped to
    /// [`MAX_HEADERS_CEILING`]. Default 101 (HAProxy's `tune.http.maxhdr`).
    pub max_headers: usize,
    /// Most hex digits in a chunk size, leading zeros included. 16 digits fit
    /// any u64; more gives 400 `ChunkSizeOverflow`. Default 16.
    pub max_chunk_size_digits: usize,
    /// Most bytes of chunk extensions (everything after the size up to CRLF)
    /// summed over one message. Exceeding it gives 400. Bounds the work a peer
    /// can make us do with tiny chunks carrying long extensions. Default 16 KiB.
    pub max_chunk_ext_bytes: usize,
    /// Largest trailer section (all trailer field lines and the final CRLF),
    /// in bytes. Exceeding it gives 431. Default 16 KiB.
    pub max_trailer_bytes: usize,
    /// Largest request body, whether announced by Content-Length or counted in
    /// chunked data. Exceeding it gives 413 Content Too Large. `None` means
    /// unlimited. Default `None`.
    pub max_body: Option<u64>,
    /// Reject (400) an HTTP/1.1 request without a Host field (RFC 9112 §3.2
    /// MUST). Multiple Host fields are always rejected. Default true.
    pub require_host: bool,
    /// Also reject (400) a GET or HEAD request with a body (Content-Length
    /// other than 0, or any Transfer-Encoding). RFC 9110 §9.3.1/§9.3.2 give
    /// such content no defined semantics, and a server that ignores it would
    /// parse it as the next request. Off by default, like HAProxy, which
    /// forwards a well-framed GET body (search APIs rely on it); the body
    /// length is still decided by the strict framing rules, and the next hop
    /// gets exactly one Content-Length or Transfer-Encoding. TRACE and
    /// CONNECT with a body are always rejected (see
    /// [`ParseError::BodyNotAllowed`](super::ParseError::BodyNotAllowed)).
    /// Default false.
    pub reject_body_without_semantics: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_request_line: 8 * 1024,
            max_head_bytes: 64 * 1024,
            max_headers: 101,
            max_chunk_size_digits: 16,
            max_chunk_ext_bytes: 16 * 1024,
            max_trailer_bytes: 16 * 1024,
            max_body: None,
            require_host: true,
            reject_body_without_semantics: false,
        }
    }
}

impl Limits {
    /// [`Limits::max_headers`] clamped to `1..=MAX_HEADERS_CEILING`.
    pub fn header_count(&self) -> usize {
        self.max_headers.clamp(1, MAX_HEADERS_CEILING)
    }
}
