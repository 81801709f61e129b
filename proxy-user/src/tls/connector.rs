//! TLS origination to servers (`server NAME ADDR ssl verify ... [sni STR]`).
//!
//! The connector's `ClientConfig` is shared by every connection to the
//! server, so its session cache lets reconnects resume. The upstream pool is
//! generic over the stream type: it keeps [`ClientTlsStream`]s alive and
//! reuses them exactly like plain `TcpStream`s, so a kept-alive backend
//! connection pays the handshake once.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::io::{AsyncRead, AsyncWrite};

use super::counters::{FailureCause, TlsCounters};
use super::error::{rustls_error, TlsConfigError, TlsConnectError};
use super::settings::{TlsClientSettings, Verify};
use super::{alpn_protocols, crypto_provider, protocol_versions};

/// A client-side TLS stream (what `connect` returns).
pub type ClientTlsStream<IO> = tokio_rustls::client::TlsStream<IO>;

/// `ca-file` value that loads the system CA bundle.
pub const SYSTEM_CA: &str = "@system-ca";

/// Where Debian/Ubuntu, Fedora/RHEL and Alpine keep the system CA bundle.
const SYSTEM_CA_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

/// TLS origination for one `server` line.
#[derive(Clone)]
pub struct TlsConnector {
    inner: tokio_rustls::TlsConnector,
    sni: Option<ServerName<'static>>,
    handshake_timeout: Duration,
    counters: Arc<TlsCounters>,
    /// Who the handshakes are for, in failure logs.
    side: &'static str,
}

impl std::fmt::Debug for TlsConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConnector")
            .field("sni", &self.sni)
            .field("handshake_timeout", &self.handshake_timeout)
            .finish_non_exhaustive()
    }
}

impl TlsConnector {
    /// Builds the client configuration; reads `ca-file` now.
    pub fn new(settings: &TlsClientSettings) -> Result<Self, TlsConfigError> {
        Self::build(settings, true, "server")
    }

    /// A connector for health checks of the server: the same verification
    /// (`verify`, `ca-file`, `sni`, versions), but every handshake is a full
    /// one (no session resumption), so each check proves the server still
    /// presents an acceptable certificate, and its own counters, so checks
    /// do not count as traffic.
    pub fn for_checks(settings: &TlsClientSettings) -> Result<Self, TlsConfigError> {
        Self::build(settings, false, "server (health check)")
    }

    fn build(
        settings: &TlsClientSettings,
        resumption: bool,
        side: &'static str,
    ) -> Result<Self, TlsConfigError> {
        let provider = crypto_provider();
        let versions = protocol_versions(settings.min_version, settings.max_version)?;
        let sni = settings
            .sni
            .as_deref()
            .map(|s| {
                ServerName::try_from(s.to_owned())
                    .map_err(|_| TlsConfigError::InvalidSni(s.to_owned()))
            })
            .transpose()?;
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&versions)?;
        let mut config = match settings.verify {
            Verify::Required => {
                let ca_file = settings
                    .ca_file
                    .as_deref()
                    .ok_or(TlsConfigError::MissingCaFile)?;
                let roots = load_roots(ca_file)?;
                let verifier =
                    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                        .build()
                        .map_err(|e| TlsConfigError::BadCaFile {
                            path: ca_file.to_owned(),
                            detail: e.to_string(),
                        })?;
                builder.with_webpki_verifier(verifier).with_no_client_auth()
            }
            Verify::None => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerify { provider }))
                .with_no_client_auth(),
        };
        config.alpn_protocols = alpn_protocols(&settings.alpn)?;
        if !resumption {
            config.resumption = rustls::client::Resumption::disabled();
        }
        Ok(Self {
            inner: tokio_rustls::TlsConnector::from(Arc::new(config)),
            sni,
            handshake_timeout: settings.handshake_timeout,
            counters: Arc::new(TlsCounters::default()),
            side,
        })
    }

    /// Handshake counters and per-cause failure counts.
    pub fn counters(&self) -> &Arc<TlsCounters> {
        &self.counters
    }

    /// The name `connect(io, host)` sends in SNI and verifies: the `sni`
    /// setting if any, else `host`. An IP address is verified against the
    /// certificate's IP SANs and not sent as SNI.
    pub fn server_name(&self, host: &str) -> Result<ServerName<'static>, TlsConnectError> {
        match &self.sni {
            Some(name) => Ok(name.clone()),
            None => ServerName::try_from(host.to_owned())
                .map_err(|_| TlsConnectError::InvalidServerName(host.to_owned())),
        }
    }

    /// Runs the client side of the handshake on `io` (the connected
    /// `TcpStream`) within the handshake timeout.
    pub async fn connect<IO>(
        &self,
        io: IO,
        host: &str,
    ) -> Result<ClientTlsStream<IO>, TlsConnectError>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let name = self.server_name(host)?;
        let result = match tokio::time::timeout(
            self.handshake_timeout,
            self.inner.connect(name, io),
        )
        .await
        {
            Ok(Ok(stream)) => Ok(stream),
            Ok(Err(e)) => Err(classify(e)),
            Err(_) => Err(TlsConnectError::Timeout(self.handshake_timeout)),
        };
        match &result {
            Ok(stream) => {
                let resumed =
                    stream.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
                self.counters.success(resumed);
            }
            Err(e) => self.counters.failure(connect_cause(e), self.side, e),
        }
        result
    }
}

fn connect_cause(e: &TlsConnectError) -> FailureCause {
    match e {
        TlsConnectError::InvalidServerName(_) => FailureCause::Other,
        TlsConnectError::Timeout(_) => FailureCause::Timeout,
        TlsConnectError::Certificate(_) => FailureCause::Certificate,
        TlsConnectError::Protocol(rustls::Error::PeerIncompatible(_)) => FailureCause::Incompatible,
        TlsConnectError::Protocol(rustls::Error::AlertReceived(_)) => FailureCause::PeerAlert,
        TlsConnectError::Protocol(rustls::Error::InvalidMessage(_)) => FailureCause::NotTls,
        TlsConnectError::Protocol(_) => FailureCause::Other,
        TlsConnectError::Io(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            FailureCause::Closed
        }
        TlsConnectError::Io(_) => FailureCause::Other,
    }
}

fn classify(err: std::io::Error) -> TlsConnectError {
    match rustls_error(&err) {
        Some(
            e @ (rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented),
        ) => TlsConnectError::Certificate(e.clone()),
        Some(e) => TlsConnectError::Protocol(e.clone()),
        None => TlsConnectError::Io(err),
    }
}

/// Reads the trusted CAs of `ca-file` (PEM bundle, or `@system-ca`).
fn load_roots(path: &Path) -> Result<RootCertStore, TlsConfigError> {
    let path = if path.as_os_str() == SYSTEM_CA {
        SYSTEM_CA_BUNDLES
            .iter()
            .map(Path::new)
            .find(|p| p.exists())
            .ok_or_else(|| TlsConfigError::BadCaFile {
                path: path.to_owned(),
                detail: format!(
                    "no system ca bundle found (looked for {})",
                    SYSTEM_CA_BUNDLES.join(", ")
                ),
            })?
    } else {
        path
    };
    let bytes = std::fs::read(path).map_err(|source| TlsConfigError::Io {
        path: path.to_owned(),
        source,
    })?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsConfigError::Pem {
            path: path.to_owned(),
            detail: e.to_string().to_lowercase(),
        })?;
    let mut roots = RootCertStore::empty();
    let (added, ignored) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(TlsConfigError::BadCaFile {
            path: path.to_owned(),
            detail: format!("no parsable ca certificate ({ignored} ignored)"),
        });
    }
    if ignored > 0 {
        log::warn!(
            "'{}': {ignored} certificate(s) ignored as unparsable",
            path.display()
        );
    }
    Ok(roots)
}

/// `verify none`: any certificate is accepted, but the handshake signature
/// is still verified so the server must hold the certificate's private key
/// (this keeps the session's key exchange bound to that key).
#[derive(Debug)]
struct NoVerify {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
