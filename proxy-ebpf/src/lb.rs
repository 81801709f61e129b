//! The L4 balancer: conntrack, Maglev selection, NAT and DSR forwarding,
//! the NAT return path, ICMP echo and too-big handling.
//!
//! Forwarding handles untagged frames with plain IPv4 (IHL 5) or IPv6 (no
//! extension headers) headers, so every header sits at a constant offset:
//! Ethernet at 0, IP at 14, L4 at 34 (IPv4) or 54 (IPv6). VLAN-tagged
//! frames, IPv4 options and IPv6 extension headers addressed to a service
//! are counted and passed or dropped per policy.

use aya_ebpf::{
    bindings::{bpf_fib_lookup as FibParams, xdp_action, BPF_NOEXIST},
    helpers::{
        bpf_fib_lookup, bpf_jiffies64, bpf_ktime_get_coarse_ns, bpf_redirect, bpf_xdp_adjust_head,
        bpf_xdp_adjust_tail,
    },
    programs::XdpContext,
};
use proxy_common::{
    family, proto, FlowKey, FlowState, FrontendInfo, FrontendKey, GlobalConfig, L4Counters,
    RealInfo, FLOW_STATE_VALID, FRONTEND_FLAG_DSR, FRONTEND_FLAG_ICMP_ECHO, FRONTEND_FLAG_XDP,
    NO_REAL, POLICY_DROP_IPV6_EXT, POLICY_DROP_IP_OPTIONS,
};

use crate::{
    csum,
    maps::{
        Scratch, WEIR_CONFIG, WEIR_CT, WEIR_FLOOD, WEIR_L4_STATS, WEIR_NAT_REV, WEIR_NEXTHOP,
        WEIR_REALS, WEIR_REAL_STATS, WEIR_RINGS, WEIR_SERVICES, WEIR_SVC_STATS, WEIR_TX_PORTS,
        WEIR_VIP_ADDRS, WEIR_VIP_PORTS,
    },
    parse::{
        addr_words, bytes_at, mut_at, ptr_at, Headers, ETH_HDR_LEN, ETH_P_IPV4, ETH_P_IPV6,
        IPV4_MIN_HDR_LEN, IPV6_HDR_LEN,
    },
};

/// Offsets of the constant layout (untagged, no IP options/extensions).
const L3: usize = ETH_HDR_LEN;
const L4_V4: usize = L3 + IPV4_MIN_HDR_LEN;
const L4_V6: usize = L3 + IPV6_HDR_LEN;
/// bpf_fib_lookup results we act on (include/uapi/linux/bpf.h).
const FIB_SUCCESS: i64 = 0;
const FIB_NO_NEIGH: i64 = 7;
const FIB_FRAG_NEEDED: i64 = 8;
/// IPIP and IPv6-in-IPv6 protocol numbers.
const PROTO_IPIP: u8 = 4;
const PROTO_IPV6_IN_IP: u8 = 41;
/// NAT source ports tried per new flow (the client's own port first).
const NAT_PORT_TRIES: u32 = 4;
/// NAT ports beyond the client's own come from [NAT_PORT_MIN, 65535].
const NAT_PORT_MIN: u32 = 1024;
/// Seed of the hash that spreads alternative NAT ports.
const NAT_PORT_SEED: u32 = 0x5eed;
const NS_PER_SEC: u64 = 1_000_000_000;
/// TCP flag bits: SYN alone opens a connection (SYN+ACK is the server's answer).
const TCP_SYN: u8 = 0x02;
const TCP_SYN_ACK: u8 = 0x12;
/// TTL / hop limit of the headers Weir writes itself.
const OWN_TTL: u8 = 64;

/// Runs `f` on this CPU's L4 counters.
#[inline(always)]
pub fn count(f: impl FnOnce(&mut L4Counters)) {
    if let Some(c) = WEIR_L4_STATS.get_ptr_mut(0) {
        // SAFETY: a per-CPU map value, only touched by this CPU while the program runs.
        f(unsafe { &mut *c });
    }
}

#[inline(always)]
fn config() -> GlobalConfig {
    WEIR_CONFIG.get(0).copied().unwrap_or_default()
}

/// The `POLICY_*` bits of the data-path config.
#[inline(always)]
pub fn policy() -> u32 {
    WEIR_CONFIG.get(0).map_or(0, |c| c.policy)
}

/// Verdict for an IP fragment: passed unless the policy drops fragments.
#[inline(always)]
pub fn fragment_policy() -> u32 {
    if policy() & proxy_common::POLICY_DROP_FRAGMENTS != 0 {
        count(|c| c.drop_policy += 1);
        return xdp_action::XDP_DROP;
    }
    xdp_action::XDP_PASS
}

/// Policy for a packet to an XDP service that carries IPv4 options / IPv6
/// extension headers, or a VLAN tag: the constant-offset forwarding path
/// does not handle those. Returns the verdict.
#[inline(always)]
pub fn unusual_packet(h: &Headers) -> u32 {
    let cfg = config();
    let drop_bit = if h.family == family::V4 {
        count(|c| c.ip_options += h.ip_extras as u64);
        POLICY_DROP_IP_OPTIONS
    } else {
        count(|c| c.ipv6_ext_headers += h.ip_extras as u64);
        POLICY_DROP_IPV6_EXT
    };
    if h.ip_extras && cfg.policy & drop_bit != 0 {
        count(|c| c.drop_policy += 1);
        return xdp_action::XDP_DROP;
    }
    xdp_action::XDP_PASS
}

/// The conntrack entry of a flow, if it is a usable one: written by this
/// program, toward a real still configured (a real removed from the config,
/// family 0, no longer holds flows).
#[inline(always)]
pub fn conntrack(key: &FlowKey) -> Option<FlowState> {
    // SAFETY: the value is copied out at once; nothing keeps the reference.
    let state = unsafe { WEIR_CT.get(key) }.copied()?;
    if state.flags & FLOW_STATE_VALID != 0
        && WEIR_REALS.get(state.real).is_some_and(|r| r.family != 0)
    {
        Some(state)
    } else {
        None
    }
}

/// The service of a conntrack hit, if it still stands for this packet: an
/// XDP service with the packet's VIP, protocol and port (or all ports).
/// None (a stale entry: the service was removed or its id reused) sends the
/// packet through the frontend lookup as if it missed.
#[inline(always)]
pub fn tracked_service(state: &FlowState, h: &Headers) -> Option<FrontendInfo> {
    let slot = WEIR_SERVICES.get(state.service)?;
    let k = &slot.key;
    if slot.info.flags & FRONTEND_FLAG_XDP != 0
        && k.proto == h.proto
        && k.family == h.family
        && (k.port == h.dport || k.port == 0)
        && addr_words(&k.addr) == addr_words(&h.dst)
    {
        Some(slot.info)
    } else {
        None
    }
}

/// Whether some TCP/UDP frontend uses destination port `port` (network
/// order, as in the packet).
#[inline(always)]
pub fn vip_port(port: u16) -> bool {
    let (word, bit) = proxy_common::vip_port_bit(port);
    WEIR_VIP_PORTS.get(word).is_some_and(|w| *w & bit != 0)
}

/// Whether some frontend may have address `addr` (a prefilter: false means
/// certainly not).
#[inline(always)]
pub fn vip_addr(addr: &[u8; 16], family: u8) -> bool {
    let (word, bit) = proxy_common::vip_addr_bit(addr, family);
    WEIR_VIP_ADDRS.get(word).is_some_and(|w| *w & bit != 0)
}

/// Picks the real of a flow: its conntrack entry `hit` if it has one, else
/// the service's Maglev table. Returns (real id, state, whether the flow is new).
#[inline(always)]
fn pick_real(
    key: &FlowKey,
    svc: &FrontendInfo,
    hit: Option<FlowState>,
) -> Option<(u32, FlowState, bool)> {
    if let Some(state) = hit {
        count(|c| c.lru_hits += 1);
        return Some((state.real, state, false));
    }
    count(|c| c.lru_misses += 1);
    if svc.ring_size == 0 {
        return None;
    }
    let hash = proxy_common::flow_hash(key, svc.flags, config().hash_seed);
    let slot = svc.ring_base + hash % svc.ring_size;
    let real = *WEIR_RINGS.get(slot)?;
    if real == NO_REAL {
        return None;
    }
    Some((
        real,
        FlowState {
            real,
            nat_port: 0,
            flags: FLOW_STATE_VALID,
            service: svc.id,
        },
        true,
    ))
}

/// Flood guard: true when this CPU's new-flow rate is past the limit, so
/// the flow must be balanced without a conntrack write.
#[inline(always)]
fn flood_guarded() -> bool {
    let limit = config().max_new_flows_per_sec as u64;
    if limit == 0 {
        return false; // no guard configured: no clock read, no state
    }
    let Some(state) = WEIR_FLOOD.get_ptr_mut(0) else {
        return false;
    };
    // SAFETY: per-CPU value owned by this CPU for the program's run.
    let state = unsafe { &mut *state };
    // The coarse clock (tick resolution) is plenty for a one-second window
    // and costs no clock-source read.
    let now = unsafe { bpf_ktime_get_coarse_ns() };
    if now.wrapping_sub(state.window_start_ns) >= NS_PER_SEC {
        state.window_start_ns = now;
        state.new_flows = 0;
    }
    state.new_flows += 1;
    state.new_flows > limit
}

#[inline(always)]
fn count_flow(svc: u32, real: u32, bytes: u64, new: bool) {
    if let Some(c) = WEIR_SVC_STATS.get_ptr_mut(svc) {
        // SAFETY: per-CPU value, this CPU only.
        unsafe {
            (*c).packets += 1;
            (*c).bytes += bytes;
            (*c).new_flows += new as u64;
        }
    }
    if let Some(c) = WEIR_REAL_STATS.get_ptr_mut(real) {
        // SAFETY: as above.
        unsafe {
            (*c).packets += 1;
            (*c).bytes += bytes;
            (*c).new_flows += new as u64;
        }
    }
}

/// Fills `key` with the packet's 5-tuple.
#[inline(always)]
pub fn fill_flow_key(key: &mut FlowKey, h: &Headers) {
    key.src = h.src;
    key.dst = h.dst;
    key.sport = h.sport;
    key.dport = h.dport;
    key.proto = h.proto;
    key.family = h.family;
    key._pad = [0; 2];
}

/// Balances one packet to an XDP service (not VLAN-tagged, no IP extras).
///
/// The hot path (parse, this, `rewrite`, `forward`, `encap_and_send`) is
/// inlined into the entry point: a BPF-to-BPF call costs a call and a
/// return, and on CPUs with return-thunk mitigations (SRSO "safe RET") a
/// return is expensive; one frame also lets LLVM share stack slots. The
/// cold paths (`nat_port`, `nat_reply`, ICMP) stay separate functions.
/// ICMP to a VIP goes to [`icmp`] directly from the entry point.
#[inline(always)]
///
/// `s.key` holds the packet's flow, `hit` its conntrack entry if any.
pub fn balance(
    ctx: &XdpContext,
    s: &mut Scratch,
    svc: &FrontendInfo,
    bytes: u64,
    hit: Option<FlowState>,
) -> u32 {
    let h = &s.headers;
    let Some((real_id, mut state, new)) = pick_real(&s.key, svc, hit) else {
        count(|c| c.drop_no_real += 1);
        return xdp_action::XDP_DROP;
    };
    let Some(real) = WEIR_REALS.get(real_id) else {
        count(|c| c.drop_no_real += 1);
        return xdp_action::XDP_DROP;
    };
    if real.family != h.family {
        count(|c| c.drop_no_real += 1);
        return xdp_action::XDP_DROP;
    }
    let dsr = svc.flags & FRONTEND_FLAG_DSR != 0;
    let (family, l4_proto, dport) = (h.family, h.proto, h.dport);
    // A conntrack miss is a new flow for UDP; for TCP only on a SYN: a
    // mid-connection packet that misses (seen on another CPU, or evicted)
    // is re-balanced to the same real but is not a new connection.
    let new_flow =
        new && (l4_proto != proxy_common::proto::TCP || h.tcp_flags & TCP_SYN_ACK == TCP_SYN);
    if !dsr && state.nat_port == 0 {
        match nat_port(s, real, svc.id) {
            Some(p) => state.nat_port = p,
            None => {
                count(|c| c.drop_nat_ports += 1);
                return xdp_action::XDP_DROP;
            }
        }
    }
    if new {
        if flood_guarded() {
            count(|c| c.flood_guarded += 1);
        } else {
            let _ = WEIR_CT.insert(&s.key, &state, 0);
        }
    }
    count_flow(svc.id, real_id, bytes, new_flow);
    if dsr {
        count(|c| c.dsr_encap += 1);
        encap_and_send(ctx, family, real, real_id)
    } else {
        count(|c| c.nat_forward += 1);
        let r = Rewrite {
            src: addr_words(&real.local_addr),
            dst: addr_words(&real.addr),
            sport: state.nat_port,
            dport: if real.port == 0 { dport } else { real.port },
            family,
            proto: l4_proto,
        };
        rewrite(ctx, &r).map_or(xdp_action::XDP_DROP, |()| {
            forward::<false>(ctx, family, l4_proto, real_id)
        })
    }
}

/// Finds the NAT source port of a new flow: the client's own port if the
/// reply 5-tuple is free (or already ours), else a few hashed ports. The
/// reverse entry is created here, with BPF_NOEXIST so two CPUs racing for
/// the same port cannot both win.
#[inline(never)]
fn nat_port(s: &mut Scratch, real: &RealInfo, service: u32) -> Option<u16> {
    let key = &s.key;
    let real_port = if real.port == 0 { key.dport } else { real.port };
    s.reverse.client = key.src;
    s.reverse.vip = key.dst;
    s.reverse.client_port = key.sport;
    s.reverse.vip_port = key.dport;
    s.reverse.service = service;
    s.rkey.src = real.addr;
    s.rkey.dst = real.local_addr;
    s.rkey.sport = real_port;
    s.rkey.dport = key.sport;
    s.rkey.proto = key.proto;
    s.rkey.family = key.family;
    s.rkey._pad = [0; 2];
    let mut hash = 0;
    for i in 0..NAT_PORT_TRIES {
        if i > 0 {
            if i == 1 {
                // Only flows whose own port is taken pay for this hash.
                hash = proxy_common::flow_hash(&s.key, 0, NAT_PORT_SEED);
            }
            let port = NAT_PORT_MIN + hash % (65536 - NAT_PORT_MIN);
            s.rkey.dport = (port as u16).to_be();
            hash = proxy_common::hash_mix(hash, i);
        }
        // Insert first: a new flow's reply tuple is almost always free, so
        // this is one map operation instead of a lookup and an insert.
        if WEIR_NAT_REV
            .insert(&s.rkey, &s.reverse, BPF_NOEXIST as u64)
            .is_ok()
        {
            return Some(s.rkey.dport);
        }
        // Taken: by this very flow (another CPU balanced it, or it is not
        // in conntrack), or by another one.
        // SAFETY: compared in place at once; nothing keeps the reference.
        if let Some(existing) = unsafe { WEIR_NAT_REV.get(&s.rkey) } {
            if *existing == s.reverse {
                return Some(s.rkey.dport);
            }
        }
    }
    None
}

/// The NAT return path: a reply from a real to Weir's NAT address is
/// translated back to VIP -> client. Returns None when the packet is not a
/// NAT reply.
#[inline(never)]
pub fn nat_reply(ctx: &XdpContext, s: &mut Scratch, bytes: u64) -> Option<u32> {
    if s.headers.proto != proto::TCP && s.headers.proto != proto::UDP {
        return None;
    }
    fill_flow_key(&mut s.key, &s.headers);
    let h = &s.headers;
    // SAFETY: the entry is read in place right away (it is a map value that stays valid).
    let rev = unsafe { WEIR_NAT_REV.get(&s.key) }?;
    if h.vlan || h.ip_extras {
        return Some(unusual_packet(h));
    }
    count(|c| c.nat_reverse += 1);
    if let Some(c) = WEIR_SVC_STATS.get_ptr_mut(rev.service) {
        // SAFETY: per-CPU value, this CPU only.
        unsafe {
            (*c).packets += 1;
            (*c).bytes += bytes;
        }
    }
    let r = Rewrite {
        src: addr_words(&rev.vip),
        dst: addr_words(&rev.client),
        sport: rev.vip_port,
        dport: rev.client_port,
        family: h.family,
        proto: h.proto,
    };
    Some(rewrite(ctx, &r).map_or(xdp_action::XDP_DROP, |()| {
        forward::<false>(ctx, h.family, h.proto, NO_REAL)
    }))
}

/// A NAT rewrite: the new source and destination of a packet.
pub struct Rewrite {
    /// New source address, as native-order words (IPv4: the first).
    pub src: [u32; 4],
    /// New destination address.
    pub dst: [u32; 4],
    /// New source port, network byte order.
    pub sport: u16,
    /// New destination port, network byte order.
    pub dport: u16,
    /// Address family of the packet.
    pub family: u8,
    /// TCP or UDP.
    pub proto: u8,
}

/// Replaces the 32-bit word at `p` with `new`; returns the one's-complement
/// difference (~old + new), the way `bpf_csum_diff` sums (host order: the
/// one's-complement sum is byte-order independent, RFC 1071 §2(B)).
#[inline(always)]
fn swap_word(p: *mut u32, new: u32) -> u64 {
    // SAFETY: p points into the packet, bounds-checked by the caller.
    unsafe {
        let old = p.read();
        p.write(new);
        (!old) as u64 + new as u64
    }
}

/// Rewrites source and destination address and port, fixing the IPv4
/// header checksum and the TCP/UDP checksum incrementally, and decrements
/// the TTL / hop limit (Weir forwards like a router).
///
/// The checksum differences are summed here over 32-bit words (~old + new,
/// folded at the end), which is what `bpf_csum_diff` computes, without
/// three helper calls; stored checksums are read, updated and written back
/// in host order.
#[inline(always)]
fn rewrite(ctx: &XdpContext, r: &Rewrite) -> Option<()> {
    // Two copies with constant offsets: the verifier checks packet bounds
    // per path, and a family-dependent offset would merge them.
    if r.family == family::V4 {
        rewrite_at::<true>(ctx, r)
    } else {
        rewrite_at::<false>(ctx, r)
    }
}

#[inline(always)]
fn rewrite_at<const V4: bool>(ctx: &XdpContext, r: &Rewrite) -> Option<()> {
    let l4 = if V4 { L4_V4 } else { L4_V6 };
    let (start, data_end) = crate::parse::bounds(ctx);
    // One bounds check covers the ports and the IP header (TCP's checksum
    // at 16 is checked on its own below).
    if start + l4 + 8 > data_end {
        return None;
    }
    let at = |off: usize| (start + off) as *mut u32;
    let new_ports = (r.sport as u32) | ((r.dport as u32) << 16);
    let mut l4_diff = swap_word(at(l4), new_ports);
    if V4 {
        // SAFETY: inside the checked range.
        let ttl = unsafe { *((start + L3 + 8) as *const u8) };
        if ttl <= 1 {
            return None; // the kernel would answer time-exceeded; we drop
        }
        let addr_diff = swap_word(at(L3 + 12), r.src[0]) + swap_word(at(L3 + 16), r.dst[0]);
        l4_diff += addr_diff;
        // SAFETY: inside the checked range.
        unsafe {
            *((start + L3 + 8) as *mut u8) = ttl - 1;
            let c = (start + L3 + 10) as *mut u16;
            // TTL is the low byte of its host-order word: -1 is + !1 in one's complement.
            *c = csum::apply_u16(*c, addr_diff + (!1u16) as u64);
        }
    } else {
        // SAFETY: inside the checked range.
        let hop = unsafe { &mut *((start + L3 + 7) as *mut u8) };
        if *hop <= 1 {
            return None;
        }
        *hop -= 1;
        for i in 0..4 {
            l4_diff += swap_word(at(L3 + 8 + 4 * i), r.src[i]);
            l4_diff += swap_word(at(L3 + 24 + 4 * i), r.dst[i]);
        }
    }
    let c = if r.proto == proto::TCP {
        ptr_at::<u16>(ctx, l4 + 16)?
    } else {
        (start + l4 + 6) as *mut u16
    };
    // SAFETY: bounds-checked (TCP by ptr_at, UDP by the check above).
    unsafe {
        // IPv4 UDP checksum 0 means "none" and stays so.
        if !(r.proto == proto::UDP && V4 && *c == 0) {
            let mut n = csum::apply_u16(*c, l4_diff);
            if r.proto == proto::UDP && n == 0 {
                n = 0xFFFF; // RFC 768: a computed 0 is sent as all ones
            }
            *c = n;
        }
    }
    Some(())
}

/// Encapsulates the packet for direct server return (IPIP for IPv4,
/// IPv6-in-IPv6 for IPv6), Katran style, and sends it toward the real.
#[inline(always)]
fn encap_and_send(ctx: &XdpContext, fam: u8, real: &RealInfo, real_id: u32) -> u32 {
    let (outer_len, inner_len) = if fam == family::V4 {
        let Some(ip) = bytes_at::<4>(ctx, L3) else {
            return xdp_action::XDP_DROP;
        };
        (
            IPV4_MIN_HDR_LEN,
            u16::from_be_bytes([ip[2], ip[3]]) as usize,
        )
    } else {
        let Some(ip) = bytes_at::<6>(ctx, L3) else {
            return xdp_action::XDP_DROP;
        };
        (
            IPV6_HDR_LEN,
            IPV6_HDR_LEN + u16::from_be_bytes([ip[4], ip[5]]) as usize,
        )
    };
    // SAFETY: the helper only moves ctx->data; every access after it is re-checked.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, -(outer_len as i32)) } != 0 {
        count(|c| c.drop_encap += 1);
        return xdp_action::XDP_DROP;
    }
    // The outer header is written as words (see parse::ptr_at).
    let (start, end) = crate::parse::bounds(ctx);
    let local = addr_words(&real.local_addr);
    let remote = addr_words(&real.addr);
    // SAFETY: each branch checks its headers against the packet end.
    unsafe {
        if fam == family::V4 {
            if start + L4_V4 > end {
                return xdp_action::XDP_DROP;
            }
            // Ethernet: the frame's own MACs, moved from where the old
            // header now sits (forward() replaces them; a too-big answer
            // swaps them), then the type (at 12).
            let w = start as *mut u32;
            let old = (start + IPV4_MIN_HDR_LEN) as *const u32;
            let macs = [old.read(), old.add(1).read(), old.add(2).read()];
            w.write(macs[0]);
            w.add(1).write(macs[1]);
            w.add(2).write(macs[2]);
            ((start + 12) as *mut u16).write(ETH_P_IPV4.to_be());
            // IPv4: version/IHL, TOS, total length | id, flags/offset |
            // TTL, protocol, checksum | source | destination.
            let ip = (start + L3) as *mut u16;
            let mut o = [0u16; IPV4_MIN_HDR_LEN / 2];
            o[0] = u16::from_ne_bytes([0x45, 0]);
            o[1] = ((IPV4_MIN_HDR_LEN + inner_len) as u16).to_be();
            o[4] = u16::from_ne_bytes([OWN_TTL, PROTO_IPIP]);
            o[6] = local[0] as u16;
            o[7] = (local[0] >> 16) as u16;
            o[8] = remote[0] as u16;
            o[9] = (remote[0] >> 16) as u16;
            let mut sum = 0u64;
            for x in o {
                sum += x as u64;
            }
            o[5] = !csum::fold(sum);
            for (i, x) in o.into_iter().enumerate() {
                ip.add(i).write(x);
            }
        } else {
            if start + L4_V6 > end {
                return xdp_action::XDP_DROP;
            }
            let w = start as *mut u32;
            let old = (start + IPV6_HDR_LEN) as *const u32;
            let macs = [old.read(), old.add(1).read(), old.add(2).read()];
            w.write(macs[0]);
            w.add(1).write(macs[1]);
            w.add(2).write(macs[2]);
            ((start + 12) as *mut u16).write(ETH_P_IPV6.to_be());
            let ip = (start + L3) as *mut u32;
            ip.write(u32::from_ne_bytes([0x60, 0, 0, 0]));
            let len = (inner_len as u16).to_be_bytes();
            ip.add(1).write(u32::from_ne_bytes([
                len[0],
                len[1],
                PROTO_IPV6_IN_IP,
                OWN_TTL,
            ]));
            for i in 0..4 {
                ip.add(2 + i).write(local[i]);
                ip.add(6 + i).write(remote[i]);
            }
        }
    }
    let outer_proto = if fam == family::V4 {
        PROTO_IPIP
    } else {
        PROTO_IPV6_IN_IP
    };
    forward::<true>(ctx, fam, outer_proto, real_id)
}

/// Length of the ICMP fragmentation-needed answer: Ethernet, IPv4, ICMP,
/// then the client's IPv4 header and the first 8 bytes of its payload.
const TOO_BIG_V4_LEN: usize = ETH_HDR_LEN + IPV4_MIN_HDR_LEN + 8 + IPV4_MIN_HDR_LEN + 8;
/// The same for ICMPv6 packet-too-big.
const TOO_BIG_V6_LEN: usize = ETH_HDR_LEN + IPV6_HDR_LEN + 8 + IPV6_HDR_LEN + 8;

/// Reshapes an encapsulated DSR frame (Ethernet with the frame's own MACs,
/// outer IP header, the client's packet) into the `LEN` bytes of a too-big
/// answer sent back where it came from: the head grows by the 8 bytes of
/// the ICMP header, which puts the client's IP header exactly where the
/// answer quotes it (14 + 20 + 8 = 34 + 8 for IPv4, 14 + 40 + 8 = 54 + 8
/// for IPv6), the tail is cut after 8 bytes of the client's payload, and
/// the MACs are swapped. The caller writes the IP and ICMP headers.
#[inline(always)]
fn too_big_frame<const LEN: usize>(ctx: &XdpContext) -> Option<&mut [u8; LEN]> {
    let eth = ptr_at::<[u16; 6]>(ctx, 0)?;
    // SAFETY: bounds-checked by ptr_at. The encapsulation kept the frame's MACs.
    let m = unsafe { *eth };
    // SAFETY: the helpers only move ctx->data / data_end; every access after them is re-checked.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, -8) } != 0 {
        return None;
    }
    let whole = crate::parse::frame_len(ctx);
    if whole < LEN || unsafe { bpf_xdp_adjust_tail(ctx.ctx, -((whole - LEN) as i32)) } != 0 {
        return None;
    }
    let f = mut_at::<LEN>(ctx, 0)?;
    for (i, w) in [m[3], m[4], m[5], m[0], m[1], m[2]].into_iter().enumerate() {
        let b = w.to_ne_bytes();
        f[2 * i] = b[0];
        f[2 * i + 1] = b[1];
    }
    Some(f)
}

/// One's-complement sum of the `words` big-endian 16-bit words of `f`
/// from `at`.
#[inline(always)]
fn sum_words<const LEN: usize>(f: &[u8; LEN], at: usize, words: usize) -> u64 {
    let mut sum = 0u64;
    for i in 0..words {
        sum += u16::from_be_bytes([f[at + 2 * i], f[at + 2 * i + 1]]) as u64;
    }
    sum
}

/// Answers an IPv4 DSR packet that no longer fits the real's link once
/// encapsulated (`mtu`: the route's MTU) with ICMP fragmentation-needed
/// (RFC 792, RFC 1191) from the VIP to the client, advertising `mtu` less
/// the 20 bytes of the outer header, sent back with XDP_TX, the way
/// Katran does: the client's path MTU discovery then sends segments that
/// fit. A packet without DF is dropped (XDP cannot fragment it) and
/// counted. Not inlined: it is cold.
#[inline(never)]
fn answer_too_big_v4(ctx: &XdpContext, mtu: u16) -> u32 {
    // DSR balances IPv4 without options only: the client's header is at 34.
    let Some(flags) = ptr_at::<u8>(ctx, L3 + IPV4_MIN_HDR_LEN + 6) else {
        return xdp_action::XDP_DROP;
    };
    // SAFETY: bounds-checked by ptr_at.
    if unsafe { *flags } & 0x40 == 0 {
        count(|c| c.drop_too_big += 1);
        return xdp_action::XDP_DROP;
    }
    let Some(f) = too_big_frame::<TOO_BIG_V4_LEN>(ctx) else {
        return xdp_action::XDP_DROP;
    };
    // The quoted header: the client's addresses, swapped below.
    const Q: usize = TOO_BIG_V4_LEN - 8 - IPV4_MIN_HDR_LEN;
    f[12] = 0x08;
    f[13] = 0x00;
    // IPv4: no options, total length 56, no fragmentation, TTL 64, ICMP,
    // from the VIP to the client.
    let ip = L3;
    let total = (TOO_BIG_V4_LEN - L3) as u16;
    f[ip] = 0x45;
    f[ip + 1] = 0;
    f[ip + 2] = (total >> 8) as u8;
    f[ip + 3] = total as u8;
    for i in 4..8 {
        f[ip + i] = 0;
    }
    f[ip + 8] = OWN_TTL;
    f[ip + 9] = crate::parse::PROTO_ICMP;
    f[ip + 10] = 0;
    f[ip + 11] = 0;
    for i in 0..4 {
        f[ip + 12 + i] = f[Q + 16 + i];
        f[ip + 16 + i] = f[Q + 12 + i];
    }
    let c = (!csum::fold(sum_words(f, ip, IPV4_MIN_HDR_LEN / 2))).to_be_bytes();
    f[ip + 10] = c[0];
    f[ip + 11] = c[1];
    // ICMP: type 3 (unreachable), code 4 (fragmentation needed), checksum,
    // unused, next-hop MTU; then the quoted bytes, already in place.
    let icmp = L3 + IPV4_MIN_HDR_LEN;
    let next_hop_mtu = mtu.saturating_sub(IPV4_MIN_HDR_LEN as u16).to_be_bytes();
    f[icmp] = 3;
    f[icmp + 1] = 4;
    for i in 2..6 {
        f[icmp + i] = 0;
    }
    f[icmp + 6] = next_hop_mtu[0];
    f[icmp + 7] = next_hop_mtu[1];
    let c = (!csum::fold(sum_words(f, icmp, (TOO_BIG_V4_LEN - icmp) / 2))).to_be_bytes();
    f[icmp + 2] = c[0];
    f[icmp + 3] = c[1];
    count(|c| c.icmp_too_big_sent += 1);
    xdp_action::XDP_TX
}

/// The IPv6 twin of [`answer_too_big_v4`]: ICMPv6 packet-too-big (RFC
/// 4443) from the VIP to the client, advertising `mtu` less the 40 bytes
/// of the outer header (IPv6 has no DF: every such packet is answered),
/// quoting the client's header and 8 bytes of its payload.
#[inline(never)]
fn answer_too_big_v6(ctx: &XdpContext, mtu: u32) -> u32 {
    let Some(f) = too_big_frame::<TOO_BIG_V6_LEN>(ctx) else {
        return xdp_action::XDP_DROP;
    };
    // The quoted header: the client's addresses, swapped below.
    const Q: usize = TOO_BIG_V6_LEN - 8 - IPV6_HDR_LEN;
    f[12] = 0x86;
    f[13] = 0xDD;
    // IPv6: version 6, payload 56 (ICMPv6 8 + quoted 48), next header 58,
    // hop limit 64, from the VIP to the client.
    let ip = L3;
    let payload = (TOO_BIG_V6_LEN - L3 - IPV6_HDR_LEN) as u16;
    f[ip] = 0x60;
    f[ip + 1] = 0;
    f[ip + 2] = 0;
    f[ip + 3] = 0;
    f[ip + 4] = (payload >> 8) as u8;
    f[ip + 5] = payload as u8;
    f[ip + 6] = crate::parse::PROTO_ICMPV6;
    f[ip + 7] = OWN_TTL;
    for i in 0..16 {
        f[ip + 8 + i] = f[Q + 24 + i];
        f[ip + 24 + i] = f[Q + 8 + i];
    }
    // ICMPv6: type 2 (packet too big), code 0, checksum, MTU (32 bits).
    let icmp = L3 + IPV6_HDR_LEN;
    let next_hop_mtu = mtu.saturating_sub(IPV6_HDR_LEN as u32).to_be_bytes();
    f[icmp] = 2;
    f[icmp + 1] = 0;
    f[icmp + 2] = 0;
    f[icmp + 3] = 0;
    for i in 0..4 {
        f[icmp + 4 + i] = next_hop_mtu[i];
    }
    // Checksum: the pseudo-header (addresses, length, next header), then the message.
    let sum = payload as u64
        + crate::parse::PROTO_ICMPV6 as u64
        + sum_words(f, ip + 8, 16)
        + sum_words(f, icmp, (TOO_BIG_V6_LEN - icmp) / 2);
    let c = (!csum::fold(sum)).to_be_bytes();
    f[icmp + 2] = c[0];
    f[icmp + 3] = c[1];
    count(|c| c.icmp_too_big_sent += 1);
    xdp_action::XDP_TX
}

/// `bpf_fib_lookup` parameters, 8-byte aligned so they can be cleared
/// with eight 8-byte stores (the verifier wants aligned stack accesses; a
/// plain zeroed() became a call to a byte-at-a-time memset subprogram).
#[repr(C, align(8))]
struct Fib(FibParams);

/// How long a next-hop cache entry is used before the route is looked up
/// again (per CPU and real): the longest a route or neighbour change takes
/// to reach packets toward a real. In jiffies: `bpf_jiffies64` is a plain
/// load, where a clock read (`bpf_ktime_get_coarse_ns`) measured 20 ns of
/// a 155 ns conntrack hit. 256 jiffies is 1 s at HZ=250 (Debian's kernels),
/// 0.26 s at HZ=1000, 2.6 s at HZ=100.
const NEXTHOP_TTL_JIFFIES: u64 = 256;

/// Routes the (rewritten) packet: fills in the MACs and sends it out with
/// XDP_TX (same interface) or XDP_REDIRECT (another one).
///
/// Packets toward a real (`real` is its id; NO_REAL for NAT replies) first
/// try this CPU's next-hop cache entry for the real: it is used when it is
/// younger than NEXTHOP_TTL_JIFFIES and was made for the same family, source and
/// destination address and ingress interface, and for a packet at least as
/// long (so `bpf_fib_lookup`'s MTU check still holds). Otherwise, and for
/// NAT replies, `bpf_fib_lookup` decides, and a success refills the entry.
/// Only successes are cached: no-neighbour and no-route results are looked
/// up again on every packet.
///
/// `ANSWER_TOO_BIG`: an IPIP (DSR) packet the route's MTU refuses is
/// answered with ICMP fragmentation-needed or packet-too-big
/// ([`answer_too_big_v4`], [`answer_too_big_v6`]).
#[inline(always)]
fn forward<const ANSWER_TOO_BIG: bool>(ctx: &XdpContext, fam: u8, l4_proto: u8, real: u32) -> u32 {
    let ingress = ctx.ingress_ifindex() as u32;
    let (start, end) = crate::parse::bounds(ctx);
    let ip = (start + L3) as *const u8;
    let mut src = [0u32; 4];
    let mut dst = [0u32; 4];
    let tot_len: u16;
    let tos: u8;
    // SAFETY: each branch checks its IP header against the packet end; the
    // pointers are typed for word loads (see parse::ptr_at).
    unsafe {
        if fam == family::V4 {
            if start + L4_V4 > end {
                return xdp_action::XDP_DROP;
            }
            tot_len = u16::from_be(*(ip.add(2) as *const u16));
            tos = *ip.add(1);
            src[0] = *(ip.add(12) as *const u32);
            dst[0] = *(ip.add(16) as *const u32);
        } else {
            if start + L4_V6 > end {
                return xdp_action::XDP_DROP;
            }
            tot_len = u16::from_be(*(ip.add(4) as *const u16)) + IPV6_HDR_LEN as u16;
            tos = 0;
            let w = ip.add(8) as *const u32;
            src = [*w, *w.add(1), *w.add(2), *w.add(3)];
            let w = ip.add(24) as *const u32;
            dst = [*w, *w.add(1), *w.add(2), *w.add(3)];
        }
    }
    let cache = if real == NO_REAL {
        None
    } else {
        WEIR_NEXTHOP.get_ptr_mut(real)
    };
    // SAFETY: a helper without arguments.
    let now = unsafe { bpf_jiffies64() };
    if let Some(nh) = cache {
        // SAFETY: per-CPU value, only this CPU touches it while the program runs.
        let nh = unsafe { &*nh };
        if nh.max_len >= tot_len
            && nh.expires_jiffies > now
            && nh.family == fam
            && nh.ingress == ingress
            && nh.src == src
            && nh.dst == dst
        {
            return send(ctx, &nh.macs, nh.ifindex, ingress);
        }
    }
    let mut fib = core::mem::MaybeUninit::<Fib>::uninit();
    let words = fib.as_mut_ptr().cast::<u64>();
    for i in 0..core::mem::size_of::<Fib>() / 8 {
        // SAFETY: inside `fib`; volatile so LLVM keeps word stores instead of a memset call.
        unsafe { core::ptr::write_volatile(words.add(i), 0) };
    }
    // SAFETY: every byte was just written; all-zero is a valid bpf_fib_lookup.
    let p = unsafe { &mut (*fib.as_mut_ptr()).0 };
    p.l4_protocol = l4_proto;
    p.ifindex = ingress;
    p.__bindgen_anon_1.tot_len = tot_len;
    if fam == family::V4 {
        p.family = 2; // AF_INET
        p.__bindgen_anon_2.tos = tos;
        p.__bindgen_anon_3.ipv4_src = src[0];
        p.__bindgen_anon_4.ipv4_dst = dst[0];
    } else {
        p.family = 10; // AF_INET6
        p.__bindgen_anon_3.ipv6_src = src;
        p.__bindgen_anon_4.ipv6_dst = dst;
    }
    // SAFETY: p is a properly sized bpf_fib_lookup on our stack.
    let rc = unsafe {
        bpf_fib_lookup(
            ctx.ctx.cast(),
            p,
            core::mem::size_of::<FibParams>() as i32,
            0,
        )
    };
    match rc {
        FIB_SUCCESS => {}
        FIB_NO_NEIGH => {
            // The kernel resolves the neighbour and forwards the packet itself.
            count(|c| c.pass_no_neigh += 1);
            return xdp_action::XDP_PASS;
        }
        FIB_FRAG_NEEDED => {
            if ANSWER_TOO_BIG && (l4_proto == PROTO_IPIP || l4_proto == PROTO_IPV6_IN_IP) {
                // SAFETY: on FRAG_NEEDED the helper stores the MTU in this union member.
                let mtu = unsafe { p.__bindgen_anon_1.mtu_result };
                return if l4_proto == PROTO_IPIP {
                    answer_too_big_v4(ctx, mtu)
                } else {
                    answer_too_big_v6(ctx, mtu as u32)
                };
            }
            count(|c| c.drop_too_big += 1);
            return xdp_action::XDP_DROP;
        }
        _ => {
            count(|c| c.drop_no_route += 1);
            return xdp_action::XDP_DROP;
        }
    }
    let mut macs = [0u16; 6];
    for i in 0..3 {
        macs[i] = u16::from_ne_bytes([p.dmac[2 * i], p.dmac[2 * i + 1]]);
        macs[3 + i] = u16::from_ne_bytes([p.smac[2 * i], p.smac[2 * i + 1]]);
    }
    if let Some(nh) = cache {
        // SAFETY: as above.
        let nh = unsafe { &mut *nh };
        nh.src = src;
        nh.dst = dst;
        nh.macs = macs;
        nh.max_len = tot_len;
        nh.family = fam;
        nh.ifindex = p.ifindex;
        nh.ingress = ingress;
        nh.expires_jiffies = now + NEXTHOP_TTL_JIFFIES;
    }
    send(ctx, &macs, p.ifindex, ingress)
}

/// Writes the MACs and sends the frame out of `ifindex`.
#[inline(always)]
fn send(ctx: &XdpContext, macs: &[u16; 6], ifindex: u32, ingress: u32) -> u32 {
    let Some(eth) = ptr_at::<[u16; 6]>(ctx, 0) else {
        return xdp_action::XDP_DROP;
    };
    // SAFETY: bounds-checked by ptr_at.
    unsafe { *eth = *macs };
    if ifindex == ingress {
        return xdp_action::XDP_TX;
    }
    match WEIR_TX_PORTS.redirect(ifindex, 0) {
        Ok(action) => action,
        // Not in the devmap: the slower per-packet redirect still works.
        Err(_) => unsafe { bpf_redirect(ifindex, 0) as u32 },
    }
}

/// ICMP to a VIP: echo requests answered (when the service allows), and
/// fragmentation-needed / packet-too-big for a tracked flow sent to its real.
#[inline(never)]
pub fn icmp(ctx: &XdpContext, s: &mut Scratch, svc: &FrontendInfo) -> u32 {
    let [icmp_type, _code] = s.headers.sport.to_ne_bytes();
    let v4 = s.headers.family == family::V4;
    let echo_request = if v4 { icmp_type == 8 } else { icmp_type == 128 };
    if echo_request {
        if svc.flags & FRONTEND_FLAG_ICMP_ECHO == 0 {
            return xdp_action::XDP_PASS;
        }
        return echo_reply(ctx, v4);
    }
    let too_big = if v4 {
        icmp_type == 3 && _code == 4
    } else {
        icmp_type == 2
    };
    if !too_big {
        return xdp_action::XDP_PASS;
    }
    // Three separate functions: each of the two senders inlines the
    // forwarding code (a large frame), so neither may sit under the other
    // or under the flow lookup in the call chain (512-byte stack limit).
    if !too_big_flow(ctx, s) {
        return xdp_action::XDP_PASS;
    }
    if s.svc.flags & FRONTEND_FLAG_DSR != 0 {
        too_big_dsr(ctx, s)
    } else {
        nat_too_big(ctx, s)
    }
}

/// Turns an echo request into its reply in place and bounces it (XDP_TX).
#[inline(never)]
fn echo_reply(ctx: &XdpContext, v4: bool) -> u32 {
    let l4 = if v4 { L4_V4 } else { L4_V6 };
    let (Some(eth), Some(icmp)) = (mut_at::<12>(ctx, 0), mut_at::<4>(ctx, l4)) else {
        return xdp_action::XDP_PASS;
    };
    let old_word = [icmp[0], icmp[1]];
    icmp[0] = if v4 { 0 } else { 129 };
    let diff = csum::add_words(csum::sub_words(0, &old_word), &[icmp[0], icmp[1]]);
    let c = csum::apply([icmp[2], icmp[3]], diff);
    icmp[2..4].copy_from_slice(&c);
    // Swapping source and destination leaves every checksum unchanged.
    if v4 {
        let Some(ip) = mut_at::<IPV4_MIN_HDR_LEN>(ctx, L3) else {
            return xdp_action::XDP_PASS;
        };
        let src: [u8; 4] = ip[12..16].try_into().unwrap_or_default();
        let dst: [u8; 4] = ip[16..20].try_into().unwrap_or_default();
        ip[12..16].copy_from_slice(&dst);
        ip[16..20].copy_from_slice(&src);
    } else {
        let Some(ip) = mut_at::<IPV6_HDR_LEN>(ctx, L3) else {
            return xdp_action::XDP_PASS;
        };
        let src: [u8; 16] = ip[8..24].try_into().unwrap_or_default();
        let dst: [u8; 16] = ip[24..40].try_into().unwrap_or_default();
        ip[8..24].copy_from_slice(&dst);
        ip[24..40].copy_from_slice(&src);
    }
    let macs = *eth;
    eth[..6].copy_from_slice(&macs[6..]);
    eth[6..].copy_from_slice(&macs[..6]);
    count(|c| c.icmp_echo_replies += 1);
    xdp_action::XDP_TX
}

/// Finds the flow of a too-big error: its quoted header is the packet
/// VIP -> client that Weir (NAT) or the real (DSR) sent, so the flow is
/// (client -> VIP) reversed. Fills `s.key` with it and `s.svc` with its
/// XDP service; false when it is not one (the error is then passed).
#[inline(never)]
fn too_big_flow(ctx: &XdpContext, s: &mut Scratch) -> bool {
    let fam = s.headers.family;
    let v4 = fam == family::V4;
    let inner = if v4 { L4_V4 + 8 } else { L4_V6 + 8 };
    let key = &mut s.key;
    *key = FlowKey {
        family: fam,
        ..FlowKey::default()
    };
    let inner_l4 = if v4 {
        let Some(ip) = bytes_at::<IPV4_MIN_HDR_LEN>(ctx, inner) else {
            return false;
        };
        if ip[0] != 0x45 {
            return false;
        }
        key.proto = ip[9];
        key.dst[..4].copy_from_slice(&ip[12..16]); // inner source = VIP
        key.src[..4].copy_from_slice(&ip[16..20]); // inner destination = client
        inner + IPV4_MIN_HDR_LEN
    } else {
        let Some(ip) = bytes_at::<IPV6_HDR_LEN>(ctx, inner) else {
            return false;
        };
        key.proto = ip[6];
        key.dst.copy_from_slice(&ip[8..24]);
        key.src.copy_from_slice(&ip[24..40]);
        inner + IPV6_HDR_LEN
    };
    let Some(ports) = bytes_at::<4>(ctx, inner_l4) else {
        return false;
    };
    key.dport = u16::from_ne_bytes([ports[0], ports[1]]);
    key.sport = u16::from_ne_bytes([ports[2], ports[3]]);
    let fkey = FrontendKey {
        addr: key.dst,
        port: key.dport,
        proto: key.proto,
        family: key.family,
    };
    // SAFETY: copied out at once.
    let Some(svc) = (unsafe { crate::maps::WEIR_FRONTENDS.get(&fkey) }).copied() else {
        return false;
    };
    if svc.flags & FRONTEND_FLAG_XDP == 0 {
        return false; // counted only: the kernel serves it
    }
    s.svc = svc;
    true
}

/// DSR: the too-big error for the flow in `s.key` is encapsulated whole
/// to the flow's real.
#[inline(never)]
fn too_big_dsr(ctx: &XdpContext, s: &mut Scratch) -> u32 {
    let svc = s.svc;
    let hit = conntrack(&s.key);
    let Some((real_id, _, _)) = pick_real(&s.key, &svc, hit) else {
        return xdp_action::XDP_PASS;
    };
    let Some(real) = WEIR_REALS.get(real_id) else {
        return xdp_action::XDP_PASS;
    };
    count(|c| c.icmp_too_big += 1);
    encap_and_send(ctx, s.key.family, real, real_id)
}

/// A too-big error for a tracked flow of a NAT service (`s.key` is the
/// flow, client -> VIP). The quoted packet (VIP -> client) is what Weir
/// made of the real's reply (real -> Weir's address, NAT port); the error
/// is translated back into the one the real would have got had its reply
/// gone straight out: outer Weir's address -> real, quoted real:port ->
/// Weir's address:NAT port (checksums updated: outer IPv4 header, quoted
/// IPv4 header, ICMP/ICMPv6), and sent to the real, which lowers its path
/// MTU for that connection. The quoted TCP/UDP checksum is left as it was
/// (receivers do not check the quoted transport checksum). An untracked
/// flow's error is passed to the kernel.
#[inline(never)]
fn nat_too_big(ctx: &XdpContext, s: &mut Scratch) -> u32 {
    // SAFETY: copied out at once.
    let Some(state) = (unsafe { WEIR_CT.get(&s.key) }).copied() else {
        return xdp_action::XDP_PASS;
    };
    if state.flags & FLOW_STATE_VALID == 0 || state.nat_port == 0 {
        return xdp_action::XDP_PASS;
    }
    let Some(real) = WEIR_REALS.get(state.real) else {
        return xdp_action::XDP_PASS;
    };
    let fam = s.key.family;
    if real.family != fam {
        return xdp_action::XDP_PASS;
    }
    let real_port = if real.port == 0 {
        s.key.dport
    } else {
        real.port
    };
    let t = TooBigNat {
        local: addr_words(&real.local_addr),
        real: addr_words(&real.addr),
        ports: (real_port as u32) | ((state.nat_port as u32) << 16),
    };
    let done = if fam == family::V4 {
        nat_too_big_at::<true>(ctx, &t)
    } else {
        nat_too_big_at::<false>(ctx, &t)
    };
    if done.is_none() {
        return xdp_action::XDP_PASS;
    }
    count(|c| c.icmp_too_big += 1);
    let icmp_proto = if fam == family::V4 {
        crate::parse::PROTO_ICMP
    } else {
        crate::parse::PROTO_ICMPV6
    };
    forward::<false>(ctx, fam, icmp_proto, state.real)
}

/// The addresses and ports of a translated NAT too-big error.
struct TooBigNat {
    /// Weir's address toward the real (new outer source, new quoted destination).
    local: [u32; 4],
    /// The real (new outer destination, new quoted source).
    real: [u32; 4],
    /// New quoted ports as they sit in memory: the real's port, then the NAT port.
    ports: u32,
}

/// Rewrites a too-big error in place (see [`nat_too_big`]); None when the
/// packet is too short or its TTL / hop limit is spent.
#[inline(always)]
fn nat_too_big_at<const V4: bool>(ctx: &XdpContext, t: &TooBigNat) -> Option<()> {
    let icmp = if V4 { L4_V4 } else { L4_V6 };
    let inner = icmp + 8;
    let inner_l4 = inner + if V4 { IPV4_MIN_HDR_LEN } else { IPV6_HDR_LEN };
    let (start, data_end) = crate::parse::bounds(ctx);
    if start + inner_l4 + 4 > data_end {
        return None;
    }
    let at = |off: usize| (start + off) as *mut u32;
    let mut icmp_diff: u64;
    // SAFETY: every access below is inside the checked range.
    unsafe {
        if V4 {
            let ttl = *((start + L3 + 8) as *const u8);
            if ttl <= 1 {
                return None;
            }
            let outer = swap_word(at(L3 + 12), t.local[0]) + swap_word(at(L3 + 16), t.real[0]);
            *((start + L3 + 8) as *mut u8) = ttl - 1;
            let c = (start + L3 + 10) as *mut u16;
            *c = csum::apply_u16(*c, outer + (!1u16) as u64);
            // The quoted header: the ICMP checksum covers it, its own checksum too.
            let quoted =
                swap_word(at(inner + 12), t.real[0]) + swap_word(at(inner + 16), t.local[0]);
            let qc = (start + inner + 10) as *mut u16;
            let old = *qc;
            let new = csum::apply_u16(old, quoted);
            *qc = new;
            icmp_diff = quoted + (!old) as u64 + new as u64;
        } else {
            let hop = &mut *((start + L3 + 7) as *mut u8);
            if *hop <= 1 {
                return None;
            }
            *hop -= 1;
            // ICMPv6's checksum covers the outer addresses (pseudo-header) too.
            icmp_diff = 0;
            for i in 0..4 {
                icmp_diff += swap_word(at(L3 + 8 + 4 * i), t.local[i]);
                icmp_diff += swap_word(at(L3 + 24 + 4 * i), t.real[i]);
                icmp_diff += swap_word(at(inner + 8 + 4 * i), t.real[i]);
                icmp_diff += swap_word(at(inner + 24 + 4 * i), t.local[i]);
            }
        }
        icmp_diff += swap_word(at(inner_l4), t.ports);
        let c = (start + icmp + 2) as *mut u16;
        *c = csum::apply_u16(*c, icmp_diff);
    }
    Some(())
}
