//! Moving bodies and tunnels between the two sockets without buffering
//! whole messages.
//!
//! [`stream_body`] feeds what arrives through a [`BodyDecoder`] and writes
//! each validated piece on as soon as it is decoded: as received
//! ([`BodyMode::Pass`], which keeps chunk extensions and trailers), re-framed
//! as chunks ([`BodyMode::Rechunk`], a close-delimited response to a
//! keep-alive HTTP/1.1 client) or as plain data ([`BodyMode::Dechunk`], a
//! chunked response to an HTTP/1.0 client). Memory per direction is one read
//! buffer, whatever the body size.
//!
//! [`tunnel`] copies bytes both ways after a `101 Switching Protocols`
//! until both sides have closed, or neither sent anything for the idle
//! timeout (`timeout tunnel`); once one side has closed, the other may
//! idle for its `-fin` timeout (`timeout client-fin` / `server-fin`).

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::Poll;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::timer::WaitTimer;
use crate::http::{encode_chunk, encode_last_chunk, BodyDecoder};

/// Read size while streaming a body.
pub const BODY_READ_SIZE: usize = 64 * 1024;
/// Pieces up to this size are copied into the output buffer (one write for
/// head and small bodies); larger ones are written straight from the read buffer.
const COALESCE_LIMIT: usize = 16 * 1024;

/// How a body is written out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyMode {
    /// The received bytes, unchanged (framing, extensions, trailers).
    Pass,
    /// Decoded data as chunks, then the last chunk.
    Rechunk,
    /// Decoded data only (the receiver reads until close).
    Dechunk,
}

/// What went wrong while streaming; the caller knows which side is which.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// The body's framing is broken.
    #[error("{0}")]
    Decode(crate::http::Error),
    /// The sender closed before the body ended.
    #[error("sender closed mid-body")]
    SourceClosed,
    /// Reading from the sender failed.
    #[error("read: {0}")]
    SourceIo(io::Error),
    /// The sender was idle longer than its timeout.
    #[error("sender timeout")]
    SourceTimeout,
    /// Writing to the receiver failed.
    #[error("write: {0}")]
    SinkIo(io::Error),
    /// The receiver did not accept data within its timeout.
    #[error("receiver timeout")]
    SinkTimeout,
}

/// Timeouts of one streaming direction, and the connection's timer that
/// each wait resets (see [`WaitTimer`]).
#[derive(Debug)]
pub struct StreamTimeouts<'t> {
    /// Inactivity of the sender.
    pub read: Option<Duration>,
    /// Inactivity of the receiver.
    pub write: Option<Duration>,
    /// The connection's timer, reset by each wait.
    pub timer: &'t mut WaitTimer,
}

/// Bytes moved by [`stream_body`].
#[derive(Debug, Default, Clone, Copy)]
pub struct Moved {
    /// Read from the sender (body only; bytes already buffered count too).
    pub read: u64,
    /// Written to the receiver (including anything pending in `out`).
    pub written: u64,
}

/// Writes `out` to `dst` and clears it.
pub async fn flush<W: AsyncWrite + Unpin>(
    dst: &mut W,
    out: &mut BytesMut,
    limit: Option<Duration>,
    timer: &mut WaitTimer,
) -> Result<(), StreamError> {
    // The flush matters for TLS writers (a record may still sit in the TLS
    // layer); for a TCP socket it is free.
    if out.is_empty() {
        return match timer.within(limit, dst.flush()).await {
            Ok(r) => r.map_err(StreamError::SinkIo),
            Err(_) => Err(StreamError::SinkTimeout),
        };
    }
    let write = async {
        dst.write_all(out).await?;
        dst.flush().await
    };
    match timer.within(limit, write).await {
        Ok(Ok(())) => {
            out.clear();
            Ok(())
        }
        Ok(Err(e)) => Err(StreamError::SinkIo(e)),
        Err(_) => Err(StreamError::SinkTimeout),
    }
}

/// Streams one body from `src` (starting with what `src_buf` already
/// holds) to `dst`. `out` may hold a head not yet written: it goes out with
/// the first piece of body. On success `src_buf` starts after the body and
/// everything has been written.
///
/// `sent` becomes true once bytes (the head in `out` included) were handed
/// to `dst`; after an error, while it is still false, nothing of the
/// response has reached the receiver, so the caller can still answer
/// with an error status instead (HAProxy's 502 for a response that is
/// broken before anything was forwarded).
#[allow(
    clippy::too_many_arguments,
    reason = "both sides of one body and their buffers"
)]
pub async fn stream_body<R, W>(
    decoder: &mut BodyDecoder,
    src: &mut R,
    src_buf: &mut BytesMut,
    dst: &mut W,
    out: &mut BytesMut,
    mode: BodyMode,
    timeouts: StreamTimeouts<'_>,
    sent: &mut bool,
) -> Result<Moved, StreamError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut moved = Moved {
        written: out.len() as u64,
        ..Moved::default()
    };
    loop {
        let step = decoder.decode(src_buf).map_err(StreamError::Decode)?;
        if step.consumed > 0 {
            moved.read += step.consumed as u64;
            let before = out.len();
            match mode {
                BodyMode::Pass if out.len() + step.consumed > COALESCE_LIMIT => {
                    *sent = true;
                    flush(dst, out, timeouts.write, timeouts.timer).await?;
                    let write = dst.write_all(&src_buf[..step.consumed]);
                    match timeouts.timer.within(timeouts.write, write).await {
                        Ok(Ok(())) => moved.written += step.consumed as u64,
                        Ok(Err(e)) => return Err(StreamError::SinkIo(e)),
                        Err(_) => return Err(StreamError::SinkTimeout),
                    }
                }
                BodyMode::Pass => out.extend_from_slice(&src_buf[..step.consumed]),
                BodyMode::Rechunk => encode_chunk(&src_buf[step.data.clone()], out),
                BodyMode::Dechunk => out.extend_from_slice(&src_buf[step.data.clone()]),
            }
            if out.len() > before {
                moved.written += (out.len() - before) as u64;
            }
            src_buf.advance(step.consumed);
        }
        if step.done {
            if mode == BodyMode::Rechunk {
                encode_last_chunk(out);
                moved.written += 5;
            }
            *sent |= !out.is_empty();
            flush(dst, out, timeouts.write, timeouts.timer).await?;
            return Ok(moved);
        }
        if step.consumed > 0 && !src_buf.is_empty() {
            continue;
        }
        // Need more input: send what we have first (the peer may wait for it).
        if out.len() > COALESCE_LIMIT / 2 || src_buf.is_empty() {
            *sent |= !out.is_empty();
            flush(dst, out, timeouts.write, timeouts.timer).await?;
        }
        src_buf.reserve(BODY_READ_SIZE);
        let n = match timeouts
            .timer
            .within(timeouts.read, src.read_buf(src_buf))
            .await
        {
            Ok(Ok(n)) => n,
            Ok(Err(e)) => return Err(StreamError::SourceIo(e)),
            Err(_) => return Err(StreamError::SourceTimeout),
        };
        if n == 0 {
            // The sender closed: the end of a close-delimited body, or a truncation.
            decoder.finish().map_err(|_| StreamError::SourceClosed)?;
            if mode == BodyMode::Rechunk {
                encode_last_chunk(out);
                moved.written += 5;
            }
            *sent |= !out.is_empty();
            flush(dst, out, timeouts.write, timeouts.timer).await?;
            return Ok(moved);
        }
    }
}

/// How [`upload_body`] stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upload {
    /// The whole body was sent.
    Complete,
    /// The receiver sent something (bytes now in its buffer) before the
    /// body was complete, typically an early response (413, 401, ...).
    Answered,
    /// The receiver closed its side before the body was complete.
    ReceiverClosed,
}

/// What a wait in [`upload_body`] ended with.
enum Watched {
    /// Bytes (0: end of stream) read from the sender.
    Source(usize),
    /// Bytes (0: end of stream) read from the receiver.
    Receiver(usize),
}

/// A request body from `src` to `dst` (as received, [`BodyMode::Pass`]),
/// reading `dst` at the same time: whatever `dst` sends before the body is
/// complete (an early response) goes to `dst_buf` and stops the upload, so
/// the caller can pass the response on instead of pushing a body nobody
/// reads. The upload can be resumed by calling again with the same
/// decoder and buffers (e.g. after passing on an interim response): `out`
/// keeps what was not written yet. `moved` accumulates.
#[allow(
    clippy::too_many_arguments,
    reason = "both sides of one exchange and their buffers"
)]
pub async fn upload_body<R, S>(
    decoder: &mut BodyDecoder,
    src: &mut R,
    src_buf: &mut BytesMut,
    dst: &mut S,
    dst_buf: &mut BytesMut,
    out: &mut BytesMut,
    timeouts: StreamTimeouts<'_>,
    moved: &mut Moved,
) -> Result<Upload, StreamError>
where
    R: AsyncRead + Unpin,
    S: AsyncRead + AsyncWrite + Unpin,
{
    loop {
        let step = decoder.decode(src_buf).map_err(StreamError::Decode)?;
        if step.consumed > 0 {
            moved.read += step.consumed as u64;
            moved.written += step.consumed as u64;
            out.extend_from_slice(&src_buf[..step.consumed]);
            src_buf.advance(step.consumed);
        }
        if step.done || (step.consumed > 0 && src_buf.is_empty()) || out.len() > COALESCE_LIMIT {
            match write_watching(dst, out, dst_buf, timeouts.write, timeouts.timer).await? {
                Some(0) => return Ok(Upload::ReceiverClosed),
                // Every byte of the body was handed to `dst` (a queued
                // io_uring send may still be flushing) and the answer came
                // meanwhile: a normal response to a complete body, not an
                // early one. Calling it `Answered` would end the client's
                // keep-alive for nothing.
                Some(_) if step.done && out.is_empty() => return Ok(Upload::Complete),
                Some(_) => return Ok(Upload::Answered),
                None if step.done => return Ok(Upload::Complete),
                None => {}
            }
        }
        if step.consumed > 0 && !src_buf.is_empty() {
            continue;
        }
        if src_buf.capacity() - src_buf.len() < 1024 {
            src_buf.reserve(BODY_READ_SIZE);
        }
        // `within` wants an io::Result; the inner one says which side failed.
        let wait = std::future::poll_fn(|cx| {
            if let Poll::Ready(r) = poll_read_into(dst, cx, dst_buf) {
                return Poll::Ready(Ok(r.map(Watched::Receiver).map_err(StreamError::SinkIo)));
            }
            poll_read_into(src, cx, src_buf)
                .map(|r| Ok(r.map(Watched::Source).map_err(StreamError::SourceIo)))
        });
        let waited: io::Result<Result<Watched, StreamError>> =
            match timeouts.timer.within(timeouts.read, wait).await {
                Ok(r) => r,
                Err(_) => return Err(StreamError::SourceTimeout),
            };
        match waited.map_err(StreamError::SourceIo) {
            Err(e) | Ok(Err(e)) => return Err(e),
            Ok(Ok(Watched::Receiver(0))) => return Ok(Upload::ReceiverClosed),
            Ok(Ok(Watched::Receiver(_))) => return Ok(Upload::Answered),
            Ok(Ok(Watched::Source(0))) => {
                // Request bodies are never delimited by the close.
                decoder.finish().map_err(|_| StreamError::SourceClosed)?;
                return match write_watching(dst, out, dst_buf, timeouts.write, timeouts.timer)
                    .await?
                {
                    Some(0) => Ok(Upload::ReceiverClosed),
                    Some(_) if out.is_empty() => Ok(Upload::Complete),
                    Some(_) => Ok(Upload::Answered),
                    None => Ok(Upload::Complete),
                };
            }
            Ok(Ok(Watched::Source(_))) => {}
        }
    }
}

/// Writes all of `out` to `dst` (consuming it as it goes) and flushes,
/// unless `dst` sends something first: then `Some(n)` with the `n` bytes
/// read into `dst_buf` (0: `dst` closed), and `out` keeps the rest.
async fn write_watching<S>(
    dst: &mut S,
    out: &mut BytesMut,
    dst_buf: &mut BytesMut,
    limit: Option<Duration>,
    timer: &mut WaitTimer,
) -> Result<Option<usize>, StreamError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let write = std::future::poll_fn(|cx| loop {
        if let Poll::Ready(r) = poll_read_into(dst, cx, dst_buf) {
            return Poll::Ready(r.map(Some));
        }
        if out.is_empty() {
            return std::pin::Pin::new(&mut *dst)
                .poll_flush(cx)
                .map_ok(|()| None);
        }
        match std::pin::Pin::new(&mut *dst).poll_write(cx, out) {
            Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
            Poll::Ready(Ok(n)) => out.advance(n),
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return Poll::Pending,
        }
    });
    match timer.within(limit, write).await {
        Ok(r) => r.map_err(StreamError::SinkIo),
        Err(_) => Err(StreamError::SinkTimeout),
    }
}

/// One `poll_read` into `buf`'s spare capacity (some is made if there is
/// little); `Ready(Ok(n))` with the bytes added.
fn poll_read_into<R: AsyncRead + Unpin>(
    r: &mut R,
    cx: &mut std::task::Context<'_>,
    buf: &mut BytesMut,
) -> Poll<io::Result<usize>> {
    if buf.capacity() - buf.len() < 1024 {
        buf.reserve(8 * 1024);
    }
    let spare = buf.spare_capacity_mut();
    let mut rb = tokio::io::ReadBuf::uninit(spare);
    match std::pin::Pin::new(r).poll_read(cx, &mut rb) {
        Poll::Ready(Ok(())) => {
            let n = rb.filled().len();
            // SAFETY: poll_read initialised the first `n` bytes of the spare capacity.
            unsafe { buf.set_len(buf.len() + n) };
            Poll::Ready(Ok(n))
        }
        Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
        Poll::Pending => Poll::Pending,
    }
}

/// Idle timeouts of a [`tunnel`].
#[derive(Debug, Clone, Copy, Default)]
pub struct TunnelTimeouts {
    /// Nothing moved either way for this long: the tunnel ends
    /// (`timeout tunnel`).
    pub idle: Option<Duration>,
    /// After the server's FIN was passed on to the client, the client side
    /// may stay idle this long (`timeout client-fin`; unset: `idle`).
    pub client_fin: Option<Duration>,
    /// After the client's FIN was passed on to the server, the server side
    /// may stay idle this long (`timeout server-fin`; unset: `idle`).
    pub server_fin: Option<Duration>,
}

/// What the two directions of a [`tunnel`] share: when something last
/// happened (ms since the tunnel started), whether a direction has ended,
/// and a wake-up for the other direction when one ends (its timeout changes).
struct TunnelState {
    origin: Instant,
    last_ms: AtomicU64,
    ended: AtomicBool,
    ended_wake: Notify,
}

impl TunnelState {
    fn touch(&self) {
        self.last_ms
            .store(self.origin.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
}

/// Copies bytes both ways until both directions have ended (each EOF is
/// passed on as a write shutdown), or a timeout of `timeouts` expires:
/// nothing moved in either direction for `idle` or, once one direction has
/// ended (a half-closed tunnel), nothing came from the side still sending
/// for its `-fin` timeout. `to_server` / `to_client` are bytes already read
/// and not yet delivered. Returns (client→server, server→client) byte counts.
pub async fn tunnel<C, S>(
    client: &mut C,
    server: &mut S,
    to_server: &[u8],
    to_client: &[u8],
    timeouts: TunnelTimeouts,
) -> io::Result<(u64, u64)>
where
    C: AsyncRead + AsyncWrite + Unpin,
    S: AsyncRead + AsyncWrite + Unpin,
{
    if !to_server.is_empty() {
        server.write_all(to_server).await?;
        server.flush().await?;
    }
    if !to_client.is_empty() {
        client.write_all(to_client).await?;
        client.flush().await?;
    }
    let state = TunnelState {
        origin: Instant::now(),
        last_ms: AtomicU64::new(0),
        ended: AtomicBool::new(false),
        ended_wake: Notify::new(),
    };
    let (mut cr, mut cw) = tokio::io::split(client);
    let (mut sr, mut sw) = tokio::io::split(server);
    // HAProxy: once the server side was shut for writing (the client's FIN
    // passed on), reads from the server wait `timeout server-fin`, and the
    // other way round with `timeout client-fin`.
    let up = copy_until_idle(&mut cr, &mut sw, timeouts.idle, timeouts.client_fin, &state);
    let down = copy_until_idle(&mut sr, &mut cw, timeouts.idle, timeouts.server_fin, &state);
    let (a, b) = tokio::try_join!(up, down)?;
    Ok((a + to_server.len() as u64, b + to_client.len() as u64))
}

/// One direction of a [`tunnel`]: `r` to `w`. `fin` is the idle timeout of
/// `r` once the other direction has ended.
async fn copy_until_idle<R, W>(
    r: &mut R,
    w: &mut W,
    idle: Option<Duration>,
    fin: Option<Duration>,
    state: &TunnelState,
) -> io::Result<u64>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; 16 * 1024];
    let mut total = 0u64;
    loop {
        let read = r.read(&mut buf);
        tokio::pin!(read);
        let n = loop {
            let half_closed = state.ended.load(Ordering::Relaxed);
            let limit = if half_closed { fin.or(idle) } else { idle };
            let wake = state.ended_wake.notified();
            let Some(limit) = limit else {
                // No timeout: wait for bytes, or for the other direction
                // to end (a `-fin` timeout may apply then).
                tokio::select! {
                    n = &mut read => break n?,
                    () = wake, if !half_closed => continue,
                }
            };
            // Measured from the last activity of either direction (the
            // other direction's end counts as one).
            let last = Duration::from_millis(state.last_ms.load(Ordering::Relaxed));
            let deadline = state.origin + last + limit;
            tokio::select! {
                n = &mut read => break n?,
                () = tokio::time::sleep_until(deadline) => {
                    // The other direction may have moved meanwhile.
                    let last = Duration::from_millis(state.last_ms.load(Ordering::Relaxed));
                    let still_idle = state.origin + last + limit <= Instant::now();
                    if still_idle && state.ended.load(Ordering::Relaxed) == half_closed {
                        return Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "tunnel idle timeout",
                        ));
                    }
                }
                () = wake, if !half_closed => {}
            }
        };
        if n == 0 {
            let _ = w.shutdown().await;
            state.touch();
            state.ended.store(true, Ordering::Relaxed);
            // A permit is kept if the other direction is not waiting now.
            state.ended_wake.notify_one();
            return Ok(total);
        }
        w.write_all(&buf[..n]).await?;
        w.flush().await?;
        total += n as u64;
        state.touch();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{Framing, Limits, Side};

    /// A server connection the way an io_uring stream behaves: a write is
    /// queued at once, its flush completes later, and the server's answer
    /// (sent once it has the whole body) can be readable before the flush
    /// is seen to complete.
    struct QueuedSendServer {
        received: Vec<u8>,
        body_len: usize,
        flushes: usize,
        answer: &'static [u8],
    }

    impl AsyncRead for QueuedSendServer {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            _cx: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            if self.received.len() < self.body_len || self.answer.is_empty() {
                return Poll::Pending;
            }
            let answer = std::mem::take(&mut self.answer);
            buf.put_slice(answer);
            Poll::Ready(Ok(()))
        }
    }

    impl AsyncWrite for QueuedSendServer {
        fn poll_write(
            mut self: std::pin::Pin<&mut Self>,
            _cx: &mut std::task::Context<'_>,
            data: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.received.extend_from_slice(data);
            Poll::Ready(Ok(data.len()))
        }

        fn poll_flush(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> Poll<io::Result<()>> {
            // The send completes on the next turn; by then the answer is in.
            self.flushes += 1;
            if self.flushes == 1 {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(
            self: std::pin::Pin<&mut Self>,
            _cx: &mut std::task::Context<'_>,
        ) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    /// Uploads "hello" as a body of `length` bytes to a server that
    /// answers `answer` once it has received 5 bytes.
    async fn upload_hello(
        length: u64,
        answer: &'static [u8],
    ) -> (Upload, QueuedSendServer, BytesMut) {
        let limits = Limits::default();
        let mut dec = BodyDecoder::new(Framing::Length(length), Side::Client, &limits);
        let mut client: &[u8] = b"";
        let mut client_buf = BytesMut::from(&b"hello"[..]);
        let mut server = QueuedSendServer {
            received: Vec::new(),
            body_len: 5,
            flushes: 0,
            answer,
        };
        let mut server_buf = BytesMut::new();
        let mut out = BytesMut::new();
        let mut moved = Moved::default();
        let mut timer = WaitTimer::default();
        let step = upload_body(
            &mut dec,
            &mut client,
            &mut client_buf,
            &mut server,
            &mut server_buf,
            &mut out,
            StreamTimeouts {
                read: None,
                write: None,
                timer: &mut timer,
            },
            &mut moved,
        )
        .await
        .unwrap();
        (step, server, server_buf)
    }

    #[tokio::test]
    async fn an_answer_racing_the_last_send_still_completes_the_upload() {
        let (step, server, server_buf) =
            upload_hello(5, b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").await;
        assert!(matches!(step, Upload::Complete), "{step:?}");
        assert_eq!(server.received, b"hello");
        assert!(server_buf.starts_with(b"HTTP/1.1 200 OK"));
    }

    #[tokio::test]
    async fn an_answer_before_the_body_is_sent_is_an_early_response() {
        // Answers after 5 of the 10 bytes: the body is not complete.
        let (step, _, _) =
            upload_hello(10, b"HTTP/1.1 413 Too Large\r\ncontent-length: 0\r\n\r\n").await;
        assert!(matches!(step, Upload::Answered), "{step:?}");
    }

    #[tokio::test]
    async fn rechunks_a_close_delimited_body_and_dechunks_a_chunked_one() {
        let limits = Limits::default();
        let mut src: &[u8] = b" world";
        let mut buf = BytesMut::from(&b"hello"[..]);
        let mut dst = Vec::new();
        let mut out = BytesMut::new();
        let mut dec = BodyDecoder::new(Framing::CloseDelimited, Side::Server, &limits);
        let mut timer = WaitTimer::default();
        stream_body(
            &mut dec,
            &mut src,
            &mut buf,
            &mut dst,
            &mut out,
            BodyMode::Rechunk,
            StreamTimeouts {
                read: None,
                write: None,
                timer: &mut timer,
            },
            &mut false,
        )
        .await
        .unwrap();
        assert_eq!(dst, b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n");

        let mut src: &[u8] = b"";
        let mut buf = BytesMut::from(&b"3\r\nabc\r\n0\r\nX-T: 1\r\n\r\nNEXT"[..]);
        let mut dst = Vec::new();
        let mut dec = BodyDecoder::new(Framing::Chunked, Side::Server, &limits);
        stream_body(
            &mut dec,
            &mut src,
            &mut buf,
            &mut dst,
            &mut out,
            BodyMode::Dechunk,
            StreamTimeouts {
                read: None,
                write: None,
                timer: &mut timer,
            },
            &mut false,
        )
        .await
        .unwrap();
        assert_eq!(dst, b"abc");
        assert_eq!(&buf[..], b"NEXT");
    }

    #[tokio::test]
    async fn truncated_length_body_is_an_error() {
        let limits = Limits::default();
        let mut src: &[u8] = b"";
        let mut buf = BytesMut::from(&b"abc"[..]);
        let mut dst = Vec::new();
        let mut out = BytesMut::new();
        let mut dec = BodyDecoder::new(Framing::Length(10), Side::Server, &limits);
        let mut timer = WaitTimer::default();
        let r = stream_body(
            &mut dec,
            &mut src,
            &mut buf,
            &mut dst,
            &mut out,
            BodyMode::Pass,
            StreamTimeouts {
                read: None,
                write: None,
                timer: &mut timer,
            },
            &mut false,
        )
        .await;
        assert!(matches!(r, Err(StreamError::SourceClosed)), "{r:?}");
    }
}
