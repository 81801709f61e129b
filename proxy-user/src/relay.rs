//! The TCP relay: accept, pick a server, connect (trying the next server on
//! failure), then copy bytes both ways until either side closes.
//!
//! It serves `mode tcp` frontends that XDP does not accelerate, and is the
//! fallback path of the L4 balancer.
//!
//! Plain TCP on both sides is relayed with splice(2) (see [`splice`]): the
//! bytes stay in the kernel. With TLS on either side, or when pipes cannot
//! be had, bytes are copied through userspace by `copy_bidirectional`.

mod splice;
#[cfg(test)]
mod splice_tests;

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use tokio::io::{AsyncRead, AsyncWrite};

use crate::{
    stats::{Counter, EntityCounters},
    tls::{ClientTlsStream, ServerTlsStream, TlsAcceptor, TlsConnector},
};

use tokio::{
    net::{TcpListener, TcpStream},
    sync::Semaphore,
    time::timeout,
};

/// Upper bound of concurrent client connections per relay (backpressure
/// before accept, as in mini-redis): past it, accept waits.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;

/// A stream the relay carries bytes on. Plain TCP streams say so, and a
/// connection plain on both sides is relayed with splice.
pub trait RelayIo: AsyncRead + AsyncWrite + Unpin {
    /// The socket itself, when nothing (TLS) sits between it and the bytes.
    fn plain_tcp(&mut self) -> Option<&mut TcpStream> {
        None
    }
}

impl RelayIo for TcpStream {
    fn plain_tcp(&mut self) -> Option<&mut TcpStream> {
        Some(self)
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> RelayIo for ServerTlsStream<IO> {}

impl<IO: AsyncRead + AsyncWrite + Unpin> RelayIo for ClientTlsStream<IO> {}

/// Set once pipe creation failed, so that it is logged once.
static PIPE_FAILURE_LOGGED: AtomicBool = AtomicBool::new(false);

/// Connections relayed with splice, so that tests can tell which path ran.
#[cfg(test)]
static SPLICED: AtomicUsize = AtomicUsize::new(0);

/// One server of a relay.
#[derive(Clone)]
pub struct RelayServer {
    /// Name from the config.
    pub name: String,
    /// Where to connect.
    pub addr: SocketAddr,
    /// The server's counters.
    pub counters: EntityCounters,
    /// `ssl`: talk TLS to the server.
    pub tls: Option<Arc<TlsConnector>>,
}

/// A configured relay: servers in round-robin order.
pub struct Relay {
    /// Frontend name (for logs).
    pub name: String,
    servers: Vec<RelayServer>,
    next: AtomicUsize,
    connect_timeout: Duration,
    /// The frontend's counters.
    pub frontend: EntityCounters,
    /// The backend's counters.
    pub backend: EntityCounters,
    /// Relay plain TCP with splice (`option splice-auto`).
    splice: bool,
}

impl Relay {
    /// A relay over `servers` with the given connect timeout.
    pub fn new(
        name: String,
        servers: Vec<RelayServer>,
        connect_timeout: Duration,
        frontend: EntityCounters,
        backend: EntityCounters,
    ) -> Self {
        Self {
            name,
            servers,
            next: AtomicUsize::new(0),
            connect_timeout,
            frontend,
            backend,
            splice: true,
        }
    }

    /// Whether plain TCP connections are relayed with splice (the default)
    /// or copied through userspace.
    pub fn with_splice(mut self, splice: bool) -> Self {
        self.splice = splice;
        self
    }

    /// Connects to the next server, trying each at most once.
    async fn connect(&self) -> Option<(TcpStream, &RelayServer)> {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        for i in 0..self.servers.len() {
            let server = &self.servers[(start + i) % self.servers.len()];
            server.counters.connection();
            let why = match timeout(self.connect_timeout, TcpStream::connect(server.addr)).await {
                Ok(Ok(stream)) => return Some((stream, server)),
                Ok(Err(e)) => e.to_string(),
                Err(_) => "timed out".to_string(),
            };
            server.counters.inc(Counter::ConnectErrors);
            self.backend.inc(Counter::ConnectErrors);
            log::warn!(
                "{}: connect to server {} ({}) failed: {why}",
                self.name,
                server.name,
                server.addr
            );
        }
        None
    }

    /// Relays one client connection (plain TCP, or TLS already terminated).
    pub async fn handle<C: RelayIo>(&self, mut client: C) {
        self.frontend.connection();
        self.frontend.session_started();
        self.backend.session_started();
        let Some((server, chosen)) = self.connect().await else {
            return; // dropping the client closes it: no server could be reached
        };
        let _ = server.set_nodelay(true);
        chosen.counters.session_started();
        match &chosen.tls {
            None => self.pipe(&mut client, server, chosen).await,
            Some(connector) => {
                let host = chosen.addr.ip().to_string();
                match connector.connect(server, &host).await {
                    Ok(tls) => self.pipe(&mut client, tls, chosen).await,
                    Err(e) => {
                        chosen.counters.inc(Counter::ConnectErrors);
                        self.backend.inc(Counter::ConnectErrors);
                        log::warn!("{}: TLS to server {} failed: {e}", self.name, chosen.name);
                    }
                }
            }
        }
    }

    /// Relays both ways until both sides are done (or one fails), then
    /// counts the bytes.
    async fn pipe<C: RelayIo, S: RelayIo>(
        &self,
        client: &mut C,
        mut server: S,
        chosen: &RelayServer,
    ) {
        let splice = self.splice;
        let result = match (client.plain_tcp(), server.plain_tcp()) {
            (Some(c), Some(s)) if splice => match (splice::Pipe::new(), splice::Pipe::new()) {
                (Ok(to_server), Ok(to_client)) => {
                    #[cfg(test)]
                    SPLICED.fetch_add(1, Ordering::Relaxed);
                    splice::splice_bidirectional(c, s, (to_server, to_client)).await
                }
                (Err(e), _) | (_, Err(e)) => {
                    // EMFILE/ENFILE: copying needs no extra descriptors.
                    if !PIPE_FAILURE_LOGGED.swap(true, Ordering::Relaxed) {
                        log::debug!("{}: no pipe for splice, copying instead: {e}", self.name);
                    }
                    tokio::io::copy_bidirectional(c, s).await
                }
            },
            _ => tokio::io::copy_bidirectional(client, &mut server).await,
        };
        if let Ok((to_server, to_client)) = result {
            for c in [&self.frontend, &self.backend, &chosen.counters] {
                c.add(Counter::BytesIn, to_server);
                c.add(Counter::BytesOut, to_client);
            }
        }
    }

    /// Accept loop: runs until the task is dropped.
    /// With `tls`, each connection is TLS-terminated first (`bind ... ssl`);
    /// a failed handshake is counted and logged by the acceptor and dropped.
    /// `listener` counts this bind's connections (`bind ... guid G`).
    pub async fn run(
        self: Arc<Self>,
        listener: TcpListener,
        max_connections: usize,
        tls: Option<Arc<TlsAcceptor>>,
        listener_counters: Option<EntityCounters>,
    ) {
        let limit = Arc::new(Semaphore::new(max_connections));
        loop {
            let Ok(permit) = limit.clone().acquire_owned().await else {
                return;
            };
            match listener.accept().await {
                Ok((stream, _)) => {
                    if let Some(c) = &listener_counters {
                        c.connection();
                        c.session_started();
                    }
                    let _ = stream.set_nodelay(true);
                    let relay = self.clone();
                    let tls = tls.clone();
                    tokio::spawn(async move {
                        match tls {
                            None => relay.handle(stream).await,
                            Some(acceptor) => {
                                if let Ok(tls_stream) = acceptor.accept(stream).await {
                                    relay.handle(tls_stream).await;
                                }
                            }
                        }
                        drop(permit);
                    });
                }
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    log::warn!("{}: accept failed: {e}", self.name);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn relay_carries_bytes_and_skips_a_dead_server() {
        let origin = crate::origin::serve("o".into(), &["127.0.0.1:0".parse().unwrap()])
            .await
            .unwrap()[0];
        // A port with nothing listening: bind, read the port, close.
        let dead = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap();
        let (store, _) = crate::stats::StatsStore::open(None, 0, Default::default()).unwrap();
        let local = || store.register(None, crate::stats::ObjectType::Server);
        let relay = Arc::new(Relay::new(
            "fe".into(),
            vec![
                RelayServer {
                    name: "dead".into(),
                    addr: dead,
                    counters: local(),
                    tls: None,
                },
                RelayServer {
                    name: "live".into(),
                    addr: origin,
                    counters: local(),
                    tls: None,
                },
            ],
            Duration::from_secs(1),
            local(),
            local(),
        ));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(relay.clone().run(listener, 4, None, None));
        for _ in 0..2 {
            let mut c = TcpStream::connect(addr).await.unwrap();
            c.write_all(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
                .await
                .unwrap();
            let mut out = String::new();
            c.read_to_string(&mut out).await.unwrap();
            assert!(out.ends_with("hello from o\n"), "{out}");
        }
        assert_eq!(relay.frontend.get(Counter::Sessions), 2);
        assert!(relay.backend.get(Counter::ConnectErrors) >= 1);
        assert!(relay.frontend.get(Counter::BytesOut) > 0);
    }
}
