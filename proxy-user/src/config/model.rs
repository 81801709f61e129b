//! The typed configuration model produced by the parser.
//!
//! `listen NAME` sections are normalized into a [`Frontend`] and a
//! [`Backend`] with the same name, both with `from_listen = true`; the
//! frontend's `default_backend` is the listen's own backend. Both halves
//! carry the listen's `guid` (stats objects are keyed by guid *and* type,
//! like HAProxy's shm-stats-file); the guid is declared once, so it is not
//! a duplicate. HTTP-only settings inherited by tcp/udp proxies are
//! normalized away (no forwardfor, httplog -> tcplog, uri/hdr -> roundrobin).
//! A listen's `http-request` rules are kept on its frontend
//! half (they run once per request).

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::condition::Condition;
use super::network::Network;
pub use crate::health::passive::{Observe, OnError};

/// A whole, validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// File the configuration was read from.
    pub source: PathBuf,
    /// Process-wide settings from the `global` section(s).
    pub global: Global,
    /// Frontends in file order, including the frontend half of each `listen`.
    pub frontends: Vec<Frontend>,
    /// Backends in file order, including the backend half of each `listen`.
    pub backends: Vec<Backend>,
}

impl Config {
    /// Looks a frontend up by name.
    pub fn frontend(&self, name: &str) -> Option<&Frontend> {
        self.frontends.iter().find(|f| f.name == name)
    }

    /// Looks a backend up by name.
    pub fn backend(&self, name: &str) -> Option<&Backend> {
        self.backends.iter().find(|b| b.name == name)
    }

    /// Human-readable names of entities that have no `guid`, e.g.
    /// `frontend 'web'`, `listen 'db'`, `server 'app/s1'`. A listen is
    /// listed once. Used for the "entities without guid" startup notice.
    pub fn entities_without_guid(&self) -> Vec<String> {
        let mut out = Vec::new();
        for f in &self.frontends {
            if f.guid.is_none() {
                let kind = if f.from_listen { "listen" } else { "frontend" };
                out.push(format!("{kind} '{}'", f.name));
            }
        }
        for b in &self.backends {
            if b.guid.is_none() && !b.from_listen {
                out.push(format!("backend '{}'", b.name));
            }
            for s in b.servers.iter().filter(|s| s.guid.is_none()) {
                out.push(format!("server '{}/{}'", b.name, s.name));
            }
        }
        out
    }
}

/// Settings from the `global` section.
#[derive(Debug, Clone, PartialEq)]
pub struct Global {
    /// `instance NAME`: names this Weir instance; BPF objects are pinned under
    /// `/sys/fs/bpf/weir/<instance>/`. Default: the config file stem with
    /// characters outside `[A-Za-z0-9_-]` replaced by `_` (`weir` if empty).
    pub instance: String,
    /// `shm-stats-file PATH`: where shared-memory statistics are kept.
    pub shm_stats_file: Option<PathBuf>,
    /// `shm-stats-file-max-objects N`: capacity of the stats file; `None`
    /// lets the stats module pick its default.
    pub shm_stats_file_max_objects: Option<u32>,
    /// `log-level LEVEL`. Default `info`.
    pub log_level: log::LevelFilter,
    /// `threads N`: worker threads; `None` = one per CPU.
    pub threads: Option<u32>,
    /// False with `noiouring`: L7 plain TCP connections use epoll instead
    /// of io_uring. Default true (io_uring where the kernel allows it).
    pub io_uring: bool,
    /// `stats-sync-interval DURATION`: how often BPF counters are folded into
    /// the stats file. Default 1s.
    pub stats_sync_interval: Duration,
    /// `xdp-mode auto|native|generic`: how XDP programs are attached. Default auto.
    pub xdp_mode: XdpMode,
    /// `maxconn N`: process-wide connection limit; `None` = unlimited.
    pub maxconn: Option<u32>,
    /// `demo-origin NAME ADDR:PORT...`: built-in HTTP test origins to start
    /// (`weir origin` inside the process), in file order.
    pub demo_origins: Vec<DemoOrigin>,
    /// `tune.bufsize N`: HAProxy's buffer size. The largest request or
    /// response head accepted is N minus [`HEAD_REWRITE_RESERVE`] (431 /
    /// 502 above that). `None`: Weir's default head limit (64 KiB).
    pub tune_bufsize: Option<u32>,
    /// `tune.http.maxhdr N`: most header fields in a request or response
    /// (431 / 502 above). `None`: 101, HAProxy's default.
    pub tune_http_maxhdr: Option<u16>,
    /// `tune.accept-coalesce DURATION`: the longest pause an io_uring L7
    /// worker takes, under heavy connection churn, before it sleeps, to
    /// accept new connections in batches (see `uring::coalesce`). `0`
    /// turns it off. Default 200 µs.
    pub tune_accept_coalesce: Duration,
}

/// Upper bound of `tune.accept-coalesce`.
pub const MAX_ACCEPT_COALESCE: Duration = Duration::from_millis(10);

/// Bytes of `tune.bufsize` HAProxy keeps free for header rewrites (its
/// default `tune.maxrewrite`), so the largest head is `tune.bufsize - 1024`:
/// a configuration moved from HAProxy accepts the same heads.
pub const HEAD_REWRITE_RESERVE: u32 = 1024;

/// A built-in demo/test HTTP origin declared in `global`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoOrigin {
    /// Name it answers with (`hello from NAME`, `X-Origin: NAME`).
    pub name: String,
    /// Addresses to listen on; port 0 picks a free port.
    pub addrs: Vec<SocketAddr>,
    /// Line of the statement.
    pub line: usize,
}

/// Default for [`Global::stats_sync_interval`].
pub const DEFAULT_STATS_SYNC_INTERVAL: Duration = Duration::from_secs(1);

impl Global {
    /// Global settings with every default applied, for the given instance name.
    pub fn with_instance(instance: String) -> Self {
        Global {
            instance,
            shm_stats_file: None,
            shm_stats_file_max_objects: None,
            log_level: log::LevelFilter::Info,
            threads: None,
            io_uring: true,
            stats_sync_interval: DEFAULT_STATS_SYNC_INTERVAL,
            xdp_mode: XdpMode::Auto,
            maxconn: None,
            demo_origins: Vec::new(),
            tune_bufsize: None,
            tune_http_maxhdr: None,
            tune_accept_coalesce: crate::uring::coalesce::DEFAULT_MAX,
        }
    }
}

/// How XDP programs are attached to interfaces (`xdp-mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum XdpMode {
    /// Native (driver) mode if the driver supports it, generic otherwise.
    #[default]
    Auto,
    /// Driver mode only; attaching fails on drivers without XDP support.
    Native,
    /// Generic (skb) mode: works everywhere, slower.
    Generic,
}

/// A stable identifier for an entity, used to key persistent statistics.
/// 1 to 127 characters of `[A-Za-z0-9.:_-]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Guid(String);

impl Guid {
    /// Longest accepted guid, in bytes.
    pub const MAX_LEN: usize = 127;

    /// Validates `s` as a guid; the error explains what is wrong.
    pub fn parse(s: &str) -> Result<Guid, String> {
        if s.is_empty() {
            return Err("guid is empty".into());
        }
        if s.len() > Self::MAX_LEN {
            return Err(format!(
                "guid is {} characters long, the maximum is {}",
                s.len(),
                Self::MAX_LEN
            ));
        }
        if let Some(c) = s
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '_' | '-')))
        {
            return Err(format!("guid '{s}' contains invalid character {c:?}"));
        }
        Ok(Guid(s.to_string()))
    }

    /// The guid text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Proxy mode (`mode`). HAProxy's default, `tcp`, is also Weir's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Layer-4 TCP proxying (userspace, or XDP with `xdp`).
    #[default]
    Tcp,
    /// HTTP/1.1 proxying with request rules.
    Http,
    /// Layer-4 UDP load balancing (XDP).
    Udp,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Tcp => "tcp",
            Mode::Http => "http",
            Mode::Udp => "udp",
        })
    }
}

/// All `timeout` values of a proxy; `None` means "no timeout".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Timeouts {
    /// `timeout connect`: establishing a connection to a server.
    pub connect: Option<Duration>,
    /// `timeout client`: client inactivity.
    pub client: Option<Duration>,
    /// `timeout server`: server inactivity.
    pub server: Option<Duration>,
    /// `timeout http-request`: receiving a complete request head.
    pub http_request: Option<Duration>,
    /// `timeout http-keep-alive`: waiting for the next request on a kept-alive connection.
    pub http_keep_alive: Option<Duration>,
    /// `timeout queue`: waiting for a server connection slot.
    pub queue: Option<Duration>,
    /// `timeout tunnel`: inactivity of upgraded/tunnelled connections.
    pub tunnel: Option<Duration>,
    /// `timeout check`: extra read timeout for health checks.
    pub check: Option<Duration>,
    /// `timeout client-fin`: half-closed client side.
    pub client_fin: Option<Duration>,
    /// `timeout server-fin`: half-closed server side.
    pub server_fin: Option<Duration>,
}

/// Traffic log format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// `option tcplog`: connection-level fields.
    Tcp,
    /// `option httplog`: request-level fields.
    Http,
    /// `log-format json`: one JSON object per request/connection.
    Json,
}

/// A frontend (or the frontend half of a `listen`).
#[derive(Debug, Clone, PartialEq)]
pub struct Frontend {
    /// Section name.
    pub name: String,
    /// Line of the section header.
    pub line: usize,
    /// `guid G`.
    pub guid: Option<Guid>,
    /// True when this comes from a `listen` section.
    pub from_listen: bool,
    /// `mode`, possibly inherited from `defaults`.
    pub mode: Mode,
    /// `bind` lines.
    pub binds: Vec<Bind>,
    /// `default_backend NAME` (for a listen: its own name).
    pub default_backend: Option<String>,
    /// `use_backend` rules, in file order; the first match wins.
    pub use_backends: Vec<UseBackend>,
    /// `http-request` rules, in file order.
    pub http_request: Vec<HttpRequestRule>,
    /// Timeouts (the client-side ones matter here).
    pub timeouts: Timeouts,
    /// `maxconn N`: concurrent connection limit.
    pub maxconn: Option<u32>,
    /// `option forwardfor [...]`: add `X-Forwarded-For`.
    pub forwardfor: Option<ForwardFor>,
    /// `option http-reject-get-body`: answer 400 to a GET or HEAD request
    /// with a body instead of forwarding it.
    pub reject_get_body: bool,
    /// `http-max-request-line SIZE`: longest request line (414 above).
    /// `None`: the codec default (8 KiB).
    pub max_request_line: Option<u32>,
    /// `http-max-body-size SIZE`: largest request body (413 above).
    /// `None`: unlimited.
    pub max_body_size: Option<u64>,
    /// Traffic log format; `None` = no traffic log.
    pub log_format: Option<LogFormat>,
    /// `option logasap`: log when the response starts instead of at the end.
    pub logasap: bool,
    /// `option splice-auto` (default on): the userspace TCP relay moves
    /// bytes between plain TCP sockets with splice(2) instead of copying
    /// them; TLS connections are always copied.
    pub splice_auto: bool,
    /// `xdp ...`: serve this frontend from the XDP data path.
    pub xdp: Option<Xdp>,
}

/// One `bind` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    /// Listening address. Port 0 (only for XDP services) means all ports.
    pub addr: SocketAddr,
    /// `interface IF`: bind to / attach XDP on this interface.
    pub interface: Option<String>,
    /// `ssl ...`: TLS termination settings.
    pub tls: Option<BindTls>,
    /// `guid G`: the listener's stats object (HAProxy's per-bind counters).
    pub guid: Option<Guid>,
    /// `defer-accept`: accept connections only once they carry data
    /// (`TCP_DEFER_ACCEPT`).
    pub defer_accept: bool,
    /// Line of the `bind` statement.
    pub line: usize,
}

/// TLS settings of a `bind ... ssl` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindTls {
    /// `crt PATH` (repeatable): certificate+key PEM files, first is the default.
    pub certs: Vec<PathBuf>,
    /// `strict-sni`: refuse handshakes whose SNI matches no certificate.
    pub strict_sni: bool,
    /// `alpn LIST`: comma-separated protocols offered, e.g. `["http/1.1"]`.
    pub alpn: Vec<String>,
    /// `ssl-min-ver V`.
    pub min_version: Option<TlsVersion>,
    /// `ssl-max-ver V`.
    pub max_version: Option<TlsVersion>,
}

/// A TLS protocol version (`TLSv1.0` ... `TLSv1.3`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    /// TLS 1.0
    Tls10,
    /// TLS 1.1
    Tls11,
    /// TLS 1.2
    Tls12,
    /// TLS 1.3
    Tls13,
}

impl TlsVersion {
    /// Parses HAProxy spelling (`TLSv1.2`), case-insensitively.
    pub fn parse(s: &str) -> Option<TlsVersion> {
        match s.to_ascii_lowercase().as_str() {
            "tlsv1.0" => Some(TlsVersion::Tls10),
            "tlsv1.1" => Some(TlsVersion::Tls11),
            "tlsv1.2" => Some(TlsVersion::Tls12),
            "tlsv1.3" => Some(TlsVersion::Tls13),
            _ => None,
        }
    }
}

/// `option forwardfor [except NETWORK] [header NAME] [if-none]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardFor {
    /// `header NAME`: the field to write. Default `X-Forwarded-For`.
    pub header: String,
    /// `except NETWORK`: clients in this network get no header (they are
    /// trusted proxies that already added one).
    pub except: Option<Network>,
    /// `if-none`: add the header only when the request has none.
    pub if_none: bool,
}

/// Default for [`ForwardFor::header`].
pub const DEFAULT_FORWARDFOR_HEADER: &str = "X-Forwarded-For";

impl Default for ForwardFor {
    fn default() -> Self {
        ForwardFor {
            header: DEFAULT_FORWARDFOR_HEADER.to_string(),
            except: None,
            if_none: false,
        }
    }
}

/// `use_backend NAME [if|unless CONDITION]`.
#[derive(Debug, Clone, PartialEq)]
pub struct UseBackend {
    /// Target backend (checked to exist).
    pub backend: String,
    /// When to use it; `None` = always. `unless C` is stored as `Not(C)`.
    pub condition: Option<Condition>,
    /// Line of the rule.
    pub line: usize,
}

/// One `http-request` rule.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpRequestRule {
    /// What to do.
    pub action: HttpRequestAction,
    /// When to do it; `None` = always.
    pub condition: Option<Condition>,
    /// Line of the rule.
    pub line: usize,
}

/// Actions of `http-request`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpRequestAction {
    /// `set-header NAME VALUE`: replace all occurrences of NAME with one VALUE.
    SetHeader {
        /// Header name as written.
        name: String,
        /// New value (literal).
        value: String,
    },
    /// `add-header NAME VALUE`: append a NAME field with VALUE, keeping
    /// the received ones.
    AddHeader {
        /// Header name as written.
        name: String,
        /// Value (literal).
        value: String,
    },
    /// `del-header NAME`: remove all occurrences of NAME.
    DelHeader {
        /// Header name as written.
        name: String,
    },
    /// `deny [deny_status CODE] [content-type T string S]`: answer CODE
    /// (default 403) and stop; the request is not forwarded.
    Deny(LocalReply),
    /// `return [status CODE] [content-type T] [string S]`: answer CODE
    /// (default 200) and stop; the request is not forwarded.
    Return(LocalReply),
    /// `use-service NAME`: a service built into the proxy answers and the
    /// request is not forwarded.
    UseService(Service),
}

/// Services of `http-request use-service`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// `prometheus-exporter`: this process's live statistics (counters,
    /// current sessions, queues, server state) in Prometheus text format.
    PrometheusExporter,
}

impl HttpRequestAction {
    /// The response of a final action (`deny`, `return`), if this is one.
    pub fn reply(&self) -> Option<&LocalReply> {
        match self {
            HttpRequestAction::Deny(r) | HttpRequestAction::Return(r) => Some(r),
            _ => None,
        }
    }
}

/// A response the proxy sends itself (`http-request deny` / `return`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalReply {
    /// Status code (200..=599).
    pub status: u16,
    /// `content-type T string S`; `None`: deny's HAProxy-style HTML error
    /// page, return's empty body.
    pub body: Option<(String, String)>,
}

/// XDP data-path settings of a `mode tcp`/`mode udp` frontend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Xdp {
    /// `strict`: failing to attach XDP is a startup error instead of a
    /// fallback to the userspace proxy.
    pub strict: bool,
    /// `forward nat|dsr`. Default nat.
    pub forward: XdpForward,
    /// `hash 5tuple|no-src-port|dst-port`: flow key for Maglev. Default 5tuple.
    pub hash: XdpHash,
    /// `maglev-table-size N`: prime lookup-table size. Default 65537.
    pub maglev_table_size: u32,
    /// `conntrack-size N`: connection-tracking map entries. Default 65536.
    pub conntrack_size: u32,
}

/// Default for [`Xdp::maglev_table_size`].
pub const DEFAULT_MAGLEV_TABLE_SIZE: u32 = 65537;
/// Default for [`Xdp::conntrack_size`].
pub const DEFAULT_CONNTRACK_SIZE: u32 = 65536;

/// How XDP hands packets to servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum XdpForward {
    /// Rewrite destination (and source) addresses; replies come back through Weir.
    #[default]
    Nat,
    /// Direct server return: only the MAC is rewritten, servers reply directly.
    Dsr,
}

/// Which packet fields select a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum XdpHash {
    /// Source/destination address and port plus protocol.
    #[default]
    FiveTuple,
    /// Like 5tuple without the source port: a client sticks to one server.
    NoSrcPort,
    /// Destination port only.
    DstPort,
}

/// A backend (or the backend half of a `listen`).
#[derive(Debug, Clone, PartialEq)]
pub struct Backend {
    /// Section name.
    pub name: String,
    /// Line of the section header.
    pub line: usize,
    /// `guid G`.
    pub guid: Option<Guid>,
    /// True when this comes from a `listen` section.
    pub from_listen: bool,
    /// `mode`.
    pub mode: Mode,
    /// `balance`. Default roundrobin.
    pub balance: Balance,
    /// `hash-type`. Default map-based.
    pub hash_type: HashType,
    /// `server` lines, with `default-server` options applied.
    pub servers: Vec<Server>,
    /// Timeouts (the server-side ones matter here).
    pub timeouts: Timeouts,
    /// `retries N`: connection attempts after the first fails. Default 3.
    pub retries: u32,
    /// `option redispatch`: retry on another server.
    pub redispatch: bool,
    /// `option allbackups`: once no active server is usable, balance over
    /// every usable backup instead of only the first one.
    pub all_backups: bool,
    /// `option httpchk` (+ `http-check expect`): HTTP health checks; `None` =
    /// plain TCP connect checks for servers with `check`.
    pub http_check: Option<HttpCheck>,
    /// `option forwardfor [...]`.
    pub forwardfor: Option<ForwardFor>,
    /// `http-request` rules applied when this backend is chosen.
    pub http_request: Vec<HttpRequestRule>,
}

/// Default for [`Backend::retries`] (HAProxy's).
pub const DEFAULT_RETRIES: u32 = 3;

/// `balance` algorithms.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Balance {
    /// Weighted round robin, weights adjustable at runtime.
    #[default]
    RoundRobin,
    /// Fewest active connections.
    LeastConn,
    /// Hash of the client address.
    Source,
    /// Hash of the request URI (http only); `whole` (`balance uri whole`)
    /// includes the query string.
    Uri {
        /// Hash the whole URI, query string included.
        whole: bool,
    },
    /// Hash of a request header (http only); holds the header name.
    Hdr(String),
    /// Random choice (weighted).
    Random,
    /// Static weighted round robin.
    StaticRr,
}

/// `hash-type`: how hash-based `balance` maps hashes to servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HashType {
    /// Modulo over the weighted server list: even, but reshuffles on change.
    #[default]
    MapBased,
    /// Consistent hashing: few keys move when servers change.
    Consistent,
}

/// `option httpchk [METHOD] [URI]` with `http-check expect status N`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpCheck {
    /// Request method. Default `OPTIONS` (HAProxy's).
    pub method: String,
    /// Request URI. Default `/`.
    pub uri: String,
    /// `http-check expect status N`; `None` = any 2xx or 3xx is healthy.
    pub expect_status: Option<u16>,
}

/// One `server` line with `default-server` options merged in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    /// Server name, unique within its backend.
    pub name: String,
    /// Address. Port 0 (written as a bare address in a tcp/udp backend)
    /// means "the destination port the client used".
    pub addr: SocketAddr,
    /// Line of the `server` statement.
    pub line: usize,
    /// `guid G`.
    pub guid: Option<Guid>,
    /// `weight N` (0..=256). Default 1; 0 = receives no new traffic.
    pub weight: u32,
    /// `check`: health-check this server.
    pub check: bool,
    /// `inter DURATION`: interval between checks while UP. Default 2s.
    pub inter: Duration,
    /// `fastinter DURATION`: interval while changing state (UP with failed
    /// checks, or DOWN with passed ones). `None`: `inter`.
    pub fastinter: Option<Duration>,
    /// `downinter DURATION`: interval while fully DOWN. `None`: `inter`.
    pub downinter: Option<Duration>,
    /// `rise N`: consecutive successes to mark up. Default 2.
    pub rise: u32,
    /// `fall N`: consecutive failures to mark down. Default 3.
    pub fall: u32,
    /// `observe layer4|layer7`: passive health from live traffic (needs
    /// `check`); `None` (`observe none`, the default): off.
    pub observe: Option<Observe>,
    /// `error-limit N`: consecutive observed errors that run `on_error`.
    /// Default 10.
    pub error_limit: u32,
    /// `on-error fastinter|fail-check|sudden-death|mark-down`. Default
    /// fail-check.
    pub on_error: OnError,
    /// `on-marked-down shutdown-sessions`: when health checks mark the
    /// server DOWN, the requests in flight on it are cut off (L7 proxy).
    pub shutdown_sessions_on_down: bool,
    /// `maxconn N`: concurrent connection limit.
    pub maxconn: Option<u32>,
    /// `maxqueue N`: requests waiting for this server at most (its own
    /// queue, see docs/l7.md); more get a 503. `None` (or 0 written) =
    /// unlimited.
    pub maxqueue: Option<u32>,
    /// `backup`: used only when no non-backup server is up.
    pub backup: bool,
    /// `ssl`: talk TLS to the server.
    pub ssl: bool,
    /// `verify none|required`. Default required.
    pub verify: Verify,
    /// `ca-file F`: CA bundle for verification (`@system-ca` = system store).
    pub ca_file: Option<PathBuf>,
    /// `sni STR`: SNI sent to the server.
    pub sni: Option<String>,
}

/// Defaults for [`Server`] options not given anywhere.
pub mod server_defaults {
    use std::time::Duration;
    /// Default `weight`.
    pub const WEIGHT: u32 = 1;
    /// Default `inter`.
    pub const INTER: Duration = Duration::from_secs(2);
    /// Default `rise`.
    pub const RISE: u32 = 2;
    /// Default `fall`.
    pub const FALL: u32 = 3;
    /// Default `error-limit`.
    pub const ERROR_LIMIT: u32 = crate::health::passive::DEFAULT_ERROR_LIMIT;
}

/// Server certificate verification (`verify`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Verify {
    /// Do not verify the server certificate.
    None,
    /// Verify against `ca-file` (required).
    #[default]
    Required,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guid_accepts_the_documented_alphabet() {
        assert!(Guid::parse("web-1.a:b_C9").is_ok());
        assert!(Guid::parse(&"a".repeat(127)).is_ok());
    }

    #[test]
    fn guid_rejects_empty_long_and_odd_characters() {
        assert!(Guid::parse("").is_err());
        assert!(Guid::parse(&"a".repeat(128)).is_err());
        assert!(Guid::parse("a/b").unwrap_err().contains("'/'"));
        assert!(Guid::parse("é").is_err());
    }

    #[test]
    fn tls_versions_parse_case_insensitively_and_order() {
        assert_eq!(TlsVersion::parse("tlsv1.2"), Some(TlsVersion::Tls12));
        assert_eq!(TlsVersion::parse("TLSv1.3"), Some(TlsVersion::Tls13));
        assert_eq!(TlsVersion::parse("SSLv3"), None);
        assert!(TlsVersion::Tls12 < TlsVersion::Tls13);
    }
}
