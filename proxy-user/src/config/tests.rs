//! Behaviour tests of the whole pipeline (text -> model or errors).

use std::time::Duration;

use super::condition::{Fetch, Pattern, StrMatch};
use super::*;

const PATH: &str = "configs/test.cfg";

/// Timeouts and guids so that only the warnings a test is about show up.
const PREAMBLE: &str = "
defaults
    mode http
    timeout client 30s
    timeout connect 5s
    timeout server 30s
";

fn ok(text: &str) -> (Config, Vec<Warning>) {
    match parse_str(text, PATH) {
        Ok(v) => v,
        Err(e) => panic!("unexpected errors:\n{e}"),
    }
}

fn errs(text: &str) -> Vec<ConfigError> {
    match parse_str(text, PATH) {
        Ok(_) => panic!("config was accepted:\n{text}"),
        Err(e) => e.errors,
    }
}

/// Asserts exactly one error, on `line`, whose message contains `needle`;
/// returns it for further checks.
fn one_err(text: &str, line: usize, needle: &str) -> ConfigError {
    let e = errs(text);
    assert_eq!(e.len(), 1, "expected one error, got: {e:#?}");
    assert_eq!(e[0].line, Some(line), "wrong line: {}", e[0]);
    assert!(
        e[0].message.contains(needle),
        "message {:?} lacks {needle:?}",
        e[0].message
    );
    e.into_iter().next().unwrap()
}

fn with_preamble(body: &str) -> String {
    format!("{PREAMBLE}{body}")
}

/// A valid http frontend+backend used as a base by several tests (lines 7-).
fn web(extra_frontend: &str, extra_backend: &str) -> String {
    with_preamble(&format!(
        "frontend web\n    guid fe-web\n    bind :80\n{extra_frontend}\n    default_backend app\nbackend app\n    guid be-app\n    server s1 10.0.0.1:8080 guid s1\n{extra_backend}\n"
    ))
}

#[test]
fn minimal_http_config_parses_into_the_model() {
    let (cfg, warnings) = ok(&web("", ""));
    assert!(warnings.is_empty(), "{warnings:?}");
    let fe = cfg.frontend("web").unwrap();
    assert_eq!(fe.mode, Mode::Http);
    assert_eq!(fe.binds[0].addr, "0.0.0.0:80".parse().unwrap());
    assert_eq!(fe.default_backend.as_deref(), Some("app"));
    assert_eq!(fe.guid.as_ref().unwrap().as_str(), "fe-web");
    let be = cfg.backend("app").unwrap();
    assert_eq!(be.servers[0].addr, "10.0.0.1:8080".parse().unwrap());
    assert_eq!(be.servers[0].weight, 1);
    assert_eq!(be.retries, 3);
    assert_eq!(be.balance, Balance::RoundRobin);
}

#[test]
fn defaults_are_inherited_by_later_sections() {
    let (cfg, _) = ok("
defaults
    mode http
    timeout connect 5s
    timeout client 1m
    timeout server 30
    retries 5
    option redispatch
    option forwardfor
    balance leastconn
    hash-type consistent
    default-server check inter 3s fall 5
    maxconn 1000
backend app
    server s1 10.0.0.1:80
frontend web
    bind :80
    default_backend app
");
    let be = cfg.backend("app").unwrap();
    assert_eq!(be.mode, Mode::Http);
    assert_eq!(be.timeouts.connect, Some(Duration::from_secs(5)));
    assert_eq!(be.timeouts.server, Some(Duration::from_millis(30)));
    assert_eq!(be.retries, 5);
    assert!(be.redispatch && be.forwardfor == Some(ForwardFor::default()));
    assert_eq!(be.balance, Balance::LeastConn);
    assert_eq!(be.hash_type, HashType::Consistent);
    let s = &be.servers[0];
    assert!(s.check);
    assert_eq!(s.inter, Duration::from_secs(3));
    assert_eq!((s.rise, s.fall), (2, 5));
    let fe = cfg.frontend("web").unwrap();
    assert_eq!(fe.timeouts.client, Some(Duration::from_secs(60)));
    assert_eq!(fe.maxconn, Some(1000));
}

#[test]
fn a_new_defaults_section_starts_from_scratch() {
    let (cfg, _) = ok("
defaults
    mode http
    retries 7
defaults
    timeout connect 1s
backend a
    server s 10.0.0.1:80
");
    let be = cfg.backend("a").unwrap();
    assert_eq!(be.mode, Mode::Tcp);
    assert_eq!(be.retries, 3);
}

#[test]
fn no_option_turns_off_an_inherited_option() {
    let (cfg, _) = ok(&with_preamble("defaults\n mode http\n option forwardfor\n option httplog\nfrontend f\n bind :80\n no option forwardfor\n no option httplog\n default_backend b\nbackend b\n server s 10.0.0.1:80\n"));
    let fe = cfg.frontend("f").unwrap();
    assert!(fe.forwardfor.is_none());
    assert_eq!(fe.log_format, None);
}

#[test]
fn default_server_options_apply_to_later_servers_and_can_be_overridden() {
    let (cfg, _) = ok(&with_preamble(
        "backend b
    default-server weight 10 check backup
    server s1 10.0.0.1:80 no-check no-backup weight 20 maxconn 50
    server s2 10.0.0.2:80
",
    ));
    let be = cfg.backend("b").unwrap();
    let (s1, s2) = (&be.servers[0], &be.servers[1]);
    assert_eq!(
        (s1.weight, s1.check, s1.backup, s1.maxconn),
        (20, false, false, Some(50))
    );
    assert_eq!(
        (s2.weight, s2.check, s2.backup, s2.maxconn),
        (10, true, true, None)
    );
}

#[test]
fn misspelt_keyword_gets_a_suggestion() {
    let e = one_err(
        &web("    defualt_backend app", ""),
        10,
        "unknown keyword 'defualt_backend' in frontend 'web'",
    );
    assert_eq!(e.hint.as_deref(), Some("did you mean 'default_backend'?"));
    assert_eq!(e.column, Some(5));
    assert_eq!(
        e.to_string(),
        "configs/test.cfg:10: unknown keyword 'defualt_backend' in frontend 'web' (did you mean 'default_backend'?)"
    );
}

#[test]
fn keyword_in_the_wrong_section_names_the_right_ones() {
    let e = one_err(
        &web("    server x 10.0.0.9:80", ""),
        10,
        "keyword 'server' is not allowed in frontend 'web'",
    );
    assert_eq!(e.hint.as_deref(), Some("allowed in: backend, listen"));
}

#[test]
fn statements_before_any_section_are_rejected() {
    one_err("mode http\nglobal\n", 1, "outside any section");
}

#[test]
fn wrong_arity_shows_usage() {
    let e = one_err(
        &web("    maxconn", ""),
        10,
        "'maxconn' expects 1 argument, got 0",
    );
    assert_eq!(e.hint.as_deref(), Some("usage: maxconn N"));
    one_err(&web("", "    retries 1 2"), 15, "expects 1 argument, got 2");
}

#[test]
fn bad_numbers_and_durations_are_reported() {
    one_err(
        &web("", "    retries lots"),
        15,
        "invalid number 'lots' for retries",
    );
    one_err(
        &web("", "    timeout server 5x"),
        15,
        "invalid duration unit 'x'",
    );
    one_err(
        &web("", "    server s2 10.0.0.2:80 weight 300"),
        15,
        "weight 300 is out of range",
    );
    let e = one_err(
        &web("", "    timeout sever 5s"),
        15,
        "unknown timeout 'sever'",
    );
    assert_eq!(e.hint.as_deref(), Some("did you mean 'server'?"));
}

#[test]
fn all_timeouts_are_parsed() {
    let (cfg, _) = ok(&with_preamble(
        "backend b
    timeout http-request 10s
    timeout http-keep-alive 2s
    timeout queue 1m
    timeout tunnel 1h
    timeout check 500ms
    timeout client-fin 1s
    timeout server-fin 1500us
    server s 10.0.0.1:80
",
    ));
    let t = cfg.backend("b").unwrap().timeouts;
    assert_eq!(t.http_request, Some(Duration::from_secs(10)));
    assert_eq!(t.http_keep_alive, Some(Duration::from_secs(2)));
    assert_eq!(t.queue, Some(Duration::from_secs(60)));
    assert_eq!(t.tunnel, Some(Duration::from_secs(3600)));
    assert_eq!(t.check, Some(Duration::from_millis(500)));
    assert_eq!(t.client_fin, Some(Duration::from_secs(1)));
    assert_eq!(t.server_fin, Some(Duration::from_micros(1500)));
}

#[test]
fn listen_becomes_a_frontend_and_backend_pair() {
    let (cfg, _) = ok(&with_preamble("listen stats\n    guid l-stats\n    bind 127.0.0.1:8404\n    server s 10.0.0.1:80 guid l-s\n"));
    let fe = cfg.frontend("stats").unwrap();
    let be = cfg.backend("stats").unwrap();
    assert!(fe.from_listen && be.from_listen);
    assert_eq!(fe.default_backend.as_deref(), Some("stats"));
    assert_eq!(fe.guid, be.guid);
}

#[test]
fn use_backend_rules_keep_order_and_resolve_acls_declared_later() {
    let (cfg, _) = ok(&web(
        "    use_backend app if is_api or { hdr(host) -i api.example.com }\n    use_backend app unless is_get\n    acl is_api path_beg /api\n    acl is_get method GET HEAD",
        "",
    ));
    let fe = cfg.frontend("web").unwrap();
    assert_eq!(fe.use_backends.len(), 2);
    assert_eq!(fe.use_backends[0].line, 10);
    assert!(matches!(
        fe.use_backends[0].condition,
        Some(Condition::Or(_))
    ));
    assert!(matches!(
        fe.use_backends[1].condition,
        Some(Condition::Not(_))
    ));
}

#[test]
fn repeated_acl_names_are_or_ed() {
    let (cfg, _) = ok(&web(
        "    acl static path_beg /img\n    acl static path_end .css\n    use_backend app if static",
        "",
    ));
    let cond = cfg.frontend("web").unwrap().use_backends[0]
        .condition
        .clone()
        .unwrap();
    let Condition::Acl { definition, .. } = cond else {
        panic!("{cond:?}")
    };
    assert!(matches!(*definition, Condition::Or(ref v) if v.len() == 2));
}

#[test]
fn undefined_acl_is_an_error_with_a_suggestion() {
    let e = one_err(
        &web(
            "    acl is_api path_beg /api\n    use_backend app if is_apj",
            "",
        ),
        11,
        "acl 'is_apj' is not defined",
    );
    assert_eq!(e.hint.as_deref(), Some("did you mean 'is_api'?"));
}

#[test]
fn unused_acl_is_a_warning() {
    let (_, w) = ok(&web("    acl lonely path /x", ""));
    assert!(
        w.iter()
            .any(|w| w.message.contains("acl 'lonely'") && w.line == Some(10)),
        "{w:?}"
    );
}

#[test]
fn http_request_rules_parse_with_quoted_values_and_conditions() {
    let (cfg, _) = ok(&web(
        "    http-request set-header X-Env \"prod eu\"\n    http-request del-header X-Debug if { hdr(x-debug) -m found }",
        "    http-request set-header X-Backend app",
    ));
    let fe = cfg.frontend("web").unwrap();
    assert_eq!(
        fe.http_request[0].action,
        HttpRequestAction::SetHeader {
            name: "X-Env".into(),
            value: "prod eu".into()
        }
    );
    let Some(Condition::Test(t)) = &fe.http_request[1].condition else {
        panic!()
    };
    assert_eq!(t.fetch, Fetch::Header("x-debug".into()));
    assert_eq!(t.pattern, Pattern::Found);
    assert_eq!(cfg.backend("app").unwrap().http_request.len(), 1);
}

#[test]
fn unknown_backend_is_reported_at_the_referencing_line() {
    let text = with_preamble("frontend web\n    bind :80\n    default_backend ap\n    use_backend nope if { path / }\nbackend app\n    server s 10.0.0.1:80\n");
    let e = errs(&text);
    assert_eq!(e.len(), 2, "{e:#?}");
    assert_eq!(e[0].line, Some(9));
    assert!(e[0].message.contains("unknown backend 'ap'"));
    assert_eq!(e[0].hint.as_deref(), Some("did you mean 'app'?"));
    assert_eq!(e[1].line, Some(10));
}

#[test]
fn frontend_and_backend_modes_must_agree() {
    let text = with_preamble("frontend web\n    bind :80\n    default_backend db\nbackend db\n    mode tcp\n    server s 10.0.0.1:5432\n");
    one_err(&text, 9, "(mode http) cannot use backend 'db' (mode tcp)");
}

#[test]
fn duplicate_section_and_server_names_are_errors() {
    let text = with_preamble("backend a\n    server s 10.0.0.1:80\n    server s 10.0.0.2:80\nbackend a\nlisten a\n    bind :81\n");
    let e = errs(&text);
    let lines: Vec<_> = e.iter().map(|e| e.line.unwrap()).collect();
    assert_eq!(lines, [9, 10, 11], "{e:#?}");
    assert!(e[0].message.contains("server name 's' is used twice"));
    assert!(e[1]
        .message
        .contains("backend name 'a' is already used by the backend at line 7"));
    assert!(e[2].message.contains("listen name 'a' is already used"));
}

#[test]
fn duplicate_guids_across_entity_types_are_errors() {
    let text = web("", "    server s2 10.0.0.2:80 guid fe-web");
    let e = one_err(
        &text,
        15,
        "duplicate guid 'fe-web' on server 'app/s2': already used by frontend 'web' at line 8",
    );
    assert!(e.hint.is_some());
}

#[test]
fn invalid_guids_are_errors() {
    one_err(
        &web("", "    server s2 10.0.0.2:80 guid a/b"),
        15,
        "invalid guid",
    );
    one_err(
        &format!("{PREAMBLE}backend x\n    guid {}\n", "g".repeat(128)),
        8,
        "maximum is 127",
    );
    one_err(
        &web("", "    default-server guid x"),
        15,
        "guid cannot be set on default-server",
    );
}

#[test]
fn entities_without_guid_are_listed_once() {
    let (_, w) = ok(&with_preamble("frontend f\n    bind :80\n    default_backend b\nbackend b\n    server s1 10.0.0.1:80\n    server s2 10.0.0.2:80 guid s2\n"));
    let guid_warnings: Vec<_> = w
        .iter()
        .filter(|w| w.message.contains("without guid"))
        .collect();
    assert_eq!(guid_warnings.len(), 1);
    assert_eq!(guid_warnings[0].line, None);
    assert!(guid_warnings[0]
        .message
        .starts_with("3 entities without guid"));
    assert!(guid_warnings[0]
        .message
        .ends_with("frontend 'f', backend 'b', server 'b/s1'"));
}

#[test]
fn bind_tls_options_are_parsed() {
    let (cfg, _) = ok(&web(
        "    bind [::]:443 ssl crt /etc/weir/a.pem crt /etc/weir/b.pem strict-sni alpn h2,http/1.1 ssl-min-ver TLSv1.2 ssl-max-ver TLSv1.3",
        "",
    ));
    let b = &cfg.frontend("web").unwrap().binds[1];
    assert_eq!(b.addr, "[::]:443".parse().unwrap());
    let tls = b.tls.as_ref().unwrap();
    assert_eq!(tls.certs.len(), 2);
    assert!(tls.strict_sni);
    assert_eq!(tls.alpn, ["h2", "http/1.1"]);
    assert_eq!(tls.min_version, Some(TlsVersion::Tls12));
    assert_eq!(tls.max_version, Some(TlsVersion::Tls13));
}

#[test]
fn tls_bind_options_need_ssl_and_ssl_needs_a_certificate() {
    one_err(
        &web("    bind :443 crt /a.pem", ""),
        10,
        "'crt' needs 'ssl'",
    );
    one_err(
        &web("    bind :443 ssl", ""),
        10,
        "'ssl' needs at least one certificate",
    );
    one_err(
        &web(
            "    bind :443 ssl crt /a ssl-min-ver TLSv1.3 ssl-max-ver TLSv1.2",
            "",
        ),
        10,
        "lower than ssl-min-ver",
    );
    let e = one_err(
        &web("    bind :443 ssl crt /a strictsni", ""),
        10,
        "unknown bind option 'strictsni'",
    );
    assert_eq!(e.hint.as_deref(), Some("did you mean 'strict-sni'?"));
}

#[test]
fn defer_accept_is_a_bind_option_for_accepted_tcp_connections() {
    let (cfg, _) = ok(&web("    bind :8080 defer-accept", ""));
    let binds = &cfg.frontend("web").unwrap().binds;
    assert!(
        !binds[0].defer_accept,
        "off unless asked for, as in HAProxy"
    );
    assert!(binds[1].defer_accept);
    let text = "defaults\n    timeout client 1s\nfrontend f\n    mode udp\n    bind 10.0.0.1:53 defer-accept\n    xdp\n    default_backend b\nbackend b\n    mode udp\n    server s 10.0.0.2:53\n";
    let e = errs(text);
    assert!(
        e.iter()
            .any(|e| e.line == Some(5) && e.message.contains("defer-accept has no effect")),
        "{e:?}"
    );
}

#[test]
fn server_tls_verification_needs_a_ca_file() {
    one_err(&web("", "    server s2 10.0.0.2:443 ssl"), 15, "no ca-file");
    let (cfg, _) = ok(&web("", "    server s2 10.0.0.2:443 ssl verify none sni api.internal\n    server s3 10.0.0.3:443 ssl ca-file @system-ca"));
    let be = cfg.backend("app").unwrap();
    assert_eq!(be.servers[1].verify, Verify::None);
    assert_eq!(be.servers[1].sni.as_deref(), Some("api.internal"));
    assert_eq!(
        be.servers[2].ca_file.as_deref(),
        Some(std::path::Path::new("@system-ca"))
    );
}

#[test]
fn tcp_bind_needs_a_real_port() {
    let text = "defaults\n    timeout client 1s\nfrontend f\n    mode tcp\n    bind 10.0.0.1:0\n";
    let e = errs(text);
    assert_eq!(e[0].line, Some(5));
    assert!(e[0].message.contains("port 0"));
}

#[test]
fn xdp_frontend_may_use_port_zero_for_all_ports() {
    let (cfg, _) = ok("
frontend l4
    mode udp
    bind 192.0.2.10:0 interface eth0
    xdp strict forward dsr hash no-src-port
    maglev-table-size 251
    conntrack-size 100000
    default_backend dns
backend dns
    mode udp
    server d1 10.0.0.53
");
    let x = cfg.frontend("l4").unwrap().xdp.unwrap();
    assert!(x.strict);
    assert_eq!(x.forward, XdpForward::Dsr);
    assert_eq!(x.hash, XdpHash::NoSrcPort);
    assert_eq!((x.maglev_table_size, x.conntrack_size), (251, 100000));
    assert_eq!(cfg.backend("dns").unwrap().servers[0].addr.port(), 0);
}

#[test]
fn xdp_defaults_are_nat_5tuple_and_65537() {
    let (cfg, _) = ok("frontend l4\n    mode tcp\n    bind 192.0.2.1:443\n    xdp\n    default_backend b\nbackend b\n    server s 10.0.0.1:443\n");
    let x = cfg.frontend("l4").unwrap().xdp.unwrap();
    assert_eq!(
        x,
        Xdp {
            strict: false,
            forward: XdpForward::Nat,
            hash: XdpHash::FiveTuple,
            maglev_table_size: 65537,
            conntrack_size: 65536
        }
    );
}

#[test]
fn xdp_on_an_http_frontend_is_an_error_with_a_hint() {
    let e = one_err(
        &web("    xdp", ""),
        10,
        "xdp cannot be used in frontend 'web', which is mode http",
    );
    assert!(e.hint.unwrap().contains("mode tcp"));
}

#[test]
fn xdp_settings_are_checked() {
    let base = "frontend l4\n    mode tcp\n    bind :443 interface eth0\n    default_backend b\nbackend b\n    mode tcp\n    server s 10.0.0.1:443\n";
    let e = one_err(&format!("{base}frontend x\n    mode tcp\n    bind 192.0.2.1:1\n    xdp\n    maglev-table-size 1000\n"), 12, "not a prime");
    assert!(e.hint.unwrap().contains("1009"));
    one_err(
        &format!("{base}frontend x\n    mode tcp\n    bind :1\n    maglev-table-size 251\n"),
        11,
        "has no effect without 'xdp'",
    );
    one_err(
        &format!("{base}frontend x\n    mode tcp\n    bind :2\n    xdp\n"),
        10,
        "has no specific address",
    );
    one_err(
        &format!(
            "{base}frontend x\n    mode tcp\n    bind :3 interface eth0\n    xdp hash 4tuple\n"
        ),
        11,
        "invalid value '4tuple' for xdp hash",
    );
    one_err(
        &format!("{base}frontend x\n    mode udp\n    bind :53\n"),
        8,
        "mode udp but has no 'xdp'",
    );
}

#[test]
fn dsr_servers_must_keep_the_bind_port() {
    let text = "frontend l4\n    mode tcp\n    bind 192.0.2.1:443 interface eth0\n    xdp forward dsr\n    default_backend b\nbackend b\n    server s 10.0.0.1:8443\n";
    one_err(text, 7, "uses forward dsr");
}

#[test]
fn http_rules_in_a_tcp_frontend_are_errors() {
    let text = "defaults\n    timeout client 1s\nfrontend f\n    mode tcp\n    bind :5432\n    use_backend b if { path / }\n    http-request del-header x\nbackend b\n    mode tcp\n    server s 10.0.0.1:5432\n";
    let e = errs(text);
    let lines: Vec<_> = e.iter().map(|e| e.line.unwrap()).collect();
    assert_eq!(lines, [6, 7], "{e:#?}");
}

#[test]
fn http_only_options_in_tcp_mode_are_warnings() {
    let (_, w) = ok("defaults\n    timeout client 1s\nfrontend f\n    mode tcp\n    bind :5432\n    option forwardfor\n    default_backend b\nbackend b\n    mode tcp\n    timeout connect 1s\n    timeout server 1s\n    server s 10.0.0.1:5432\n");
    assert!(
        w.iter()
            .any(|w| w.line == Some(6) && w.message.contains("'option forwardfor' is ignored")),
        "{w:?}"
    );
}

#[test]
fn overlapping_binds_are_errors() {
    let text = web("    bind 10.0.0.5:80", "");
    one_err(&text, 10, "overlaps bind 0.0.0.0:80");
}

#[test]
fn check_intervals_are_per_server_with_default_server_inheritance() {
    let (cfg, _) = ok(&with_preamble(
        "    default-server check inter 1s fastinter 200ms fall 2
frontend web
    bind :80
    default_backend app
backend app
    default-server downinter 5s rise 4
    server a 10.0.0.1:80
    server b 10.0.0.2:80 inter 300ms fall 6 fastinter 100ms
    server c 10.0.0.3:80 no-check
",
    ));
    let s = &cfg.backend("app").unwrap().servers;
    let ms = Duration::from_millis;
    let got = |i: usize| {
        let s = &s[i];
        (s.check, s.inter, s.fastinter, s.downinter, s.rise, s.fall)
    };
    assert_eq!(
        got(0),
        (true, ms(1000), Some(ms(200)), Some(ms(5000)), 4, 2)
    );
    assert_eq!(got(1), (true, ms(300), Some(ms(100)), Some(ms(5000)), 4, 6));
    assert!(!s[2].check);
    let zero = web("", "    server s2 10.0.0.2:80 check fastinter 0");
    one_err(&zero, 15, "fastinter must be greater than 0");
}

#[test]
fn passive_health_keywords_are_parsed_and_inherited() {
    let (cfg, w) = ok(&with_preamble(
        "    default-server check observe layer4 on-error sudden-death
frontend web
    bind :80
    default_backend app
backend app
    server a 10.0.0.1:80
    server b 10.0.0.2:80 observe layer7 error-limit 3 on-error mark-down
    server c 10.0.0.3:80 observe none
    server d 10.0.0.4:80 no-check observe layer4
",
    ));
    let s = &cfg.backend("app").unwrap().servers;
    let got = |i: usize| (s[i].observe, s[i].error_limit, s[i].on_error);
    assert_eq!(got(0), (Some(Observe::Layer4), 10, OnError::SuddenDeath));
    assert_eq!(got(1), (Some(Observe::Layer7), 3, OnError::MarkDown));
    assert_eq!(got(2), (None, 10, OnError::SuddenDeath));
    // Without `check` there is no health state to act on: warned.
    let warned: Vec<_> = w
        .iter()
        .filter(|w| w.message.contains("'observe' but no 'check'"))
        .collect();
    assert_eq!(warned.len(), 1, "{w:?}");
    assert_eq!(warned[0].line, Some(15));
    assert!(warned[0].message.contains("'app/d'"), "{w:?}");
    // HAProxy's defaults.
    let (cfg, _) = ok(&web("", ""));
    let s = &cfg.backend("app").unwrap().servers[0];
    assert_eq!(
        (s.observe, s.error_limit, s.on_error),
        (None, 10, OnError::FailCheck)
    );
}

#[test]
fn passive_health_errors_and_tcp_mode_warning() {
    one_err(
        &web("", "    server s2 10.0.0.2:80 check observe layer5"),
        15,
        "invalid value 'layer5' for observe",
    );
    one_err(
        &web("", "    server s2 10.0.0.2:80 check error-limit 0"),
        15,
        "error-limit",
    );
    one_err(
        &web("", "    server s2 10.0.0.2:80 check on-error panic"),
        15,
        "invalid value 'panic' for on-error",
    );
    let e = one_err(
        &web(
            "",
            "    server s2 10.0.0.2:80 check on-marked-down shutdown-backup-sessions",
        ),
        15,
        "unknown on-marked-down action 'shutdown-backup-sessions'",
    );
    assert!(e.hint.unwrap().contains("on-marked-down shutdown-sessions"));
    let (cfg, w) = ok(&web(
        "",
        "    server s2 10.0.0.2:80 guid s2 check on-marked-down shutdown-sessions",
    ));
    assert!(w.is_empty(), "{w:?}");
    assert!(cfg.backend("app").unwrap().servers[1].shutdown_sessions_on_down);
    let (_, w) = ok(&web(
        "",
        "    server s2 10.0.0.2:80 guid s2 on-marked-down shutdown-sessions",
    ));
    assert!(
        w.iter()
            .any(|w| w.line == Some(15) && w.message.contains("has no effect: no 'check'")),
        "{w:?}"
    );
    let (_, w) = ok("defaults\n    timeout client 1s\n    timeout connect 1s\n    timeout server 1s\nlisten db\n    guid db\n    mode tcp\n    bind :5432\n    server s 10.0.0.1:5432 guid db-s check observe layer4\n");
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].message
            .contains("'observe' on server 'db/s' has no effect in a mode tcp backend"),
        "{w:?}"
    );
}

#[test]
fn health_check_settings_are_parsed() {
    let (cfg, _) = ok(&web(
        "",
        "    option httpchk GET /health\n    http-check expect status 204",
    ));
    let hc = cfg.backend("app").unwrap().http_check.clone().unwrap();
    assert_eq!(
        (hc.method.as_str(), hc.uri.as_str(), hc.expect_status),
        ("GET", "/health", Some(204))
    );
    let (cfg, _) = ok(&web("", "    option httpchk"));
    let hc = cfg.backend("app").unwrap().http_check.clone().unwrap();
    assert_eq!(
        (hc.method.as_str(), hc.uri.as_str(), hc.expect_status),
        ("OPTIONS", "/", None)
    );
    let (cfg, _) = ok(&web("", "    option httpchk HEAD /ready HTTP/1.1"));
    let hc = cfg.backend("app").unwrap().http_check.clone().unwrap();
    assert_eq!((hc.method.as_str(), hc.uri.as_str()), ("HEAD", "/ready"));
    let (cfg, _) = ok(&web("", "    option httpchk /ping"));
    assert_eq!(
        cfg.backend("app").unwrap().http_check.as_ref().unwrap().uri,
        "/ping"
    );
    one_err(
        &web("", "    option httpchk GET / HTTP/2"),
        15,
        "unsupported check HTTP version",
    );
    one_err(
        &web("", "    option httpchk GET / HTTP/1.1 x"),
        15,
        "expects 1 to 4 arguments, got 5",
    );
    one_err(
        &web("", "    option httpchk \"GE T\" /"),
        15,
        "invalid HTTP method",
    );
    one_err(
        &web("", "    option httpchk GET \"/a b\""),
        15,
        "invalid check URI",
    );
}

#[test]
fn global_settings_are_parsed_and_instance_defaults_to_file_stem() {
    let (cfg, _) = ok("global\n    log-level debug\n");
    assert_eq!(cfg.global.instance, "test");
    assert_eq!(cfg.global.log_level, log::LevelFilter::Debug);
    assert_eq!(cfg.global.stats_sync_interval, Duration::from_secs(1));
    let (cfg, _) = ok("global\n    instance edge-1\n    shm-stats-file /dev/shm/weir.stats\n    shm-stats-file-max-objects 5000\n    threads 4\n    stats-sync-interval 250ms\n    xdp-mode native\n    maxconn 10000\n");
    let g = &cfg.global;
    assert_eq!(g.instance, "edge-1");
    assert_eq!(
        g.shm_stats_file.as_deref(),
        Some(std::path::Path::new("/dev/shm/weir.stats"))
    );
    assert_eq!(g.shm_stats_file_max_objects, Some(5000));
    assert_eq!(g.threads, Some(4));
    assert_eq!(g.stats_sync_interval, Duration::from_millis(250));
    assert_eq!(g.xdp_mode, XdpMode::Native);
    assert_eq!(g.maxconn, Some(10000));
    one_err("global\n    instance ../etc\n", 2, "invalid instance name");
}

#[test]
fn balance_variants_parse() {
    for (text, want) in [
        ("roundrobin", Balance::RoundRobin),
        ("leastconn", Balance::LeastConn),
        ("source", Balance::Source),
        ("uri", Balance::Uri { whole: false }),
        ("uri whole", Balance::Uri { whole: true }),
        ("hdr(X-User)", Balance::Hdr("x-user".into())),
        ("random", Balance::Random),
        ("static-rr", Balance::StaticRr),
    ] {
        let (cfg, _) = ok(&web("", &format!("    balance {text}")));
        assert_eq!(cfg.backend("app").unwrap().balance, want);
    }
    let e = one_err(
        &web("", "    balance roundrobn"),
        15,
        "invalid value 'roundrobn' for balance",
    );
    assert!(e.hint.unwrap().contains("roundrobin"));
}

#[test]
fn log_settings_are_parsed() {
    let (cfg, _) = ok(&web("    log-format json\n    option logasap", ""));
    let fe = cfg.frontend("web").unwrap();
    assert_eq!(fe.log_format, Some(LogFormat::Json));
    assert!(fe.logasap);
    one_err(&web("    log-format %ci", ""), 10, "unsupported log-format");
}

#[test]
fn splice_auto_is_on_by_default_and_inherited() {
    let tcp = |defaults: &str, frontend: &str| {
        format!(
            "defaults\n    mode tcp\n    timeout client 30s\n    timeout connect 5s\n    timeout server 30s\n{defaults}\nfrontend f\n    guid f\n    bind :9000\n{frontend}\n    default_backend b\nbackend b\n    guid b\n    server s 10.0.0.1:9000 guid s\n"
        )
    };
    let splice = |text: String| ok(&text).0.frontend("f").unwrap().splice_auto;
    assert!(splice(tcp("", "")));
    assert!(!splice(tcp("    no option splice-auto", "")));
    assert!(splice(tcp(
        "    no option splice-auto",
        "    option splice-auto"
    )));
    assert!(!splice(tcp("", "    no option splice-auto")));
    one_err(
        &web("", "    option splice-auto"),
        15,
        "option 'splice-auto' is not allowed in backend 'app'",
    );
    one_err(
        &web("    option splice-auto on", ""),
        10,
        "option 'splice-auto' takes no arguments",
    );
}

#[test]
fn condition_tests_in_the_model_are_typed() {
    let (cfg, _) = ok(&web("    use_backend app if { path_beg -i /API }", ""));
    let Some(Condition::Test(t)) = &cfg.frontend("web").unwrap().use_backends[0].condition else {
        panic!()
    };
    assert_eq!(t.fetch, Fetch::Path);
    assert_eq!(
        t.pattern,
        Pattern::Str {
            kind: StrMatch::Prefix,
            ignore_case: true,
            values: vec!["/API".into()]
        }
    );
}

#[test]
fn every_error_in_a_file_is_reported_in_one_run() {
    let text = "\
global
    thread 4
frontend web
    bind 1.2.3.4
    mode htp
    default_backend nowhere
backend app
    server s1 10.0.0.1:80 wieght 3
    timeout connect ten
";
    let e = errs(text);
    let lines: Vec<_> = e.iter().map(|e| e.line.unwrap()).collect();
    assert_eq!(lines, [2, 4, 5, 6, 8, 9], "{e:#?}");
}

#[test]
fn quoted_keywords_and_odd_lines_never_panic() {
    // A few hand-picked nasty inputs; the property test below covers random ones.
    for text in [
        "\"",
        "frontend",
        "frontend \"\"",
        "backend b\n server",
        "backend b\n server s [",
        "listen l\n bind [",
        "frontend f\n use_backend",
        "frontend f\n http-request set-header",
        "frontend f\n acl",
        "frontend f\n acl a hdr(",
        "global\n\0\u{7f}",
        "backend b\n balance hdr()",
    ] {
        assert!(parse_str(text, PATH).is_err(), "{text:?} accepted");
    }
}

/// Tiny deterministic xorshift PRNG so the fuzz test needs no extra crate.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn random_input_never_panics_and_errors_point_inside_the_file() {
    let example = include_str!("../../../configs/example-all-keywords.cfg");
    let sample_lines: Vec<&str> = example.lines().collect();
    let alphabet: Vec<char> = "abcdefhimnoprstuvx0123456789 :.[]{}!|#\"'\\-_()@/\n\t"
        .chars()
        .collect();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for round in 0..3000 {
        let text: String = match round % 3 {
            // Random characters from a config-ish alphabet.
            0 => (0..rng.below(200))
                .map(|_| alphabet[rng.below(alphabet.len())])
                .collect(),
            // Shuffled real lines: valid words in invalid places.
            1 => (0..rng.below(40))
                .map(|_| sample_lines[rng.below(sample_lines.len())])
                .collect::<Vec<_>>()
                .join("\n"),
            // Real lines with a few words mutated or truncated.
            _ => {
                let mut lines: Vec<String> = sample_lines.iter().map(|l| l.to_string()).collect();
                for _ in 0..rng.below(8) + 1 {
                    let i = rng.below(lines.len());
                    let cut = rng.below(lines[i].len() + 1);
                    let mut l: String = lines[i].chars().take(cut).collect();
                    l.push(alphabet[rng.below(alphabet.len())]);
                    lines[i] = l;
                }
                lines.join("\n")
            }
        };
        let line_count = text.split('\n').count();
        if let Err(e) = parse_str(&text, PATH) {
            assert!(!e.errors.is_empty());
            for err in &e.errors {
                let line = err.line.expect("parse errors always have a line");
                assert!(
                    (1..=line_count).contains(&line),
                    "line {line} outside 1..={line_count}: {err}"
                );
            }
        }
    }
}

#[test]
fn random_bytes_through_load_never_panic() {
    let dir = std::env::temp_dir().join(format!("weir-config-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("fuzz.cfg");
    let mut rng = Rng(42);
    for _ in 0..200 {
        let bytes: Vec<u8> = (0..rng.below(300)).map(|_| rng.next() as u8).collect();
        std::fs::write(&path, &bytes).unwrap();
        let result = load(&path);
        if std::str::from_utf8(&bytes).is_err() {
            let e = result.expect_err("invalid UTF-8 must be rejected");
            assert!(e.errors.iter().any(|e| e.message == "invalid UTF-8"));
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn missing_file_is_a_single_file_level_error() {
    let e = load("/nonexistent/weir.cfg").unwrap_err();
    assert_eq!(e.errors.len(), 1);
    assert_eq!(e.errors[0].line, None);
    assert!(e.to_string().ends_with("1 error in /nonexistent/weir.cfg"));
}

#[test]
fn example_config_uses_every_keyword_and_option() {
    let example = include_str!("../../../configs/example-all-keywords.cfg");
    let lines: Vec<Vec<&str>> = example
        .lines()
        .map(|l| {
            l.split('#')
                .next()
                .unwrap_or("")
                .split_whitespace()
                .collect()
        })
        .filter(|w: &Vec<&str>| !w.is_empty())
        .collect();
    let first_words: Vec<&str> = lines.iter().map(|w| w[0]).collect();
    for k in super::parser::KEYWORDS {
        assert!(
            first_words.contains(&k.name),
            "keyword '{}' missing from the example",
            k.name
        );
    }
    let has_line = |a: &str, b: &str| lines.iter().any(|w| w.len() > 1 && w[0] == a && w[1] == b);
    for (o, _) in super::parser::OPTIONS {
        assert!(has_line("option", o), "option '{o}' missing");
    }
    for t in super::parser::TIMEOUTS {
        assert!(has_line("timeout", t), "timeout '{t}' missing");
    }
    let all_words: Vec<&str> = lines.iter().flatten().copied().collect();
    for o in super::parser::SERVER_OPTIONS
        .iter()
        .filter(|o| !o.starts_with("no-"))
    {
        assert!(all_words.contains(o), "server option '{o}' missing");
    }
    for o in super::parser::BIND_OPTIONS {
        assert!(all_words.contains(o), "bind option '{o}' missing");
    }
    for c in super::condition::CRITERIA
        .iter()
        .filter(|c| ["hdr", "req.hdr", "method", "path", "path_beg", "hdr_cnt"].contains(c))
    {
        assert!(
            all_words
                .iter()
                .any(|w| w == c || w.starts_with(&format!("{c}("))),
            "criterion '{c}' missing"
        );
    }
}

#[test]
fn http_only_settings_inherited_by_a_tcp_proxy_fall_back_silently() {
    let (cfg, w) = ok("defaults\n    mode http\n    option forwardfor\n    option httplog\n    balance uri\n    timeout client 1s\n    timeout connect 1s\n    timeout server 1s\nlisten db\n    guid db\n    mode tcp\n    bind :5432\n    server s 10.0.0.1:5432 guid db-s\n");
    assert!(w.is_empty(), "{w:?}");
    let (fe, be) = (cfg.frontend("db").unwrap(), cfg.backend("db").unwrap());
    assert!(fe.forwardfor.is_none() && be.forwardfor.is_none());
    assert_eq!(fe.log_format, Some(LogFormat::Tcp));
    assert_eq!(be.balance, Balance::RoundRobin);
}

#[test]
fn demo_origins_are_declared_in_global() {
    let (cfg, _) = ok("global\n    demo-origin blue 127.0.0.1:9001 [::1]:9001\n    demo-origin green 127.0.0.1:0\n");
    let d = &cfg.global.demo_origins;
    assert_eq!(d.len(), 2);
    assert_eq!(d[0].name, "blue");
    assert_eq!(
        d[0].addrs,
        [
            "127.0.0.1:9001".parse().unwrap(),
            "[::1]:9001".parse().unwrap()
        ]
    );
    assert_eq!(d[1].addrs[0].port(), 0);
    one_err(
        "global\n    demo-origin blue\n",
        2,
        "expects at least 2 arguments",
    );
    one_err(
        "global\n    demo-origin a 127.0.0.1:1\n    demo-origin a 127.0.0.1:2\n",
        3,
        "already defined at line 2",
    );
    let text = format!("global\n    demo-origin o 0.0.0.0:80\n{}", web("", ""));
    one_err(
        &text,
        11,
        "overlaps bind 0.0.0.0:80 of demo-origin 'o' at line 2",
    );
}

#[test]
fn http_check_expect_without_httpchk_is_warned_once_where_written() {
    let text = "defaults\n    http-check expect status 200\nbackend a\n    server s 10.0.0.1:80\nbackend b\n    http-check expect status 204\n    server s 10.0.0.1:80\n";
    let (cfg, w) = ok(text);
    let lines: Vec<_> = w
        .iter()
        .filter(|w| w.message.contains("http-check expect"))
        .map(|w| w.line)
        .collect();
    assert_eq!(lines, [Some(6)]);
    assert_eq!(cfg.backend("b").unwrap().http_check, None);
}

#[test]
fn a_bind_guid_names_a_listener_and_must_be_unique_like_every_guid() {
    let (cfg, _) = ok(&web("    bind 127.0.0.1:81 guid web.listener81", ""));
    let fe = cfg.frontend("web").unwrap();
    assert_eq!(
        fe.binds[1].guid.as_ref().unwrap().as_str(),
        "web.listener81"
    );
    assert_eq!(fe.binds[0].guid, None);
    // The first holder keeps the guid; the later backend is the error.
    let e = one_err(
        &web("    bind 127.0.0.1:81 guid be-app", ""),
        13,
        "duplicate guid 'be-app' on backend 'app': already used by bind 127.0.0.1:81 of frontend 'web' at line 10",
    );
    assert!(e.hint.unwrap().contains("bind"));
}

#[test]
fn allbackups_and_maxqueue_are_parsed_and_inherited() {
    let (cfg, _) = ok(&with_preamble(
        "defaults
    mode http
    option allbackups
    default-server maxconn 2 maxqueue 5
backend a
    server s1 10.0.0.1:80
    server s2 10.0.0.2:80 maxqueue 0
backend b
    no option allbackups
    server s 10.0.0.3:80 maxqueue 7
",
    ));
    let a = cfg.backend("a").unwrap();
    assert!(a.all_backups);
    assert_eq!(a.servers[0].maxqueue, Some(5));
    assert_eq!(a.servers[1].maxqueue, None, "maxqueue 0 means unlimited");
    let b = cfg.backend("b").unwrap();
    assert!(!b.all_backups);
    assert_eq!(
        (b.servers[0].maxconn, b.servers[0].maxqueue),
        (Some(2), Some(7))
    );
}

#[test]
fn forwardfor_takes_except_header_and_if_none() {
    let (cfg, _) = ok(&web(
        "    option forwardfor except 10.0.0.0/8 header X-Client-IP if-none",
        "    option forwardfor header X-Real-IP",
    ));
    let fe = cfg.frontend("web").unwrap();
    assert_eq!(
        fe.forwardfor,
        Some(ForwardFor {
            header: "X-Client-IP".into(),
            except: Some(Network::parse("10.0.0.0/8").unwrap()),
            if_none: true,
        })
    );
    let be = cfg.backend("app").unwrap();
    assert_eq!(be.forwardfor.as_ref().unwrap().header, "X-Real-IP");
    assert!(be.forwardfor.as_ref().unwrap().except.is_none());
    // Inherited from defaults with its options.
    let (cfg, _) = ok(&with_preamble(
        "    option forwardfor if-none\nfrontend f\n    bind :80\n    default_backend b\nbackend b\n    server s 10.0.0.1:80\n",
    ));
    assert!(
        cfg.frontend("f")
            .unwrap()
            .forwardfor
            .as_ref()
            .unwrap()
            .if_none
    );
}

#[test]
fn allbackups_outside_backends_and_bad_maxqueue_are_errors() {
    one_err(
        &web("    option allbackups", ""),
        10,
        "option 'allbackups' is not allowed in frontend",
    );
    let e = one_err(
        &web("", "    server s2 10.0.0.2:80 maxconn 1 maxqueue lots"),
        15,
        "invalid number 'lots' for maxqueue",
    );
    assert!(e.hint.is_some());
}

#[test]
fn maxqueue_without_maxconn_is_a_warning_on_the_server_line() {
    let (_, warnings) = ok(&web("", "    server s2 10.0.0.2:80 guid s2 maxqueue 3"));
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert_eq!(warnings[0].line, Some(15));
    assert!(warnings[0]
        .message
        .contains("'app/s2' has 'maxqueue' but no 'maxconn'"));
    assert_eq!(
        warnings[0].hint.as_deref(),
        Some("add 'maxconn N' to the server, or remove 'maxqueue'")
    );
}

#[test]
fn forwardfor_argument_errors_name_the_line() {
    one_err(
        &web("    option forwardfor except 10.0.0.1/8", ""),
        10,
        "bits set past",
    );
    one_err(
        &web("    option forwardfor except", ""),
        10,
        "'except' needs a value",
    );
    one_err(
        &web("    option forwardfor header Content-Length", ""),
        10,
        "cannot write 'Content-Length'",
    );
    one_err(
        &web("    option forwardfor header Host", ""),
        10,
        "cannot write 'Host'",
    );
    one_err(
        &web("    option forwardfor if-nonee", ""),
        10,
        "unknown option forwardfor argument",
    );
    one_err(
        &web("    no option forwardfor if-none", ""),
        10,
        "expects 2 arguments",
    );
    one_err(
        &web("    option logasap if-none", ""),
        10,
        "takes no arguments",
    );
}

#[test]
fn codec_limits_are_configurable() {
    let text = format!(
        "global\n    tune.bufsize 32k\n    tune.http.maxhdr 50\n{}",
        web(
            "    http-max-request-line 2k\n    http-max-body-size 10m\n    option http-reject-get-body",
            ""
        )
    );
    let (cfg, w) = ok(&text);
    assert!(w.is_empty(), "{w:?}");
    assert_eq!(cfg.global.tune_bufsize, Some(32 * 1024));
    assert_eq!(cfg.global.tune_http_maxhdr, Some(50));
    assert_eq!(
        cfg.global.tune_accept_coalesce,
        crate::uring::coalesce::DEFAULT_MAX
    );
    for (text, want) in [
        ("0", Duration::ZERO),
        ("50us", Duration::from_micros(50)),
        ("1", Duration::from_millis(1)),
    ] {
        let (cfg, _) = ok(&format!(
            "global\n    tune.accept-coalesce {text}\n{}",
            web("", "")
        ));
        assert_eq!(cfg.global.tune_accept_coalesce, want, "{text}");
    }
    let fe = cfg.frontend("web").unwrap();
    assert_eq!(fe.max_request_line, Some(2048));
    assert_eq!(fe.max_body_size, Some(10 << 20));
    assert!(fe.reject_get_body);
    // Defaults pass them on; 0 lifts an inherited body limit.
    let (cfg, _) = ok(&with_preamble(
        "    http-max-body-size 1k\nfrontend f\n    bind :80\n    default_backend b\nfrontend g\n    bind :81\n    http-max-body-size 0\n    default_backend b\nbackend b\n    server s 10.0.0.1:80\n",
    ));
    assert_eq!(cfg.frontend("f").unwrap().max_body_size, Some(1024));
    assert_eq!(cfg.frontend("g").unwrap().max_body_size, None);
    assert!(!cfg.frontend("g").unwrap().reject_get_body);
}

#[test]
fn codec_limit_errors_explain_the_range() {
    let e = one_err("global\n    tune.http.maxhdr 300\n", 2, "out of range");
    assert!(e.hint.unwrap().contains("256"));
    let e = one_err("global\n    tune.bufsize 1000\n", 2, "out of range");
    assert!(e.hint.unwrap().contains("tune.bufsize - 1024"));
    let e = one_err("global\n    tune.accept-coalesce 20ms\n", 2, "out of range");
    assert!(e.hint.unwrap().contains("10ms"));
    one_err(
        "global\n    tune.accept-coalesce 5x\n",
        2,
        "invalid duration unit",
    );
    let e = one_err("global\n    tune.bufsize 1000\n", 2, "out of range");
    assert!(e.hint.unwrap().contains("tune.bufsize - 1024"));
    one_err("global\n    tune.bufsize lots\n", 2, "invalid size");
    one_err(&web("    http-max-request-line 10", ""), 10, "out of range");
    one_err(&web("    http-max-body-size -1", ""), 10, "invalid size");
    one_err(
        "global\n    http-max-body-size 1k\n",
        2,
        "not allowed in global section",
    );
}

#[test]
fn http_only_limits_warn_on_tcp_frontends() {
    let (_, w) = ok("frontend f\n    mode tcp\n    timeout client 1s\n    bind :5432\n    http-max-body-size 1k\n    option http-reject-get-body\n    default_backend b\nbackend b\n    mode tcp\n    timeout connect 1s\n    timeout server 1s\n    server s 10.0.0.1:5432\n");
    assert!(
        w.iter()
            .any(|w| w.line == Some(5) && w.message.contains("'http-max-body-size' is ignored")),
        "{w:?}"
    );
    assert!(
        w.iter().any(|w| w.line == Some(6)
            && w.message
                .contains("'option http-reject-get-body' is ignored")),
        "{w:?}"
    );
}

#[test]
fn header_rules_cannot_touch_framing_fields() {
    for (rule, needle) in [
        (
            "set-header Content-Length 5",
            "cannot change 'Content-Length'",
        ),
        (
            "del-header transfer-encoding",
            "cannot change 'transfer-encoding'",
        ),
        ("set-header Connection close", "hop-by-hop"),
        ("del-header Upgrade", "hop-by-hop"),
        ("set-header TE trailers", "hop-by-hop"),
        ("del-header Keep-Alive", "hop-by-hop"),
    ] {
        let e = one_err(&web(&format!("    http-request {rule}"), ""), 10, needle);
        assert!(e.hint.unwrap().contains("does not re-frame"), "{rule}");
    }
    // Other fields stay allowed, Host included.
    ok(&web(
        "    http-request set-header Host example.com\n    http-request del-header X-Debug",
        "",
    ));
}

#[test]
fn header_rule_values_cannot_hold_cr_lf_or_nul() {
    one_err(
        &web(
            "    http-request set-header X-A \"a\\r\\nX-Injected: 1\"",
            "",
        ),
        10,
        "control character '\\r'",
    );
    one_err(
        &web("    http-request set-header X-A \"a\\nb\"", ""),
        10,
        "control character '\\n'",
    );
    one_err(
        &web("    http-request set-header X-A a\0b", ""),
        10,
        "control character '\\0'",
    );
    ok(&web("    http-request set-header X-A \"a\\tb c\"", ""));
}

#[test]
fn add_header_parses_and_is_checked_like_set_header() {
    let (cfg, _) = ok(&web(
        "    http-request add-header X-Via \"weir edge\" if { path_beg /a }",
        "",
    ));
    let rule = &cfg.frontend("web").unwrap().http_request[0];
    assert_eq!(
        rule.action,
        HttpRequestAction::AddHeader {
            name: "X-Via".into(),
            value: "weir edge".into()
        }
    );
    assert!(rule.condition.is_some());
    one_err(
        &web("    http-request add-header Transfer-Encoding chunked", ""),
        10,
        "cannot change 'Transfer-Encoding'",
    );
    one_err(
        &web("    http-request add-header Host b", ""),
        10,
        "second 'Host'",
    );
    one_err(
        &web("    http-request add-header X-A \"a\\nb\"", ""),
        10,
        "control character",
    );
    one_err(
        &web("    http-request add-header X-A", ""),
        10,
        "needs a header name and a value",
    );
}
