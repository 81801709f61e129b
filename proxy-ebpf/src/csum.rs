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

/// Applies a host-order difference to a checksum read from the packet as a
/// native-order u16 (byte-order independence of the one's-complement sum).
#[inline(always)]
pub fn apply_u16(csum: u16, diff: u64) -> u16 {
    !fold((!csum) as u64 + diff)
}
