//! `http-request use-service prometheus-exporter`: the live statistics of
//! this process in Prometheus text format, as HAProxy's exporter serves them.
//!
//! `weir stats --prometheus` renders the shm-stats-file, which holds only
//! cumulative counters (shared across processes and reloads). This page adds
//! what lives in process memory only: current sessions, queue lengths,
//! in-flight requests per server, server state and idle pooled connections.
//! Entities without a GUID appear here too. Labels are HAProxy's exporter
//! ones: `proxy` (frontend or backend name) and `server`.
//!
//! A scrape walks every entity once and allocates its page; nothing here is
//! on the request path of proxied traffic.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock, Weak};

use crate::stats::format::label as escape;
use crate::stats::{Counter, EntityCounters, ObjectType, Rate};

use super::upstream::BackendCtx;
use super::FrontendCtx;

/// Content type of the exposition format, version 0.0.4.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The entities a scrape reports: every `mode http` frontend and every
/// backend they use, in config order. Filled once the engine has built
/// them; weak references, because the frontends themselves hold this.
#[derive(Debug, Default)]
pub struct Exporter {
    entities: OnceLock<Entities>,
    l4: OnceLock<L4Entities>,
}

/// The XDP services and their reals, whose counters the L4 sync task
/// mirrors from the BPF maps (every second) into their handles.
#[derive(Debug, Default)]
pub struct L4Entities {
    /// (frontend name, counters), in config order.
    pub services: Vec<(String, EntityCounters)>,
    /// (frontend name, real name, counters), in config order.
    pub reals: Vec<(String, String, EntityCounters)>,
}

/// Frontends and backends, in config order.
#[derive(Debug)]
struct Entities {
    frontends: Vec<Weak<FrontendCtx>>,
    backends: Vec<Weak<BackendCtx>>,
}

impl Exporter {
    /// Records the entities to report (the engine calls this once).
    pub fn publish(&self, frontends: &[Arc<FrontendCtx>], backends: &[Arc<BackendCtx>]) {
        let _ = self.entities.set(Entities {
            frontends: frontends.iter().map(Arc::downgrade).collect(),
            backends: backends.iter().map(Arc::downgrade).collect(),
        });
    }

    /// Adds the XDP services and reals to the page (the runtime calls this
    /// once, when XDP runs).
    pub fn publish_l4(&self, l4: L4Entities) {
        let _ = self.l4.set(l4);
    }

    /// The page: every family with its HELP and TYPE lines.
    pub fn render(&self) -> String {
        let (frontends, backends) = match self.entities.get() {
            Some(e) => (
                e.frontends
                    .iter()
                    .filter_map(Weak::upgrade)
                    .collect::<Vec<_>>(),
                e.backends
                    .iter()
                    .filter_map(Weak::upgrade)
                    .collect::<Vec<_>>(),
            ),
            None => (Vec::new(), Vec::new()),
        };
        let mut page = Page::default();

        let fe_rows: Vec<Row<'_>> = frontends
            .iter()
            .map(|f| Row::new(&f.name, None, &f.counters))
            .collect();
        page.counters(ObjectType::Frontend, &fe_rows);
        page.gauge(
            "weir_frontend_current_sessions",
            "Client connections open now.",
            frontends.iter().map(|f| {
                (
                    Row::labels(&f.name, None),
                    f.current_sessions.load(Ordering::Relaxed),
                )
            }),
        );
        page.gauge(
            "weir_frontend_limit_sessions",
            "Most client connections served at once per listener (maxconn).",
            frontends
                .iter()
                .map(|f| (Row::labels(&f.name, None), f.maxconn as u64)),
        );

        let be_rows: Vec<Row<'_>> = backends
            .iter()
            .map(|b| Row::new(&b.name, None, &b.counters))
            .collect();
        page.counters(ObjectType::Backend, &be_rows);
        page.gauge(
            "weir_backend_current_queue",
            "Requests waiting in the backend queue now (servers' own queues not included).",
            backends
                .iter()
                .map(|b| (Row::labels(&b.name, None), b.queued.load(Ordering::Relaxed))),
        );
        page.gauge(
            "weir_backend_current_sessions",
            "Requests in flight on the backend's servers now.",
            backends.iter().map(|b| {
                let sum = (0..b.servers.len()).map(|i| u64::from(b.active(i))).sum();
                (Row::labels(&b.name, None), sum)
            }),
        );
        page.gauge(
            "weir_backend_up_servers",
            "Servers of the backend that are UP now (backups included).",
            backends.iter().map(|b| {
                let up = (0..b.servers.len()).filter(|&i| b.is_up(i)).count() as u64;
                (Row::labels(&b.name, None), up)
            }),
        );

        let srv_rows: Vec<Row<'_>> = backends
            .iter()
            .flat_map(|b| {
                b.servers
                    .iter()
                    .map(|s| Row::new(&b.name, Some(&s.name), &s.counters))
            })
            .collect();
        page.counters(ObjectType::Server, &srv_rows);
        let servers = || {
            backends
                .iter()
                .flat_map(|b| (0..b.servers.len()).map(move |i| (b, i)))
        };
        page.gauge(
            "weir_server_current_sessions",
            "Requests in flight on the server now (what maxconn and leastconn count).",
            servers().map(|(b, i)| {
                let labels = Row::labels(&b.name, Some(&b.servers[i].name));
                (labels, u64::from(b.active(i)))
            }),
        );
        page.gauge(
            "weir_server_current_queue",
            "Requests waiting in the server's own queue now (a hash algorithm picked it while full).",
            servers().map(|(b, i)| {
                let s = &b.servers[i];
                let labels = Row::labels(&b.name, Some(&s.name));
                (labels, s.queued.load(Ordering::Relaxed))
            }),
        );
        page.gauge(
            "weir_server_limit_sessions",
            "The server's maxconn (servers without one are not listed).",
            servers().filter_map(|(b, i)| {
                let s = &b.servers[i];
                s.maxconn
                    .map(|m| (Row::labels(&b.name, Some(&s.name)), u64::from(m)))
            }),
        );
        page.gauge(
            "weir_server_status",
            "1 when the server is UP (unchecked servers always are), 0 when DOWN.",
            servers().map(|(b, i)| {
                let labels = Row::labels(&b.name, Some(&b.servers[i].name));
                (labels, u64::from(b.is_up(i)))
            }),
        );
        page.gauge(
            "weir_server_idle_connections",
            "Idle keep-alive connections pooled to the server now.",
            servers().map(|(b, i)| {
                let s = &b.servers[i];
                (
                    Row::labels(&b.name, Some(&s.name)),
                    s.pool.idle_count() as u64,
                )
            }),
        );
        if let Some(l4) = self.l4.get() {
            let svc_rows: Vec<Row<'_>> = l4
                .services
                .iter()
                .map(|(fe, c)| Row::new(fe, None, c))
                .collect();
            page.counters(ObjectType::L4Service, &svc_rows);
            let real_rows: Vec<Row<'_>> = l4
                .reals
                .iter()
                .map(|(fe, real, c)| Row::new(fe, Some(real), c))
                .collect();
            page.counters(ObjectType::L4Real, &real_rows);
        }
        page.out
    }
}

/// One entity's labels and counters.
struct Row<'a> {
    labels: String,
    counters: &'a EntityCounters,
}

impl<'a> Row<'a> {
    fn new(proxy: &str, server: Option<&str>, counters: &'a EntityCounters) -> Self {
        Row {
            labels: Row::labels(proxy, server),
            counters,
        }
    }

    /// `{proxy="NAME"}` or `{proxy="NAME",server="NAME"}`, escaped.
    fn labels(proxy: &str, server: Option<&str>) -> String {
        let mut l = format!("{{proxy=\"{}\"", escape(proxy));
        if let Some(s) = server {
            let _ = write!(l, ",server=\"{}\"", escape(s));
        }
        l.push('}');
        l
    }
}

/// The page being written.
#[derive(Default)]
struct Page {
    out: String,
}

impl Page {
    /// One `weir_<type>_<counter>_total` family per counter that applies to
    /// `ty` (the names `weir stats --prometheus` uses), and the rates.
    fn counters(&mut self, ty: ObjectType, rows: &[Row<'_>]) {
        if rows.is_empty() {
            return;
        }
        let t = ty.name();
        for c in Counter::ALL.into_iter().filter(|c| c.applies_to(ty)) {
            let name = format!("weir_{t}_{}_total", c.name());
            self.family(&name, c.help(), "counter");
            for r in rows {
                let _ = writeln!(self.out, "{name}{} {}", r.labels, r.counters.get(c));
            }
        }
        // Rates are counted by the L7 request path only.
        let rates = if ty.is_l4() { &[][..] } else { &Rate::ALL[..] };
        for &rate in rates {
            let name = format!("weir_{t}_current_{}", rate.name());
            self.family(&name, "Events per second over the last second.", "gauge");
            for r in rows {
                let _ = writeln!(self.out, "{name}{} {}", r.labels, r.counters.rate(rate));
            }
        }
    }

    /// A gauge family; skipped when it has no sample.
    fn gauge(&mut self, name: &str, help: &str, samples: impl Iterator<Item = (String, u64)>) {
        let mut samples = samples.peekable();
        if samples.peek().is_none() {
            return;
        }
        self.family(name, help, "gauge");
        for (labels, value) in samples {
            let _ = writeln!(self.out, "{name}{labels} {value}");
        }
    }

    fn family(&mut self, name: &str, help: &str, kind: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{StatsStore, StoreOptions};

    #[test]
    fn l4_services_and_reals_are_listed_with_their_counters_and_no_rates() {
        let (store, _) = StatsStore::open(None, 0, StoreOptions::default()).unwrap();
        let svc = store.register(None, ObjectType::L4Service);
        let real = store.register(None, ObjectType::L4Real);
        svc.add(Counter::PacketsIn, 7);
        real.add(Counter::BytesOut, 1500);
        let e = Exporter::default();
        e.publish_l4(L4Entities {
            services: vec![("dns".into(), svc)],
            reals: vec![("dns".into(), "r\"1".into(), real)],
        });
        let page = e.render();
        assert!(
            page.contains("weir_l4_service_packets_in_total{proxy=\"dns\"} 7\n"),
            "{page}"
        );
        assert!(
            page.contains("weir_l4_real_bytes_out_total{proxy=\"dns\",server=\"r\\\"1\"} 1500\n"),
            "{page}"
        );
        // L7-only families are not listed for L4 entities.
        assert!(!page.contains("weir_l4_service_requests_total"), "{page}");
        assert!(!page.contains("weir_l4_service_current_"), "{page}");
    }
}
