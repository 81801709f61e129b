//! Loading `crt` files and directories, and picking a certificate by SNI.
//!
//! HAProxy conventions: a `crt` file holds the leaf, its chain and the key in
//! PEM (the key may instead be in `<file>.key`); a `crt` directory is read in
//! alphabetical order, skipping hidden files and the `.key`/`.ocsp`/`.issuer`/
//! `.sctl` side files. Names come from the leaf's DNS SANs (the subject CN
//! only when there is no SAN). The first certificate loaded is the default.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{InconsistentKeys, SignatureScheme};
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::error::TlsConfigError;

/// Extensions of HAProxy side files that a `crt` directory may hold next to
/// the certificates; they are not certificates themselves.
const SIDE_FILE_EXTENSIONS: &[&str] = &["key", "ocsp", "issuer", "sctl"];

/// What was loaded from one certificate file.
#[derive(Debug, Clone)]
pub struct CertInfo {
    /// The file it came from.
    pub path: PathBuf,
    /// Lowercase DNS names it serves (`*.example.com` for wildcards).
    pub names: Vec<String>,
    /// Start of the leaf's validity.
    pub not_before: SystemTime,
    /// End of the leaf's validity.
    pub not_after: SystemTime,
}

impl CertInfo {
    /// True when the leaf is outside its validity period at `now`.
    pub fn is_expired_at(&self, now: SystemTime) -> bool {
        now > self.not_after || now < self.not_before
    }
}

#[derive(Debug)]
struct Entry {
    info: CertInfo,
    key: Arc<CertifiedKey>,
}

/// All certificates of one bind, indexed by name.
#[derive(Debug)]
pub(crate) struct CertStore {
    entries: Vec<Entry>,
    /// Exact name -> entry indexes, in load order.
    exact: HashMap<String, Vec<usize>>,
    /// Parent domain of a wildcard (`example.com` for `*.example.com`) -> entries.
    wildcard: HashMap<String, Vec<usize>>,
}

impl CertStore {
    /// Loads every `crt` path; any bad file fails the whole load.
    pub(crate) fn load(
        paths: &[PathBuf],
        provider: &CryptoProvider,
    ) -> Result<Self, TlsConfigError> {
        if paths.is_empty() {
            return Err(TlsConfigError::NoCertificates);
        }
        let mut store = CertStore {
            entries: Vec::new(),
            exact: HashMap::new(),
            wildcard: HashMap::new(),
        };
        for path in paths {
            for file in expand_crt_path(path)? {
                let entry = load_cert_file(&file, provider)?;
                store.push(entry);
            }
        }
        Ok(store)
    }

    fn push(&mut self, entry: Entry) {
        let idx = self.entries.len();
        for name in &entry.info.names {
            match name.strip_prefix("*.") {
                Some(parent) => self
                    .wildcard
                    .entry(parent.to_owned())
                    .or_default()
                    .push(idx),
                None => self.exact.entry(name.clone()).or_default().push(idx),
            }
        }
        self.entries.push(entry);
    }

    pub(crate) fn infos(&self) -> Vec<CertInfo> {
        self.entries.iter().map(|e| e.info.clone()).collect()
    }

    /// Certificate for `sni`: an exact name first, then a wildcard one level
    /// up. Among several certificates for the name (e.g. ECDSA and RSA), the
    /// first whose key can sign with a scheme the client offers.
    pub(crate) fn lookup(
        &self,
        sni: &str,
        schemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        let sni = normalize_name(sni);
        let candidates = self.exact.get(&sni).or_else(|| {
            let (_, parent) = sni.split_once('.')?;
            self.wildcard.get(parent)
        })?;
        let usable = candidates
            .iter()
            .find(|&&i| self.entries[i].key.key.choose_scheme(schemes).is_some())
            .or_else(|| candidates.first())?;
        Some(self.entries[*usable].key.clone())
    }

    /// The default certificate: the first loaded.
    pub(crate) fn default_key(&self) -> Option<Arc<CertifiedKey>> {
        self.entries.first().map(|e| e.key.clone())
    }
}

/// Lowercase, without a trailing dot.
pub(crate) fn normalize_name(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// The rustls certificate resolver of one bind.
#[derive(Debug)]
pub(crate) struct SniResolver {
    pub(crate) store: Arc<CertStore>,
    pub(crate) strict_sni: bool,
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let found = hello
            .server_name()
            .and_then(|sni| self.store.lookup(sni, hello.signature_schemes()));
        match found {
            Some(key) => Some(key),
            // No certificate makes rustls abort the handshake with an alert.
            None if self.strict_sni => None,
            None => self.store.default_key(),
        }
    }
}

/// The certificate files a `crt` path stands for.
fn expand_crt_path(path: &Path) -> Result<Vec<PathBuf>, TlsConfigError> {
    let io_err = |source| TlsConfigError::Io {
        path: path.to_owned(),
        source,
    };
    let meta = fs::metadata(path).map_err(io_err)?;
    if !meta.is_dir() {
        return Ok(vec![path.to_owned()]);
    }
    let mut files = Vec::new();
    for dirent in fs::read_dir(path).map_err(io_err)? {
        let file = dirent.map_err(io_err)?.path();
        let name = file.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let ext = file.extension().and_then(|e| e.to_str()).unwrap_or("");
        if name.starts_with('.') || SIDE_FILE_EXTENSIONS.contains(&ext) || !file.is_file() {
            continue;
        }
        files.push(file);
    }
    if files.is_empty() {
        return Err(TlsConfigError::EmptyDirectory {
            path: path.to_owned(),
        });
    }
    files.sort();
    Ok(files)
}

fn read_file(path: &Path) -> Result<Vec<u8>, TlsConfigError> {
    fs::read(path).map_err(|source| TlsConfigError::Io {
        path: path.to_owned(),
        source,
    })
}

fn pem_error(path: &Path, err: pem::Error) -> TlsConfigError {
    TlsConfigError::Pem {
        path: path.to_owned(),
        detail: err.to_string().to_lowercase(),
    }
}

/// Reads a PEM certificate chain and its key, checks they match.
fn load_cert_file(path: &Path, provider: &CryptoProvider) -> Result<Entry, TlsConfigError> {
    let bytes = read_file(path)?;
    let chain = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(path, e))?;
    if chain.is_empty() {
        return Err(TlsConfigError::NoCertificate {
            path: path.to_owned(),
        });
    }
    let key = match PrivateKeyDer::from_pem_slice(&bytes) {
        Ok(key) => key,
        Err(pem::Error::NoItemsFound) => load_side_key(path)?,
        Err(e) => return Err(pem_error(path, e)),
    };
    let signing_key =
        provider
            .key_provider
            .load_private_key(key)
            .map_err(|e| TlsConfigError::BadPrivateKey {
                path: path.to_owned(),
                detail: e.to_string(),
            })?;
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(InconsistentKeys::Unknown)) => {}
        Err(rustls::Error::InconsistentKeys(InconsistentKeys::KeyMismatch)) => {
            return Err(TlsConfigError::KeyMismatch {
                path: path.to_owned(),
            })
        }
        Err(e) => {
            return Err(TlsConfigError::BadCertificate {
                path: path.to_owned(),
                detail: e.to_string(),
            })
        }
    }
    let info = parse_leaf(path, &certified.cert[0])?;
    let now = SystemTime::now();
    if info.is_expired_at(now) {
        // Like HAProxy: served anyway, so a reload with one stale file does
        // not take every other site of the bind down; loudly reported.
        log::warn!(
            "'{}': certificate is outside its validity period (valid {} to {}); serving it anyway",
            path.display(),
            fmt_unix(info.not_before),
            fmt_unix(info.not_after)
        );
    }
    Ok(Entry {
        info,
        key: Arc::new(certified),
    })
}

/// The key of a `crt` file that has none: `<file>.key`, HAProxy style.
fn load_side_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsConfigError> {
    let mut key_path = path.as_os_str().to_owned();
    key_path.push(".key");
    let key_path = PathBuf::from(key_path);
    if !key_path.exists() {
        return Err(TlsConfigError::NoPrivateKey {
            path: path.to_owned(),
        });
    }
    let bytes = read_file(&key_path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| match e {
        pem::Error::NoItemsFound => TlsConfigError::NoPrivateKey {
            path: path.to_owned(),
        },
        e => pem_error(&key_path, e),
    })
}

/// Names and validity of the leaf.
fn parse_leaf(path: &Path, der: &CertificateDer<'_>) -> Result<CertInfo, TlsConfigError> {
    use x509_parser::extensions::GeneralName;
    let bad = |detail: String| TlsConfigError::BadCertificate {
        path: path.to_owned(),
        detail,
    };
    let (_, cert) =
        x509_parser::parse_x509_certificate(der.as_ref()).map_err(|e| bad(e.to_string()))?;
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for gn in &san.value.general_names {
            if let GeneralName::DNSName(n) = gn {
                names.push(normalize_name(n));
            }
        }
    }
    if names.is_empty() {
        // Legacy certificates without SAN: the CN is the name.
        for cn in cert.subject().iter_common_name() {
            if let Ok(n) = cn.as_str() {
                names.push(normalize_name(n));
            }
        }
    }
    let to_time = |t: x509_parser::time::ASN1Time| {
        let secs = t.timestamp();
        if secs >= 0 {
            UNIX_EPOCH + Duration::from_secs(secs as u64)
        } else {
            UNIX_EPOCH
        }
    };
    Ok(CertInfo {
        path: path.to_owned(),
        names,
        not_before: to_time(cert.validity().not_before),
        not_after: to_time(cert.validity().not_after),
    })
}

/// `YYYY-MM-DD HH:MM:SS UTC` for log messages.
fn fmt_unix(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0) as i64;
    match time::OffsetDateTime::from_unix_timestamp(secs) {
        Ok(dt) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
            dt.year(),
            u8::from(dt.month()),
            dt.day(),
            dt.hour(),
            dt.minute(),
            dt.second()
        ),
        Err(_) => format!("@{secs}"),
    }
}
