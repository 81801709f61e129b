//! [`MaybeTlsStream`]: one stream type for plain and TLS listeners, so the
//! HTTP engine is written once and asks `is_tls()` for X-Forwarded-Proto.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use rustls::{HandshakeKind, ProtocolVersion};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::acceptor::ServerTlsStream;

/// A client connection, plain or TLS-terminated.
#[derive(Debug)]
pub enum MaybeTlsStream<IO> {
    /// A plain listener's connection.
    Plain(IO),
    /// A TLS listener's connection, after the handshake.
    Tls(Box<ServerTlsStream<IO>>),
}

impl<IO> MaybeTlsStream<IO> {
    /// True for TLS: the request came over https.
    pub fn is_tls(&self) -> bool {
        matches!(self, MaybeTlsStream::Tls(_))
    }

    /// The underlying transport (e.g. for `peer_addr`).
    pub fn get_ref(&self) -> &IO {
        match self {
            MaybeTlsStream::Plain(io) => io,
            MaybeTlsStream::Tls(tls) => tls.get_ref().0,
        }
    }

    /// Handshake details, for TLS connections.
    pub fn tls_info(&self) -> Option<TlsInfo> {
        match self {
            MaybeTlsStream::Plain(_) => None,
            MaybeTlsStream::Tls(tls) => Some(TlsInfo::of(tls)),
        }
    }
}

impl<IO> From<ServerTlsStream<IO>> for MaybeTlsStream<IO> {
    fn from(tls: ServerTlsStream<IO>) -> Self {
        MaybeTlsStream::Tls(Box::new(tls))
    }
}

/// What was negotiated on a terminated connection (for logs and headers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsInfo {
    /// SNI sent by the client, lowercase.
    pub sni: Option<String>,
    /// ALPN protocol agreed on.
    pub alpn: Option<Vec<u8>>,
    /// `TLSv1.2` or `TLSv1.3`.
    pub version: Option<&'static str>,
    /// IANA cipher suite name, e.g. `TLS13_AES_128_GCM_SHA256`.
    pub cipher: Option<String>,
    /// True when the session was resumed (ticket or session id).
    pub resumed: bool,
}

impl TlsInfo {
    /// Reads the negotiated parameters of a terminated connection.
    pub fn of<IO>(tls: &ServerTlsStream<IO>) -> Self {
        let conn = tls.get_ref().1;
        TlsInfo {
            sni: conn.server_name().map(str::to_owned),
            alpn: conn.alpn_protocol().map(<[u8]>::to_vec),
            version: conn.protocol_version().map(|v| match v {
                ProtocolVersion::TLSv1_2 => "TLSv1.2",
                ProtocolVersion::TLSv1_3 => "TLSv1.3",
                _ => "other",
            }),
            cipher: conn
                .negotiated_cipher_suite()
                .and_then(|s| s.suite().as_str().map(str::to_owned)),
            resumed: conn.handshake_kind() == Some(HandshakeKind::Resumed),
        }
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncRead for MaybeTlsStream<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTlsStream::Plain(io) => Pin::new(io).poll_read(cx, buf),
            MaybeTlsStream::Tls(tls) => Pin::new(tls.as_mut()).poll_read(cx, buf),
        }
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncWrite for MaybeTlsStream<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTlsStream::Plain(io) => Pin::new(io).poll_write(cx, buf),
            MaybeTlsStream::Tls(tls) => Pin::new(tls.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTlsStream::Plain(io) => Pin::new(io).poll_write_vectored(cx, bufs),
            MaybeTlsStream::Tls(tls) => Pin::new(tls.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            MaybeTlsStream::Plain(io) => io.is_write_vectored(),
            MaybeTlsStream::Tls(tls) => tls.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTlsStream::Plain(io) => Pin::new(io).poll_flush(cx),
            MaybeTlsStream::Tls(tls) => Pin::new(tls.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTlsStream::Plain(io) => Pin::new(io).poll_shutdown(cx),
            MaybeTlsStream::Tls(tls) => Pin::new(tls.as_mut()).poll_shutdown(cx),
        }
    }
}
