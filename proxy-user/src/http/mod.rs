//! Strict, I/O-free HTTP/1.1 codec for the L7 proxy.
//!
//! The proxy owns the sockets and buffers; this module only looks at bytes
//! and says what they are. Its job is to make sure the proxy and the origin
//! server can never disagree on where a message ends (request smuggling,
//! response splitting): anything ambiguous is rejected, never forwarded.
//!
//! | module | what |
//! |---|---|
//! | [`head`] | request/response head parsing ([`RequestHead`], [`ResponseHead`]) |
//! | [`framing`] | the RFC 9112 §6.3 body-length decision ([`Framing`]) |
//! | [`decode`] | body decoder state machine ([`BodyDecoder`]) |
//! | [`encode`] | writing heads with the proxy's changes, chunked re-encoding |
//! | [`limits`] | named limits and strictness switches ([`Limits`]) |
//! | [`error`] | the closed error set and its status codes ([`Error`], [`ParseError`]) |
//!
//! The rules, limits and status codes are described in `docs/http.md`.
//!
//! # Driving it from a proxy
//!
//! ```
//! use bytes::BytesMut;
//! use proxy_user::http::{
//!     encode_request_head, BodyDecoder, HeadRewrite, Limits, RequestHead, Side,
//! };
//!
//! let limits = Limits::default();
//! // Bytes as they came from the client socket.
//! let mut read_buf = BytesMut::from(
//!     &b"POST /up HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"[..],
//! );
//!
//! // 1. Head: Ok(None) means "read more and call again".
//! let head = match RequestHead::parse_buf(&mut read_buf, &limits) {
//!     Ok(Some(head)) => head,
//!     Ok(None) => unreachable!("the example has a whole head"),
//!     // Reject: write encode_error_response(&e, ..) (e.status() is 400,
//!     // 413, 414, 431 or 501) and close.
//!     Err(e) => panic!("{e}"),
//! };
//!
//! // 2. Forward the head with the proxy's changes.
//! let mut to_server = BytesMut::new();
//! let rewrite = HeadRewrite {
//!     forwarded_for: Some("192.0.2.1".parse().unwrap()),
//!     forwarded_proto: Some("http"),
//!     body: head.framing().into(),
//!     ..HeadRewrite::default()
//! };
//! encode_request_head(&head, &rewrite, &mut to_server);
//!
//! // 3. Body: forward the validated bytes as they are until `done`.
//! let mut body = BodyDecoder::new(head.framing(), Side::Client, &limits);
//! loop {
//!     let step = body.decode(&read_buf).expect("valid chunked body");
//!     to_server.extend_from_slice(&read_buf.split_to(step.consumed));
//!     if step.done {
//!         break; // read_buf now starts with the next request, if any
//!     }
//!     if step.consumed == 0 {
//!         unreachable!("here the proxy would read more from the socket");
//!     }
//! }
//! assert!(to_server.ends_with(b"5\r\nhello\r\n0\r\n\r\n"));
//! ```
//!
//! For the response: [`ResponseHead::parse_buf`], then
//! [`response_framing`] (which needs the request: HEAD, CONNECT, upgrades),
//! then a [`BodyDecoder`] with [`Side::Server`]. Every server-side error has
//! [`Error::status`] 502.

pub mod decode;
pub mod encode;
pub mod error;
pub mod framing;
pub mod head;
pub mod limits;
mod syntax;

pub use decode::{BodyDecoder, DecodeStep};
pub use encode::{
    encode_chunk, encode_error_response, encode_last_chunk, encode_request_head,
    encode_response_head, HeadRewrite, OutgoingBody, XffMode, CONTINUE_RESPONSE,
};
pub use error::{Error, ParseError, Side};
pub use framing::{
    request_framing, response_framing, response_framing_for, server_connection_reusable, Framing,
};
pub(crate) use head::absolute_form_authority;
pub use head::{Header, Headers, KeepAlive, Method, RequestHead, ResponseHead, Version};
pub use limits::{Limits, MAX_HEADERS_CEILING};
