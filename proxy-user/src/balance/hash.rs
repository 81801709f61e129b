//! Hash-based balancing: `balance source`, `balance uri [whole]`,
//! `balance hdr(name)`, each with `hash-type map-based` or `consistent`.
//!
//! * **map-based**: the key hash picks a slot modulo the weighted slot table
//!   (each server appears `weight / gcd` times, interleaved). Even and cheap,
//!   but adding or removing a server remaps most keys.
//! * **consistent**: a ketama-like ring; each server owns
//!   `weight × points_per_weight` points placed by hashing its name, and a
//!   key goes to the first point clockwise from its hash. Removing a server
//!   moves only the keys it owned; adding one moves only the keys it takes.
//!
//! A request without a key (header absent, …) is balanced round robin, as
//! HAProxy does. A vetoed candidate makes the lookup continue with the next
//! slot / the next point clockwise, which for the ring is exactly where the
//! key would go if that server were removed.

use std::net::IpAddr;

use super::roundrobin::StaticRoundRobin;
use super::{
    hash_bytes, smooth_sequence, BackendSelection, BuildContext, SelectKey, Server, ServerIdx,
    Tried, HASH_SEED_KEY,
};

/// Seed for ring point positions (fixed forever, see `HASH_SEED_KEY`).
const RING_SEED: u64 = 0x5745_4952_5249_4e47; // "WEIRRING"

/// Ring points per unit of weight. 64 keeps a weight-1 server's share within
/// roughly ±15% of its fair share with a handful of servers.
pub const RING_POINTS_PER_WEIGHT: u64 = 64;

/// Cap on ring size (16 bytes per point). Heavier sets get fewer points per
/// weight unit (at least 1), trading evenness for memory and build time.
pub const MAX_RING_POINTS: u64 = 1 << 18;

/// `hash-type`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HashType {
    /// `map-based` (HAProxy's default).
    #[default]
    MapBased,
    /// `consistent`.
    Consistent,
}

/// What part of the request is hashed (`balance source|uri|hdr(name)`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HashOn {
    /// Client IP address.
    Source,
    /// Request URI path; with `whole`, including the query string.
    Uri { whole: bool },
    /// Value of the named request header (name compared case-insensitively
    /// by the caller's lookup).
    Header(String),
}

impl HashOn {
    /// Compute the request's key hash. `header` looks a header up by name
    /// and is only called for [`HashOn::Header`]. An empty/absent header
    /// gives [`SelectKey::None`] (round robin).
    pub fn key_hash<'h>(
        &self,
        client_ip: IpAddr,
        uri: &str,
        header: impl FnOnce(&str) -> Option<&'h [u8]>,
    ) -> SelectKey<'static> {
        let h = match self {
            HashOn::Source => match client_ip.to_canonical() {
                IpAddr::V4(v4) => hash_bytes(HASH_SEED_KEY, &v4.octets()),
                IpAddr::V6(v6) => hash_bytes(HASH_SEED_KEY, &v6.octets()),
            },
            HashOn::Uri { whole } => hash_bytes(HASH_SEED_KEY, uri_part(uri, *whole).as_bytes()),
            HashOn::Header(name) => match header(name) {
                Some(v) if !v.is_empty() => hash_bytes(HASH_SEED_KEY, v),
                _ => return SelectKey::None,
            },
        };
        SelectKey::Hash(h)
    }
}

/// The part of a request target that `balance uri` hashes: the path (and
/// query with `whole`), with any absolute-form `scheme://authority` removed
/// so proxies and direct clients hash alike.
fn uri_part(uri: &str, whole: bool) -> &str {
    let path = match uri.find("://") {
        Some(p) => {
            let rest = &uri[p + 3..];
            rest.find('/').map_or("/", |s| &rest[s..])
        }
        None => uri,
    };
    if whole {
        path
    } else {
        path.split_once('?').map_or(path, |(p, _)| p)
    }
}

/// A hash-based selection (map-based table or consistent ring).
#[derive(Debug)]
pub struct HashSelection {
    kind: HashType,
    /// map-based: interleaved weighted slots.
    slots: Vec<ServerIdx>,
    /// consistent: (point, server) sorted by point.
    ring: Vec<(u64, ServerIdx)>,
    /// Round robin for requests without a key.
    no_key: StaticRoundRobin,
}

impl HashSelection {
    /// Build for `servers` (sorted, weight > 0, non-empty).
    pub fn new(kind: HashType, servers: &[Server]) -> Self {
        let (slots, ring) = match kind {
            HashType::MapBased => (smooth_sequence(servers), Vec::new()),
            HashType::Consistent => (Vec::new(), build_ring(servers)),
        };
        Self {
            kind,
            slots,
            ring,
            no_key: StaticRoundRobin::build(servers, &BuildContext::default()),
        }
    }

    /// Number of ring points per server index (consistent only), for stats
    /// and tests.
    pub fn ring_points(&self) -> impl Iterator<Item = (u64, ServerIdx)> + '_ {
        self.ring.iter().copied()
    }

    /// Walk a table of `len` entries from `start` (wrapping), proposing
    /// each server not yet tried. Bounded twice: by the attempt budget and
    /// by one lap of the table.
    fn walk(
        len: usize,
        start: usize,
        at: impl Fn(usize) -> ServerIdx,
        accept: &impl Fn(ServerIdx) -> bool,
    ) -> Option<ServerIdx> {
        let mut tried = Tried::new();
        for k in 0..len {
            let idx = at((start + k) % len);
            if tried.contains(idx) {
                continue;
            }
            if tried.propose(idx, accept) {
                return Some(idx);
            }
            if tried.exhausted() {
                break;
            }
        }
        None
    }
}

impl BackendSelection for HashSelection {
    fn build(servers: &[Server], _ctx: &BuildContext) -> Self {
        Self::new(HashType::default(), servers)
    }

    fn select(&self, key: SelectKey<'_>, accept: impl Fn(ServerIdx) -> bool) -> Option<ServerIdx> {
        let Some(h) = key.hash() else {
            return self.no_key.select(key, accept);
        };
        match self.kind {
            HashType::MapBased => {
                let start = (h % self.slots.len() as u64) as usize;
                Self::walk(self.slots.len(), start, |i| self.slots[i], &accept)
            }
            HashType::Consistent => {
                // First point at or after the hash, wrapping to the start.
                let start = self.ring.partition_point(|&(p, _)| p < h) % self.ring.len();
                Self::walk(self.ring.len(), start, |i| self.ring[i].1, &accept)
            }
        }
    }
}

/// Place `weight × points_per_weight` points per server. A point's position
/// depends only on the server's name and the point number, so a server keeps
/// its points whatever else is in the set.
fn build_ring(servers: &[Server]) -> Vec<(u64, ServerIdx)> {
    let total_weight: u64 = servers.iter().map(|s| u64::from(s.weight)).sum();
    let per_weight = (MAX_RING_POINTS / total_weight.max(1)).clamp(1, RING_POINTS_PER_WEIGHT);
    let mut ring = Vec::with_capacity((total_weight * per_weight) as usize);
    for s in servers {
        for i in 0..u64::from(s.weight) * per_weight {
            // Distinct seeds give independent positions for one name.
            ring.push((hash_bytes(RING_SEED ^ i, s.name.as_bytes()), s.idx));
        }
    }
    ring.sort_unstable();
    ring
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::*;
    use std::net::Ipv4Addr;

    fn owners(sel: &HashSelection, keys: usize) -> Vec<ServerIdx> {
        (0..keys)
            .map(|k| {
                let key = format!("client-{k}");
                sel.select(SelectKey::Bytes(key.as_bytes()), all).unwrap()
            })
            .collect()
    }

    #[test]
    fn uri_part_strips_query_and_authority() {
        assert_eq!(uri_part("/a/b?x=1", false), "/a/b");
        assert_eq!(uri_part("/a/b?x=1", true), "/a/b?x=1");
        assert_eq!(uri_part("http://h:8080/a?q", false), "/a");
        assert_eq!(uri_part("http://h", true), "/");
    }

    #[test]
    fn key_hash_per_source_kind() {
        let ip = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        let no_hdr = |_: &str| -> Option<&[u8]> { None };
        // An IPv4-mapped IPv6 client hashes like the IPv4 one.
        assert_eq!(
            HashOn::Source.key_hash(ip, "/", no_hdr),
            HashOn::Source.key_hash(mapped, "/", no_hdr)
        );
        let uri = HashOn::Uri { whole: false };
        assert_eq!(
            uri.key_hash(ip, "/x?1", no_hdr),
            uri.key_hash(ip, "/x?2", no_hdr)
        );
        let whole = HashOn::Uri { whole: true };
        assert_ne!(
            whole.key_hash(ip, "/x?1", no_hdr),
            whole.key_hash(ip, "/x?2", no_hdr)
        );
        let hdr = HashOn::Header("X-User".into());
        let seen = std::cell::RefCell::new(String::new());
        let k = hdr.key_hash(ip, "/", |name| {
            seen.replace(name.to_owned());
            Some(&b"alice"[..])
        });
        assert_eq!(seen.borrow().as_str(), "X-User");
        assert_eq!(
            k,
            SelectKey::Bytes(b"alice")
                .hash()
                .map_or(SelectKey::None, SelectKey::Hash)
        );
        assert_eq!(hdr.key_hash(ip, "/", no_hdr), SelectKey::None);
        assert_eq!(hdr.key_hash(ip, "/", |_| Some(&b""[..])), SelectKey::None);
    }

    #[test]
    fn hash_is_stable_across_builds() {
        // Same key, same server set -> same server, every time and in every
        // process (fixed seeds): pin one value so a seed change is noticed.
        assert_eq!(
            SelectKey::Bytes(b"weir").hash(),
            Some(xxhash_rust::xxh3::xxh3_64_with_seed(b"weir", HASH_SEED_KEY))
        );
        for kind in [HashType::MapBased, HashType::Consistent] {
            let a = HashSelection::new(kind, &servers(&[1, 2, 3]));
            let b = HashSelection::new(kind, &servers(&[1, 2, 3]));
            assert_eq!(owners(&a, 500), owners(&b, 500));
        }
    }

    #[test]
    fn map_based_slots_and_modulo() {
        // Weights 1:2 -> slots [s1, s0, s1]; a key goes to slot hash % 3.
        let sel = HashSelection::new(HashType::MapBased, &servers(&[1, 2]));
        assert_eq!(sel.slots, vec![1, 0, 1]);
        for k in 0..50u64 {
            let expect = sel.slots[(k % 3) as usize];
            assert_eq!(sel.select(SelectKey::Hash(k), all), Some(expect));
        }
    }

    #[test]
    fn map_based_veto_walks_to_the_next_slot() {
        // slots [s0, s1, s2]: hash 0 -> slot 0 (s0); s0 vetoed -> slot 1
        // (s1); s0 and s1 vetoed -> slot 2 (s2); hash 2 + s2 vetoed wraps
        // to slot 0.
        let sel = HashSelection::new(HashType::MapBased, &servers(&[1, 1, 1]));
        assert_eq!(sel.slots, vec![0, 1, 2]);
        assert_eq!(sel.select(SelectKey::Hash(0), |i| i != 0), Some(1));
        assert_eq!(sel.select(SelectKey::Hash(0), |i| i == 2), Some(2));
        assert_eq!(sel.select(SelectKey::Hash(2), |i| i != 2), Some(0));
        assert_eq!(sel.select(SelectKey::Hash(2), |_| false), None);
    }

    #[test]
    fn distribution_follows_weights() {
        for kind in [HashType::MapBased, HashType::Consistent] {
            let sel = HashSelection::new(kind, &servers(&[1, 1, 2, 4]));
            let mut counts = [0usize; 4];
            for o in owners(&sel, 40_000) {
                counts[o] += 1;
            }
            for (i, w) in [1usize, 1, 2, 4].iter().enumerate() {
                let expect = 40_000 * w / 8;
                let dev = counts[i].abs_diff(expect) as f64 / expect as f64;
                assert!(dev < 0.20, "{kind:?} server {i}: {counts:?}");
            }
        }
    }

    #[test]
    fn consistent_removal_moves_only_the_removed_servers_keys() {
        let all_servers = servers(&[1; 10]);
        let before = HashSelection::new(HashType::Consistent, &all_servers);
        let without3: Vec<_> = all_servers.iter().filter(|s| s.idx != 3).cloned().collect();
        let after = HashSelection::new(HashType::Consistent, &without3);
        let (b, a) = (owners(&before, 10_000), owners(&after, 10_000));
        let mut moved_from_3 = 0;
        for (x, y) in b.iter().zip(&a) {
            if *x == 3 {
                moved_from_3 += 1;
                assert_ne!(*y, 3);
            } else {
                assert_eq!(x, y, "a key not on s3 moved");
            }
        }
        // s3 owned about a tenth of the keys.
        assert!((600..1400).contains(&moved_from_3), "{moved_from_3}");
    }

    #[test]
    fn consistent_addition_moves_only_keys_to_the_new_server() {
        let before = HashSelection::new(HashType::Consistent, &servers(&[1; 9]));
        let after = HashSelection::new(HashType::Consistent, &servers(&[1; 10]));
        let (b, a) = (owners(&before, 10_000), owners(&after, 10_000));
        let moved: Vec<_> = b.iter().zip(&a).filter(|(x, y)| x != y).collect();
        assert!(moved.iter().all(|(_, y)| **y == 9));
        assert!((600..1400).contains(&moved.len()), "{}", moved.len());
    }

    #[test]
    fn consistent_veto_equals_removal() {
        // Vetoing s3 sends each key exactly where removing s3 would.
        let all_servers = servers(&[1; 8]);
        let with = HashSelection::new(HashType::Consistent, &all_servers);
        let without: Vec<_> = all_servers.iter().filter(|s| s.idx != 3).cloned().collect();
        let without = HashSelection::new(HashType::Consistent, &without);
        for k in 0..2000u64 {
            let key = SelectKey::Hash(k.wrapping_mul(0x9e37_79b9_7f4a_7c15));
            assert_eq!(with.select(key, |i| i != 3), without.select(key, all));
        }
    }

    #[test]
    fn ring_size_follows_weight_and_is_capped() {
        let sel = HashSelection::new(HashType::Consistent, &servers(&[1, 3]));
        let pts = sel.ring_points().filter(|&(_, s)| s == 1).count() as u64;
        assert_eq!(pts, 3 * RING_POINTS_PER_WEIGHT);
        let big = HashSelection::new(HashType::Consistent, &servers(&[256; 100]));
        assert!(big.ring.len() as u64 <= MAX_RING_POINTS);
        assert!(big.ring.len() >= 25_600);
    }

    #[test]
    fn no_key_falls_back_to_round_robin() {
        let sel = HashSelection::new(HashType::Consistent, &servers(&[1, 1, 1]));
        let picks: Vec<_> = (0..6)
            .map(|_| sel.select(SelectKey::None, all).unwrap())
            .collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
    }
}
