//! Backends and servers: pick a server (balancer + health + `maxconn`),
//! wait in the backend queue when every usable server is full, and get a
//! connection (pooled, or a new one within `timeout connect`).
//!
//! Retries and `option redispatch` are driven by the session
//! ([`super::session`]), which knows whether the request can still be sent
//! again; this module supplies the steps.

use std::net::SocketAddr;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::BytesMut;
use tokio::net::TcpStream;

use crate::uring::UringStream;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::balance::{ConnGuard, HashOn, SelectKey, ServerIdx, SharedBalancer};
use crate::config::{HttpRequestRule, Timeouts};
use crate::health::checker::HealthHandle;
use crate::stats::{Counter, EntityCounters};
use crate::tls::TlsConnector;

use super::error::ProxyError;
use super::pool::{Pool, ServerConn, ServerStream};

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
    /// `maxconn`: concurrent requests at most; more wait in the queue.
    pub maxconn: Option<u32>,
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
    /// Requests waiting in the queue now (process-local gauge).
    pub queued: AtomicU64,
    /// Woken whenever a request releases a server slot.
    pub(crate) released: Notify,
}

/// A request counted against a server (`maxconn`, `leastconn`) until dropped.
#[derive(Debug)]
pub struct ServerSlot {
    _guard: ConnGuard,
    backend: Arc<BackendCtx>,
    /// The server's index.
    pub server: ServerIdx,
}

impl Drop for ServerSlot {
    fn drop(&mut self) {
        self.backend.released.notify_one();
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

    /// Does server `i` have room under its `maxconn`?
    fn has_room(&self, i: ServerIdx) -> bool {
        self.servers[i]
            .maxconn
            .is_none_or(|m| self.balancer.conns().active(i) < m)
    }

    /// In-flight requests on server `i`.
    pub fn active(&self, i: ServerIdx) -> u32 {
        self.balancer.conns().active(i)
    }

    /// Picks a server for a request and counts the request against it,
    /// skipping `excluded` (servers that already failed this request). When
    /// every usable server is full, waits in the queue for `timeout queue`
    /// (`timeout connect` if unset, like HAProxy).
    pub async fn acquire(
        self: &Arc<Self>,
        key: SelectKey<'_>,
        excluded: &[ServerIdx],
    ) -> Result<(ServerSlot, Duration), ProxyError> {
        // The clock is read only if the request has to wait.
        let mut started: Option<Instant> = None;
        let mut deadline = None;
        loop {
            let released = self.released.notified();
            let mut released = pin!(released);
            released.as_mut().enable();
            let pick = self.balancer.select(key, |i| {
                self.is_up(i) && !excluded.contains(&i) && self.has_room(i)
            });
            if let Some(server) = pick {
                let guard = self.balancer.conns().acquire(server);
                return Ok((
                    ServerSlot {
                        _guard: guard,
                        backend: self.clone(),
                        server,
                    },
                    started.map_or(Duration::ZERO, |t| t.elapsed()),
                ));
            }
            let usable = (0..self.servers.len()).any(|i| self.is_up(i) && !excluded.contains(&i));
            if !usable {
                return Err(ProxyError::NoServer);
            }
            let deadline = *deadline.get_or_insert_with(|| {
                *started.get_or_insert_with(Instant::now)
                    + self
                        .timeouts
                        .queue
                        .or(self.timeouts.connect)
                        .unwrap_or(DEFAULT_CONNECT_TIMEOUT)
            });
            self.queued.fetch_add(1, Ordering::Relaxed);
            let woke = tokio::time::timeout_at(deadline, released).await;
            self.queued.fetch_sub(1, Ordering::Relaxed);
            if woke.is_err() {
                return Err(ProxyError::QueueTimeout);
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

    /// Feeds a failure seen on live traffic to the health checker and counts it.
    pub fn report_server_error(&self, i: ServerIdx, err: &ProxyError) {
        let server = &self.servers[i];
        if let Some(c) = err.counter() {
            server.counters.inc(c);
            self.counters.inc(c);
        }
        if let (Some(t), Some(h)) = (server.check_index, self.health.get()) {
            h.report_passive_error(t, &err.to_string());
        }
    }

    /// A successful exchange with server `i` (ends a passive error streak).
    pub fn report_server_success(&self, i: ServerIdx) {
        if let (Some(t), Some(h)) = (self.servers[i].check_index, self.health.get()) {
            h.report_passive_success(t);
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
