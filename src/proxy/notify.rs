//! A single-task wake-up signal for the futures of one connection.
//!
//! The reader, upstream reader and client writer of a connection run as joined futures on one
//! task of one worker thread, so they need no atomics or locks: a `Cell` flag plus the waiting
//! future's waker is enough. A notification sent while nobody waits is remembered, so a wake-up
//! is never lost between a check and an await.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

/// One waiter, many notifiers, same thread.
#[derive(Default)]
pub struct Notify {
    pending: Cell<bool>,
    waker: Cell<Option<Waker>>,
}

impl Notify {
    /// Wakes the waiter, or makes its next `notified()` return at once.
    pub fn notify(&self) {
        self.pending.set(true);
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
    }

    /// Waits for the next `notify()` (or consumes one that already happened).
    pub fn notified(&self) -> Notified<'_> {
        Notified(self)
    }
}

pub struct Notified<'a>(&'a Notify);

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
