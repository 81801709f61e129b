//! Requests waiting for a server slot: HAProxy's pending-connection queues.
//!
//! Each backend has one queue for requests that may go to any server (the
//! algorithm skips full servers: roundrobin, leastconn, random, hashing
//! without a key) and one queue per server for requests that must go to
//! that server (a hash algorithm picked it and it is full). Every waiter
//! gets a sequence number on arrival, so the queues together are one FIFO:
//!
//! * **Direct hand-off.** A finishing request does not give its slot back
//!   while someone waits: [`BackendCtx::release`] hands it, still counted,
//!   to the oldest eligible waiter (the head of the server's own queue, or
//!   the oldest backend-queue waiter that may use this server, whichever
//!   arrived first). The server's count never drops in between, so a new
//!   arrival cannot take the slot ahead of the queue.
//! * **Nothing leaks.** The slot travels as a [`ServerSlot`] inside a
//!   oneshot channel. If the waiter is gone (timed out, client left), the
//!   send fails and the slot goes to the next waiter; if it leaves right
//!   after the send, the slot is dropped with the channel and its `Drop`
//!   hands it on again.
//! * **No lost wake-up.** A release that sees nobody waiting just
//!   decrements; a request that found everything full registers under the
//!   lock and then serves the queues from any room left
//!   ([`BackendCtx::dispatch`]). Both sides use sequentially consistent
//!   atomics (count, then waiter flag; flag, then count), so at least one
//!   of them sees the other.
//! * **Health.** [`BackendCtx::health_changed`] sends the waiters of a
//!   server that can no longer serve back to the balancer (HAProxy's
//!   redistribution) and hands new room (a server back UP) to the queues.
//!
//! The fast path (a server has room, nobody waits) takes no lock and
//! allocates nothing: one atomic load of the waiter count.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::sync::atomic::{fence, AtomicU64, Ordering};
use std::sync::{Arc, MutexGuard};

use tokio::sync::oneshot;

use crate::balance::{Choice, ConnGuard, SelectKey, ServerIdx};

use super::upstream::{BackendCtx, ServerSlot};

/// What a waiter is woken with: a slot, or `None` to choose again (its
/// server went away, the balancer changed, or nothing is usable any more).
pub(crate) type Wake = Option<ServerSlot>;

/// Where a request waits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Place {
    /// The backend queue: any server the balancer allows.
    Backend,
    /// This server's own queue.
    Server(ServerIdx),
}

struct Waiter {
    wake: oneshot::Sender<Wake>,
    /// Servers that already failed this request (backend queue only: a
    /// server-queue waiter wants exactly its server).
    excluded: Vec<ServerIdx>,
}

/// Every queue of one backend, behind one lock (taken only when somebody
/// waits or is about to).
pub(crate) struct Queues {
    next_seq: u64,
    backend: BTreeMap<u64, Waiter>,
    servers: Vec<BTreeMap<u64, Waiter>>,
}

impl std::fmt::Debug for Queues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queues")
            .field("backend", &self.backend.len())
            .field(
                "servers",
                &self.servers.iter().map(BTreeMap::len).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Queues {
    /// Empty queues for a backend of `servers` servers.
    pub(crate) fn new(servers: usize) -> Self {
        Self {
            next_seq: 0,
            backend: BTreeMap::new(),
            servers: (0..servers).map(|_| BTreeMap::new()).collect(),
        }
    }

    fn queue(&mut self, place: Place) -> &mut BTreeMap<u64, Waiter> {
        match place {
            Place::Backend => &mut self.backend,
            Place::Server(s) => &mut self.servers[s],
        }
    }
}

/// Result of [`BackendCtx::enqueue`].
pub(crate) enum Enqueued<'b> {
    /// Waiting: the ticket keeps the place, the receiver gets the wake-up.
    Waiting(Ticket<'b>, oneshot::Receiver<Wake>),
    /// Health changed since the caller chose: choose again.
    Stale,
    /// This server's queue is at its `maxqueue`.
    Full(ServerIdx),
}

/// A request's place in a queue. Dropping it (timeout, client gone)
/// leaves the queue; after a wake-up the waker has already removed it.
pub(crate) struct Ticket<'b> {
    backend: &'b BackendCtx,
    seq: u64,
    place: Place,
    queued: bool,
}

impl Ticket<'_> {
    /// Woken: the waker removed the entry already, nothing to undo.
    pub(crate) fn woken(mut self) {
        self.queued = false;
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if self.queued {
            let mut q = self.backend.lock_queues();
            // Dropped without taking the lock twice: the sender goes with it.
            let _ = self.backend.take_waiter(&mut q, self.place, self.seq);
        }
    }
}

impl BackendCtx {
    fn lock_queues(&self) -> MutexGuard<'_, Queues> {
        // Queue state stays consistent even if a holder panicked.
        self.queues.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn gauge(&self, place: Place) -> &AtomicU64 {
        match place {
            Place::Backend => &self.queued,
            Place::Server(s) => &self.servers[s].queued,
        }
    }

    /// Removes a waiter, keeping the gauges and the waiter count right.
    fn take_waiter(&self, q: &mut Queues, place: Place, seq: u64) -> Option<Waiter> {
        let w = q.queue(place).remove(&seq)?;
        self.gauge(place).fetch_sub(1, Ordering::Relaxed);
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        Some(w)
    }

    /// Reserves a slot on server `i` for a request that is not queued yet:
    /// a server with its own waiters counts as full (they come first).
    pub(crate) fn take_new(&self, i: ServerIdx, taken: &Cell<Option<ConnGuard>>) -> bool {
        self.servers[i].queued.load(Ordering::Relaxed) == 0 && self.take_any(i, taken)
    }

    /// Reserves a slot on server `i` if it has room under its `maxconn`.
    fn take_any(&self, i: ServerIdx, taken: &Cell<Option<ConnGuard>>) -> bool {
        match self
            .balancer
            .conns()
            .try_acquire(i, self.servers[i].maxconn)
        {
            Some(g) => {
                taken.set(Some(g));
                true
            }
            None => false,
        }
    }

    /// Queues a request at `place`. `seq` keeps its arrival order across
    /// re-evaluations (assigned on the first call); `generation` is what
    /// the caller read before choosing. Serves the queues from any room
    /// that appeared meanwhile, which may wake this very request.
    pub(crate) fn enqueue(
        self: &Arc<Self>,
        place: Place,
        seq: &mut Option<u64>,
        generation: u64,
        excluded: &[ServerIdx],
    ) -> Enqueued<'_> {
        let mut q = self.lock_queues();
        if self.generation.load(Ordering::SeqCst) != generation {
            return Enqueued::Stale;
        }
        if let Place::Server(s) = place {
            if let Some(max) = self.servers[s].maxqueue {
                if q.servers[s].len() >= max as usize {
                    return Enqueued::Full(s);
                }
            }
        }
        let seq = *seq.get_or_insert_with(|| {
            q.next_seq += 1;
            q.next_seq
        });
        let (tx, rx) = oneshot::channel();
        let excluded = match place {
            Place::Backend => excluded.to_vec(),
            Place::Server(_) => Vec::new(),
        };
        q.queue(place).insert(seq, Waiter { wake: tx, excluded });
        self.gauge(place).fetch_add(1, Ordering::Relaxed);
        self.waiting.fetch_add(1, Ordering::SeqCst);
        // Pairs with the fence in `release`: either that release sees this
        // waiter, or this dispatch sees the room it left.
        fence(Ordering::SeqCst);
        self.dispatch(&mut q);
        Enqueued::Waiting(
            Ticket {
                backend: self,
                seq,
                place,
                queued: true,
            },
            rx,
        )
    }

    /// A request is done with server `server`: hand its slot to the oldest
    /// eligible waiter, or give it back.
    pub(crate) fn release(self: &Arc<Self>, server: ServerIdx, guard: ConnGuard) {
        if self.waiting.load(Ordering::SeqCst) == 0 {
            drop(guard);
            fence(Ordering::SeqCst);
            if self.waiting.load(Ordering::SeqCst) == 0 {
                return;
            }
            // Someone queued while we gave the slot back: let the queues
            // have the room.
            let mut q = self.lock_queues();
            self.dispatch(&mut q);
            return;
        }
        let mut q = self.lock_queues();
        let mut guard = guard;
        while let Some(place) = self.next_for(&q, server) {
            let (seq, place) = place;
            let Some(w) = self.take_waiter(&mut q, place, seq) else {
                break;
            };
            match w
                .wake
                .send(Some(ServerSlot::new(self.clone(), server, guard)))
            {
                Ok(()) => return,
                // The waiter left: try the next one with the same slot.
                Err(back) => match back.and_then(|mut slot| slot.take_guard()) {
                    Some(g) => guard = g,
                    None => return,
                },
            }
        }
        // Nobody may use this server now: the room stays for new requests.
        drop(guard);
    }

    /// The oldest waiter that may take a slot of `server`, and its place.
    fn next_for(&self, q: &Queues, server: ServerIdx) -> Option<(u64, Place)> {
        let own = q.servers[server].keys().next().copied();
        let usable = self.is_up(server) && self.balancer.contains(server);
        let any = if usable {
            let plain = self.balancer.may_serve_any(server, |i| self.is_up(i));
            q.backend.iter().find_map(|(&seq, w)| {
                let ok = if w.excluded.is_empty() {
                    plain
                } else {
                    !w.excluded.contains(&server)
                        && self
                            .balancer
                            .may_serve_any(server, |i| self.is_up(i) && !w.excluded.contains(&i))
                };
                ok.then_some(seq)
            })
        } else {
            None
        };
        match (own, any) {
            (Some(o), Some(a)) if a < o => Some((a, Place::Backend)),
            (Some(o), _) => Some((o, Place::Server(server))),
            (None, Some(a)) => Some((a, Place::Backend)),
            (None, None) => None,
        }
    }

    /// Serves the queues, oldest first, from whatever room the servers
    /// have; wakes backend-queue waiters that nothing can serve any more
    /// (they get their 503 themselves). Called with the lock held.
    pub(crate) fn dispatch(self: &Arc<Self>, q: &mut Queues) {
        if self.waiting.load(Ordering::SeqCst) == 0 {
            return;
        }
        loop {
            let has_room = |i: ServerIdx| {
                self.servers[i]
                    .maxconn
                    .is_none_or(|m| self.balancer.conns().active(i) < m)
            };
            if !(0..self.servers.len()).any(has_room) {
                return;
            }
            let mut order: Vec<(u64, Place)> =
                q.backend
                    .keys()
                    .map(|&seq| (seq, Place::Backend))
                    .chain(q.servers.iter().enumerate().flat_map(|(s, queue)| {
                        queue.keys().map(move |&seq| (seq, Place::Server(s)))
                    }))
                    .collect();
            order.sort_unstable_by_key(|&(seq, _)| seq);
            let mut gave_back = false;
            for (seq, place) in order {
                let taken = Cell::new(None);
                let server = match place {
                    Place::Server(s) => {
                        if !self.take_any(s, &taken) {
                            continue;
                        }
                        s
                    }
                    Place::Backend => {
                        let Some(w) = q.backend.get(&seq) else {
                            continue;
                        };
                        let usable = |i| self.is_up(i) && !w.excluded.contains(&i);
                        match self
                            .balancer
                            .choose(SelectKey::None, usable, |i| self.take_any(i, &taken))
                        {
                            Choice::Server(s) => s,
                            Choice::NoServer => {
                                if let Some(w) = self.take_waiter(q, place, seq) {
                                    let _ = w.wake.send(None);
                                }
                                continue;
                            }
                            Choice::ServerQueue(_) | Choice::BackendQueue => continue,
                        }
                    }
                };
                let Some(guard) = taken.take() else {
                    continue;
                };
                let Some(w) = self.take_waiter(q, place, seq) else {
                    drop(guard);
                    continue;
                };
                if let Err(Some(mut back)) =
                    w.wake
                        .send(Some(ServerSlot::new(self.clone(), server, guard)))
                {
                    // The waiter left: plain give-back, then another pass
                    // so an earlier waiter can have the room.
                    drop(back.take_guard());
                    gave_back = true;
                }
            }
            if !gave_back {
                return;
            }
        }
    }

    /// Health changed (a server UP or DOWN, the balancer rebuilt): waiters
    /// of a server that can no longer serve, and backend-queue waiters that
    /// nothing can serve any more, choose again (HAProxy's redistribution;
    /// the latter get their 503), requests choosing right now re-check,
    /// and new room goes to the queues.
    pub fn health_changed(self: &Arc<Self>) {
        let mut q = self.lock_queues();
        self.generation.fetch_add(1, Ordering::SeqCst);
        let mut leaving: Vec<(u64, Place)> = Vec::new();
        for s in 0..self.servers.len() {
            if !(self.is_up(s) && self.balancer.contains(s)) {
                leaving.extend(q.servers[s].keys().map(|&seq| (seq, Place::Server(s))));
            }
        }
        for (&seq, w) in &q.backend {
            let usable = |i| self.is_up(i) && !w.excluded.contains(&i);
            // Asks for no slot: only whether anything is usable.
            if self.balancer.choose(SelectKey::None, usable, |_| false) == Choice::NoServer {
                leaving.push((seq, Place::Backend));
            }
        }
        for (seq, place) in leaving {
            if let Some(w) = self.take_waiter(&mut q, place, seq) {
                let _ = w.wake.send(None);
            }
        }
        self.dispatch(&mut q);
    }
}
