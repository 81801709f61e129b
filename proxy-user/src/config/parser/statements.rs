//! Parsers for the statements with many options: `bind`, `server` /
//! `default-server` and `xdp`.

use super::values::*;
use super::*;

/// Parses a `bind` line; the guid comes back with its column, to be claimed.
pub(super) fn parse_bind(line: &Line) -> Result<(Bind, Option<usize>), Problem> {
    let a = args(line, 1, usize::MAX)?;
    let addr = parse_addr(&a[0], false)?;
    let mut interface = None;
    let mut guid = None;
    let mut ssl = None;
    let mut certs = Vec::new();
    let mut strict_sni = None;
    let mut alpn = None;
    let mut min_version = None;
    let mut max_version = None;
    let mut defer_accept = false;
    let mut i = 1;
    while let Some(w) = a.get(i) {
        let value = || {
            a.get(i + 1).ok_or_else(|| {
                Problem::new(w.col, format!("bind option '{}' needs a value", w.text))
                    .hint(format!("usage: {}", usage("bind")))
            })
        };
        match w.text.as_str() {
            "interface" => {
                let v = value()?;
                if v.text.is_empty() || v.text.len() > 15 || v.text.contains(['/', ' ']) {
                    return Err(Problem::new(
                        v.col,
                        format!("invalid interface name '{}'", v.text),
                    )
                    .hint("Linux interface names are 1-15 characters"));
                }
                interface = Some(v.text.clone());
                i += 1;
            }
            "guid" => {
                let v = value()?;
                let g = Guid::parse(&v.text).map_err(|m| {
                    Problem::new(v.col, format!("invalid guid: {m}"))
                        .hint("use 1-127 characters of [A-Za-z0-9.:_-]")
                })?;
                guid = Some((g, v.col));
                i += 1;
            }
            "ssl" => ssl = Some(w.col),
            "crt" => {
                certs.push(PathBuf::from(&value()?.text));
                i += 1;
            }
            "strict-sni" => strict_sni = Some(w.col),
            "defer-accept" => defer_accept = true,
            "alpn" => {
                let v = value()?;
                let list: Vec<String> = v.text.split(',').map(str::to_string).collect();
                if list.iter().any(String::is_empty) {
                    return Err(
                        Problem::new(v.col, format!("invalid alpn list '{}'", v.text))
                            .hint("comma-separated protocols, e.g. h2,http/1.1"),
                    );
                }
                alpn = Some((list, w.col));
                i += 1;
            }
            "ssl-min-ver" | "ssl-max-ver" => {
                let v = value()?;
                let ver = TlsVersion::parse(&v.text).ok_or_else(|| {
                    Problem::new(v.col, format!("invalid TLS version '{}'", v.text))
                        .hint("use TLSv1.0, TLSv1.1, TLSv1.2 or TLSv1.3")
                })?;
                if w.text == "ssl-min-ver" {
                    min_version = Some((ver, w.col));
                } else {
                    max_version = Some((ver, w.col));
                }
                i += 1;
            }
            other => {
                return Err(
                    Problem::new(w.col, format!("unknown bind option '{other}'"))
                        .hint(format!("bind options: {}", BIND_OPTIONS.join(", ")))
                        .suggest(other, BIND_OPTIONS.iter().copied()),
                )
            }
        }
        i += 1;
    }
    let tls = match ssl {
        Some(col) => {
            if certs.is_empty() {
                return Err(Problem::new(col, "'ssl' needs at least one certificate")
                    .hint("add 'crt /path/cert.pem'"));
            }
            if let (Some((min, _)), Some((max, col))) = (min_version, max_version) {
                if min > max {
                    return Err(Problem::new(col, "ssl-max-ver is lower than ssl-min-ver"));
                }
            }
            Some(BindTls {
                certs,
                strict_sni: strict_sni.is_some(),
                alpn: alpn.map(|a| a.0).unwrap_or_default(),
                min_version: min_version.map(|v| v.0),
                max_version: max_version.map(|v| v.0),
            })
        }
        None => {
            let tls_only = [
                (!certs.is_empty()).then_some(("crt", a[0].col)),
                strict_sni.map(|c| ("strict-sni", c)),
                alpn.as_ref().map(|a| ("alpn", a.1)),
                min_version.map(|v| ("ssl-min-ver", v.1)),
                max_version.map(|v| ("ssl-max-ver", v.1)),
            ];
            if let Some((opt, col)) = tls_only.into_iter().flatten().next() {
                return Err(
                    Problem::new(col, format!("bind option '{opt}' needs 'ssl'"))
                        .hint("add 'ssl' to the bind line"),
                );
            }
            None
        }
    };
    let col = guid.as_ref().map(|(_, c)| *c);
    Ok((
        Bind {
            addr,
            interface,
            tls,
            guid: guid.map(|(g, _)| g),
            defer_accept,
            line: line.number,
        },
        col,
    ))
}

/// Parses `server`/`default-server` options; `guid` only when `allow_guid`.
pub(super) fn parse_server_opts(
    words: &[Word],
    allow_guid: bool,
) -> Result<(ServerOpts, Option<(Guid, usize)>), Problem> {
    let mut o = ServerOpts::default();
    let mut guid = None;
    let mut i = 0;
    while let Some(w) = words.get(i) {
        let value = || {
            words.get(i + 1).ok_or_else(|| {
                Problem::new(w.col, format!("server option '{}' needs a value", w.text))
                    .hint("usage: server NAME ADDR:PORT [weight N] [check] [inter DUR] [fastinter DUR] [downinter DUR] [rise N] [fall N] [observe layer4|layer7] [error-limit N] [on-error ACTION] [on-marked-down shutdown-sessions] [maxconn N] [maxqueue N] [backup] [guid G] [ssl] [verify none|required] [ca-file F] [sni STR]")
            })
        };
        let mut takes_value = true;
        match w.text.as_str() {
            "weight" => o.weight = Some(number(value()?, "weight", 0, 256)? as u32),
            "inter" | "fastinter" | "downinter" => {
                let v = value()?;
                let d = duration(v)?;
                if d.is_zero() {
                    return Err(
                        Problem::new(v.col, format!("{} must be greater than 0", w.text))
                            .hint(format!("e.g. {} 2s", w.text)),
                    );
                }
                let slot = match w.text.as_str() {
                    "inter" => &mut o.inter,
                    "fastinter" => &mut o.fastinter,
                    _ => &mut o.downinter,
                };
                *slot = Some(d);
            }
            "rise" => o.rise = Some(number(value()?, "rise", 1, 1000)? as u32),
            "fall" => o.fall = Some(number(value()?, "fall", 1, 1000)? as u32),
            "observe" => {
                o.observe = Some(choice(
                    value()?,
                    "observe",
                    &[
                        ("none", None),
                        ("layer4", Some(Observe::Layer4)),
                        ("layer7", Some(Observe::Layer7)),
                    ],
                )?)
            }
            "error-limit" => {
                o.error_limit = Some(number(value()?, "error-limit", 1, u32::MAX.into())? as u32)
            }
            "on-error" => {
                o.on_error = Some(choice(
                    value()?,
                    "on-error",
                    &[
                        ("fastinter", OnError::FastInter),
                        ("fail-check", OnError::FailCheck),
                        ("sudden-death", OnError::SuddenDeath),
                        ("mark-down", OnError::MarkDown),
                    ],
                )?)
            }
            "on-marked-down" => {
                let v = value()?;
                if v.text != "shutdown-sessions" {
                    return Err(Problem::new(
                        v.col,
                        format!("unknown on-marked-down action '{}'", v.text),
                    )
                    .hint("on-marked-down shutdown-sessions (the only action)"));
                }
                o.shutdown_sessions_on_down = Some(true);
            }
            "maxconn" => o.maxconn = Some(number(value()?, "maxconn", 1, u32::MAX.into())? as u32),
            // HAProxy: 0 means no limit.
            "maxqueue" => {
                o.maxqueue = Some(number(value()?, "maxqueue", 0, u32::MAX.into())? as u32)
            }
            "verify" => {
                o.verify = Some(choice(
                    value()?,
                    "verify",
                    &[("none", Verify::None), ("required", Verify::Required)],
                )?)
            }
            "ca-file" => o.ca_file = Some(PathBuf::from(&value()?.text)),
            "sni" => {
                let v = value()?;
                if v.text.is_empty() || v.text.contains(char::is_whitespace) {
                    return Err(Problem::new(v.col, format!("invalid sni '{}'", v.text))
                        .hint("a host name such as api.example.com"));
                }
                o.sni = Some(v.text.clone());
            }
            "guid" => {
                let v = value()?;
                if !allow_guid {
                    return Err(Problem::new(w.col, "guid cannot be set on default-server")
                        .hint("guids are unique: set one on each server line"));
                }
                let g = Guid::parse(&v.text).map_err(|m| {
                    Problem::new(v.col, format!("invalid guid: {m}"))
                        .hint("use 1-127 characters of [A-Za-z0-9.:_-]")
                })?;
                guid = Some((g, v.col));
            }
            flag => {
                takes_value = false;
                match flag {
                    "check" => o.check = Some(true),
                    "no-check" => o.check = Some(false),
                    "backup" => o.backup = Some(true),
                    "no-backup" => o.backup = Some(false),
                    "ssl" => o.ssl = Some(true),
                    "no-ssl" => o.ssl = Some(false),
                    other => {
                        return Err(
                            Problem::new(w.col, format!("unknown server option '{other}'"))
                                .hint(format!("server options: {}", SERVER_OPTIONS.join(", ")))
                                .suggest(other, SERVER_OPTIONS.iter().copied()),
                        )
                    }
                }
            }
        }
        i += if takes_value { 2 } else { 1 };
    }
    Ok((o, guid))
}

pub(super) fn resolve_server(
    name: String,
    addr: SocketAddr,
    line: usize,
    guid: Option<Guid>,
    o: ServerOpts,
) -> Result<Server, Problem> {
    let ssl = o.ssl.unwrap_or(false);
    let verify = o.verify.unwrap_or_default();
    if ssl && verify == Verify::Required && o.ca_file.is_none() {
        return Err(Problem::new(
            0,
            format!("server '{name}' uses ssl with 'verify required' but has no ca-file"),
        )
        .hint("add 'ca-file /path/ca.pem' (or 'ca-file @system-ca'), or 'verify none'"));
    }
    Ok(Server {
        name,
        addr,
        line,
        guid,
        weight: o.weight.unwrap_or(server_defaults::WEIGHT),
        check: o.check.unwrap_or(false),
        inter: o.inter.unwrap_or(server_defaults::INTER),
        fastinter: o.fastinter,
        downinter: o.downinter,
        rise: o.rise.unwrap_or(server_defaults::RISE),
        fall: o.fall.unwrap_or(server_defaults::FALL),
        observe: o.observe.flatten(),
        error_limit: o.error_limit.unwrap_or(server_defaults::ERROR_LIMIT),
        on_error: o.on_error.unwrap_or_default(),
        shutdown_sessions_on_down: o.shutdown_sessions_on_down.unwrap_or(false),
        maxconn: o.maxconn,
        maxqueue: o.maxqueue.filter(|&n| n > 0),
        backup: o.backup.unwrap_or(false),
        ssl,
        verify,
        ca_file: o.ca_file,
        sni: o.sni,
    })
}

pub(super) fn parse_xdp(line: &Line) -> Result<XdpLine, Problem> {
    let mut x = XdpLine {
        strict: false,
        forward: XdpForward::Nat,
        hash: XdpHash::FiveTuple,
        line: line.number,
    };
    let mut seen = HashSet::new();
    let a = &line.words[1..];
    let mut i = 0;
    while let Some(w) = a.get(i) {
        if !seen.insert(w.text.as_str()) {
            return Err(Problem::new(
                w.col,
                format!("xdp option '{}' given twice", w.text),
            ));
        }
        let value = || {
            a.get(i + 1).ok_or_else(|| {
                Problem::new(w.col, format!("xdp option '{}' needs a value", w.text))
                    .hint(format!("usage: {}", usage("xdp")))
            })
        };
        match w.text.as_str() {
            "strict" => {
                x.strict = true;
                i += 1;
                continue;
            }
            "forward" => {
                x.forward = choice(
                    value()?,
                    "xdp forward",
                    &[("nat", XdpForward::Nat), ("dsr", XdpForward::Dsr)],
                )?
            }
            "hash" => {
                x.hash = choice(
                    value()?,
                    "xdp hash",
                    &[
                        ("5tuple", XdpHash::FiveTuple),
                        ("no-src-port", XdpHash::NoSrcPort),
                        ("dst-port", XdpHash::DstPort),
                    ],
                )?
            }
            other => {
                return Err(Problem::new(w.col, format!("unknown xdp option '{other}'"))
                    .hint(format!("usage: {}", usage("xdp")))
                    .suggest(other, ["strict", "forward", "hash"]))
            }
        }
        i += 2;
    }
    Ok(x)
}
