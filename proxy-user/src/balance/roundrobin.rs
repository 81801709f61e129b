//! `balance roundrobin` (nginx's smooth weighted round robin) and
//! `balance static-rr` (a precomputed weighted cycle).
//!
//! Smooth WRR keeps a "current weight" per server. Each pick adds every
//! server's weight to its current weight, takes the largest, and subtracts
//! the total weight from the winner. Over one cycle of `sum(weights)` picks
//! each server is chosen exactly `weight` times, spread out instead of in
//! bursts (5:1:1 gives `a a b a c a a`, not `a a a a a b c`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use super::{
    scan_from, smooth_sequence, BackendSelection, BuildContext, SelectKey, Server, ServerIdx, Tried,
};

/// One smooth-WRR step over `current`/`weights`; returns the winner's
/// position. Ties go to the lowest position, which makes sequences
/// reproducible.
pub(crate) fn smooth_step(current: &mut [i64], weights: &[i64], total: i64) -> usize {
    let (best, t) = step_among(current, weights, |_| true).expect("non-empty server set");
    debug_assert_eq!(t, total);
    best
}

/// A smooth-WRR step restricted to the `eligible` positions (nginx skips
/// servers already tried for this request the same way). Returns the winner
/// and the total weight that was charged to it.
fn step_among(
    current: &mut [i64],
    weights: &[i64],
    eligible: impl Fn(usize) -> bool,
) -> Option<(usize, i64)> {
    let mut best: Option<usize> = None;
    let mut total = 0;
    for i in 0..current.len() {
        if eligible(i) {
            current[i] += weights[i];
            total += weights[i];
            if best.is_none_or(|b| current[i] > current[b]) {
                best = Some(i);
            }
        }
    }
    let best = best?;
    current[best] -= total;
    Some((best, total))
}

/// Revert a [`step_among`] with the same `eligible` set.
fn undo_step(
    current: &mut [i64],
    weights: &[i64],
    eligible: impl Fn(usize) -> bool,
    (best, total): (usize, i64),
) {
    for i in (0..current.len()).filter(|&i| eligible(i)) {
        current[i] -= weights[i];
    }
    current[best] += total;
}

/// Smooth weighted round robin (`balance roundrobin`).
///
/// State is a small mutex-protected vector: a pick is O(servers) and the
/// lock is held only for that scan (plus the caller's `accept`, which must
/// be cheap).
#[derive(Debug)]
pub struct RoundRobin {
    idx: Vec<ServerIdx>,
    weights: Vec<i64>,
    current: Mutex<Vec<i64>>,
}

impl BackendSelection for RoundRobin {
    fn build(servers: &[Server], _ctx: &BuildContext) -> Self {
        let weights: Vec<i64> = servers.iter().map(|s| i64::from(s.weight)).collect();
        Self {
            idx: servers.iter().map(|s| s.idx).collect(),
            current: Mutex::new(vec![0; weights.len()]),
            weights,
        }
    }

    fn select(&self, _key: SelectKey<'_>, accept: impl Fn(ServerIdx) -> bool) -> Option<ServerIdx> {
        // A panicking `accept` poisons the lock; the weights are still
        // consistent enough to keep balancing, so ignore the poison.
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        let mut tried = Tried::new();
        let mut step = step_among(&mut current, &self.weights, |_| true)?;
        loop {
            let idx = self.idx[step.0];
            if tried.propose(idx, &accept) {
                return Some(idx);
            }
            // Rejected: replay this pick as if the rejected server(s) were
            // not in the set, so a veto neither lets them accumulate credit
            // (a burst later) nor skews the others' smooth order.
            undo_step(
                &mut current,
                &self.weights,
                |i| i == step.0 || !tried.contains(self.idx[i]),
                step,
            );
            if tried.exhausted() {
                return None;
            }
            step = step_among(&mut current, &self.weights, |i| {
                !tried.contains(self.idx[i])
            })?;
        }
    }
}

/// `balance static-rr`: the weighted cycle is computed once at build time
/// and walked with an atomic cursor, so a pick is lock-free and O(1).
/// Weight changes need a rebuild (HAProxy: "static" weights).
#[derive(Debug)]
pub struct StaticRoundRobin {
    sequence: Vec<ServerIdx>,
    order: Vec<ServerIdx>,
    cursor: AtomicUsize,
}

impl BackendSelection for StaticRoundRobin {
    fn build(servers: &[Server], _ctx: &BuildContext) -> Self {
        Self {
            sequence: smooth_sequence(servers),
            order: servers.iter().map(|s| s.idx).collect(),
            cursor: AtomicUsize::new(0),
        }
    }

    fn select(&self, _key: SelectKey<'_>, accept: impl Fn(ServerIdx) -> bool) -> Option<ServerIdx> {
        let at = self.cursor.fetch_add(1, Ordering::Relaxed) % self.sequence.len();
        let first = self.sequence[at];
        let mut tried = Tried::new();
        if tried.propose(first, &accept) {
            return Some(first);
        }
        // Rejected: try the others in server order after the rejected one.
        let start = self.order.binary_search(&first).map_or(0, |p| p + 1);
        scan_from(&self.order, start, &mut tried, &accept)
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::*;

    fn picks<S: BackendSelection>(
        s: &S,
        n: usize,
        accept: impl Fn(ServerIdx) -> bool,
    ) -> Vec<ServerIdx> {
        (0..n)
            .map(|_| s.select(SelectKey::None, &accept).unwrap())
            .collect()
    }

    #[test]
    fn smooth_rr_5_1_1_is_nginx_sequence() {
        // Current weights before/after each pick (a=5, b=1, c=1, total 7):
        //   pick  +w          winner  -7
        //   1    ( 5, 1, 1)   a      (-2, 1, 1)
        //   2    ( 3, 2, 2)   a      (-4, 2, 2)
        //   3    ( 1, 3, 3)   b      ( 1,-4, 3)
        //   4    ( 6,-3, 4)   a      (-1,-3, 4)
        //   5    ( 4,-2, 5)   c      ( 4,-2,-2)
        //   6    ( 9,-1,-1)   a      ( 2,-1,-1)
        //   7    ( 7, 0, 0)   a      ( 0, 0, 0)  <- back to the start
        let rr = RoundRobin::build(&servers(&[5, 1, 1]), &BuildContext::default());
        assert_eq!(
            picks(&rr, 14, all),
            [0, 0, 1, 0, 2, 0, 0, 0, 0, 1, 0, 2, 0, 0]
        );
    }

    #[test]
    fn smooth_rr_equal_weights_cycle_in_order() {
        let rr = RoundRobin::build(&servers(&[1, 1, 1]), &BuildContext::default());
        assert_eq!(picks(&rr, 6, all), [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn smooth_rr_distribution_matches_weights() {
        let rr = RoundRobin::build(&servers(&[3, 2, 1, 4]), &BuildContext::default());
        let mut counts = [0; 4];
        for p in picks(&rr, 1000, all) {
            counts[p] += 1;
        }
        // 100 full cycles of 10 picks: exact.
        assert_eq!(counts, [300, 200, 100, 400]);
    }

    #[test]
    fn smooth_rr_veto_spreads_load_over_the_rest_by_weight() {
        // s0 (weight 5) vetoed: s1 and s2 (1 each) alternate, and s0 is not
        // punished afterwards (its charge was moved, not added).
        let rr = RoundRobin::build(&servers(&[5, 1, 1]), &BuildContext::default());
        let vetoed = picks(&rr, 6, |i| i != 0);
        assert_eq!(vetoed.iter().filter(|&&p| p == 1).count(), 3);
        assert_eq!(vetoed.iter().filter(|&&p| p == 2).count(), 3);
        let after = picks(&rr, 7, all);
        assert_eq!(after.iter().filter(|&&p| p == 0).count(), 5, "{after:?}");
    }

    #[test]
    fn static_rr_walks_the_precomputed_cycle() {
        // Cycle for 2:1 is [s0, s1, s0]; the cursor walks it forever.
        let srr = StaticRoundRobin::build(&servers(&[2, 1]), &BuildContext::default());
        assert_eq!(srr.sequence, vec![0, 1, 0]);
        assert_eq!(picks(&srr, 7, all), [0, 1, 0, 0, 1, 0, 0]);
    }

    #[test]
    fn static_rr_veto_falls_to_next_server() {
        let srr = StaticRoundRobin::build(&servers(&[1, 1, 1]), &BuildContext::default());
        // cursor 0 -> s0 rejected -> s1; cursor 1 -> s1; cursor 2 -> s2.
        assert_eq!(picks(&srr, 3, |i| i != 0), [1, 1, 2]);
    }
}
