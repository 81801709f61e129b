//! The per-thread io_uring and the task that drives it.
//!
//! Each L7 worker thread (a current-thread tokio runtime) owns one ring,
//! set up with `SINGLE_ISSUER | COOP_TASKRUN | TASKRUN_FLAG`: the kernel
//! finishes this thread's operations when the thread next enters or leaves
//! the kernel (no inter-processor interrupt while it runs), so one
//! `io_uring_enter` submits every operation the connection tasks queued
//! since the last one, runs the receive and send work that became ready,
//! and returns all of their completions. That batching is the point: on
//! loopback most of a proxy's CPU is system-call and wake-up overhead
//! around tiny reads and writes, and a ring turns four system calls per
//! request into a fraction of one (see docs/l7.md, "io_uring").
//!
//! Tokio still owns the thread: the driver is a task. It sleeps on an
//! eventfd registered with the ring (tokio's epoll sees it) and is woken by
//! any task that queues an operation, so timers, the listeners and anything
//! else on the runtime keep working unchanged.
//!
//! Why not `DEFER_TASKRUN`: with it, the kernel signals the eventfd from
//! the wake-up of the socket (interrupt context), and kernels such as
//! 6.18 defer that signal to an RCU callback: the driver then sleeps about
//! 16 ms per completion (measured: 30 ms per proxied keep-alive request,
//! 2,000 req/s instead of 60,000). With `COOP_TASKRUN` the completion is
//! posted by this thread itself, which signals the eventfd at once. The
//! test `a_completion_wakes_the_driver_without_a_timer` guards this.
//! While the driver is inside a turn the eventfd is switched off
//! (`IORING_CQ_EVENTFD_DISABLED`, a flag in shared memory): completions
//! that the turn reaps itself would otherwise wake it once more for
//! nothing.
//!
//! Receives use a ring of provided buffers: a waiting connection holds no
//! buffer of its own, the kernel picks one when bytes arrive.

use std::cell::RefCell;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd};
use std::sync::atomic::{AtomicU16, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use io_uring::{cqueue, squeue, types, IoUring};
use tokio::io::unix::AsyncFd;

/// `IORING_ENTER_GETEVENTS`: also run the pending completion work.
const ENTER_GETEVENTS: u32 = 1;
/// Submission queue size; the completion queue is twice as large.
const RING_ENTRIES: u32 = 4096;
/// Provided receive buffers per thread (a power of two), and their size.
#[cfg(not(test))]
pub(super) const RECV_BUFFERS: u16 = 512;
/// Few under test, so that running out of them is easy to reach.
#[cfg(test)]
pub(super) const RECV_BUFFERS: u16 = 16;
pub(crate) const RECV_BUFFER_SIZE: usize = 16 * 1024;
/// The provided-buffer group receives pick from.
const RECV_GROUP: u16 = 0;
/// `user_data` of cancel and close requests: their own completions are
/// ignored.
const IGNORED_TAG: u64 = u64::MAX;

thread_local! {
    static DRIVER: RefCell<Option<Driver>> = const { RefCell::new(None) };
}

/// An operation slot: `user_data` is its index.
pub(crate) type OpId = usize;

#[derive(Debug, Default, PartialEq, Eq, Clone, Copy)]
enum State {
    #[default]
    Free,
    InFlight,
    Done,
    /// Its owner went away; the slot is freed when the completion comes.
    Orphan,
}

#[derive(Default)]
struct Op {
    state: State,
    waker: Option<Waker>,
    result: i32,
    flags: u32,
    /// Memory the kernel may still read: the bytes of a send (sent from
    /// `sent` on: a short send is resubmitted here, so the caller never
    /// sees it), or a connect's socket address.
    hold: Vec<u8>,
    sent: usize,
    /// The socket of a send, for resubmitting the rest.
    send_fd: i32,
    /// A socket whose owner went away, closed when this completes.
    close_fd: Option<OwnedFd>,
}

/// What a finished operation returned.
#[derive(Debug)]
pub(crate) struct Completion {
    pub(crate) result: i32,
    pub(crate) flags: u32,
    /// The memory the operation held (a send's buffer, for reuse).
    pub(crate) hold: Vec<u8>,
}

/// Provided buffers: `RECV_BUFFERS` buffers of `RECV_BUFFER_SIZE` and the
/// ring the kernel takes them from.
struct BufRing {
    /// Page-aligned ring of entries (mmap'd), shared with the kernel.
    entries: *mut types::BufRingEntry,
    entries_len: usize,
    tail: u16,
    memory: Box<[u8]>,
}

impl BufRing {
    fn new() -> io::Result<BufRing> {
        let entries_len = usize::from(RECV_BUFFERS) * std::mem::size_of::<types::BufRingEntry>();
        // SAFETY: an anonymous private mapping; checked below.
        let entries = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                entries_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if entries == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let mut ring = BufRing {
            entries: entries.cast(),
            entries_len,
            tail: 0,
            memory: vec![0u8; usize::from(RECV_BUFFERS) * RECV_BUFFER_SIZE].into_boxed_slice(),
        };
        for bid in 0..RECV_BUFFERS {
            ring.push(bid);
        }
        ring.publish();
        Ok(ring)
    }

    /// Queues buffer `bid` for the kernel (visible after `publish`).
    fn push(&mut self, bid: u16) {
        let mask = RECV_BUFFERS - 1;
        // SAFETY: the index is below RECV_BUFFERS, inside the mapping.
        let entry = unsafe { &mut *self.entries.add(usize::from(self.tail & mask)) };
        let offset = usize::from(bid) * RECV_BUFFER_SIZE;
        entry.set_addr(self.memory[offset..].as_ptr() as u64);
        entry.set_len(RECV_BUFFER_SIZE as u32);
        entry.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    fn publish(&self) {
        // SAFETY: the tail field of the first entry, inside the mapping; the
        // kernel reads it with acquire ordering.
        let tail = unsafe { &*(types::BufRingEntry::tail(self.entries).cast::<AtomicU16>()) };
        tail.store(self.tail, Ordering::Release);
    }

    fn slice(&self, bid: u16, len: usize) -> &[u8] {
        let offset = usize::from(bid) * RECV_BUFFER_SIZE;
        &self.memory[offset..offset + len.min(RECV_BUFFER_SIZE)]
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`; the ring (which may read it)
        // is dropped before this (field order in Driver).
        unsafe { libc::munmap(self.entries.cast(), self.entries_len) };
    }
}

/// One thread's ring, its operations and its provided buffers.
pub(crate) struct Driver {
    // Field order matters: the ring goes before the memory it points at.
    ring: IoUring,
    bufs: BufRing,
    ops: Vec<Op>,
    free: Vec<OpId>,
    /// The driver task, when it sleeps.
    waker: Option<Waker>,
    eventfd: Option<OwnedFd>,
}

impl Driver {
    fn new() -> io::Result<Driver> {
        // Not DEFER_TASKRUN: see the module comment.
        let ring = IoUring::builder()
            .setup_single_issuer()
            .setup_coop_taskrun()
            .setup_taskrun_flag()
            .setup_cqsize(RING_ENTRIES * 2)
            .build(RING_ENTRIES)?;
        let bufs = BufRing::new()?;
        // SAFETY: the ring memory lives as long as the Driver, which drops
        // the ring (unregistering it) first.
        unsafe {
            ring.submitter().register_buf_ring_with_flags(
                bufs.entries as u64,
                RECV_BUFFERS,
                RECV_GROUP,
                0,
            )?;
        }
        // SAFETY: eventfd has no memory preconditions; checked below.
        let efd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if efd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a new descriptor nobody else owns.
        let eventfd = unsafe { OwnedFd::from_raw_fd(efd) };
        ring.submitter().register_eventfd(eventfd.as_raw_fd())?;
        let _ = ring.submitter().register_ring_fd();
        Ok(Driver {
            ring,
            bufs,
            ops: Vec::new(),
            free: Vec::new(),
            waker: None,
            eventfd: Some(eventfd),
        })
    }

    fn slot(&mut self) -> OpId {
        self.free.pop().unwrap_or_else(|| {
            self.ops.push(Op::default());
            self.ops.len() - 1
        })
    }

    /// Queues `sqe` (its `user_data` is set here) and returns its slot.
    fn submit(&mut self, sqe: squeue::Entry, hold: Vec<u8>, send_fd: i32) -> io::Result<OpId> {
        let id = self.slot();
        let op = &mut self.ops[id];
        op.state = State::InFlight;
        op.hold = hold;
        op.sent = 0;
        op.send_fd = send_fd;
        self.push(sqe.user_data(id as u64))?;
        Ok(id)
    }

    fn push(&mut self, sqe: squeue::Entry) -> io::Result<()> {
        // SAFETY: every buffer an entry names is owned by an op slot, the
        // provided-buffer ring, or (receives without buffer selection do
        // not exist here) nothing; slots are only reused after their
        // completion.
        while unsafe { self.ring.submission().push(&sqe) }.is_err() {
            self.enter()?;
            self.reap();
        }
        if let Some(w) = self.waker.take() {
            w.wake();
        }
        Ok(())
    }

    fn enter(&mut self) -> io::Result<usize> {
        let to_submit = self.ring.submission().len() as u32;
        loop {
            // SAFETY: no extra argument is passed.
            match unsafe {
                self.ring
                    .submitter()
                    .enter::<libc::sigset_t>(to_submit, 0, ENTER_GETEVENTS, None)
            } {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // Completion queue full: reaping makes room.
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => return Ok(0),
                other => return other,
            }
        }
    }

    /// Handles every completion; true if there was any.
    fn reap(&mut self) -> bool {
        let mut any = false;
        let mut resend = Vec::new();
        let mut closes = Vec::new();
        let mut recycle = false;
        for cqe in self.ring.completion() {
            any = true;
            let tag = cqe.user_data();
            if tag == IGNORED_TAG {
                continue;
            }
            let id = tag as usize;
            let (result, flags) = (cqe.result(), cqe.flags());
            let op = &mut self.ops[id];
            // A short send: send the rest before anyone hears of it.
            if matches!(op.state, State::InFlight | State::Orphan) && op.send_fd >= 0 && result > 0
            {
                op.sent += result as usize;
                if op.sent < op.hold.len() {
                    resend.push(id);
                    continue;
                }
            }
            match op.state {
                State::Orphan => {
                    if let Some(bid) = cqueue::buffer_select(flags) {
                        self.bufs.push(bid);
                        recycle = true;
                    }
                    closes.extend(op.close_fd.take());
                    *op = Op::default();
                    self.free.push(id);
                }
                _ => {
                    op.state = State::Done;
                    op.result = result;
                    op.flags = flags;
                    if let Some(w) = op.waker.take() {
                        w.wake();
                    }
                }
            }
        }
        if recycle {
            self.bufs.publish();
        }
        for fd in closes {
            self.close(fd);
        }
        for id in resend {
            let op = &self.ops[id];
            let rest = &op.hold[op.sent..];
            let sqe = io_uring::opcode::Send::new(
                types::Fd(op.send_fd),
                rest.as_ptr(),
                rest.len() as u32,
            )
            .flags(libc::MSG_NOSIGNAL)
            .build()
            .user_data(id as u64);
            if self.push(sqe).is_err() {
                let op = &mut self.ops[id];
                op.state = State::Done;
                op.result = -libc::EIO;
                if let Some(w) = op.waker.take() {
                    w.wake();
                }
            }
        }
        any
    }

    /// Polls slot `id`: its completion (freeing the slot) or Pending.
    fn poll_op(&mut self, id: OpId, cx: &mut Context<'_>) -> Poll<Completion> {
        let op = &mut self.ops[id];
        match op.state {
            State::Done => {
                let c = Completion {
                    result: op.result,
                    flags: op.flags,
                    hold: std::mem::take(&mut op.hold),
                };
                *op = Op::default();
                self.free.push(id);
                Poll::Ready(c)
            }
            _ => {
                if !op.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    op.waker = Some(cx.waker().clone());
                }
                Poll::Pending
            }
        }
    }

    /// Gives up on slot `id`: cancels it if still running. A received
    /// buffer it already holds goes back to the ring. `socket`, if given,
    /// is closed once the operation is over (at once if it is).
    fn forget(&mut self, id: OpId, cancel: bool, socket: Option<OwnedFd>) {
        let op = &mut self.ops[id];
        match op.state {
            State::Done => {
                if let Some(bid) = cqueue::buffer_select(op.flags) {
                    if op.result > 0 {
                        self.bufs.push(bid);
                        self.bufs.publish();
                    }
                }
                *op = Op::default();
                self.free.push(id);
                if let Some(socket) = socket {
                    self.close(socket);
                }
            }
            State::InFlight => {
                op.state = State::Orphan;
                op.waker = None;
                op.close_fd = socket;
                if cancel {
                    let sqe = io_uring::opcode::AsyncCancel::new(id as u64)
                        .build()
                        .user_data(IGNORED_TAG);
                    let _ = self.push(sqe);
                }
            }
            State::Free | State::Orphan => {
                if let Some(socket) = socket {
                    self.close(socket);
                }
            }
        }
    }

    /// Gives up on send `id`, the last before `socket` closes, and queues
    /// the close at once (not when the send completes): both then go to the
    /// kernel in the same submission, in order. The send holds its own
    /// reference to the socket, so the connection is only torn down (and
    /// its FIN sent, with the send's last bytes) once the send is done. The
    /// send must not be resent (`MSG_WAITALL`): the descriptor number may
    /// be reused after the close.
    fn forget_last_send(&mut self, id: OpId, socket: OwnedFd) {
        let op = &mut self.ops[id];
        if op.state != State::InFlight {
            self.forget(id, false, Some(socket));
            return;
        }
        op.state = State::Orphan;
        op.waker = None;
        op.send_fd = -1;
        let sqe = io_uring::opcode::Close::new(types::Fd(socket.as_raw_fd()))
            .build()
            .user_data(IGNORED_TAG);
        // `push`, not `push_ignored`: with the queue full it submits what
        // is queued (the send first) to make room, so the close never runs
        // ahead of the send.
        if self.push(sqe).is_ok() {
            let _ = socket.into_raw_fd();
        } else if self.ops[id].state == State::Orphan {
            // Closed once the send completes instead.
            self.ops[id].close_fd = Some(socket);
        }
        // Else the send completed while `push` made room (only `submit`
        // reuses a slot): nothing refers to the socket, dropped here.
    }

    /// Closes `socket` through the ring: no system call of its own, and
    /// the descriptor number stays taken until the close has run.
    fn close(&mut self, socket: OwnedFd) {
        let sqe = io_uring::opcode::Close::new(types::Fd(socket.as_raw_fd()))
            .build()
            .user_data(IGNORED_TAG);
        // SAFETY: a close names no memory.
        if unsafe { self.push_ignored(&sqe) } {
            let _ = socket.into_raw_fd();
        }
        // Submission queue full: `socket` is closed directly when dropped.
    }

    /// Queues `sqe`, whose completion is ignored, without waiting for room;
    /// false if the submission queue is full.
    ///
    /// # Safety
    /// As for `push`: any memory `sqe` names outlives the operation.
    unsafe fn push_ignored(&mut self, sqe: &squeue::Entry) -> bool {
        // SAFETY: the caller's.
        if unsafe { self.ring.submission().push(sqe) }.is_err() {
            return false;
        }
        if let Some(w) = self.waker.take() {
            w.wake();
        }
        true
    }

    /// One turn: submit, run ready work, reap. The eventfd is off while
    /// it runs: what completes meanwhile is reaped here, and whatever
    /// completes after `reap` is seen by [`Driver::idle`].
    ///
    /// Without anything to submit or any task work waiting (completions
    /// already posted, as after a wake-up whose task work ran on the way
    /// out of `epoll_wait`), reaping needs no system call.
    fn turn(&mut self) -> io::Result<bool> {
        let (submitted, kernel_work) = {
            let sq = self.ring.submission();
            (sq.len(), sq.taskrun() || sq.cq_overflow())
        };
        if submitted == 0 && !kernel_work {
            return Ok(self.reap());
        }
        self.ring.completion().disable_eventfd();
        let entered = self.enter();
        let reaped = self.reap();
        self.ring.completion().enable_eventfd();
        entered?;
        Ok(reaped || submitted > 0)
    }

    /// Nothing to do until the eventfd fires: no queued submission, no
    /// completion posted (while the eventfd was off, or since), no task
    /// work the kernel is waiting to run, no completions it holds back for
    /// want of room.
    fn idle(&mut self) -> bool {
        let nothing_queued = {
            let sq = self.ring.submission();
            sq.is_empty() && !sq.taskrun() && !sq.cq_overflow()
        };
        nothing_queued && self.ring.completion().is_empty()
    }
}

/// Runs `f` on this thread's driver, if it has one.
fn with<R>(f: impl FnOnce(&mut Driver) -> R) -> Option<R> {
    DRIVER.with(|d| d.borrow_mut().as_mut().map(f))
}

/// Does this thread have a ring? (It does after [`start`] succeeded.)
pub(crate) fn active() -> bool {
    DRIVER.with(|d| d.borrow().is_some())
}

/// Sets up this thread's ring and spawns its driver task on the current
/// (current-thread) runtime. An error means io_uring is not usable here
/// (old kernel, `kernel.io_uring_disabled`, seccomp): the caller falls back
/// to epoll.
pub(crate) fn start() -> io::Result<()> {
    if active() {
        return Ok(());
    }
    let mut driver = Driver::new()?;
    let eventfd = driver.eventfd.take().expect("new driver has its eventfd");
    // SAFETY: an OwnedFd: open for the AsyncFd's lifetime, always the same fd.
    let eventfd =
        unsafe { AsyncFd::register_with_interest(eventfd, tokio::io::Interest::READABLE) }
            .map_err(io::Error::from)?;
    DRIVER.with(|d| *d.borrow_mut() = Some(driver));
    tokio::spawn(drive(eventfd));
    Ok(())
}

/// The driver task: whenever operations are queued or the kernel signals
/// finished work, one `io_uring_enter` submits, runs and reaps them all.
async fn drive(eventfd: AsyncFd<OwnedFd>) {
    /// When the runtime goes away, so does this task: the ring is let go
    /// of, so that a later runtime on this thread (tests make one per test)
    /// sets up its own. It is leaked, not closed: operations still in the
    /// kernel may point into its buffers.
    struct Retire;
    impl Drop for Retire {
        fn drop(&mut self) {
            let _ = DRIVER.try_with(|d| {
                if let Ok(mut d) = d.try_borrow_mut() {
                    if let Some(old) = d.take() {
                        // Queued closes still run.
                        let _ = old.ring.submit();
                        std::mem::forget(old);
                    }
                }
            });
        }
    }
    let _retire = Retire;
    loop {
        std::future::poll_fn(|cx| {
            let queued = with(|d| {
                if d.idle() {
                    d.waker = Some(cx.waker().clone());
                    false
                } else {
                    true
                }
            })
            .unwrap_or(false);
            if queued {
                return Poll::Ready(());
            }
            match eventfd.poll_read_ready(cx) {
                Poll::Ready(Ok(mut guard)) => {
                    // Edge-triggered: a later signal sets it again. The
                    // counter itself is never read (no system call for it).
                    guard.clear_ready();
                    Poll::Ready(())
                }
                Poll::Ready(Err(_)) => Poll::Ready(()),
                Poll::Pending => Poll::Pending,
            }
        })
        .await;
        match with(Driver::turn) {
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                ::log::error!("io_uring: {e}; L7 I/O on this thread stops");
                return;
            }
            None => return,
        }
    }
}

/// Queues an operation on this thread's ring.
pub(crate) fn submit(sqe: squeue::Entry, hold: Vec<u8>, send_fd: i32) -> io::Result<OpId> {
    with(|d| d.submit(sqe, hold, send_fd))
        .unwrap_or_else(|| Err(io::Error::other("no io_uring on this thread")))
}

/// Polls an operation queued by [`submit`].
pub(crate) fn poll(id: OpId, cx: &mut Context<'_>) -> Poll<Completion> {
    with(|d| d.poll_op(id, cx)).unwrap_or(Poll::Ready(Completion {
        result: -libc::EBADF,
        flags: 0,
        hold: Vec::new(),
    }))
}

/// Closes `socket` through this thread's ring (directly without one).
pub(crate) fn close(socket: OwnedFd) {
    let mut socket = Some(socket);
    let _ = DRIVER.try_with(|d| {
        if let Ok(mut d) = d.try_borrow_mut() {
            if let Some(d) = d.as_mut() {
                d.close(socket.take().expect("taken once"));
            }
        }
    });
    // No ring here (or the thread is ending): `socket` closes on drop.
}

/// Abandons the last send before a close and closes the socket right
/// behind it (see [`Driver::forget_last_send`]).
pub(crate) fn forget_last_send(id: OpId, socket: OwnedFd) {
    let mut socket = Some(socket);
    with(|d| d.forget_last_send(id, socket.take().expect("taken once")));
    // No ring here: the socket closes on drop (its send cannot run either).
}

/// Abandons an operation (see [`Driver::forget`]).
pub(crate) fn forget(id: OpId, cancel: bool, socket: Option<OwnedFd>) {
    with(|d| d.forget(id, cancel, socket));
}

/// Copies from provided buffer `bid` (`len` bytes received) at `offset`
/// into `out` (which need not be initialised: no zeroing first); returns
/// how many bytes were copied, all of them now initialised.
pub(crate) fn copy_from_buffer(
    bid: u16,
    len: usize,
    offset: usize,
    out: &mut [std::mem::MaybeUninit<u8>],
) -> usize {
    with(|d| {
        let src = &d.bufs.slice(bid, len)[offset..];
        let n = src.len().min(out.len());
        // SAFETY: both ranges are n bytes long and do not overlap (`out`
        // is the reader's memory, `src` the ring's).
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), out.as_mut_ptr().cast::<u8>(), n) };
        n
    })
    .unwrap_or(0)
}

/// Returns provided buffer `bid` to the kernel.
pub(crate) fn recycle(bid: u16) {
    with(|d| {
        d.bufs.push(bid);
        d.bufs.publish();
    });
}

/// Waits in this thread's ring, up to `limit`, for a completion, if the
/// ring has nothing to do ([`super::coalesce`]'s pause). Only the ring's
/// own completions end it early: the listeners, in tokio's epoll, do not.
/// A completion signals the eventfd as usual, so the driver task runs
/// right after.
pub(crate) fn wait_for_completion(limit: Duration) {
    let _ = DRIVER.try_with(|d| {
        let Ok(mut d) = d.try_borrow_mut() else {
            return;
        };
        let Some(d) = d.as_mut() else { return };
        if !d.idle() {
            return;
        }
        let ts = types::Timespec::from(limit);
        let args = types::SubmitArgs::new().timespec(&ts);
        // ETIME (nothing completed) and EINTR (a signal) both just end
        // the pause.
        let _ = d.ring.submitter().submit_with_args(1, &args);
    });
}
