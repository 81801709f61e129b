//! Backends and servers: pick a server (balancer + health + `maxconn`),
//! wait in a queue when the pick is full ([`super::queue`]), and get a
//! connection (pooled, or a new one within `timeout connect`).
//!
//! Retries and `option redispatch` are driven by the session
//! ([`super::session`]), which knows whether the request can still be sent
//! again; this module supplies the steps.

use std::cell::Cell;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::BytesMut;
use tokio::net::TcpStream;

use crate::uring::UringStream;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::balance::{Choice, ConnGuard, HashOn, SelectKey, ServerIdx, SharedBalancer};
use crate::config::{HttpRequestRule, Timeouts};
use crate::health::checker::HealthHandle;
use crate::health::passive::Observation;
use crate::stats::{Counter, EntityCounters};
use crate::tls::TlsConnector;

use super::error::ProxyError;
use super::pool::{Pool, ServerConn, ServerStream};
use super::queue::{Enqueued, Place, Queues};

/// Connect timeout when neither the backend nor `defaults` set one.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Read buffer allocated per server connection.
pub const SERVER_BUF_SIZE: usize = 8 * 1024;

/// One server of a backend, as the engine uses it.
#[derive(Debug)]
pub struct ServerCtx {
    /// Config name.
    pub name: String,
    /// Where to connect.
    pub addr: SocketAddr,
    /// `maxconn`: concurrent requests at most; more wait in a queue.
    pub maxconn: Option<u32>,
    /// `on-marked-down shutdown-sessions`: exchanges in flight are cut off
    /// when health checks mark the server DOWN.
    pub shutdown_sessions_on_down: bool,
    /// Notified (all waiters) when health checks mark the server DOWN.
    pub marked_down: Notify,
    /// `maxqueue`: requests waiting in this server's own queue at most;
    /// `None`: unlimited.
    pub maxqueue: Option<u32>,
    /// Requests waiting in this server's own queue now (a hash algorithm
    /// chose this server and it was full). A gauge for metrics; its
    /// in-flight count is [`BackendCtx::active`].
    pub queued: AtomicU64,
    /// Index of this server among the health checker's targets (servers
    /// with `check`); `None`: not checked, always considered UP.
    pub check_index: Option<usize>,
    /// Stats counters of this server.
    pub counters: EntityCounters,
    /// Idle keep-alive connections to this server (plain or TLS).
    pub pool: Pool,
    /// `ssl`: TLS origination (built once at engine start; its session
    /// cache lets reconnects resume). `None`: plain TCP.
    pub tls: Option<TlsConnector>,
}

/// One backend, as the engine uses it.
#[derive(Debug)]
pub struct BackendCtx {
    /// Config name.
    pub name: String,
    /// Balancer over the UP servers (rebuilt on health changes).
    pub balancer: SharedBalancer,
    /// What the algorithm hashes, for `source`/`uri`/`hdr()`.
    pub hash_on: Option<HashOn>,
    /// Servers, in config order (the balancer's indexes).
    pub servers: Vec<ServerCtx>,
    /// Health of the checked servers, once the checker runs.
    pub health: OnceLock<HealthHandle>,
    /// Timeouts (connect, server, queue, tunnel matter here).
    pub timeouts: Timeouts,
    /// `retries`.
    pub retries: u32,
    /// `option redispatch`.
    pub redispatch: bool,
    /// `option forwardfor [...]`.
    pub forwardfor: Option<crate::config::ForwardFor>,
    /// The backend's `http-request` rules.
    pub http_request: Vec<HttpRequestRule>,
    /// Stats counters of this backend.
    pub counters: EntityCounters,
    /// Requests waiting in the backend queue now (for any server): a gauge
    /// for metrics. Per server: [`ServerCtx::queued`]; every queue
    /// together: [`BackendCtx::waiting`].
    pub queued: AtomicU64,
    /// Requests waiting in any queue of this backend: the one atomic the
    /// no-queue fast path reads.
    pub(crate) waiting: AtomicUsize,
    /// Bumped (under the queue lock) on every health change, so a request
    /// that chose before it re-checks instead of queueing on a stale pick.
    pub(crate) generation: AtomicU64,
    /// The backend queue and the servers' queues.
    pub(crate) queues: Mutex<Queues>,
}

/// A request counted against a server (`maxconn`, `leastconn`) until
/// dropped; dropping it hands the slot to the oldest eligible waiter.
#[derive(Debug)]
pub struct ServerSlot {
    guard: Option<ConnGuard>,
    backend: Arc<BackendCtx>,
    /// The server's index.
    pub server: ServerIdx,
}

impl ServerSlot {
    pub(crate) fn new(backend: Arc<BackendCtx>, server: ServerIdx, guard: ConnGuard) -> Self {
        Self {
            guard: Some(guard),
            backend,
            server,
        }
    }

    /// The count, taken out so that dropping the slot no longer releases it.
    pub(crate) fn take_guard(&mut self) -> Option<ConnGuard> {
        self.guard.take()
    }
}

impl Drop for ServerSlot {
    fn drop(&mut self) {
        if let Some(guard) = self.guard.take() {
            self.backend.release(self.server, guard);
        }
    }
}

impl BackendCtx {
    /// Is server `i` UP (unchecked servers always are)?
    pub fn is_up(&self, i: ServerIdx) -> bool {
        match (self.servers[i].check_index, self.health.get()) {
            (Some(t), Some(h)) => h.is_up(t),
            _ => true,
        }
    }

    /// In-flight requests on server `i` (what `maxconn` limits).
    pub fn active(&self, i: ServerIdx) -> u32 {
        self.balancer.conns().active(i)
    }

    /// Requests waiting in any queue of this backend (backend queue and
    /// every server's own queue).
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Picks a server for a request and counts the request against it,
    /// skipping `excluded` (servers that already failed this request).
    /// When the pick is full the request waits, in arrival order, in the
    /// pick's own queue (hashing) or the backend queue (the others), for
    /// `timeout queue` (`timeout connect` if unset, like HAProxy). Returns
    /// the slot and how long it waited.
    pub async fn acquire(
        self: &Arc<Self>,
        key: SelectKey<'_>,
        excluded: &[ServerIdx],
    ) -> Result<(ServerSlot, Duration), ProxyError> {
        let usable = |i| self.is_up(i) && !excluded.contains(&i);
        // The clock is read only if the request has to wait.
        let mut started: Option<Instant> = None;
        let mut seq = None;
        let waited = |started: Option<Instant>| started.map_or(Duration::ZERO, |t| t.elapsed());
        loop {
            let generation = self.generation.load(Ordering::SeqCst);
            let taken = Cell::new(None);
            let place = match self
                .balancer
                .choose(key, usable, |i| self.take_new(i, &taken))
            {
                Choice::Server(server) => {
                    let guard = taken.take().expect("choose reserved a slot");
                    let slot = ServerSlot::new(self.clone(), server, guard);
                    return Ok((slot, waited(started)));
                }
                Choice::NoServer => return Err(ProxyError::NoServer),
                Choice::ServerQueue(s) => Place::Server(s),
                Choice::BackendQueue => Place::Backend,
            };
            let deadline = *started.get_or_insert_with(Instant::now)
                + self
                    .timeouts
                    .queue
                    .or(self.timeouts.connect)
                    .unwrap_or(DEFAULT_CONNECT_TIMEOUT);
            let queued_on = match place {
                Place::Server(s) => Some(s),
                Place::Backend => None,
            };
            let (ticket, mut wake) = match self.enqueue(place, &mut seq, generation, excluded) {
                Enqueued::Waiting(ticket, wake) => (ticket, wake),
                Enqueued::Stale => continue,
                Enqueued::Full(server) => return Err(ProxyError::QueueFull { server }),
            };
            match tokio::time::timeout_at(deadline, &mut wake).await {
                Ok(Ok(Some(slot))) => {
                    ticket.woken();
                    return Ok((slot, waited(started)));
                }
                // Told to choose again (keeping its place in line).
                Ok(Ok(None)) | Ok(Err(_)) => ticket.woken(),
                Err(_) => {
                    drop(ticket);
                    // Handed a slot just as the wait ended: use it.
                    if let Ok(Some(slot)) = wake.try_recv() {
                        return Ok((slot, waited(started)));
                    }
                    return Err(ProxyError::QueueTimeout { server: queued_on });
                }
            }
        }
    }

    /// A connection to server `i`: a live pooled one, else a new one.
    pub async fn connect(&self, i: ServerIdx) -> Result<(ServerConn, Duration), ProxyError> {
        if let Some(conn) = self.servers[i].pool.take() {
            return Ok((conn, Duration::ZERO));
        }
        self.connect_new(i).await
    }

    /// A new connection to server `i`, within `timeout connect`.
    pub async fn connect_new(&self, i: ServerIdx) -> Result<(ServerConn, Duration), ProxyError> {
        let server = &self.servers[i];
        let started = Instant::now();
        let limit = self.timeouts.connect.unwrap_or(DEFAULT_CONNECT_TIMEOUT);
        server.counters.connection();
        // Plain servers on an io_uring thread connect through the ring.
        if server.tls.is_none() && crate::uring::here() {
            let stream =
                connect_within(limit, &server.name, UringStream::connect(server.addr)).await?;
            return Ok((
                ServerConn {
                    stream: ServerStream::Uring(stream),
                    buf: BytesMut::with_capacity(SERVER_BUF_SIZE),
                    reused: false,
                },
                started.elapsed(),
            ));
        }
        let tcp = connect_within(limit, &server.name, TcpStream::connect(server.addr)).await?;
        let _ = tcp.set_nodelay(true);
        let stream = match &server.tls {
            None => ServerStream::Plain(tcp),
            // The handshake has its own limit (the connector's, set to
            // `timeout connect` by the engine) and its failures are counted
            // per cause in the connector's counters. Without `sni` the
            // server's IP address is verified (and no SNI is sent).
            Some(connector) => match connector.connect(tcp, &server.addr.ip().to_string()).await {
                Ok(tls) => ServerStream::from(tls),
                Err(source) => {
                    return Err(ProxyError::Tls {
                        server: server.name.clone(),
                        source,
                    })
                }
            },
        };
        Ok((
            ServerConn {
                stream,
                buf: BytesMut::with_capacity(SERVER_BUF_SIZE),
                reused: false,
            },
            started.elapsed(),
        ))
    }

    /// Counts a failure seen on live traffic to server `i` and feeds it to
    /// passive health.
    pub fn report_server_error(&self, i: ServerIdx, err: &ProxyError) {
        let server = &self.servers[i];
        if let Some(c) = err.counter() {
            server.counters.inc(c);
            self.counters.inc(c);
        }
        if let Some(o) = err.observation() {
            self.observe(i, o);
        }
    }

    /// Feeds one event of live traffic to server `i` to passive health
    /// (`observe`); cheap when the server does not observe.
    pub fn observe(&self, i: ServerIdx, observation: Observation) {
        if let (Some(t), Some(h)) = (self.servers[i].check_index, self.health.get()) {
            h.observe(t, observation);
        }
    }

    /// Counts a retry (and a redispatch when it moves to another server).
    pub fn count_retry(&self, i: ServerIdx, redispatched: bool) {
        self.counters.inc(Counter::Retries);
        self.servers[i].counters.inc(Counter::Retries);
        if redispatched {
            self.counters.inc(Counter::Redispatches);
            self.servers[i].counters.inc(Counter::Redispatches);
        }
    }
}

/// A connect to server `name` within `limit`, its failures as proxy errors.
async fn connect_within<T>(
    limit: Duration,
    name: &str,
    connect: impl std::future::Future<Output = std::io::Result<T>>,
) -> Result<T, ProxyError> {
    match tokio::time::timeout(limit, connect).await {
        Ok(Ok(socket)) => Ok(socket),
        Ok(Err(source)) => Err(ProxyError::Connect {
            server: name.into(),
            source,
        }),
        Err(_) => Err(ProxyError::ConnectTimeout {
            server: name.into(),
        }),
    }
}
