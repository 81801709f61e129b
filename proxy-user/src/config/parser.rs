//! Turns lines of words into the typed model: one pass over the sections,
//! one handler per keyword. Cross-section checks (backend references,
//! duplicate names, ...) live in `validate.rs`; duplicate guids are caught
//! here, as they are declared.
//!
//! Error policy: a bad line produces one error and is skipped; parsing goes
//! on so every problem in the file is reported in one run. A section whose
//! header is broken is still parsed (to find errors inside it) but dropped.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::condition::{parse_condition, parse_test, Condition, Test};
use super::error::{ConfigError, Problem, Warning};
use super::lexer::{tokenize, Line, Word};
use super::model::*;

/// Section kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Global,
    Defaults,
    Frontend,
    Backend,
    Listen,
}

const G: u8 = 1;
const D: u8 = 2;
const F: u8 = 4;
const B: u8 = 8;
const L: u8 = 16;
const PROXY: u8 = D | F | B | L;

impl Kind {
    fn bit(self) -> u8 {
        match self {
            Kind::Global => G,
            Kind::Defaults => D,
            Kind::Frontend => F,
            Kind::Backend => B,
            Kind::Listen => L,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Global => "global",
            Kind::Defaults => "defaults",
            Kind::Frontend => "frontend",
            Kind::Backend => "backend",
            Kind::Listen => "listen",
        }
    }

    fn accepts_frontend_side(self) -> bool {
        matches!(self, Kind::Frontend | Kind::Listen)
    }
}

/// A keyword, the sections it may appear in, and its usage line (shown in
/// arity errors and mirrored in docs/config.md).
pub(crate) struct Keyword {
    pub name: &'static str,
    sections: u8,
    pub usage: &'static str,
}

const fn kw(name: &'static str, sections: u8, usage: &'static str) -> Keyword {
    Keyword {
        name,
        sections,
        usage,
    }
}

/// Every section keyword (first word of a line inside a section).
pub(crate) const KEYWORDS: &[Keyword] = &[
    kw("instance", G, "instance NAME"),
    kw("shm-stats-file", G, "shm-stats-file PATH"),
    kw("shm-stats-file-max-objects", G, "shm-stats-file-max-objects N"),
    kw("log-level", G, "log-level error|warn|info|debug|trace|off"),
    kw("threads", G, "threads N"),
    kw("stats-sync-interval", G, "stats-sync-interval DURATION"),
    kw("xdp-mode", G, "xdp-mode auto|native|generic"),
    kw("maxconn", G | D | F | L, "maxconn N"),
    kw("demo-origin", G, "demo-origin NAME ADDR:PORT [ADDR:PORT...]"),
    kw("mode", PROXY, "mode tcp|http|udp"),
    kw("bind", F | L, "bind ADDR:PORT [interface IF] [ssl crt PATH [crt PATH...]] [strict-sni] [alpn LIST] [ssl-min-ver V] [ssl-max-ver V]"),
    kw("default_backend", F, "default_backend NAME"),
    kw("use_backend", F | L, "use_backend NAME [if|unless CONDITION]"),
    kw("acl", F | B | L, "acl NAME CRITERION [FLAGS] VALUE..."),
    kw("server", B | L, "server NAME ADDR[:PORT] [OPTIONS...]"),
    kw("default-server", D | B | L, "default-server [OPTIONS...]"),
    kw("balance", D | B | L, "balance roundrobin|leastconn|source|uri|hdr(NAME)|random|static-rr"),
    kw("hash-type", D | B | L, "hash-type map-based|consistent"),
    kw("timeout", PROXY, "timeout connect|client|server|http-request|http-keep-alive|queue|tunnel|check|client-fin|server-fin DURATION"),
    kw("option", PROXY, "option forwardfor|httpchk [METHOD] [URI]|redispatch|httplog|tcplog|logasap"),
    kw("no", PROXY, "no option forwardfor|httpchk|redispatch|httplog|tcplog|logasap"),
    kw("http-check", D | B | L, "http-check expect status CODE"),
    kw("retries", D | B | L, "retries N"),
    kw("log-format", D | F | L, "log-format json"),
    kw("http-request", F | B | L, "http-request set-header NAME VALUE | del-header NAME [if|unless CONDITION]"),
    kw("guid", F | B | L, "guid GUID"),
    kw("xdp", F | L, "xdp [strict] [forward nat|dsr] [hash 5tuple|no-src-port|dst-port]"),
    kw("maglev-table-size", F | L, "maglev-table-size PRIME"),
    kw("conntrack-size", F | L, "conntrack-size N"),
];

const SECTION_WORDS: &[&str] = &["global", "defaults", "frontend", "backend", "listen"];

/// `option` names and where they are allowed.
pub(crate) const OPTIONS: &[(&str, u8)] = &[
    ("forwardfor", PROXY),
    ("httpchk", D | B | L),
    ("redispatch", D | B | L),
    ("httplog", D | F | L),
    ("tcplog", D | F | L),
    ("logasap", D | F | L),
];

pub(crate) const TIMEOUTS: &[&str] = &[
    "connect",
    "client",
    "server",
    "http-request",
    "http-keep-alive",
    "queue",
    "tunnel",
    "check",
    "client-fin",
    "server-fin",
];

/// Options accepted on `server` and `default-server` lines.
pub(crate) const SERVER_OPTIONS: &[&str] = &[
    "weight",
    "check",
    "no-check",
    "inter",
    "rise",
    "fall",
    "maxconn",
    "backup",
    "no-backup",
    "guid",
    "ssl",
    "no-ssl",
    "verify",
    "ca-file",
    "sni",
];

pub(crate) const BIND_OPTIONS: &[&str] = &[
    "interface",
    "ssl",
    "crt",
    "strict-sni",
    "alpn",
    "ssl-min-ver",
    "ssl-max-ver",
];

/// Settings a `defaults` section passes on to the proxies after it.
#[derive(Debug, Clone)]
struct Settings {
    mode: Mode,
    timeouts: Timeouts,
    forwardfor: bool,
    log_format: Option<LogFormat>,
    logasap: bool,
    redispatch: bool,
    retries: u32,
    balance: Balance,
    hash_type: HashType,
    httpchk: Option<(String, String)>,
    expect_status: Option<(u16, usize)>,
    maxconn: Option<u32>,
    default_server: ServerOpts,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            mode: Mode::default(),
            timeouts: Timeouts::default(),
            forwardfor: false,
            log_format: None,
            logasap: false,
            redispatch: false,
            retries: DEFAULT_RETRIES,
            balance: Balance::default(),
            hash_type: HashType::default(),
            httpchk: None,
            expect_status: None,
            maxconn: None,
            default_server: ServerOpts::default(),
        }
    }
}

/// Server options as written; `None` = not given here (inherit).
#[derive(Debug, Clone, Default)]
struct ServerOpts {
    weight: Option<u32>,
    check: Option<bool>,
    inter: Option<Duration>,
    rise: Option<u32>,
    fall: Option<u32>,
    maxconn: Option<u32>,
    backup: Option<bool>,
    ssl: Option<bool>,
    verify: Option<Verify>,
    ca_file: Option<PathBuf>,
    sni: Option<String>,
}

impl ServerOpts {
    /// Applies the options set in `over` on top of `self`.
    fn overlay(&mut self, over: &ServerOpts) {
        macro_rules! take {
            ($($f:ident),*) => { $( if over.$f.is_some() { self.$f = over.$f.clone(); } )* };
        }
        take!(weight, check, inter, rise, fall, maxconn, backup, ssl, verify, ca_file, sni);
    }
}

/// XDP flags as written on the `xdp` line.
#[derive(Debug, Clone, Copy)]
struct XdpLine {
    strict: bool,
    forward: XdpForward,
    hash: XdpHash,
    line: usize,
}

/// A defaults/frontend/backend/listen section being parsed.
struct Section {
    kind: Kind,
    name: String,
    line: usize,
    /// False when the header was broken: parse the body, emit nothing.
    keep: bool,
    s: Settings,
    guid: Option<Guid>,
    binds: Vec<Bind>,
    /// Name and line of `default_backend`.
    default_backend: Option<(String, usize)>,
    /// `use_backend` / `http-request` lines, handled at the end of the
    /// section so they may refer to ACLs declared further down.
    deferred: Vec<Line>,
    acls: Vec<(String, Test, usize)>,
    servers: Vec<Server>,
    xdp: Option<XdpLine>,
    maglev: Option<(u32, usize)>,
    conntrack: Option<(u32, usize)>,
    /// HTTP-only settings written in this section: warned about if the
    /// section is not mode http (inherited ones are silently ignored).
    http_only: Vec<(String, usize)>,
}

impl Section {
    fn describe(&self) -> String {
        match self.kind {
            Kind::Defaults if self.name.is_empty() => "defaults section".into(),
            k => format!("{} '{}'", k.name(), self.name),
        }
    }
}

enum Current {
    None,
    Global,
    Proxy(Box<Section>),
}

/// Parser state for one file.
struct Parser<'a> {
    file: &'a Path,
    errors: Vec<ConfigError>,
    warnings: Vec<Warning>,
    global: Global,
    defaults: Settings,
    frontends: Vec<Frontend>,
    backends: Vec<Backend>,
    /// Line of each frontend's `default_backend` (parallel to `frontends`).
    default_backend_lines: Vec<usize>,
    /// Every guid seen so far: who has it and where. Checked while parsing
    /// so the error points at the second `guid` itself.
    guids: HashMap<Guid, (String, usize)>,
}

/// What [`parse`] found.
pub(crate) struct Parsed {
    pub config: Config,
    pub errors: Vec<ConfigError>,
    pub warnings: Vec<Warning>,
    /// Line of each frontend's `default_backend` (its header line if none),
    /// parallel to `config.frontends`; lets validation point at the reference.
    pub default_backend_lines: Vec<usize>,
}

/// Parses `text` into a model plus diagnostics. The model is only meaningful
/// when the error list is empty; it is returned anyway for `validate`.
pub(crate) fn parse(text: &str, file: &Path) -> Parsed {
    let mut p = Parser {
        file,
        errors: Vec::new(),
        warnings: Vec::new(),
        global: Global::with_instance(instance_from_path(file)),
        defaults: Settings::default(),
        frontends: Vec::new(),
        backends: Vec::new(),
        default_backend_lines: Vec::new(),
        guids: HashMap::new(),
    };
    let (lines, lex_errors) = tokenize(text);
    for e in lex_errors {
        p.errors.push(ConfigError {
            file: file.to_path_buf(),
            line: Some(e.line),
            column: Some(e.col),
            message: e.message,
            hint: e.hint,
        });
    }
    let mut current = Current::None;
    for line in &lines {
        let first = &line.words[0];
        if !first.quoted && SECTION_WORDS.contains(&first.text.as_str()) {
            p.finish(std::mem::replace(&mut current, Current::None));
            current = p.open_section(line);
            continue;
        }
        let result = match &mut current {
            Current::None => Err(Problem::new(first.col, format!("'{}' is outside any section", first.text))
                .hint("start a section first: global, defaults, frontend NAME, backend NAME or listen NAME")),
            Current::Global => p.check_keyword(Kind::Global, "global section", first).and_then(|()| p.global_keyword(line)),
            Current::Proxy(sec) => p
                .check_keyword(sec.kind, &sec.describe(), first)
                .and_then(|()| p.proxy_keyword(sec, line)),
        };
        if let Err(problem) = result {
            p.error(line.number, problem);
        }
    }
    p.finish(current);
    let config = Config {
        source: file.to_path_buf(),
        global: p.global,
        frontends: p.frontends,
        backends: p.backends,
    };
    Parsed {
        config,
        errors: p.errors,
        warnings: p.warnings,
        default_backend_lines: p.default_backend_lines,
    }
}

/// Default instance name: the file stem, restricted to `[A-Za-z0-9_-]`.
fn instance_from_path(file: &Path) -> String {
    let stem = file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let clean: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if clean.trim_matches('_').is_empty() {
        "weir".into()
    } else {
        clean
    }
}

impl Parser<'_> {
    fn error(&mut self, line: usize, p: Problem) {
        self.errors.push(ConfigError {
            file: self.file.to_path_buf(),
            line: Some(line),
            column: (p.col > 0).then_some(p.col),
            message: p.message,
            hint: p.hint,
        });
    }

    fn warn(&mut self, line: usize, message: impl Into<String>, hint: Option<&str>) {
        self.warnings.push(Warning {
            file: self.file.to_path_buf(),
            line: Some(line),
            message: message.into(),
            hint: hint.map(str::to_string),
        });
    }

    /// Registers `guid` for `what`; a guid already used by any entity
    /// (frontend, backend, listen or server) is an error.
    fn claim_guid(
        &mut self,
        guid: &Guid,
        what: String,
        line: usize,
        col: usize,
    ) -> Result<(), Problem> {
        if let Some((other, other_line)) = self.guids.get(guid) {
            return Err(Problem::new(
                col,
                format!("duplicate guid '{guid}' on {what}: already used by {other} at line {other_line}"),
            )
            .hint("every frontend, backend, listen and server needs its own guid"));
        }
        self.guids.insert(guid.clone(), (what, line));
        Ok(())
    }

    fn open_section(&mut self, line: &Line) -> Current {
        let head = &line.words[0];
        let kind = match head.text.as_str() {
            "global" => Kind::Global,
            "defaults" => Kind::Defaults,
            "frontend" => Kind::Frontend,
            "backend" => Kind::Backend,
            _ => Kind::Listen,
        };
        let args = &line.words[1..];
        let mut keep = true;
        let mut name = String::new();
        match kind {
            Kind::Global => {
                if let Some(extra) = args.first() {
                    self.error(
                        line.number,
                        Problem::new(extra.col, "'global' takes no name")
                            .hint("write just 'global'"),
                    );
                }
                return Current::Global;
            }
            Kind::Defaults => {
                if let Some(n) = args.first() {
                    name = n.text.clone();
                }
                if let Some(extra) = args.get(1) {
                    self.error(
                        line.number,
                        Problem::new(extra.col, "'defaults' takes at most a name")
                            .hint("write 'defaults' or 'defaults NAME'"),
                    );
                }
            }
            _ => match args {
                [n] => match check_name(n) {
                    Ok(()) => name = n.text.clone(),
                    Err(p) => {
                        self.error(line.number, p);
                        keep = false;
                    }
                },
                [] => {
                    self.error(
                        line.number,
                        Problem::new(head.col, format!("'{}' needs a name", kind.name()))
                            .hint(format!("write '{} NAME'", kind.name())),
                    );
                    keep = false;
                }
                [_, extra, ..] => {
                    self.error(
                        line.number,
                        Problem::new(
                            extra.col,
                            format!("'{}' takes exactly one name", kind.name()),
                        )
                        .hint("names cannot contain spaces"),
                    );
                    keep = false;
                }
            },
        }
        // A new defaults section starts from built-in values, like HAProxy.
        let s = if kind == Kind::Defaults {
            Settings::default()
        } else {
            self.defaults.clone()
        };
        Current::Proxy(Box::new(Section {
            kind,
            name,
            line: line.number,
            keep,
            s,
            guid: None,
            binds: Vec::new(),
            default_backend: None,
            deferred: Vec::new(),
            acls: Vec::new(),
            servers: Vec::new(),
            xdp: None,
            maglev: None,
            conntrack: None,
            http_only: Vec::new(),
        }))
    }

    /// Checks that `word` is a keyword allowed in this kind of section.
    fn check_keyword(&self, kind: Kind, what: &str, word: &Word) -> Result<(), Problem> {
        let name = word.text.as_str();
        match KEYWORDS.iter().find(|k| k.name == name) {
            Some(k) if k.sections & kind.bit() != 0 => Ok(()),
            Some(k) => {
                let allowed: Vec<&str> = [
                    Kind::Global,
                    Kind::Defaults,
                    Kind::Frontend,
                    Kind::Backend,
                    Kind::Listen,
                ]
                .into_iter()
                .filter(|s| k.sections & s.bit() != 0)
                .map(Kind::name)
                .collect();
                Err(Problem::new(
                    word.col,
                    format!("keyword '{name}' is not allowed in {what}"),
                )
                .hint(format!("allowed in: {}", allowed.join(", "))))
            }
            None => {
                let here = KEYWORDS
                    .iter()
                    .filter(|k| k.sections & kind.bit() != 0)
                    .map(|k| k.name);
                let p = Problem::new(word.col, format!("unknown keyword '{name}' in {what}"));
                // Prefer keywords valid here; fall back to any keyword.
                if super::error::did_you_mean(name, here.clone()).is_some() {
                    Err(p.suggest(name, here))
                } else {
                    Err(p.suggest(name, KEYWORDS.iter().map(|k| k.name)))
                }
            }
        }
    }

    fn global_keyword(&mut self, line: &Line) -> Result<(), Problem> {
        let key = line.words[0].text.as_str();
        if key == "demo-origin" {
            return self.demo_origin(line);
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
            _ => unreachable!("check_keyword lets only global keywords through"),
        }
        Ok(())
    }

    /// `demo-origin NAME ADDR:PORT...`: a built-in test origin to start.
    fn demo_origin(&mut self, line: &Line) -> Result<(), Problem> {
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

    fn proxy_keyword(&mut self, sec: &mut Section, line: &Line) -> Result<(), Problem> {
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
                let bind = parse_bind(line)?;
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
                let a = args(line, 1, 1)?;
                let v = &a[0];
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
                            ("uri", Balance::Uri),
                            ("random", Balance::Random),
                            ("static-rr", Balance::StaticRr),
                        ],
                    )
                    .map_err(|p| p.hint("use roundrobin, leastconn, source, uri, hdr(NAME), random or static-rr"))?
                };
                if matches!(sec.s.balance, Balance::Uri | Balance::Hdr(_))
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
            "conntrack-size" => {
                let a = args(line, 1, 1)?;
                sec.conntrack = Some((number(&a[0], key, 1024, 67_108_864)? as u32, n));
            }
            _ => unreachable!("check_keyword lets only proxy keywords through"),
        }
        Ok(())
    }

    /// `option NAME ...` (enable = true) or `no option NAME` (enable = false).
    fn option(&mut self, sec: &mut Section, line: &Line, enable: bool) -> Result<(), Problem> {
        let a = if enable {
            args(line, 1, 3)?
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
        if allowed & sec.kind.bit() == 0 {
            return Err(Problem::new(
                w.col,
                format!("option '{name}' is not allowed in {}", sec.describe()),
            ));
        }
        if name != "httpchk" {
            if let Some(extra) = a.get(1) {
                return Err(Problem::new(
                    extra.col,
                    format!("option '{name}' takes no arguments"),
                ));
            }
        }
        let s = &mut sec.s;
        match name {
            "forwardfor" => s.forwardfor = enable,
            "redispatch" => s.redispatch = enable,
            "logasap" => s.logasap = enable,
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
                    // HAProxy: one argument is the URI, two are METHOD URI.
                    match &a[1..] {
                        [] => Some(("OPTIONS".into(), "/".into())),
                        [uri] => Some(("OPTIONS".into(), check_uri(uri)?)),
                        [method, uri] => Some((check_method(method)?, check_uri(uri)?)),
                        _ => unreachable!("args() capped the count"),
                    }
                };
            }
        }
        if enable && sec.kind != Kind::Defaults && matches!(name, "forwardfor" | "httplog") {
            sec.http_only.push((format!("option {name}"), line.number));
        }
        Ok(())
    }

    /// Closes a section: resolves deferred rules, checks section-local
    /// consistency and emits the model entities.
    fn finish(&mut self, current: Current) {
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
            sec.s.forwardfor = false;
            if sec.s.log_format == Some(LogFormat::Http) {
                sec.s.log_format = Some(LogFormat::Tcp);
            }
            if matches!(sec.s.balance, Balance::Uri | Balance::Hdr(_)) {
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
                http_request: if from_listen {
                    std::mem::take(&mut http_request)
                } else {
                    http_request.clone()
                },
                timeouts: s.timeouts,
                maxconn: s.maxconn,
                forwardfor: s.forwardfor,
                log_format: s.log_format,
                logasap: s.logasap,
                xdp,
            });
        }
        if matches!(sec.kind, Kind::Backend | Kind::Listen) {
            if s.expect_status.is_some() && s.httpchk.is_none() {
                let line = s.expect_status.map_or(sec.line, |e| e.1);
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
                http_check: s.httpchk.clone().map(|(method, uri)| HttpCheck {
                    method,
                    uri,
                    expect_status: s.expect_status.map(|e| e.0),
                }),
                forwardfor: s.forwardfor,
                http_request,
            });
        }
    }

    /// Section-local consistency: mode vs. XDP, ports, TLS, HTTP-only rules.
    fn check_section(
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
    fn acl_table(&self, sec: &Section) -> HashMap<String, Condition> {
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
    fn trailing_condition(
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

    fn use_backend(
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

    fn http_request(
        &mut self,
        line: &Line,
        acls: &HashMap<String, Condition>,
        used: &mut HashSet<String>,
    ) -> Result<Option<HttpRequestRule>, Problem> {
        let a = args(line, 2, usize::MAX)?;
        let act = &a[0];
        let (action, rest) = match act.text.as_str() {
            "set-header" => {
                let [name, value, rest @ ..] = a[1..].as_ref() else {
                    return Err(Problem::new(
                        act.col,
                        "set-header needs a header name and a value",
                    )
                    .hint("e.g. http-request set-header X-Env \"prod eu\""));
                };
                check_header_name(name)?;
                (
                    HttpRequestAction::SetHeader {
                        name: name.text.clone(),
                        value: value.text.clone(),
                    },
                    rest,
                )
            }
            "del-header" => {
                let name = &a[1];
                check_header_name(name)?;
                (
                    HttpRequestAction::DelHeader {
                        name: name.text.clone(),
                    },
                    &a[2..],
                )
            }
            other => {
                return Err(
                    Problem::new(act.col, format!("unknown http-request action '{other}'"))
                        .hint("actions: set-header, del-header")
                        .suggest(other, ["set-header", "del-header"]),
                )
            }
        };
        let condition = self.trailing_condition(line, rest, acls, used)?;
        Ok(Some(HttpRequestRule {
            action,
            condition,
            line: line.number,
        }))
    }
}

/// Returns the arguments (words after the keyword), checking their count.
fn args(line: &Line, min: usize, max: usize) -> Result<&[Word], Problem> {
    let key = &line.words[0];
    let a = &line.words[1..];
    if a.len() >= min && a.len() <= max {
        return Ok(a);
    }
    let usage = usage(&key.text);
    let expected = match (min, max) {
        (m, n) if m == n => format!("{m} argument{}", if m == 1 { "" } else { "s" }),
        (m, usize::MAX) => format!("at least {m} argument{}", if m == 1 { "" } else { "s" }),
        (m, n) => format!("{m} to {n} arguments"),
    };
    let col = a.get(max).map_or(key.col, |w| w.col);
    Err(Problem::new(
        col,
        format!("'{}' expects {expected}, got {}", key.text, a.len()),
    )
    .hint(format!("usage: {usage}")))
}

/// Usage line of a keyword (empty for unknown ones).
pub(crate) fn usage(keyword: &str) -> &'static str {
    KEYWORDS
        .iter()
        .find(|k| k.name == keyword)
        .map_or("", |k| k.usage)
}

/// Section, server and backend names: `[A-Za-z0-9_.:-]+`.
fn check_name(w: &Word) -> Result<(), Problem> {
    if !w.text.is_empty()
        && w.text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-'))
    {
        Ok(())
    } else {
        Err(Problem::new(w.col, format!("invalid name '{}'", w.text))
            .hint("names use letters, digits, '_', '.', ':', '-'"))
    }
}

fn check_header_name(w: &Word) -> Result<(), Problem> {
    // RFC 9110 token characters.
    let ok = !w.text.is_empty()
        && w.text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c));
    if ok {
        Ok(())
    } else {
        Err(
            Problem::new(w.col, format!("invalid header name '{}'", w.text))
                .hint("header names are tokens such as X-Forwarded-Proto"),
        )
    }
}

fn check_method(w: &Word) -> Result<String, Problem> {
    if !w.text.is_empty() && w.text.chars().all(|c| c.is_ascii_uppercase()) {
        Ok(w.text.clone())
    } else {
        Err(
            Problem::new(w.col, format!("invalid HTTP method '{}'", w.text))
                .hint("e.g. GET, HEAD or OPTIONS"),
        )
    }
}

fn check_uri(w: &Word) -> Result<String, Problem> {
    if w.text.starts_with('/') && !w.text.contains(char::is_whitespace) {
        Ok(w.text.clone())
    } else {
        Err(
            Problem::new(w.col, format!("invalid check URI '{}'", w.text))
                .hint("the URI must start with '/', e.g. /health"),
        )
    }
}

/// Parses an unsigned integer within `min..=max`.
fn number(w: &Word, what: &str, min: u64, max: u64) -> Result<u64, Problem> {
    match w.text.parse::<u64>() {
        Ok(v) if (min..=max).contains(&v) => Ok(v),
        Ok(_) => Err(
            Problem::new(w.col, format!("{what} {} is out of range", w.text))
                .hint(format!("allowed: {min} to {max}")),
        ),
        Err(_) => Err(
            Problem::new(w.col, format!("invalid number '{}' for {what}", w.text))
                .hint(format!("expected an integer from {min} to {max}")),
        ),
    }
}

/// Picks one of the listed spellings, with a suggestion on typos.
fn choice<T: Clone>(w: &Word, what: &str, options: &[(&str, T)]) -> Result<T, Problem> {
    if let Some((_, v)) = options.iter().find(|(name, _)| *name == w.text) {
        return Ok(v.clone());
    }
    let names: Vec<&str> = options.iter().map(|o| o.0).collect();
    Err(
        Problem::new(w.col, format!("invalid value '{}' for {what}", w.text))
            .hint(format!("expected one of: {}", names.join(", ")))
            .suggest(&w.text, names.iter().copied()),
    )
}

fn duration(w: &Word) -> Result<Duration, Problem> {
    parse_duration(&w.text).map_err(|m| {
        Problem::new(w.col, m).hint("e.g. 500ms, 5s, 1m; a bare number is milliseconds")
    })
}

/// Parses an HAProxy duration: digits with an optional unit `us`, `ms`, `s`,
/// `m`, `h` or `d`; a bare number is milliseconds.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(digits);
    if num.is_empty() {
        return Err(format!("invalid duration '{s}'"));
    }
    let n: u64 = num
        .parse()
        .map_err(|_| format!("duration '{s}' is too large"))?;
    let per_unit_us: u64 = match unit {
        "us" => 1,
        "" | "ms" => 1_000,
        "s" => 1_000_000,
        "m" => 60_000_000,
        "h" => 3_600_000_000,
        "d" => 86_400_000_000,
        _ => return Err(format!("invalid duration unit '{unit}' in '{s}'")),
    };
    n.checked_mul(per_unit_us)
        .map(Duration::from_micros)
        .ok_or_else(|| format!("duration '{s}' is too large"))
}

/// Parses `ADDR:PORT` forms: `1.2.3.4:80`, `[::1]:80`, `:80` / `*:80` (any
/// IPv4), `:::80` (any IPv6, the last colon separates the port), with an
/// optional `ipv4@` / `ipv6@` prefix. With `port_optional`, a bare address
/// gets port 0.
pub(crate) fn parse_addr(w: &Word, port_optional: bool) -> Result<SocketAddr, Problem> {
    let text = w.text.as_str();
    let bad = |msg: String| Problem::new(w.col, msg);
    let ip_hint =
        "use an IP address such as 10.0.0.1:80 or [2001:db8::1]:80; host names are not resolved";
    let (family, rest) = if let Some(r) = text.strip_prefix("ipv4@") {
        (Some(4), r)
    } else if let Some(r) = text.strip_prefix("ipv6@") {
        (Some(6), r)
    } else if let Some((prefix, _)) = text.split_once('@') {
        return Err(bad(format!(
            "unsupported address family '{prefix}@' in '{text}'"
        ))
        .hint("only ipv4@ and ipv6@ are supported"));
    } else {
        (None, text)
    };
    let (host, port): (&str, Option<&str>) = if let Some(inner) = rest.strip_prefix('[') {
        let Some((h, after)) = inner.split_once(']') else {
            return Err(bad(format!("missing ']' in address '{text}'"))
                .hint("write IPv6 addresses as [2001:db8::1]:80"));
        };
        match after {
            "" => (h, None),
            _ => match after.strip_prefix(':') {
                Some(p) => (h, Some(p)),
                None => {
                    return Err(bad(format!("unexpected '{after}' after ']' in '{text}'"))
                        .hint("write [ADDR]:PORT"))
                }
            },
        }
    } else if port_optional && rest.parse::<IpAddr>().is_ok() {
        (rest, None)
    } else {
        match rest.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None if port_optional => (rest, None),
            None => {
                return Err(bad(format!("address '{text}' has no port"))
                    .hint("write ADDR:PORT, e.g. :80 or 10.0.0.1:443"))
            }
        }
    };
    let ip: IpAddr = match host {
        "" | "*" => {
            if family == Some(6) {
                IpAddr::V6(Ipv6Addr::UNSPECIFIED)
            } else {
                IpAddr::V4(Ipv4Addr::UNSPECIFIED)
            }
        }
        h => h
            .parse()
            .map_err(|_| bad(format!("'{h}' is not an IP address")).hint(ip_hint))?,
    };
    match (family, ip) {
        (Some(4), IpAddr::V6(_)) | (Some(6), IpAddr::V4(_)) => {
            return Err(
                bad(format!("address family prefix does not match '{host}'"))
                    .hint("drop the ipv4@/ipv6@ prefix"),
            );
        }
        _ => {}
    }
    let port = match port {
        None if port_optional => 0,
        None => return Err(bad(format!("address '{text}' has no port")).hint("write [ADDR]:PORT")),
        Some(p) => p.parse::<u16>().map_err(|_| {
            bad(format!("invalid port '{p}' in '{text}'")).hint("ports are 1 to 65535")
        })?,
    };
    Ok(SocketAddr::new(ip, port))
}

fn parse_bind(line: &Line) -> Result<Bind, Problem> {
    let a = args(line, 1, usize::MAX)?;
    let addr = parse_addr(&a[0], false)?;
    let mut interface = None;
    let mut ssl = None;
    let mut certs = Vec::new();
    let mut strict_sni = None;
    let mut alpn = None;
    let mut min_version = None;
    let mut max_version = None;
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
            "ssl" => ssl = Some(w.col),
            "crt" => {
                certs.push(PathBuf::from(&value()?.text));
                i += 1;
            }
            "strict-sni" => strict_sni = Some(w.col),
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
    Ok(Bind {
        addr,
        interface,
        tls,
        line: line.number,
    })
}

/// Parses `server`/`default-server` options; `guid` only when `allow_guid`.
fn parse_server_opts(
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
                    .hint("usage: server NAME ADDR:PORT [weight N] [check] [inter DUR] [rise N] [fall N] [maxconn N] [backup] [guid G] [ssl] [verify none|required] [ca-file F] [sni STR]")
            })
        };
        let mut takes_value = true;
        match w.text.as_str() {
            "weight" => o.weight = Some(number(value()?, "weight", 0, 256)? as u32),
            "inter" => {
                let v = value()?;
                let d = duration(v)?;
                if d.is_zero() {
                    return Err(
                        Problem::new(v.col, "inter must be greater than 0").hint("e.g. inter 2s")
                    );
                }
                o.inter = Some(d);
            }
            "rise" => o.rise = Some(number(value()?, "rise", 1, 1000)? as u32),
            "fall" => o.fall = Some(number(value()?, "fall", 1, 1000)? as u32),
            "maxconn" => o.maxconn = Some(number(value()?, "maxconn", 1, u32::MAX.into())? as u32),
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

fn resolve_server(
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
        rise: o.rise.unwrap_or(server_defaults::RISE),
        fall: o.fall.unwrap_or(server_defaults::FALL),
        maxconn: o.maxconn,
        backup: o.backup.unwrap_or(false),
        ssl,
        verify,
        ca_file: o.ca_file,
        sni: o.sni,
    })
}

fn parse_xdp(line: &Line) -> Result<XdpLine, Problem> {
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

fn is_prime(n: u32) -> bool {
    if n < 2 {
        return false;
    }
    let n = u64::from(n);
    let mut d = 2u64;
    while d * d <= n {
        if n % d == 0 {
            return false;
        }
        d += 1;
    }
    true
}

fn next_prime(n: u32) -> u32 {
    (n..=u32::MAX).find(|&c| is_prime(c)).unwrap_or(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn word(s: &str) -> Word {
        Word {
            text: s.into(),
            col: 1,
            quoted: false,
        }
    }

    fn addr(s: &str) -> Result<SocketAddr, Problem> {
        parse_addr(&word(s), false)
    }

    #[test]
    fn durations_use_haproxy_units_and_bare_numbers_are_milliseconds() {
        assert_eq!(parse_duration("250"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("10us"), Ok(Duration::from_micros(10)));
        assert_eq!(parse_duration("5ms"), Ok(Duration::from_millis(5)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86400)));
    }

    #[test]
    fn bad_durations_are_rejected() {
        for bad in [
            "",
            "s",
            "5x",
            "1.5s",
            "-1s",
            "99999999999999999999",
            "18446744073709551615d",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn ipv4_ipv6_and_wildcard_addresses_parse() {
        assert_eq!(addr("10.0.0.1:80").unwrap(), "10.0.0.1:80".parse().unwrap());
        assert_eq!(addr("[::1]:443").unwrap(), "[::1]:443".parse().unwrap());
        assert_eq!(addr(":80").unwrap(), "0.0.0.0:80".parse().unwrap());
        assert_eq!(addr("*:80").unwrap(), "0.0.0.0:80".parse().unwrap());
        assert_eq!(addr(":::80").unwrap(), "[::]:80".parse().unwrap());
        assert_eq!(addr("ipv6@:80").unwrap(), "[::]:80".parse().unwrap());
        assert_eq!(
            addr("ipv4@1.2.3.4:9").unwrap(),
            "1.2.3.4:9".parse().unwrap()
        );
        assert_eq!(
            addr("2001:db8::1:8080").unwrap(),
            "[2001:db8::1]:8080".parse().unwrap()
        );
    }

    #[test]
    fn bad_addresses_are_rejected_with_reasons() {
        assert!(addr("10.0.0.1").unwrap_err().message.contains("no port"));
        assert!(addr("example.com:80")
            .unwrap_err()
            .message
            .contains("not an IP address"));
        assert!(addr("1.2.3.4:70000")
            .unwrap_err()
            .message
            .contains("invalid port"));
        assert!(addr("[::1:80").is_err());
        assert!(addr("[::1]x").is_err());
        assert!(addr("unix@/tmp/s").is_err());
        assert!(addr("ipv4@[::1]:80").is_err());
    }

    #[test]
    fn server_addresses_may_omit_the_port() {
        assert_eq!(parse_addr(&word("10.0.0.1"), true).unwrap().port(), 0);
        assert_eq!(
            parse_addr(&word("::1"), true).unwrap(),
            "[::1]:0".parse().unwrap()
        );
        assert_eq!(parse_addr(&word("[::1]"), true).unwrap().port(), 0);
    }

    #[test]
    fn instance_defaults_to_sanitized_file_stem() {
        assert_eq!(
            instance_from_path(Path::new("configs/edge-1.cfg")),
            "edge-1"
        );
        assert_eq!(instance_from_path(Path::new("/x/my lb.v2.cfg")), "my_lb_v2");
        assert_eq!(instance_from_path(Path::new("")), "weir");
    }

    #[test]
    fn primes_are_recognized_for_maglev() {
        assert!(is_prime(65537) && is_prime(3) && !is_prime(65536) && !is_prime(1));
        assert_eq!(next_prime(1000), 1009);
    }

    #[test]
    fn every_keyword_has_a_usage_line() {
        assert!(KEYWORDS.iter().all(|k| k.usage.starts_with(k.name)));
        assert!(usage("bind").contains("strict-sni"));
    }
}
