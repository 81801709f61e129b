//! Loading and attaching the XDP program, and the lifetime of its pins.
//!
//! Maps are pinned by name under `/sys/fs/bpf/weir/<instance>/`, so
//! `bpftool map dump pinned /sys/fs/bpf/weir/<instance>/WEIR_FE_STATS` works
//! while weir runs, and a second weir process of the same instance (a reload)
//! re-opens the same maps instead of creating empty ones. Each process holds
//! a shared `flock` on `/run/weir/<instance>.lock`; the process that stops
//! last (it can upgrade to an exclusive lock) removes the pins.

use std::{
    borrow::Cow,
    fs::File,
    os::fd::AsRawFd,
    path::{Path, PathBuf},
};

use aya::{
    maps::{Array, HashMap, MapError},
    programs::{
        links::{FdLink, PinnedLink},
        xdp::XdpLink,
        ProgramError, Xdp, XdpMode,
    },
    Ebpf, EbpfError, EbpfLoader,
};
use proxy_common::{
    map_names, vip_addr_bit, vip_port_bit, FlowCounters, FrontendInfo, FrontendKey, GlobalConfig,
    RealInfo, ServiceSlot, FRONTEND_FLAG_XDP, VIP_PORT_WORDS,
};

use super::{bpffs, maps};

include!(concat!(env!("OUT_DIR"), "/ebpf_object.rs"));

/// Name of the XDP entry point in the object.
pub const PROGRAM_NAME: &str = "weir_xdp";
/// Name of the DSR decapsulation program (runs on reals).
pub const DECAP_PROGRAM_NAME: &str = "weir_decap";
/// Pinned maps of one instance live in `PIN_ROOT/<instance>/`.
pub const PIN_ROOT: &str = "/sys/fs/bpf/weir";
/// Lock files that count the processes of an instance.
pub const LOCK_DIR: &str = "/run/weir";
/// The maps userspace pins: tables and counters survive a reload. The
/// aya-log ring buffer and the per-packet scratch map stay per process.
pub const PINNED_MAPS: [&str; 18] = [
    map_names::FRONTENDS,
    map_names::FRONTEND_STATS,
    map_names::VERDICT_STATS,
    map_names::PACKET_STATS,
    map_names::REALS,
    map_names::REAL_STATS,
    map_names::SERVICE_STATS,
    map_names::RINGS,
    map_names::CONNTRACK,
    map_names::NAT_REVERSE,
    map_names::CONFIG,
    map_names::L4_STATS,
    map_names::FLOOD,
    map_names::TX_PORTS,
    map_names::DECAP_STATS,
    map_names::SERVICES,
    map_names::VIP_PORTS,
    map_names::VIP_ADDRS,
];

/// Errors of the L4 loader.
#[derive(Debug, thiserror::Error)]
pub enum L4Error {
    /// No eBPF object embedded nor found on disk.
    #[error("no eBPF object: this weir was built without one and none was found at {searched}; build with `cargo xtask build` or pass --bpf-object PATH")]
    NoObject {
        /// Places that were searched.
        searched: String,
    },
    /// The object file could not be read.
    #[error("cannot read eBPF object {path}")]
    ReadObject {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// bpffs could not be mounted, or the pin directory created.
    #[error("cannot prepare the BPF pin directory {path} (is this root, with CAP_BPF and CAP_SYS_ADMIN?)")]
    PinDir {
        /// The directory.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// aya failed to load the object or create/open its maps.
    #[error("cannot load the eBPF object (instance '{instance}')")]
    Load {
        /// Instance name.
        instance: String,
        /// Cause (boxed: aya's error is large and this path is cold).
        #[source]
        source: Box<EbpfError>,
    },
    /// The verifier or the kernel refused the program.
    #[error("cannot load XDP program '{PROGRAM_NAME}'")]
    Program {
        /// Cause (boxed: it carries the verifier log).
        #[source]
        source: Box<ProgramError>,
    },
    /// Attaching to an interface failed.
    #[error("cannot attach XDP to interface '{iface}' in {mode:?} mode")]
    Attach {
        /// Interface name.
        iface: String,
        /// Requested mode.
        mode: XdpMode,
        /// Cause.
        #[source]
        source: Box<ProgramError>,
    },
    /// The pinned XDP link of an interface could not be used or made.
    #[error("XDP link on interface '{iface}': {why}")]
    Link {
        /// Interface name.
        iface: String,
        /// What failed.
        why: String,
    },
    /// A map is missing from the object.
    #[error("map {name} is missing from the eBPF object (object and binary out of sync? rebuild with `cargo xtask build`)")]
    MissingMap {
        /// Map name.
        name: &'static str,
    },
    /// A map operation failed.
    #[error("map {name}")]
    Map {
        /// Map name.
        name: &'static str,
        /// Cause.
        #[source]
        source: Box<MapError>,
    },
    /// More frontends than the map holds.
    #[error(
        "{count} L4 frontends configured, the XDP program holds at most {}",
        proxy_common::MAX_FRONTENDS
    )]
    TooManyFrontends {
        /// Configured count.
        count: usize,
    },
}

/// Finds the eBPF object: the embedded one, then `explicit`, then
/// `$WEIR_EBPF_OBJECT`, then the workspace build output.
pub fn find_object(explicit: Option<&Path>) -> Result<Cow<'static, [u8]>, L4Error> {
    let read = |path: &Path| {
        std::fs::read(path)
            .map(Cow::Owned)
            .map_err(|source| L4Error::ReadObject {
                path: path.to_owned(),
                source,
            })
    };
    if let Some(path) = explicit {
        return read(path);
    }
    if let Some(bytes) = EMBEDDED_OBJECT {
        return Ok(Cow::Borrowed(bytes));
    }
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(p) = std::env::var_os("WEIR_EBPF_OBJECT") {
        candidates.push(p.into());
    }
    candidates.push(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../target/bpf/bpfel-unknown-none/release/weir-xdp"),
    );
    if let Some(found) = candidates.iter().find(|p| p.is_file()) {
        return read(found);
    }
    Err(L4Error::NoObject {
        searched: candidates
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
    })
}

/// What `XdpProgram::load` needs to know.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Instance name: the pin directory is `/sys/fs/bpf/weir/<instance>/`.
    pub instance: String,
    /// Level of aya-log records the program emits (checked in the kernel, so
    /// disabled levels cost a compare).
    pub log_level: log::LevelFilter,
    /// Pin the maps (weir does; some tests load private copies).
    pub pin: bool,
    /// Map sizes decided by the config (RINGS, CONNTRACK, NAT_REVERSE), by map name.
    pub max_entries: Vec<(&'static str, u32)>,
}

/// The loaded XDP program with its maps, links and pins.
pub struct XdpProgram {
    // Field order matters: the program (and its links) detach when `ebpf`
    // drops, before the lock is released.
    ebpf: Ebpf,
    pin_dir: Option<PathBuf>,
    lock: Option<File>,
    attached: Vec<String>,
    /// Pinned XDP links created by this process (their pins outlive it).
    links: Vec<PinnedLink>,
}

fn aya_log_level(level: log::LevelFilter) -> u8 {
    // aya_log_common::Level: Error=1 .. Trace=5; 0 disables everything.
    match level {
        log::LevelFilter::Off => 0,
        log::LevelFilter::Error => 1,
        log::LevelFilter::Warn => 2,
        log::LevelFilter::Info => 3,
        log::LevelFilter::Debug => 4,
        log::LevelFilter::Trace => 5,
    }
}

impl XdpProgram {
    /// Loads the object, opening or creating the pinned maps, and loads the
    /// XDP program into the kernel (not attached yet).
    pub fn load(object: &[u8], opts: &LoadOptions) -> Result<Self, L4Error> {
        let (pin_dir, lock) = if opts.pin {
            let dir = Path::new(PIN_ROOT).join(&opts.instance);
            let lock = prepare_pin_dir(&dir, &opts.instance)?;
            (Some(dir), Some(lock))
        } else {
            (None, None)
        };
        let level = aya_log_level(opts.log_level);
        let load = |pin_dir: Option<&Path>| {
            let mut loader = EbpfLoader::new();
            loader.override_global(aya_log::LEVEL, &level, false);
            for (name, size) in &opts.max_entries {
                loader.map_max_entries(name, *size);
            }
            let paths: Vec<(&str, PathBuf)> = pin_dir
                .map(|d| PINNED_MAPS.iter().map(|n| (*n, d.join(n))).collect())
                .unwrap_or_default();
            for (name, path) in &paths {
                loader.map_pin_path(name, path.as_path());
            }
            loader.load(object)
        };
        let ebpf = match load(pin_dir.as_deref()) {
            Ok(ebpf) => ebpf,
            // Pins left by an incompatible build: replace them if nobody else uses them.
            Err(first) => match (&pin_dir, &lock) {
                (Some(dir), Some(lock)) if try_exclusive(lock) => {
                    log::warn!(
                        "pinned maps in {} do not fit this program ({first}); replacing them",
                        dir.display()
                    );
                    remove_pins(dir);
                    std::fs::create_dir_all(dir).map_err(|source| L4Error::PinDir {
                        path: dir.clone(),
                        source,
                    })?;
                    share(lock);
                    load(Some(dir)).map_err(|source| L4Error::Load {
                        instance: opts.instance.clone(),
                        source: Box::new(source),
                    })?
                }
                _ => {
                    return Err(L4Error::Load {
                        instance: opts.instance.clone(),
                        source: Box::new(first),
                    })
                }
            },
        };
        let mut this = Self {
            ebpf,
            pin_dir,
            lock,
            attached: Vec::new(),
            links: Vec::new(),
        };
        if let Err(source) = this.program_mut()?.load() {
            // The maps were pinned before the verifier ran: a program that
            // never loads must not leave them behind (unless another process
            // of the instance uses them).
            this.shutdown();
            return Err(L4Error::Program {
                source: Box::new(source),
            });
        }
        Ok(this)
    }

    fn program_mut(&mut self) -> Result<&mut Xdp, L4Error> {
        let program = self
            .ebpf
            .program_mut(PROGRAM_NAME)
            .ok_or(L4Error::MissingMap { name: PROGRAM_NAME })?;
        program.try_into().map_err(|source| L4Error::Program {
            source: Box::new(source),
        })
    }

    /// The XDP program, for BPF_PROG_TEST_RUN.
    pub fn xdp(&mut self) -> Result<&mut Xdp, L4Error> {
        self.program_mut()
    }

    /// Starts forwarding the program's aya-log records to weir's logger.
    /// Must be called from inside a tokio runtime. Returns false when the
    /// object has no log map.
    pub fn forward_logs(&mut self) -> bool {
        let Ok(logger) = aya_log::EbpfLogger::init(&mut self.ebpf) else {
            return false;
        };
        // SAFETY: the logger owns its ring buffer fd for its whole life, and
        // the AsyncFd owns the logger, so the fd stays open and the same.
        let registered = unsafe {
            tokio::io::unix::AsyncFd::register_with_interest(logger, tokio::io::Interest::READABLE)
        };
        let Ok(mut fd) = registered else {
            return false;
        };
        tokio::spawn(async move {
            loop {
                let Ok(mut guard) = fd.readable_mut().await else {
                    return;
                };
                guard.get_inner_mut().flush();
                guard.clear_ready();
            }
        });
        true
    }

    /// Attaches to `iface`.
    ///
    /// The XDP link is pinned next to the maps (`link_<iface>`), so it
    /// outlives this process: a second weir of the same instance (a reload)
    /// finds the interface busy, opens the pinned link and atomically
    /// replaces the program in it (`bpf_link_update`), with no moment where
    /// no program runs. The last process of the instance removes the pin,
    /// which detaches.
    pub fn attach(&mut self, iface: &str, mode: XdpMode) -> Result<(), L4Error> {
        let link_pin = self
            .pin_dir
            .as_ref()
            .map(|d| d.join(format!("link_{iface}")));
        let attach_err = |source: ProgramError| L4Error::Attach {
            iface: iface.to_string(),
            mode,
            source: Box::new(source),
        };
        let takeover = link_pin.as_ref().filter(|p| p.exists()).cloned();
        let program = self.program_mut()?;
        match takeover {
            Some(pin) => {
                let link_err = |why: String| L4Error::Link {
                    iface: iface.to_string(),
                    why,
                };
                let pinned = PinnedLink::from_pin(&pin)
                    .map_err(|e| link_err(format!("cannot open pin {}: {e}", pin.display())))?;
                let link = XdpLink::try_from(FdLink::from(pinned)).map_err(|e| {
                    link_err(format!("pin {} is not an XDP link: {e}", pin.display()))
                })?;
                program.attach_to_link(link).map_err(attach_err)?;
                log::info!("took over the XDP link on {iface} from the previous weir process");
            }
            None => {
                let id = program.attach(iface, mode).map_err(attach_err)?;
                if let Some(pin) = link_pin {
                    let link = program.take_link(id).map_err(attach_err)?;
                    let fd_link: FdLink = link.try_into().map_err(|e| L4Error::Link {
                        iface: iface.to_string(),
                        why: format!("attached through netlink, which cannot be pinned: {e}"),
                    })?;
                    let pinned = fd_link.pin(&pin).map_err(|e| L4Error::PinDir {
                        path: pin.clone(),
                        source: std::io::Error::other(e.to_string()),
                    })?;
                    self.links.push(pinned);
                }
            }
        }
        self.attached.push(iface.to_string());
        Ok(())
    }

    /// Interfaces the program is attached to.
    pub fn attached(&self) -> &[String] {
        &self.attached
    }

    /// The pin directory, when the maps are pinned.
    pub fn pin_dir(&self) -> Option<&Path> {
        self.pin_dir.as_deref()
    }

    /// Replaces the frontend table, and with it the tables the data path
    /// derives from it: SERVICES (XDP services by id, checked on a
    /// conntrack hit), VIP_PORTS (ports some TCP/UDP frontend uses) and
    /// VIP_ADDRS (a bit per frontend address).
    ///
    /// Order, so that a packet never misses a frontend that exists before
    /// and after the update: the bitmaps first as the union of the old and
    /// new bits, then SERVICES for the new entries, then FRONTENDS, then
    /// stale SERVICES slots cleared and the bitmaps set to exactly the new bits.
    pub fn set_frontends(
        &mut self,
        entries: &[(FrontendKey, FrontendInfo)],
    ) -> Result<(), L4Error> {
        if entries.len() > proxy_common::MAX_FRONTENDS as usize {
            return Err(L4Error::TooManyFrontends {
                count: entries.len(),
            });
        }
        let mut ports = vec![0u64; VIP_PORT_WORDS as usize];
        let mut addrs = vec![0u64; VIP_PORT_WORDS as usize];
        let mut slots: Vec<(u32, ServiceSlot)> = Vec::new();
        for (key, info) in entries {
            let (word, bit) = vip_addr_bit(&key.addr, key.family);
            addrs[word as usize] |= bit;
            if key.proto != proxy_common::proto::TCP && key.proto != proxy_common::proto::UDP {
                continue;
            }
            let (word, bit) = vip_port_bit(key.port);
            ports[word as usize] |= bit;
            if info.flags & FRONTEND_FLAG_XDP != 0 {
                slots.push((
                    info.id,
                    ServiceSlot {
                        key: *key,
                        info: *info,
                    },
                ));
            }
        }
        let union = |old: &[u64], new: &[u64]| -> Vec<u64> {
            old.iter().zip(new).map(|(a, b)| a | b).collect()
        };
        let old_ports = self.read_bitmap(map_names::VIP_PORTS)?;
        let old_addrs = self.read_bitmap(map_names::VIP_ADDRS)?;
        let ports_union = union(&old_ports, &ports);
        let addrs_union = union(&old_addrs, &addrs);
        self.write_bitmap(map_names::VIP_PORTS, &old_ports, &ports_union)?;
        self.write_bitmap(map_names::VIP_ADDRS, &old_addrs, &addrs_union)?;
        let name = map_names::SERVICES;
        let mut services: Array<_, ServiceSlot> =
            Array::try_from(self.map_mut(name)?).map_err(maps::map_error(name))?;
        for (id, slot) in &slots {
            services.set(*id, slot, 0).map_err(maps::map_error(name))?;
        }
        let name = map_names::FRONTENDS;
        let map = self
            .ebpf
            .map_mut(name)
            .ok_or(L4Error::MissingMap { name })?;
        let mut table = HashMap::try_from(map).map_err(|source| L4Error::Map {
            name,
            source: Box::new(source),
        })?;
        maps::write_frontends(&mut table, entries)?;
        let name = map_names::SERVICES;
        let mut services: Array<_, ServiceSlot> =
            Array::try_from(self.map_mut(name)?).map_err(maps::map_error(name))?;
        for id in 0..services.len() {
            if slots.iter().any(|(s, _)| *s == id) {
                continue;
            }
            let current = services.get(&id, 0).map_err(maps::map_error(name))?;
            if current.info.flags != 0 {
                services
                    .set(id, ServiceSlot::default(), 0)
                    .map_err(maps::map_error(name))?;
            }
        }
        self.write_bitmap(map_names::VIP_PORTS, &ports_union, &ports)?;
        self.write_bitmap(map_names::VIP_ADDRS, &addrs_union, &addrs)
    }

    fn read_bitmap(&mut self, name: &'static str) -> Result<Vec<u64>, L4Error> {
        let array: Array<_, u64> =
            Array::try_from(self.map_mut(name)?).map_err(maps::map_error(name))?;
        (0..VIP_PORT_WORDS)
            .map(|i| array.get(&i, 0).map_err(maps::map_error(name)))
            .collect()
    }

    /// Writes the words of `new` that differ from `old`.
    fn write_bitmap(
        &mut self,
        name: &'static str,
        old: &[u64],
        new: &[u64],
    ) -> Result<(), L4Error> {
        let mut array: Array<_, u64> =
            Array::try_from(self.map_mut(name)?).map_err(maps::map_error(name))?;
        for (i, (o, n)) in old.iter().zip(new).enumerate() {
            if o != n {
                array.set(i as u32, n, 0).map_err(maps::map_error(name))?;
            }
        }
        Ok(())
    }

    fn map_mut(&mut self, name: &'static str) -> Result<&mut aya::maps::Map, L4Error> {
        self.ebpf.map_mut(name).ok_or(L4Error::MissingMap { name })
    }

    /// The FRONTENDS entry of `key`, if present (a reload reads the active ring half).
    pub fn frontend_info(&mut self, key: &FrontendKey) -> Result<Option<FrontendInfo>, L4Error> {
        let name = map_names::FRONTENDS;
        let table: HashMap<_, FrontendKey, FrontendInfo> =
            HashMap::try_from(self.map_mut(name)?).map_err(maps::map_error(name))?;
        match table.get(key, 0) {
            Ok(v) => Ok(Some(v)),
            Err(MapError::KeyNotFound) => Ok(None),
            Err(e) => Err(maps::map_error(name)(e)),
        }
    }

    /// Writes the reals (and clears slots no longer used, up to `clear_to`).
    pub fn set_reals(&mut self, reals: &[(u32, RealInfo)], clear_to: u32) -> Result<(), L4Error> {
        let name = map_names::REALS;
        let mut array: Array<_, RealInfo> =
            Array::try_from(self.map_mut(name)?).map_err(maps::map_error(name))?;
        for id in 0..clear_to {
            if !reals.iter().any(|(r, _)| *r == id) {
                array
                    .set(id, RealInfo::default(), 0)
                    .map_err(maps::map_error(name))?;
            }
        }
        for (id, info) in reals {
            array.set(*id, info, 0).map_err(maps::map_error(name))?;
        }
        Ok(())
    }

    /// Writes a Maglev table at `base` in RINGS.
    pub fn write_ring(&mut self, base: u32, table: &[u32]) -> Result<(), L4Error> {
        let name = map_names::RINGS;
        let mut array: Array<_, u32> =
            Array::try_from(self.map_mut(name)?).map_err(maps::map_error(name))?;
        for (i, real) in table.iter().enumerate() {
            array
                .set(base + i as u32, real, 0)
                .map_err(maps::map_error(name))?;
        }
        Ok(())
    }

    /// Writes the data-path settings.
    pub fn set_config(&mut self, config: &GlobalConfig) -> Result<(), L4Error> {
        let name = map_names::CONFIG;
        let mut array: Array<_, GlobalConfig> =
            Array::try_from(self.map_mut(name)?).map_err(maps::map_error(name))?;
        array.set(0, config, 0).map_err(maps::map_error(name))
    }

    /// Lets the program redirect to every interface of this network namespace.
    pub fn allow_redirect_to_all_interfaces(&mut self) -> Result<usize, L4Error> {
        let name = map_names::TX_PORTS;
        let mut devmap =
            aya::maps::DevMapHash::try_from(self.map_mut(name)?).map_err(maps::map_error(name))?;
        let mut n = 0;
        for ifindex in super::iface::all_ifindexes() {
            if devmap.insert(ifindex, ifindex, None, 0).is_ok() {
                n += 1;
            }
        }
        Ok(n)
    }

    /// Attaches the decapsulation program (for a DSR real) to `iface`.
    pub fn attach_decap(&mut self, iface: &str, mode: XdpMode) -> Result<(), L4Error> {
        let program: &mut Xdp = self
            .ebpf
            .program_mut(DECAP_PROGRAM_NAME)
            .ok_or(L4Error::MissingMap {
                name: DECAP_PROGRAM_NAME,
            })?
            .try_into()
            .map_err(|source| L4Error::Program {
                source: Box::new(source),
            })?;
        if program.fd().is_err() {
            program.load().map_err(|source| L4Error::Program {
                source: Box::new(source),
            })?;
        }
        program
            .attach(iface, mode)
            .map_err(|source| L4Error::Attach {
                iface: iface.to_string(),
                mode,
                source: Box::new(source),
            })?;
        self.attached.push(format!("{iface} (decap)"));
        Ok(())
    }

    /// Sums slot `index` of a per-CPU [`FlowCounters`] map (SERVICE_STATS or REAL_STATS).
    pub fn flow_counters(&self, name: &'static str, index: u32) -> Result<FlowCounters, L4Error> {
        let map = self.ebpf.map(name).ok_or(L4Error::MissingMap { name })?;
        let array: aya::maps::PerCpuArray<_, FlowCounters> =
            aya::maps::PerCpuArray::try_from(map).map_err(maps::map_error(name))?;
        let values = array.get(&index, 0).map_err(maps::map_error(name))?;
        Ok(values
            .iter()
            .fold(FlowCounters::default(), |acc, v| FlowCounters {
                packets: acc.packets + v.packets,
                bytes: acc.bytes + v.bytes,
                new_flows: acc.new_flows + v.new_flows,
            }))
    }

    /// Every slot of a per-CPU [`FlowCounters`] map, summed over CPUs, in one
    /// batch read (falls back to one read per slot where the kernel has no
    /// batch operations).
    pub fn flow_counters_all(&self, name: &'static str) -> Result<Vec<FlowCounters>, L4Error> {
        let map = self.ebpf.map(name).ok_or(L4Error::MissingMap { name })?;
        let aya::maps::Map::PerCpuArray(data) = map else {
            return Err(L4Error::MissingMap { name });
        };
        let len = data.info().map(|i| i.max_entries()).unwrap_or(0);
        let cpus = aya::util::nr_cpus().map_err(|(_, e)| L4Error::Map {
            name,
            source: Box::new(MapError::SyscallError(aya::sys::SyscallError {
                call: "nr_cpus",
                io_error: e,
            })),
        })?;
        match maps::read_flow_counters_batch(data, len, cpus) {
            Ok(v) => Ok(v),
            Err(_) => (0..len).map(|i| self.flow_counters(name, i)).collect(),
        }
    }

    /// Sums every counter; `frontend_ids` are the stats slots in use.
    pub fn snapshot(&self, frontend_ids: &[u32]) -> Result<maps::CounterSnapshot, L4Error> {
        maps::snapshot(&self.ebpf, frontend_ids)
    }

    /// The underlying aya object (tests use it to reach maps directly).
    pub fn ebpf_mut(&mut self) -> &mut Ebpf {
        &mut self.ebpf
    }

    /// Detaches everything and, if this was the instance's last process,
    /// removes its pins. Returns whether the pins were removed.
    pub fn shutdown(self) -> bool {
        let Self {
            ebpf,
            pin_dir,
            lock,
            ..
        } = self;
        drop(ebpf); // detaches the links and closes our map fds
        match (pin_dir, lock) {
            (Some(dir), Some(lock)) if try_exclusive(&lock) => {
                remove_pins(&dir);
                true
            }
            _ => false,
        }
    }
}

/// Mounts bpffs if needed, creates the pin directory and takes a shared lock
/// on the instance's lock file.
fn prepare_pin_dir(dir: &Path, instance: &str) -> Result<File, L4Error> {
    let io_err = |path: &Path| {
        let path = path.to_owned();
        move |source| L4Error::PinDir { path, source }
    };
    if bpffs::ensure_mounted().map_err(io_err(Path::new(bpffs::BPFFS_ROOT)))? {
        log::info!("mounted bpffs on {}", bpffs::BPFFS_ROOT);
    }
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    std::fs::create_dir_all(LOCK_DIR).map_err(io_err(Path::new(LOCK_DIR)))?;
    let lock_path = Path::new(LOCK_DIR).join(format!("{instance}.lock"));
    let lock = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io_err(&lock_path))?;
    share(&lock);
    Ok(lock)
}

fn share(lock: &File) {
    // SAFETY: flock on an fd we own. A shared lock only blocks while another
    // process holds the exclusive one, which it does just long enough to
    // remove pins.
    unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_SH) };
}

/// Converts our lock to exclusive if no other process holds it.
fn try_exclusive(lock: &File) -> bool {
    // SAFETY: flock on an fd we own; LOCK_NB makes it non-blocking.
    unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
}

/// Removes every pin of the instance: maps, and XDP links (which detaches them).
fn remove_pins(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    let _ = std::fs::remove_dir(dir);
}
