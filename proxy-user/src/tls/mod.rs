//! TLS for Weir, on rustls with the `aws-lc-rs` crypto provider (AWS-LC).
//!
//! - Termination ([`TlsAcceptor`]): `bind ... ssl crt PATH [crt PATH...]
//!   [strict-sni] [alpn LIST] [ssl-min-ver V] [ssl-max-ver V]`. SNI picks the
//!   certificate (exact, then wildcard SAN names), the first certificate is
//!   the default; session resumption by rotating stateless tickets and a
//!   server-side cache; hot [`TlsAcceptor::reload`]; a handshake timeout.
//! - Origination ([`TlsConnector`]): `server ... ssl verify required ca-file
//!   FILE [sni STR]` or `verify none`.
//! - Cipher suites and groups are limited to Mozilla's "intermediate"
//!   profile ([`INTERMEDIATE_CIPHER_SUITES`]); TLS 1.2 and 1.3 only.
//!
//! `mode http`: wrap the accepted stream with [`TlsAcceptor::accept`] and
//! hand the engine a [`MaybeTlsStream`] (`is_tls()` gives the scheme for
//! X-Forwarded-Proto). `mode tcp` (TLS offload): `accept`, then
//! `copy_bidirectional` between the [`ServerTlsStream`] and the server.
//!
//! See `docs/tls.md` for the configuration reference.

mod acceptor;
mod certs;
mod connector;
mod counters;
mod error;
mod settings;
mod stream;

use std::sync::{Arc, OnceLock};

use rustls::crypto::{aws_lc_rs, CryptoProvider};
use rustls::{SupportedCipherSuite, SupportedProtocolVersion};

pub use acceptor::{ServerTlsStream, TlsAcceptor};
pub use certs::CertInfo;
pub use connector::{ClientTlsStream, TlsConnector, SYSTEM_CA};
pub use counters::{FailureCause, TlsCounters, LOG_INTERVAL};
pub use error::{TlsAcceptError, TlsConfigError, TlsConnectError};
pub use settings::{
    TlsClientSettings, TlsServerSettings, TlsVersion, Verify, DEFAULT_HANDSHAKE_TIMEOUT,
    DEFAULT_SESSION_CACHE_SIZE,
};
pub use stream::{MaybeTlsStream, RecordSocket, TlsInfo};

/// Mozilla "intermediate" cipher suites, in its order: the three TLS 1.3
/// suites, then ECDHE-ECDSA/RSA with AES-GCM and CHACHA20-POLY1305.
/// (Intermediate's optional DHE suites are not implemented by rustls.)
pub static INTERMEDIATE_CIPHER_SUITES: &[SupportedCipherSuite] = &[
    aws_lc_rs::cipher_suite::TLS13_AES_128_GCM_SHA256,
    aws_lc_rs::cipher_suite::TLS13_AES_256_GCM_SHA384,
    aws_lc_rs::cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
    aws_lc_rs::cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    aws_lc_rs::cipher_suite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    aws_lc_rs::cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    aws_lc_rs::cipher_suite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    aws_lc_rs::cipher_suite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    aws_lc_rs::cipher_suite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
];

/// The crypto provider every Weir TLS config uses: aws-lc-rs, with the
/// intermediate suites and groups X25519, P-256, P-384.
pub fn crypto_provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| {
            Arc::new(CryptoProvider {
                cipher_suites: INTERMEDIATE_CIPHER_SUITES.to_vec(),
                kx_groups: vec![
                    aws_lc_rs::kx_group::X25519,
                    aws_lc_rs::kx_group::SECP256R1,
                    aws_lc_rs::kx_group::SECP384R1,
                ],
                ..aws_lc_rs::default_provider()
            })
        })
        .clone()
}

/// The rustls versions for `ssl-min-ver`/`ssl-max-ver` (defaults 1.2 / 1.3).
fn protocol_versions(
    min: Option<TlsVersion>,
    max: Option<TlsVersion>,
) -> Result<Vec<&'static SupportedProtocolVersion>, TlsConfigError> {
    for (keyword, v) in [("ssl-min-ver", min), ("ssl-max-ver", max)] {
        if let Some(version @ (TlsVersion::Tls10 | TlsVersion::Tls11)) = v {
            return Err(TlsConfigError::UnsupportedVersion { keyword, version });
        }
    }
    let min = min.unwrap_or(TlsVersion::Tls12);
    let max = max.unwrap_or(TlsVersion::Tls13);
    if min > max {
        return Err(TlsConfigError::VersionRange { min, max });
    }
    let mut versions = Vec::new();
    if max == TlsVersion::Tls13 {
        versions.push(&rustls::version::TLS13);
    }
    if min == TlsVersion::Tls12 {
        versions.push(&rustls::version::TLS12);
    }
    Ok(versions)
}

/// ALPN names as wire bytes, validated.
fn alpn_protocols(names: &[String]) -> Result<Vec<Vec<u8>>, TlsConfigError> {
    names
        .iter()
        .map(|n| {
            if n.is_empty() || n.len() > 255 {
                Err(TlsConfigError::InvalidAlpn(n.clone()))
            } else {
                Ok(n.as_bytes().to_vec())
            }
        })
        .collect()
}

#[cfg(test)]
mod tests;
