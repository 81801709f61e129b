//! Settings the TLS module is built from.
//!
//! These mirror the config model's `BindTls` (the `ssl`/`crt`/`strict-sni`/
//! `alpn`/`ssl-min-ver`/`ssl-max-ver` bind keywords) and the `ssl`/`verify`/
//! `ca-file`/`sni` server keywords, so the config module maps onto them with a
//! plain `From` impl and this module does not depend on the parser.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// Default time a peer gets to complete a TLS handshake.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Default number of TLS 1.2 session ids / TLS 1.3 stateful sessions kept
/// server side (HAProxy's `tune.ssl.cachesize` default).
pub const DEFAULT_SESSION_CACHE_SIZE: usize = 20_000;

/// A TLS protocol version as written in `ssl-min-ver` / `ssl-max-ver`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TlsVersion {
    /// `TLSv1.0` (refused: rustls does not implement it).
    Tls10,
    /// `TLSv1.1` (refused: rustls does not implement it).
    Tls11,
    /// `TLSv1.2`.
    Tls12,
    /// `TLSv1.3`.
    Tls13,
}

impl fmt::Display for TlsVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TlsVersion::Tls10 => "TLSv1.0",
            TlsVersion::Tls11 => "TLSv1.1",
            TlsVersion::Tls12 => "TLSv1.2",
            TlsVersion::Tls13 => "TLSv1.3",
        })
    }
}

/// TLS termination settings of one `bind ... ssl` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsServerSettings {
    /// `crt PATH` in order: PEM files (chain + key) or directories of them.
    /// The first certificate loaded is the default one.
    pub certs: Vec<PathBuf>,
    /// `strict-sni`: refuse clients without SNI or with an unknown name
    /// instead of serving the default certificate.
    pub strict_sni: bool,
    /// `alpn LIST`: protocols offered, in preference order (empty: no ALPN).
    pub alpn: Vec<String>,
    /// `ssl-min-ver`; `None` means TLSv1.2.
    pub min_version: Option<TlsVersion>,
    /// `ssl-max-ver`; `None` means TLSv1.3.
    pub max_version: Option<TlsVersion>,
    /// Time a client gets to finish the handshake.
    pub handshake_timeout: Duration,
    /// Server-side session cache size (0 disables the cache).
    pub session_cache_size: usize,
    /// Stateless session tickets (keys rotate every 6 h, valid 12 h).
    pub session_tickets: bool,
}

impl Default for TlsServerSettings {
    fn default() -> Self {
        Self {
            certs: Vec::new(),
            strict_sni: false,
            alpn: Vec::new(),
            min_version: None,
            max_version: None,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            session_cache_size: DEFAULT_SESSION_CACHE_SIZE,
            session_tickets: true,
        }
    }
}

impl TlsServerSettings {
    /// Settings for `bind ... ssl crt PATH...` with every other option at its default.
    pub fn with_certs<I, P>(certs: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: Into<PathBuf>,
    {
        Self {
            certs: certs.into_iter().map(Into::into).collect(),
            ..Self::default()
        }
    }
}

/// `verify` on a `server` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Verify {
    /// `verify none`: accept any certificate (the handshake signature is
    /// still checked, so the peer must hold the certificate's key).
    None,
    /// `verify required`: the chain must lead to a CA of `ca-file` and the
    /// certificate must be valid for the server name.
    #[default]
    Required,
}

/// TLS origination settings of one `server NAME ADDR ssl ...` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsClientSettings {
    /// `verify none|required`.
    pub verify: Verify,
    /// `ca-file FILE`: PEM bundle of trusted CAs; `@system-ca` loads the
    /// system bundle. Required with `verify required`.
    pub ca_file: Option<PathBuf>,
    /// `sni STR`: name sent in SNI and verified; overrides the host the
    /// caller passes to `connect`.
    pub sni: Option<String>,
    /// ALPN protocols offered to the server (empty: none).
    pub alpn: Vec<String>,
    /// `ssl-min-ver` / `ssl-max-ver` for the backend side.
    pub min_version: Option<TlsVersion>,
    /// See `min_version`.
    pub max_version: Option<TlsVersion>,
    /// Time the server gets to finish the handshake.
    pub handshake_timeout: Duration,
}

impl Default for TlsClientSettings {
    fn default() -> Self {
        Self {
            verify: Verify::Required,
            ca_file: None,
            sni: None,
            alpn: Vec::new(),
            min_version: None,
            max_version: None,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
        }
    }
}

// Mapping from the configuration model (the config module knows nothing of
// rustls; this is the one place the two meet).

impl From<crate::config::TlsVersion> for TlsVersion {
    fn from(v: crate::config::TlsVersion) -> Self {
        match v {
            crate::config::TlsVersion::Tls10 => TlsVersion::Tls10,
            crate::config::TlsVersion::Tls11 => TlsVersion::Tls11,
            crate::config::TlsVersion::Tls12 => TlsVersion::Tls12,
            crate::config::TlsVersion::Tls13 => TlsVersion::Tls13,
        }
    }
}

impl From<&crate::config::BindTls> for TlsServerSettings {
    /// `bind ... ssl crt ...`: the config's options, the rest at their defaults.
    fn from(b: &crate::config::BindTls) -> Self {
        Self {
            certs: b.certs.clone(),
            strict_sni: b.strict_sni,
            alpn: b.alpn.clone(),
            min_version: b.min_version.map(Into::into),
            max_version: b.max_version.map(Into::into),
            ..Self::default()
        }
    }
}

impl From<&crate::config::Server> for TlsClientSettings {
    /// `server ... ssl [verify none|required] [ca-file F] [sni S]`.
    fn from(s: &crate::config::Server) -> Self {
        Self {
            verify: match s.verify {
                crate::config::Verify::None => Verify::None,
                crate::config::Verify::Required => Verify::Required,
            },
            ca_file: s.ca_file.clone(),
            sni: s.sni.clone(),
            ..Self::default()
        }
    }
}
