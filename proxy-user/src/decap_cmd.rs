//! `weir decap --iface IF`: runs `weir_decap` on a DSR real. It strips the
//! IPIP / IPv6-in-IPv6 header the balancer added (the kernel here has no
//! ipip module) and passes the inner packet to the real's stack, where the
//! VIP sits on `lo`. Stops on SIGTERM/SIGINT, detaching and printing how
//! many packets it decapsulated.

use std::path::PathBuf;

use anyhow::{Context, Result};
use aya::maps::PerCpuArray;
use proxy_common::{map_names, TrafficCounters};

use crate::l4::{self, LoadOptions, XdpProgram};

/// Loads the object, attaches `weir_decap` to every interface, waits for
/// `stop`, then reports the decapsulated packets and detaches.
pub async fn run(
    ifaces: &[String],
    bpf_object: Option<PathBuf>,
    stop: impl std::future::Future<Output = Result<()>>,
) -> Result<()> {
    let object = l4::find_object(bpf_object.as_deref())?;
    let mut program = XdpProgram::load(
        &object,
        &LoadOptions {
            instance: format!("decap-{}", std::process::id()),
            log_level: log::LevelFilter::Off,
            pin: false,
            max_entries: Vec::new(),
        },
    )?;
    for iface in ifaces {
        program
            .attach_decap(iface, aya::programs::XdpMode::Default)
            .with_context(|| format!("attach weir_decap to {iface}"))?;
    }
    println!(
        "weir decap: weir_decap attached to {}; stop with Ctrl-C (SIGINT) or SIGTERM.",
        ifaces.join(", ")
    );
    stop.await?;
    let name = map_names::DECAP_STATS;
    let map = program
        .ebpf_mut()
        .map(name)
        .ok_or(l4::L4Error::MissingMap { name })?;
    let stats: PerCpuArray<_, TrafficCounters> =
        PerCpuArray::try_from(map).map_err(l4::maps::map_error(name))?;
    let (packets, bytes) = stats
        .get(&0, 0)
        .map_err(l4::maps::map_error(name))?
        .iter()
        .fold((0, 0), |(p, b), c| (p + c.packets, b + c.bytes));
    println!("weir decap: {packets} packets ({bytes} bytes) decapsulated");
    drop(program); // detaches
    Ok(())
}
