//! Internet checksum helpers (RFC 1071, incremental updates per RFC 1624).
//!
//! Rewriting an address or a port changes the IP header checksum (IPv4) and
//! the TCP/UDP checksum (its pseudo-header covers both addresses). Instead of
//! recomputing over the packet, we fold the difference: for each replaced
//! 16-bit word m -> m', HC' = ~(~HC + ~m + m').

/// Folds a 64-bit one's-complement sum to 16 bits.
#[inline(always)]
pub fn fold(mut sum: u64) -> u16 {
    // Four folds always suffice for a 64-bit accumulator; a bounded loop for the verifier.
    for _ in 0..4 {
        sum = (sum & 0xFFFF) + (sum >> 16);
    }
    sum as u16
}

/// Adds the 16-bit big-endian words of `bytes` (even length) to `sum`.
#[inline(always)]
pub fn add_words<const N: usize>(mut sum: u64, bytes: &[u8; N]) -> u64 {
    let mut i = 0;
    while i + 1 < N {
        sum += u16::from_be_bytes([bytes[i], bytes[i + 1]]) as u64;
        i += 2;
    }
    sum
}

/// Adds the complement of each 16-bit word of `bytes` to `sum` (removing them).
#[inline(always)]
pub fn sub_words<const N: usize>(mut sum: u64, bytes: &[u8; N]) -> u64 {
    let mut i = 0;
    while i + 1 < N {
        sum += (!u16::from_be_bytes([bytes[i], bytes[i + 1]])) as u64;
        i += 2;
    }
    sum
}

/// Applies an accumulated difference (`diff` = sum of ~old words + new words) to a stored checksum.
#[inline(always)]
pub fn apply(csum: [u8; 2], diff: u64) -> [u8; 2] {
    let old = u16::from_be_bytes(csum);
    (!fold((!old) as u64 + diff)).to_be_bytes()
}

/// Computes a fresh checksum over `bytes` (used for a new IPv4 header).
#[inline(always)]
pub fn compute<const N: usize>(bytes: &[u8; N]) -> [u8; 2] {
    (!fold(add_words(0, bytes))).to_be_bytes()
}

/// One's-complement difference between `old` and `new` (same length, a
/// multiple of 4), in host byte order, from the kernel's `bpf_csum_diff`.
#[inline(always)]
pub fn diff<const N: usize>(old: &mut [u8; N], new: &mut [u8; N]) -> u64 {
    // SAFETY: both pointers cover N valid bytes (packet bytes checked by the
    // caller's bounds check, or our stack); the helper only reads them.
    let d = unsafe {
        aya_ebpf::helpers::bpf_csum_diff(
            old.as_mut_ptr().cast(),
            N as u32,
            new.as_mut_ptr().cast(),
            N as u32,
            0,
        )
    };
    d as u32 as u64
}

/// Applies a host-order difference to a checksum stored in the packet, in
/// host order too (byte-order independence of the one's-complement sum).
#[inline(always)]
pub fn apply_ne(csum: [u8; 2], diff: u64) -> [u8; 2] {
    let old = u16::from_ne_bytes(csum);
    (!fold((!old) as u64 + diff)).to_ne_bytes()
}
