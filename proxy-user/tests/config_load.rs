//! Loads configuration files from disk through the public API.

use std::path::{Path, PathBuf};
use std::time::Duration;

use proxy_user::config::{
    self, Balance, Condition, LogFormat, Mode, RequestView, XdpForward, XdpHash,
};

fn example_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/example-all-keywords.cfg")
}

/// Writes `text` to a fresh file named `name` and returns its path.
fn write_temp(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("weir-config-test-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

struct Req<'a> {
    method: &'a str,
    path: &'a str,
    headers: &'a [(&'a str, &'a str)],
}

impl RequestView for Req<'_> {
    fn method(&self) -> &str {
        self.method
    }
    fn path(&self) -> &str {
        self.path
    }
    fn header_values(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
            .collect()
    }
}

#[test]
fn example_with_every_keyword_loads_without_errors_or_warnings() {
    let (cfg, warnings) = config::load(example_path()).unwrap_or_else(|e| panic!("{e}"));
    assert!(warnings.is_empty(), "unexpected warnings: {warnings:#?}");

    assert_eq!(cfg.global.instance, "example");
    assert_eq!(cfg.global.stats_sync_interval, Duration::from_secs(1));
    assert_eq!(cfg.frontends.len(), 4);
    assert_eq!(cfg.backends.len(), 7);
    assert!(cfg.entities_without_guid().is_empty());

    let web = cfg.frontend("web").unwrap();
    assert_eq!(web.binds.len(), 3);
    assert_eq!(web.log_format, Some(LogFormat::Json));
    assert_eq!(web.use_backends.len(), 4);
    assert_eq!(web.http_request.len(), 5);

    let api = cfg.backend("api").unwrap();
    assert_eq!(api.balance, Balance::Hdr("x-user-id".into()));
    assert!(!api.redispatch, "'no option redispatch' overrides defaults");
    assert_eq!(api.timeouts.tunnel, Some(Duration::from_secs(3600)));

    let pg = cfg.frontend("postgres").unwrap();
    assert!(pg.from_listen);
    assert_eq!(pg.mode, Mode::Tcp);
    assert_eq!(pg.log_format, Some(LogFormat::Tcp));

    let dns = cfg.frontend("vip-dns").unwrap().xdp.unwrap();
    assert_eq!(
        (dns.forward, dns.hash),
        (XdpForward::Dsr, XdpHash::NoSrcPort)
    );
    assert_eq!(
        cfg.frontend("vip-https")
            .unwrap()
            .xdp
            .unwrap()
            .conntrack_size,
        262144
    );
}

#[test]
fn example_routing_rules_evaluate_as_written() {
    let (cfg, _) = config::load(example_path()).unwrap();
    let web = cfg.frontend("web").unwrap();
    // First matching use_backend wins, else default_backend.
    let route = |req: &Req| -> String {
        web.use_backends
            .iter()
            .find(|u| {
                u.condition
                    .as_ref()
                    .is_none_or(|c: &Condition| c.matches(req))
            })
            .map(|u| u.backend.clone())
            .or(web.default_backend.clone())
            .unwrap()
    };
    let get = |path, headers| Req {
        method: "GET",
        path,
        headers,
    };
    assert_eq!(route(&get("/", &[("Host", "API.example.com")])), "api");
    assert_eq!(route(&get("/api/x", &[("Authorization", "t")])), "api");
    assert_eq!(route(&get("/api/x", &[("X-Beta", "on")])), "api-beta");
    assert_eq!(route(&get("/healthz", &[])), "health");
    assert_eq!(route(&get("/", &[("x-request-id", "1")])), "health");
    assert_eq!(
        route(&Req {
            method: "POST",
            path: "/form",
            headers: &[]
        }),
        "app"
    );
    assert_eq!(route(&get("/index.html", &[])), "app");
}

#[test]
fn broken_config_reports_every_error_with_its_line() {
    let text = r#"# a config with many mistakes
global
    threads many
    stats-sync-interval 1x
    instance "bad name"

defaults
    mode http
    timeout client 30s
    timeout conect 5s

frontend web
    guid web
    bind :80
    bind 10.0.0.1
    defualt_backend app
    use_backend api if is_api
    server s1 10.0.0.1:80

frontend web
    bind :8080
    default_backend missing

backend app
    guid web
    server s1 10.0.0.1:80 wieght 2
    server s2 10.0.0.2:80 guid "not/valid"
    balance roundrobbin

listen l4
    mode tcp
    bind :0
    xdp
    maglev-table-size 65536

frontend h
    bind :81
    xdp
    default_backend app
"#;
    let path = write_temp("broken.cfg", text);
    let err = config::load(&path).expect_err("broken config must be rejected");
    let got: Vec<(usize, &str)> = err
        .errors
        .iter()
        .map(|e| (e.line.unwrap(), e.message.as_str()))
        .collect();
    let expected: &[(usize, &str)] = &[
        (3, "invalid number 'many' for threads"),
        (4, "invalid duration unit 'x'"),
        (5, "invalid instance name 'bad name'"),
        (10, "unknown timeout 'conect'"),
        (15, "address '10.0.0.1' has no port"),
        (16, "unknown keyword 'defualt_backend' in frontend 'web'"),
        (17, "acl 'is_api' is not defined"),
        (18, "keyword 'server' is not allowed in frontend 'web'"),
        (
            20,
            "frontend name 'web' is already used by the frontend at line 12",
        ),
        (22, "unknown backend 'missing'"),
        (
            25,
            "duplicate guid 'web' on backend 'app': already used by frontend 'web' at line 13",
        ),
        (26, "unknown server option 'wieght'"),
        (27, "invalid guid"),
        (28, "invalid value 'roundrobbin' for balance"),
        (
            32,
            "bind 0.0.0.0:0 in xdp listen 'l4' has no specific address",
        ),
        (34, "maglev-table-size 65536 is not a prime"),
        (38, "xdp cannot be used in frontend 'h', which is mode http"),
    ];
    assert_eq!(got.len(), expected.len(), "got:\n{err}");
    for ((line, msg), (want_line, want_msg)) in got.iter().zip(expected) {
        assert_eq!(line, want_line, "{msg}");
        assert!(
            msg.contains(want_msg),
            "line {line}: {msg:?} lacks {want_msg:?}"
        );
    }

    // The rendered report: one error per line, file:line prefix, then a count.
    let report = err.to_string();
    let display_path = path.display().to_string();
    assert!(report.contains(&format!(
        "{display_path}:16: unknown keyword 'defualt_backend' in frontend 'web' (did you mean 'default_backend'?)"
    )));
    assert!(report.contains(&format!(
        "{display_path}:10: unknown timeout 'conect' (did you mean 'connect'?)"
    )));
    assert!(report.ends_with(&format!("17 errors in {display_path}")));
    assert_eq!(report.lines().count(), 18);
    std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
}

#[test]
fn config_name_gives_the_default_instance() {
    let path = write_temp("edge-7.cfg", "global\n    log-level warn\n");
    let (cfg, _) = config::load(&path).unwrap();
    assert_eq!(cfg.global.instance, "edge-7");
    std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
}

/// The config blocks of README.md (the L7 and L4 examples, the ones that
/// start with a section keyword) are valid, so the README cannot drift
/// from the parser.
#[test]
fn readme_config_examples_are_valid() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .unwrap();
    let mut checked = 0;
    for (i, block) in readme.split("```").enumerate() {
        // Odd pieces are inside fences; a config block starts with a section.
        let body = block.strip_prefix('\n').unwrap_or(block);
        let is_config = i % 2 == 1
            && ["defaults", "frontend", "global"]
                .iter()
                .any(|s| body.starts_with(s));
        if !is_config {
            continue;
        }
        let path = write_temp(&format!("readme-{i}.cfg"), body);
        if let Err(e) = config::load(&path) {
            panic!("README.md config block {checked} is invalid: {e}\n{body}");
        }
        checked += 1;
    }
    assert!(checked >= 2, "found {checked} config blocks in README.md");
}
