//! Weir's XDP program.
//!
//! Today it classifies every packet against the configured L4 frontends (VIP
//! address, protocol, port; IPv4 and IPv6, exact port then port 0) and counts
//! packets and bytes per frontend, per verdict, and per classification
//! outcome. Every packet is passed to the kernel stack (`XDP_PASS`): nothing
//! is rewritten yet. Malformed packets are passed untouched and counted by
//! reason.
//!
//! Layout: `maps.rs` (every map, documented), `parse.rs` (headers),
//! `stats.rs` (counter updates). The entry point is thin and counts the
//! verdict once, in one place.
#![no_std]
#![no_main]

mod maps;
mod parse;
mod stats;

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use aya_log_ebpf::debug;
use parse::{Malformed, Parsed};
use proxy_common::FrontendKey;

#[xdp]
pub fn weir_xdp(ctx: XdpContext) -> u32 {
    let bytes = (ctx.data_end() - ctx.data()) as u64;
    let action = classify(&ctx, bytes);
    stats::count_verdict(action, bytes);
    action
}

/// Classifies one packet and returns its verdict.
#[inline(always)]
fn classify(ctx: &XdpContext, bytes: u64) -> u32 {
    let parsed = parse::parse(ctx);
    stats::with_packet_counters(|c| {
        c.rx_packets += 1;
        c.rx_bytes += bytes;
    });
    match parsed {
        Parsed::L4 { key, vlan } => {
            let hit = lookup_frontend(&key);
            stats::with_packet_counters(|c| {
                c.vlan_tagged += vlan as u64;
                if hit.is_some() {
                    c.matched += 1;
                } else {
                    c.not_matched += 1;
                }
            });
            if let Some(id) = hit {
                stats::count_frontend(id, bytes);
            }
        }
        Parsed::Fragment { vlan } => stats::with_packet_counters(|c| {
            c.vlan_tagged += vlan as u64;
            c.ip_fragments += 1;
        }),
        Parsed::OtherIp { vlan } => stats::with_packet_counters(|c| {
            c.vlan_tagged += vlan as u64;
            c.not_matched += 1;
        }),
        Parsed::NonIp { vlan } => stats::with_packet_counters(|c| {
            c.vlan_tagged += vlan as u64;
            c.non_ip += 1;
        }),
        Parsed::Malformed(reason) => {
            let name = match reason {
                Malformed::Ethernet => {
                    stats::with_packet_counters(|c| c.malformed_ethernet += 1);
                    "ethernet"
                }
                Malformed::Ip => {
                    stats::with_packet_counters(|c| c.malformed_ip += 1);
                    "ip"
                }
                Malformed::L4 => {
                    stats::with_packet_counters(|c| c.malformed_l4 += 1);
                    "l4"
                }
            };
            // Debug level: compiled to a level check only, unless weir runs with `log-level debug`.
            debug!(
                ctx,
                "malformed packet ({} header), {} bytes, passed", name, bytes
            );
        }
    }
    xdp_action::XDP_PASS
}

/// Looks the destination up as an exact (addr, proto, port) frontend, then as
/// an all-ports (port 0) one. Returns the frontend's stats slot.
#[inline(always)]
fn lookup_frontend(key: &FrontendKey) -> Option<u32> {
    // SAFETY: the value is copied out immediately; nothing keeps the reference.
    if let Some(info) = unsafe { maps::WEIR_FRONTENDS.get(key) } {
        return Some(info.id);
    }
    let any_port = FrontendKey { port: 0, ..*key };
    unsafe { maps::WEIR_FRONTENDS.get(&any_port) }.map(|info| info.id)
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any program that could reach this (it has no way
    // out), so in a loaded program it is dead code.
    loop {}
}
