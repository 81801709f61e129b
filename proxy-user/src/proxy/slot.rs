//! [`SlotBox`]: a boxed future whose heap slot is reused by the next one.
//!
//! Each request (`Session::request`, with its exchange) runs boxed, so
//! that an idle keep-alive connection's task does not carry its 2.8 KB of
//! state. A `Box` of that size is past glibc's per-thread cache (1 KiB), so every
//! request paid a full `malloc`/`free` for it. A `SlotBox` gives its memory
//! back to a per-thread list of free slots instead, where the next request
//! of this thread finds it. A connection's task is held the same way: a
//! small tokio task points to it, so tokio's own moves of the task (in at
//! spawn, out at the end) copy a pointer, not the session's 1.1-5 KB.

use std::alloc::Layout;
use std::cell::RefCell;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::ptr::NonNull;
use std::task::{Context, Poll};

/// Free slots kept per thread and size at most.
const FREE_SLOTS_MAX: usize = 128;

/// The free slots of one layout: heap memory holding no value.
struct FreeSlots {
    layout: Layout,
    slots: Vec<NonNull<u8>>,
}

impl Drop for FreeSlots {
    fn drop(&mut self) {
        for ptr in self.slots.drain(..) {
            // SAFETY: each slot was allocated with `layout` (see
            // `take_slot`) and holds no value.
            unsafe { std::alloc::dealloc(ptr.as_ptr(), self.layout) }
        }
    }
}

thread_local! {
    /// One list per layout in use: a few (an exchange, a connection's task).
    static FREE_SLOTS: RefCell<Vec<FreeSlots>> = const { RefCell::new(Vec::new()) };
}

/// Memory for `layout` (non-zero size): a free slot of this thread, else
/// a new allocation.
fn take_slot(layout: Layout) -> NonNull<u8> {
    let reused = FREE_SLOTS
        .try_with(|free| {
            let mut free = free.borrow_mut();
            free.iter_mut().find(|f| f.layout == layout)?.slots.pop()
        })
        .ok()
        .flatten();
    reused.unwrap_or_else(|| {
        // SAFETY: the layout's size is not zero (checked by the caller).
        let ptr = unsafe { std::alloc::alloc(layout) };
        NonNull::new(ptr).unwrap_or_else(|| std::alloc::handle_alloc_error(layout))
    })
}

/// Keeps `ptr` (allocated with `layout`, holding no value) for the next
/// [`take_slot`] of this thread, or frees it.
fn give_slot(layout: Layout, ptr: NonNull<u8>) {
    let kept = FREE_SLOTS.try_with(|free| {
        let mut free = free.borrow_mut();
        let list = match free.iter().position(|f| f.layout == layout) {
            Some(i) => &mut free[i],
            None => {
                free.push(FreeSlots {
                    layout,
                    slots: Vec::new(),
                });
                free.last_mut().expect("just pushed")
            }
        };
        if list.slots.len() < FREE_SLOTS_MAX {
            list.slots.push(ptr);
            true
        } else {
            false
        }
    });
    if kept != Ok(true) {
        // The list is full, or the thread is exiting.
        // SAFETY: `ptr` was allocated with `layout` and holds no value.
        unsafe { std::alloc::dealloc(ptr.as_ptr(), layout) }
    }
}

/// A future on the heap, pinned there, like `Pin<Box<F>>`; its memory is
/// reused by the next `SlotBox` of the same size on this thread.
pub struct SlotBox<F> {
    ptr: NonNull<F>,
    /// It owns an `F` (for the drop check and auto traits), as `Box<F>` does.
    _owns: PhantomData<F>,
}

// SAFETY: a `SlotBox` owns its `F` as a `Box` would.
unsafe impl<F: Send> Send for SlotBox<F> {}
// SAFETY: as above; `&SlotBox` gives no access to `F`.
unsafe impl<F: Sync> Sync for SlotBox<F> {}

impl<F> SlotBox<F> {
    /// A `SlotBox` of what `make` returns, written straight into the
    /// slot: a future's full size is not copied from the stack.
    #[inline(always)]
    pub fn new_with(make: impl FnOnce() -> F) -> SlotBox<F> {
        let layout = Layout::new::<F>();
        let ptr = if layout.size() == 0 {
            NonNull::dangling()
        } else {
            take_slot(layout).cast::<F>()
        };
        // SAFETY: `ptr` is valid for writes of an `F` and suitably aligned.
        unsafe { ptr.as_ptr().write(make()) };
        SlotBox {
            ptr,
            _owns: PhantomData,
        }
    }
}

impl<F> Drop for SlotBox<F> {
    fn drop(&mut self) {
        let layout = Layout::new::<F>();
        // SAFETY: `ptr` holds the `F` written by `new_with`, dropped only here.
        unsafe { std::ptr::drop_in_place(self.ptr.as_ptr()) };
        if layout.size() != 0 {
            give_slot(layout, self.ptr.cast());
        }
    }
}

impl<F: Future> Future for SlotBox<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        // SAFETY: the `F` stays at `ptr` until it is dropped in place: it is
        // never moved, so it is pinned.
        let inner = unsafe { Pin::new_unchecked(&mut *self.ptr.as_ptr()) };
        inner.poll(cx)
    }
}

// The `F` does not move when the `SlotBox` does.
impl<F> Unpin for SlotBox<F> {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::rc::Rc;

    #[tokio::test]
    async fn a_slot_is_reused_by_the_next_future_of_its_size() {
        let (a, b) = ([7u8; 3000], [9u8; 3000]);
        let first = SlotBox::new_with(|| async move { a[1] });
        let addr = first.ptr.as_ptr() as usize;
        assert_eq!(first.await, 7);
        // Same size and alignment: the same memory.
        let second = SlotBox::new_with(|| async move { b[2] });
        assert_eq!(second.ptr.as_ptr() as usize, addr);
        assert_eq!(second.await, 9);
    }

    #[test]
    fn dropping_a_slot_box_drops_its_value_once() {
        let counted = Rc::new(());
        let c = counted.clone();
        let boxed = SlotBox::new_with(|| async move { Rc::strong_count(&c) });
        assert_eq!(Rc::strong_count(&counted), 2);
        drop(boxed);
        assert_eq!(Rc::strong_count(&counted), 1);
        // An empty future (no memory) works too.
        let unit = SlotBox::new_with(|| std::future::ready(()));
        drop(unit);
    }

    #[test]
    fn a_full_free_list_frees_what_comes_back() {
        let boxes: Vec<_> = (0..FREE_SLOTS_MAX + 10)
            .map(|i| SlotBox::new_with(|| std::future::ready([i as u64; 300])))
            .collect();
        drop(boxes);
        let layout = Layout::new::<std::future::Ready<[u64; 300]>>();
        let kept = FREE_SLOTS.with(|f| {
            f.borrow()
                .iter()
                .find(|f| f.layout == layout)
                .map_or(0, |f| f.slots.len())
        });
        assert_eq!(kept, FREE_SLOTS_MAX);
    }
}
