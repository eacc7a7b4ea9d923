//! Timers for the futures of connections, on the heap.
//!
//! monoio's timer (`Sleep`, inside every `Timeout`) is 640 bytes and aligned to 128 (a
//! cache-padded waker). A connection's task is one future whose size and alignment are those
//! of its largest state, for the connection's whole life: a timer inlined anywhere in it (the
//! handshake's limit, an upstream connect, a best-effort alert write) would cost every idle
//! connection that much, and the padding the alignment brings. Boxed, a timer costs its
//! allocation only while it runs. Long-lived per-connection timing (idle, expiry) uses the
//! worker's ticker instead (`guard`).

use std::future::Future;
use std::time::Duration;

use monoio::time::error::Elapsed;

/// `monoio::time::timeout`, boxed.
pub(crate) async fn timeout<F: Future>(limit: Duration, f: F) -> Result<F::Output, Elapsed> {
    Box::pin(monoio::time::timeout(limit, f)).await
}

/// `monoio::time::sleep`, boxed.
pub(crate) async fn sleep(duration: Duration) {
    Box::pin(monoio::time::sleep(duration)).await
}
