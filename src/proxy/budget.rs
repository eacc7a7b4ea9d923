//! Fairness between the connections of one worker.
//!
//! Under the epoll driver monoio performs a read or write at once when the socket is already
//! known to be ready, without returning to the scheduler. A bulk connection whose sockets are
//! always ready would loop inside its own task and starve every other connection on its worker
//! (measured: with eight saturating streams on one epoll worker, a ninth client's round trip
//! came back only after seven of the streams had ended). So under epoll each relay loop
//! yields every round, as tokio's cooperative budget does. The relays make their own
//! non-blocking system calls on readiness, which bypass the scheduler under io_uring as well,
//! so their loops yield every round under either driver (`own_turn`).
//!
//! Yielding takes care in monoio: a task that wakes itself while it runs is put back at the
//! *front* of the run queue and runs again at once. A yield therefore parks the task's waker
//! with the worker's pump task and wakes the pump; the pump wakes the parked tasks when its own
//! turn comes, which puts them at the back of the queue, behind everyone who was waiting.

use std::cell::{Cell, RefCell};
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

thread_local! {
    /// Whether this worker's driver needs tasks to yield by hand (epoll).
    static COOPERATIVE: Cell<bool> = const { Cell::new(false) };
    /// Tasks that yielded and wait for the pump.
    static PARKED: RefCell<Vec<Waker>> = const { RefCell::new(Vec::new()) };
    /// The worker's pump task, once it runs.
    static PUMP: RefCell<Option<Waker>> = const { RefCell::new(None) };
}

/// Called once by each worker: under io_uring every operation already passes through the
/// scheduler, so only the epoll driver needs the yields.
pub(crate) fn set_cooperative(on: bool) {
    COOPERATIVE.with(|c| c.set(on));
}

/// Lets the worker's other tasks run before this one goes on (under epoll). Called once per
/// round of a relay loop (one read or write of up to 128 KiB): measured with eight saturating
/// streams on one epoll worker, a ninth client's round trip took 72 ms when every round
/// yields, 160 ms every 2 rounds, 640 ms every 4 and 4.7 s every 8.
pub(crate) async fn next_turn() {
    if COOPERATIVE.with(Cell::get) {
        YieldNow(false).await;
    }
}

/// Lets the worker's other tasks run before this one goes on, under either driver: for loops
/// that make their own non-blocking system calls on sockets taken from the runtime (the
/// relays). Those calls never pass through the scheduler, so under io_uring too a loop whose
/// sockets stay ready would otherwise keep the worker to itself. Called once per round.
pub(crate) async fn own_turn() {
    YieldNow(false).await;
}

/// Pending once, woken from the back of the queue; then ready.
struct YieldNow(bool);

impl Future for YieldNow {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            return Poll::Ready(());
        }
        self.0 = true;
        match PUMP.with(|p| p.borrow().clone()) {
            Some(pump) => {
                PARKED.with(|p| p.borrow_mut().push(cx.waker().clone()));
                pump.wake();
            }
            // No pump on this thread (a test runtime): yield as monoio does.
            None => cx.waker().wake_by_ref(),
        }
        Poll::Pending
    }
}

/// The worker's pump: wakes the tasks that yielded, from a task of its own. Runs forever.
pub(crate) async fn pump() {
    // Two lists that trade places, each keeping its capacity: taking the parked list and
    // leaving an empty one cost an allocation at the next yield, every round of every relay.
    let mut waking = Vec::new();
    poll_fn(move |cx: &mut Context<'_>| {
        PUMP.with(|p| *p.borrow_mut() = Some(cx.waker().clone()));
        PARKED.with(|p| std::mem::swap(&mut *p.borrow_mut(), &mut waking));
        for waker in waking.drain(..) {
            waker.wake();
        }
        Poll::<()>::Pending
    })
    .await
}
