//! Weighted Maglev lookup-table builder (Eisenbud et al., NSDI '16, with
//! Katran's weight handling), shared by the L4 control plane (which copies
//! the table into the XDP program's BPF array) and anything else that wants
//! a flow-hash → real mapping with minimal disruption.
//!
//! Each real gets a permutation of the table slots from two seeded hashes of
//! its stable identity: `offset = h1(id) mod M`, `skip = h2(id) mod (M−1) + 1`,
//! slot *j* = `(offset + j·skip) mod M`. With M prime every permutation visits
//! every slot. Reals then take turns claiming their next still-empty slot;
//! weights decide how often a real gets a turn (each round it adds its weight
//! to a credit and claims a slot per `max_weight` of credit), so table fill
//! is proportional to weight.
//!
//! Properties the L4 plane relies on:
//! * **Deterministic**: the table depends only on the reals' ids, weights,
//!   their order and M — same input, same table, in any process (fixed xxh3
//!   seeds, no randomness, no hash maps).
//! * **Minimal disruption**: removing one of N reals reassigns its ~M/N slots
//!   and only a small fraction of the others'.
//! * **Fast**: M = 65537 with 100 reals is ~M·ln M slot probes, a few ms.
//!
//! Entries are indexes into the `reals` slice given to [`MaglevTable::build`]:
//! keep a stable order (e.g. sorted by id) so unchanged reals keep their
//! index across rebuilds.

use thiserror::Error;

use super::hash_bytes;

/// Default table size (prime, as Katran's default).
pub const DEFAULT_TABLE_SIZE: u32 = 65_537;

/// Largest accepted table size; bigger is almost certainly a config typo
/// and would allocate a huge BPF map.
pub const MAX_TABLE_SIZE: u32 = 1 << 24;

/// Seeds for the two permutation hashes (fixed forever: changing them
/// reshuffles every flow).
const SEED_OFFSET: u64 = 0x4d41_474c_4f46_4631; // "MAGLOFF1"
const SEED_SKIP: u64 = 0x4d41_474c_534b_5031; // "MAGLSKP1"

/// Marks a slot nobody claimed yet while building.
const EMPTY: u32 = u32::MAX;

/// One backend ("real") of an L4 service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MaglevReal<'a> {
    /// Stable identity, e.g. the real's address bytes (`ip ‖ port`). Only
    /// the bytes matter, not the position in the slice.
    pub id: &'a [u8],
    /// Relative weight; 0 gets no slots (drained).
    pub weight: u32,
}

/// Why a table cannot be built.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum MaglevError {
    /// Permutations only cover every slot when the size is prime.
    #[error("maglev table size {0} is not prime")]
    NotPrime(u32),
    /// Size out of the accepted range.
    #[error("maglev table size {size} out of range (need {min}..={MAX_TABLE_SIZE})")]
    BadSize { size: u32, min: u32 },
    /// No real with a non-zero weight: nothing to fill the table with.
    #[error("no real with a non-zero weight")]
    NoReals,
}

/// A built lookup table and how many slots each real got.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MaglevTable {
    entries: Vec<u32>,
    fill: Vec<u32>,
}

impl MaglevTable {
    /// Build a table of `size` slots (prime, `reals.len() ..= MAX_TABLE_SIZE`).
    pub fn build(reals: &[MaglevReal<'_>], size: u32) -> Result<Self, MaglevError> {
        let min = u32::try_from(reals.len()).unwrap_or(u32::MAX).max(2);
        if !(min..=MAX_TABLE_SIZE).contains(&size) {
            return Err(MaglevError::BadSize { size, min });
        }
        if !is_prime(size) {
            return Err(MaglevError::NotPrime(size));
        }
        let max_weight = reals.iter().map(|r| r.weight).max().unwrap_or(0);
        if max_weight == 0 {
            return Err(MaglevError::NoReals);
        }

        let m = u64::from(size);
        // Per real: next slot of its permutation, step, weight credit.
        struct Cursor {
            real: u32,
            next: u64,
            skip: u64,
            weight: u64,
            credit: u64,
        }
        let mut cursors: Vec<Cursor> = reals
            .iter()
            .enumerate()
            .filter(|(_, r)| r.weight > 0)
            .map(|(i, r)| Cursor {
                real: i as u32,
                next: hash_bytes(SEED_OFFSET, r.id) % m,
                skip: hash_bytes(SEED_SKIP, r.id) % (m - 1) + 1,
                weight: u64::from(r.weight),
                credit: 0,
            })
            .collect();

        let mut entries = vec![EMPTY; size as usize];
        let mut fill = vec![0u32; reals.len()];
        let mut filled = 0u64;
        let max_weight = u64::from(max_weight);
        'rounds: loop {
            for c in &mut cursors {
                c.credit += c.weight;
                if c.credit < max_weight {
                    continue;
                }
                c.credit -= max_weight;
                // Claim the next empty slot of this real's permutation; one
                // exists because the table is not full yet and the
                // permutation visits every slot.
                let slot = loop {
                    let s = c.next;
                    c.next += c.skip;
                    if c.next >= m {
                        c.next -= m;
                    }
                    if entries[s as usize] == EMPTY {
                        break s;
                    }
                };
                entries[slot as usize] = c.real;
                fill[c.real as usize] += 1;
                filled += 1;
                if filled == m {
                    break 'rounds;
                }
            }
        }
        Ok(Self { entries, fill })
    }

    /// The table: `entries()[hash % size]` is the real index for a flow.
    pub fn entries(&self) -> &[u32] {
        &self.entries
    }

    /// The table, by value (for copying into the BPF array).
    pub fn into_entries(self) -> Vec<u32> {
        self.entries
    }

    /// Slots per real, indexed like the input `reals`.
    pub fn fill(&self) -> &[u32] {
        &self.fill
    }

    /// Table size M.
    pub fn size(&self) -> u32 {
        self.entries.len() as u32
    }

    /// Real index for a flow hash.
    #[inline]
    pub fn lookup(&self, flow_hash: u64) -> u32 {
        self.entries[(flow_hash % self.entries.len() as u64) as usize]
    }
}

/// Convenience: just the entries of [`MaglevTable::build`].
pub fn build_table(reals: &[MaglevReal<'_>], size: u32) -> Result<Vec<u32>, MaglevError> {
    MaglevTable::build(reals, size).map(MaglevTable::into_entries)
}

/// Deterministic primality test (trial division; sizes are ≤ 2^24 so at
/// most ~2k divisions).
pub fn is_prime(n: u32) -> bool {
    if n < 2 {
        return false;
    }
    if n.is_multiple_of(2) {
        return n == 2;
    }
    let n = u64::from(n);
    let mut d = 3u64;
    while d * d <= n {
        if n.is_multiple_of(d) {
            return false;
        }
        d += 2;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<Vec<u8>> {
        // Like the L4 plane: IPv4 address + port bytes.
        (0..n)
            .map(|i| {
                let mut v = vec![10, 0, (i / 256) as u8, (i % 256) as u8];
                v.extend_from_slice(&80u16.to_be_bytes());
                v
            })
            .collect()
    }

    fn reals<'a>(ids: &'a [Vec<u8>], weights: &[u32]) -> Vec<MaglevReal<'a>> {
        ids.iter()
            .zip(weights)
            .map(|(id, &weight)| MaglevReal { id, weight })
            .collect()
    }

    /// Fraction of slots whose owner (by id) changed between two tables.
    fn owners<'a>(t: &MaglevTable, r: &[MaglevReal<'a>]) -> Vec<&'a [u8]> {
        t.entries().iter().map(|&e| r[e as usize].id).collect()
    }

    #[test]
    fn primality() {
        let primes: Vec<u32> = (0..30).filter(|&n| is_prime(n)).collect();
        assert_eq!(primes, [2, 3, 5, 7, 11, 13, 17, 19, 23, 29]);
        assert!(is_prime(65_537));
        assert!(is_prime(655_373));
        assert!(!is_prime(65_536));
        assert!(!is_prime(65_539 * 3));
        assert!(!is_prime(4_294_967_295));
    }

    #[test]
    fn rejects_bad_sizes_and_empty_sets() {
        let id = ids(3);
        let r = reals(&id, &[1, 1, 1]);
        assert_eq!(
            MaglevTable::build(&r, 65_536),
            Err(MaglevError::NotPrime(65_536))
        );
        assert_eq!(
            MaglevTable::build(&r, 2),
            Err(MaglevError::BadSize { size: 2, min: 3 })
        );
        assert!(matches!(
            MaglevTable::build(&r, 16_777_259),
            Err(MaglevError::BadSize { .. })
        ));
        assert_eq!(MaglevTable::build(&r[..0], 13), Err(MaglevError::NoReals));
        assert_eq!(
            MaglevTable::build(&reals(&id, &[0, 0, 0]), 13),
            Err(MaglevError::NoReals)
        );
    }

    #[test]
    fn small_table_walkthrough() {
        // M = 7 with 3 equal reals: each round every real claims its next
        // free slot in its own permutation; 7 slots fill in 3 rounds (the
        // last one partial), so fills are 3/2/2 in real order.
        let id = ids(3);
        let r = reals(&id, &[1, 1, 1]);
        let t = MaglevTable::build(&r, 7).unwrap();
        assert_eq!(t.fill(), &[3, 2, 2]);
        // Recompute by hand from the permutations to pin the algorithm.
        let perm = |id: &[u8], j: u64| {
            let off = hash_bytes(SEED_OFFSET, id) % 7;
            let skip = hash_bytes(SEED_SKIP, id) % 6 + 1;
            ((off + j * skip) % 7) as usize
        };
        let mut expect = [EMPTY; 7];
        let mut next = [0u64; 3];
        let mut filled = 0;
        'fill: loop {
            for (i, real) in r.iter().enumerate() {
                while expect[perm(real.id, next[i])] != EMPTY {
                    next[i] += 1;
                }
                expect[perm(real.id, next[i])] = i as u32;
                filled += 1;
                if filled == 7 {
                    break 'fill;
                }
            }
        }
        assert_eq!(t.entries(), &expect);
        // And pin the bytes: the XDP plane and every control-plane process
        // must agree, so a change of seeds or hash shows up here.
        assert_eq!(t.entries(), &[0, 2, 1, 0, 2, 1, 0]);
    }

    #[test]
    fn deterministic_and_every_slot_filled() {
        let id = ids(100);
        let r = reals(&id, &[1; 100]);
        let a = MaglevTable::build(&r, DEFAULT_TABLE_SIZE).unwrap();
        let b = MaglevTable::build(&r, DEFAULT_TABLE_SIZE).unwrap();
        assert_eq!(a, b);
        assert!(a.entries().iter().all(|&e| e < 100));
        assert_eq!(a.fill().iter().map(|&f| u64::from(f)).sum::<u64>(), 65_537);
        // Equal weights: 655 or 656 slots each (round-robin claiming).
        assert!(
            a.fill().iter().all(|&f| f == 655 || f == 656),
            "{:?}",
            a.fill()
        );
        assert_eq!(a.lookup(65_537 + 5), a.entries()[5]);
    }

    #[test]
    fn fill_is_proportional_to_weight() {
        let id = ids(4);
        let r = reals(&id, &[1, 2, 3, 0]);
        let t = MaglevTable::build(&r, DEFAULT_TABLE_SIZE).unwrap();
        let f = t.fill();
        assert_eq!(f[3], 0, "weight 0 gets nothing");
        for (i, w) in [1u32, 2, 3].iter().enumerate() {
            let expect = 65_537.0 * f64::from(*w) / 6.0;
            assert!((f64::from(f[i]) - expect).abs() / expect < 0.01, "{f:?}");
        }
    }

    #[test]
    fn removing_one_real_moves_about_one_nth() {
        for n in [10usize, 100] {
            let id = ids(n);
            let all = reals(&id, &vec![1; n]);
            let before = MaglevTable::build(&all, DEFAULT_TABLE_SIZE).unwrap();
            let victim = n / 3;
            let rest: Vec<_> = all
                .iter()
                .enumerate()
                .filter(|&(i, _)| i != victim)
                .map(|(_, r)| *r)
                .collect();
            let after = MaglevTable::build(&rest, DEFAULT_TABLE_SIZE).unwrap();
            let (b, a) = (owners(&before, &all), owners(&after, &rest));
            let victim_id = all[victim].id;
            let mut on_victim = 0;
            let mut others_moved = 0;
            for (x, y) in b.iter().zip(&a) {
                if *x == victim_id {
                    on_victim += 1;
                    assert_ne!(*y, victim_id);
                } else if x != y {
                    others_moved += 1;
                }
            }
            let m = 65_537.0;
            // The victim's ~1/n of the table moves...
            assert!((f64::from(on_victim) / m - 1.0 / n as f64).abs() < 0.01);
            // ...plus a small fraction of everybody else's slots: less than
            // the victim's own share (measured: ~0.2/n for n=10, ~0.6/n for
            // n=100, as the Maglev paper reports).
            let extra = f64::from(others_moved) / m;
            assert!(extra < 1.0 / n as f64, "n={n}: {extra}");
        }
    }

    #[test]
    fn adding_one_real_moves_about_one_nth() {
        let n = 50;
        let id = ids(n + 1);
        let all = reals(&id, &vec![1; n + 1]);
        let before = MaglevTable::build(&all[..n], DEFAULT_TABLE_SIZE).unwrap();
        let after = MaglevTable::build(&all, DEFAULT_TABLE_SIZE).unwrap();
        let (b, a) = (owners(&before, &all[..n]), owners(&after, &all));
        let moved = b.iter().zip(&a).filter(|(x, y)| x != y).count() as f64;
        let to_new = a.iter().filter(|o| **o == all[n].id).count() as f64;
        let m = 65_537.0;
        assert!((to_new / m - 1.0 / 51.0).abs() < 0.002);
        assert!((moved - to_new) / m < 0.5 / n as f64, "{moved} {to_new}");
    }

    #[test]
    fn identity_not_position_decides_permutation() {
        // Same reals in another order: each real keeps its fill (by id) and
        // nearly all slots keep their owner; only claim order differs.
        let id = ids(20);
        let fwd = reals(&id, &[1; 20]);
        let rev: Vec<_> = fwd.iter().rev().copied().collect();
        let a = MaglevTable::build(&fwd, 4_099).unwrap();
        let b = MaglevTable::build(&rev, 4_099).unwrap();
        let same = owners(&a, &fwd)
            .iter()
            .zip(owners(&b, &rev))
            .filter(|(x, y)| **x == *y)
            .count();
        assert!(same as f64 / 4_099.0 > 0.8, "{same}");
    }
}
