//! The reader side: the layout pinned against the doc, `weir stats` output
//! formats and errors, and a fuzz of the parser over arbitrary and mutated
//! bytes.

mod stats_support;

use std::mem::offset_of;
use std::path::PathBuf;

use proxy_user::stats::cli::run_stats_to;
use proxy_user::stats::layout::{
    self, object_offset, Header, Object, Slot, HEADER_SIZE, OBJECT_SIZE,
};
use proxy_user::stats::reader::parse_snapshot;
use proxy_user::stats::{read_snapshot, Counter, ObjectType, StatsArgs, StatsStore, StoreOptions};
use stats_support::TempFile;

fn doc_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/shm-stats-file.md")
}

#[test]
fn layout_doc_table_matches_the_structs() {
    let doc = std::fs::read_to_string(doc_path()).expect("docs/shm-stats-file.md");
    let table = layout::render_offsets_table();
    assert!(
        doc.contains(&table),
        "docs/shm-stats-file.md must contain this table verbatim:\n{table}"
    );
}

#[test]
fn layout_offsets_are_pinned() {
    // Golden values: changing any of them is a layout change that needs a
    // version bump (and a new doc table).
    let golden: &[(&str, usize, usize)] = &[
        ("header.magic", offset_of!(Header, magic), 0),
        ("header.version_major", offset_of!(Header, version_major), 8),
        (
            "header.version_minor",
            offset_of!(Header, version_minor),
            10,
        ),
        ("header.header_size", offset_of!(Header, header_size), 12),
        ("header.layout_hash", offset_of!(Header, layout_hash), 16),
        ("header.object_size", offset_of!(Header, object_size), 24),
        ("header.slot_count", offset_of!(Header, slot_count), 28),
        ("header.capacity", offset_of!(Header, capacity), 32),
        ("header.objects_used", offset_of!(Header, objects_used), 40),
        ("header.clock_ns", offset_of!(Header, clock_ns), 48),
        ("header.clock_ms", offset_of!(Header, clock_ms), 56),
        ("header.flags", offset_of!(Header, flags), 64),
        ("header.last_stop_ms", offset_of!(Header, last_stop_ms), 72),
        ("header.clock_boot", offset_of!(Header, clock_boot), 80),
        ("header.clock_offset", offset_of!(Header, clock_offset), 88),
        ("header.slots", offset_of!(Header, slots), 128),
        ("slot.owner", offset_of!(Slot, owner), 0),
        ("slot.heartbeat_ns", offset_of!(Slot, heartbeat_ns), 8),
        ("object.state", offset_of!(Object, state), 128),
        ("object.obj_type", offset_of!(Object, obj_type), 132),
        ("object.users", offset_of!(Object, users), 136),
        ("object.generation", offset_of!(Object, generation), 144),
        ("object.counters", offset_of!(Object, counters), 160),
        ("object.mirror_base", offset_of!(Object, mirror_base), 352),
        ("object.rates", offset_of!(Object, rates), 416),
        (
            "object.last_change_ms",
            offset_of!(Object, last_change_ms),
            464,
        ),
        (
            "object.last_session_ms",
            offset_of!(Object, last_session_ms),
            472,
        ),
    ];
    for (name, got, want) in golden {
        assert_eq!(got, want, "{name}");
    }
    assert_eq!((HEADER_SIZE, OBJECT_SIZE), (4096, 512));
    assert_eq!(Counter::Requests as usize, 2);
    assert_eq!(Counter::DownTransitions as usize, 22);
}

#[test]
fn counters_land_at_the_documented_file_offsets() {
    let f = TempFile::new("golden-bytes");
    let (s, _) = StatsStore::open(Some(f.path()), 100, StoreOptions::default()).unwrap();
    let a = s.register(Some("first"), ObjectType::Backend);
    let b = s.register(Some("second"), ObjectType::L4Real);
    a.add(Counter::Requests, 0x0102_0304);
    b.add(Counter::PacketsOut, 77);
    b.mirror(Counter::PacketsOut, 77).unwrap();
    let bytes = std::fs::read(f.path()).unwrap();
    let u64_at = |off: usize| u64::from_ne_bytes(bytes[off..off + 8].try_into().unwrap());
    let u32_at = |off: usize| u32::from_ne_bytes(bytes[off..off + 4].try_into().unwrap());
    assert_eq!(&bytes[0..8], b"WEIRSTAT");
    assert_eq!(u64_at(16), layout::layout_hash());
    assert_eq!(u64_at(40), 2, "objects_used");
    let o1 = object_offset(1) as usize;
    assert_eq!(&bytes[o1..o1 + 7], b"second\0");
    assert_eq!(u32_at(o1 + 128), layout::STATE_LIVE);
    assert_eq!(u32_at(o1 + 132), ObjectType::L4Real as u32);
    assert_eq!(u64_at(object_offset(0) as usize + 160 + 2 * 8), 0x0102_0304);
    assert_eq!(u64_at(o1 + 160 + 12 * 8), 77 + 77);
    let slot = Counter::PacketsOut.mirror_slot().unwrap();
    assert_eq!(u64_at(o1 + 352 + slot * 8), 77);
}

fn sample_file(f: &TempFile) -> StatsStore {
    let (s, _) = StatsStore::open(Some(f.path()), 100, StoreOptions::default()).unwrap();
    let fe = s.register(Some("fe-web"), ObjectType::Frontend);
    let srv = s.register(Some("be-app:srv1"), ObjectType::Server);
    let vip = s.register(Some("vip-80"), ObjectType::L4Service);
    for _ in 0..5 {
        fe.request();
        fe.session_started();
    }
    fe.response(200);
    fe.response(503);
    fe.add(Counter::BytesIn, 1234);
    srv.inc(Counter::ConnectErrors);
    srv.touch(proxy_user::stats::Stamp::LastChange);
    vip.mirror(Counter::PacketsIn, 999).unwrap();
    s.heartbeat();
    s
}

fn run(args: StatsArgs, f: &TempFile) -> anyhow::Result<String> {
    let mut out = Vec::new();
    run_stats_to(&args, f.path(), &mut out)?;
    Ok(String::from_utf8(out).unwrap())
}

#[test]
fn stats_table_has_one_row_per_object() {
    let f = TempFile::new("table");
    let _s = sample_file(&f);
    let out = run(StatsArgs::default(), &f).unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("# weir shm-stats-file v1.0: 3 object(s)"));
    assert!(lines[1].starts_with("guid"));
    assert_eq!(lines.len(), 5);
    let fe: Vec<&str> = lines[2].split_whitespace().collect();
    assert_eq!(&fe[..6], &["fe-web", "frontend", "0", "5", "5", "1"]);
    assert_eq!(fe[14], "5", "session rate");
    assert!(lines[3].starts_with("be-app:srv1"));
    assert!(lines[4].contains("999"));
}

#[test]
fn stats_json_carries_every_counter() {
    let f = TempFile::new("json");
    let _s = sample_file(&f);
    let args = StatsArgs {
        json: true,
        ..Default::default()
    };
    let out = run(args, &f).unwrap();
    assert!(out.starts_with("{\"version\":\"1.0\""));
    assert!(out.contains("{\"guid\":\"fe-web\",\"type\":\"frontend\""));
    assert!(out.contains("\"requests\":5"));
    assert!(out.contains("\"responses_5xx\":1"));
    assert!(out.contains("\"session_rate\":5"));
    assert!(out.contains("\"last_session_age_ms\":"));
    assert!(out.contains("\"packets_in\":999"));
    // balanced braces and brackets (a cheap well-formedness check)
    let depth = out.chars().fold(0i64, |d, c| match c {
        '{' | '[' => d + 1,
        '}' | ']' => d - 1,
        _ => d,
    });
    assert_eq!(depth, 0);
}

#[test]
fn stats_prometheus_follows_the_exposition_format() {
    let f = TempFile::new("prom");
    let _s = sample_file(&f);
    let args = StatsArgs {
        prometheus: true,
        ..Default::default()
    };
    let out = run(args, &f).unwrap();
    assert!(out.contains("# TYPE weir_frontend_requests_total counter\n"));
    assert!(out.contains("weir_frontend_requests_total{guid=\"fe-web\"} 5\n"));
    assert!(out.contains("weir_server_connect_errors_total{guid=\"be-app:srv1\"} 1\n"));
    assert!(out.contains("weir_l4_service_packets_in_total{guid=\"vip-80\"} 999\n"));
    assert!(out.contains("# TYPE weir_frontend_current_session_rate gauge\n"));
    assert!(
        !out.contains("weir_frontend_packets_in_total"),
        "L4-only counter on L7"
    );
    let mut families = std::collections::HashSet::new();
    for line in out.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let name = rest.split(' ').next().unwrap();
            assert!(families.insert(name.to_string()), "family {name} twice");
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        // name{guid="..."} value
        let (name, rest) = line.split_once('{').expect(line);
        assert!(name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'));
        assert!(families.contains(name), "sample before its TYPE: {line}");
        let (_, value) = rest.split_once("} ").expect(line);
        value.parse::<f64>().expect(line);
    }
}

#[test]
fn stats_watch_redraws_the_view() {
    let f = TempFile::new("watch");
    let _s = sample_file(&f);
    let args = StatsArgs {
        watch: Some(1),
        count: Some(2),
        ..Default::default()
    };
    let out = run(args, &f).unwrap();
    assert_eq!(out.matches("\x1b[H\x1b[2J").count(), 2);
    assert_eq!(out.matches("fe-web").count(), 2);
}

#[test]
fn stats_command_gives_a_one_line_error_for_bad_files_and_never_writes() {
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", vec![]),
        ("short", b"WEIRSTAT".to_vec()),
        ("garbage", vec![0xa5; HEADER_SIZE + 3 * OBJECT_SIZE]),
        ("other version", {
            let mut b = proxy_user::stats::file::new_header_bytes(0);
            b[8] = 9;
            b
        }),
        ("truncated", proxy_user::stats::file::new_header_bytes(64)),
    ];
    for (what, bytes) in cases {
        let f = TempFile::new("bad");
        std::fs::write(f.path(), &bytes).unwrap();
        let mtime = std::fs::metadata(f.path()).unwrap().modified().unwrap();
        for args in [
            StatsArgs::default(),
            StatsArgs {
                json: true,
                ..Default::default()
            },
            StatsArgs {
                watch: Some(1),
                count: Some(1),
                ..Default::default()
            },
        ] {
            let err = run(args, &f).expect_err(what);
            let msg = format!("{err:#}");
            assert!(!msg.contains('\n'), "{what}: {msg}");
            assert!(msg.starts_with("weir stats: "), "{what}: {msg}");
        }
        assert_eq!(std::fs::read(f.path()).unwrap(), bytes, "{what}");
        assert_eq!(
            std::fs::metadata(f.path()).unwrap().modified().unwrap(),
            mtime
        );
    }
    // not regular files: a device that never ends, a directory
    for odd in ["/dev/zero", "/dev/shm"] {
        let err = read_snapshot(std::path::Path::new(odd)).expect_err(odd);
        assert!(!err.to_string().contains('\n'));
    }
    let missing = TempFile::new("missing");
    assert!(run(StatsArgs::default(), &missing).is_err());
    assert!(
        !missing.path().exists(),
        "the reader never creates the file"
    );
}

#[test]
fn reader_ages_an_abandoned_file_with_this_boot_clock() {
    use proxy_user::stats::reader::read_snapshot_with;
    use proxy_user::stats::{ManualClock, Rate, Stamp};
    use std::sync::Arc;
    const SEC: u64 = 1_000_000_000;
    let f = TempFile::new("aging");
    let c = Arc::new(ManualClock::new(100 * SEC));
    let opts = StoreOptions {
        clock: c.clone(),
        ..Default::default()
    };
    let (s, _) = StatsStore::open(Some(f.path()), 100, opts).unwrap();
    let e = s.register(Some("fe"), ObjectType::Frontend);
    for _ in 0..8 {
        e.session_started();
    }
    assert_eq!(e.rate(Rate::Sessions), 8);
    assert_eq!(e.age_ms(Stamp::LastSession), Some(0));
    std::mem::forget(s); // crash: the slot is never released

    // right away: alive, rate 8
    let now = read_snapshot_with(f.path(), &*c).unwrap();
    assert!(now.slots[0].alive);
    assert_eq!(now.objects[0].rates[Rate::Sessions as usize], 8);
    // 100 s later on this boot: dead, rate 0, last session 100 s ago
    c.advance(100 * SEC);
    let later = read_snapshot_with(f.path(), &*c).unwrap();
    assert!(!later.slots[0].alive);
    assert_eq!(later.objects[0].rates, [0; 3]);
    assert_eq!(
        later.age_ms(later.objects[0].last_session_ms),
        Some(100_000)
    );
    // from another boot the reader can only use the stored clock
    let other = ManualClock::with_boot(5 * SEC, 0x0123);
    let foreign = read_snapshot_with(f.path(), &other).unwrap();
    assert!(foreign.slots[0].alive);
    assert_eq!(foreign.now_ns, foreign.clock_ns);
}

#[test]
fn reader_works_on_a_read_only_file() {
    use std::os::unix::fs::PermissionsExt;
    let f = TempFile::new("ro");
    drop(sample_file(&f));
    std::fs::set_permissions(f.path(), std::fs::Permissions::from_mode(0o444)).unwrap();
    let snap = read_snapshot(f.path()).unwrap();
    assert_eq!(snap.objects.len(), 3);
}

/// xorshift64*: deterministic, dependency-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn check_parse(bytes: &[u8]) {
    match parse_snapshot(bytes, 60_000_000_000) {
        Ok(s) => {
            assert!(s.objects_used <= s.capacity);
            assert!(object_offset(s.capacity) <= bytes.len() as u64);
            for o in &s.objects {
                assert!(layout::valid_guid(&o.guid));
                assert!(o.index < s.objects_used);
            }
            // the formatters must cope with whatever parsed
            let _ = proxy_user::stats::format::format_table(&s);
            let _ = proxy_user::stats::format::format_json(&s);
            let _ = proxy_user::stats::format::format_prometheus(&s);
        }
        Err(e) => assert!(!e.to_string().contains('\n')),
    }
}

#[test]
fn reader_survives_arbitrary_bytes() {
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    for _ in 0..3_000 {
        let len = match rng.below(4) {
            0 => rng.below(HEADER_SIZE as u64 + 1) as usize,
            _ => HEADER_SIZE + rng.below(8 * OBJECT_SIZE as u64) as usize,
        };
        let mut b: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        // half of them get a valid magic/version/hash so the fuzz gets past
        // the first checks
        if rng.below(2) == 0 && b.len() >= HEADER_SIZE {
            let h = proxy_user::stats::file::new_header_bytes(0);
            b[..24].copy_from_slice(&h[..24]);
        }
        check_parse(&b);
    }
}

#[test]
fn reader_survives_mutations_of_a_valid_file() {
    let f = TempFile::new("mutate");
    let s = sample_file(&f);
    let names: Vec<String> = (0..40).map(|i| format!("m{i}")).collect();
    let ents: Vec<_> = names
        .iter()
        .map(|n| (Some(n.as_str()), ObjectType::Server))
        .collect();
    s.register_many(&ents);
    let valid = std::fs::read(f.path()).unwrap();
    check_parse(&valid);
    let hot: Vec<usize> = vec![
        offset_of!(Header, capacity),
        offset_of!(Header, objects_used),
        offset_of!(Header, slot_count),
        offset_of!(Header, object_size),
        offset_of!(Header, header_size),
        offset_of!(Header, clock_ns),
        offset_of!(Header, slots) + 8,
    ];
    let mut rng = Rng(0xfeed_beef_0000_0042);
    for _ in 0..12_000 {
        let mut b = valid.clone();
        for _ in 0..1 + rng.below(4) {
            match rng.below(6) {
                // a random byte anywhere
                0 => {
                    let i = rng.below(b.len() as u64) as usize;
                    b[i] = rng.next() as u8;
                }
                // a random u64 in a header geometry/clock field
                1 => {
                    let off = hot[rng.below(hot.len() as u64) as usize];
                    let v = match rng.below(3) {
                        0 => rng.next(),
                        1 => rng.below(200),
                        _ => u64::MAX - rng.below(3),
                    };
                    if off + 8 <= b.len() {
                        b[off..off + 8].copy_from_slice(&v.to_ne_bytes());
                    }
                }
                // an object's state, type or guid byte
                2 => {
                    let o = object_offset(rng.below(45)) as usize;
                    let off = o + [128, 132, rng.below(128) as usize][rng.below(3) as usize];
                    if off < b.len() {
                        b[off] = rng.next() as u8;
                    }
                }
                // truncate
                3 => {
                    let n = rng.below(b.len() as u64 + 1) as usize;
                    b.truncate(n);
                }
                // extend with garbage
                4 => {
                    let n = rng.below(3 * OBJECT_SIZE as u64) as usize;
                    b.extend((0..n).map(|_| rng.next() as u8));
                }
                // rates and stamps far in the future / past
                _ => {
                    let o = object_offset(rng.below(45)) as usize + 416 + 8 * rng.below(8) as usize;
                    if o + 8 <= b.len() {
                        b[o..o + 8].copy_from_slice(&rng.next().to_ne_bytes());
                    }
                }
            }
        }
        check_parse(&b);
    }
}

#[derive(Debug, clap::Parser)]
struct TestCli {
    #[command(flatten)]
    stats: StatsArgs,
}

#[test]
fn stats_arguments_parse_like_the_cli_will() {
    use clap::{CommandFactory, Parser};
    TestCli::command().debug_assert();
    let c = TestCli::try_parse_from(["weir", "--file", "/dev/shm/x", "--prometheus"]).unwrap();
    assert_eq!(
        c.stats.file.as_deref(),
        Some(std::path::Path::new("/dev/shm/x"))
    );
    assert!(c.stats.prometheus && !c.stats.json);
    let w = TestCli::try_parse_from(["weir", "--watch", "2", "--count", "3"]).unwrap();
    assert_eq!((w.stats.watch, w.stats.count), (Some(2), Some(3)));
    assert!(TestCli::try_parse_from(["weir", "--json", "--prometheus"]).is_err());
    assert!(TestCli::try_parse_from(["weir", "--count", "3"]).is_err());
}
