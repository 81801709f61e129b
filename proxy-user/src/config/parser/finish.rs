//! End of a section: deferred rules (`use_backend`, `http-request`) are
//! resolved against the section's ACLs, section-local consistency is
//! checked, and the model entities are emitted.

use super::*;

impl Parser<'_> {
    /// Closes a section: resolves deferred rules, checks section-local
    /// consistency and emits the model entities.
    pub(super) fn finish(&mut self, current: Current) {
        let Current::Proxy(sec) = current else { return };
        let mut sec = *sec;
        if sec.kind == Kind::Defaults {
            self.defaults = sec.s;
            return;
        }
        let acls = self.acl_table(&sec);
        let mut used = HashSet::new();
        let mut use_backends = Vec::new();
        let mut http_request = Vec::new();
        for line in std::mem::take(&mut sec.deferred) {
            let result = if line.words[0].text == "use_backend" {
                self.use_backend(&line, &acls, &mut used)
                    .map(|r| use_backends.extend(r))
            } else {
                self.http_request(&line, &acls, &mut used)
                    .map(|r| http_request.extend(r))
            };
            if let Err(p) = result {
                self.error(line.number, p);
            }
        }
        for (name, _, line) in &sec.acls {
            if !used.contains(name) {
                self.warn(
                    *line,
                    format!("acl '{name}' in {} is never used", sec.describe()),
                    None,
                );
                used.insert(name.clone()); // warn once per name
            }
        }
        self.check_section(&sec, &use_backends, &http_request);
        if !sec.keep {
            return;
        }

        if sec.s.mode != Mode::Http {
            // Like HAProxy, HTTP-only settings fall back to their L4 meaning
            // (or none), so consumers never see them on a tcp/udp proxy.
            sec.s.forwardfor = None;
            if sec.s.log_format == Some(LogFormat::Http) {
                sec.s.log_format = Some(LogFormat::Tcp);
            }
            if matches!(sec.s.balance, Balance::Uri { .. } | Balance::Hdr(_)) {
                sec.s.balance = Balance::RoundRobin;
            }
        }
        let s = &sec.s;
        let xdp = sec.xdp.map(|x| Xdp {
            strict: x.strict,
            forward: x.forward,
            hash: x.hash,
            maglev_table_size: sec.maglev.map_or(DEFAULT_MAGLEV_TABLE_SIZE, |m| m.0),
            conntrack_size: sec.conntrack.map_or(DEFAULT_CONNTRACK_SIZE, |c| c.0),
        });
        let from_listen = sec.kind == Kind::Listen;
        if sec.kind.accepts_frontend_side() {
            self.default_backend_lines
                .push(sec.default_backend.as_ref().map_or(sec.line, |d| d.1));
            self.frontends.push(Frontend {
                name: sec.name.clone(),
                line: sec.line,
                guid: sec.guid.clone(),
                from_listen,
                mode: s.mode,
                binds: std::mem::take(&mut sec.binds),
                default_backend: if from_listen {
                    Some(sec.name.clone())
                } else {
                    sec.default_backend.as_ref().map(|d| d.0.clone())
                },
                use_backends,
                // A listen's rules run once, on its frontend half.
                http_request: std::mem::take(&mut http_request),
                timeouts: s.timeouts,
                maxconn: s.maxconn,
                forwardfor: s.forwardfor.clone(),
                reject_get_body: s.reject_get_body,
                max_request_line: s.max_request_line,
                max_body_size: s.max_body_size,
                log_format: s.log_format,
                logasap: s.logasap,
                splice_auto: s.splice_auto,
                xdp,
            });
        }
        if matches!(sec.kind, Kind::Backend | Kind::Listen) {
            // Only when written in this section, not inherited from defaults.
            let local_expect = s.expect_status.filter(|e| e.1 > sec.line);
            if let (Some((_, line)), None) = (local_expect, &s.httpchk) {
                self.warn(
                    line,
                    format!(
                        "'http-check expect' in {} has no effect without 'option httpchk'",
                        sec.describe()
                    ),
                    Some("add 'option httpchk'"),
                );
            }
            self.backends.push(Backend {
                name: sec.name.clone(),
                line: sec.line,
                guid: sec.guid.clone(),
                from_listen,
                mode: s.mode,
                balance: s.balance.clone(),
                hash_type: s.hash_type,
                servers: std::mem::take(&mut sec.servers),
                timeouts: s.timeouts,
                retries: s.retries,
                redispatch: s.redispatch,
                all_backups: s.all_backups,
                http_check: s.httpchk.clone().map(|(method, uri)| HttpCheck {
                    method,
                    uri,
                    expect_status: s.expect_status.map(|e| e.0),
                }),
                forwardfor: s.forwardfor.clone(),
                http_request,
            });
        }
    }

    /// Section-local consistency: mode vs. XDP, ports, TLS, HTTP-only rules.
    pub(super) fn check_section(
        &mut self,
        sec: &Section,
        use_backends: &[UseBackend],
        rules: &[HttpRequestRule],
    ) {
        let what = sec.describe();
        let mode = sec.s.mode;
        if let Some(x) = sec.xdp {
            if mode == Mode::Http {
                self.error(
                    x.line,
                    Problem::new(
                        0,
                        format!("xdp cannot be used in {what}, which is mode http"),
                    )
                    .hint("XDP is an L4 data path: use 'mode tcp' or 'mode udp', or remove 'xdp'"),
                );
            }
        } else {
            for (what_kw, line) in [
                ("maglev-table-size", sec.maglev.map(|m| m.1)),
                ("conntrack-size", sec.conntrack.map(|c| c.1)),
            ] {
                if let Some(line) = line {
                    self.error(
                        line,
                        Problem::new(
                            0,
                            format!("{what_kw} has no effect without 'xdp' in {what}"),
                        )
                        .hint("add an 'xdp' line or remove this one"),
                    );
                }
            }
            if mode == Mode::Udp && sec.kind.accepts_frontend_side() {
                self.error(
                    sec.line,
                    Problem::new(0, format!("{what} is mode udp but has no 'xdp' line"))
                        .hint("UDP is only load-balanced in the XDP data path; add 'xdp'"),
                );
            }
        }
        // An xdp line rejected above must not cause follow-up errors.
        let xdp_active = sec.xdp.is_some() && mode != Mode::Http;
        for b in &sec.binds {
            if b.addr.port() == 0 && sec.xdp.is_none() {
                self.error(
                    b.line,
                    Problem::new(0, format!("bind {} in {what} has port 0", b.addr)).hint(
                        "port 0 (all ports) is only allowed for xdp services; give a real port",
                    ),
                );
            }
            if b.tls.is_some() && (xdp_active || mode == Mode::Udp) {
                self.error(
                    b.line,
                    Problem::new(0, format!("ssl cannot be terminated in {what}")).hint(
                        "TLS needs the userspace proxy: remove 'ssl' or use a frontend without xdp",
                    ),
                );
            }
            if b.defer_accept && (xdp_active || mode == Mode::Udp) {
                self.error(
                    b.line,
                    Problem::new(0, format!("defer-accept has no effect in {what}")).hint(
                        "it applies to TCP connections the userspace proxy accepts: remove 'defer-accept'",
                    ),
                );
            }
            // XDP finds a service by destination address; the interface to
            // attach to is `interface IF` or the one holding the address.
            if xdp_active && b.addr.ip().is_unspecified() {
                self.error(
                    b.line,
                    Problem::new(0, format!("bind {} in xdp {what} has no specific address", b.addr))
                        .hint("XDP services match packets by destination: bind the service address (VIP), e.g. 192.0.2.10:443"),
                );
            }
        }
        for srv in &sec.servers {
            if srv.addr.port() == 0 && mode == Mode::Http {
                self.error(
                    srv.line,
                    Problem::new(
                        0,
                        format!("server '{}' in {what} needs a port in mode http", srv.name),
                    )
                    .hint("write ADDR:PORT, e.g. 10.0.0.1:8080"),
                );
            }
        }
        if mode != Mode::Http {
            for u in use_backends.iter().filter(|u| u.condition.is_some()) {
                self.error(u.line, Problem::new(0, format!("use_backend conditions inspect HTTP requests, but {what} is mode {mode}"))
                    .hint("use 'mode http', or an unconditional default_backend"));
            }
            for r in rules {
                self.error(
                    r.line,
                    Problem::new(
                        0,
                        format!("http-request rules need mode http, but {what} is mode {mode}"),
                    )
                    .hint("set 'mode http' or remove the rule"),
                );
            }
            for (kw, line) in &sec.http_only {
                self.warn(
                    *line,
                    format!("'{kw}' is ignored: {what} is mode {mode}"),
                    Some("it only applies to mode http"),
                );
            }
        }
    }

    /// Named ACLs of a section; repeated names are OR-ed like HAProxy.
    pub(super) fn acl_table(&self, sec: &Section) -> HashMap<String, Condition> {
        let mut grouped: HashMap<String, Vec<Condition>> = HashMap::new();
        for (name, test, _) in &sec.acls {
            grouped
                .entry(name.clone())
                .or_default()
                .push(Condition::Test(test.clone()));
        }
        grouped
            .into_iter()
            .map(|(k, mut v)| {
                (
                    k,
                    if v.len() == 1 {
                        v.remove(0)
                    } else {
                        Condition::Or(v)
                    },
                )
            })
            .collect()
    }

    /// Parses an optional trailing `if|unless CONDITION` starting at `words[0]`.
    pub(super) fn trailing_condition(
        &mut self,
        line: &Line,
        words: &[Word],
        acls: &HashMap<String, Condition>,
        used: &mut HashSet<String>,
    ) -> Result<Option<Condition>, Problem> {
        let Some(first) = words.first() else {
            return Ok(None);
        };
        let negate = if first.is("if") {
            false
        } else if first.is("unless") {
            true
        } else {
            return Err(
                Problem::new(first.col, format!("unexpected '{}'", first.text))
                    .hint("a condition starts with 'if' or 'unless'"),
            );
        };
        match parse_condition(&words[1..], acls, used) {
            Ok(c) => Ok(Some(if negate {
                Condition::Not(Box::new(c))
            } else {
                c
            })),
            Err(problems) => {
                let mut problems = problems.into_iter();
                let first_problem = problems.next().map(|mut p| {
                    if p.col == 0 {
                        p.col = first.col;
                    }
                    p
                });
                for p in problems {
                    self.error(line.number, p);
                }
                Err(first_problem.unwrap_or_else(|| Problem::new(first.col, "invalid condition")))
            }
        }
    }

    pub(super) fn use_backend(
        &mut self,
        line: &Line,
        acls: &HashMap<String, Condition>,
        used: &mut HashSet<String>,
    ) -> Result<Option<UseBackend>, Problem> {
        let a = args(line, 1, usize::MAX)?;
        check_name(&a[0])?;
        let condition = self.trailing_condition(line, &a[1..], acls, used)?;
        Ok(Some(UseBackend {
            backend: a[0].text.clone(),
            condition,
            line: line.number,
        }))
    }

    pub(super) fn http_request(
        &mut self,
        line: &Line,
        acls: &HashMap<String, Condition>,
        used: &mut HashSet<String>,
    ) -> Result<Option<HttpRequestRule>, Problem> {
        let a = args(line, 1, usize::MAX)?;
        let act = &a[0];
        let (action, rest) = match act.text.as_str() {
            "deny" | "return" => {
                let (reply, rest) = local_reply(act, &a[1..])?;
                (
                    if act.text == "deny" {
                        HttpRequestAction::Deny(reply)
                    } else {
                        HttpRequestAction::Return(reply)
                    },
                    rest,
                )
            }
            "use-service" => {
                let Some(name) = a.get(1) else {
                    return Err(Problem::new(act.col, "use-service needs a service name")
                        .hint("e.g. http-request use-service prometheus-exporter if { path /metrics }"));
                };
                let service = match name.text.as_str() {
                    "prometheus-exporter" => Service::PrometheusExporter,
                    other => {
                        return Err(Problem::new(name.col, format!("unknown service '{other}'"))
                            .hint("services: prometheus-exporter")
                            .suggest(other, ["prometheus-exporter"]))
                    }
                };
                (HttpRequestAction::UseService(service), &a[2..])
            }
            "set-header" | "add-header" | "del-header" if a.len() < 2 => {
                return Err(
                    Problem::new(act.col, format!("{} needs a header name", act.text))
                        .hint("e.g. http-request del-header X-Debug"),
                );
            }
            "set-header" | "add-header" => {
                let [name, value, rest @ ..] = a[1..].as_ref() else {
                    return Err(Problem::new(
                        act.col,
                        format!("{} needs a header name and a value", act.text),
                    )
                    .hint(format!("e.g. http-request {} X-Env \"prod eu\"", act.text)));
                };
                check_rule_header(act, name)?;
                check_header_value(value)?;
                let (name, value) = (name.text.clone(), value.text.clone());
                if act.text == "set-header" {
                    (HttpRequestAction::SetHeader { name, value }, rest)
                } else {
                    (HttpRequestAction::AddHeader { name, value }, rest)
                }
            }
            "del-header" => {
                let name = &a[1];
                check_rule_header(act, name)?;
                (
                    HttpRequestAction::DelHeader {
                        name: name.text.clone(),
                    },
                    &a[2..],
                )
            }
            other => return Err(Problem::new(
                act.col,
                format!("unknown http-request action '{other}'"),
            )
            .hint("actions: set-header, add-header, del-header, deny, return, use-service")
            .suggest(
                other,
                [
                    "set-header",
                    "add-header",
                    "del-header",
                    "deny",
                    "return",
                    "use-service",
                ],
            )),
        };
        let condition = self.trailing_condition(line, rest, acls, used)?;
        Ok(Some(HttpRequestRule {
            action,
            condition,
            line: line.number,
        }))
    }
}

/// The header of a `set-header` / `del-header` rule: a valid name that is
/// not one Weir writes itself from the framing or the connection.
fn check_rule_header(act: &Word, name: &Word) -> Result<(), Problem> {
    check_header_name(name)?;
    if act.text == "add-header" && name.text.eq_ignore_ascii_case("host") {
        return Err(Problem::new(
            name.col,
            "http-request add-header cannot add a second 'Host': a request with two is invalid (RFC 9112 §3.2)",
        )
        .hint("use 'http-request set-header Host VALUE'"));
    }
    match reserved_header_reason(&name.text) {
        None => Ok(()),
        Some(why) => Err(Problem::new(
            name.col,
            format!("http-request {} cannot change '{}': {why}", act.text, name.text),
        )
        .hint("Weir does not re-frame requests, so rules may not touch Content-Length, Transfer-Encoding, Connection, Keep-Alive, Proxy-Connection, TE, Trailer or Upgrade; remove the rule")),
    }
}

/// The options of `http-request deny|return` up to the condition: `status
/// CODE` (`deny_status CODE` for deny, as in HAProxy), `content-type T`,
/// `string S`. Returns the reply and the words after the options.
fn local_reply<'w>(act: &Word, words: &'w [Word]) -> Result<(LocalReply, &'w [Word]), Problem> {
    let deny = act.text == "deny";
    let mut status = if deny { 403 } else { 200 };
    let mut content_type: Option<&Word> = None;
    let mut string: Option<&Word> = None;
    let mut i = 0;
    while i < words.len() {
        let w = &words[i];
        if w.text == "if" || w.text == "unless" {
            break;
        }
        let known: &[&str] = if deny {
            &["deny_status", "status", "content-type", "string"]
        } else {
            &["status", "content-type", "string"]
        };
        if !known.contains(&w.text.as_str()) {
            return Err(Problem::new(
                w.col,
                format!("unknown option '{}' of http-request {}", w.text, act.text),
            )
            .hint(if deny {
                "http-request deny [deny_status CODE] [content-type TYPE string TEXT] [if|unless COND]"
            } else {
                "http-request return [status CODE] [content-type TYPE] [string TEXT] [if|unless COND]"
            })
            .suggest(&w.text, known.iter().copied()));
        }
        let Some(value) = words.get(i + 1) else {
            return Err(Problem::new(w.col, format!("'{}' needs a value", w.text)));
        };
        match w.text.as_str() {
            "deny_status" | "status" => {
                status = match value.text.parse::<u16>() {
                    Ok(code) if (200..=599).contains(&code) => code,
                    _ => {
                        return Err(Problem::new(
                            value.col,
                            format!("invalid status '{}'", value.text),
                        )
                        .hint("a status code from 200 to 599, e.g. 403, 404, 500"))
                    }
                }
            }
            "content-type" => {
                if value.text.is_empty()
                    || value
                        .text
                        .chars()
                        .any(|c| c.is_ascii_control() || !c.is_ascii())
                {
                    return Err(Problem::new(
                        value.col,
                        format!("invalid content-type '{}'", value.text),
                    ));
                }
                content_type = Some(value);
            }
            _ => string = Some(value),
        }
        i += 2;
    }
    let body = match (content_type, string) {
        (Some(t), Some(s)) => Some((t.text.clone(), s.text.clone())),
        (None, Some(s)) => {
            return Err(Problem::new(s.col, "'string' needs a 'content-type'")
                .hint("e.g. content-type text/plain string \"gone\""))
        }
        (Some(t), None) if deny => {
            return Err(Problem::new(t.col, "'content-type' without a 'string'"))
        }
        // return: an empty body of that type.
        (Some(t), None) => Some((t.text.clone(), String::new())),
        (None, None) => None,
    };
    if matches!(status, 204 | 304) && body.as_ref().is_some_and(|(_, b)| !b.is_empty()) {
        return Err(Problem::new(
            act.col,
            format!("a {status} response cannot have a body"),
        ));
    }
    Ok((LocalReply { status, body }, &words[i..]))
}
