//! Helpers for the L7 proxy tests: a recording origin server, the engine
//! started from a config text on a loopback port, and raw-socket clients.
//!
//! The origin records every byte it receives (so a test can prove what did,
//! or did not, reach a server) and counts accepted connections (pool reuse).
//! Its behaviour is chosen by the request path:
//!
//! | path | response |
//! |---|---|
//! | `/echo` | the decoded request body |
//! | `/sink` | reads the body without keeping it, answers its length |
//! | `/size/N` | N bytes, written in 64 KiB pieces |
//! | `/chunked` | a chunked body with a trailer |
//! | `/close` | a close-delimited body, then close |
//! | `/204`, `/304` | no body (304 with a Content-Length) |
//! | `/slow/MS` | waits MS milliseconds, then answers |
//! | `/broken` | Content-Length and Transfer-Encoding together (bad framing) |
//! | `/ws` | 101, then echoes bytes until EOF |
//! | `/ws-linger` | 101, echoes bytes until EOF, then sends `bye` 100 ms later and keeps its side open (half-closed tunnel, for `timeout server-fin`) |
//! | `/ws-fin` | 101, then closes its sending side at once and reads until EOF (for `timeout client-fin`) |
//! | `/interim` | a 103 Early Hints, then 200 |
//! | `/interim/MS` | a 103 Early Hints, then 200 MS milliseconds later |
//! | `/status/N` | status N with a short body |
//! | `/drip/MS` | a 10-byte body: `first` with the head, `last!` MS milliseconds later |
//! | `/badchunk` | a chunked body: the head and `5\r\nhello\r\n`, then 100 ms later a chunk size that is not hex (`zz\r\n...`) |
//! | `/badchunk-now` | a chunked 200 whose first chunk size is not hex, head and body in one write |
//!
//! A number in a path (`MS`, `N`) may be followed by anything (`/drip/300?t=a`),
//! so tests can make their paths unique.
//! | anything else | `hello from NAME METHOD PATH` |

#![allow(dead_code, reason = "each l7 test crate uses a subset of the helpers")]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use proxy_user::http::{
    response_framing_for, BodyDecoder, Framing, Limits, Method, RequestHead, ResponseHead, Side,
};
use proxy_user::proxy::{Engine, FrontendCtx};
use proxy_user::stats::{StatsStore, StoreOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Upper bound for any single client operation in these tests.
pub const IO_LIMIT: Duration = Duration::from_secs(20);

/// A recording test origin.
pub struct Origin {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its name (`x-origin` header, body text).
    pub name: String,
    accepted: Arc<AtomicUsize>,
    received: Arc<Mutex<Vec<u8>>>,
    active: Arc<AtomicUsize>,
    max_active: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Origin {
    /// Starts an origin on a free loopback port.
    pub async fn start(name: &str) -> Origin {
        Self::start_on(name, "127.0.0.1:0".parse().unwrap(), true).await
    }

    /// Starts an origin on `addr`; `record: false` keeps no bytes (large bodies).
    pub async fn start_on(name: &str, addr: SocketAddr, record: bool) -> Origin {
        let listener = TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let received = Arc::new(Mutex::new(Vec::new()));
        let active = Arc::new(AtomicUsize::new(0));
        let max_active = Arc::new(AtomicUsize::new(0));
        let state = ConnState {
            name: name.into(),
            received: record.then(|| received.clone()),
            active: active.clone(),
            max_active: max_active.clone(),
        };
        let acc = accepted.clone();
        let task = tokio::spawn(async move {
            let mut conns = Vec::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                acc.fetch_add(1, Ordering::SeqCst);
                conns.push(AbortOnDrop(tokio::spawn(serve_conn(stream, state.clone()))));
            }
        });
        Origin {
            addr,
            name: name.into(),
            accepted,
            received,
            active,
            max_active,
            task,
        }
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Every byte received so far, all connections in arrival order.
    pub fn received(&self) -> Vec<u8> {
        self.received.lock().unwrap().clone()
    }

    /// The received bytes as text.
    pub fn received_text(&self) -> String {
        String::from_utf8_lossy(&self.received()).into_owned()
    }

    /// Forgets what was received.
    pub fn clear(&self) {
        self.received.lock().unwrap().clear();
    }

    /// Most requests served at the same time.
    pub fn max_concurrent(&self) -> usize {
        self.max_active.load(Ordering::SeqCst)
    }
}

struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[derive(Clone)]
struct ConnState {
    name: Arc<str>,
    received: Option<Arc<Mutex<Vec<u8>>>>,
    active: Arc<AtomicUsize>,
    max_active: Arc<AtomicUsize>,
}

async fn read_more(stream: &mut TcpStream, buf: &mut BytesMut, st: &ConnState) -> usize {
    buf.reserve(64 * 1024);
    let before = buf.len();
    let n = stream.read_buf(buf).await.unwrap_or(0);
    if let Some(r) = &st.received {
        r.lock().unwrap().extend_from_slice(&buf[before..]);
    }
    n
}

async fn serve_conn(mut stream: TcpStream, st: ConnState) {
    let _ = stream.set_nodelay(true);
    let limits = Limits {
        require_host: false,
        ..Limits::default()
    };
    let mut buf = BytesMut::new();
    loop {
        let head = loop {
            match RequestHead::parse_buf(&mut buf, &limits) {
                Ok(Some(h)) => break h,
                Ok(None) => {}
                Err(_) => {
                    let _ = stream
                        .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                        .await;
                    return;
                }
            }
            if read_more(&mut stream, &mut buf, &st).await == 0 {
                return;
            }
        };
        let now = st.active.fetch_add(1, Ordering::SeqCst) + 1;
        st.max_active.fetch_max(now, Ordering::SeqCst);
        let keep = serve_request(&mut stream, &mut buf, &head, &st).await;
        st.active.fetch_sub(1, Ordering::SeqCst);
        if !keep {
            return;
        }
    }
}

/// Reads the request body; keeps it unless `keep` is false. Returns (body, length).
async fn read_body(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    framing: Framing,
    keep: bool,
    st: &ConnState,
) -> Option<(Vec<u8>, u64)> {
    let mut dec = BodyDecoder::new(framing, Side::Client, &Limits::default());
    let mut body = Vec::new();
    loop {
        let step = dec.decode(buf).ok()?;
        if keep {
            body.extend_from_slice(&buf[step.data.clone()]);
        }
        let _ = buf.split_to(step.consumed);
        if step.done {
            return Some((body, dec.body_len()));
        }
        if step.consumed == 0 && read_more(stream, buf, st).await == 0 {
            return None;
        }
    }
}

async fn serve_request(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    head: &RequestHead,
    st: &ConnState,
) -> bool {
    let path = String::from_utf8_lossy(head.target()).into_owned();
    let method = String::from_utf8_lossy(head.method_bytes()).into_owned();
    let is_head = head.method() == Method::Head;
    let name = &st.name;
    let sink = path == "/sink";
    let Some((body, body_len)) = read_body(stream, buf, head.framing(), !sink, st).await else {
        return false;
    };
    let plain = |status: &str, body: &[u8]| {
        let mut r = format!(
            "HTTP/1.1 {status}\r\ncontent-length: {}\r\nx-origin: {name}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        if !is_head {
            r.extend_from_slice(body);
        }
        r
    };
    let reply: Vec<u8> = if path == "/echo" {
        plain("200 OK", &body)
    } else if sink {
        plain("200 OK", body_len.to_string().as_bytes())
    } else if let Some(n) = path.strip_prefix("/size/") {
        let n: u64 = n.parse().unwrap_or(0);
        let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {n}\r\nx-origin: {name}\r\n\r\n");
        if stream.write_all(head.as_bytes()).await.is_err() {
            return false;
        }
        let block = vec![b'x'; 64 * 1024];
        let mut left = if is_head { 0 } else { n };
        while left > 0 {
            let k = left.min(block.len() as u64) as usize;
            if stream.write_all(&block[..k]).await.is_err() {
                return false;
            }
            left -= k as u64;
        }
        return true;
    } else if path == "/chunked" {
        format!(
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nx-origin: {name}\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\nx-trailer: yes\r\n\r\n"
        )
        .into_bytes()
    } else if path == "/close" {
        let r = format!("HTTP/1.1 200 OK\r\nx-origin: {name}\r\n\r\nclose-delimited body");
        let _ = stream.write_all(r.as_bytes()).await;
        let _ = stream.shutdown().await;
        return false;
    } else if path == "/204" {
        format!("HTTP/1.1 204 No Content\r\nx-origin: {name}\r\n\r\n").into_bytes()
    } else if path == "/304" {
        format!("HTTP/1.1 304 Not Modified\r\ncontent-length: 10\r\nx-origin: {name}\r\n\r\n")
            .into_bytes()
    } else if let Some(ms) = path.strip_prefix("/slow/") {
        tokio::time::sleep(Duration::from_millis(ms.parse().unwrap_or(0))).await;
        plain("200 OK", format!("slow from {name}").as_bytes())
    } else if path == "/broken" {
        b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n"
            .to_vec()
    } else if path == "/ws" && head.upgrade().is_some() {
        let r =
            "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n";
        if stream.write_all(r.as_bytes()).await.is_err() {
            return false;
        }
        if !buf.is_empty() {
            let pending = buf.split();
            let _ = stream.write_all(&pending).await;
        }
        let mut b = vec![0u8; 4096];
        loop {
            match stream.read(&mut b).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => {
                    if stream.write_all(&b[..n]).await.is_err() {
                        return false;
                    }
                }
            }
        }
    } else if path == "/ws-linger" && head.upgrade().is_some() {
        let r =
            "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n";
        if stream.write_all(r.as_bytes()).await.is_err() {
            return false;
        }
        let mut b = vec![0u8; 4096];
        loop {
            match stream.read(&mut b).await {
                Ok(0) => break,
                Err(_) => return false,
                Ok(n) => {
                    if stream.write_all(&b[..n]).await.is_err() {
                        return false;
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let _ = stream.write_all(b"bye").await;
        // Our side stays open: only the proxy may end the tunnel now.
        tokio::time::sleep(IO_LIMIT).await;
        return false;
    } else if path == "/ws-fin" && head.upgrade().is_some() {
        let r =
            "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n";
        if stream.write_all(r.as_bytes()).await.is_err() {
            return false;
        }
        let _ = stream.shutdown().await;
        buf.clear();
        while read_more(stream, buf, st).await > 0 {
            buf.clear();
        }
        return false;
    } else if let Some(ms) = path.strip_prefix("/interim/") {
        let hints = b"HTTP/1.1 103 Early Hints\r\nlink: </style.css>\r\n\r\n";
        if stream.write_all(hints).await.is_err() {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(leading_number(ms))).await;
        plain("200 OK", b"after hints")
    } else if let Some(code) = path.strip_prefix("/status/") {
        let code: u16 = leading_number(code);
        plain(
            &format!("{code} Status"),
            format!("status {code}").as_bytes(),
        )
    } else if let Some(ms) = path.strip_prefix("/drip/") {
        let r = format!("HTTP/1.1 200 OK\r\ncontent-length: 10\r\nx-origin: {name}\r\n\r\nfirst");
        if stream.write_all(r.as_bytes()).await.is_err() {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(leading_number(ms))).await;
        return stream.write_all(b"last!").await.is_ok();
    } else if path == "/badchunk-now" {
        // Head and a broken chunk size in one write: nothing valid to forward.
        let r = format!(
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nx-origin: {name}\r\n\r\nzz\r\nbroken\r\n0\r\n\r\n"
        );
        let _ = stream.write_all(r.as_bytes()).await;
        return false;
    } else if path == "/badchunk" {
        let r = format!(
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nx-origin: {name}\r\n\r\n5\r\nhello\r\n"
        );
        if stream.write_all(r.as_bytes()).await.is_err() {
            return false;
        }
        // The valid part goes out first, on its own.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let _ = stream.write_all(b"zz\r\nbroken\r\n0\r\n\r\n").await;
        return false;
    } else if path == "/interim" {
        let mut r = b"HTTP/1.1 103 Early Hints\r\nlink: </style.css>\r\n\r\n".to_vec();
        r.extend_from_slice(&plain("200 OK", b"after hints"));
        r
    } else {
        plain(
            "200 OK",
            format!("hello from {name} {method} {path}").as_bytes(),
        )
    };
    stream.write_all(&reply).await.is_ok()
}

/// The digits at the start of `s` as a number (0 if none).
fn leading_number<T: std::str::FromStr + Default>(s: &str) -> T {
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    s[..end].parse().unwrap_or_default()
}

/// The engine serving frontend `fe` of `cfg` on a loopback port.
pub struct Proxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    /// The engine (backend contexts, health checkers).
    pub engine: Engine,
    /// The frontend's context (counters).
    pub frontend: Arc<FrontendCtx>,
    _stats: StatsStore,
}

/// Starts the engine on `cfg` (a whole config text; its frontend must be
/// called `fe`; its bind address is ignored). Counters go to the config's
/// `shm-stats-file` when it sets one (entities with a `guid`), as in `weir run`.
pub async fn start_proxy(cfg: &str) -> Proxy {
    start_proxy_with(cfg, Limits::default()).await
}

/// [`start_proxy`] with other codec limits.
pub async fn start_proxy_with(cfg: &str, limits: Limits) -> Proxy {
    let (cfg, _) =
        proxy_user::config::parse_str(cfg, "l7-test.cfg").unwrap_or_else(|e| panic!("{e}"));
    let (stats, _) = StatsStore::open(
        cfg.global.shm_stats_file.as_deref(),
        cfg.global.shm_stats_file_max_objects.unwrap_or(0).into(),
        StoreOptions {
            fail_on_bad_file: true,
            ..StoreOptions::default()
        },
    )
    .unwrap();
    let engine = Engine::start_with_limits(&cfg, limits, &mut |e| {
        stats.register(e.guid(), e.object_type())
    })
    .unwrap();
    let frontend = engine.frontend("fe").expect("frontend fe");
    let addr = proxy_user::proxy::listen("127.0.0.1:0".parse().unwrap(), frontend.clone())
        .await
        .unwrap();
    Proxy {
        addr,
        engine,
        frontend,
        _stats: stats,
    }
}

/// A response as a raw client saw it.
#[derive(Debug)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// The head, as text.
    pub head: String,
    /// The body bytes as received (chunked framing included).
    pub raw_body: Vec<u8>,
    /// The decoded body.
    pub body: Vec<u8>,
}

impl Response {
    /// A header's value (first occurrence).
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A raw keep-alive client connection.
pub struct Client {
    /// The socket.
    pub stream: TcpStream,
    buf: BytesMut,
}

impl Client {
    /// Connects to `addr`.
    pub async fn connect(addr: SocketAddr) -> Client {
        Self::connect_checked(addr).await.unwrap()
    }

    /// Connects to `addr`; an error if nothing listens there (yet).
    pub async fn connect_checked(addr: SocketAddr) -> std::io::Result<Client> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Client {
            stream,
            buf: BytesMut::new(),
        })
    }

    /// Writes raw bytes.
    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// Reads one response (skipping interim 1xx ones unless `keep_interim`);
    /// `head_request` for responses to HEAD. `None` when the connection closed first.
    pub async fn response_to(&mut self, method: Method) -> Option<Response> {
        tokio::time::timeout(IO_LIMIT, self.read_response(method))
            .await
            .expect("response within the time limit")
    }

    /// [`Client::response_to`] a GET.
    pub async fn response(&mut self) -> Option<Response> {
        self.response_to(Method::Get).await
    }

    async fn fill(&mut self) -> usize {
        self.buf.reserve(64 * 1024);
        self.stream.read_buf(&mut self.buf).await.unwrap_or(0)
    }

    async fn read_response(&mut self, method: Method) -> Option<Response> {
        let limits = Limits::default();
        let head = loop {
            match ResponseHead::parse_buf(&mut self.buf, &limits).expect("valid response head") {
                Some(h) if h.is_interim() && h.status() != 101 => continue,
                Some(h) => break h,
                None => {
                    if self.fill().await == 0 {
                        return None;
                    }
                }
            }
        };
        let framing = response_framing_for(method, true, &head).expect("valid response framing");
        let framing = if framing == Framing::Tunnel {
            Framing::Empty
        } else {
            framing
        };
        let mut dec = BodyDecoder::new(framing, Side::Server, &limits);
        let (mut raw_body, mut body) = (Vec::new(), Vec::new());
        loop {
            let step = dec.decode(&self.buf).expect("valid response body");
            raw_body.extend_from_slice(&self.buf[..step.consumed]);
            body.extend_from_slice(&self.buf[step.data.clone()]);
            let _ = self.buf.split_to(step.consumed);
            if step.done {
                break;
            }
            if step.consumed == 0 && self.fill().await == 0 {
                dec.finish().expect("complete body");
                break;
            }
        }
        Some(Response {
            status: head.status(),
            head: String::from_utf8_lossy(head.raw()).into_owned(),
            raw_body,
            body,
        })
    }

    /// Sends a GET for `path` (keep-alive) and reads the response.
    pub async fn get(&mut self, path: &str) -> Response {
        self.send(format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes())
            .await;
        self.response().await.expect("a response")
    }

    /// True when the proxy closed the connection (EOF with nothing pending).
    pub async fn is_closed(&mut self) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        matches!(
            tokio::time::timeout(Duration::from_secs(5), self.fill()).await,
            Ok(0)
        )
    }

    /// Bytes read but not parsed yet.
    pub fn pending(&self) -> &[u8] {
        &self.buf
    }
}

/// Sends `request` on a new connection and reads until the proxy closes.
pub async fn send_raw(addr: SocketAddr, request: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(IO_LIMIT, s.read_to_end(&mut out)).await;
    out
}

/// A port with nothing listening.
pub async fn dead_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
}

/// Access-log lines captured by [`capture_access_log`].
static ACCESS_LINES: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Keeps the `access` target's lines in [`ACCESS_LINES`] (one logger for
/// the whole test binary: tests find their lines by a unique path).
struct CaptureAccessLog;

impl log::Log for CaptureAccessLog {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.target() == "access"
    }
    fn log(&self, r: &log::Record<'_>) {
        if r.target() == "access" {
            ACCESS_LINES.lock().unwrap().push(r.args().to_string());
        }
    }
    fn flush(&self) {}
}

/// Captures the access log of this test binary from now on (idempotent).
pub fn capture_access_log() {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        log::set_logger(&CaptureAccessLog).expect("no other logger in this test binary");
        log::set_max_level(log::LevelFilter::Info);
    });
}

/// The captured access-log lines that contain `marker`.
pub fn lines_with(marker: &str) -> Vec<String> {
    ACCESS_LINES
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains(marker))
        .cloned()
        .collect()
}
