//! Single-thread wake-up signals: `Notify` between the futures of one connection, `Broadcast`
//! from a worker to all of its connections (a reload, a drain).
//!
//! The reader, upstream reader and client writer of a connection run as joined futures on one
//! task of one worker thread, so they need no atomics or locks: a `Cell` flag plus the waiting
//! future's waker is enough. A notification sent while nobody waits is remembered, so a wake-up
//! is never lost between a check and an await.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

/// One waiter, many notifiers, same thread.
#[derive(Default)]
pub(crate) struct Notify {
    pending: Cell<bool>,
    waker: Cell<Option<Waker>>,
}

impl Notify {
    /// Wakes the waiter, or makes its next `notified()` return at once.
    pub(crate) fn notify(&self) {
        self.pending.set(true);
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
    }

    /// Waits for the next `notify()` (or consumes one that already happened).
    pub(crate) fn notified(&self) -> Notified<'_> {
        Notified(self)
    }
}

pub(crate) struct Notified<'a>(&'a Notify);

impl Future for Notified<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0.pending.replace(false) {
            Poll::Ready(())
        } else {
            self.0.waker.set(Some(cx.waker().clone()));
            Poll::Pending
        }
    }
}

/// One notifier, many waiters, same thread: every waiter registered when `advance()` runs is
/// woken, and a waiter that started before an `advance()` sees it even if it polls later.
///
/// Each waiter owns a slot in a small slab, so re-polling one (every time its task wakes for
/// other reasons) replaces its waker rather than piling up clones.
#[derive(Default)]
pub(crate) struct Broadcast {
    epoch: Cell<u64>,
    slots: RefCell<Vec<Option<Waker>>>,
    free: RefCell<Vec<usize>>,
}

impl Broadcast {
    /// Wakes every current waiter.
    pub(crate) fn advance(&self) {
        self.epoch.set(self.epoch.get().wrapping_add(1));
        let wakers: Vec<Waker> = self
            .slots
            .borrow_mut()
            .iter_mut()
            .filter_map(Option::take)
            .collect();
        for waker in wakers {
            waker.wake();
        }
    }

    /// Resolves at the next `advance()` after this call.
    pub(crate) fn changed(&self) -> Changed<'_> {
        Changed {
            broadcast: self,
            seen: self.epoch.get(),
            slot: None,
        }
    }
}

pub(crate) struct Changed<'a> {
    broadcast: &'a Broadcast,
    seen: u64,
    slot: Option<usize>,
}

impl Future for Changed<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let b = self.broadcast;
        if b.epoch.get() != self.seen {
            return Poll::Ready(());
        }
        let mut slots = b.slots.borrow_mut();
        let slot = match self.slot {
            Some(slot) => slot,
            None => {
                let slot = b.free.borrow_mut().pop().unwrap_or_else(|| {
                    slots.push(None);
                    slots.len() - 1
                });
                self.slot = Some(slot);
                slot
            }
        };
        slots[slot] = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl Drop for Changed<'_> {
    fn drop(&mut self) {
        if let Some(slot) = self.slot {
            if let Some(s) = self.broadcast.slots.borrow_mut().get_mut(slot) {
                *s = None;
            }
            self.broadcast.free.borrow_mut().push(slot);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn broadcast_wakes_every_waiter_once_and_reuses_slots() {
        let b = Broadcast::default();
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        let mut a = Box::pin(b.changed());
        let mut c = Box::pin(b.changed());
        for _ in 0..3 {
            assert!(a.as_mut().poll(&mut cx).is_pending());
        }
        assert!(c.as_mut().poll(&mut cx).is_pending());
        assert_eq!(b.slots.borrow().len(), 2, "re-polling must not add slots");
        b.advance();
        assert_eq!(count.0.load(Ordering::Relaxed), 2);
        assert!(a.as_mut().poll(&mut cx).is_ready());
        assert!(c.as_mut().poll(&mut cx).is_ready());
        drop((a, c));
        let mut d = Box::pin(b.changed());
        assert!(d.as_mut().poll(&mut cx).is_pending());
        assert_eq!(b.slots.borrow().len(), 2, "freed slots are reused");
    }
}
