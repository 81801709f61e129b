//! Error types: load/config-time ([`TlsConfigError`]) and per-connection
//! ([`TlsAcceptError`], [`TlsConnectError`]).

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use super::settings::TlsVersion;

/// A TLS configuration or certificate that cannot be used. Raised at startup
/// and by `reload()`; each message names the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    /// `ssl` on a bind without any `crt`.
    #[error("no certificate configured: `ssl` needs at least one `crt PATH`")]
    NoCertificates,
    /// A `crt`, key or CA file that cannot be read.
    #[error("cannot read '{}': {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// A `crt` directory that holds no certificate file.
    #[error("'{}': directory holds no certificate file", path.display())]
    EmptyDirectory {
        /// The directory.
        path: PathBuf,
    },
    /// A PEM file that cannot be parsed.
    #[error("'{}': invalid pem: {detail}", path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        detail: String,
    },
    /// A `crt` file without a `CERTIFICATE` block.
    #[error("'{}': no certificate found (expected a pem 'BEGIN CERTIFICATE' block)", path.display())]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// A `crt` file without a key, in it or in `<file>.key`.
    #[error("'{}': no private key found in the file nor in '{}.key'", path.display(), path.display())]
    NoPrivateKey {
        /// The file.
        path: PathBuf,
    },
    /// A key the crypto provider cannot use (unsupported type or malformed).
    #[error("'{}': unusable private key: {detail}", path.display())]
    BadPrivateKey {
        /// The file.
        path: PathBuf,
        /// What rustls said.
        detail: String,
    },
    /// The key is not the one of the leaf certificate.
    #[error("'{}': the private key does not match the certificate", path.display())]
    KeyMismatch {
        /// The file.
        path: PathBuf,
    },
    /// A leaf certificate that is not valid X.509.
    #[error("'{}': invalid certificate: {detail}", path.display())]
    BadCertificate {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        detail: String,
    },
    /// `ssl-min-ver`/`ssl-max-ver` names a version rustls does not implement.
    #[error("{keyword} {version} is not supported: only TLSv1.2 and TLSv1.3 are implemented")]
    UnsupportedVersion {
        /// `ssl-min-ver` or `ssl-max-ver`.
        keyword: &'static str,
        /// The version asked for.
        version: TlsVersion,
    },
    /// `ssl-min-ver` above `ssl-max-ver`.
    #[error("ssl-min-ver {min} is above ssl-max-ver {max}")]
    VersionRange {
        /// Minimum.
        min: TlsVersion,
        /// Maximum.
        max: TlsVersion,
    },
    /// An ALPN protocol name that is empty or longer than 255 bytes.
    #[error("invalid alpn protocol name '{0}': must be 1 to 255 bytes")]
    InvalidAlpn(String),
    /// `verify required` without `ca-file`.
    #[error("verify required needs a ca-file (or verify none)")]
    MissingCaFile,
    /// A `ca-file` with no usable CA certificate.
    #[error("'{}': no usable ca certificate: {detail}", path.display())]
    BadCaFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// `sni STR` that is not a DNS name or IP address.
    #[error("invalid sni '{0}': not a dns name or ip address")]
    InvalidSni(String),
    /// rustls refused the assembled configuration.
    #[error("tls configuration refused by rustls: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Why a client's TLS handshake failed. The connection is closed; the cause is
/// also counted in [`super::TlsCounters`].
#[derive(Debug, thiserror::Error)]
pub enum TlsAcceptError {
    /// The client did not finish the handshake in time.
    #[error("tls handshake timed out after {0:?}")]
    Timeout(Duration),
    /// The bytes received are not a TLS handshake (plaintext HTTP, garbage).
    #[error("not a tls handshake: {0}")]
    NotTls(String),
    /// `strict-sni` and the client sent no or an unknown name.
    #[error("strict-sni: no certificate for server name {}", .0.as_deref().unwrap_or("(none)"))]
    UnknownSni(Option<String>),
    /// No common protocol version, cipher suite, group or signature scheme.
    #[error("no common tls parameters with the client: {0}")]
    Incompatible(rustls::Error),
    /// The client aborted with an alert (e.g. it does not trust the certificate).
    #[error("client sent alert: {0}")]
    PeerAlert(String),
    /// The client closed or reset the connection during the handshake.
    #[error("client closed the connection during the handshake: {0}")]
    Closed(io::Error),
    /// Any other TLS protocol error.
    #[error("tls handshake failed: {0}")]
    Protocol(rustls::Error),
    /// Any other I/O error.
    #[error("i/o error during the tls handshake: {0}")]
    Io(io::Error),
}

/// Why a TLS handshake with a server failed.
#[derive(Debug, thiserror::Error)]
pub enum TlsConnectError {
    /// The server name is neither a DNS name nor an IP address.
    #[error("invalid server name '{0}'")]
    InvalidServerName(String),
    /// The server did not finish the handshake in time.
    #[error("tls handshake with the server timed out after {0:?}")]
    Timeout(Duration),
    /// The server's certificate was refused (`verify required`).
    #[error("server certificate refused: {0}")]
    Certificate(rustls::Error),
    /// Any other TLS protocol error.
    #[error("tls handshake with the server failed: {0}")]
    Protocol(rustls::Error),
    /// The server closed the connection or another I/O error.
    #[error("i/o error during the tls handshake with the server: {0}")]
    Io(io::Error),
}

/// The rustls error carried by an I/O error from tokio-rustls, if any.
pub(crate) fn rustls_error(err: &io::Error) -> Option<&rustls::Error> {
    err.get_ref()?.downcast_ref::<rustls::Error>()
}
