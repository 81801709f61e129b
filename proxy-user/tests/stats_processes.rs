//! Multi-process behaviour of the shm-stats-file: concurrent counting,
//! reloads, stop/start rules, crashes, concurrent startup, full slot table.
//! Every process here is a real process (this test binary re-executed).

mod stats_support;

use std::collections::HashSet;
use std::time::Duration;

use proxy_user::stats::{read_snapshot, Counter, ObjectType, StatsStore, StoreOptions};
use stats_support::{val, ChildProc, FakeMap, TempFile, CHILD_ENV};

const ENTRY: &str = "child_process_entry";

/// Not a test of its own: the entry point of child processes. Without
/// `WEIR_STATS_CHILD` it returns at once.
#[test]
fn child_process_entry() {
    match std::env::var(CHILD_ENV).as_deref() {
        Ok("script") => stats_support::run_script_child(),
        Ok("race") => race_child(),
        Ok("map_writer") => map_writer_child(),
        Ok("churn") => churn_child(),
        _ => {}
    }
}

fn script() -> ChildProc {
    ChildProc::spawn(ENTRY, "script", &[])
}

const SET: &str = "reg fe1 frontend be1 backend srv1 server";

#[test]
fn two_processes_count_into_the_same_objects_with_exact_totals() {
    let f = TempFile::new("two");
    let p = f.path().display().to_string();
    let mut a = script();
    let mut b = script();
    assert!(a.cmd(&format!("open {p} 100")).starts_with("backing file:"));
    assert!(b.cmd(&format!("open {p} 100")).starts_with("backing file:"));
    a.cmd(SET);
    b.cmd(SET);
    const N: u64 = 300_000;
    for (g, t) in [("fe1", "frontend"), ("be1", "backend"), ("srv1", "server")] {
        // both processes hammer the same cell at the same time
        a.send(&format!("incloop {g} {t} requests {N}"));
        b.send(&format!("incloop {g} {t} requests {N}"));
        a.recv();
        b.recv();
    }
    let snap = read_snapshot(f.path()).unwrap();
    assert_eq!(snap.objects.len(), 3, "one object per entity");
    for o in &snap.objects {
        assert_eq!(o.get(Counter::Requests), 2 * N, "{}", o.guid);
    }
    a.exit();
    b.exit();
}

#[test]
fn two_processes_mirroring_one_map_count_every_packet_once() {
    let f = TempFile::new("mirror2");
    let m = TempFile::new("fakemap");
    FakeMap::create(m.path());
    let p = f.path().display().to_string();
    let mut a = script();
    let mut b = script();
    a.cmd(&format!("open {p} 100"));
    b.cmd(&format!("open {p} 100"));
    a.cmd("reg vip1 l4_service");
    b.cmd("reg vip1 l4_service");
    let mut writer = ChildProc::spawn(
        ENTRY,
        "map_writer",
        &[("WEIR_STATS_MAP", m.path().display().to_string())],
    );
    let mirror = format!(
        "mirrorloop vip1 l4_service packets_in {} 300000",
        m.path().display()
    );
    writer.send("go");
    a.send(&mirror);
    b.send(&mirror);
    a.recv();
    b.recv();
    writer.recv(); // writer done
                   // one final pass after the map stopped moving
    a.cmd(&format!(
        "mirrorloop vip1 l4_service packets_in {} 1",
        m.path().display()
    ));
    let total = FakeMap::open(m.path()).sum();
    assert_eq!(total, 2 * MAP_WRITES);
    assert_eq!(val(&b.cmd("get vip1 l4_service packets_in")), total);
    a.exit();
    b.exit();
}

const MAP_WRITES: u64 = 2_000_000;

fn map_writer_child() {
    let map = FakeMap::open(std::path::Path::new(
        &std::env::var("WEIR_STATS_MAP").unwrap(),
    ));
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).unwrap();
    for i in 0..MAP_WRITES {
        map.bump((i % 2) as usize, 1);
        map.bump(((i + 1) % 2) as usize, 1);
    }
    println!("@@ done");
    std::process::exit(0);
}

#[test]
fn reload_continues_counters_without_reset_or_jump() {
    let f = TempFile::new("reload");
    let p = f.path().display().to_string();
    let mut a = script();
    a.cmd(&format!("open {p} 100"));
    a.cmd(SET);
    a.cmd("add fe1 frontend requests 100");
    a.cmd("add be1 backend requests 200");
    a.cmd("add srv1 server requests 300");
    // B starts while A runs: it sees A's totals at once (no reset)...
    let mut b = script();
    b.cmd(&format!("open {p} 100"));
    b.cmd("reg srv1 server be1 backend fe1 frontend");
    assert_eq!(val(&b.cmd("get fe1 frontend requests")), 100);
    assert_eq!(val(&b.cmd("get be1 backend requests")), 200);
    assert_eq!(val(&b.cmd("get srv1 server requests")), 300);
    // ...both count during the overlap...
    a.cmd("add fe1 frontend requests 5");
    b.cmd("add be1 backend requests 7");
    a.cmd("close");
    a.exit();
    // ...and after A left, B goes on from the exact totals (no jump).
    b.cmd("add srv1 server requests 1");
    let snap = read_snapshot(f.path()).unwrap();
    assert_eq!(snap.objects.len(), 3);
    let get = |g: &str, t: ObjectType| snap.find(g, t).unwrap().get(Counter::Requests);
    assert_eq!(get("fe1", ObjectType::Frontend), 105);
    assert_eq!(get("be1", ObjectType::Backend), 207);
    assert_eq!(get("srv1", ObjectType::Server), 301);
    assert!(!snap.clean_stop);
    assert_eq!(snap.slots.len(), 1, "A released its slot");
    b.exit();
}

#[test]
fn reloaded_process_continues_mirroring_from_the_stored_baseline() {
    let f = TempFile::new("mirror-reload");
    let p = f.path().display().to_string();
    let mut a = script();
    a.cmd(&format!("open {p} 100"));
    a.cmd("reg vip l4_service real1 l4_real");
    assert_eq!(val(&a.cmd("mirror vip l4_service bytes_in 1000")), 1000);
    assert_eq!(val(&a.cmd("mirror real1 l4_real new_flows 10")), 10);
    // reload: B re-attaches to the same pinned maps, whose sums moved on
    let mut b = script();
    b.cmd(&format!("open {p} 100"));
    b.cmd("reg vip l4_service real1 l4_real");
    a.exit();
    assert_eq!(val(&b.cmd("mirror vip l4_service bytes_in 1500")), 500);
    assert_eq!(val(&b.cmd("get vip l4_service bytes_in")), 1500);
    // the map is re-created (sum went down): re-baselined, nothing lost
    assert_eq!(val(&b.cmd("mirror vip l4_service bytes_in 40")), 40);
    assert_eq!(val(&b.cmd("mirror vip l4_service bytes_in 45")), 5);
    assert_eq!(val(&b.cmd("get vip l4_service bytes_in")), 1545);
    assert_eq!(val(&b.cmd("mirror real1 l4_real new_flows 10")), 0);
    b.exit();
    // a clean stop resets counters but keeps baselines: the pinned map's
    // old sum is not counted again after the restart
    let mut c = script();
    c.cmd(&format!("open {p} 100"));
    c.cmd("reg vip l4_service");
    assert_eq!(val(&c.cmd("get vip l4_service bytes_in")), 0);
    assert_eq!(val(&c.cmd("mirror vip l4_service bytes_in 50")), 5);
    c.exit();
}

#[test]
fn clean_stop_then_start_resets_unless_keep_is_asked() {
    let f = TempFile::new("cleanstop");
    let p = f.path().display().to_string();
    let mut a = script();
    a.cmd(&format!("open {p} 100"));
    a.cmd(SET);
    a.cmd("add fe1 frontend requests 42");
    a.exit(); // exit closes the store: a clean full stop
    assert!(read_snapshot(f.path()).unwrap().clean_stop);

    let mut b = script();
    let opened = b.cmd(&format!("open {p} 100"));
    assert!(opened.contains("reset"), "the reset is reported: {opened}");
    b.cmd(SET);
    assert_eq!(val(&b.cmd("get fe1 frontend requests")), 0);
    b.cmd("add fe1 frontend requests 9");
    b.exit();

    let mut c = script();
    c.cmd(&format!("open {p} 100 keep"));
    c.cmd(SET);
    assert_eq!(
        val(&c.cmd("get fe1 frontend requests")),
        9,
        "kept on request"
    );
    c.exit();
}

#[test]
fn sigkill_then_restart_within_the_timeout_keeps_counters() {
    let f = TempFile::new("sigkill");
    let p = f.path().display().to_string();
    let mut a = script();
    a.cmd(&format!("open {p} 100"));
    a.cmd(SET);
    a.cmd("add srv1 server connect_errors 50");
    a.cmd("add be1 backend requests 60");
    let a_pid = a.pid();
    a.kill();
    let snap = read_snapshot(f.path()).unwrap();
    assert!(snap.slots.iter().any(|s| s.pid == a_pid && s.alive));
    let mut b = script();
    let opened = b.cmd(&format!("open {p} 100"));
    assert!(!opened.contains("reset"), "{opened}");
    b.cmd(SET);
    assert_eq!(val(&b.cmd("get srv1 server connect_errors")), 50);
    assert_eq!(val(&b.cmd("get be1 backend requests")), 60);
    assert_eq!(read_snapshot(f.path()).unwrap().objects.len(), 3);
    b.exit();
}

/// Child of `processes_starting_together_...`: waits for the go file, then
/// opens and registers its set and adds 1 to every object.
fn race_child() {
    let file = std::env::var("WEIR_STATS_FILE").unwrap();
    let go = std::env::var("WEIR_STATS_GO").unwrap();
    let me: usize = std::env::var("WEIR_STATS_ID").unwrap().parse().unwrap();
    let mut ents: Vec<(String, ObjectType)> = (0..SHARED_GUIDS)
        .map(|i| (format!("shared-{i}"), ObjectType::ALL[i % 6]))
        .collect();
    // each process registers in a different order
    ents.rotate_left(me * 37 % SHARED_GUIDS);
    if me % 2 == 1 {
        ents.reverse();
    }
    ents.extend((0..OWN_GUIDS).map(|i| (format!("own-{me}-{i}"), ObjectType::Server)));
    for _ in 0..20_000 {
        if std::path::Path::new(&go).exists() {
            break;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    let (store, _) = StatsStore::open(
        Some(std::path::Path::new(&file)),
        10_000,
        StoreOptions::default(),
    )
    .unwrap();
    let refs: Vec<(Option<&str>, ObjectType)> =
        ents.iter().map(|(g, t)| (Some(g.as_str()), *t)).collect();
    // register in small batches to interleave with the other processes
    for chunk in refs.chunks(25) {
        let (hs, w) = store.register_many(chunk);
        assert!(w.is_empty(), "{w:?}");
        for h in hs {
            assert!(h.is_shared());
            h.inc(Counter::Sessions);
        }
    }
    println!("@@ done");
    // stay attached until told to exit, so nobody recycles anything
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).unwrap();
    drop(store);
    std::process::exit(0);
}

const SHARED_GUIDS: usize = 240;
const OWN_GUIDS: usize = 30;

#[test]
fn processes_starting_together_create_each_object_once() {
    const PROCS: usize = 5;
    let f = TempFile::new("race");
    let go = TempFile::new("race-go");
    let mut kids: Vec<ChildProc> = (0..PROCS)
        .map(|i| {
            ChildProc::spawn(
                ENTRY,
                "race",
                &[
                    ("WEIR_STATS_FILE", f.path().display().to_string()),
                    ("WEIR_STATS_GO", go.path().display().to_string()),
                    ("WEIR_STATS_ID", i.to_string()),
                ],
            )
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    std::fs::write(go.path(), b"go").unwrap();
    for k in &mut kids {
        assert_eq!(k.recv(), "done");
    }
    let snap = read_snapshot(f.path()).unwrap();
    assert_eq!(snap.objects.len(), SHARED_GUIDS + PROCS * OWN_GUIDS);
    let mut seen = HashSet::new();
    for o in &snap.objects {
        assert!(seen.insert((o.guid.clone(), o.ty)), "duplicate {}", o.guid);
        let want = if o.guid.starts_with("shared-") {
            PROCS as u64
        } else {
            1
        };
        assert_eq!(o.get(Counter::Sessions), want, "{}", o.guid);
    }
    for i in 0..SHARED_GUIDS {
        assert!(snap
            .find(&format!("shared-{i}"), ObjectType::ALL[i % 6])
            .is_some());
    }
    for k in kids {
        k.exit();
    }
}

/// A GUID that carries a checksum of its number, so a GUID torn between two
/// recycled objects is detected.
fn checked_guid(n: u64) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in n.to_le_bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // vary the length a lot so a torn copy mixes different lengths
    let pad = "p".repeat((n % 90) as usize);
    format!("c{n}-{pad}-{:08x}", h as u32)
}

fn guid_is_intact(g: &str) -> bool {
    let Some(rest) = g.strip_prefix('c') else {
        return false;
    };
    let Some((num, _)) = rest.split_once('-') else {
        return false;
    };
    num.parse::<u64>().is_ok_and(|n| checked_guid(n) == g)
}

const CHURN_ROUNDS: u64 = 150;

/// Child of `reader_sees_consistent_objects_while_they_are_recycled`: opens,
/// registers 30 fresh GUIDs (recycling the previous round's objects), closes;
/// over and over.
fn churn_child() {
    let file = std::env::var("WEIR_STATS_FILE").unwrap();
    for round in 0..CHURN_ROUNDS {
        let (s, _) = StatsStore::open(
            Some(std::path::Path::new(&file)),
            1000,
            StoreOptions::default(),
        )
        .unwrap();
        let names: Vec<String> = (0..30u64)
            .map(|k| checked_guid((round * 30 + k).wrapping_mul(2_654_435_761) % 1_000_000_007))
            .collect();
        let ents: Vec<_> = names
            .iter()
            .map(|n| (Some(n.as_str()), ObjectType::Server))
            .collect();
        let (hs, w) = s.register_many(&ents);
        assert!(w.is_empty(), "{w:?}");
        for h in hs {
            h.inc(Counter::Requests);
        }
    }
    println!("@@ done");
    std::process::exit(0);
}

#[test]
fn reader_sees_consistent_objects_while_they_are_recycled() {
    let f = TempFile::new("churn");
    assert!(guid_is_intact(&checked_guid(12345)));
    let mut kid = ChildProc::spawn(
        ENTRY,
        "churn",
        &[("WEIR_STATS_FILE", f.path().display().to_string())],
    );
    let mut reads = 0;
    let mut objects_seen = 0;
    // bounded: the child runs a fixed number of rounds
    for _ in 0..100_000 {
        if let Ok(snap) = read_snapshot(f.path()) {
            reads += 1;
            for o in &snap.objects {
                assert!(guid_is_intact(&o.guid), "torn guid {:?}", o.guid);
                objects_seen += 1;
            }
        }
        if let Some(done) = kid.try_recv() {
            assert_eq!(done, "done");
            break;
        }
    }
    assert!(
        reads > 10 && objects_seen > 0,
        "reads {reads}, objects {objects_seen}"
    );
    let snap = read_snapshot(f.path()).unwrap();
    assert_eq!(
        snap.objects.len(),
        30,
        "recycled every round, never appended"
    );
}
