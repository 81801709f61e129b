//! Handlers for the keywords of `global` and of proxy sections
//! (defaults, frontend, backend, listen): one match arm per keyword.

use super::*;

impl Parser<'_> {
    pub(super) fn global_keyword(&mut self, line: &Line) -> Result<(), Problem> {
        let key = line.words[0].text.as_str();
        if key == "demo-origin" {
            return self.demo_origin(line);
        }
        if key == "noiouring" {
            args(line, 0, 0)?;
            self.global.io_uring = false;
            return Ok(());
        }
        let a = args(line, 1, 1)?;
        let v = &a[0];
        match key {
            "instance" => {
                let ok = !v.text.is_empty()
                    && v.text.len() <= 64
                    && v.text
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                if !ok {
                    return Err(Problem::new(v.col, format!("invalid instance name '{}'", v.text))
                        .hint("use 1-64 characters of [A-Za-z0-9_-]; it names /sys/fs/bpf/weir/<instance>/"));
                }
                self.global.instance = v.text.clone();
            }
            "shm-stats-file" => {
                if v.text.is_empty() {
                    return Err(Problem::new(v.col, "empty path"));
                }
                self.global.shm_stats_file = Some(PathBuf::from(&v.text));
            }
            "shm-stats-file-max-objects" => {
                self.global.shm_stats_file_max_objects =
                    Some(number(v, key, 1, u32::MAX.into())? as u32);
            }
            "log-level" => {
                use log::LevelFilter as Lf;
                self.global.log_level = choice(
                    v,
                    key,
                    &[
                        ("error", Lf::Error),
                        ("warn", Lf::Warn),
                        ("info", Lf::Info),
                        ("debug", Lf::Debug),
                        ("trace", Lf::Trace),
                        ("off", Lf::Off),
                        // syslog names, as HAProxy users write them
                        ("emerg", Lf::Error),
                        ("alert", Lf::Error),
                        ("crit", Lf::Error),
                        ("err", Lf::Error),
                        ("warning", Lf::Warn),
                        ("notice", Lf::Info),
                    ],
                )?;
            }
            "threads" => self.global.threads = Some(number(v, key, 1, 4096)? as u32),
            "stats-sync-interval" => {
                let d = duration(v)?;
                if d.is_zero() {
                    return Err(
                        Problem::new(v.col, "stats-sync-interval must be greater than 0")
                            .hint("e.g. 1s"),
                    );
                }
                self.global.stats_sync_interval = d;
            }
            "xdp-mode" => {
                self.global.xdp_mode = choice(
                    v,
                    key,
                    &[
                        ("auto", XdpMode::Auto),
                        ("native", XdpMode::Native),
                        ("generic", XdpMode::Generic),
                    ],
                )?;
            }
            "maxconn" => self.global.maxconn = Some(number(v, key, 1, u32::MAX.into())? as u32),
            "tune.bufsize" => {
                // The head limit is the buffer minus HAProxy's rewrite
                // reserve; below 2 KiB almost no real request head fits.
                let min = 2 * u64::from(HEAD_REWRITE_RESERVE);
                self.global.tune_bufsize = Some(
                    size(v, key, min, 16 << 20)
                        .map_err(|p| p.hint(format!("from {min} bytes to 16m; the largest head accepted is tune.bufsize - {HEAD_REWRITE_RESERVE} (HAProxy's tune.maxrewrite reserve)")))?
                        as u32,
                );
            }
            "tune.http.maxhdr" => {
                let max = crate::http::MAX_HEADERS_CEILING as u64;
                self.global.tune_http_maxhdr = Some(number(v, key, 1, max).map_err(|p| {
                    p.hint(format!(
                        "1 to {max}: Weir keeps the header table of a message on the stack, sized for at most {max} fields (HAProxy allows up to 32767)"
                    ))
                })? as u16);
            }
            "tune.accept-coalesce" => {
                let d = duration(v)?;
                if d > MAX_ACCEPT_COALESCE {
                    return Err(Problem::new(v.col, format!("'{}' is out of range", v.text))
                        .hint("0 (off) to 10ms; the default is 200us: a longer pause only delays connections more"));
                }
                self.global.tune_accept_coalesce = d;
            }
            _ => unreachable!("check_keyword lets only global keywords through"),
        }
        Ok(())
    }

    /// `demo-origin NAME ADDR:PORT...`: a built-in test origin to start.
    pub(super) fn demo_origin(&mut self, line: &Line) -> Result<(), Problem> {
        let a = args(line, 2, usize::MAX)?;
        check_name(&a[0])?;
        if let Some(other) = self
            .global
            .demo_origins
            .iter()
            .find(|d| d.name == a[0].text)
        {
            return Err(Problem::new(
                a[0].col,
                format!(
                    "demo-origin '{}' already defined at line {}",
                    a[0].text, other.line
                ),
            ));
        }
        let addrs = a[1..]
            .iter()
            .map(|w| parse_addr(w, false))
            .collect::<Result<Vec<_>, _>>()?;
        self.global.demo_origins.push(DemoOrigin {
            name: a[0].text.clone(),
            addrs,
            line: line.number,
        });
        Ok(())
    }

    pub(super) fn proxy_keyword(&mut self, sec: &mut Section, line: &Line) -> Result<(), Problem> {
        let key = line.words[0].text.as_str();
        let n = line.number;
        match key {
            "mode" => {
                let a = args(line, 1, 1)?;
                sec.s.mode = choice(
                    &a[0],
                    key,
                    &[("tcp", Mode::Tcp), ("http", Mode::Http), ("udp", Mode::Udp)],
                )?;
            }
            "bind" => {
                let (bind, guid_col) = parse_bind(line)?;
                if let (Some(g), Some(col)) = (&bind.guid, guid_col) {
                    let what = format!("bind {} of {}", bind.addr, sec.describe());
                    self.claim_guid(g, what, n, col)?;
                }
                sec.binds.push(bind);
            }
            "default_backend" => {
                let a = args(line, 1, 1)?;
                check_name(&a[0])?;
                if sec.default_backend.is_some() {
                    return Err(Problem::new(
                        a[0].col,
                        format!("default_backend set twice in {}", sec.describe()),
                    )
                    .hint(
                        "keep one default_backend; use 'use_backend NAME if ...' for the others",
                    ));
                }
                sec.default_backend = Some((a[0].text.clone(), n));
            }
            "use_backend" | "http-request" => sec.deferred.push(line.clone()),
            "acl" => {
                let a = args(line, 2, usize::MAX)?;
                let name = &a[0];
                if name.text.is_empty()
                    || !name
                        .text
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
                {
                    return Err(Problem::new(
                        name.col,
                        format!("invalid acl name '{}'", name.text),
                    )
                    .hint("use letters, digits, '_', '.', '-'"));
                }
                let mut test = parse_test(&a[1..]);
                if let Err(p) = &mut test {
                    if p.col == 0 {
                        p.col = a[1].col;
                    }
                }
                sec.acls.push((name.text.clone(), test?, n));
            }
            "server" => {
                let a = args(line, 2, usize::MAX)?;
                check_name(&a[0])?;
                let addr = parse_addr(&a[1], true)?;
                let (opts, guid) = parse_server_opts(&a[2..], true)?;
                let mut merged = sec.s.default_server.clone();
                merged.overlay(&opts);
                if let Some((g, col)) = &guid {
                    let what = format!("server '{}/{}'", sec.name, a[0].text);
                    self.claim_guid(g, what, n, *col)?;
                }
                let guid = guid.map(|g| g.0);
                let server = resolve_server(a[0].text.clone(), addr, n, guid, merged)
                    .map_err(|p| Problem { col: a[0].col, ..p })?;
                sec.servers.push(server);
            }
            "default-server" => {
                let (opts, _) = parse_server_opts(&line.words[1..], false)?;
                sec.s.default_server.overlay(&opts);
            }
            "balance" => {
                let a = args(line, 1, 2)?;
                let v = &a[0];
                // Only `balance uri whole` takes a second word.
                if let Some(extra) = a.get(1) {
                    if !(v.text == "uri" && extra.text == "whole") {
                        return Err(Problem::new(
                            extra.col,
                            format!("unexpected '{}' after 'balance {}'", extra.text, v.text),
                        )
                        .hint("only 'balance uri whole' takes an option"));
                    }
                }
                sec.s.balance = if let Some(h) = v
                    .text
                    .strip_prefix("hdr(")
                    .and_then(|r| r.strip_suffix(')'))
                {
                    if h.is_empty() {
                        return Err(Problem::new(v.col, "balance hdr() needs a header name")
                            .hint("e.g. balance hdr(x-user-id)"));
                    }
                    Balance::Hdr(h.to_ascii_lowercase())
                } else {
                    choice(
                        v,
                        key,
                        &[
                            ("roundrobin", Balance::RoundRobin),
                            ("leastconn", Balance::LeastConn),
                            ("source", Balance::Source),
                            ("uri", Balance::Uri { whole: a.len() == 2 }),
                            ("random", Balance::Random),
                            ("static-rr", Balance::StaticRr),
                        ],
                    )
                    .map_err(|p| p.hint("use roundrobin, leastconn, source, uri, hdr(NAME), random or static-rr"))?
                };
                if matches!(sec.s.balance, Balance::Uri { .. } | Balance::Hdr(_))
                    && sec.kind != Kind::Defaults
                {
                    sec.http_only.push((format!("balance {}", v.text), n));
                }
            }
            "hash-type" => {
                let a = args(line, 1, 1)?;
                sec.s.hash_type = choice(
                    &a[0],
                    key,
                    &[
                        ("map-based", HashType::MapBased),
                        ("consistent", HashType::Consistent),
                    ],
                )?;
            }
            "timeout" => {
                let a = args(line, 2, 2)?;
                let which = &a[0];
                let d = duration(&a[1])?;
                let t = &mut sec.s.timeouts;
                let slot = match which.text.as_str() {
                    "connect" => &mut t.connect,
                    "client" => &mut t.client,
                    "server" => &mut t.server,
                    "http-request" => &mut t.http_request,
                    "http-keep-alive" => &mut t.http_keep_alive,
                    "queue" => &mut t.queue,
                    "tunnel" => &mut t.tunnel,
                    "check" => &mut t.check,
                    "client-fin" => &mut t.client_fin,
                    "server-fin" => &mut t.server_fin,
                    other => {
                        return Err(
                            Problem::new(which.col, format!("unknown timeout '{other}'"))
                                .hint(format!("timeouts: {}", TIMEOUTS.join(", ")))
                                .suggest(other, TIMEOUTS.iter().copied()),
                        )
                    }
                };
                *slot = Some(d);
            }
            "option" => self.option(sec, line, true)?,
            "no" => {
                let a = args(line, 2, 2)?;
                if !a[0].is("option") {
                    return Err(Problem::new(a[0].col, "'no' only negates options")
                        .hint("write 'no option NAME'"));
                }
                self.option(sec, line, false)?;
            }
            "http-check" => {
                let a = args(line, 3, 3)?;
                if !a[0].is("expect") || !a[1].is("status") {
                    return Err(Problem::new(
                        a[0].col,
                        "only 'http-check expect status CODE' is supported",
                    )
                    .hint("e.g. http-check expect status 200"));
                }
                sec.s.expect_status = Some((number(&a[2], "status", 100, 599)? as u16, n));
            }
            "retries" => {
                let a = args(line, 1, 1)?;
                sec.s.retries = number(&a[0], key, 0, 100)? as u32;
            }
            "log-format" => {
                let a = args(line, 1, 1)?;
                if a[0].text != "json" {
                    return Err(Problem::new(a[0].col, format!("unsupported log-format '{}'", a[0].text))
                        .hint("only 'log-format json' is supported; use 'option httplog' or 'option tcplog' for text logs"));
                }
                sec.s.log_format = Some(LogFormat::Json);
            }
            "maxconn" => {
                let a = args(line, 1, 1)?;
                sec.s.maxconn = Some(number(&a[0], key, 1, u32::MAX.into())? as u32);
            }
            "guid" => {
                let a = args(line, 1, 1)?;
                let g = Guid::parse(&a[0].text).map_err(|m| {
                    Problem::new(a[0].col, format!("invalid guid: {m}"))
                        .hint("use 1-127 characters of [A-Za-z0-9.:_-]")
                })?;
                if sec.guid.is_some() {
                    return Err(Problem::new(
                        a[0].col,
                        format!("guid set twice in {}", sec.describe()),
                    ));
                }
                self.claim_guid(&g, sec.describe(), n, a[0].col)?;
                sec.guid = Some(g);
            }
            "xdp" => {
                if sec.xdp.is_some() {
                    return Err(Problem::new(
                        line.words[0].col,
                        format!("xdp set twice in {}", sec.describe()),
                    ));
                }
                sec.xdp = Some(parse_xdp(line)?);
            }
            "maglev-table-size" => {
                let a = args(line, 1, 1)?;
                let size = number(&a[0], key, 3, 16_777_213)? as u32;
                if !is_prime(size) {
                    return Err(Problem::new(
                        a[0].col,
                        format!("maglev-table-size {size} is not a prime"),
                    )
                    .hint(format!(
                        "the Maglev table needs a prime size; nearest larger prime: {}",
                        next_prime(size)
                    )));
                }
                sec.maglev = Some((size, n));
            }
            "http-max-request-line" => {
                let a = args(line, 1, 1)?;
                // Shorter than "GET / HTTP/1.1" plus a little would refuse
                // about everything; above the head limit it never applies.
                sec.s.max_request_line = Some(size(&a[0], key, 64, 16 << 20)? as u32);
                if sec.kind != Kind::Defaults {
                    sec.http_only.push((key.to_string(), n));
                }
            }
            "http-max-body-size" => {
                let a = args(line, 1, 1)?;
                // 0 lifts a limit inherited from defaults.
                let max = size(&a[0], key, 0, 1 << 62)?;
                sec.s.max_body_size = (max > 0).then_some(max);
                if sec.kind != Kind::Defaults {
                    sec.http_only.push((key.to_string(), n));
                }
            }
            "conntrack-size" => {
                let a = args(line, 1, 1)?;
                sec.conntrack = Some((number(&a[0], key, 1024, 67_108_864)? as u32, n));
            }
            _ => unreachable!("check_keyword lets only proxy keywords through"),
        }
        Ok(())
    }

    /// `option NAME ...` (enable = true) or `no option NAME` (enable = false).
    pub(super) fn option(
        &mut self,
        sec: &mut Section,
        line: &Line,
        enable: bool,
    ) -> Result<(), Problem> {
        let a = if enable {
            args(line, 1, 6)?
        } else {
            &line.words[2..]
        };
        let w = &a[0];
        let name = w.text.as_str();
        let Some((_, allowed)) = OPTIONS.iter().find(|(o, _)| *o == name) else {
            return Err(Problem::new(w.col, format!("unknown option '{name}'"))
                .hint(format!(
                    "options: {}",
                    OPTIONS.iter().map(|o| o.0).collect::<Vec<_>>().join(", ")
                ))
                .suggest(name, OPTIONS.iter().map(|o| o.0)));
        };
        if enable && name == "httpchk" {
            args(line, 1, 4)?; // option httpchk [METHOD] URI [VERSION]
        }
        if allowed & sec.kind.bit() == 0 {
            return Err(Problem::new(
                w.col,
                format!("option '{name}' is not allowed in {}", sec.describe()),
            ));
        }
        if name != "httpchk" && !(name == "forwardfor" && enable) {
            if let Some(extra) = a.get(1) {
                return Err(Problem::new(
                    extra.col,
                    format!("option '{name}' takes no arguments"),
                ));
            }
        }
        let s = &mut sec.s;
        match name {
            "forwardfor" => {
                s.forwardfor = enable.then(|| forwardfor_options(&a[1..])).transpose()?
            }
            "http-reject-get-body" => s.reject_get_body = enable,
            "redispatch" => s.redispatch = enable,
            "allbackups" => s.all_backups = enable,
            "logasap" => s.logasap = enable,
            "splice-auto" => s.splice_auto = enable,
            "httplog" | "tcplog" => {
                let fmt = if name == "httplog" {
                    LogFormat::Http
                } else {
                    LogFormat::Tcp
                };
                if enable {
                    s.log_format = Some(fmt);
                } else if s.log_format == Some(fmt) {
                    s.log_format = None;
                }
            }
            _ => {
                s.httpchk = if !enable {
                    None
                } else {
                    // HAProxy: one argument is the URI, two are METHOD URI,
                    // a third is the HTTP version (checks always go out as
                    // HTTP/1.1, so only 1.x is accepted and it is not kept).
                    match &a[1..] {
                        [] => Some(("OPTIONS".into(), "/".into())),
                        [uri] => Some(("OPTIONS".into(), check_uri(uri)?)),
                        [method, uri, rest @ ..] => {
                            if let Some(v) = rest.first().filter(|v| !v.text.starts_with("HTTP/1."))
                            {
                                return Err(Problem::new(
                                    v.col,
                                    format!("unsupported check HTTP version '{}'", v.text),
                                )
                                .hint(
                                    "checks are sent as HTTP/1.1; write HTTP/1.1 or leave it out",
                                ));
                            }
                            Some((check_method(method)?, check_uri(uri)?))
                        }
                    }
                };
            }
        }
        if enable
            && sec.kind != Kind::Defaults
            && matches!(name, "forwardfor" | "httplog" | "http-reject-get-body")
        {
            sec.http_only.push((format!("option {name}"), line.number));
        }
        Ok(())
    }
}

/// The words after `option forwardfor`: `except NETWORK`, `header NAME`,
/// `if-none`, in any order (HAProxy's syntax).
fn forwardfor_options(words: &[Word]) -> Result<ForwardFor, Problem> {
    let mut ff = ForwardFor::default();
    let mut i = 0;
    while let Some(w) = words.get(i) {
        let value = || {
            words.get(i + 1).ok_or_else(|| {
                Problem::new(w.col, format!("'{}' needs a value", w.text))
                    .hint("usage: option forwardfor [except NETWORK] [header NAME] [if-none]")
            })
        };
        match w.text.as_str() {
            "except" => {
                let v = value()?;
                let net = Network::parse(&v.text).map_err(|m| {
                    Problem::new(v.col, format!("invalid network for 'except': {m}"))
                        .hint("an address or ADDR/LEN, e.g. 10.0.0.0/8 or 2001:db8::/32")
                })?;
                ff.except = Some(net);
                i += 2;
            }
            "header" => {
                let v = value()?;
                check_header_name(v)?;
                if let Some(why) = reserved_header_reason(&v.text) {
                    return Err(Problem::new(
                        v.col,
                        format!("option forwardfor cannot write '{}': {why}", v.text),
                    )
                    .hint("use a name such as X-Client-IP"));
                }
                if v.text.eq_ignore_ascii_case("host")
                    || v.text.eq_ignore_ascii_case("x-forwarded-proto")
                {
                    return Err(Problem::new(
                        v.col,
                        format!(
                            "option forwardfor cannot write '{}': Weir sets it itself",
                            v.text
                        ),
                    )
                    .hint("use a name such as X-Client-IP"));
                }
                ff.header = v.text.clone();
                i += 2;
            }
            "if-none" => {
                ff.if_none = true;
                i += 1;
            }
            other => {
                return Err(Problem::new(
                    w.col,
                    format!("unknown option forwardfor argument '{other}'"),
                )
                .hint("usage: option forwardfor [except NETWORK] [header NAME] [if-none]")
                .suggest(other, ["except", "header", "if-none"]))
            }
        }
    }
    Ok(ff)
}
