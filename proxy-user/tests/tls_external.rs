//! Real clients against a test server built on `TlsAcceptor`: `openssl
//! s_client`, `curl`, and `sslyze --mozilla_config=intermediate`.
//!
//! openssl and curl are installed with apt when missing (skipped with a
//! printed reason if that fails). sslyze comes from PyPI into a venv under
//! target/ (see tls_sslyze.sh); if it cannot be installed the test fails
//! under CI=true and is skipped with a reason otherwise.

mod tls_support;

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use proxy_user::tls::{TlsAcceptor, TlsServerSettings};
use tls_support::*;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

/// A server for `www.example.com` + `localhost` (ECDSA) and `rsa.example.com`
/// (RSA), ALPN http/1.1, plus the CA file path.
async fn start() -> (TestServer, tempfile::TempDir) {
    let ca = TestCa::new("weir external test ca");
    let dir = tempdir();
    ca.leaf(&["www.example.com", "localhost"], KeyKind::EcdsaP256)
        .write_bundle(&ca, &p(dir.path(), "www.pem"));
    ca.leaf(&["rsa.example.com"], KeyKind::Rsa2048)
        .write_bundle(&ca, &p(dir.path(), "rsa.pem"));
    ca.write_cert(&p(dir.path(), "ca.pem"));
    let acceptor = TlsAcceptor::new(TlsServerSettings {
        alpn: vec!["http/1.1".into()],
        ..TlsServerSettings::with_certs([p(dir.path(), "www.pem"), p(dir.path(), "rsa.pem")])
    })
    .expect("acceptor");
    (serve(Arc::new(acceptor)).await, dir)
}

/// True when `tool` runs; tries `apt-get install` once when it does not.
fn have_tool(tool: &str, package: &str) -> bool {
    let runs = || {
        std::process::Command::new(tool)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok()
    };
    // `openssl --version` is not an option on old versions; `version` is.
    let runs = || {
        runs()
            || std::process::Command::new(tool)
                .arg("version")
                .output()
                .is_ok()
    };
    if runs() {
        return true;
    }
    let _ = std::process::Command::new("apt-get")
        .args(["install", "-y", "-q", package])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status();
    if runs() {
        return true;
    }
    eprintln!("SKIPPED: {tool} is not installed and `apt-get install {package}` failed");
    false
}

/// Runs `openssl s_client` with `args`, sends one request, returns stdout.
async fn s_client(addr: std::net::SocketAddr, ca: &Path, args: &[&str]) -> (bool, String) {
    let mut child = Command::new("openssl")
        .arg("s_client")
        .arg("-connect")
        .arg(addr.to_string())
        .arg("-CAfile")
        .arg(ca)
        .args(["-verify_return_error", "-ign_eof"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn openssl");
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(b"GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    drop(stdin);
    let out = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
        .await
        .expect("openssl s_client finished in time")
        .unwrap();
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test]
async fn openssl_s_client_handshakes_verifies_and_resumes() {
    if !have_tool("openssl", "openssl") {
        return;
    }
    let (server, dir) = start().await;
    let ca = p(dir.path(), "ca.pem");
    let sess = p(dir.path(), "session.pem");
    let sess_arg = sess.to_str().unwrap();

    let (ok, out) = s_client(
        server.addr,
        &ca,
        &[
            "-servername",
            "www.example.com",
            "-alpn",
            "http/1.1",
            "-sess_out",
            sess_arg,
        ],
    )
    .await;
    assert!(ok, "{out}");
    assert!(out.contains("Verify return code: 0 (ok)"), "{out}");
    assert!(out.contains("New, TLSv1.3"), "{out}");
    assert!(out.contains("ALPN protocol: http/1.1"), "{out}");
    assert!(
        out.contains(
            "scheme=https sni=www.example.com alpn=http/1.1 version=TLSv1.3 resumed=false"
        ),
        "{out}"
    );

    let (ok, out) = s_client(
        server.addr,
        &ca,
        &[
            "-servername",
            "www.example.com",
            "-alpn",
            "http/1.1",
            "-sess_in",
            sess_arg,
        ],
    )
    .await;
    assert!(ok, "{out}");
    assert!(out.contains("Reused, TLSv1.3"), "{out}");
    assert!(out.contains("resumed=true"), "{out}");

    // TLS 1.2 with the RSA certificate, picked by SNI.
    let (ok, out) = s_client(
        server.addr,
        &ca,
        &["-servername", "rsa.example.com", "-tls1_2"],
    )
    .await;
    assert!(ok, "{out}");
    assert!(
        out.contains("New, TLSv1.2, Cipher is ECDHE-RSA-AES"),
        "{out}"
    );
    assert!(out.contains("version=TLSv1.2"), "{out}");

    // A TLS 1.2 suite outside Mozilla intermediate is refused.
    let (ok, out) = s_client(
        server.addr,
        &ca,
        &[
            "-servername",
            "rsa.example.com",
            "-tls1_2",
            "-cipher",
            "AES128-SHA",
        ],
    )
    .await;
    assert!(!ok, "CBC/RSA key exchange suite accepted: {out}");
}

#[tokio::test]
async fn curl_fetches_over_https() {
    if !have_tool("curl", "curl") {
        return;
    }
    let (server, dir) = start().await;
    let port = server.addr.port();
    for (extra, version) in [(None, "TLSv1.3"), (Some("--tls-max"), "TLSv1.2")] {
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "--max-time", "20", "--cacert"])
            .arg(p(dir.path(), "ca.pem"))
            .arg("--resolve")
            .arg(format!("www.example.com:{port}:127.0.0.1"))
            .arg(format!("https://www.example.com:{port}/"));
        if let Some(flag) = extra {
            cmd.args([flag, "1.2"]);
        }
        let out = cmd.kill_on_drop(true).output().await.expect("run curl");
        let body = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "curl failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            body,
            format!(
                "scheme=https sni=www.example.com alpn=http/1.1 version={version} resumed=false\n"
            )
        );
    }
}

#[tokio::test]
async fn sslyze_reports_mozilla_intermediate_compliance() {
    let (server, dir) = start().await;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tls_sslyze.sh");
    let out = Command::new("bash")
        .arg(script)
        .arg("localhost")
        .arg(server.addr.port().to_string())
        .arg(p(dir.path(), "ca.pem"))
        .env("CARGO_TARGET_DIR", target_dir())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(540), out)
        .await
        .expect("sslyze finished in time")
        .expect("run tls_sslyze.sh");
    let report = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    match out.status.code() {
        Some(0) => {
            assert!(report.contains("OK - Compliant."), "{report}");
            let verdict = report
                .lines()
                .filter(|l| l.contains("Compliant"))
                .collect::<Vec<_>>();
            eprintln!("sslyze: {}", verdict.join(" | ").trim());
        }
        Some(3) if std::env::var("CI").as_deref() != Ok("true") => {
            eprintln!("SKIPPED: sslyze could not be installed:\n{report}");
        }
        _ => panic!("sslyze check failed:\n{report}"),
    }
}

/// The workspace target directory (the test binary lives in target/debug/deps).
fn target_dir() -> std::path::PathBuf {
    if let Ok(dir) = std::env::var("CARGO_TARGET_DIR") {
        return dir.into();
    }
    let exe = std::env::current_exe().expect("test exe");
    exe.ancestors().nth(3).expect("target dir").to_owned()
}
