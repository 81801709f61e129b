//! `balance leastconn`: the server with the fewest active connections
//! relative to its weight.
//!
//! The proxy counts in-flight connections in a [`ConnTracker`] (one atomic
//! per server, shared across rebuilds): `tracker.acquire(idx)` when a
//! connection to the server starts, drop the guard when it ends. A server's
//! load is HAProxy's leastconn key: 0 when idle, else `(active + 1) /
//! weight`. Idle servers therefore tie whatever their weights, and ties
//! are broken round robin by rotating where the scan starts, so idle
//! servers take turns (as HAProxy's tree does); weights matter once
//! connections pile up.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::{BackendSelection, BuildContext, ConnTracker, SelectKey, Server, ServerIdx, Tried};

/// True when `a` (active, weight) is strictly less loaded than `b` by
/// HAProxy's leastconn key (0 when idle, else `(active + 1) / weight`),
/// cross-multiplied to stay in integers.
#[inline]
pub(crate) fn less_loaded(a: (u32, u32), b: (u32, u32)) -> bool {
    match (a.0, b.0) {
        (_, 0) => false,
        (0, _) => true,
        _ => (u64::from(a.0) + 1) * u64::from(b.1) < (u64::from(b.0) + 1) * u64::from(a.1),
    }
}

/// True when `a` (active, weight) has strictly fewer active connections
/// per unit of weight than `b` (`balance random`'s comparison, HAProxy's).
#[inline]
pub(crate) fn fewer_per_weight(a: (u32, u32), b: (u32, u32)) -> bool {
    u64::from(a.0) * u64::from(b.1) < u64::from(b.0) * u64::from(a.1)
}

/// Weighted least connections.
#[derive(Debug)]
pub struct LeastConn {
    servers: Vec<(ServerIdx, u32)>,
    conns: ConnTracker,
    rotor: AtomicUsize,
}

impl BackendSelection for LeastConn {
    fn build(servers: &[Server], ctx: &BuildContext) -> Self {
        Self {
            servers: servers.iter().map(|s| (s.idx, s.weight)).collect(),
            conns: ctx.conns.clone(),
            rotor: AtomicUsize::new(0),
        }
    }

    fn select(&self, _key: SelectKey<'_>, accept: impl Fn(ServerIdx) -> bool) -> Option<ServerIdx> {
        let n = self.servers.len();
        let start = self.rotor.fetch_add(1, Ordering::Relaxed) % n;
        let mut tried = Tried::new();
        while !tried.exhausted() {
            // One O(n) scan per attempt for the least loaded untried server;
            // the first one in rotated order wins ties.
            let mut best: Option<(ServerIdx, (u32, u32))> = None;
            for k in 0..n {
                let (idx, weight) = self.servers[(start + k) % n];
                if tried.contains(idx) {
                    continue;
                }
                let load = (self.conns.active(idx), weight);
                if best.is_none_or(|(_, b)| less_loaded(load, b)) {
                    best = Some((idx, load));
                }
            }
            let (idx, _) = best?;
            if tried.propose(idx, &accept) {
                return Some(idx);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::*;

    fn build(weights: &[u32]) -> (LeastConn, ConnTracker) {
        let conns = ConnTracker::new(weights.len());
        let ctx = BuildContext {
            conns: conns.clone(),
            random_seed: 0,
        };
        (LeastConn::build(&servers(weights), &ctx), conns)
    }

    #[test]
    fn idle_equal_servers_take_turns() {
        let (lc, _) = build(&[1, 1, 1]);
        let p: Vec<_> = (0..6)
            .map(|_| lc.select(SelectKey::None, all).unwrap())
            .collect();
        assert_eq!(p, [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn picks_fewest_connections() {
        let (lc, conns) = build(&[1, 1, 1]);
        let _g = [conns.acquire(0), conns.acquire(0), conns.acquire(2)];
        // loads: s0 3/1, s1 1/1, s2 2/1
        for _ in 0..5 {
            assert_eq!(lc.select(SelectKey::None, all), Some(1));
        }
        // s1 vetoed: s2 is next least loaded.
        assert_eq!(lc.select(SelectKey::None, |i| i != 1), Some(2));
    }

    #[test]
    fn weight_scales_load() {
        let (lc, conns) = build(&[2, 1]);
        // Idle servers tie whatever their weights: they take turns.
        let p: Vec<_> = (0..4)
            .map(|_| lc.select(SelectKey::None, all).unwrap())
            .collect();
        assert_eq!(p, [0, 1, 0, 1]);
        let g0 = conns.acquire(0);
        // s0: (1+1)/2 = 1 vs s1 idle (0) -> s1.
        assert_eq!(lc.select(SelectKey::None, all), Some(1));
        let g1 = conns.acquire(1);
        // s0: (1+1)/2 = 1 vs s1: (1+1)/1 = 2 -> s0, the heavier one.
        for _ in 0..3 {
            assert_eq!(lc.select(SelectKey::None, all), Some(0));
        }
        drop((g0, g1));
    }

    #[test]
    fn held_connections_spread_by_weight() {
        // Every pick opens a connection that stays open: counts must end
        // proportional to weight (within one connection).
        let (lc, conns) = build(&[1, 2, 3]);
        let guards: Vec<_> = (0..600)
            .map(|_| conns.acquire(lc.select(SelectKey::None, all).unwrap()))
            .collect();
        for (i, w) in [1u32, 2, 3].iter().enumerate() {
            assert!(
                conns.active(i).abs_diff(100 * w) <= 1,
                "{i}: {}",
                conns.active(i)
            );
        }
        drop(guards);
        assert_eq!(conns.active(0) + conns.active(1) + conns.active(2), 0);
    }
}
