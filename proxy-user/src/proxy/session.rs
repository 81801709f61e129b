//! One client connection: read a request head, route it, get a server
//! connection, forward the request, stream the response back, and loop for
//! the next request (keep-alive, pipelining) until either side closes.
//!
//! Requests are handled one after the other, so pipelined requests are
//! answered in order: bytes of the next request simply wait in the read
//! buffer. Any error the proxy answers itself closes the connection
//! afterwards (the byte stream cannot be trusted any more), as does a
//! request or response whose framing the codec rejects: ambiguous requests
//! are never forwarded.

use std::future::Future;
use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, SystemTime};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::uring::UringStream;
use tokio::time::Instant;

use crate::balance::SelectKey;
use crate::config::Service;
use crate::health::passive::Observation;
use crate::http::{
    encode_request_head, encode_response_head, response_framing, server_connection_reusable,
    BodyDecoder, Framing, HeadRewrite, KeepAlive, Method, OutgoingBody, RequestHead, ResponseHead,
    Side, Version, CONTINUE_RESPONSE,
};
use crate::stats::Counter;
use crate::tls::{RecordSocket, ServerTlsStream};

use super::error::{write_error_response, write_local_response, ErrorSide, ProxyError};
use super::exporter;
use super::forwardfor;
use super::log::{emit, AccessRecord};
use super::pool::ServerConn;
use super::route::{apply_header_rules, choose_backend, Final, HeaderEdits, RequestRef};
use super::slot::SlotBox;
use super::stream::{
    flush, stream_body, tunnel, upload_body, BodyMode, StreamError, StreamTimeouts, TunnelTimeouts,
    Upload,
};
use super::timer::WaitTimer;
use super::upstream::{BackendCtx, ServerSlot, SERVER_BUF_SIZE};
use super::FrontendCtx;

/// Read buffer allocated for a client connection once it sends something.
pub const CLIENT_BUF_SIZE: usize = 4 * 1024;
/// A buffer grown past this (by a large body) is released when the
/// connection goes idle.
const KEEP_BUF_CAPACITY: usize = 16 * 1024;

thread_local! {
    /// Buffers of connections that went idle, for the next connection of
    /// this (worker) thread that needs one: an idle connection holds no
    /// buffer, and a request does not cost a 4 KiB malloc/free pair.
    static SPARE_BUFFERS: std::cell::RefCell<Vec<BytesMut>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// Buffers kept per thread at most by [`give_back`] (1 MiB of 4 KiB
/// buffers). An idle keep-alive connection gives back two, so with 64 a
/// worker with more than 32 idle connections freed and allocated 4 KiB
/// buffers on every request.
const SPARE_BUFFERS_MAX: usize = 256;

/// Takes `buf` (leaving it empty, with no capacity) and keeps it for
/// [`spare_buffer`] if it is of the usual size.
fn give_back(buf: &mut BytesMut) {
    let mut b = std::mem::take(buf);
    if b.capacity() == 0 || b.capacity() > KEEP_BUF_CAPACITY {
        return;
    }
    b.clear();
    let _ = SPARE_BUFFERS.try_with(|spare| {
        let mut spare = spare.borrow_mut();
        if spare.len() < SPARE_BUFFERS_MAX {
            spare.push(b);
        }
    });
}

/// A buffer from [`give_back`], else a new one of [`CLIENT_BUF_SIZE`].
fn spare_buffer() -> BytesMut {
    SPARE_BUFFERS
        .try_with(|spare| spare.borrow_mut().pop())
        .ok()
        .flatten()
        .unwrap_or_else(|| BytesMut::with_capacity(CLIENT_BUF_SIZE))
}

/// What happens after a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    KeepAlive,
    Close,
    /// Close, but the client may still be sending (a request body we did
    /// not read): read and drop what it sends for a while first, so that
    /// closing with unread data does not reset the connection before the
    /// client has read our response.
    CloseLingering,
}

/// How long a lingering close waits for the client to finish sending.
const LINGER_TIME: Duration = Duration::from_secs(2);
/// How much a lingering close reads (and drops) at most.
const LINGER_BYTES: usize = 4 * 1024 * 1024;

/// What one request did, for counters and the access log.
#[derive(Default)]
struct Outcome<'f> {
    backend: Option<&'f Arc<BackendCtx>>,
    server: Option<usize>,
    tq: Option<Duration>,
    tw: Option<Duration>,
    tc: Option<Duration>,
    tr: Option<Duration>,
    status: u16,
    bytes_in: u64,
    bytes_out: u64,
    retries: u32,
    /// HAProxy's session step letter: R(equest) Q(ueue) C(onnect) H(eaders) D(ata) T(unnel).
    phase: u8,
    termination: Option<[u8; 2]>,
    response_started: bool,
    /// With `option logasap`: when the request started (wall clock, first
    /// byte), for the line logged as soon as the response head goes out.
    logasap_from: Option<(SystemTime, Instant)>,
    /// The request's line was logged already (`option logasap`).
    logged: bool,
}

/// A client connection a session can serve: plain TCP, or TLS over TCP
/// (`bind ... ssl`).
pub trait ClientIo: AsyncRead + AsyncWrite + Unpin + Send {
    /// The socket itself when reads need no decryption: an idle connection
    /// then waits for readiness without holding a read buffer.
    fn plain_socket(&self) -> Option<&TcpStream>;

    /// The io_uring stream, which waits for a request without a buffer too.
    fn uring(&mut self) -> Option<&mut UringStream> {
        None
    }

    /// The next write is the last before our side closes or shuts down:
    /// where it is cheap, its final bytes then leave with the FIN in one
    /// segment instead of two (about two packets fewer per `Connection:
    /// close` request, counting the client's acknowledgements). Nothing
    /// but the close or a shutdown may follow that write.
    fn fin_with_next_write(&mut self) {}
}

impl ClientIo for TcpStream {
    fn plain_socket(&self) -> Option<&TcpStream> {
        Some(self)
    }

    /// `TCP_CORK`: one system call, for a packet fewer to send and to
    /// acknowledge.
    fn fin_with_next_write(&mut self) {
        let _ = crate::net::set_cork(self);
    }
}

impl ClientIo for ServerTlsStream<RecordSocket<TcpStream>> {
    fn plain_socket(&self) -> Option<&TcpStream> {
        None
    }
}

impl ClientIo for ServerTlsStream<UringStream> {
    fn plain_socket(&self) -> Option<&TcpStream> {
        None
    }
}

impl ClientIo for UringStream {
    fn plain_socket(&self) -> Option<&TcpStream> {
        None
    }

    fn uring(&mut self) -> Option<&mut UringStream> {
        Some(self)
    }

    /// `MSG_MORE` on that send: no system call of its own.
    fn fin_with_next_write(&mut self) {
        self.fin_with_next_send();
    }
}

/// With `http-max-body-size`, the part of a chunked request body that came
/// with the head is decoded before any server is chosen: a body already
/// over the limit (or malformed) is refused without a byte reaching a
/// server. With Content-Length the head alone tells, at parse time. Past
/// the buffered bytes the limit is enforced while streaming: the server
/// then gets a body cut short and the connection closed, never a complete
/// request.
fn check_buffered_chunked_body(
    buf: &[u8],
    limits: &crate::http::Limits,
) -> Result<(), crate::http::Error> {
    let mut decoder = BodyDecoder::new(Framing::Chunked, Side::Client, limits);
    let mut offset = 0;
    loop {
        let step = decoder.decode(&buf[offset..])?;
        offset += step.consumed;
        if step.done || step.consumed == 0 {
            return Ok(());
        }
    }
}

/// Is all of a response body with `framing` already in `buf` (so that
/// the whole response goes to the client in one write)?
fn body_is_buffered(framing: Framing, buf: &[u8]) -> bool {
    match framing {
        Framing::Empty => true,
        Framing::Length(n) => buf.len() as u64 >= n,
        _ => false,
    }
}

/// Serves one accepted client connection to the end. `scheme` (`http` or
/// `https`) is what `X-Forwarded-Proto` says.
pub(crate) async fn run<S: ClientIo>(
    fe: Arc<FrontendCtx>,
    client: S,
    peer: SocketAddr,
    scheme: &'static str,
) {
    fe.counters.session_started();
    fe.counters.connection();
    fe.current_sessions.fetch_add(1, Ordering::Relaxed);
    let mut session = Session {
        fe: &fe,
        client,
        peer,
        scheme,
        buf: BytesMut::new(),
        out: BytesMut::new(),
        edits: HeaderEdits::default(),
        requests: 0,
        timer: WaitTimer::default(),
    };
    session.serve().await;
    // The next connection of this thread reads into them: with
    // `Connection: close` that saves two 4 KiB allocations per request.
    give_back(&mut session.buf);
    give_back(&mut session.out);
    fe.current_sessions.fetch_sub(1, Ordering::Relaxed);
}

struct Session<'f, S> {
    fe: &'f FrontendCtx,
    client: S,
    peer: SocketAddr,
    scheme: &'static str,
    /// Bytes from the client not consumed yet (the next request, pipelined).
    buf: BytesMut,
    /// Bytes to write: request heads to the server, responses to the client.
    out: BytesMut,
    /// Header changes of the `http-request` rules (reused per request).
    edits: HeaderEdits<'f>,
    requests: u64,
    /// The timer every wait of this connection resets (see [`WaitTimer`]).
    timer: WaitTimer,
}

impl<'f, S: ClientIo> Session<'f, S> {
    async fn serve(&mut self) {
        loop {
            // Timings only feed the access log: without one the clock is
            // not read for them.
            let started = if self.fe.log_format.is_some() {
                SystemTime::now()
            } else {
                SystemTime::UNIX_EPOCH
            };
            let head = match self.read_head().await {
                Ok(Some(h)) => h,
                Ok(None) => return,
                Err(e) => {
                    // What the client sent of the bad head counts as received.
                    let mut o = Outcome {
                        phase: b'R',
                        bytes_in: self.buf.len() as u64,
                        ..Outcome::default()
                    };
                    if matches!(e, ProxyError::BadRequest(_)) {
                        // HAProxy counts a request it could not parse as a
                        // request too (and as a request error).
                        self.fe.counters.request();
                    }
                    let fail = Box::pin(self.fail(&e, &mut o));
                    fail.await;
                    self.count_bytes(&o);
                    self.log(&o, started, Instant::now(), None, None);
                    return;
                }
            };
            // One request, from its head to the end of its response, in a
            // heap slot the thread's next request reuses ([`SlotBox`]): its
            // state (with the exchange's, about 3 KB) lives only while a
            // request is in flight, so an idle keep-alive connection's task
            // holds no more than the wait for a head needs.
            //
            // Bound by `let` before the await: a temporary lives to the end
            // of its statement, so in `Box::pin(f).await` the moved-out
            // future `f` would still take room in this task.
            let request = SlotBox::new_with(|| self.request(head, started));
            if request.await.is_break() {
                return;
            }
        }
    }

    /// Serves one request, from its head (with when its first byte came and
    /// how long it took) to the end of its response. `Break`: the
    /// connection was closed after it.
    async fn request(
        &mut self,
        head: (RequestHead, Instant, Duration),
        started: SystemTime,
    ) -> ControlFlow<()> {
        let (head, first_byte, tq) = head;
        self.requests += 1;
        let mut o = Outcome {
            tq: Some(tq),
            bytes_in: head.raw().len() as u64,
            phase: b'R',
            logasap_from: self.fe.logasap.then_some((started, first_byte)),
            ..Outcome::default()
        };
        self.fe.counters.request();
        // A panic in the exchange (a bug) is answered with a 500 and closes
        // this connection only.
        let exchange = {
            let forward = std::pin::pin!(self.forward(&head, &mut o));
            CatchUnwind(forward).await
        };
        let next = match exchange {
            Ok(Ok(next)) => next,
            Ok(Err(e)) => {
                let fail = Box::pin(self.fail(&e, &mut o));
                fail.await;
                Next::CloseLingering
            }
            Err(panic) => {
                let e = ProxyError::Internal(panic);
                log::error!("{} {}: {e}", self.fe.name, self.peer);
                let fail = Box::pin(self.fail(&e, &mut o));
                fail.await;
                Next::CloseLingering
            }
        };
        self.count_bytes(&o);
        if !o.logged {
            self.log(&o, started, first_byte, Some(&head), None);
        }
        // Bytes past this request (a client that pipelined after asking
        // to close): closing now would reset the connection and could
        // lose the response, so drain them first.
        let next = match next {
            Next::Close
                if !self.buf.is_empty()
                    || self.client.uring().is_some_and(|s| s.has_unread_input()) =>
            {
                Next::CloseLingering
            }
            next => next,
        };
        match next {
            Next::KeepAlive => {}
            Next::Close => {
                if self.client.uring().is_some() {
                    // Closing the socket (through the ring) sends the
                    // FIN: a shutdown first would only add a system call.
                    let _ = self.client.flush().await;
                } else {
                    let _ = self.client.shutdown().await;
                }
                return ControlFlow::Break(());
            }
            Next::CloseLingering => {
                let _ = self.client.shutdown().await;
                // Boxed: its scratch buffer must not size every
                // request's slot.
                let linger = Box::pin(self.linger());
                linger.await;
                return ControlFlow::Break(());
            }
        }
        if self.out.capacity() > KEEP_BUF_CAPACITY {
            self.out = BytesMut::new();
        }
        ControlFlow::Continue(())
    }

    /// Reads one request head. `Ok(None)`: the client closed (or idled
    /// out) cleanly between requests. Returns the head, when its first
    /// byte arrived, and how long the head took (Tq).
    async fn read_head(&mut self) -> Result<Option<(RequestHead, Instant, Duration)>, ProxyError> {
        let fe = self.fe;
        let first = self.requests == 0;
        let head_timeout = fe.timeouts.http_request.or(fe.timeouts.client);
        let idle_timeout = if first {
            head_timeout
        } else {
            fe.timeouts.http_keep_alive.or(head_timeout)
        };
        let wait_started = Instant::now();
        let pipelined = !self.buf.is_empty();
        if !pipelined {
            // Wait without a buffer: an idle connection holds no memory for
            // it. Readiness can be spurious, so a buffer allocated for a read
            // that finds nothing is released again.
            let idle_deadline = idle_timeout.map(|t| wait_started + t);
            if let Some(stream) = self.client.uring() {
                let now = std::future::poll_fn(|cx| Poll::Ready(stream.poll_ready(cx))).await;
                let ready = match now {
                    Poll::Ready(r) => Ok(r),
                    Poll::Pending => {
                        // The connection goes idle: no buffers held until
                        // bytes arrive (the ring picks one then).
                        give_back(&mut self.buf);
                        give_back(&mut self.out);
                        let wait = std::future::poll_fn(|cx| stream.poll_ready(cx));
                        self.timer.within_at(idle_deadline, wait).await
                    }
                };
                match ready {
                    Err(_) if first => {
                        return Err(ProxyError::ClientTimeout("waiting for the request"))
                    }
                    Err(_) | Ok(Err(_)) => return Ok(None),
                    Ok(Ok(())) => {}
                }
                if self.buf.capacity() == 0 {
                    self.buf = spare_buffer();
                }
                if self.buf.capacity() - self.buf.len() < 1024 {
                    self.buf.reserve(CLIENT_BUF_SIZE);
                }
                match self.client.read_buf(&mut self.buf).await {
                    Ok(0) | Err(_) => return Ok(None),
                    Ok(_) => {}
                }
            } else if self.client.plain_socket().is_none() {
                // TLS: bytes only make sense after decryption, so the wait is
                // a read through the TLS layer, with a buffer.
                if self.buf.capacity() - self.buf.len() < 1024 {
                    self.buf.reserve(CLIENT_BUF_SIZE);
                }
                let read = self.client.read_buf(&mut self.buf);
                let got = self.timer.within_at(idle_deadline, read).await;
                match got {
                    Err(_) if first => {
                        return Err(ProxyError::ClientTimeout("waiting for the request"))
                    }
                    Err(_) | Ok(Ok(0)) | Ok(Err(_)) => return Ok(None),
                    Ok(Ok(_)) => {}
                }
            }
            while self.buf.is_empty() {
                let Some(socket) = self.client.plain_socket() else {
                    unreachable!("a TLS read above filled the buffer");
                };
                let mut readable = std::pin::pin!(socket.readable());
                let now = std::future::poll_fn(|cx| Poll::Ready(readable.as_mut().poll(cx))).await;
                let ready = match now {
                    Poll::Ready(r) => Ok(r),
                    Poll::Pending => {
                        // Nothing to read yet: the connection goes idle. Its
                        // buffers are given back until the next request.
                        give_back(&mut self.buf);
                        give_back(&mut self.out);
                        self.timer.within_at(idle_deadline, readable).await
                    }
                };
                match ready {
                    Err(_) if first => {
                        return Err(ProxyError::ClientTimeout("waiting for the request"))
                    }
                    Err(_) | Ok(Err(_)) => return Ok(None),
                    Ok(Ok(())) => {}
                }
                let fresh = self.buf.capacity() == 0;
                if fresh {
                    self.buf = spare_buffer();
                }
                if self.buf.capacity() - self.buf.len() < 1024 {
                    self.buf.reserve(CLIENT_BUF_SIZE);
                }
                match try_read_drained(socket, &mut self.buf) {
                    Ok(0) => return Ok(None),
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        if fresh {
                            give_back(&mut self.buf);
                        }
                    }
                    Err(_) => return Ok(None),
                }
            }
        }
        let timed = fe.log_format.is_some();
        let first_byte = if pipelined {
            Some(wait_started)
        } else {
            timed.then(Instant::now)
        };
        // Set when the head needs more reads (not for a head that came whole).
        let mut deadline = None;
        loop {
            match RequestHead::parse_buf(&mut self.buf, &fe.limits) {
                Ok(Some(head)) => {
                    let first_byte = first_byte.unwrap_or(wait_started);
                    let tq = if timed {
                        first_byte.elapsed()
                    } else {
                        Duration::ZERO
                    };
                    return Ok(Some((head, first_byte, tq)));
                }
                Ok(None) => {}
                Err(e) => return Err(ProxyError::BadRequest(e)),
            }
            if self.buf.capacity() - self.buf.len() < 1024 {
                self.buf.reserve(CLIENT_BUF_SIZE);
            }
            let deadline = *deadline.get_or_insert_with(|| {
                // The head is due `timeout http-request` after its first
                // byte (after the accept for a connection's first request).
                let started = if first {
                    wait_started
                } else {
                    first_byte.unwrap_or_else(Instant::now)
                };
                head_timeout.map(|t| started + t)
            });
            let read = self.client.read_buf(&mut self.buf);
            let Ok(n) = self.timer.within_at(deadline, read).await else {
                return Err(ProxyError::ClientTimeout("receiving the request head"));
            };
            match n {
                Ok(0) if self.buf.iter().all(|b| b.is_ascii_whitespace()) => return Ok(None),
                Ok(0) => {
                    return Err(ProxyError::ClientAborted(
                        std::io::ErrorKind::UnexpectedEof.into(),
                    ))
                }
                Ok(_) => {}
                Err(_) if self.buf.is_empty() => return Ok(None),
                Err(e) => return Err(ProxyError::ClientAborted(e)),
            }
        }
    }

    /// Routes, connects and forwards one request and its response.
    async fn forward(
        &mut self,
        head: &RequestHead,
        o: &mut Outcome<'f>,
    ) -> Result<Next, ProxyError> {
        let fe = self.fe;
        if head.framing() == Framing::Chunked && fe.limits.max_body.is_some() {
            check_buffered_chunked_body(&self.buf, &fe.limits).map_err(ProxyError::BadRequest)?;
        }
        let req = RequestRef::new(head);
        let mut edits = std::mem::take(&mut self.edits);
        edits.clear();
        // The frontend's rules first, as in HAProxy: a `deny` or `return`
        // there answers before a backend is chosen.
        let mut last = apply_header_rules(&fe.http_request, &req, &mut edits);
        let mut backend = None;
        if last.is_none() {
            match choose_backend(&fe.routes, fe.default_backend.as_ref(), &req) {
                Some(b) => {
                    o.backend = Some(b);
                    b.counters.request();
                    backend = Some(b);
                    last = apply_header_rules(&b.http_request, &req, &mut edits);
                }
                None => {
                    self.edits = edits;
                    return Err(ProxyError::NoBackend);
                }
            }
        }
        let result = match (last, backend) {
            (Some(last), _) => self.answer_locally(head, last, o).await,
            (None, Some(backend)) => {
                let request_framing = head.framing();
                // We answer `100 Continue` ourselves once a server is
                // connected, so the server does not see the expectation.
                let answer_continue = head.expects_continue() && request_framing.has_body();
                if answer_continue {
                    edits.del.push("expect");
                }
                self.forward_to(head, backend, &edits, answer_continue, o)
                    .await
            }
            (None, None) => unreachable!("a backend was chosen or a rule answered"),
        };
        self.edits = edits;
        result
    }

    /// Answers the request with an `http-request deny` or `return`
    /// response. The request body, if any, is not read: the connection is
    /// then closed after the response (lingering, so the client still gets
    /// it); otherwise keep-alive goes on as the client asked.
    async fn answer_locally(
        &mut self,
        head: &RequestHead,
        last: Final<'_>,
        o: &mut Outcome<'f>,
    ) -> Result<Next, ProxyError> {
        let fe = self.fe;
        // A service's page is rendered now; deny and return have theirs
        // in the config.
        let service_page;
        let (status, body) = match last {
            Final::Deny(r) | Final::Return(r) => (
                r.status,
                r.body.as_ref().map(|(t, b)| (t.as_str(), b.as_str())),
            ),
            Final::Service(Service::PrometheusExporter) => {
                service_page = fe.exporter.render();
                (200, Some((exporter::CONTENT_TYPE, service_page.as_str())))
            }
        };
        let has_body = head.framing().has_body();
        let keep = !has_body && head.keep_alive() == KeepAlive::KeepAlive;
        let connection = match (keep, head.version()) {
            (false, _) => Some("close"),
            (true, Version::Http10) => Some("keep-alive"),
            (true, Version::Http11) => None,
        };
        self.out.clear();
        write_local_response(
            status,
            body,
            head.method() == Method::Head,
            connection,
            &mut self.out,
        );
        if !keep {
            self.client.fin_with_next_write();
        }
        o.status = status;
        o.response_started = true;
        fe.counters.response(status);
        if let Some(b) = o.backend {
            b.counters.response(status);
        }
        match last {
            Final::Deny(_) => {
                o.termination = Some(*b"PR");
                fe.counters.inc(Counter::Denied);
                if let Some(b) = o.backend {
                    b.counters.inc(Counter::Denied);
                }
            }
            Final::Return(_) | Final::Service(_) => o.termination = Some(*b"LR"),
        }
        let out = std::mem::take(&mut self.out);
        let written = self.write_client(&out, o).await;
        self.out = out;
        written?;
        Ok(match (keep, has_body) {
            (true, _) => Next::KeepAlive,
            (false, true) => Next::CloseLingering,
            (false, false) => Next::Close,
        })
    }

    async fn forward_to(
        &mut self,
        head: &RequestHead,
        backend: &'f Arc<BackendCtx>,
        edits: &HeaderEdits<'_>,
        answer_continue: bool,
        o: &mut Outcome<'f>,
    ) -> Result<Next, ProxyError> {
        let key = match &backend.hash_on {
            Some(on) => {
                let target = std::str::from_utf8(head.target()).unwrap_or("");
                on.key_hash(self.peer.ip(), target, |name| head.headers().get(name))
            }
            None => SelectKey::None,
        };

        // Server slot and connection, with retries and redispatch, the
        // HAProxy way: a retry goes to the same server after a turn-around
        // pause of min(`timeout connect`, 1 s), so a restarting server is
        // not hammered; with `option redispatch` the last retry goes to
        // another server instead, at once.
        let mut excluded: Vec<usize> = Vec::new();
        let mut retries_left = backend.retries;
        let mut same_server = None;
        let (slot, conn) = loop {
            let slot = match same_server.take() {
                Some(slot) => slot,
                None => {
                    o.phase = b'Q';
                    let (slot, waited) = match backend.acquire(key, &excluded).await {
                        Ok(acquired) => acquired,
                        Err(e) => {
                            // Logged and counted against the server whose
                            // queue it waited in, as HAProxy does.
                            o.server = e.queued_server().or(o.server);
                            return Err(e);
                        }
                    };
                    o.tw = Some(o.tw.unwrap_or_default() + waited);
                    slot
                }
            };
            o.server = Some(slot.server);
            o.phase = b'C';
            match backend.connect(slot.server).await {
                Ok((conn, took)) => {
                    o.tc = Some(took);
                    backend.observe(slot.server, Observation::ConnectOk);
                    break (slot, conn);
                }
                Err(e) => {
                    backend.report_server_error(slot.server, &e);
                    log::debug!(
                        "{}/{}: {e}",
                        backend.name,
                        backend.servers[slot.server].name
                    );
                    if retries_left == 0 || !e.retryable() {
                        return Err(e);
                    }
                    retries_left -= 1;
                    o.retries += 1;
                    let redispatch =
                        backend.redispatch && retries_left == 0 && backend.servers.len() > 1;
                    backend.count_retry(slot.server, redispatch);
                    if redispatch {
                        excluded.push(slot.server);
                    } else {
                        tokio::time::sleep(retry_turnaround(backend)).await;
                        same_server = Some(slot);
                    }
                }
            }
        };
        let server = &backend.servers[slot.server];
        if !server.shutdown_sessions_on_down {
            return self
                .exchange(head, backend, edits, answer_continue, slot, conn, o)
                .await;
        }
        // `on-marked-down shutdown-sessions`: the exchange is cut off when
        // health checks mark this server DOWN (HAProxy's termination 'D').
        // Registered before the exchange starts, so no notice is missed.
        let killed = server.marked_down.notified();
        let mut killed = std::pin::pin!(killed);
        killed.as_mut().enable();
        let exchange = self.exchange(head, backend, edits, answer_continue, slot, conn, o);
        tokio::select! {
            biased;
            done = exchange => done,
            () = killed => Err(ProxyError::ServerMarkedDown),
        }
    }

    /// Sends the request on `conn` to the server of `slot` and relays the
    /// response: one exchange, once a server and a connection are there.
    #[allow(
        clippy::too_many_arguments,
        reason = "the steps of one exchange share these"
    )]
    async fn exchange(
        &mut self,
        head: &RequestHead,
        backend: &'f Arc<BackendCtx>,
        edits: &HeaderEdits<'_>,
        answer_continue: bool,
        slot: ServerSlot,
        mut conn: ServerConn,
        o: &mut Outcome<'f>,
    ) -> Result<Next, ProxyError> {
        let fe = self.fe;
        let server_idx = slot.server;
        let server = &backend.servers[server_idx];
        server.counters.request();

        // The request head.
        o.phase = b'H';
        let forwarding = forwardfor::decide(
            fe.forwardfor.as_ref(),
            backend.forwardfor.as_ref(),
            self.peer.ip(),
            head.headers(),
        );
        // Requests are forwarded as HTTP/1.1, which requires a Host: an
        // HTTP/1.0 request without one gets the authority of its
        // absolute-form target, else the server's address (unless a rule
        // sets Host).
        let host_value;
        let with_host: Vec<(&str, &str)>;
        let set = if head.headers().contains("host")
            || edits
                .set
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case("host"))
        {
            &edits.set[..]
        } else {
            host_value = default_host(head.target(), server.addr, server.tls.is_some());
            with_host = edits
                .set
                .iter()
                .copied()
                .chain([("host", host_value.as_str())])
                .collect();
            &with_host
        };
        let rewrite = HeadRewrite {
            forwarded_for: forwarding.for_header.map(|_| self.peer.ip()),
            forwarded_for_header: forwarding.for_header,
            forwarded_proto: forwarding.proto.then_some(self.scheme),
            set_headers: set,
            add_headers: &edits.add,
            del_headers: &edits.del,
            body: request_framing_out(head.framing()),
            keep_upgrade: head.upgrade().is_some(),
            ..HeadRewrite::default()
        };
        self.out.clear();
        if self.out.capacity() == 0 {
            self.out = spare_buffer();
        }
        encode_request_head(head, &rewrite, &mut self.out);
        let server_timeout = backend.timeouts.server;
        let client_timeout = fe.timeouts.client;
        let has_body = head.framing().has_body();
        let sent_at;
        // A pooled connection may have been closed by the server just now:
        // a request without body is sent again on a new connection.
        let mut resend_allowed = !has_body;
        // The server answered before the whole request body was sent.
        let mut upload_cut = false;
        let resp = loop {
            let send = async {
                conn.stream.write_all(&self.out).await?;
                conn.stream.flush().await // a TLS record may still be buffered
            };
            if let Err(e) = self
                .timer
                .within(server_timeout, send)
                .await
                .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))
            {
                if conn.reused {
                    let fresh = Box::pin(self.fresh_connection(backend, server_idx, o));
                    conn = fresh.await?;
                    continue;
                }
                return Err(ProxyError::ServerAborted(e));
            }
            if has_body {
                self.out.clear();
                if answer_continue && self.buf.is_empty() {
                    self.write_client(CONTINUE_RESPONSE, o).await?;
                }
                let mut decoder = BodyDecoder::new(head.framing(), Side::Client, &fe.limits);
                let moved = self
                    .upload(head, &mut decoder, &mut conn, answer_continue, o)
                    .await;
                match moved {
                    Ok(complete) => upload_cut = !complete,
                    Err(e) => {
                        return Err(match e {
                            StreamError::Decode(e) => ProxyError::BadRequest(e),
                            StreamError::SourceClosed => {
                                ProxyError::ClientAborted(std::io::ErrorKind::UnexpectedEof.into())
                            }
                            StreamError::SourceIo(e) => ProxyError::ClientAborted(e),
                            StreamError::SourceTimeout => {
                                ProxyError::ClientTimeout("receiving the request body")
                            }
                            StreamError::SinkIo(e) => ProxyError::ServerAborted(e),
                            StreamError::SinkTimeout => ProxyError::ServerTimeout,
                        });
                    }
                }
            }
            let sent = fe.log_format.map(|_| Instant::now());
            match self
                .read_response_head(head, &mut conn, server_timeout, answer_continue, o)
                .await
            {
                Ok(resp) => {
                    sent_at = sent;
                    break resp;
                }
                Err(ProxyError::StaleConnection) if resend_allowed => {
                    resend_allowed = false;
                    let fresh = Box::pin(self.fresh_connection(backend, server_idx, o));
                    conn = fresh.await?;
                }
                Err(e) => return Err(e),
            }
        };
        o.tr = sent_at.map(|t: Instant| t.elapsed());
        self.out.clear();

        // The response head.
        let framing = response_framing(head, &resp).map_err(ProxyError::BadResponse)?;
        let status = resp.status();
        backend.observe(server_idx, Observation::of_status(status));
        let client_keep = head.keep_alive() == KeepAlive::KeepAlive;
        let client_http10 = head.version() == Version::Http10;
        let (body, mode, mut keep) = match framing {
            Framing::Tunnel => (OutgoingBody::None, BodyMode::Pass, false),
            Framing::Empty => (OutgoingBody::None, BodyMode::Pass, client_keep),
            Framing::Length(n) => (OutgoingBody::Length(n), BodyMode::Pass, client_keep),
            Framing::Chunked if !client_http10 => {
                (OutgoingBody::Chunked, BodyMode::Pass, client_keep)
            }
            Framing::Chunked => (OutgoingBody::CloseDelimited, BodyMode::Dechunk, false),
            Framing::CloseDelimited if !client_http10 && client_keep => {
                (OutgoingBody::Chunked, BodyMode::Rechunk, true)
            }
            Framing::CloseDelimited => (OutgoingBody::CloseDelimited, BodyMode::Pass, false),
        };
        if upload_cut {
            // The rest of the request body will not be read: the client
            // connection ends after this response (see `Next::CloseLingering`).
            keep = false;
        }
        let connection = match (keep, client_http10) {
            (false, _) => Some("close"),
            (true, true) => Some("keep-alive"),
            (true, false) => None,
        };
        encode_response_head(
            &resp,
            &HeadRewrite {
                body,
                connection,
                keep_upgrade: framing == Framing::Tunnel,
                ..HeadRewrite::default()
            },
            &mut self.out,
        );
        if !keep && body_is_buffered(framing, &conn.buf) {
            // The whole response goes out in the next write, and the
            // connection closes after it.
            self.client.fin_with_next_write();
        }
        o.status = status;
        o.response_started = true;
        // Counted once the head is on its way to the client: a body that
        // is broken before anything was sent gets a 502 instead.
        let count_response = || {
            fe.counters.response(status);
            backend.counters.response(status);
            server.counters.response(status);
        };
        if let Some((started, first_byte)) = o.logasap_from {
            // `option logasap`: logged now, before the body (or tunnel),
            // with the bytes and time so far (shown with a '+').
            let so_far = o.bytes_out + self.out.len() as u64;
            self.log(o, started, first_byte, Some(head), Some(so_far));
            o.logged = true;
        }

        if framing == Framing::Tunnel {
            count_response();
            o.phase = b'T';
            let head_len = self.out.len() as u64;
            flush(
                &mut self.client,
                &mut self.out,
                client_timeout,
                &mut self.timer,
            )
            .await
            .map_err(|_| ProxyError::ClientAborted(std::io::ErrorKind::BrokenPipe.into()))?;
            let idle = backend.timeouts.tunnel.or(fe.timeouts.tunnel).or(
                match (client_timeout, server_timeout) {
                    (Some(c), Some(s)) => Some(c.max(s)),
                    (c, s) => c.or(s),
                },
            );
            let to_server = std::mem::take(&mut self.buf);
            let to_client = std::mem::take(&mut conn.buf);
            let tunnel = Box::pin(tunnel(
                &mut self.client,
                &mut conn.stream,
                &to_server,
                &to_client,
                TunnelTimeouts {
                    idle,
                    client_fin: fe.timeouts.client_fin,
                    server_fin: backend.timeouts.server_fin,
                },
            ));
            let result = tunnel.await;
            o.bytes_out = head_len;
            if let Ok((up, down)) = result {
                o.bytes_in += up;
                o.bytes_out += down;
            } else {
                o.termination = Some(*b"cT");
            }
            drop(slot);
            return Ok(Next::Close);
        }

        // The response body.
        o.phase = b'D';
        let mut decoder = BodyDecoder::new(framing, Side::Server, &fe.limits);
        let mut sent = false;
        let streamed = stream_body(
            &mut decoder,
            &mut conn.stream,
            &mut conn.buf,
            &mut self.client,
            &mut self.out,
            mode,
            StreamTimeouts {
                read: server_timeout,
                write: client_timeout,
                timer: &mut self.timer,
            },
            &mut sent,
        )
        .await;
        if streamed.is_ok() || sent || o.logged {
            count_response();
        } else {
            // Nothing reached the client (the head waited to go out with
            // the first body bytes): the error is answered with its own
            // status, as HAProxy answers 502 when nothing was forwarded.
            self.out.clear();
            o.response_started = false;
        }
        let moved = streamed.map_err(|e| match e {
            StreamError::Decode(e) => ProxyError::BadResponse(e),
            StreamError::SourceClosed => {
                ProxyError::ServerAborted(std::io::ErrorKind::UnexpectedEof.into())
            }
            StreamError::SourceIo(e) => ProxyError::ServerAborted(e),
            StreamError::SourceTimeout => ProxyError::ServerTimeout,
            StreamError::SinkIo(e) => ProxyError::ClientAborted(e),
            StreamError::SinkTimeout => ProxyError::ClientTimeout("sending the response"),
        })?;
        o.bytes_out += moved.written;
        let reusable = server_connection_reusable(&resp, framing) == KeepAlive::KeepAlive
            && head.upgrade().is_none()
            && conn.buf.is_empty()
            && !upload_cut;
        if reusable {
            conn.reused = false;
            server.pool.put(conn);
        }
        drop(slot);
        Ok(match (keep, upload_cut) {
            (true, _) => Next::KeepAlive,
            (false, true) => Next::CloseLingering,
            (false, false) => Next::Close,
        })
    }

    /// After our side of the connection is shut down: reads and drops what
    /// the client still sends, until it closes, for at most
    /// [`LINGER_TIME`] and [`LINGER_BYTES`] (HAProxy's lingering close).
    async fn linger(&mut self) {
        let deadline = Instant::now() + LINGER_TIME;
        let mut drained = 0;
        let mut scratch = [0u8; 4096];
        while drained < LINGER_BYTES {
            match tokio::time::timeout_at(deadline, self.client.read(&mut scratch)).await {
                Ok(Ok(n)) if n > 0 => drained += n,
                _ => return,
            }
        }
    }

    /// Sends the request body while watching the server: returns true when
    /// the body was sent whole, false when the server answered (or closed)
    /// first. Interim responses that arrive meanwhile are passed on (as
    /// [`Self::read_response_head`] does) and the upload goes on; a final
    /// response stops it, and is then read as usual.
    async fn upload(
        &mut self,
        head: &RequestHead,
        decoder: &mut BodyDecoder,
        conn: &mut ServerConn,
        answered_continue: bool,
        o: &mut Outcome<'f>,
    ) -> Result<bool, StreamError> {
        let (read, write) = (
            self.fe.timeouts.client,
            o.backend.and_then(|b| b.timeouts.server),
        );
        let mut moved = super::stream::Moved::default();
        let result = loop {
            let step = upload_body(
                decoder,
                &mut self.client,
                &mut self.buf,
                &mut conn.stream,
                &mut conn.buf,
                &mut self.out,
                StreamTimeouts {
                    read,
                    write,
                    timer: &mut self.timer,
                },
                &mut moved,
            )
            .await;
            match step {
                Ok(Upload::Complete) => break Ok(true),
                Ok(Upload::ReceiverClosed) => break Ok(false),
                Ok(Upload::Answered) => {}
                Err(e) => break Err(e),
            }
            // An interim response (not 101) lets the upload go on; a final
            // one, a malformed one or a partial head... a partial head waits
            // for more bytes while the upload goes on.
            let mut peek = conn.buf.clone();
            match ResponseHead::parse_buf(&mut peek, &self.fe.limits) {
                Ok(None) => continue,
                Ok(Some(resp)) if resp.is_interim() && resp.status() != 101 => {
                    conn.buf = peek;
                    let skip = (resp.status() == 100 && answered_continue)
                        || head.version() == Version::Http10;
                    if !skip {
                        let mut interim = BytesMut::new();
                        encode_response_head(&resp, &HeadRewrite::default(), &mut interim);
                        if let Err(e) = self.write_client(&interim, o).await {
                            break Err(match e {
                                ProxyError::ClientAborted(e) => StreamError::SourceIo(e),
                                _ => StreamError::SourceTimeout,
                            });
                        }
                    }
                }
                Ok(Some(_)) | Err(_) => break Ok(false),
            }
        };
        o.bytes_in += moved.read;
        result
    }

    /// A new (not pooled) connection to the same server, after a pooled
    /// one turned out to be closed. Callers box it: its future (a connect
    /// with its timeout, maybe TLS) would otherwise make every request's
    /// boxed exchange about 700 bytes larger, for a path few requests take.
    async fn fresh_connection(
        &mut self,
        backend: &BackendCtx,
        server: usize,
        o: &mut Outcome<'f>,
    ) -> Result<ServerConn, ProxyError> {
        match backend.connect_new(server).await {
            Ok((conn, took)) => {
                o.tc = Some(took);
                backend.observe(server, Observation::ConnectOk);
                Ok(conn)
            }
            Err(e) => {
                backend.report_server_error(server, &e);
                Err(e)
            }
        }
    }

    /// Reads the final response head; interim 1xx responses are passed on
    /// (except a server's `100 Continue` when we sent our own).
    async fn read_response_head(
        &mut self,
        request: &RequestHead,
        conn: &mut ServerConn,
        server_timeout: Option<Duration>,
        answered_continue: bool,
        o: &mut Outcome<'f>,
    ) -> Result<ResponseHead, ProxyError> {
        let mut received = !conn.buf.is_empty();
        loop {
            match ResponseHead::parse_buf(&mut conn.buf, &self.fe.limits) {
                Ok(Some(resp)) if resp.is_interim() && resp.status() != 101 => {
                    if resp.status() == 100 && answered_continue {
                        continue;
                    }
                    if request.version() == Version::Http10 {
                        continue; // RFC 9110 §15.2: no 1xx to HTTP/1.0 clients
                    }
                    let mut interim = BytesMut::new();
                    encode_response_head(&resp, &HeadRewrite::default(), &mut interim);
                    self.write_client(&interim, o).await?;
                    continue;
                }
                Ok(Some(resp)) => return Ok(resp),
                Ok(None) => {}
                Err(e) => return Err(ProxyError::BadResponse(e)),
            }
            if conn.buf.capacity() - conn.buf.len() < 1024 {
                conn.buf.reserve(SERVER_BUF_SIZE);
            }
            let read = conn.stream.read_buf(&mut conn.buf);
            match self.timer.within(server_timeout, read).await {
                Err(_) => return Err(ProxyError::ServerTimeout),
                Ok(Ok(0)) | Ok(Err(_)) if !received && conn.reused => {
                    return Err(ProxyError::StaleConnection)
                }
                Ok(Ok(0)) => {
                    return Err(ProxyError::ServerAborted(
                        std::io::ErrorKind::UnexpectedEof.into(),
                    ))
                }
                Ok(Err(e)) => return Err(ProxyError::ServerAborted(e)),
                Ok(Ok(_)) => received = true,
            }
        }
    }

    async fn write_client(&mut self, bytes: &[u8], o: &mut Outcome<'f>) -> Result<(), ProxyError> {
        let write = self.client.write_all(bytes);
        match self.timer.within(self.fe.timeouts.client, write).await {
            Ok(Ok(())) => {
                o.bytes_out += bytes.len() as u64;
                Ok(())
            }
            Ok(Err(e)) => Err(ProxyError::ClientAborted(e)),
            Err(_) => Err(ProxyError::ClientTimeout("sending the response")),
        }
    }

    /// Counts a failure, answers the client if it still can, and records
    /// the termination state.
    async fn fail(&mut self, e: &ProxyError, o: &mut Outcome<'f>) {
        let fe = self.fe;
        match e.side() {
            ErrorSide::Client => {
                if let Some(c) = e.counter() {
                    fe.counters.inc(c);
                }
            }
            ErrorSide::Server => {
                // Connect failures were counted per attempt.
                if !matches!(
                    e,
                    ProxyError::Connect { .. }
                        | ProxyError::Tls { .. }
                        | ProxyError::ConnectTimeout { .. }
                ) {
                    if let (Some(b), Some(s)) = (o.backend, o.server) {
                        b.report_server_error(s, e);
                    }
                }
            }
            ErrorSide::Internal => {
                let c = e.counter().unwrap_or(Counter::Denied);
                match o.backend {
                    Some(b) => {
                        b.counters.inc(c);
                        if let (Counter::ConnectErrors, Some(s)) = (c, e.queued_server()) {
                            b.servers[s].counters.inc(c);
                        }
                    }
                    None => fe.counters.inc(c),
                }
            }
        }
        o.termination = Some(e.termination(o.phase));
        log::debug!("{} {}: {e}", fe.name, self.peer);
        if o.response_started {
            return;
        }
        if let Some(status) = e.status() {
            self.out.clear();
            write_error_response(status, &mut self.out);
            // A shutdown follows the error response.
            self.client.fin_with_next_write();
            let out = std::mem::take(&mut self.out);
            if self.write_client(&out, o).await.is_ok() {
                let _ = self.client.shutdown().await;
            }
            self.out = out;
            o.status = status;
            fe.counters.response(status);
            if let Some(b) = o.backend {
                b.counters.response(status);
            }
        }
    }

    fn count_bytes(&self, o: &Outcome<'f>) {
        self.fe.counters.add(Counter::BytesIn, o.bytes_in);
        self.fe.counters.add(Counter::BytesOut, o.bytes_out);
        if let Some(b) = o.backend {
            b.counters.add(Counter::BytesIn, o.bytes_in);
            b.counters.add(Counter::BytesOut, o.bytes_out);
            if let Some(s) = o.server {
                b.servers[s].counters.add(Counter::BytesIn, o.bytes_in);
                b.servers[s].counters.add(Counter::BytesOut, o.bytes_out);
            }
        }
    }

    /// Logs the request's access-log line. `early`: logged as the response
    /// head goes out (`option logasap`), with the bytes sent so far.
    fn log(
        &self,
        o: &Outcome<'f>,
        started: SystemTime,
        first_byte: Instant,
        head: Option<&RequestHead>,
        early: Option<u64>,
    ) {
        let Some(format) = self.fe.log_format else {
            return;
        };
        let (backend, server) = match o.backend {
            Some(b) => (
                b.name.as_str(),
                o.server.map_or("<NOSRV>", |s| b.servers[s].name.as_str()),
            ),
            None => (self.fe.name.as_str(), "<NOSRV>"),
        };
        let (method, target, version) = match head {
            Some(h) => (
                std::str::from_utf8(h.method_bytes()).unwrap_or("-"),
                std::str::from_utf8(h.target()).unwrap_or("-"),
                h.version().as_str(),
            ),
            None => ("<BADREQ>", "", ""),
        };
        emit(
            &AccessRecord {
                client: self.peer,
                started,
                frontend: &self.fe.name,
                backend,
                server,
                tq: o.tq,
                tw: o.tw,
                tc: o.tc,
                tr: o.tr,
                ta: first_byte.elapsed(),
                status: o.status,
                bytes_out: early.unwrap_or(o.bytes_out),
                logasap: early.is_some(),
                termination: o.termination.unwrap_or(*b"--"),
                fe_conn: self.fe.current_sessions.load(Ordering::Relaxed),
                be_conn: o.backend.map_or(0, |b| {
                    (0..b.servers.len()).map(|i| u64::from(b.active(i))).sum()
                }),
                srv_conn: match (o.backend, o.server) {
                    (Some(b), Some(s)) => u64::from(b.active(s)),
                    _ => 0,
                },
                retries: o.retries,
                srv_queue: match (o.backend, o.server) {
                    (Some(b), Some(s)) => b.servers[s].queued.load(Ordering::Relaxed),
                    _ => 0,
                },
                be_queue: o.backend.map_or(0, |b| b.queued.load(Ordering::Relaxed)),
                method,
                target,
                version,
            },
            format,
        );
    }
}

/// `socket.try_read_buf(buf)`, and when the read came back short of the
/// space offered (the socket is drained), the socket's readiness is cleared
/// too, as tokio's own `poll_read` does: the next wait for this socket then
/// goes straight to the event loop instead of costing a `recvfrom` that
/// returns `EAGAIN` (one per keep-alive request otherwise). Readiness is
/// cleared with the tick seen before the read, so an event that arrived
/// meanwhile is not lost; a close stays visible (closed states are never
/// cleared).
fn try_read_drained(socket: &TcpStream, buf: &mut BytesMut) -> std::io::Result<usize> {
    let mut got = None;
    let result = socket.try_io(tokio::io::Interest::READABLE, || {
        let space = buf.capacity() - buf.len();
        let n = socket.try_read_buf(buf)?;
        if 0 < n && n < space {
            // Reported as WouldBlock so that `try_io` clears the readiness.
            got = Some(n);
            return Err(std::io::ErrorKind::WouldBlock.into());
        }
        Ok(n)
    });
    match (result, got) {
        (_, Some(n)) => Ok(n),
        (r, None) => r,
    }
}

/// The `Host` for a request that has none (HTTP/1.0): the authority of an
/// absolute-form target (`http://authority/path`), else the server's
/// address, without the scheme's default port.
fn default_host(target: &[u8], server: SocketAddr, tls: bool) -> String {
    // Without userinfo (RFC 9110 §4.2.4: not sent).
    if let Some(Ok(a)) = crate::http::absolute_form_authority(target).map(std::str::from_utf8) {
        return a.to_string();
    }
    let default_port = if tls { 443 } else { 80 };
    match (server.ip(), server.port()) {
        (ip, port) if port == default_port => match ip {
            std::net::IpAddr::V4(v4) => v4.to_string(),
            std::net::IpAddr::V6(v6) => format!("[{v6}]"),
        },
        _ => server.to_string(),
    }
}

/// Polls a future, turning a panic into `Err(message)`.
struct CatchUnwind<F>(F);

impl<F: Future + Unpin> Future for CatchUnwind<F> {
    type Output = Result<F::Output, String>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<Self::Output> {
        let inner = &mut self.0;
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            std::pin::Pin::new(inner).poll(cx)
        })) {
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(panic) => Poll::Ready(Err(panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "panic".to_string()))),
        }
    }
}

/// The outgoing framing of a request body: forwarded as received.
fn request_framing_out(f: Framing) -> OutgoingBody {
    OutgoingBody::from(f)
}

/// HAProxy's pause before a connection retry on the same server:
/// min(`timeout connect`, 1 s).
fn retry_turnaround(backend: &BackendCtx) -> std::time::Duration {
    backend
        .timeouts
        .connect
        .unwrap_or(std::time::Duration::from_secs(1))
        .min(std::time::Duration::from_secs(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_exchange_becomes_an_error_not_a_crash() {
        let r = CatchUnwind(Box::pin(async {
            if std::hint::black_box(true) {
                panic!("boom");
            }
            1
        }))
        .await;
        assert_eq!(r, Err("boom".to_string()));
        let e = ProxyError::Internal("boom".into());
        assert_eq!(e.status(), Some(500));
        assert_eq!(e.termination(b'H'), *b"IH");
    }

    #[test]
    fn default_host_prefers_the_absolute_target() {
        let s: SocketAddr = "10.0.0.1:8080".parse().unwrap();
        assert_eq!(default_host(b"/a", s, false), "10.0.0.1:8080");
        assert_eq!(
            default_host(b"http://u@h.example:81/x?y", s, false),
            "h.example:81"
        );
        let s: SocketAddr = "[::1]:443".parse().unwrap();
        assert_eq!(default_host(b"/", s, true), "[::1]");
        assert_eq!(default_host(b"/", s, false), "[::1]:443");
    }
}
