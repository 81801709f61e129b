//! Turns lines of words into the typed model: one pass over the sections,
//! one handler per keyword. Cross-section checks (backend references,
//! duplicate names, ...) live in `validate.rs`; duplicate guids are caught
//! here, as they are declared.
//!
//! Files: this one holds the keyword tables, the per-section state and the
//! main loop; `parser/keywords.rs` the keyword handlers, `parser/finish.rs`
//! what happens when a section ends (rules, ACLs, section checks, model
//! output), `parser/statements.rs` the `bind`/`server`/`xdp` option
//! parsers and `parser/values.rs` the value parsers (numbers, durations,
//! addresses).
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
use super::network::Network;

mod finish;
mod keywords;
mod statements;
mod values;

use statements::*;
use values::*;

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
    kw("noiouring", G, "noiouring"),
    kw("stats-sync-interval", G, "stats-sync-interval DURATION"),
    kw("xdp-mode", G, "xdp-mode auto|native|generic"),
    kw("maxconn", G | D | F | L, "maxconn N"),
    kw("demo-origin", G, "demo-origin NAME ADDR:PORT [ADDR:PORT...]"),
    kw("tune.bufsize", G, "tune.bufsize SIZE"),
    kw("tune.http.maxhdr", G, "tune.http.maxhdr N"),
    kw("tune.accept-coalesce", G, "tune.accept-coalesce DURATION|0"),
    kw("http-max-request-line", D | F | L, "http-max-request-line SIZE"),
    kw("http-max-body-size", D | F | L, "http-max-body-size SIZE|0"),
    kw("mode", PROXY, "mode tcp|http|udp"),
    kw("bind", F | L, "bind ADDR:PORT [interface IF] [ssl crt PATH [crt PATH...]] [strict-sni] [alpn LIST] [ssl-min-ver V] [ssl-max-ver V] [defer-accept]"),
    kw("default_backend", F, "default_backend NAME"),
    kw("use_backend", F | L, "use_backend NAME [if|unless CONDITION]"),
    kw("acl", F | B | L, "acl NAME CRITERION [FLAGS] VALUE..."),
    kw("server", B | L, "server NAME ADDR[:PORT] [OPTIONS...]"),
    kw("default-server", D | B | L, "default-server [OPTIONS...]"),
    kw("balance", D | B | L, "balance roundrobin|leastconn|source|uri [whole]|hdr(NAME)|random|static-rr"),
    kw("hash-type", D | B | L, "hash-type map-based|consistent"),
    kw("timeout", PROXY, "timeout connect|client|server|http-request|http-keep-alive|queue|tunnel|check|client-fin|server-fin DURATION"),
    kw("option", PROXY, "option forwardfor [except NETWORK] [header NAME] [if-none]|httpchk [[METHOD] URI [VERSION]]|redispatch|allbackups|httplog|tcplog|logasap|splice-auto|http-reject-get-body"),
    kw("no", PROXY, "no option forwardfor|httpchk|redispatch|allbackups|httplog|tcplog|logasap|splice-auto|http-reject-get-body"),
    kw("http-check", D | B | L, "http-check expect status CODE"),
    kw("retries", D | B | L, "retries N"),
    kw("log-format", D | F | L, "log-format json"),
    kw("http-request", F | B | L, "http-request set-header NAME VALUE | add-header NAME VALUE | del-header NAME | deny [deny_status CODE] | return [status CODE] [content-type TYPE] [string TEXT] [if|unless CONDITION]"),
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
    ("allbackups", D | B | L),
    ("httplog", D | F | L),
    ("tcplog", D | F | L),
    ("logasap", D | F | L),
    ("splice-auto", D | F | L),
    ("http-reject-get-body", D | F | L),
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
    "fastinter",
    "downinter",
    "rise",
    "fall",
    "observe",
    "error-limit",
    "on-error",
    "on-marked-down",
    "maxconn",
    "maxqueue",
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
    "guid",
    "ssl",
    "crt",
    "strict-sni",
    "alpn",
    "ssl-min-ver",
    "ssl-max-ver",
    "defer-accept",
];

/// Settings a `defaults` section passes on to the proxies after it.
#[derive(Debug, Clone)]
struct Settings {
    mode: Mode,
    timeouts: Timeouts,
    forwardfor: Option<ForwardFor>,
    reject_get_body: bool,
    max_request_line: Option<u32>,
    max_body_size: Option<u64>,
    log_format: Option<LogFormat>,
    logasap: bool,
    splice_auto: bool,
    redispatch: bool,
    all_backups: bool,
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
            forwardfor: None,
            reject_get_body: false,
            max_request_line: None,
            max_body_size: None,
            log_format: None,
            logasap: false,
            splice_auto: true,
            redispatch: false,
            all_backups: false,
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
    fastinter: Option<Duration>,
    downinter: Option<Duration>,
    rise: Option<u32>,
    fall: Option<u32>,
    /// `Some(None)`: `observe none`.
    observe: Option<Option<Observe>>,
    error_limit: Option<u32>,
    on_error: Option<OnError>,
    shutdown_sessions_on_down: Option<bool>,
    maxconn: Option<u32>,
    maxqueue: Option<u32>,
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
        take!(
            weight,
            check,
            inter,
            fastinter,
            downinter,
            rise,
            fall,
            observe,
            error_limit,
            on_error,
            shutdown_sessions_on_down,
            maxconn,
            maxqueue,
            backup,
            ssl,
            verify,
            ca_file,
            sni
        );
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
            .hint("every frontend, backend, listen, bind and server needs its own guid"));
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
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn every_keyword_has_a_usage_line() {
        assert!(KEYWORDS.iter().all(|k| k.usage.starts_with(k.name)));
        assert!(usage("bind").contains("strict-sni"));
    }
}
