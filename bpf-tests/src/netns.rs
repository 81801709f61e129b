//! Network namespaces for tests, as RAII guards (modelled on aya's
//! `NetNsGuard`): a uniquely named namespace (`weir-<tag>-<pid>-<n>`) with
//! `lo` up, deleted on drop; entering one with `setns` on the calling thread
//! and leaving it again on drop. Drops never panic (a drop during a panic
//! would abort the test binary): failures are logged to stderr instead.
//!
//! Only `ip`/`sysctl` commands that touch the test's own namespaces are run.

use std::{
    fs::File,
    os::fd::AsRawFd,
    process::{Command, Output},
    sync::atomic::{AtomicU32, Ordering},
};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A network namespace created for a test; deleted on drop.
pub struct NetNs {
    name: String,
}

/// Runs a command; the error carries the command line and its stderr.
pub fn run(cmd: &mut Command) -> Result<Output, String> {
    let shown = format!("{cmd:?}");
    let out = cmd.output().map_err(|e| format!("{shown}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{shown} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(out)
}

impl NetNs {
    /// Creates `weir-<tag>-<pid>-<n>` and brings its `lo` up.
    pub fn new(tag: &str) -> Result<Self, String> {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("weir-{tag}-{}-{n}", std::process::id());
        run(Command::new("ip").args(["netns", "add", &name]))?;
        let ns = Self { name };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// The namespace's name (for `ip -n` and `ip netns exec`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `ip -n <ns> <args>`.
    pub fn ip(&self, args: &[&str]) -> Result<Output, String> {
        run(Command::new("ip").arg("-n").arg(&self.name).args(args))
    }

    /// A command that runs `program` inside the namespace (`ip netns exec`).
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name, program]);
        cmd
    }

    /// Runs `program args` inside the namespace to completion.
    pub fn exec(&self, program: &str, args: &[&str]) -> Result<Output, String> {
        run(self.command(program).args(args))
    }

    /// Sets sysctls inside the namespace (`key=value`).
    pub fn sysctl(&self, settings: &[&str]) -> Result<(), String> {
        let mut args = vec!["-q", "-w"];
        args.extend_from_slice(settings);
        self.exec("sysctl", &args).map(|_| ())
    }

    /// The ifindex of `iface` in this namespace.
    pub fn ifindex(&self, iface: &str) -> Result<u32, String> {
        let out = self.exec("cat", &[&format!("/sys/class/net/{iface}/ifindex")])?;
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .map_err(|e| format!("ifindex of {iface}: {e}"))
    }

    /// Moves the calling thread into the namespace until the guard drops.
    /// Only this thread moves (setns affects the calling thread).
    pub fn enter(&self) -> Result<Entered, String> {
        let back = File::open("/proc/thread-self/ns/net")
            .map_err(|e| format!("open this thread's netns: {e}"))?;
        let target = File::open(format!("/run/netns/{}", self.name))
            .map_err(|e| format!("open netns {}: {e}", self.name))?;
        // SAFETY: setns on valid namespace fds; only this thread changes namespace.
        if unsafe { libc::setns(target.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(format!(
                "setns into {}: {}",
                self.name,
                std::io::Error::last_os_error()
            ));
        }
        Ok(Entered { back })
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        if let Err(e) = run(Command::new("ip").args(["netns", "del", &self.name])) {
            eprintln!("warning: could not delete network namespace: {e}");
        }
    }
}

/// The calling thread is inside a test namespace; dropping returns it to
/// the namespace it came from.
pub struct Entered {
    back: File,
}

impl Drop for Entered {
    fn drop(&mut self) {
        // SAFETY: setns back to the namespace fd we opened before entering.
        if unsafe { libc::setns(self.back.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            eprintln!(
                "warning: could not return the test thread to its network namespace: {}",
                std::io::Error::last_os_error()
            );
        }
    }
}

/// Pins the calling thread to one CPU. The conntrack map is per-CPU, so a
/// test that expects a flow to be found again must stay on one CPU.
pub fn pin_thread_to_cpu(cpu: usize) -> Result<(), String> {
    // SAFETY: a zeroed cpu_set_t is empty; CPU_SET writes inside it;
    // sched_setaffinity(0) applies to the calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(format!(
                "sched_setaffinity to CPU {cpu}: {}",
                std::io::Error::last_os_error()
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_is_created_entered_left_and_deleted() {
        if !crate::require_bpf("namespace_is_created_entered_left_and_deleted") {
            return;
        }
        let before = std::fs::read_link("/proc/thread-self/ns/net").unwrap();
        let ns = NetNs::new("guard").expect("create netns");
        let path = format!("/run/netns/{}", ns.name());
        assert!(std::path::Path::new(&path).exists());
        {
            let _in = ns.enter().expect("enter");
            let inside = std::fs::read_link("/proc/thread-self/ns/net").unwrap();
            assert_ne!(inside, before, "the thread moved");
        }
        assert_eq!(
            std::fs::read_link("/proc/thread-self/ns/net").unwrap(),
            before,
            "the thread came back"
        );
        drop(ns);
        assert!(!std::path::Path::new(&path).exists(), "deleted on drop");
    }
}
