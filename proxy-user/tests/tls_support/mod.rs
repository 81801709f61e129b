//! Test tooling shared by the TLS tests: a throw-away CA issuing ECDSA P-256
//! and RSA 2048 leafs (RSA keys come from the `openssl` CLI), client
//! configs trusting it, and a small server
//! built on `TlsAcceptor`.
#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use proxy_user::tls::{MaybeTlsStream, TlsAcceptor};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use time::OffsetDateTime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Key type of a generated leaf.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    EcdsaP256,
    Rsa2048,
}

/// A test certificate authority.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    /// The CA certificate, PEM.
    pub cert_pem: String,
}

/// A leaf certificate and its key, PEM.
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: CertificateDer<'static>,
}

impl Leaf {
    /// HAProxy-style `crt` file: leaf, chain, key.
    pub fn bundle(&self, ca: &TestCa) -> String {
        format!("{}{}{}", self.cert_pem, ca.cert_pem, self.key_pem)
    }

    /// Writes [`Leaf::bundle`] to `path`.
    pub fn write_bundle(&self, ca: &TestCa, path: &Path) {
        std::fs::write(path, self.bundle(ca)).expect("write crt file");
    }
}

impl TestCa {
    pub fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.serial_number = Some(serial());
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::days(1);
        params.not_after = now + time::Duration::days(365);
        let key = KeyPair::generate().expect("ca key");
        let cert = params.self_signed(&key).expect("ca cert");
        Self {
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A leaf for `names` valid from yesterday for 90 days.
    pub fn leaf(&self, names: &[&str], kind: KeyKind) -> Leaf {
        let now = OffsetDateTime::now_utc();
        self.leaf_valid(
            names,
            kind,
            now - time::Duration::days(1),
            now + time::Duration::days(90),
        )
    }

    /// A leaf with an explicit validity period.
    pub fn leaf_valid(
        &self,
        names: &[&str],
        kind: KeyKind,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> Leaf {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(names.clone()).expect("leaf params");
        let mut dn = DistinguishedName::new();
        dn.push(
            DnType::CommonName,
            names.first().cloned().unwrap_or_default(),
        );
        params.distinguished_name = dn;
        params.not_before = not_before;
        params.not_after = not_after;
        params.serial_number = Some(serial());
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        // Strict validators (sslyze, via the `cryptography` package) require the AKI.
        params.use_authority_key_identifier_extension = true;
        let key = match kind {
            KeyKind::EcdsaP256 => KeyPair::generate().expect("ecdsa key"),
            KeyKind::Rsa2048 => rsa_key(),
        };
        let cert = params.signed_by(&key, &self.issuer).expect("sign leaf");
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
        }
    }

    /// Writes the CA certificate to `path`.
    pub fn write_cert(&self, path: &Path) {
        std::fs::write(path, &self.cert_pem).expect("write ca file");
    }

    pub fn roots(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(self.cert_pem.as_bytes()) {
            roots.add(c.expect("ca pem")).expect("add root");
        }
        roots
    }

    /// A rustls client trusting this CA (aws-lc-rs, default suites and versions).
    pub fn client_config(&self) -> ClientConfig {
        self.client_config_with(&[&rustls::version::TLS13, &rustls::version::TLS12], &[])
    }

    pub fn client_config_with(
        &self,
        versions: &[&'static rustls::SupportedProtocolVersion],
        alpn: &[&str],
    ) -> ClientConfig {
        let mut c = ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_protocol_versions(versions)
        .expect("versions")
        .with_root_certificates(self.roots())
        .with_no_client_auth();
        c.alpn_protocols = alpn.iter().map(|a| a.as_bytes().to_vec()).collect();
        c
    }
}

/// A unique positive serial number (rcgen's random ones may encode as
/// negative, which strict parsers reject).
fn serial() -> rcgen::SerialNumber {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    // Top byte 0x01: positive, never zero, unique per process and run.
    let mut bytes = vec![0x01];
    bytes.extend_from_slice(&nanos.to_be_bytes());
    bytes.extend_from_slice(&n.to_be_bytes());
    rcgen::SerialNumber::from_slice(&bytes)
}

/// An RSA 2048 key pair made by `openssl genpkey` (PKCS#8).
pub fn rsa_key() -> KeyPair {
    let out = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
        ])
        .output()
        .expect("run openssl genpkey (apt-get install openssl)");
    assert!(
        out.status.success(),
        "openssl genpkey: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pem = String::from_utf8(out.stdout).expect("pem");
    KeyPair::from_pem_and_sign_algo(&pem, &rcgen::PKCS_RSA_SHA256).expect("rsa key")
}

/// The DNS SANs of a DER certificate, to see which was served.
pub fn san_names(der: &[u8]) -> Vec<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).expect("x509");
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for gn in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(n) = gn {
                names.push(n.to_string());
            }
        }
    }
    names
}

/// Result of a rustls client handshake against a test server.
pub struct Handshake {
    pub stream: tokio_rustls::client::TlsStream<TcpStream>,
}

impl Handshake {
    pub fn conn(&self) -> &rustls::ClientConnection {
        self.stream.get_ref().1
    }
    /// DNS SANs of the certificate the server presented.
    pub fn served_names(&self) -> Vec<String> {
        let certs = self.conn().peer_certificates().expect("peer certs");
        san_names(certs[0].as_ref())
    }
    pub fn resumed(&self) -> bool {
        self.conn().handshake_kind() == Some(rustls::HandshakeKind::Resumed)
    }
}

/// Connects with `config`; `sni` is sent and verified, `None` sends no SNI
/// (use an [`any_cert_config`] client then, as no name can be verified).
pub async fn handshake(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
    sni: Option<&str>,
) -> std::io::Result<Handshake> {
    let mut config = config;
    let name = match sni {
        Some(n) => ServerName::try_from(n.to_string()).expect("dns name"),
        None => {
            let mut c = (*config).clone();
            c.enable_sni = false;
            config = Arc::new(c);
            ServerName::try_from("no-sni.invalid").expect("name")
        }
    };
    let tcp = TcpStream::connect(addr).await?;
    let stream = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_rustls::TlsConnector::from(config).connect(name, tcp),
    )
    .await
    .map_err(|_| {
        std::io::Error::new(std::io::ErrorKind::TimedOut, "client handshake timed out")
    })??;
    Ok(Handshake { stream })
}

/// A rustls client that accepts any certificate (to see which one a server
/// picks when no name can be verified).
pub fn any_cert_config() -> ClientConfig {
    ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny))
        .with_no_client_auth()
}

#[derive(Debug)]
struct AcceptAny;

impl rustls::client::danger::ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::aws_lc_rs::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Sends a minimal HTTP request and returns the whole response.
pub async fn http_get<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    s: &mut S,
) -> String {
    s.write_all(b"GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .await
        .expect("write request");
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .expect("response in time")
        .ok();
    String::from_utf8_lossy(&out).into_owned()
}

/// A test server: TLS-terminates with `acceptor`, then answers each HTTP
/// request with a body naming the scheme, SNI, ALPN and version. Runs until
/// the handle is aborted.
pub struct TestServer {
    pub addr: SocketAddr,
    pub task: JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub async fn serve(acceptor: Arc<TlsAcceptor>) -> TestServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                respond(MaybeTlsStream::from(tls)).await;
            });
        }
    });
    TestServer { addr, task }
}

/// Reads requests and answers each until the client closes.
async fn respond(mut s: MaybeTlsStream<TcpStream>) {
    let info = s.tls_info();
    let scheme = if s.is_tls() { "https" } else { "http" };
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            buf.drain(..end + 4);
            let close = head.to_ascii_lowercase().contains("connection: close");
            let body = match &info {
                Some(i) => format!(
                    "scheme={scheme} sni={} alpn={} version={} resumed={}\n",
                    i.sni.as_deref().unwrap_or("-"),
                    i.alpn
                        .as_deref()
                        .map(|a| String::from_utf8_lossy(a).into_owned())
                        .unwrap_or("-".into()),
                    i.version.unwrap_or("-"),
                    i.resumed
                ),
                None => format!("scheme={scheme}\n"),
            };
            let resp = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n{}\r\n{}",
                body.len(),
                if close { "connection: close\r\n" } else { "" },
                body
            );
            if s.write_all(resp.as_bytes()).await.is_err() {
                return;
            }
            if close {
                let _ = s.shutdown().await;
                return;
            }
        }
    }
}

/// A fresh temporary directory.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

/// Path helper.
pub fn p(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}
