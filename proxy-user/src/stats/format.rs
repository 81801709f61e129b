//! Renderings of a [`Snapshot`]: an aligned table (like HAProxy's
//! `show stat`), JSON, and the Prometheus text exposition format.
//!
//! Pure functions from a snapshot to a string; no I/O.

use std::fmt::Write as _;

use super::layout::{Counter, ObjectType, Rate};
use super::reader::{ObjectSnapshot, Snapshot};

fn age(s: &Snapshot, ms: u64) -> String {
    match s.age_ms(ms) {
        None => "-".into(),
        Some(a) if a < 10_000 => format!("{}ms", a),
        Some(a) if a < 600_000 => format!("{}s", a / 1000),
        Some(a) if a < 36_000_000 => format!("{}m", a / 60_000),
        Some(a) => format!("{}h", a / 3_600_000),
    }
}

fn errors(o: &ObjectSnapshot) -> u64 {
    [
        Counter::RequestErrors,
        Counter::ConnectErrors,
        Counter::ResponseErrors,
    ]
    .iter()
    .map(|c| o.get(*c))
    .fold(0u64, u64::saturating_add)
}

/// One row per object: guid, type, main counters, rates, ages.
pub fn format_table(s: &Snapshot) -> String {
    let head = [
        "guid",
        "type",
        "conn",
        "sess",
        "req",
        "2xx",
        "4xx",
        "5xx",
        "bytes_in",
        "bytes_out",
        "pkts_in",
        "pkts_out",
        "errors",
        "denied",
        "sess/s",
        "conn/s",
        "req/s",
        "lastchg",
        "lastsess",
    ];
    let mut rows: Vec<Vec<String>> = vec![head.iter().map(|h| h.to_string()).collect()];
    for o in &s.objects {
        let c = |c: Counter| o.get(c).to_string();
        rows.push(vec![
            o.guid.clone(),
            o.ty.name().to_string(),
            c(Counter::Connections),
            c(Counter::Sessions),
            c(Counter::Requests),
            c(Counter::Responses2xx),
            c(Counter::Responses4xx),
            c(Counter::Responses5xx),
            c(Counter::BytesIn),
            c(Counter::BytesOut),
            c(Counter::PacketsIn),
            c(Counter::PacketsOut),
            errors(o).to_string(),
            c(Counter::Denied),
            o.rates[Rate::Sessions as usize].to_string(),
            o.rates[Rate::Connections as usize].to_string(),
            o.rates[Rate::Requests as usize].to_string(),
            age(s, o.last_change_ms),
            age(s, o.last_session_ms),
        ]);
    }
    let widths: Vec<usize> = (0..head.len())
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    let alive = s.slots.iter().filter(|p| p.alive).count();
    let _ =
        writeln!(
        out,
        "# weir shm-stats-file v{}.{}: {} object(s) of {}, {} process(es) attached, clock {} ms{}",
        s.version.0,
        s.version.1,
        s.objects.len(),
        s.capacity,
        alive,
        s.clock_ms,
        if s.clean_stop { ", stopped cleanly" } else { "" }
    );
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, v)| {
                if i < 2 {
                    format!("{:<w$}", v, w = widths[i])
                } else {
                    format!("{:>w$}", v, w = widths[i])
                }
            })
            .collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
    out
}

fn json_str(out: &mut String, v: &str) {
    out.push('"');
    for ch in v.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn json_opt(v: Option<u64>) -> String {
    v.map_or_else(|| "null".into(), |v| v.to_string())
}

/// The whole snapshot as one JSON document.
pub fn format_json(s: &Snapshot) -> String {
    let mut o = String::new();
    let _ = write!(
        o,
        "{{\"version\":\"{}.{}\",\"capacity\":{},\"objects_used\":{},\"clock_ns\":{},\"clock_ms\":{},\"clean_stop\":{},\"processes\":[",
        s.version.0, s.version.1, s.capacity, s.objects_used, s.clock_ns, s.clock_ms, s.clean_stop
    );
    for (i, p) in s.slots.iter().enumerate() {
        if i > 0 {
            o.push(',');
        }
        let _ = write!(
            o,
            "{{\"slot\":{},\"pid\":{},\"generation\":{},\"heartbeat_age_ms\":{},\"alive\":{}}}",
            p.index,
            p.pid,
            p.generation,
            s.now_ns.saturating_sub(p.heartbeat_ns) / 1_000_000,
            p.alive
        );
    }
    o.push_str("],\"objects\":[");
    for (i, ob) in s.objects.iter().enumerate() {
        if i > 0 {
            o.push(',');
        }
        o.push_str("{\"guid\":");
        json_str(&mut o, &ob.guid);
        let _ = write!(
            o,
            ",\"type\":\"{}\",\"index\":{},\"users\":{},\"generation\":{},\"counters\":{{",
            ob.ty.name(),
            ob.index,
            ob.users,
            ob.generation
        );
        for (k, c) in Counter::ALL.iter().enumerate() {
            if k > 0 {
                o.push(',');
            }
            let _ = write!(o, "\"{}\":{}", c.name(), ob.get(*c));
        }
        o.push_str("},\"rates\":{");
        for (k, r) in Rate::ALL.iter().enumerate() {
            if k > 0 {
                o.push(',');
            }
            let _ = write!(o, "\"{}\":{}", r.name(), ob.rates[*r as usize]);
        }
        let _ = write!(
            o,
            "}},\"last_change_age_ms\":{},\"last_session_age_ms\":{}}}",
            json_opt(s.age_ms(ob.last_change_ms)),
            json_opt(s.age_ms(ob.last_session_ms))
        );
    }
    o.push_str("]}\n");
    o
}

/// A Prometheus label value with backslash, double quote and newline escaped.
pub(crate) fn label(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for ch in v.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// Prometheus text exposition format (version 0.0.4): one family per
/// (type, counter) named `weir_<type>_<counter>_total`, rates as gauges
/// `weir_<type>_current_<rate>`, ages as `weir_<type>_last_*_seconds`, all
/// labelled `{guid="..."}`.
pub fn format_prometheus(s: &Snapshot) -> String {
    let mut out = String::new();
    for ty in ObjectType::ALL {
        let objs: Vec<&ObjectSnapshot> = s.objects.iter().filter(|o| o.ty == ty).collect();
        if objs.is_empty() {
            continue;
        }
        let t = ty.name();
        for c in Counter::ALL {
            if !c.applies_to(ty) {
                continue;
            }
            let name = format!("weir_{t}_{}_total", c.name());
            let _ = writeln!(out, "# HELP {name} {}", c.help());
            let _ = writeln!(out, "# TYPE {name} counter");
            for o in &objs {
                let _ = writeln!(out, "{name}{{guid=\"{}\"}} {}", label(&o.guid), o.get(c));
            }
        }
        if !ty.is_l4() {
            for r in Rate::ALL {
                let name = format!("weir_{t}_current_{}", r.name());
                let _ = writeln!(out, "# HELP {name} Events per second over the last second.");
                let _ = writeln!(out, "# TYPE {name} gauge");
                for o in &objs {
                    let _ = writeln!(
                        out,
                        "{name}{{guid=\"{}\"}} {}",
                        label(&o.guid),
                        o.rates[r as usize]
                    );
                }
            }
        }
        for (stamp, help, get) in [
            (
                "last_change_seconds",
                "Seconds since the last state change.",
                (|o: &ObjectSnapshot| o.last_change_ms) as fn(&ObjectSnapshot) -> u64,
            ),
            (
                "last_session_seconds",
                "Seconds since the last session.",
                |o: &ObjectSnapshot| o.last_session_ms,
            ),
        ] {
            let with: Vec<(&&ObjectSnapshot, u64)> = objs
                .iter()
                .filter_map(|o| s.age_ms(get(o)).map(|a| (o, a)))
                .collect();
            if with.is_empty() {
                continue;
            }
            let name = format!("weir_{t}_{stamp}");
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} gauge");
            for (o, a) in with {
                let _ = writeln!(
                    out,
                    "{name}{{guid=\"{}\"}} {}.{:03}",
                    label(&o.guid),
                    a / 1000,
                    a % 1000
                );
            }
        }
    }
    out
}
