//! The nine failure modes of `docs/shm-stats-file.md` (each a known bug in a
//! peer), plus the shared-clock rules. Each test fails on the buggy
//! behaviour it is named after. Time-dependent cases use an injected manual
//! clock, so "61 seconds later" costs nothing.

mod stats_support;

use std::mem::offset_of;
use std::path::Path;
use std::sync::Arc;

use proxy_user::stats::layout::{
    self, object_offset, Header, Object, HEADER_SIZE, OBJECT_SIZE, SLOT_COUNT,
};
use proxy_user::stats::{
    read_snapshot, Backing, Counter, ManualClock, ObjectType, Rate, Stamp, StatsStore, StoreOptions,
};
use stats_support::{val, ChildProc, TempFile, CHILD_ENV, TEST_BOOT};

const ENTRY: &str = "child_process_entry";
const SEC: u64 = 1_000_000_000;

/// Not a test of its own: the entry point of child processes. Without
/// `WEIR_STATS_CHILD` it returns at once.
#[test]
fn child_process_entry() {
    if std::env::var(CHILD_ENV).as_deref() == Ok("script") {
        stats_support::run_script_child();
    }
}

fn script() -> ChildProc {
    ChildProc::spawn(ENTRY, "script", &[])
}

fn manual(ns: u64) -> (Arc<ManualClock>, StoreOptions) {
    let c = Arc::new(ManualClock::with_boot(ns, TEST_BOOT));
    (
        c.clone(),
        StoreOptions {
            clock: c,
            ..StoreOptions::default()
        },
    )
}

fn open(path: &Path, opts: StoreOptions) -> (StatsStore, Vec<String>) {
    StatsStore::open(Some(path), 1000, opts).unwrap()
}

fn slot_of(s: &StatsStore) -> usize {
    match s.backing() {
        Backing::File { slot, .. } => slot,
        Backing::Local => panic!("store is local"),
    }
}

// 1. A backend-only entity's counters reset on reload, or a duplicate object
//    appears.
#[test]
fn fm1_backend_only_entity_keeps_counters_on_reload_and_gets_no_duplicate() {
    let f = TempFile::new("fm1");
    let p = f.path().display().to_string();
    let mut a = script();
    a.cmd(&format!("open {p} 100"));
    // a backend no frontend refers to, and a server of it
    a.cmd("reg lonely-be backend lonely-srv server");
    a.cmd("add lonely-be backend requests 11");
    a.cmd("add lonely-srv server requests 12");
    let mut b = script();
    b.cmd(&format!("open {p} 100"));
    // the reloaded config lists it among other, new entities, in another order
    b.cmd("reg new-fe frontend lonely-srv server lonely-be backend");
    a.exit();
    assert_eq!(val(&b.cmd("get lonely-be backend requests")), 11);
    assert_eq!(val(&b.cmd("get lonely-srv server requests")), 12);
    let snap = read_snapshot(f.path()).unwrap();
    let n = |g: &str| snap.objects.iter().filter(|o| o.guid == g).count();
    assert_eq!((n("lonely-be"), n("lonely-srv"), n("new-fe")), (1, 1, 1));
    b.exit();
}

// 2. A process exit leaves its users bit set, so its objects are never
//    recycled.
#[test]
fn fm2_exit_clears_users_bits_and_crashed_slots_are_cleared_on_reuse() {
    let f = TempFile::new("fm2");
    let p = f.path().display().to_string();
    // clean exit of a real process
    let mut a = script();
    a.cmd(&format!("open {p} 100"));
    a.cmd("reg g-a frontend");
    let before = read_snapshot(f.path()).unwrap();
    assert_ne!(before.find("g-a", ObjectType::Frontend).unwrap().users, 0);
    a.exit();
    let after = read_snapshot(f.path()).unwrap();
    assert_eq!(after.find("g-a", ObjectType::Frontend).unwrap().users, 0);
    // so a new entity recycles it
    let (s, _) = open(f.path(), StoreOptions::default());
    let e = s.register(Some("g-b"), ObjectType::Frontend);
    assert!(e.is_shared());
    let snap = read_snapshot(f.path()).unwrap();
    assert_eq!(snap.objects.len(), 1);
    assert_eq!(snap.objects[0].guid, "g-b");
    drop(s);

    // crash (SIGKILL): the bit stays until the slot is judged dead; the
    // process that claims the dead slot clears it, so the object is recycled.
    let f = TempFile::new("fm2-crash");
    let p = f.path().display().to_string();
    let t0 = 1_000 * SEC;
    let (clock, opts) = manual(t0);
    let (witness, _) = open(f.path(), opts.clone()); // keeps the clock moving
    witness.register(Some("w"), ObjectType::Backend);
    let mut c = script();
    let opened = c.cmd(&format!("open {p} 100 clock={t0}"));
    let crashed_slot: usize = opened["backing file:".len()..]
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    c.cmd("reg g-c server");
    c.kill();
    for _ in 0..61 {
        clock.advance(SEC);
        witness.heartbeat();
    }
    let (s, warns) = open(f.path(), opts);
    assert!(warns.is_empty(), "{warns:?}");
    assert_eq!(slot_of(&s), crashed_slot, "the dead slot is claimed");
    let e = s.register(Some("g-d"), ObjectType::Server);
    assert!(e.is_shared());
    let snap = read_snapshot(f.path()).unwrap();
    assert!(
        snap.find("g-c", ObjectType::Server).is_none(),
        "dead object recycled"
    );
    assert_eq!(snap.objects.len(), 2, "recycled, not appended");
}

// 3. A recycled object keeps the counters of its previous GUID.
#[test]
fn fm3_recycled_object_starts_from_zero() {
    let f = TempFile::new("fm3");
    let (s, _) = open(f.path(), StoreOptions::default());
    let old = s.register(Some("old-real"), ObjectType::L4Real);
    for c in Counter::ALL {
        old.add(c, 1000);
    }
    old.mirror(Counter::PacketsIn, 5000).unwrap();
    old.session_started();
    old.touch(Stamp::LastChange);
    let old_index = read_snapshot(f.path()).unwrap().objects[0].index;
    drop(old);
    s.close();

    let (s2, _) = open(
        f.path(),
        StoreOptions {
            keep_counters: true,
            ..Default::default()
        },
    );
    let new = s2.register(Some("new-real"), ObjectType::L4Real);
    let snap = read_snapshot(f.path()).unwrap();
    let o = snap.find("new-real", ObjectType::L4Real).unwrap();
    assert_eq!(o.index, old_index, "the object was recycled");
    assert!(o.counters.iter().all(|&v| v == 0), "{:?}", o.counters);
    assert!(o.mirror_base.iter().all(|&v| v == 0));
    assert_eq!((o.last_change_ms, o.last_session_ms), (0, 0));
    assert_eq!(o.rates, [0; 3]);
    assert_eq!(new.rate(Rate::Sessions), 0);
    // a baseline from the old GUID would swallow the first 5000 packets
    assert_eq!(new.mirror(Counter::PacketsIn, 10).unwrap(), 10);
}

fn valid_file(path: &Path) {
    let (s, _) = open(path, StoreOptions::default());
    let e = s.register(Some("fe"), ObjectType::Frontend);
    e.add(Counter::Requests, 3);
}

fn put_u64(b: &mut [u8], off: usize, v: u64) {
    b[off..off + 8].copy_from_slice(&v.to_ne_bytes());
}

/// Corruptions of a valid file that every writer and reader must refuse.
/// Corruptions of a valid file that every writer must refuse; all but a
/// newer minor version are refused by the reader too (minor versions only
/// give meaning to reserved bytes, so a reader can still show the file).
type Corruption = (&'static str, fn(&mut Vec<u8>));

fn corruptions() -> Vec<Corruption> {
    vec![
        ("bad magic", |b| b[0] = b'X'),
        ("other major", |b| b[8] = b[8].wrapping_add(1)),
        ("other minor", |b| b[10] = b[10].wrapping_add(1)),
        ("other layout hash", |b| b[16] ^= 0xff),
        ("other object size", |b| b[25] ^= 0x03),
        ("truncated objects", |b| b.truncate(HEADER_SIZE + 100)),
        ("shorter than header", |b| b.truncate(100)),
        ("empty", |b| b.clear()),
        ("garbage capacity", |b| {
            put_u64(b, offset_of!(Header, capacity), u64::MAX - 3)
        }),
        ("used above capacity", |b| {
            put_u64(b, offset_of!(Header, objects_used), 1 << 20)
        }),
    ]
}

// 4. A file with another layout version, or a truncated/garbled file, is
//    written into anyway, or crashes the reader.
#[test]
fn fm4_bad_files_are_refused_untouched_and_reported() {
    for (what, corrupt) in corruptions() {
        let f = TempFile::new("fm4");
        valid_file(f.path());
        let mut bytes = std::fs::read(f.path()).unwrap();
        corrupt(&mut bytes);
        std::fs::write(f.path(), &bytes).unwrap();

        // default: warn and count locally, never touching the file
        let (s, warns) = open(f.path(), StoreOptions::default());
        assert_eq!(s.backing(), Backing::Local, "{what}");
        assert_eq!(warns.len(), 1, "{what}: {warns:?}");
        let e = s.register(Some("fe"), ObjectType::Frontend);
        e.add(Counter::Requests, 1);
        s.heartbeat();
        drop(s);
        assert_eq!(
            std::fs::read(f.path()).unwrap(),
            bytes,
            "{what}: file modified"
        );

        // configured to stop: an error
        let strict = StoreOptions {
            fail_on_bad_file: true,
            ..StoreOptions::default()
        };
        assert!(
            StatsStore::open(Some(f.path()), 100, strict).is_err(),
            "{what}"
        );

        // the reader: a one-line error (a newer minor is still readable)
        if what == "other minor" {
            assert!(read_snapshot(f.path()).is_ok());
        } else {
            let err = read_snapshot(f.path()).expect_err(what).to_string();
            assert!(!err.contains('\n'), "{what}: {err}");
        }
        assert_eq!(std::fs::read(f.path()).unwrap(), bytes, "{what}");
    }
}

// 5. A file holding more objects than this process can map crashes it.
#[test]
fn fm5_file_with_more_objects_than_this_process_maps_is_used_safely() {
    let f = TempFile::new("fm5");
    let (big, _) = StatsStore::open(Some(f.path()), 5000, StoreOptions::default()).unwrap();
    let names: Vec<String> = (0..3000).map(|i| format!("g{i}")).collect();
    let ents: Vec<(Option<&str>, ObjectType)> = names
        .iter()
        .map(|n| (Some(n.as_str()), ObjectType::Server))
        .collect();
    let (hs, w) = big.register_many(&ents);
    assert!(w.is_empty());
    hs[10].add(Counter::Requests, 7);
    hs[2500].add(Counter::Requests, 9);

    // a process limited to 100 objects: it maps only what it may
    let (small, warns) = StatsStore::open(Some(f.path()), 100, StoreOptions::default()).unwrap();
    assert!(matches!(small.backing(), Backing::File { .. }));
    assert!(warns.iter().any(|w| w.contains("max-objects")), "{warns:?}");
    let (seen, w) = small.register_many(&[
        (Some("g10"), ObjectType::Server),
        (Some("g2500"), ObjectType::Server),
        (Some("brand-new"), ObjectType::Server),
    ]);
    assert!(seen[0].is_shared());
    assert_eq!(seen[0].get(Counter::Requests), 7);
    // beyond its reach: local, never a duplicate of an object it cannot see
    assert!(!seen[1].is_shared());
    assert!(!seen[2].is_shared());
    assert_eq!(w.len(), 2, "{w:?}");
    let snap = read_snapshot(f.path()).unwrap();
    assert_eq!(snap.objects.len(), 3000);
    assert_eq!(
        snap.find("g2500", ObjectType::Server)
            .unwrap()
            .get(Counter::Requests),
        9
    );
}

// 6. A GUID that changes type across a reload (server -> frontend) kills
//    startup.
#[test]
fn fm6_guid_changing_type_across_reload_starts_fine() {
    let f = TempFile::new("fm6");
    let p = f.path().display().to_string();
    let mut a = script();
    a.cmd(&format!("open {p} 100"));
    a.cmd("reg shape-shifter server");
    a.cmd("add shape-shifter server requests 5");
    // overlap: the new process sees it as a frontend while A still runs
    let mut b = script();
    assert!(b.cmd(&format!("open {p} 100")).starts_with("backing file"));
    b.cmd("reg shape-shifter frontend");
    assert_eq!(val(&b.cmd("get shape-shifter frontend requests")), 0);
    b.cmd("add shape-shifter frontend requests 1");
    let snap = read_snapshot(f.path()).unwrap();
    assert_eq!(snap.objects.len(), 2, "one object per (guid, type)");
    a.exit();
    // and a fresh start after that works too
    b.exit();
    let mut c = script();
    c.cmd(&format!("open {p} 100 keep"));
    c.cmd("reg shape-shifter frontend");
    assert_eq!(val(&c.cmd("get shape-shifter frontend requests")), 1);
    c.exit();
}

// 7a. A draining process loses its slot while it still writes.
#[test]
fn fm7_draining_process_keeps_its_slot_and_objects_while_it_beats() {
    let f = TempFile::new("fm7a");
    let (clock, opts) = manual(500 * SEC);
    let (old, _) = open(f.path(), opts.clone());
    let h = old.register(Some("draining-fe"), ObjectType::Frontend);
    let old_slot = old.slot_owner().unwrap();
    let (new, _) = open(f.path(), opts.clone());
    new.register(Some("other-fe"), ObjectType::Frontend);
    // ten minutes of draining: the old process keeps beating
    for _ in 0..600 {
        clock.advance(SEC);
        assert!(old.heartbeat().is_empty());
        new.heartbeat();
        h.inc(Counter::Requests);
    }
    // a third process (next reload) neither takes the slot nor the object
    let (third, _) = open(f.path(), opts);
    assert_ne!(slot_of(&third), old_slot.0);
    let n = third.register(Some("third-fe"), ObjectType::Frontend);
    assert!(n.is_shared());
    assert_eq!(old.slot_owner(), Some(old_slot));
    let snap = read_snapshot(f.path()).unwrap();
    let o = snap.find("draining-fe", ObjectType::Frontend).unwrap();
    assert_eq!(o.get(Counter::Requests), 600);
    assert_ne!(o.users & (1 << old_slot.0), 0);
}

// 7b. An exit clears a slot that someone else now owns.
#[test]
fn fm7_exit_does_not_clear_a_slot_taken_over_by_another_process() {
    let f = TempFile::new("fm7b");
    let (clock, opts) = manual(500 * SEC);
    let (witness, _) = open(f.path(), opts.clone());
    let (stalled, _) = open(f.path(), opts.clone());
    stalled.register(Some("shared-be"), ObjectType::Backend);
    let (slot, gen, _) = stalled.slot_owner().unwrap();
    for _ in 0..61 {
        clock.advance(SEC); // stalled never beats: its slot dies
        witness.heartbeat();
    }
    let (taker, _) = open(f.path(), opts);
    assert_eq!(slot_of(&taker), slot, "the dead slot is reused");
    let (_, tgen, _) = taker.slot_owner().unwrap();
    assert_eq!(tgen, gen.wrapping_add(1), "with a new generation");
    taker.register(Some("shared-be"), ObjectType::Backend);

    stalled.close(); // must leave the taker's slot and bit alone
    let snap = read_snapshot(f.path()).unwrap();
    let s = snap.slots.iter().find(|s| s.index == slot).unwrap();
    assert_eq!((s.generation, s.pid), (tgen, std::process::id()));
    let o = snap.find("shared-be", ObjectType::Backend).unwrap();
    assert_ne!(o.users & (1 << slot), 0);
    assert!(!snap.clean_stop);
}

// 7b'. A stalled process that comes back re-claims a slot of its own instead
//      of beating in someone else's.
#[test]
fn fm7_stalled_process_reclaims_a_new_slot_on_its_next_heartbeat() {
    let f = TempFile::new("fm7b2");
    let (clock, opts) = manual(500 * SEC);
    let (witness, _) = open(f.path(), opts.clone());
    let (stalled, _) = open(f.path(), opts.clone());
    let h = stalled.register(Some("x"), ObjectType::Server);
    let (slot, ..) = stalled.slot_owner().unwrap();
    for _ in 0..61 {
        clock.advance(SEC);
        witness.heartbeat();
    }
    let (taker, _) = open(f.path(), opts);
    assert_eq!(slot_of(&taker), slot);
    let before = taker.slot_owner();
    let warns = stalled.heartbeat();
    assert!(warns.iter().any(|w| w.contains("lost")), "{warns:?}");
    let (new_slot, ..) = stalled.slot_owner().unwrap();
    assert_ne!(new_slot, slot);
    assert_eq!(taker.slot_owner(), before);
    h.inc(Counter::Requests);
    let o = read_snapshot(f.path()).unwrap();
    let o = o.find("x", ObjectType::Server).unwrap();
    assert_ne!(
        o.users & (1 << new_slot),
        0,
        "its objects carry its new bit"
    );
}

// 7c. A heartbeat wraps.
#[test]
fn fm7_heartbeats_do_not_wrap_at_32_bit_boundaries() {
    // 2^32 ms is 49.7 days: a u32 ms tick wraps there. Cross it, and 2^32 s.
    for start in [
        (1u64 << 32) * 1_000_000 - 5 * SEC,
        (1u64 << 32) * SEC - 5 * SEC,
    ] {
        let f = TempFile::new("fm7c");
        let (clock, opts) = manual(start);
        let (a, _) = open(f.path(), opts.clone());
        for _ in 0..10 {
            clock.advance(SEC);
            a.heartbeat();
        }
        // alive across the boundary: a newcomer does not take its slot
        let (b, _) = open(f.path(), opts.clone());
        assert_ne!(slot_of(&b), slot_of(&a));
        // 59 s without a beat: still alive; 61 s: dead
        clock.advance(59 * SEC);
        b.heartbeat();
        let snap = read_snapshot(f.path()).unwrap();
        assert!(snap.slots.iter().all(|s| s.alive));
        clock.advance(2 * SEC);
        b.heartbeat();
        let (c, _) = open(f.path(), opts);
        assert_eq!(slot_of(&c), slot_of(&a), "dead slot reused");
    }
}

// 7d. An append wipes a racing process's new object.
#[test]
fn fm7_append_from_a_stale_view_never_wipes_another_process_object() {
    let f = TempFile::new("fm7d");
    let (a, _) = open(f.path(), StoreOptions::default());
    let first = a.register(Some("a-0"), ObjectType::Server);
    first.add(Counter::Requests, 1);
    // B appends far past A's mapping (the file grows several times)
    let (b, _) = open(f.path(), StoreOptions::default());
    let names: Vec<String> = (0..500).map(|i| format!("b-{i}")).collect();
    let ents: Vec<_> = names
        .iter()
        .map(|n| (Some(n.as_str()), ObjectType::Server))
        .collect();
    let (bh, _) = b.register_many(&ents);
    for (i, h) in bh.iter().enumerate() {
        h.add(Counter::Requests, i as u64 + 100);
    }
    // A, whose mapping still ends at the initial capacity, appends
    let late = a.register(Some("a-1"), ObjectType::Server);
    late.add(Counter::Requests, 2);
    let snap = read_snapshot(f.path()).unwrap();
    assert_eq!(snap.objects.len(), 502);
    for (i, n) in names.iter().enumerate() {
        let o = snap.find(n, ObjectType::Server).unwrap();
        assert_eq!(o.get(Counter::Requests), i as u64 + 100, "{n}");
    }
    assert_eq!(snap.find("a-1", ObjectType::Server).unwrap().index, 501);
    let len = std::fs::metadata(f.path()).unwrap().len();
    assert!(len >= object_offset(snap.capacity));
}

// 7e. A file shorter than a header crashes the mapping.
#[test]
fn fm7_file_shorter_than_a_header_is_refused_without_mapping_it() {
    for len in [0usize, 1, 8, 100, HEADER_SIZE - 1] {
        let f = TempFile::new("fm7e");
        let mut b = vec![0u8; len];
        b[..len.min(8)].copy_from_slice(&layout::MAGIC[..len.min(8)]);
        std::fs::write(f.path(), &b).unwrap();
        let (s, warns) = open(f.path(), StoreOptions::default());
        assert_eq!(s.backing(), Backing::Local, "len {len}");
        assert!(warns[0].contains("shorter"), "{warns:?}");
        assert_eq!(std::fs::read(f.path()).unwrap(), b);
        assert!(read_snapshot(f.path()).is_err());
    }
}

// 8. A 127-byte GUID is truncated and collides with another.
#[test]
fn fm8_long_guids_stay_distinct_and_overlong_ones_are_not_truncated() {
    let f = TempFile::new("fm8");
    let (s, _) = open(f.path(), StoreOptions::default());
    let stem = "g".repeat(126);
    let g1 = format!("{stem}1");
    let g2 = format!("{stem}2");
    let a = s.register(Some(&g1), ObjectType::Server);
    let b = s.register(Some(&g2), ObjectType::Server);
    a.add(Counter::Requests, 1);
    b.add(Counter::Requests, 2);
    let snap = read_snapshot(f.path()).unwrap();
    assert_eq!(snap.objects.len(), 2);
    assert_eq!(
        snap.find(&g1, ObjectType::Server)
            .unwrap()
            .get(Counter::Requests),
        1
    );
    assert_eq!(
        snap.find(&g2, ObjectType::Server)
            .unwrap()
            .get(Counter::Requests),
        2
    );
    // 128 bytes: refused (local, with a warning), never cut to 127
    let long = format!("{g1}x");
    let (c, w) = s.register_many(&[(Some(long.as_str()), ObjectType::Server)]);
    assert!(!c[0].is_shared());
    assert_eq!(w.len(), 1);
    assert_eq!(read_snapshot(f.path()).unwrap().objects.len(), 2);
}

// 9. When all process slots are taken, the process crashes instead of
//    falling back to local counters and its own clock.
#[test]
fn fm9_all_slots_taken_next_process_warns_and_counts_locally() {
    let f = TempFile::new("fm9");
    let stores: Vec<StatsStore> = (0..SLOT_COUNT)
        .map(|_| open(f.path(), StoreOptions::default()).0)
        .collect();
    assert!(stores
        .iter()
        .all(|s| matches!(s.backing(), Backing::File { .. })));
    stores[0].register(Some("fe"), ObjectType::Frontend);
    let before = std::fs::read(f.path()).unwrap();
    let clock_off = offset_of!(Header, clock_ns);

    let mut c = script();
    let opened = c.cmd(&format!("open {} 100", f.path().display()));
    assert!(opened.starts_with("backing local warnings=1"), "{opened}");
    assert!(opened.contains("slots are taken"), "{opened}");
    c.cmd("reg fe frontend");
    c.cmd("add fe frontend requests 1000");
    assert_eq!(val(&c.cmd("get fe frontend requests")), 1000);
    c.cmd("hb");
    let now = val(&c.cmd("nowms"));
    assert!(now > 0);
    c.exit();
    let after = std::fs::read(f.path()).unwrap();
    // nothing of the file changed: counters, clock, slots
    let first_diff = after.iter().zip(&before).position(|(x, y)| x != y);
    assert_eq!(first_diff, None, "file written (clock at {clock_off})");
    assert_eq!(after.len(), before.len());
    assert_eq!(
        read_snapshot(f.path()).unwrap().objects[0].get(Counter::Requests),
        0
    );
}

// --- shared clock --------------------------------------------------------

fn file_with_history(path: &Path, clock_ns: u64, boot: u64) {
    let c = Arc::new(ManualClock::with_boot(clock_ns, boot));
    let opts = StoreOptions {
        clock: c.clone(),
        keep_counters: true,
        ..StoreOptions::default()
    };
    let (s, _) = StatsStore::open(Some(path), 100, opts).unwrap();
    let e = s.register(Some("fe"), ObjectType::Frontend);
    for _ in 0..30 {
        e.session_started();
    }
    c.advance(SEC / 2);
    s.heartbeat();
}

fn stored_clock(path: &Path) -> u64 {
    read_snapshot(path).unwrap().clock_ns
}

#[test]
fn clock_ahead_by_more_than_the_timeout_is_detected_and_continues() {
    let f = TempFile::new("clk-ahead");
    // written on another boot whose clock had reached 10 000 s
    file_with_history(f.path(), 10_000 * SEC, 0xdead);
    let was = stored_clock(f.path());
    // this boot's clock is at 5 s: far behind the file
    let c = Arc::new(ManualClock::with_boot(5 * SEC, TEST_BOOT));
    let opts = StoreOptions {
        clock: c.clone(),
        keep_counters: true,
        ..Default::default()
    };
    let (s, warns) = StatsStore::open(Some(f.path()), 100, opts).unwrap();
    assert!(warns.iter().any(|w| w.contains("ahead of")), "{warns:?}");
    assert!(
        s.now_ns() >= was && s.now_ns() - was < SEC,
        "continues from the stored clock"
    );
    let e = s.register(Some("fe"), ObjectType::Frontend);
    assert_eq!(e.get(Counter::Sessions), 30);
    let age = e.age_ms(Stamp::LastSession).unwrap();
    assert!(age <= 1000, "timestamps go on where they left off: {age}");
    // rates: sane right away and after some seconds
    assert!(e.rate(Rate::Sessions) <= 30);
    c.advance(3 * SEC);
    assert_eq!(e.rate(Rate::Sessions), 0);
    for _ in 0..7 {
        e.session_started();
    }
    assert_eq!(e.rate(Rate::Sessions), 7);
    s.heartbeat();
    assert!(stored_clock(f.path()) > was);
}

#[test]
fn clock_behind_by_more_than_the_timeout_is_detected_and_continues() {
    let f = TempFile::new("clk-behind");
    file_with_history(f.path(), 20 * SEC, TEST_BOOT);
    let was = stored_clock(f.path());
    // same boot, an hour later, nobody ran meanwhile
    let c = Arc::new(ManualClock::with_boot(3_620 * SEC, TEST_BOOT));
    let opts = StoreOptions {
        clock: c.clone(),
        keep_counters: true,
        ..Default::default()
    };
    let (s, warns) = StatsStore::open(Some(f.path()), 100, opts).unwrap();
    assert!(warns.iter().any(|w| w.contains("behind")), "{warns:?}");
    assert!(s.now_ns() >= was && s.now_ns() - was < SEC);
    let e = s.register(Some("fe"), ObjectType::Frontend);
    assert!(e.age_ms(Stamp::LastSession).unwrap() <= 1000);
    c.advance(2 * SEC);
    e.session_started();
    assert_eq!(e.rate(Rate::Sessions), 1);
    // the rebase is recorded: a second process of this boot joins it silently
    let opts2 = StoreOptions {
        clock: c.clone(),
        ..Default::default()
    };
    let (s2, warns2) = StatsStore::open(Some(f.path()), 100, opts2).unwrap();
    assert!(warns2.is_empty(), "{warns2:?}");
    assert!(s2.now_ns().abs_diff(s.now_ns()) < SEC);
}

#[test]
fn clock_skew_within_the_timeout_converges_forward_only() {
    let f = TempFile::new("clk-within");
    let ca = Arc::new(ManualClock::with_boot(1_000 * SEC, TEST_BOOT));
    let a_opts = StoreOptions {
        clock: ca.clone(),
        ..Default::default()
    };
    let (a, _) = StatsStore::open(Some(f.path()), 100, a_opts).unwrap();
    let ea = a.register(Some("fe"), ObjectType::Frontend);
    // B's local clock is 20 s ahead of A's (under the 60 s timeout)
    let cb = Arc::new(ManualClock::with_boot(1_020 * SEC, TEST_BOOT));
    let b_opts = StoreOptions {
        clock: cb.clone(),
        ..Default::default()
    };
    let (b, warns) = StatsStore::open(Some(f.path()), 100, b_opts).unwrap();
    assert!(
        warns.is_empty(),
        "no detection under the timeout: {warns:?}"
    );
    let eb = b.register(Some("fe"), ObjectType::Frontend);
    b.heartbeat();
    let a_before = a.now_ns();
    let warns = a.heartbeat();
    assert!(warns.is_empty());
    assert!(a.now_ns() >= a_before + 20 * SEC - SEC, "A caught up");
    assert!(a.now_ns().abs_diff(b.now_ns()) < SEC, "converged");
    // C's clock is 10 s behind the file: it starts at the file's clock
    let cc = Arc::new(ManualClock::with_boot(1_010 * SEC, TEST_BOOT));
    let c_opts = StoreOptions {
        clock: cc.clone(),
        ..Default::default()
    };
    let (c, _) = StatsStore::open(Some(f.path()), 100, c_opts).unwrap();
    assert!(
        c.now_ns() >= stored_clock(f.path()),
        "never behind the stored clock"
    );
    // rate counters over the converged clock: all three count into one second
    for e in [&ea, &eb] {
        for _ in 0..5 {
            e.request();
        }
    }
    let ec = c.register(Some("fe"), ObjectType::Frontend);
    ec.request();
    for e in [&ea, &eb, &ec] {
        // one shared second: 5 + 5 + 1 events, whoever reads
        assert_eq!(e.rate(Rate::Requests), 11);
    }
    let mut last = stored_clock(f.path());
    for _ in 0..5 {
        ca.advance(SEC);
        cb.advance(SEC);
        cc.advance(SEC);
        for s in [&a, &b, &c] {
            s.heartbeat();
            let now = stored_clock(f.path());
            assert!(now >= last, "stored clock went back");
            last = now;
        }
    }
}

#[test]
fn golden_offsets_used_by_the_tests_match_the_layout() {
    // The failure tests above poke header bytes by offset: keep them honest.
    assert_eq!(offset_of!(Header, capacity), 32);
    assert_eq!(offset_of!(Header, objects_used), 40);
    assert_eq!(offset_of!(Header, clock_ns), 48);
    assert_eq!(offset_of!(Object, counters), 160);
    assert_eq!(OBJECT_SIZE, 512);
}
