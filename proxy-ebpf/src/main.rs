//! Weir's XDP programs.
//!
//! `weir_xdp` (the balancer) classifies every packet against the configured
//! L4 frontends (VIP address, protocol, port; IPv4 and IPv6, exact port then
//! port 0) and counts packets and bytes per frontend, per verdict, and per
//! classification outcome. Frontends flagged for XDP (`xdp` keyword) are
//! balanced here: conntrack, Maglev, then NAT or DSR forwarding (`lb.rs`);
//! replies from reals to a NAT address are translated back. Everything else
//! is passed to the kernel untouched; malformed packets are passed and
//! counted by reason.
//!
//! `weir_decap` runs on a DSR real: it strips the IPIP / IPv6-in-IPv6 header
//! Weir added and passes the inner packet to the real's kernel (the kernel
//! here has no ipip module).
//!
//! Layout: `maps.rs` (every map, documented), `parse.rs` (headers),
//! `csum.rs` (checksums), `lb.rs` (balancing and forwarding), `stats.rs`
//! (counter updates). Entry points are thin and count the verdict once.
#![no_std]
#![no_main]

mod csum;
mod lb;
mod maps;
mod parse;
mod stats;

use aya_ebpf::{
    bindings::xdp_action, helpers::bpf_xdp_adjust_head, macros::xdp, programs::XdpContext,
};
use aya_log_ebpf::debug;
use parse::{Malformed, Parsed};
use proxy_common::{
    proto, FrontendInfo, FrontendKey, FRONTEND_FLAG_XDP, POLICY_NAT_ACTIVE, POLICY_NO_ALL_PORTS,
};

/// `frags`: multi-buffer frames (an MTU above a page, e.g. jumbo frames on
/// veth) are accepted; headers are read from the linear head, lengths from
/// the IP header (see `parse::frame_len`).
#[xdp(frags)]
pub fn weir_xdp(ctx: XdpContext) -> u32 {
    let mut bytes = (ctx.data_end() - ctx.data()) as u64;
    let action = classify(&ctx, &mut bytes);
    stats::count_verdict(action, bytes);
    action
}

/// Classifies one packet, balances it if it belongs to an XDP service, and
/// returns its verdict. `bytes` comes in as the linear length and leaves as
/// the frame's whole length.
#[inline(always)]
fn classify(ctx: &XdpContext, bytes: &mut u64) -> u32 {
    let Some(scratch) = maps::WEIR_SCRATCH.get_ptr_mut(0) else {
        return xdp_action::XDP_PASS;
    };
    // SAFETY: this CPU's scratch value, used by this packet only.
    let scratch = unsafe { &mut *scratch };
    let parsed = parse::parse(ctx, &mut scratch.headers, bytes);
    let bytes = *bytes;
    stats::with_packet_counters(|c| {
        c.rx_packets += 1;
        c.rx_bytes += bytes;
    });
    match parsed {
        Parsed::Ip => {
            let h = &scratch.headers;
            stats::with_packet_counters(|c| c.vlan_tagged += h.vlan as u64);
            let policy = lb::policy();
            let l4_ports = h.proto == proto::TCP || h.proto == proto::UDP;
            // No frontend has this address, or uses this port (and none
            // uses all ports): not for a VIP, known without a hash lookup.
            if !lb::vip_addr(&h.dst, h.family)
                || (l4_ports && policy & POLICY_NO_ALL_PORTS != 0 && !lb::vip_port(h.dport))
            {
                return not_for_a_vip(ctx, scratch, policy, bytes);
            }
            // Conntrack first for plain TCP/UDP: a tracked flow of a service
            // that still stands needs no frontend lookup.
            let mut key_filled = false;
            if l4_ports && !h.vlan && !h.ip_extras {
                lb::fill_flow_key(&mut scratch.key, h);
                if let Some(state) = lb::conntrack(&scratch.key) {
                    if let Some(svc) = lb::tracked_service(&state, h) {
                        stats::with_packet_counters(|c| c.matched += 1);
                        stats::count_frontend(svc.id, bytes);
                        return lb::balance(ctx, scratch, &svc, bytes, Some(state));
                    }
                }
                key_filled = true;
            }
            let h = &scratch.headers;
            let key = FrontendKey {
                addr: h.dst,
                port: h.dport,
                proto: h.proto,
                family: h.family,
            };
            let Some(svc) = lookup_frontend(&key, policy) else {
                return not_for_a_vip(ctx, scratch, policy, bytes);
            };
            stats::with_packet_counters(|c| c.matched += 1);
            stats::count_frontend(svc.id, bytes);
            if svc.flags & FRONTEND_FLAG_XDP == 0 {
                return xdp_action::XDP_PASS; // counted only; the kernel serves it
            }
            if h.vlan || h.ip_extras {
                return lb::unusual_packet(h);
            }
            if h.proto == parse::PROTO_ICMP || h.proto == parse::PROTO_ICMPV6 {
                return lb::icmp(ctx, scratch, &svc);
            }
            if !key_filled {
                lb::fill_flow_key(&mut scratch.key, &scratch.headers);
            }
            // A conntrack miss (or a stale entry): a new flow.
            lb::balance(ctx, scratch, &svc, bytes, None)
        }
        Parsed::Fragment { vlan } => {
            stats::with_packet_counters(|c| {
                c.vlan_tagged += vlan as u64;
                c.ip_fragments += 1;
            });
            lb::fragment_policy()
        }
        Parsed::OtherIp { vlan } => {
            stats::with_packet_counters(|c| {
                c.vlan_tagged += vlan as u64;
                c.not_matched += 1;
            });
            xdp_action::XDP_PASS
        }
        Parsed::NonIp { vlan } => {
            stats::with_packet_counters(|c| {
                c.vlan_tagged += vlan as u64;
                c.non_ip += 1;
            });
            xdp_action::XDP_PASS
        }
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
            xdp_action::XDP_PASS
        }
    }
}

/// A packet not for a VIP: a NAT reply from a real is translated back,
/// anything else passed.
#[inline(always)]
fn not_for_a_vip(ctx: &XdpContext, scratch: &mut maps::Scratch, policy: u32, bytes: u64) -> u32 {
    stats::with_packet_counters(|c| c.not_matched += 1);
    if policy & POLICY_NAT_ACTIVE != 0 {
        if let Some(action) = lb::nat_reply(ctx, scratch, bytes) {
            return action;
        }
    }
    xdp_action::XDP_PASS
}

/// Looks the destination up as an exact (addr, proto, port) frontend, then as
/// an all-ports (port 0) one, unless the config says there is none
/// (`POLICY_NO_ALL_PORTS`). ICMP packets look up port 0 of their protocol.
#[inline(always)]
fn lookup_frontend(key: &FrontendKey, policy: u32) -> Option<FrontendInfo> {
    if key.proto == proto::TCP || key.proto == proto::UDP {
        // SAFETY: the value is copied out immediately; nothing keeps the reference.
        if let Some(info) = unsafe { maps::WEIR_FRONTENDS.get(key) } {
            return Some(*info);
        }
        if policy & POLICY_NO_ALL_PORTS != 0 {
            return None;
        }
    }
    let any_port = FrontendKey { port: 0, ..*key };
    // SAFETY: as above.
    unsafe { maps::WEIR_FRONTENDS.get(&any_port) }.copied()
}

/// `frags`, as `weir_xdp`: the outer header is in the linear head.
#[xdp(frags)]
pub fn weir_decap(ctx: XdpContext) -> u32 {
    if let Some(bytes) = decap(&ctx) {
        stats::count_decap(bytes);
    }
    xdp_action::XDP_PASS
}

/// Strips Weir's outer IPIP / IPv6-in-IPv6 header, if there is one, and
/// returns the frame's length as received (from the outer IP header, so a
/// multi-buffer frame counts whole). None when the packet was left alone.
#[inline(always)]
fn decap(ctx: &XdpContext) -> Option<u64> {
    let eth = parse::bytes_at::<{ parse::ETH_HDR_LEN }>(ctx, 0)?;
    let ether_type = u16::from_be_bytes([eth[12], eth[13]]);
    let (outer_len, inner_proto, frame_len) = match ether_type {
        parse::ETH_P_IPV4 => {
            let ip = parse::bytes_at::<{ parse::IPV4_MIN_HDR_LEN }>(ctx, parse::ETH_HDR_LEN)?;
            if ip[0] != 0x45 {
                return None;
            }
            let total = u16::from_be_bytes([ip[2], ip[3]]) as usize;
            (parse::IPV4_MIN_HDR_LEN, ip[9], parse::ETH_HDR_LEN + total)
        }
        parse::ETH_P_IPV6 => {
            let ip = parse::bytes_at::<{ parse::IPV6_HDR_LEN }>(ctx, parse::ETH_HDR_LEN)?;
            let payload = u16::from_be_bytes([ip[4], ip[5]]) as usize;
            (
                parse::IPV6_HDR_LEN,
                ip[6],
                parse::ETH_HDR_LEN + parse::IPV6_HDR_LEN + payload,
            )
        }
        _ => return None,
    };
    let inner_type = match inner_proto {
        4 => parse::ETH_P_IPV4,
        41 => parse::ETH_P_IPV6,
        _ => return None,
    };
    // SAFETY: the helper only moves ctx->data; the access after it is re-checked.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, outer_len as i32) } != 0 {
        return None;
    }
    let new_eth = parse::mut_at::<{ parse::ETH_HDR_LEN }>(ctx, 0)?;
    new_eth[..12].copy_from_slice(&eth[..12]);
    new_eth[12..].copy_from_slice(&inner_type.to_be_bytes());
    Some(frame_len as u64)
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any program that could reach this (it has no way
    // out), so in a loaded program it is dead code.
    loop {}
}
