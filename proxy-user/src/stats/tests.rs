//! Unit tests of the store within one process (several stores on one file
//! stand in for several processes; cross-process tests are in
//! `tests/stats_*.rs`).

use super::*;
use std::sync::atomic::AtomicUsize;

pub(crate) struct TempFile(pub PathBuf);

impl TempFile {
    pub(crate) fn new(tag: &str) -> TempFile {
        static N: AtomicUsize = AtomicUsize::new(0);
        TempFile(PathBuf::from(format!(
            "/dev/shm/weir-stats-unit-{}-{}-{}",
            tag,
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        )))
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn opts_with(clock: Arc<ManualClock>) -> StoreOptions {
    StoreOptions {
        clock,
        ..StoreOptions::default()
    }
}

const SEC: u64 = 1_000_000_000;

#[test]
fn local_store_counts_in_memory() {
    let (s, w) = StatsStore::open(None, 0, StoreOptions::default()).unwrap();
    assert!(w.is_empty());
    assert_eq!(s.backing(), Backing::Local);
    let e = s.register(Some("fe1"), ObjectType::Frontend);
    e.add(Counter::BytesIn, 10);
    e.inc(Counter::Requests);
    assert_eq!(e.get(Counter::BytesIn), 10);
    assert_eq!(e.get(Counter::Requests), 1);
    assert!(!e.is_shared());
}

#[test]
fn entities_without_guid_are_local_in_a_file_store() {
    let f = TempFile::new("noguid");
    let (s, _) = StatsStore::open(Some(&f.0), 100, StoreOptions::default()).unwrap();
    let a = s.register(None, ObjectType::Backend);
    let b = s.register(Some("be1"), ObjectType::Backend);
    assert!(!a.is_shared());
    assert!(b.is_shared());
    a.inc(Counter::Requests);
    let snap = read_snapshot(&f.0).unwrap();
    assert_eq!(snap.objects.len(), 1);
    assert_eq!(snap.objects[0].guid, "be1");
}

#[test]
fn second_store_adopts_the_same_object() {
    let f = TempFile::new("adopt");
    let (s1, _) = StatsStore::open(Some(&f.0), 100, StoreOptions::default()).unwrap();
    let (s2, _) = StatsStore::open(Some(&f.0), 100, StoreOptions::default()).unwrap();
    let a = s1.register(Some("srv1"), ObjectType::Server);
    let b = s2.register(Some("srv1"), ObjectType::Server);
    a.add(Counter::Requests, 3);
    b.add(Counter::Requests, 4);
    assert_eq!(a.get(Counter::Requests), 7);
    assert_eq!(read_snapshot(&f.0).unwrap().objects.len(), 1);
}

#[test]
fn mirror_adds_deltas_and_rebaselines_a_recreated_map() {
    let (s, _) = StatsStore::open(None, 0, StoreOptions::default()).unwrap();
    let e = s.register(Some("vip"), ObjectType::L4Service);
    assert_eq!(e.mirror(Counter::PacketsIn, 100).unwrap(), 100);
    assert_eq!(e.mirror(Counter::PacketsIn, 150).unwrap(), 50);
    assert_eq!(e.mirror(Counter::PacketsIn, 150).unwrap(), 0);
    // map re-created: its sum starts over
    assert_eq!(e.mirror(Counter::PacketsIn, 30).unwrap(), 30);
    assert_eq!(e.mirror(Counter::PacketsIn, 35).unwrap(), 5);
    assert_eq!(e.get(Counter::PacketsIn), 185);
    assert!(e.mirror(Counter::Requests, 1).is_err());
}

#[test]
fn stale_mirror_token_is_dropped_not_counted_as_a_recreated_map() {
    let (s, _) = StatsStore::open(None, 0, StoreOptions::default()).unwrap();
    let e = s.register(Some("vip"), ObjectType::L4Service);
    e.mirror(Counter::BytesIn, 1000).unwrap();
    let stale = e.mirror_begin(Counter::BytesIn).unwrap(); // reads map: 1100
    let fresh = e.mirror_begin(Counter::BytesIn).unwrap(); // reads map: 1200
    assert_eq!(fresh.commit(1200), 200);
    assert_eq!(stale.commit(1100), 0);
    assert_eq!(e.get(Counter::BytesIn), 1200);
}

#[test]
fn rates_follow_the_shared_clock() {
    let clock = Arc::new(ManualClock::new(1000 * SEC));
    let (s, _) = StatsStore::open(None, 0, opts_with(clock.clone())).unwrap();
    let e = s.register(Some("fe"), ObjectType::Frontend);
    for _ in 0..20 {
        e.session_started();
    }
    assert_eq!(e.rate(Rate::Sessions), 20);
    clock.advance(SEC + SEC / 2); // 1.5 s later: half of the previous second
    assert_eq!(e.rate(Rate::Sessions), 10);
    clock.advance(SEC);
    assert_eq!(e.rate(Rate::Sessions), 0);
    assert_eq!(e.age_ms(Stamp::LastSession), Some(2500));
}

#[tokio::test(flavor = "current_thread")]
async fn spawned_heartbeat_beats_until_the_store_is_closed() {
    let f = TempFile::new("hbtask");
    let (s, _) = StatsStore::open(Some(&f.0), 100, StoreOptions::default()).unwrap();
    let (slot, ..) = s.slot_owner().unwrap();
    let beat = |p: &Path| {
        read_snapshot(p)
            .unwrap()
            .slots
            .iter()
            .find(|x| x.index == slot)
            .map(|x| x.heartbeat_ns)
    };
    let first = beat(&f.0).unwrap();
    let task = s.spawn_heartbeat(Duration::from_millis(5));
    let mut moved = false;
    for _ in 0..400 {
        tokio::time::sleep(Duration::from_millis(5)).await;
        if beat(&f.0).unwrap() > first {
            moved = true;
            break;
        }
    }
    assert!(moved, "the task beat the heartbeat");
    s.close();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("task ends after close")
        .unwrap();
    assert_eq!(beat(&f.0), None, "slot released");
    assert!(read_snapshot(&f.0).unwrap().clean_stop);
}

#[test]
fn store_and_handles_can_be_shared_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<StatsStore>();
    assert_send_sync::<EntityCounters>();
    let f = TempFile::new("threads");
    let (s, _) = StatsStore::open(Some(&f.0), 100, StoreOptions::default()).unwrap();
    let e = s.register(Some("fe"), ObjectType::Frontend);
    std::thread::scope(|sc| {
        for _ in 0..4 {
            let e = e.clone();
            sc.spawn(move || {
                for _ in 0..10_000 {
                    e.request();
                }
            });
        }
    });
    assert_eq!(e.get(Counter::Requests), 40_000);
    // handles outlive the store: memory stays mapped
    drop(s);
    e.inc(Counter::Requests);
    assert_eq!(e.get(Counter::Requests), 40_001);
}
