//! The real `weir` binary as a child process of a test: started on a
//! config file, ready once its banner is printed, killed (by its own PID)
//! when the test ends, even on failure.

#![allow(dead_code, reason = "each test crate uses a subset of the helpers")]

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `weir run --no-xdp -f CONFIG`.
pub struct Weir {
    child: Child,
    /// Kept open so weir's later output never hits a closed pipe.
    _stdout: Option<BufReader<ChildStdout>>,
}

impl Weir {
    /// Starts weir on `config` and waits (at most 20 s) for its banner.
    pub fn start(config: &Path) -> Weir {
        let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(["run", "--no-xdp", "-f"])
            .arg(config)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start weir");
        let mut out = BufReader::new(child.stdout.take().expect("stdout"));
        // Killed on drop from here on, also if the banner never comes.
        let mut weir = Weir {
            child,
            _stdout: None,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut banner = String::new();
        while !banner.contains("Stop with") {
            assert!(Instant::now() < deadline, "no banner: {banner}");
            let mut line = String::new();
            assert!(
                out.read_line(&mut line).unwrap() > 0,
                "weir exited: {banner}"
            );
            banner.push_str(&line);
        }
        weir._stdout = Some(out);
        weir
    }

    /// Its process id (for signals).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its exit status, if it has exited.
    pub fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().expect("wait for weir")
    }
}

impl Drop for Weir {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A loopback port free right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
