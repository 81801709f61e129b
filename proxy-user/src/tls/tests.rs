//! Unit tests: settings validation, certificate loading errors, SNI lookup.

use std::path::{Path, PathBuf};

use rcgen::{CertificateParams, KeyPair};
use rustls::SignatureScheme;

use super::certs::CertStore;
use super::*;

/// A self-signed ECDSA leaf for `names`: (cert pem, key pem).
fn self_signed(names: &[&str]) -> (String, String) {
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(names)
        .unwrap()
        .self_signed(&key)
        .unwrap();
    (cert.pem(), key.serialize_pem())
}

fn write(dir: &Path, name: &str, content: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap();
    path
}

fn bundle(dir: &Path, file: &str, names: &[&str]) -> PathBuf {
    let (c, k) = self_signed(names);
    write(dir, file, &format!("{c}{k}"))
}

const SCHEMES: &[SignatureScheme] = &[
    SignatureScheme::ECDSA_NISTP256_SHA256,
    SignatureScheme::RSA_PSS_SHA256,
];

fn served_names(store: &CertStore, sni: &str) -> Option<String> {
    let key = store.lookup(sni, SCHEMES)?;
    let (_, cert) = x509_parser::parse_x509_certificate(key.cert[0].as_ref()).unwrap();
    let san = cert.subject_alternative_name().unwrap().unwrap();
    Some(format!("{:?}", san.value.general_names))
}

#[test]
fn versions_default_to_12_and_13() {
    let v = protocol_versions(None, None).unwrap();
    assert_eq!(v.len(), 2);
    let only13 = protocol_versions(Some(TlsVersion::Tls13), None).unwrap();
    assert_eq!(only13.len(), 1);
    assert_eq!(only13[0].version, rustls::ProtocolVersion::TLSv1_3);
    let only12 = protocol_versions(None, Some(TlsVersion::Tls12)).unwrap();
    assert_eq!(only12[0].version, rustls::ProtocolVersion::TLSv1_2);
}

#[test]
fn old_versions_are_refused_with_the_keyword() {
    let e = protocol_versions(Some(TlsVersion::Tls10), None).unwrap_err();
    assert_eq!(
        e.to_string(),
        "ssl-min-ver TLSv1.0 is not supported: only TLSv1.2 and TLSv1.3 are implemented"
    );
    let e = protocol_versions(None, Some(TlsVersion::Tls11)).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("ssl-max-ver TLSv1.1 is not supported"),
        "{e}"
    );
    let e = protocol_versions(Some(TlsVersion::Tls13), Some(TlsVersion::Tls12)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "ssl-min-ver TLSv1.3 is above ssl-max-ver TLSv1.2"
    );
}

#[test]
fn alpn_names_are_validated() {
    assert_eq!(
        alpn_protocols(&["http/1.1".into()]).unwrap(),
        vec![b"http/1.1".to_vec()]
    );
    assert!(matches!(
        alpn_protocols(&[String::new()]),
        Err(TlsConfigError::InvalidAlpn(_))
    ));
    assert!(alpn_protocols(&["x".repeat(256)]).is_err());
}

#[test]
fn provider_is_limited_to_intermediate_suites() {
    let p = crypto_provider();
    let names: Vec<&str> = p
        .cipher_suites
        .iter()
        .map(|s| s.suite().as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 9);
    for n in &names {
        assert!(
            n.starts_with("TLS13_") || n.starts_with("TLS_ECDHE_"),
            "unexpected suite {n}"
        );
        assert!(
            n.contains("GCM") || n.contains("CHACHA20"),
            "unexpected suite {n}"
        );
    }
    assert_eq!(p.kx_groups.len(), 3);
}

#[test]
fn sni_lookup_exact_wildcard_and_preference() {
    let dir = tempfile::tempdir().unwrap();
    let a = bundle(dir.path(), "a.pem", &["www.example.com", "example.com"]);
    let w = bundle(dir.path(), "w.pem", &["*.example.com"]);
    let store = CertStore::load(&[a, w], &crypto_provider()).unwrap();
    let exact = served_names(&store, "www.example.com").unwrap();
    assert!(exact.contains("www.example.com"), "{exact}");
    // Case and trailing dot do not matter.
    assert!(served_names(&store, "WWW.Example.COM.")
        .unwrap()
        .contains("www.example.com"));
    let wild = served_names(&store, "api.example.com").unwrap();
    assert!(wild.contains("*.example.com"), "{wild}");
    // A wildcard covers one label only.
    assert!(served_names(&store, "a.b.example.com").is_none());
    assert!(served_names(&store, "other.org").is_none());
    assert_eq!(
        store.infos()[0].names,
        vec!["www.example.com", "example.com"]
    );
}

#[test]
fn directory_is_loaded_sorted_skipping_side_files() {
    let dir = tempfile::tempdir().unwrap();
    bundle(dir.path(), "b.pem", &["b.test"]);
    bundle(dir.path(), "a.pem", &["a.test"]);
    // A cert whose key lives in `<file>.key`, HAProxy style.
    let (c, k) = self_signed(&["c.test"]);
    write(dir.path(), "c.crt", &c);
    write(dir.path(), "c.crt.key", &k);
    write(dir.path(), ".hidden", "not a cert");
    write(dir.path(), "a.pem.ocsp", "ocsp bytes");
    let store = CertStore::load(&[dir.path().to_owned()], &crypto_provider()).unwrap();
    let names: Vec<_> = store.infos().iter().map(|i| i.names[0].clone()).collect();
    assert_eq!(names, ["a.test", "b.test", "c.test"]);
}

#[test]
fn load_errors_name_the_file_and_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let p = crypto_provider();
    let load = |path: &Path| {
        CertStore::load(&[path.to_owned()], &p)
            .unwrap_err()
            .to_string()
    };

    let missing = dir.path().join("missing.pem");
    let e = load(&missing);
    assert!(
        e.starts_with(&format!("cannot read '{}':", missing.display())),
        "{e}"
    );

    let (c1, _) = self_signed(&["one.test"]);
    let (_, k2) = self_signed(&["two.test"]);
    let mismatch = write(dir.path(), "mismatch.pem", &format!("{c1}{k2}"));
    assert_eq!(
        load(&mismatch),
        format!(
            "'{}': the private key does not match the certificate",
            mismatch.display()
        )
    );

    let nokey = write(dir.path(), "nokey.pem", &c1);
    assert_eq!(
        load(&nokey),
        format!(
            "'{}': no private key found in the file nor in '{}.key'",
            nokey.display(),
            nokey.display()
        )
    );

    let nocert = write(dir.path(), "nocert.pem", &k2);
    assert!(load(&nocert).contains("no certificate found"));

    let garbage = write(
        dir.path(),
        "garbage.pem",
        "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
    );
    let e = load(&garbage);
    assert!(
        e.starts_with(&format!("'{}': invalid pem", garbage.display())),
        "{e}"
    );

    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    assert!(load(&empty).contains("directory holds no certificate file"));

    assert!(matches!(
        CertStore::load(&[], &p),
        Err(TlsConfigError::NoCertificates)
    ));
}

#[test]
fn expired_certificate_is_loaded_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["old.test".to_string()]).unwrap();
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    let cert = params.self_signed(&key).unwrap();
    let path = write(
        dir.path(),
        "old.pem",
        &format!("{}{}", cert.pem(), key.serialize_pem()),
    );
    let store = CertStore::load(&[path], &crypto_provider()).unwrap();
    let info = &store.infos()[0];
    assert!(info.is_expired_at(std::time::SystemTime::now()));
    assert!(store.lookup("old.test", SCHEMES).is_some());
}

#[test]
fn acceptor_reload_keeps_old_certificates_on_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = bundle(dir.path(), "site.pem", &["v1.test"]);
    let acceptor = TlsAcceptor::new(TlsServerSettings::with_certs([&path])).unwrap();
    assert_eq!(acceptor.certificates()[0].names, ["v1.test"]);

    write(dir.path(), "site.pem", "truncated");
    let e = acceptor.reload().unwrap_err();
    assert!(e.to_string().contains("site.pem"), "{e}");
    assert_eq!(acceptor.certificates()[0].names, ["v1.test"]);
    assert_eq!(
        acceptor
            .counters()
            .reloads_failed
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );

    bundle(dir.path(), "site.pem", &["v2.test"]);
    acceptor.reload().unwrap();
    assert_eq!(acceptor.certificates()[0].names, ["v2.test"]);
}

#[test]
fn connector_settings_are_validated() {
    let e = TlsConnector::new(&TlsClientSettings::default()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "verify required needs a ca-file (or verify none)"
    );
    let e = TlsConnector::new(&TlsClientSettings {
        verify: Verify::None,
        sni: Some("bad name!".into()),
        ..TlsClientSettings::default()
    })
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid sni 'bad name!': not a dns name or ip address"
    );
    let dir = tempfile::tempdir().unwrap();
    let not_ca = write(dir.path(), "ca.pem", "hello");
    let e = TlsConnector::new(&TlsClientSettings {
        ca_file: Some(not_ca.clone()),
        ..TlsClientSettings::default()
    })
    .unwrap_err();
    assert!(
        e.to_string()
            .starts_with(&format!("'{}': no usable ca certificate", not_ca.display())),
        "{e}"
    );
}

#[test]
fn same_name_prefers_a_key_the_client_can_verify() {
    let dir = tempfile::tempdir().unwrap();
    // RSA key from the openssl CLI (rcgen does not generate RSA keys).
    let out = std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
        ])
        .output()
        .expect("openssl genpkey");
    assert!(out.status.success());
    let rsa_pem = String::from_utf8(out.stdout).unwrap();
    let rsa_key = KeyPair::from_pem_and_sign_algo(&rsa_pem, &rcgen::PKCS_RSA_SHA256).unwrap();
    let rsa_cert = CertificateParams::new(vec!["dual.test".to_string()])
        .unwrap()
        .self_signed(&rsa_key)
        .unwrap();
    let rsa = write(
        dir.path(),
        "1-rsa.pem",
        &format!("{}{}", rsa_cert.pem(), rsa_key.serialize_pem()),
    );
    let ecdsa = bundle(dir.path(), "2-ecdsa.pem", &["dual.test"]);
    let store = CertStore::load(&[rsa, ecdsa], &crypto_provider()).unwrap();

    let algo = |schemes: &[SignatureScheme]| {
        let key = store.lookup("dual.test", schemes).unwrap();
        key.key.algorithm()
    };
    assert_eq!(
        algo(&[SignatureScheme::ECDSA_NISTP256_SHA256]),
        rustls::SignatureAlgorithm::ECDSA
    );
    assert_eq!(
        algo(&[SignatureScheme::RSA_PSS_SHA256]),
        rustls::SignatureAlgorithm::RSA
    );
    // Both acceptable: load order decides.
    assert_eq!(algo(SCHEMES), rustls::SignatureAlgorithm::RSA);
}
