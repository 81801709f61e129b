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

/// The transport under a terminated TLS connection, for rustls to write its
/// records to. rustls hands what it has queued to `write_vectored`; a
/// response is usually one record, i.e. one slice, and one slice goes out
/// with `send` rather than `writev`, which costs a little more in the kernel
/// (the VFS layer and iovec import). Several slices still go out in one
/// `writev`. Reads, flush and shutdown pass through.
#[derive(Debug)]
pub struct RecordSocket<IO>(pub IO);

impl<IO> RecordSocket<IO> {
    /// The transport.
    pub fn get_ref(&self) -> &IO {
        &self.0
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for RecordSocket<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for RecordSocket<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let io = Pin::new(&mut self.get_mut().0);
        let mut filled = bufs.iter().filter(|b| !b.is_empty());
        match (filled.next(), filled.next()) {
            (Some(one), None) => io.poll_write(cx, one),
            (None, _) => Poll::Ready(Ok(0)),
            (Some(_), Some(_)) => io.poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    /// Records which write calls it got.
    #[derive(Default)]
    struct Calls {
        plain: Vec<Vec<u8>>,
        vectored: Vec<Vec<Vec<u8>>>,
    }

    impl AsyncWrite for Calls {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.get_mut().plain.push(buf.to_vec());
            Poll::Ready(Ok(buf.len()))
        }

        fn poll_write_vectored(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            bufs: &[io::IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            let this = self.get_mut();
            this.vectored
                .push(bufs.iter().map(|b| b.to_vec()).collect());
            Poll::Ready(Ok(bufs.iter().map(|b| b.len()).sum()))
        }

        fn is_write_vectored(&self) -> bool {
            true
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn one_slice_is_a_plain_write_several_stay_vectored() {
        let mut s = RecordSocket(Calls::default());
        let one = [io::IoSlice::new(b""), io::IoSlice::new(b"record")];
        assert_eq!(s.write_vectored(&one).await.unwrap(), 6);
        let two = [io::IoSlice::new(b"ab"), io::IoSlice::new(b"cd")];
        assert_eq!(s.write_vectored(&two).await.unwrap(), 4);
        assert_eq!(s.write_vectored(&[io::IoSlice::new(b"")]).await.unwrap(), 0);
        assert!(s.is_write_vectored());
        assert_eq!(s.0.plain, vec![b"record".to_vec()]);
        assert_eq!(s.0.vectored, vec![vec![b"ab".to_vec(), b"cd".to_vec()]]);
    }
}
