//! Shared helpers of the `stats_*` integration tests: unique temp files and
//! scriptable child processes (the test binary re-executed with
//! `WEIR_STATS_CHILD` set).
//!
//! A child reads one command per line on stdin and answers one line starting
//! with `@@ ` on stdout, so the parent drives several processes step by step.
//! Every wait is bounded; a child is SIGKILLed when its handle drops.

#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver};
use std::sync::Arc;
use std::time::Duration;

use proxy_user::stats::{
    Backing, Counter, EntityCounters, ManualClock, ObjectType, StatsStore, StoreOptions,
};

/// Env var selecting the child role.
pub const CHILD_ENV: &str = "WEIR_STATS_CHILD";
/// Boot id of every manual clock in these tests: not this host's, so the
/// reader (which ages files with the host's monotonic clock when the file's
/// clock is based on this boot) falls back to the stored clock and results
/// do not depend on the machine's uptime.
pub const TEST_BOOT: u64 = 0x7e57_b007;

/// Longest wait for one child answer.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(120);

/// A uniquely named file under /dev/shm, removed on drop.
pub struct TempFile(pub PathBuf);

impl TempFile {
    pub fn new(tag: &str) -> TempFile {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = PathBuf::from(format!(
            "/dev/shm/weir-stats-it-{}-{}-{}",
            tag,
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_file(&p);
        TempFile(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

pub fn ty_from(s: &str) -> ObjectType {
    ObjectType::ALL
        .into_iter()
        .find(|t| t.name() == s)
        .unwrap_or_else(|| panic!("unknown type {s}"))
}

pub fn counter_from(s: &str) -> Counter {
    Counter::ALL
        .into_iter()
        .find(|c| c.name() == s)
        .unwrap_or_else(|| panic!("unknown counter {s}"))
}

/// A scriptable child process.
pub struct ChildProc {
    child: Child,
    stdin: ChildStdin,
    answers: Receiver<String>,
}

impl ChildProc {
    /// Re-executes this test binary running `entry_test` with role `role`.
    pub fn spawn(entry_test: &str, role: &str, env: &[(&str, String)]) -> ChildProc {
        let exe = std::env::current_exe().expect("current exe");
        let mut cmd = Command::new(exe);
        cmd.args([
            "--exact",
            entry_test,
            "--nocapture",
            "--test-threads=1",
            "-q",
        ])
        .env(CHILD_ENV, role)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn child");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(a) = line.strip_prefix("@@ ") {
                    if tx.send(a.to_string()).is_err() {
                        break;
                    }
                }
            }
        });
        ChildProc {
            child,
            stdin,
            answers: rx,
        }
    }

    /// Sends a command without waiting.
    pub fn send(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").expect("write to child");
        self.stdin.flush().expect("flush child stdin");
    }

    /// Waits for the next answer.
    pub fn recv(&mut self) -> String {
        let a = self
            .answers
            .recv_timeout(ANSWER_TIMEOUT)
            .unwrap_or_else(|e| panic!("child {} gave no answer: {e}", self.child.id()));
        assert!(!a.starts_with("ERR"), "child failed: {a}");
        a
    }

    /// The next answer if one arrived already.
    pub fn try_recv(&mut self) -> Option<String> {
        self.answers.try_recv().ok()
    }

    /// Sends a command and waits for its answer.
    pub fn cmd(&mut self, line: &str) -> String {
        self.send(line);
        self.recv()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILLs the child (our own spawn) and reaps it.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Asks the child to exit and waits (bounded) for it.
    pub fn exit(mut self) {
        self.send("exit");
        for _ in 0..1200 {
            if let Ok(Some(st)) = self.child.try_wait() {
                assert!(st.success(), "child exited with {st}");
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("child {} did not exit", self.child.id());
    }
}

impl Drop for ChildProc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Child side of the script protocol. Commands:
/// * `open PATH MAX [keep] [clock=NS]` -> `backing local|file:SLOT warnings=N [w...]`
/// * `reg GUID TYPE` (repeatable pairs: `reg g1 t1 g2 t2 ...`) -> `ok`
/// * `add GUID TYPE COUNTER N` -> `ok` (one atomic add of N)
/// * `incloop GUID TYPE COUNTER N` -> `ok` (N separate increments)
/// * `get GUID TYPE COUNTER` -> `val X`
/// * `mirror GUID TYPE COUNTER SUM` -> `val DELTA`
/// * `mirrorloop GUID TYPE COUNTER MAPFILE PASSES` -> `ok`
/// * `advance NS` (manual clock) / `hb` -> `ok`
/// * `nowms` -> `val X`
/// * `close` -> `ok`; `exit` -> process exits 0 (store closed first).
pub fn run_script_child() {
    let mut store: Option<StatsStore> = None;
    let mut clock: Option<Arc<ManualClock>> = None;
    let mut handles: HashMap<(String, ObjectType), EntityCounters> = HashMap::new();
    let stdin = std::io::stdin();
    let say = |s: String| {
        let mut o = std::io::stdout().lock();
        writeln!(o, "@@ {s}").unwrap();
        o.flush().unwrap();
    };
    for line in stdin.lock().lines() {
        let line = line.expect("stdin");
        let w: Vec<&str> = line.split_whitespace().collect();
        let Some(&verb) = w.first() else { continue };
        let get = |h: &HashMap<(String, ObjectType), EntityCounters>, g: &str, t: &str| {
            h.get(&(g.to_string(), ty_from(t)))
                .unwrap_or_else(|| panic!("{g} {t} not registered"))
                .clone()
        };
        match verb {
            "open" => {
                let path = PathBuf::from(w[1]);
                let max: u64 = w[2].parse().unwrap();
                let mut opts = StoreOptions::default();
                for extra in &w[3..] {
                    if *extra == "keep" {
                        opts.keep_counters = true;
                    } else if let Some(ns) = extra.strip_prefix("clock=") {
                        let c = Arc::new(ManualClock::with_boot(ns.parse().unwrap(), TEST_BOOT));
                        clock = Some(c.clone());
                        opts.clock = c;
                    }
                }
                let (s, warns) = StatsStore::open(Some(&path), max, opts).expect("open");
                let b = match s.backing() {
                    Backing::Local => "local".to_string(),
                    Backing::File { slot, .. } => format!("file:{slot}"),
                };
                store = Some(s);
                say(format!(
                    "backing {b} warnings={} {}",
                    warns.len(),
                    warns.join(" | ").replace('\n', " ")
                ));
            }
            "reg" => {
                let s = store.as_ref().expect("open first");
                let ents: Vec<(Option<&str>, ObjectType)> = w[1..]
                    .chunks(2)
                    .map(|p| (Some(p[0]), ty_from(p[1])))
                    .collect();
                let (hs, _warns) = s.register_many(&ents);
                for ((g, t), h) in ents.iter().zip(hs) {
                    handles.insert((g.unwrap().to_string(), *t), h);
                }
                say("ok".into());
            }
            "add" => {
                get(&handles, w[1], w[2]).add(counter_from(w[3]), w[4].parse().unwrap());
                say("ok".into());
            }
            "incloop" => {
                let h = get(&handles, w[1], w[2]);
                let c = counter_from(w[3]);
                let n: u64 = w[4].parse().unwrap();
                for _ in 0..n {
                    h.inc(c);
                }
                say("ok".into());
            }
            "get" => {
                let v = get(&handles, w[1], w[2]).get(counter_from(w[3]));
                say(format!("val {v}"));
            }
            "mirror" => {
                let h = get(&handles, w[1], w[2]);
                let d = h.mirror(counter_from(w[3]), w[4].parse().unwrap()).unwrap();
                say(format!("val {d}"));
            }
            "mirrorloop" => {
                let h = get(&handles, w[1], w[2]);
                let c = counter_from(w[3]);
                let map = FakeMap::open(Path::new(w[4]));
                let passes: u64 = w[5].parse().unwrap();
                for _ in 0..passes {
                    let t = h.mirror_begin(c).unwrap();
                    let sum = map.sum();
                    t.commit(sum);
                }
                say("ok".into());
            }
            "advance" => {
                clock
                    .as_ref()
                    .expect("manual clock")
                    .advance(w[1].parse().unwrap());
                say("ok".into());
            }
            "hb" => {
                let warns = store.as_ref().expect("open first").heartbeat();
                say(format!("ok warnings={}", warns.len()));
            }
            "nowms" => {
                say(format!(
                    "val {}",
                    store.as_ref().expect("open first").now_ms()
                ));
            }
            "close" => {
                store.as_ref().expect("open first").close();
                say("ok".into());
            }
            "exit" => {
                drop(handles);
                drop(store);
                std::process::exit(0);
            }
            other => say(format!("ERR unknown command {other}")),
        }
    }
    std::process::exit(0);
}

/// A stand-in for a per-CPU BPF map: `cpus` u64 cells in a shared file, each
/// incremented by a writer process; `sum` adds them like the sync task adds
/// per-CPU values.
pub struct FakeMap {
    ptr: *mut u64,
    cpus: usize,
}

impl FakeMap {
    pub const CPUS: usize = 2;

    pub fn create(path: &Path) {
        std::fs::write(path, vec![0u8; 8 * Self::CPUS]).unwrap();
    }

    pub fn open(path: &Path) -> FakeMap {
        use std::os::unix::io::AsRawFd;
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .unwrap();
        // SAFETY: mapping a small file we created, shared, read-write.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                8 * Self::CPUS,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                f.as_raw_fd(),
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED);
        FakeMap {
            ptr: p.cast(),
            cpus: Self::CPUS,
        }
    }

    fn cell(&self, cpu: usize) -> &std::sync::atomic::AtomicU64 {
        assert!(cpu < self.cpus);
        // SAFETY: in-bounds, aligned, shared memory accessed atomically.
        unsafe { &*self.ptr.add(cpu).cast::<std::sync::atomic::AtomicU64>() }
    }

    pub fn bump(&self, cpu: usize, n: u64) {
        self.cell(cpu).fetch_add(n, Ordering::Relaxed);
    }

    pub fn sum(&self) -> u64 {
        (0..self.cpus)
            .map(|c| self.cell(c).load(Ordering::Relaxed))
            .sum()
    }
}

/// Parses `val X`.
pub fn val(answer: &str) -> u64 {
    answer
        .strip_prefix("val ")
        .unwrap_or_else(|| panic!("not a value: {answer}"))
        .parse()
        .unwrap()
}
