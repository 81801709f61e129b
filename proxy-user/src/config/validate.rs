//! Cross-reference checks that need the whole file: unique names,
//! backend references, frontend/backend mode agreement, XDP constraints,
//! conflicting binds, plus advisory warnings.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::Path;

use super::error::{did_you_mean, ConfigError, Warning};
use super::model::{Config, Frontend, HttpRequestAction, Mode, XdpForward};

struct Diags<'a> {
    file: &'a Path,
    errors: &'a mut Vec<ConfigError>,
    warnings: &'a mut Vec<Warning>,
}

impl Diags<'_> {
    fn error(&mut self, line: usize, message: String, hint: Option<String>) {
        self.errors.push(ConfigError {
            file: self.file.to_path_buf(),
            line: Some(line),
            column: None,
            message,
            hint,
        });
    }

    fn warn(&mut self, line: Option<usize>, message: String, hint: Option<&str>) {
        self.warnings.push(Warning {
            file: self.file.to_path_buf(),
            line,
            message,
            hint: hint.map(str::to_string),
        });
    }
}

fn frontend_kind(f: &Frontend) -> &'static str {
    if f.from_listen {
        "listen"
    } else {
        "frontend"
    }
}

/// Runs every whole-file check. `default_backend_lines` is parallel to
/// `config.frontends` (see `parser::Parsed`).
pub(crate) fn validate(
    config: &Config,
    default_backend_lines: &[usize],
    file: &Path,
    errors: &mut Vec<ConfigError>,
    warnings: &mut Vec<Warning>,
) {
    let mut d = Diags {
        file,
        errors,
        warnings,
    };
    unique_names(config, &mut d);
    backend_references(config, default_backend_lines, &mut d);
    xdp_constraints(config, &mut d);
    bind_conflicts(config, &mut d);
    advisories(config, &mut d);
}

fn unique_names(config: &Config, d: &mut Diags<'_>) {
    let mut seen: HashMap<&str, (&str, usize)> = HashMap::new();
    for f in &config.frontends {
        if let Some((kind, line)) = seen.insert(&f.name, (frontend_kind(f), f.line)) {
            d.error(
                f.line,
                format!(
                    "{} name '{}' is already used by the {kind} at line {line}",
                    frontend_kind(f),
                    f.name
                ),
                Some("frontend and listen names must be unique".into()),
            );
        }
    }
    seen.clear();
    for b in &config.backends {
        let kind = if b.from_listen { "listen" } else { "backend" };
        if let Some((other, line)) = seen.insert(&b.name, (kind, b.line)) {
            d.error(
                b.line,
                format!(
                    "{kind} name '{}' is already used by the {other} at line {line}",
                    b.name
                ),
                Some("backend and listen names must be unique".into()),
            );
        }
        let mut servers: HashMap<&str, usize> = HashMap::new();
        for s in &b.servers {
            if let Some(line) = servers.insert(&s.name, s.line) {
                d.error(
                    s.line,
                    format!(
                        "server name '{}' is used twice in {kind} '{}' (first at line {line})",
                        s.name, b.name
                    ),
                    Some("server names must be unique within a backend".into()),
                );
            }
        }
    }
}

fn backend_references(config: &Config, default_backend_lines: &[usize], d: &mut Diags<'_>) {
    let names: Vec<&str> = config.backends.iter().map(|b| b.name.as_str()).collect();
    for (i, f) in config.frontends.iter().enumerate() {
        let kind = frontend_kind(f);
        let default_line = default_backend_lines.get(i).copied().unwrap_or(f.line);
        let refs = f
            .default_backend
            .iter()
            .map(|n| (n.as_str(), default_line, "default_backend"))
            .chain(
                f.use_backends
                    .iter()
                    .map(|u| (u.backend.as_str(), u.line, "use_backend")),
            );
        for (name, line, keyword) in refs {
            let Some(b) = config.backend(name) else {
                let hint = did_you_mean(name, names.iter().copied())
                    .map(|s| format!("did you mean '{s}'?"))
                    .or_else(|| Some("declare it with 'backend NAME'".into()));
                d.error(
                    line,
                    format!(
                        "{keyword} in {kind} '{}' refers to unknown backend '{name}'",
                        f.name
                    ),
                    hint,
                );
                continue;
            };
            if b.mode != f.mode {
                d.error(
                    line,
                    format!(
                        "{kind} '{}' (mode {}) cannot use backend '{}' (mode {})",
                        f.name, f.mode, b.name, b.mode
                    ),
                    Some("a frontend and its backends must use the same mode".into()),
                );
            }
        }
    }
}

fn xdp_constraints(config: &Config, d: &mut Diags<'_>) {
    for f in config.frontends.iter().filter(|f| f.mode != Mode::Http) {
        let Some(x) = f.xdp else { continue };
        let backends = f
            .default_backend
            .iter()
            .chain(f.use_backends.iter().map(|u| &u.backend))
            .filter_map(|n| config.backend(n));
        for b in backends {
            if b.servers.len() as u64 >= u64::from(x.maglev_table_size) {
                d.error(
                    b.line,
                    format!(
                        "backend '{}' has {} servers, more than maglev-table-size {} of {} '{}' allows",
                        b.name,
                        b.servers.len(),
                        x.maglev_table_size,
                        frontend_kind(f),
                        f.name
                    ),
                    Some("use a prime maglev-table-size much larger than the server count (e.g. 100x)".into()),
                );
            }
            if x.forward == XdpForward::Dsr {
                for s in &b.servers {
                    let port_ok = s.addr.port() == 0
                        || f.binds.iter().all(|bd| bd.addr.port() == s.addr.port());
                    if !port_ok {
                        d.error(
                            s.line,
                            format!("server '{}/{}' has port {}, but {} '{}' uses forward dsr", b.name, s.name, s.addr.port(), frontend_kind(f), f.name),
                            Some("DSR keeps the destination port: give the server no port or the bind's port".into()),
                        );
                    }
                }
            }
        }
    }
}

/// Two userspace listeners conflict when they use the same transport and
/// port and their addresses overlap (equal, or one is the wildcard of the
/// same family). XDP binds are not sockets and are skipped.
fn bind_conflicts(config: &Config, d: &mut Diags<'_>) {
    // (address, udp?, owner description, line)
    let mut seen: Vec<(SocketAddr, bool, String, usize)> = config
        .global
        .demo_origins
        .iter()
        .flat_map(|o| {
            o.addrs
                .iter()
                .map(move |a| (*a, false, format!("demo-origin '{}'", o.name), o.line))
        })
        .filter(|(a, ..)| a.port() != 0)
        .collect();
    for f in config.frontends.iter().filter(|f| f.xdp.is_none()) {
        let udp = f.mode == Mode::Udp;
        for b in &f.binds {
            let a = b.addr;
            if a.port() == 0 {
                continue;
            }
            let clash = seen.iter().find(|(o, o_udp, _, _)| {
                *o_udp == udp
                    && o.port() == a.port()
                    && o.is_ipv4() == a.is_ipv4()
                    && (o.ip() == a.ip() || o.ip().is_unspecified() || a.ip().is_unspecified())
            });
            if let Some((o, _, owner, line)) = clash {
                d.error(
                    b.line,
                    format!(
                        "bind {a} in {} '{}' overlaps bind {o} of {owner} at line {line}",
                        frontend_kind(f),
                        f.name
                    ),
                    Some("each address:port can be bound once".into()),
                );
            } else {
                seen.push((a, udp, format!("{} '{}'", frontend_kind(f), f.name), b.line));
            }
        }
    }
}

fn advisories(config: &Config, d: &mut Diags<'_>) {
    let missing = config.entities_without_guid();
    if !missing.is_empty() {
        d.warn(
            None,
            format!(
                "{} entit{} without guid (statistics will not survive reloads): {}",
                missing.len(),
                if missing.len() == 1 { "y" } else { "ies" },
                missing.join(", ")
            ),
            Some("add 'guid NAME' to each"),
        );
    }
    let mut used: HashSet<&str> = HashSet::new();
    let mut xdp_only: HashMap<&str, bool> = HashMap::new();
    for f in &config.frontends {
        let kind = frontend_kind(f);
        if f.binds.is_empty() {
            d.warn(
                Some(f.line),
                format!(
                    "{kind} '{}' has no bind line and receives no traffic",
                    f.name
                ),
                None,
            );
        }
        // A frontend that answers by itself (`http-request return`, `deny`,
        // `use-service`) needs no backend: HAProxy's stats/metrics frontends.
        let answers_itself = f.http_request.iter().any(|r| {
            matches!(
                r.action,
                HttpRequestAction::Return(_)
                    | HttpRequestAction::Deny(_)
                    | HttpRequestAction::UseService(_)
            )
        });
        if f.default_backend.is_none() && f.use_backends.is_empty() && !answers_itself {
            d.warn(
                Some(f.line),
                format!(
                    "frontend '{}' has no default_backend or use_backend",
                    f.name
                ),
                Some("every connection will be refused"),
            );
        }
        if f.xdp.is_none() && f.mode != Mode::Udp && f.timeouts.client.is_none() {
            d.warn(
                Some(f.line),
                format!("{kind} '{}' has no 'timeout client'", f.name),
                Some("idle clients are never disconnected; set it in defaults"),
            );
        }
        for name in f
            .default_backend
            .iter()
            .chain(f.use_backends.iter().map(|u| &u.backend))
        {
            used.insert(name);
            let entry = xdp_only.entry(name).or_insert(true);
            *entry &= f.xdp.is_some();
        }
    }
    for b in &config.backends {
        if !used.contains(b.name.as_str()) {
            d.warn(
                Some(b.line),
                format!("backend '{}' is not used by any frontend", b.name),
                None,
            );
        }
        for s in b
            .servers
            .iter()
            .filter(|s| s.maxqueue.is_some() && s.maxconn.is_none())
        {
            d.warn(
                Some(s.line),
                format!(
                    "server '{}/{}' has 'maxqueue' but no 'maxconn': nothing ever waits for it",
                    b.name, s.name
                ),
                Some("add 'maxconn N' to the server, or remove 'maxqueue'"),
            );
        }
        if b.servers.is_empty() {
            d.warn(
                Some(b.line),
                format!("backend '{}' has no server", b.name),
                None,
            );
        }
        for s in b.servers.iter().filter(|s| s.observe.is_some()) {
            if !s.check {
                // HAProxy keeps the passive state in the health check.
                d.warn(
                    Some(s.line),
                    format!(
                        "server '{}/{}' has 'observe' but no 'check': passive health is off",
                        b.name, s.name
                    ),
                    Some("add 'check' to the server (passive health needs health checks)"),
                );
            } else if b.mode != Mode::Http {
                d.warn(
                    Some(s.line),
                    format!(
                        "'observe' on server '{}/{}' has no effect in a mode {} backend",
                        b.name, s.name, b.mode
                    ),
                    Some("only the L7 proxy (mode http) observes live traffic"),
                );
            }
        }
        for s in b.servers.iter().filter(|s| s.shutdown_sessions_on_down) {
            let why = if !s.check {
                "no 'check': only health checks mark a server DOWN"
            } else if b.mode != Mode::Http {
                "a mode tcp/udp backend: only the L7 proxy cuts sessions off"
            } else {
                continue;
            };
            d.warn(
                Some(s.line),
                format!(
                    "'on-marked-down shutdown-sessions' on server '{}/{}' has no effect: {why}",
                    b.name, s.name
                ),
                None,
            );
        }
        let userspace = !xdp_only.get(b.name.as_str()).copied().unwrap_or(false);
        if userspace
            && b.mode != Mode::Udp
            && (b.timeouts.connect.is_none() || b.timeouts.server.is_none())
        {
            d.warn(
                Some(b.line),
                format!(
                    "backend '{}' lacks 'timeout connect' or 'timeout server'",
                    b.name
                ),
                Some("stuck servers would hold connections forever; set them in defaults"),
            );
        }
    }
}
