//! The access log: one line per request, through the `log` crate at
//! `info` under target `access`.
//!
//! `option httplog` gives HAProxy's HTTP format:
//!
//! ```text
//! 127.0.0.1:40312 [21/Nov/2026:07:03:49.123] web app/s1 0/0/1/2/3 200 130 - - ---- 4/4/1/1/0 0/0 "GET /x HTTP/1.1"
//! client          accept date                fe  be/srv Tq/Tw/Tc/Tr/Ta status bytes .. term fe/fe/be/srv/retries srv_queue/be_queue request
//! ```
//!
//! Tq: receiving the request head; Tw: waiting in the queue; Tc: connecting
//! (0 for a pooled connection); Tr: the server's time to the response head;
//! Ta: the whole request. A step not reached is `-1`, as in HAProxy.
//! `log-format json` writes the same fields as one JSON object.
//!
//! With `option logasap` the line is written as soon as the response head
//! is sent: Ta and the byte count are the values at that time, prefixed
//! with `+` (JSON: the numbers as they are, and `"logasap":true`).

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::config::LogFormat;

/// Everything one access-log line says.
#[derive(Debug, Clone)]
pub struct AccessRecord<'a> {
    /// Client address.
    pub client: SocketAddr,
    /// When the request started.
    pub started: SystemTime,
    /// Frontend name.
    pub frontend: &'a str,
    /// Backend name, `<NOSRV>`-style placeholder when none.
    pub backend: &'a str,
    /// Server name.
    pub server: &'a str,
    /// Tq, Tw, Tc, Tr (None: not reached).
    pub tq: Option<Duration>,
    /// Queue wait.
    pub tw: Option<Duration>,
    /// Connect time.
    pub tc: Option<Duration>,
    /// Server response time.
    pub tr: Option<Duration>,
    /// Total time.
    pub ta: Duration,
    /// Status sent to the client (0: none).
    pub status: u16,
    /// Bytes sent to the client.
    pub bytes_out: u64,
    /// Logged as the response head went out (`option logasap`): `ta` and
    /// `bytes_out` are the values so far, shown with a `+` as in HAProxy.
    pub logasap: bool,
    /// Termination state (`--` when normal).
    pub termination: [u8; 2],
    /// Frontend sessions now.
    pub fe_conn: u64,
    /// Backend requests in flight.
    pub be_conn: u64,
    /// Server requests in flight.
    pub srv_conn: u64,
    /// Retries done for this request.
    pub retries: u32,
    /// Requests in the server's own queue now (hash algorithms queue there).
    pub srv_queue: u64,
    /// Requests queued on the backend now.
    pub be_queue: u64,
    /// Method, target, version of the request.
    pub method: &'a str,
    /// Request-target.
    pub target: &'a str,
    /// `HTTP/1.1` or `HTTP/1.0`.
    pub version: &'a str,
}

fn ms(d: Option<Duration>) -> i64 {
    d.map_or(-1, |d| d.as_millis() as i64)
}

/// Writes `r` as one line in `format`.
pub fn format_record(r: &AccessRecord<'_>, format: LogFormat, out: &mut String) {
    let term = std::str::from_utf8(&r.termination).unwrap_or("--");
    match format {
        LogFormat::Json => {
            let _ = write!(
                out,
                "{{\"client\":\"{}\",\"date\":\"{}\",\"frontend\":{},\"backend\":{},\"server\":{},\
                 \"tq\":{},\"tw\":{},\"tc\":{},\"tr\":{},\"ta\":{},\"status\":{},\"bytes\":{},\
                 \"termination\":\"{}\",\"fe_conn\":{},\"be_conn\":{},\"srv_conn\":{},\"retries\":{},\
                 \"srv_queue\":{},\"be_queue\":{},\"method\":{},\"uri\":{},\"version\":\"{}\"{}}}",
                r.client,
                HttpDate(r.started),
                Json(r.frontend),
                Json(r.backend),
                Json(r.server),
                ms(r.tq),
                ms(r.tw),
                ms(r.tc),
                ms(r.tr),
                r.ta.as_millis(),
                r.status,
                r.bytes_out,
                term,
                r.fe_conn,
                r.be_conn,
                r.srv_conn,
                r.retries,
                r.srv_queue,
                r.be_queue,
                Json(r.method),
                Json(r.target),
                r.version,
                // JSON numbers cannot carry HAProxy's '+': a flag instead.
                if r.logasap { ",\"logasap\":true" } else { "" }
            );
        }
        LogFormat::Http | LogFormat::Tcp => {
            let plus = if r.logasap { "+" } else { "" };
            let _ = write!(
                out,
                "{} [{}] {} {}/{} {}/{}/{}/{}/{}{} {} {}{} - - {}-- {}/{}/{}/{}/{} {}/{} \"{} {} {}\"",
                r.client,
                HttpDate(r.started),
                r.frontend,
                r.backend,
                r.server,
                ms(r.tq),
                ms(r.tw),
                ms(r.tc),
                ms(r.tr),
                plus,
                r.ta.as_millis(),
                r.status,
                plus,
                r.bytes_out,
                term,
                r.fe_conn,
                r.fe_conn,
                r.be_conn,
                r.srv_conn,
                r.retries,
                r.srv_queue,
                r.be_queue,
                r.method,
                r.target.escape_default(),
                r.version
            );
        }
    }
}

/// Logs `r` at info under target `access`, if that target is enabled.
pub fn emit(r: &AccessRecord<'_>, format: LogFormat) {
    if log::log_enabled!(target: "access", log::Level::Info) {
        let mut line = String::with_capacity(200);
        format_record(r, format, &mut line);
        log::info!(target: "access", "{line}");
    }
}

/// A JSON string literal.
struct Json<'a>(&'a str);

impl std::fmt::Display for Json<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_char('"')?;
        for c in self.0.chars() {
            match c {
                '"' => f.write_str("\\\"")?,
                '\\' => f.write_str("\\\\")?,
                c if (c as u32) < 0x20 => write!(f, "\\u{:04x}", c as u32)?,
                c => f.write_char(c)?,
            }
        }
        f.write_char('"')
    }
}

/// HAProxy's accept date, `21/Nov/2026:07:03:49.123` (UTC).
struct HttpDate(SystemTime);

impl std::fmt::Display for HttpDate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let d = self.0.duration_since(UNIX_EPOCH).unwrap_or_default();
        let secs = d.as_secs();
        let (y, m, day) = civil_from_days((secs / 86_400) as i64);
        let rem = secs % 86_400;
        const MONTHS: [&str; 12] = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        write!(
            f,
            "{day:02}/{}/{y}:{:02}:{:02}:{:02}.{:03}",
            MONTHS[(m - 1) as usize],
            rem / 3600,
            rem / 60 % 60,
            rem % 60,
            d.subsec_millis()
        )
    }
}

/// Days since 1970-01-01 to (year, month, day) (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> AccessRecord<'static> {
        AccessRecord {
            client: "127.0.0.1:40312".parse().unwrap(),
            started: UNIX_EPOCH + Duration::from_millis(1_795_244_629_123),
            frontend: "web",
            backend: "app",
            server: "s1",
            tq: Some(Duration::from_millis(1)),
            tw: Some(Duration::ZERO),
            tc: None,
            tr: Some(Duration::from_millis(2)),
            ta: Duration::from_millis(3),
            status: 200,
            bytes_out: 130,
            logasap: false,
            termination: *b"--",
            fe_conn: 4,
            be_conn: 1,
            srv_conn: 1,
            retries: 0,
            srv_queue: 0,
            be_queue: 0,
            method: "GET",
            target: "/x",
            version: "HTTP/1.1",
        }
    }

    #[test]
    fn httplog_line_has_haproxy_fields() {
        let mut s = String::new();
        format_record(&record(), LogFormat::Http, &mut s);
        assert_eq!(
            s,
            "127.0.0.1:40312 [21/Nov/2026:07:03:49.123] web app/s1 1/0/-1/2/3 200 130 - - ---- 4/4/1/1/0 0/0 \"GET /x HTTP/1.1\""
        );
    }

    #[test]
    fn logasap_line_marks_total_time_and_bytes_as_partial() {
        let mut r = record();
        r.logasap = true;
        let mut s = String::new();
        format_record(&r, LogFormat::Http, &mut s);
        assert!(s.contains(" 1/0/-1/2/+3 200 +130 - - ---- "), "{s}");
        s.clear();
        format_record(&r, LogFormat::Json, &mut s);
        assert!(
            s.contains("\"ta\":3,") && s.ends_with(",\"logasap\":true}"),
            "{s}"
        );
    }

    #[test]
    fn json_line_is_an_object_with_escaped_strings() {
        let mut r = record();
        r.target = "/a\"b";
        let mut s = String::new();
        format_record(&r, LogFormat::Json, &mut s);
        assert!(s.starts_with('{') && s.ends_with('}'), "{s}");
        assert!(s.contains("\"uri\":\"/a\\\"b\""), "{s}");
        assert!(s.contains("\"tc\":-1"), "{s}");
    }
}
