//! `balance random`: power of two choices. Draw two different servers at
//! random, weighted, and take the second only if it has strictly fewer
//! active connections per unit of weight (HAProxy's comparison). Idle
//! servers tie, so light traffic follows the weights of the first draw;
//! under load the less loaded of the two wins. Nearly as even as least
//! connections without scanning every server, and no shared cursor to
//! contend on.
//!
//! The generator is a splitmix64 sequence behind one atomic counter: lock
//! free, and seeded from [`BuildContext::random_seed`] so tests are exact.

use std::sync::atomic::{AtomicU64, Ordering};

use super::leastconn::fewer_per_weight;
use super::{BackendSelection, BuildContext, ConnTracker, SelectKey, Server, ServerIdx, Tried};

/// Random draws spent looking for an eligible server before falling back to
/// a scan (draws keep hitting the same servers once most were tried).
const DRAWS_PER_ATTEMPT: usize = 4;

/// Weighted power-of-two-choices.
#[derive(Debug)]
pub struct PowerOfTwoChoices {
    servers: Vec<(ServerIdx, u32)>,
    /// Running sum of weights, for weighted draws by binary search.
    cumulative: Vec<u64>,
    conns: ConnTracker,
    rng: AtomicU64,
}

impl PowerOfTwoChoices {
    fn next_u64(&self) -> u64 {
        let mut z = self
            .rng
            .fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed)
            .wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// One weighted draw (position in `servers`).
    fn draw(&self) -> usize {
        let total = *self.cumulative.last().expect("non-empty");
        // Multiply-shift maps 64 random bits onto [0, total) without the
        // modulo bias that matters for small totals.
        let r = ((u128::from(self.next_u64()) * u128::from(total)) >> 64) as u64;
        self.cumulative.partition_point(|&c| c <= r)
    }

    /// A weighted draw among servers not tried yet (and not `except`).
    /// After a few draws that only hit excluded servers, take the first
    /// eligible one from a random place instead, so the answer is `None`
    /// only when no eligible server is left.
    fn candidate(&self, tried: &Tried, except: Option<usize>) -> Option<usize> {
        let eligible = |p: usize| Some(p) != except && !tried.contains(self.servers[p].0);
        if let Some(p) = (0..DRAWS_PER_ATTEMPT)
            .map(|_| self.draw())
            .find(|&p| eligible(p))
        {
            return Some(p);
        }
        let n = self.servers.len();
        let start = (self.next_u64() % n as u64) as usize;
        (0..n).map(|k| (start + k) % n).find(|&p| eligible(p))
    }

    fn load(&self, pos: usize) -> (u32, u32) {
        let (idx, weight) = self.servers[pos];
        (self.conns.active(idx), weight)
    }
}

impl BackendSelection for PowerOfTwoChoices {
    fn build(servers: &[Server], ctx: &BuildContext) -> Self {
        let cumulative = servers
            .iter()
            .scan(0u64, |acc, s| {
                *acc += u64::from(s.weight);
                Some(*acc)
            })
            .collect();
        Self {
            servers: servers.iter().map(|s| (s.idx, s.weight)).collect(),
            cumulative,
            conns: ctx.conns.clone(),
            rng: AtomicU64::new(ctx.random_seed),
        }
    }

    fn select(&self, _key: SelectKey<'_>, accept: impl Fn(ServerIdx) -> bool) -> Option<ServerIdx> {
        let mut tried = Tried::new();
        while !tried.exhausted() {
            let a = self.candidate(&tried, None)?;
            let pick = match self.candidate(&tried, Some(a)) {
                Some(b) if fewer_per_weight(self.load(b), self.load(a)) => b,
                _ => a,
            };
            let idx = self.servers[pick].0;
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
    use std::collections::VecDeque;

    fn build(weights: &[u32], seed: u64) -> (PowerOfTwoChoices, ConnTracker) {
        let conns = ConnTracker::new(weights.len());
        let ctx = BuildContext {
            conns: conns.clone(),
            random_seed: seed,
        };
        (PowerOfTwoChoices::build(&servers(weights), &ctx), conns)
    }

    #[test]
    fn weighted_draws_follow_weights() {
        let (p2c, _) = build(&[1, 3], 42);
        let mut counts = [0usize; 2];
        for _ in 0..40_000 {
            counts[p2c.draw()] += 1;
        }
        let share = counts[1] as f64 / 40_000.0;
        assert!((share - 0.75).abs() < 0.02, "{counts:?}");
    }

    #[test]
    fn same_seed_same_sequence() {
        let (a, _) = build(&[1, 1, 1, 1], 9);
        let (b, _) = build(&[1, 1, 1, 1], 9);
        let pa: Vec<_> = (0..50).map(|_| a.select(SelectKey::None, all)).collect();
        let pb: Vec<_> = (0..50).map(|_| b.select(SelectKey::None, all)).collect();
        assert_eq!(pa, pb);
    }

    #[test]
    fn idle_servers_follow_the_weights() {
        // Nothing in flight: every comparison ties and the first (weighted)
        // draw wins, so picks split 1:3.
        let (p2c, _) = build(&[1, 3], 7);
        let mut counts = [0usize; 2];
        for _ in 0..4_000 {
            counts[p2c.select(SelectKey::None, all).unwrap()] += 1;
        }
        let share = counts[0] as f64 / 4_000.0;
        assert!((share - 0.25).abs() < 0.03, "{counts:?}");
    }

    #[test]
    fn prefers_the_less_loaded_of_two() {
        // Two servers: every pick compares both, so the loaded one (5 conns)
        // is never chosen while the other is idle.
        let (p2c, conns) = build(&[1, 1], 3);
        let _g: Vec<_> = (0..5).map(|_| conns.acquire(0)).collect();
        for _ in 0..50 {
            assert_eq!(p2c.select(SelectKey::None, all), Some(1));
        }
    }

    #[test]
    fn load_converges_to_weights() {
        // Keep a window of 300 open connections; each pick opens one and
        // the oldest closes. Picks should split about 1:2:3.
        let (p2c, conns) = build(&[1, 2, 3], 11);
        let mut open = VecDeque::new();
        let mut counts = [0usize; 3];
        for _ in 0..30_000 {
            let idx = p2c.select(SelectKey::None, all).unwrap();
            counts[idx] += 1;
            open.push_back(conns.acquire(idx));
            if open.len() > 300 {
                open.pop_front();
            }
        }
        for (i, w) in [1usize, 2, 3].iter().enumerate() {
            let expect = 30_000 * w / 6;
            let dev = counts[i].abs_diff(expect) as f64 / expect as f64;
            assert!(dev < 0.10, "{counts:?}");
        }
    }

    #[test]
    fn veto_reaches_the_only_acceptable_server() {
        // 10 servers, only s7 accepted: draws or the final scan must find it.
        let (p2c, _) = build(&[1; 10], 5);
        for _ in 0..100 {
            assert_eq!(p2c.select(SelectKey::None, |i| i == 7), Some(7));
        }
    }
}
