//! TLS termination: [`TlsAcceptor`] turns an accepted TCP stream into a
//! [`ServerTlsStream`], with SNI certificate selection and hot reload.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::server::{Acceptor, ProducesTickets, ServerSessionMemoryCache, StoresServerSessions};
use rustls::{HandshakeKind, ServerConfig};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::LazyConfigAcceptor;

use super::certs::{normalize_name, CertInfo, CertStore, SniResolver};
use super::counters::{FailureCause, TlsCounters};
use super::error::{rustls_error, TlsAcceptError, TlsConfigError};
use super::settings::TlsServerSettings;
use super::{alpn_protocols, crypto_provider, protocol_versions};

/// A server-side TLS stream (what `accept` returns).
pub type ServerTlsStream<IO> = tokio_rustls::server::TlsStream<IO>;

/// Everything a reload replaces at once.
#[derive(Debug)]
struct Active {
    config: Arc<ServerConfig>,
    store: Arc<CertStore>,
    strict_sni: bool,
    handshake_timeout: Duration,
}

/// TLS termination for one `bind ... ssl` listener. Cheap to share behind an
/// `Arc`; `accept` and `reload` may run concurrently.
pub struct TlsAcceptor {
    active: ArcSwap<Active>,
    settings: Mutex<TlsServerSettings>,
    /// Kept across reloads so tickets and cached sessions stay valid.
    ticketer: Option<Arc<dyn ProducesTickets>>,
    session_cache: Option<Arc<dyn StoresServerSessions>>,
    counters: Arc<TlsCounters>,
}

impl std::fmt::Debug for TlsAcceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsAcceptor")
            .field("certificates", &self.certificates().len())
            .finish_non_exhaustive()
    }
}

impl TlsAcceptor {
    /// Loads the certificates and builds the listener's TLS configuration.
    /// Errors name the offending file or keyword.
    pub fn new(settings: TlsServerSettings) -> Result<Self, TlsConfigError> {
        let ticketer = if settings.session_tickets {
            // Rotates its key every 6 h; tickets are accepted for 12 h.
            Some(rustls::crypto::aws_lc_rs::Ticketer::new()?)
        } else {
            None
        };
        let session_cache: Option<Arc<dyn StoresServerSessions>> =
            if settings.session_cache_size > 0 {
                Some(ServerSessionMemoryCache::new(settings.session_cache_size))
            } else {
                None
            };
        let active = build_active(&settings, ticketer.as_ref(), session_cache.as_ref())?;
        Ok(Self {
            active: ArcSwap::from_pointee(active),
            settings: Mutex::new(settings),
            ticketer,
            session_cache,
            counters: Arc::new(TlsCounters::default()),
        })
    }

    /// Handshake counters and per-cause failure counts.
    pub fn counters(&self) -> &Arc<TlsCounters> {
        &self.counters
    }

    /// The certificates now served, default first.
    pub fn certificates(&self) -> Vec<CertInfo> {
        self.active.load().store.infos()
    }

    /// The rustls configuration new handshakes use now.
    pub fn server_config(&self) -> Arc<ServerConfig> {
        self.active.load().config.clone()
    }

    /// Re-reads the configured `crt` paths and swaps the new certificates in
    /// for new handshakes. Established connections keep theirs. On error
    /// nothing changes and the error names the file.
    pub fn reload(&self) -> Result<(), TlsConfigError> {
        let settings = self.lock_settings().clone();
        self.reconfigure(settings)
    }

    /// Like [`reload`](Self::reload) with new settings (a config reload that
    /// changed `crt`, `alpn`, versions or `strict-sni`). Ticket keys and the
    /// session cache are kept; their sizes/switches are fixed at `new`.
    pub fn reconfigure(&self, settings: TlsServerSettings) -> Result<(), TlsConfigError> {
        let mut current = self.lock_settings();
        match build_active(
            &settings,
            self.ticketer.as_ref(),
            self.session_cache.as_ref(),
        ) {
            Ok(active) => {
                self.active.store(Arc::new(active));
                *current = settings;
                self.counters
                    .reloads_ok
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                log::info!(
                    "tls certificates reloaded: {} certificate(s)",
                    self.active.load().store.infos().len()
                );
                Ok(())
            }
            Err(e) => {
                self.counters
                    .reloads_failed
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                log::error!("tls reload refused, previous certificates kept: {e}");
                Err(e)
            }
        }
    }

    fn lock_settings(&self) -> std::sync::MutexGuard<'_, TlsServerSettings> {
        // The settings are only replaced whole; a poisoned lock still holds a
        // consistent value.
        self.settings.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs the server side of the handshake on `io` (usually the accepted
    /// `TcpStream`), within the handshake timeout. On failure the cause is
    /// counted, logged (rate-limited) and returned; dropping the error closes
    /// the connection.
    pub async fn accept<IO>(&self, io: IO) -> Result<ServerTlsStream<IO>, TlsAcceptError>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let active = self.active.load_full();
        let timeout = active.handshake_timeout;
        let result = match tokio::time::timeout(timeout, handshake(&active, io)).await {
            Ok(r) => r,
            Err(_) => Err(TlsAcceptError::Timeout(timeout)),
        };
        match &result {
            Ok(stream) => {
                let resumed = stream.get_ref().1.handshake_kind() == Some(HandshakeKind::Resumed);
                self.counters.success(resumed);
            }
            Err(e) => self.counters.failure(accept_cause(e), "client", e),
        }
        result
    }
}

fn accept_cause(e: &TlsAcceptError) -> FailureCause {
    match e {
        TlsAcceptError::Timeout(_) => FailureCause::Timeout,
        TlsAcceptError::NotTls(_) => FailureCause::NotTls,
        TlsAcceptError::UnknownSni(_) => FailureCause::UnknownSni,
        TlsAcceptError::Incompatible(_) => FailureCause::Incompatible,
        TlsAcceptError::PeerAlert(_) => FailureCause::PeerAlert,
        TlsAcceptError::Closed(_) => FailureCause::Closed,
        TlsAcceptError::Protocol(_) | TlsAcceptError::Io(_) => FailureCause::Other,
    }
}

async fn handshake<IO>(active: &Active, io: IO) -> Result<ServerTlsStream<IO>, TlsAcceptError>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    // Read the ClientHello first so a strict-sni refusal is told apart from
    // other failures (rustls only reports "no certificate resolved").
    let start = LazyConfigAcceptor::new(Acceptor::default(), io)
        .await
        .map_err(|e| classify(e, None))?;
    let hello = start.client_hello();
    let sni = hello.server_name().map(normalize_name);
    let refused_sni = active.strict_sni
        && match &sni {
            None => true,
            Some(name) => active
                .store
                .lookup(name, hello.signature_schemes())
                .is_none(),
        };
    start
        .into_stream(active.config.clone())
        .await
        .map_err(|e| classify(e, refused_sni.then_some(sni)))
}

/// Maps a handshake I/O error to its cause. `refused_sni` is set when the
/// resolver was known to refuse the client's name.
fn classify(err: std::io::Error, refused_sni: Option<Option<String>>) -> TlsAcceptError {
    use rustls::Error as E;
    use std::io::ErrorKind as K;
    if let Some(tls) = rustls_error(&err) {
        return match tls {
            E::InvalidMessage(_)
            | E::InappropriateMessage { .. }
            | E::InappropriateHandshakeMessage { .. } => TlsAcceptError::NotTls(tls.to_string()),
            E::PeerIncompatible(_) | E::NoApplicationProtocol => {
                TlsAcceptError::Incompatible(tls.clone())
            }
            E::AlertReceived(alert) => {
                TlsAcceptError::PeerAlert(format!("{alert:?}").to_lowercase())
            }
            E::General(_) if refused_sni.is_some() => {
                TlsAcceptError::UnknownSni(refused_sni.flatten())
            }
            _ => TlsAcceptError::Protocol(tls.clone()),
        };
    }
    match err.kind() {
        K::UnexpectedEof | K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe => {
            TlsAcceptError::Closed(err)
        }
        _ => TlsAcceptError::Io(err),
    }
}

fn build_active(
    settings: &TlsServerSettings,
    ticketer: Option<&Arc<dyn ProducesTickets>>,
    session_cache: Option<&Arc<dyn StoresServerSessions>>,
) -> Result<Active, TlsConfigError> {
    let provider = crypto_provider();
    let versions = protocol_versions(settings.min_version, settings.max_version)?;
    let alpn = alpn_protocols(&settings.alpn)?;
    let store = Arc::new(CertStore::load(&settings.certs, &provider)?);
    let resolver = SniResolver {
        store: store.clone(),
        strict_sni: settings.strict_sni,
    };
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&versions)?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = alpn;
    match session_cache {
        Some(cache) => config.session_storage = cache.clone(),
        None => config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {}),
    }
    if let Some(t) = ticketer {
        config.ticketer = t.clone();
    }
    Ok(Active {
        config: Arc::new(config),
        store,
        strict_sni: settings.strict_sni,
        handshake_timeout: settings.handshake_timeout,
    })
}
