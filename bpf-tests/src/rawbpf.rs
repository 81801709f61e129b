//! Tiny helper XDP programs written as raw BPF instructions, loaded with
//! the bpf(2) syscall: a packet generator for BPF_PROG_TEST_RUN live-frames
//! mode, a counting sink for the reals' side of redirects, and bare
//! XDP_PASS for the test-run floor. They are a dozen instructions each, so
//! they do not need a second eBPF crate and toolchain run.
//!
//! Attach them with `ip link set dev IF xdpdrv pinned PATH` after
//! [`RawProgram::pin`].

use std::{
    ffi::CString,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    path::Path,
    time::Duration,
};

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_OBJ_PIN: libc::c_long = 6;
const BPF_PROG_TEST_RUN: libc::c_long = 10;
const BPF_PROG_TYPE_XDP: u32 = 6;
const BPF_XDP: u32 = 37;
/// prog_flags bit: the program handles multi-buffer XDP frames.
const BPF_F_XDP_HAS_FRAGS: u32 = 1 << 5;
const BPF_MAP_TYPE_PERCPU_ARRAY: u32 = 6;
const BPF_MAP_TYPE_PROG_ARRAY: u32 = 3;
/// BPF_F_TEST_XDP_LIVE_FRAMES (include/uapi/linux/bpf.h, Linux 5.18).
pub const BPF_F_TEST_XDP_LIVE_FRAMES: u32 = 1 << 1;
const HELPER_MAP_LOOKUP_ELEM: i32 = 1;
const HELPER_MAP_UPDATE_ELEM: i32 = 2;
const BPF_MAP_TYPE_LRU_HASH: u32 = 9;
/// map_flags bit: per-CPU LRU lists (as weir's conntrack).
const BPF_F_NO_COMMON_LRU: u32 = 1 << 1;
const HELPER_GET_PRANDOM_U32: i32 = 7;
const HELPER_TAIL_CALL: i32 = 12;
const HELPER_XDP_ADJUST_HEAD: i32 = 44;
const BPF_PSEUDO_MAP_FD: u8 = 1;

/// XDP_ABORTED / XDP_DROP / XDP_PASS / XDP_TX.
const XDP_ABORTED: i32 = 0;
const XDP_DROP: i32 = 1;
const XDP_PASS: i32 = 2;
const XDP_TX: i32 = 3;

/// One BPF instruction (struct bpf_insn).
#[repr(C)]
#[derive(Clone, Copy)]
struct Insn {
    code: u8,
    regs: u8, // dst in the low nibble, src in the high one
    off: i16,
    imm: i32,
}

const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: (src << 4) | dst,
        off,
        imm,
    }
}

// Opcodes used below (BPF_CLASS | BPF_OP/BPF_SIZE | BPF_SRC/BPF_MODE).
const MOV64_REG: u8 = 0xbf;
const MOV64_IMM: u8 = 0xb7;
const ADD64_IMM: u8 = 0x07;
const RSH64_IMM: u8 = 0x77;
const AND64_IMM: u8 = 0x57;
const LDX_W: u8 = 0x61;
const LDX_DW: u8 = 0x79;
const STX_H: u8 = 0x6b;
const STX_DW: u8 = 0x7b;
const ST_W: u8 = 0x62;
const ST_H: u8 = 0x6a;
const JGT_REG: u8 = 0x2d;
const JEQ_IMM: u8 = 0x15;
const JEQ_REG: u8 = 0x1d;
const ST_B: u8 = 0x72;
const ST_DW: u8 = 0x7a;
const STX_W: u8 = 0x63;
const JNE_IMM: u8 = 0x55;
const CALL: u8 = 0x85;
const EXIT: u8 = 0x95;
const LD_IMM64: u8 = 0x18;

fn bpf(cmd: libc::c_long, attr: &mut [u8]) -> std::io::Result<i64> {
    // SAFETY: attr is a properly sized, zero-padded bpf_attr for `cmd`;
    // the pointers inside it point at live buffers of the caller.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr.as_mut_ptr(),
            attr.len() as libc::c_uint,
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(rc)
}

fn put_u32(buf: &mut [u8], at: usize, v: u32) {
    buf[at..at + 4].copy_from_slice(&v.to_ne_bytes());
}

fn put_u64(buf: &mut [u8], at: usize, v: u64) {
    buf[at..at + 8].copy_from_slice(&v.to_ne_bytes());
}

/// A loaded raw XDP program.
pub struct RawProgram {
    fd: OwnedFd,
    /// The counting sink's per-CPU counter map.
    counter: Option<OwnedFd>,
    /// Other maps the program uses (kept open as long as it lives).
    _maps: Vec<OwnedFd>,
}

/// How [`RawProgram::restore_then_tail_call`] changes the flow between runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vary {
    /// The same frame every run (one flow).
    Nothing,
    /// The UDP source port is `run & mask`: `mask + 1` flows, round robin.
    Among(u16),
    /// A flow never seen before on every run: the run counter's low 16 bits
    /// are the source port, the next 16 the last two bytes of the source
    /// address (2^32 flows).
    Always,
}

/// Where the restorer writes a varying flow.
#[derive(Debug, Clone, Copy)]
pub struct FlowOffsets {
    /// Offset of the UDP source port in the frame.
    pub sport: usize,
    /// Offset of the last two bytes of the source address.
    pub src_low: usize,
}

fn map_create(kind: u32, key: u32, value: u32, entries: u32) -> std::io::Result<OwnedFd> {
    map_create_flags(kind, key, value, entries, 0)
}

fn map_create_flags(
    kind: u32,
    key: u32,
    value: u32,
    entries: u32,
    flags: u32,
) -> std::io::Result<OwnedFd> {
    let mut attr = [0u8; 72];
    put_u32(&mut attr, 0, kind);
    put_u32(&mut attr, 4, key);
    put_u32(&mut attr, 8, value);
    put_u32(&mut attr, 12, entries);
    put_u32(&mut attr, 16, flags);
    let fd = bpf(BPF_MAP_CREATE, &mut attr)?;
    // SAFETY: a new fd from the syscall.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

fn load(insns: &[Insn], counter: Option<OwnedFd>) -> std::io::Result<RawProgram> {
    let license = CString::new("GPL").expect("literal");
    let mut log = vec![0u8; 64 * 1024];
    let mut attr = [0u8; 128];
    put_u32(&mut attr, 0, BPF_PROG_TYPE_XDP);
    put_u32(&mut attr, 4, insns.len() as u32);
    put_u64(&mut attr, 8, insns.as_ptr() as u64);
    put_u64(&mut attr, 16, license.as_ptr() as u64);
    put_u32(&mut attr, 24, 1); // log_level
    put_u32(&mut attr, 28, log.len() as u32);
    put_u64(&mut attr, 32, log.as_mut_ptr() as u64);
    // BPF_F_XDP_HAS_FRAGS, as weir's programs (`xdp.frags`): a tail call
    // needs caller and callee to agree on it, and a veth with an MTU above
    // a page takes only frags-aware programs.
    put_u32(&mut attr, 44, BPF_F_XDP_HAS_FRAGS);
    // expected_attach_type BPF_XDP, as libbpf and aya load XDP programs
    // (a tail call needs caller and callee to agree on it too).
    put_u32(&mut attr, 68, BPF_XDP);
    let fd = bpf(BPF_PROG_LOAD, &mut attr).map_err(|e| {
        let end = log.iter().position(|&b| b == 0).unwrap_or(0);
        std::io::Error::new(
            e.kind(),
            format!("{e}: {}", String::from_utf8_lossy(&log[..end])),
        )
    })?;
    // SAFETY: the syscall returned a new file descriptor we now own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    Ok(RawProgram {
        fd,
        counter,
        _maps: Vec::new(),
    })
}

impl RawProgram {
    /// Returns `XDP_PASS` and nothing else: the floor of BPF_PROG_TEST_RUN.
    pub fn pass() -> std::io::Result<Self> {
        load(
            &[insn(MOV64_IMM, 0, 0, 0, XDP_PASS), insn(EXIT, 0, 0, 0, 0)],
            None,
        )
    }

    /// The generator for BPF_PROG_TEST_RUN live-frames mode: writes the
    /// 42-byte Ethernet + IPv4 + UDP header `template` into the frame
    /// (live-frames pages are recycled with whatever the balancer wrote into
    /// them, so every header byte is written again), then a random UDP
    /// source port (one of 4096), or with `dport_too` a random source port
    /// and the other 16 random bits as the
    /// destination port (for an all-ports service: 2^32 flows), and returns
    /// XDP_TX. The template's UDP checksum must be 0 (none), which the port
    /// changes keep valid.
    pub fn udp_port_spray(template: &[u8; 42], dport_too: bool) -> std::io::Result<Self> {
        let mut body = Vec::new();
        for i in 0..10 {
            let word = i32::from_ne_bytes(template[i * 4..i * 4 + 4].try_into().expect("4 bytes"));
            body.push(insn(ST_W, 2, 0, (i * 4) as i16, word));
        }
        let last = u16::from_ne_bytes([template[40], template[41]]);
        body.push(insn(ST_H, 2, 0, 40, last as i32));
        if !dport_too {
            // 4096 flows: few enough that a conntrack of 65536 entries
            // keeps them all (LRU hits only, after the first 4096).
            body.push(insn(AND64_IMM, 0, 0, 0, 0x0fff));
            body.push(insn(ADD64_IMM, 0, 0, 0, 0x1000));
        }
        body.push(insn(STX_H, 2, 0, 34, 0)); // udp.source = r0
        if dport_too {
            body.push(insn(RSH64_IMM, 0, 0, 0, 16)); // r0 >>= 16
            body.push(insn(STX_H, 2, 0, 36, 0)); // udp.dest = r0
        }
        let mut p = vec![
            insn(MOV64_REG, 6, 1, 0, 0),                   // r6 = ctx
            insn(CALL, 0, 0, 0, HELPER_GET_PRANDOM_U32),   // r0 = random
            insn(LDX_W, 2, 6, 0, 0),                       // r2 = data
            insn(LDX_W, 3, 6, 4, 0),                       // r3 = data_end
            insn(MOV64_REG, 4, 2, 0, 0),                   // r4 = data
            insn(ADD64_IMM, 4, 0, 0, 42),                  // r4 += 14 + 20 + 8
            insn(JGT_REG, 4, 3, body.len() as i16 + 2, 0), // if r4 > r3 goto pass
        ];
        p.extend(body);
        p.extend([
            insn(MOV64_IMM, 0, 0, 0, XDP_TX),
            insn(EXIT, 0, 0, 0, 0),
            insn(MOV64_IMM, 0, 0, 0, XDP_PASS), // pass:
            insn(EXIT, 0, 0, 0, 0),
        ]);
        load(&p, None)
    }

    /// The sink: counts every frame in a per-CPU counter, then returns
    /// `verdict` (XDP_DROP for a packet sink, XDP_PASS to let the stack
    /// see it). Needed on the peer of a veth that frames are redirected to.
    pub fn counting_sink(drop: bool) -> std::io::Result<Self> {
        let map = map_create(BPF_MAP_TYPE_PERCPU_ARRAY, 4, 8, 1)?;
        let verdict = if drop { XDP_DROP } else { XDP_PASS };
        load(
            &[
                insn(LD_IMM64, 1, BPF_PSEUDO_MAP_FD, 0, map.as_raw_fd()), // r1 = map
                insn(0, 0, 0, 0, 0),
                insn(ST_W, 10, 0, -4, 0),     // *(u32 *)(fp - 4) = 0
                insn(MOV64_REG, 2, 10, 0, 0), // r2 = fp
                insn(ADD64_IMM, 2, 0, 0, -4), // r2 = &key
                insn(CALL, 0, 0, 0, HELPER_MAP_LOOKUP_ELEM),
                insn(JEQ_IMM, 0, 0, 3, 0),         // if !r0 goto out
                insn(LDX_DW, 1, 0, 0, 0),          // r1 = *r0
                insn(ADD64_IMM, 1, 0, 0, 1),       // r1 += 1
                insn(STX_DW, 0, 1, 0, 0),          // *r0 = r1
                insn(MOV64_IMM, 0, 0, 0, verdict), // out:
                insn(EXIT, 0, 0, 0, 0),
            ],
            Some(map),
        )
    }

    /// A lower bound of a conntrack balancer, for the cost part: the least
    /// any program with an LRU connection table does per packet. It checks
    /// the IPv4/UDP frame's bounds, builds a `key_len`-byte flow key on the
    /// stack (16: addresses, ports, protocol; 40: 16-byte address fields,
    /// as a dual-stack key), looks it up in an LRU hash of `entries` with
    /// per-CPU LRU lists, inserts it on a miss (a 12-byte value), and
    /// returns XDP_TX: no header rewrite, no checksum, no counters, no
    /// next hop. With `new_flow_every_run` the key's source address is
    /// random each run (bpf_get_prandom_u32), so every run misses and
    /// inserts, evicting once the table is full.
    pub fn lru_probe(
        key_len: i16,
        entries: u32,
        new_flow_every_run: bool,
    ) -> std::io::Result<Self> {
        assert!(key_len == 16 || key_len == 40, "key_len is 16 or 40");
        let map = map_create_flags(
            BPF_MAP_TYPE_LRU_HASH,
            key_len as u32,
            12,
            entries,
            BPF_F_NO_COMMON_LRU,
        )?;
        let key = -key_len; // fp offset of the key
        let value = key - 16; // fp offset of the value
        let mut p = vec![insn(MOV64_REG, 6, 1, 0, 0)]; // r6 = ctx
        if new_flow_every_run {
            p.push(insn(CALL, 0, 0, 0, HELPER_GET_PRANDOM_U32));
            p.push(insn(MOV64_REG, 7, 0, 0, 0)); // r7 = random
        }
        p.extend([
            insn(LDX_W, 2, 6, 0, 0),     // r2 = data
            insn(LDX_W, 3, 6, 4, 0),     // r3 = data_end
            insn(MOV64_REG, 4, 2, 0, 0), // r4 = data
            insn(ADD64_IMM, 4, 0, 0, 42),
        ]);
        let bounds_check = p.len();
        p.push(insn(JGT_REG, 4, 3, 0, 0)); // if data + 42 > data_end goto pass (patched)
        if key_len == 40 {
            for off in (0..40).step_by(8) {
                p.push(insn(ST_DW, 10, 0, key + off, 0));
            }
        }
        let (src, dst, ports, protocol) = if key_len == 16 {
            (key, key + 4, key + 8, key + 12)
        } else {
            (key, key + 16, key + 32, key + 36)
        };
        p.extend([
            insn(LDX_W, 5, 2, 26, 0), // saddr
            insn(STX_W, 10, 5, src, 0),
            insn(LDX_W, 5, 2, 30, 0), // daddr
            insn(STX_W, 10, 5, dst, 0),
            insn(LDX_W, 5, 2, 34, 0), // ports
            insn(STX_W, 10, 5, ports, 0),
            insn(ST_W, 10, 0, protocol, 17),
        ]);
        if new_flow_every_run {
            p.push(insn(STX_W, 10, 7, src, 0));
        }
        p.extend([
            insn(LD_IMM64, 1, BPF_PSEUDO_MAP_FD, 0, map.as_raw_fd()),
            insn(0, 0, 0, 0, 0),
            insn(MOV64_REG, 2, 10, 0, 0),
            insn(ADD64_IMM, 2, 0, 0, key as i32),
            insn(CALL, 0, 0, 0, HELPER_MAP_LOOKUP_ELEM),
        ]);
        let hit_jump = p.len();
        p.push(insn(JNE_IMM, 0, 0, 0, 0)); // if r0 != 0 goto tx (patched)
        p.extend([
            insn(ST_DW, 10, 0, value, 0),
            insn(ST_DW, 10, 0, value + 8, 0),
            insn(LD_IMM64, 1, BPF_PSEUDO_MAP_FD, 0, map.as_raw_fd()),
            insn(0, 0, 0, 0, 0),
            insn(MOV64_REG, 2, 10, 0, 0),
            insn(ADD64_IMM, 2, 0, 0, key as i32),
            insn(MOV64_REG, 3, 10, 0, 0),
            insn(ADD64_IMM, 3, 0, 0, value as i32),
            insn(MOV64_IMM, 4, 0, 0, 0), // BPF_ANY
            insn(CALL, 0, 0, 0, HELPER_MAP_UPDATE_ELEM),
        ]);
        let tx = p.len();
        p.extend([insn(MOV64_IMM, 0, 0, 0, XDP_TX), insn(EXIT, 0, 0, 0, 0)]);
        let pass = p.len();
        p.extend([insn(MOV64_IMM, 0, 0, 0, XDP_PASS), insn(EXIT, 0, 0, 0, 0)]);
        p[bounds_check].off = (pass - bounds_check - 1) as i16;
        p[hit_jump].off = (tx - hit_jump - 1) as i16;
        let mut prog = load(&p, None)?;
        prog._maps.push(map);
        Ok(prog)
    }

    /// The per-packet-cost harness for BPF_PROG_TEST_RUN with `repeat`: the
    /// kernel runs a program `repeat` times on one buffer without restoring
    /// it, so a program that rewrites or encapsulates frames would see its
    /// own output from the second run on. This program puts the frame back
    /// first: it undoes a head adjustment of `grown_by` bytes (DSR
    /// encapsulation) if the frame is not `template.len()` long, writes every
    /// byte of `template` again, changes the flow per `vary`, then tail-calls
    /// the program `target_fd` (same context: ingress interface and all).
    /// If the tail call fails it returns XDP_ABORTED. Its own cost is
    /// measured by tail-calling a bare XDP_PASS program instead.
    pub fn restore_then_tail_call(
        template: &[u8],
        grown_by: i32,
        at: FlowOffsets,
        vary: Vary,
        target_fd: i32,
    ) -> std::io::Result<Self> {
        let len = template.len() as i32;
        let array = map_create(BPF_MAP_TYPE_PROG_ARRAY, 4, 4, 1)?;
        let key = 0u32;
        let value = target_fd as u32;
        let mut attr = [0u8; 32];
        put_u32(&mut attr, 0, array.as_raw_fd() as u32);
        put_u64(&mut attr, 8, &key as *const u32 as u64);
        put_u64(&mut attr, 16, &value as *const u32 as u64);
        let counter = map_create(BPF_MAP_TYPE_PERCPU_ARRAY, 4, 8, 1)?;
        let mut p = vec![
            insn(MOV64_REG, 6, 1, 0, 0), // r6 = ctx
            insn(MOV64_IMM, 7, 0, 0, 0), // r7 = run counter
        ];
        if vary != Vary::Nothing {
            p.extend([
                insn(LD_IMM64, 1, BPF_PSEUDO_MAP_FD, 0, counter.as_raw_fd()),
                insn(0, 0, 0, 0, 0),
                insn(ST_W, 10, 0, -4, 0),     // *(u32 *)(fp - 4) = 0
                insn(MOV64_REG, 2, 10, 0, 0), // r2 = fp
                insn(ADD64_IMM, 2, 0, 0, -4), // r2 = &key
                insn(CALL, 0, 0, 0, HELPER_MAP_LOOKUP_ELEM),
                insn(JEQ_IMM, 0, 0, 3, 0),   // if !r0 skip
                insn(LDX_DW, 7, 0, 0, 0),    // r7 = *r0
                insn(ADD64_IMM, 7, 0, 0, 1), // r7 += 1
                insn(STX_DW, 0, 7, 0, 0),    // *r0 = r7
            ]);
        }
        p.extend([
            insn(LDX_W, 2, 6, 0, 0),     // r2 = data
            insn(LDX_W, 3, 6, 4, 0),     // r3 = data_end
            insn(MOV64_REG, 4, 2, 0, 0), // r4 = data
            insn(ADD64_IMM, 4, 0, 0, len),
            insn(JEQ_REG, 4, 3, 5, 0),   // same length: skip the shrink
            insn(MOV64_REG, 1, 6, 0, 0), // r1 = ctx
            insn(MOV64_IMM, 2, 0, 0, grown_by), // r2 = delta
            insn(CALL, 0, 0, 0, HELPER_XDP_ADJUST_HEAD),
            insn(LDX_W, 2, 6, 0, 0),
            insn(LDX_W, 3, 6, 4, 0),
        ]);
        let mut body = Vec::new();
        let mut i = 0;
        while i + 4 <= template.len() {
            let w = i32::from_ne_bytes(template[i..i + 4].try_into().expect("4 bytes"));
            body.push(insn(ST_W, 2, 0, i as i16, w));
            i += 4;
        }
        while i < template.len() {
            body.push(insn(ST_B, 2, 0, i as i16, template[i] as i32));
            i += 1;
        }
        match vary {
            Vary::Nothing => {}
            Vary::Among(mask) => {
                body.push(insn(AND64_IMM, 7, 0, 0, mask as i32));
                body.push(insn(STX_H, 2, 7, at.sport as i16, 0));
            }
            Vary::Always => {
                body.push(insn(STX_H, 2, 7, at.sport as i16, 0));
                body.push(insn(RSH64_IMM, 7, 0, 0, 16));
                body.push(insn(STX_H, 2, 7, at.src_low as i16, 0));
            }
        }
        p.extend([
            insn(MOV64_REG, 4, 2, 0, 0),
            insn(ADD64_IMM, 4, 0, 0, len),
            insn(JGT_REG, 4, 3, body.len() as i16 + 5, 0), // too short: abort
        ]);
        p.extend(body);
        p.extend([
            insn(MOV64_REG, 1, 6, 0, 0), // r1 = ctx
            insn(LD_IMM64, 2, BPF_PSEUDO_MAP_FD, 0, array.as_raw_fd()),
            insn(0, 0, 0, 0, 0),
            insn(MOV64_IMM, 3, 0, 0, 0), // index 0
            insn(CALL, 0, 0, 0, HELPER_TAIL_CALL),
            insn(MOV64_IMM, 0, 0, 0, XDP_ABORTED), // abort:
            insn(EXIT, 0, 0, 0, 0),
        ]);
        let mut prog = load(&p, None)?;
        // After the load: the array's owner type is set by the first program.
        bpf(BPF_MAP_UPDATE_ELEM, &mut attr).map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("put the target in the tail-call array: {e}"),
            )
        })?;
        prog._maps = vec![array, counter];
        Ok(prog)
    }

    /// The program's file descriptor.
    pub fn raw_fd(&self) -> i32 {
        self.fd.as_raw_fd()
    }

    /// Frames the counting sink saw, summed over CPUs.
    pub fn count(&self) -> std::io::Result<u64> {
        let Some(map) = &self.counter else {
            return Ok(0);
        };
        let cpus = std::fs::read_to_string("/sys/devices/system/cpu/possible")
            .ok()
            .and_then(|s| {
                s.trim()
                    .rsplit(['-', ','])
                    .next()
                    .and_then(|n| n.parse::<usize>().ok())
            })
            .map_or(1, |last| last + 1);
        let key = 0u32;
        let mut values = vec![0u64; cpus];
        let mut attr = [0u8; 32];
        put_u32(&mut attr, 0, map.as_raw_fd() as u32);
        put_u64(&mut attr, 8, &key as *const u32 as u64);
        put_u64(&mut attr, 16, values.as_mut_ptr() as u64);
        bpf(BPF_MAP_LOOKUP_ELEM, &mut attr)?;
        Ok(values.iter().sum())
    }

    /// Pins the program at `path` (on bpffs).
    pub fn pin(&self, path: &Path) -> std::io::Result<()> {
        let c = CString::new(path.as_os_str().as_encoded_bytes()).map_err(std::io::Error::other)?;
        let mut attr = [0u8; 16];
        put_u64(&mut attr, 0, c.as_ptr() as u64);
        put_u32(&mut attr, 8, self.fd.as_raw_fd() as u32);
        bpf(BPF_OBJ_PIN, &mut attr).map(|_| ())
    }

    /// BPF_PROG_TEST_RUN: returns (return value, average duration).
    pub fn test_run(
        &self,
        data: &[u8],
        ctx: Option<&[u8]>,
        repeat: u32,
        flags: u32,
        batch_size: u32,
    ) -> std::io::Result<(u32, Duration)> {
        test_run_fd(self.fd.as_raw_fd(), data, ctx, repeat, flags, batch_size)
    }
}

/// BPF_PROG_TEST_RUN on any XDP program fd.
pub fn test_run_fd(
    fd: i32,
    data: &[u8],
    ctx: Option<&[u8]>,
    repeat: u32,
    flags: u32,
    batch_size: u32,
) -> std::io::Result<(u32, Duration)> {
    let mut attr = [0u8; 80];
    put_u32(&mut attr, 0, fd as u32);
    put_u32(&mut attr, 8, data.len() as u32);
    put_u64(&mut attr, 16, data.as_ptr() as u64);
    put_u32(&mut attr, 32, repeat);
    if let Some(ctx) = ctx {
        put_u32(&mut attr, 40, ctx.len() as u32);
        put_u64(&mut attr, 48, ctx.as_ptr() as u64);
    }
    put_u32(&mut attr, 64, flags);
    put_u32(&mut attr, 72, batch_size);
    bpf(BPF_PROG_TEST_RUN, &mut attr)?;
    let retval = u32::from_ne_bytes(attr[4..8].try_into().expect("4 bytes"));
    let duration = u32::from_ne_bytes(attr[36..40].try_into().expect("4 bytes"));
    Ok((retval, Duration::from_nanos(duration as u64)))
}

/// BPF_PROG_TEST_RUN once, returning the output frame too.
#[cfg(test)]
fn test_run_out(fd: i32, data: &[u8], out: &mut [u8]) -> std::io::Result<(u32, u32)> {
    let mut attr = [0u8; 80];
    put_u32(&mut attr, 0, fd as u32);
    put_u32(&mut attr, 8, data.len() as u32);
    put_u32(&mut attr, 12, out.len() as u32);
    put_u64(&mut attr, 16, data.as_ptr() as u64);
    put_u64(&mut attr, 24, out.as_mut_ptr() as u64);
    put_u32(&mut attr, 32, 1);
    bpf(BPF_PROG_TEST_RUN, &mut attr)?;
    let retval = u32::from_ne_bytes(attr[4..8].try_into().expect("4 bytes"));
    let size = u32::from_ne_bytes(attr[12..16].try_into().expect("4 bytes"));
    Ok((retval, size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_programs_load_and_return_their_verdicts() {
        if !crate::require_bpf("raw_programs_load_and_return_their_verdicts") {
            return;
        }
        let frame = crate::packet::Packet::udp("198.18.10.2", 1000, "198.18.100.1", 9).build();
        let pass = RawProgram::pass().expect("load pass");
        assert_eq!(
            pass.test_run(&frame, None, 1, 0, 0).unwrap().0,
            XDP_PASS as u32
        );
        let template: [u8; 42] = frame[..42].try_into().unwrap();
        let spray = RawProgram::udp_port_spray(&template, true).expect("load generator");
        let mut zeros = frame.clone();
        zeros[..42].fill(0);
        let mut out = vec![0u8; frame.len()];
        let (rv, _) = test_run_out(spray.fd.as_raw_fd(), &zeros, &mut out).unwrap();
        assert_eq!(rv, XDP_TX as u32);
        assert_eq!(
            &out[..34],
            &frame[..34],
            "the generator rewrote the headers"
        );
        assert_eq!(&out[38..42], &frame[38..42], "length and checksum 0 kept");
        let sink = RawProgram::counting_sink(true).expect("load sink");
        assert_eq!(
            sink.test_run(&frame, None, 7, 0, 0).unwrap().0,
            XDP_DROP as u32
        );
        assert_eq!(sink.count().unwrap(), 7, "the sink counted every run");
        for key_len in [16, 40] {
            for new_flow in [false, true] {
                let probe = RawProgram::lru_probe(key_len, 64, new_flow).expect("load LRU probe");
                // 1000 runs into 64 entries: inserts that evict, with `new_flow`.
                assert_eq!(
                    probe.test_run(&frame, None, 1000, 0, 0).unwrap().0,
                    XDP_TX as u32,
                    "LRU probe, {key_len}-byte key, new flows: {new_flow}"
                );
                assert_eq!(
                    probe.test_run(&frame[..40], None, 1, 0, 0).unwrap().0,
                    XDP_PASS as u32,
                    "a frame cut before the ports is passed"
                );
            }
        }
    }
}
