//! A small network of namespaces for end-to-end tests and the benchmark:
//! one client, one balancer, N reals, joined by veth pairs.
//!
//! ```text
//!  [client ns]  c0 198.18.10.2/24 fd00:10::2/64
//!        |
//!  [balancer ns] b0 198.18.10.1/24 fd00:10::1/64      VIPs 198.18.100.1, fd00:100::1
//!                br<i> 198.18.<11+i>.1/24 fd00:<11+i>::1/64
//!        |
//!  [real i ns]  r0 198.18.<11+i>.10/24 fd00:<11+i>::10/64  (default route via the balancer)
//! ```
//!
//! Every MAC is fixed and every neighbour entry is permanent, so the XDP
//! program's `bpf_fib_lookup` never meets an unresolved neighbour. Checksum
//! offload is off on every veth: frames XDP redirects from one veth to
//! another otherwise arrive with the sender's partial checksums.
//! Processes started in a namespace ([`Lab::spawn`]) are killed when their
//! guard drops, before the namespaces are deleted.

use std::{
    fs::File,
    os::{fd::AsRawFd, unix::process::CommandExt},
    process::{Child, Command, Stdio},
};

use crate::netns::NetNs;

/// The client's IPv4 address.
pub const CLIENT4: &str = "198.18.10.2";
/// The client's IPv6 address.
pub const CLIENT6: &str = "fd00:10::2";
/// The balancer's client-side address.
pub const LB_CLIENT_SIDE4: &str = "198.18.10.1";
/// The IPv4 VIP.
pub const VIP4: &str = "198.18.100.1";
/// The IPv6 VIP.
pub const VIP6: &str = "fd00:100::1";
/// MAC of the client's `c0`.
pub const CLIENT_MAC: [u8; 6] = [0x02, 0x10, 0, 0, 0, 0x02];
/// MAC of the balancer's `b0`.
pub const LB_MAC: [u8; 6] = [0x02, 0x10, 0, 0, 0, 0x01];

/// IPv4 address of real `i`.
pub fn real4(i: usize) -> String {
    format!("198.18.{}.10", 11 + i)
}

/// IPv6 address of real `i`.
pub fn real6(i: usize) -> String {
    format!("fd00:{}::10", 11 + i)
}

/// The balancer's IPv4 address toward real `i`.
pub fn lb_real_side4(i: usize) -> String {
    format!("198.18.{}.1", 11 + i)
}

fn mac(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The namespaces; deleted on drop (after the processes, see [`Spawned`]).
pub struct Lab {
    /// The client.
    pub client: NetNs,
    /// The balancer.
    pub balancer: NetNs,
    /// The reals.
    pub reals: Vec<NetNs>,
}

/// Turns off transmit checksum offload on `iface` in `ns` (ethtool).
fn tx_csum_off(ns: &NetNs, iface: &str) -> Result<(), String> {
    ns.exec("ethtool", &["-K", iface, "tx", "off"]).map(|_| ())
}

impl Lab {
    /// Builds the network with `n` reals.
    pub fn new(n: usize) -> Result<Self, String> {
        let client = NetNs::new("cl")?;
        let balancer = NetNs::new("lb")?;
        let mut reals = Vec::new();
        for _ in 0..n {
            reals.push(NetNs::new("rs")?);
        }
        let off_all = [
            "net.ipv4.conf.all.rp_filter=0",
            "net.ipv4.conf.default.rp_filter=0",
        ];
        // Client <-> balancer.
        client.ip(&[
            "link",
            "add",
            "c0",
            "type",
            "veth",
            "peer",
            "name",
            "b0",
            "netns",
            balancer.name(),
        ])?;
        client.ip(&["link", "set", "c0", "address", &mac(CLIENT_MAC)])?;
        balancer.ip(&["link", "set", "b0", "address", &mac(LB_MAC)])?;
        client.ip(&["addr", "add", "198.18.10.2/24", "dev", "c0"])?;
        client.ip(&["-6", "addr", "add", "fd00:10::2/64", "dev", "c0", "nodad"])?;
        balancer.ip(&["addr", "add", "198.18.10.1/24", "dev", "b0"])?;
        balancer.ip(&["-6", "addr", "add", "fd00:10::1/64", "dev", "b0", "nodad"])?;
        client.ip(&["link", "set", "c0", "up"])?;
        balancer.ip(&["link", "set", "b0", "up"])?;
        client.ip(&["route", "add", "default", "via", "198.18.10.1"])?;
        client.ip(&["-6", "route", "add", "default", "via", "fd00:10::1"])?;
        for (ns, addr, dev, m) in [
            (&client, "198.18.10.1", "c0", LB_MAC),
            (&client, "fd00:10::1", "c0", LB_MAC),
            (&balancer, CLIENT4, "b0", CLIENT_MAC),
            (&balancer, CLIENT6, "b0", CLIENT_MAC),
        ] {
            ns.ip(&[
                "neigh",
                "add",
                addr,
                "lladdr",
                &mac(m),
                "dev",
                dev,
                "nud",
                "permanent",
            ])?;
        }
        client.sysctl(&off_all)?;
        balancer.sysctl(&off_all)?;
        balancer.sysctl(&["net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"])?;
        tx_csum_off(&client, "c0")?;
        tx_csum_off(&balancer, "b0")?;
        // Balancer <-> reals.
        for (i, real) in reals.iter().enumerate() {
            let net = 11 + i;
            let lb_if = format!("br{i}");
            let lb_mac = [0x02, 0x11, 0, 0, i as u8, 0x01];
            let real_mac = [0x02, 0x11, 0, 0, i as u8, 0x10];
            balancer.ip(&[
                "link",
                "add",
                &lb_if,
                "type",
                "veth",
                "peer",
                "name",
                "r0",
                "netns",
                real.name(),
            ])?;
            balancer.ip(&["link", "set", &lb_if, "address", &mac(lb_mac)])?;
            real.ip(&["link", "set", "r0", "address", &mac(real_mac)])?;
            balancer.ip(&["addr", "add", &format!("198.18.{net}.1/24"), "dev", &lb_if])?;
            balancer.ip(&[
                "-6",
                "addr",
                "add",
                &format!("fd00:{net}::1/64"),
                "dev",
                &lb_if,
                "nodad",
            ])?;
            real.ip(&["addr", "add", &format!("198.18.{net}.10/24"), "dev", "r0"])?;
            real.ip(&[
                "-6",
                "addr",
                "add",
                &format!("fd00:{net}::10/64"),
                "dev",
                "r0",
                "nodad",
            ])?;
            balancer.ip(&["link", "set", &lb_if, "up"])?;
            real.ip(&["link", "set", "r0", "up"])?;
            real.ip(&["route", "add", "default", "via", &format!("198.18.{net}.1")])?;
            real.ip(&[
                "-6",
                "route",
                "add",
                "default",
                "via",
                &format!("fd00:{net}::1"),
            ])?;
            let (r4, r6) = (real4(i), real6(i));
            let (l4, l6) = (format!("198.18.{net}.1"), format!("fd00:{net}::1"));
            for (ns, addr, dev, m) in [
                (&balancer, r4.as_str(), lb_if.as_str(), real_mac),
                (&balancer, r6.as_str(), lb_if.as_str(), real_mac),
                (real, l4.as_str(), "r0", lb_mac),
                (real, l6.as_str(), "r0", lb_mac),
            ] {
                ns.ip(&[
                    "neigh",
                    "add",
                    addr,
                    "lladdr",
                    &mac(m),
                    "dev",
                    dev,
                    "nud",
                    "permanent",
                ])?;
            }
            real.sysctl(&off_all)?;
            tx_csum_off(&balancer, &lb_if)?;
            tx_csum_off(real, "r0")?;
        }
        Ok(Self {
            client,
            balancer,
            reals,
        })
    }

    /// Puts the VIPs on real `i`'s loopback (direct server return: the
    /// real accepts the decapsulated packets and answers from the VIP).
    pub fn vips_on_real_loopback(&self, i: usize) -> Result<(), String> {
        self.reals[i].ip(&["addr", "add", &format!("{VIP4}/32"), "dev", "lo"])?;
        self.reals[i].ip(&[
            "-6",
            "addr",
            "add",
            &format!("{VIP6}/128"),
            "dev",
            "lo",
            "nodad",
        ])?;
        Ok(())
    }

    /// Starts `cmd` inside `ns` (network namespace only: the process keeps
    /// this mount namespace, so its bpffs pins are visible here).
    pub fn spawn(ns: &NetNs, cmd: Command) -> Result<Spawned, String> {
        Self::spawn_on(ns, cmd, None)
    }

    /// As [`Lab::spawn`], optionally pinned to one CPU (with every thread
    /// it starts). Conntrack is per CPU and veths process a frame on the
    /// CPU that sent it, so exact per-flow counts need one CPU throughout.
    pub fn spawn_on(ns: &NetNs, mut cmd: Command, cpu: Option<usize>) -> Result<Spawned, String> {
        let target = File::open(format!("/run/netns/{}", ns.name()))
            .map_err(|e| format!("open netns {}: {e}", ns.name()))?;
        let fd = target.as_raw_fd();
        // SAFETY: pre_exec runs in the forked child before exec; setns is
        // async-signal-safe and `fd` stays open until spawn returns.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if let Some(cpu) = cpu {
                    let mut set: libc::cpu_set_t = std::mem::zeroed();
                    libc::CPU_SET(cpu, &mut set);
                    if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0
                    {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let shown = format!("{cmd:?}");
        let child = cmd
            .stdin(Stdio::null())
            .spawn()
            .map_err(|e| format!("start {shown}: {e}"))?;
        drop(target);
        Ok(Spawned { child, shown })
    }
}

/// A process started in a namespace; stopped (SIGTERM, then SIGKILL) and
/// reaped on drop.
pub struct Spawned {
    /// The process.
    pub child: Child,
    shown: String,
}

impl Spawned {
    /// Sends SIGTERM and waits (bounded) for the exit status.
    pub fn terminate(&mut self, within: std::time::Duration) -> Option<std::process::ExitStatus> {
        // SAFETY: kill(2) on the PID of a child we spawned and have not reaped.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = std::time::Instant::now() + within;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        None
    }
}

impl Spawned {
    /// Waits (bounded) for the process to exit and returns its stdout
    /// (when piped); None if it did not exit in time (it is then killed on drop).
    pub fn wait_output(mut self, within: std::time::Duration) -> Option<String> {
        let mut stdout = self.child.stdout.take();
        let reader = std::thread::spawn(move || {
            let mut s = String::new();
            if let Some(out) = stdout.as_mut() {
                let _ = std::io::Read::read_to_string(out, &mut s);
            }
            s
        });
        let deadline = std::time::Instant::now() + within;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return reader.join().ok();
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        // SIGTERM first (weir then detaches and removes its pins), SIGKILL
        // if it is still there after a short, bounded wait.
        if let Ok(None) = self.child.try_wait() {
            if self.terminate(std::time::Duration::from_secs(2)).is_some() {
                return;
            }
            if let Err(e) = self.child.kill() {
                eprintln!("warning: could not kill {}: {e}", self.shown);
            }
            let _ = self.child.wait();
        }
    }
}

/// Attaches a raw helper program (`crate::rawbpf`) to `iface` in `ns` in
/// native mode, through a temporary bpffs pin.
pub fn attach_raw(
    ns: &NetNs,
    iface: &str,
    prog: &crate::rawbpf::RawProgram,
    tag: &str,
) -> Result<(), String> {
    proxy_user::l4::bpffs::ensure_mounted().map_err(|e| format!("bpffs: {e}"))?;
    let pin =
        std::path::PathBuf::from(format!("/sys/fs/bpf/weir-lab-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_file(&pin);
    prog.pin(&pin).map_err(|e| format!("pin: {e}"))?;
    // Not `ip -n`: that remounts /sys in a new mount namespace, where this
    // pin is not visible. Switch the network namespace only.
    let mut cmd = Command::new("ip");
    cmd.args(["link", "set", "dev", iface, "xdpdrv", "pinned"])
        .arg(&pin)
        .stdout(Stdio::null());
    let result = Lab::spawn(ns, cmd).and_then(|mut p| match p.child.wait() {
        Ok(s) if s.success() => Ok(()),
        other => Err(format!("ip link set {iface} xdpdrv pinned: {other:?}")),
    });
    let _ = std::fs::remove_file(&pin);
    result
}
