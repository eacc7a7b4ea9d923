//! Where event lines go: a bounded queue and one writer thread that empties it onto stderr.
//!
//! stderr can be a pipe nobody reads (a stalled log collector, `ringtls serve 2>&1 | less`
//! left on one page), a terminal paused with ^S, or closed. A worker must never wait on it:
//! an event is queued with `try_send`, and when the queue is full the line is dropped and
//! counted instead (HAProxy drops log lines rather than stall; Envoy flushes access logs from
//! a thread of its own). The writer takes whatever has queued up and writes it in batches, so a
//! busy log costs one `write(2)` per batch, not per line. Once the sink takes lines again, the
//! writer adds one `log.dropped count=N` line saying how many were lost, and the total is
//! `ringtls_log_events_dropped_total`.
//!
//! Write errors never reach a worker either: EPIPE or a closed descriptor loses the batch
//! (counted as dropped); EAGAIN (someone made the shared description non-blocking) is waited
//! out by the writer alone.

use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, Instant};

/// Events the queue holds (about 500 bytes each: at most a few MiB while stderr is stalled).
const QUEUE_EVENTS: usize = 4096;
/// The most bytes one `write(2)` carries.
const BATCH_BYTES: usize = 64 * 1024;
/// How often an idle writer reports drops that no later line has reported yet.
const IDLE_CHECK: Duration = Duration::from_millis(250);
/// How long the writer, woken by a line, lets more gather before it writes. While it sleeps
/// it is not parked on the queue, so the workers' sends wake nobody: a busy log costs the
/// workers no system call per line (measured by `cargo bench --bench event_log`: waking the
/// writer on every line made an event cost twice the old direct write).
const GATHER: Duration = Duration::from_millis(2);
/// How long the writer waits before retrying a non-blocking stderr that is full.
const RETRY_FULL: Duration = Duration::from_millis(10);

/// The queue's sending end; the writer thread holds the other.
pub(crate) struct Sink {
    tx: SyncSender<String>,
    /// Lines accepted into the queue.
    queued: AtomicU64,
}

/// Formats the line that reports `n` dropped lines (the event log's `log.dropped`).
pub(crate) type DroppedLine = fn(u64) -> String;
/// Lines handled by the writer (written or lost to a write error), for `flush`.
static HANDLED: AtomicU64 = AtomicU64::new(0);
/// Lines dropped since the start: the metric.
static DROPPED_TOTAL: AtomicU64 = AtomicU64::new(0);
/// Lines dropped since the last `log.dropped` line.
static DROPPED_UNREPORTED: AtomicU64 = AtomicU64::new(0);

impl Sink {
    /// Starts the writer thread; `None` without one (out of threads at start), and the caller
    /// then drops and counts every line: a log must not be the reason the service cannot run.
    pub(crate) fn start(dropped_line: DroppedLine) -> Option<Sink> {
        let (tx, rx) = sync_channel(QUEUE_EVENTS);
        std::thread::Builder::new()
            .name("ringtls-log".into())
            .spawn(move || write_loop(rx, dropped_line))
            .ok()
            .map(|_| Sink {
                tx,
                queued: AtomicU64::new(0),
            })
    }

    /// Queues one whole line (ending in `\n`) for stderr; never blocks. A line the queue has no
    /// room for is dropped and counted.
    pub(crate) fn push(&self, line: String) {
        match self.tx.try_send(line) {
            Ok(()) => {
                self.queued.fetch_add(1, Ordering::Release);
            }
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => count_dropped(1),
        }
    }

    /// Waits until every line queued before the call has been handled, for at most `limit`;
    /// false if the sink did not take them in time. For the end of the process: its last lines
    /// (a drain's summary, the reason it stops) should not die in the queue, but a stalled
    /// stderr must not keep it from exiting either.
    pub(crate) fn flush(&self, limit: Duration) -> bool {
        let target = self.queued.load(Ordering::Acquire);
        let until = Instant::now() + limit;
        while HANDLED.load(Ordering::Acquire) < target {
            if Instant::now() >= until {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        true
    }
}

/// Counts lines lost without reaching the queue or the sink.
pub(crate) fn count_dropped(n: u64) {
    DROPPED_TOTAL.fetch_add(n, Ordering::Relaxed);
    DROPPED_UNREPORTED.fetch_add(n, Ordering::Relaxed);
}

/// Event lines dropped so far because stderr could not take them in time.
pub(crate) fn dropped_total() -> u64 {
    DROPPED_TOTAL.load(Ordering::Relaxed)
}

fn write_loop(rx: Receiver<String>, dropped_line: DroppedLine) {
    let mut batch = Vec::with_capacity(BATCH_BYTES);
    let stderr = io::stderr();
    loop {
        let first = match rx.recv_timeout(IDLE_CHECK) {
            Ok(line) => line,
            Err(RecvTimeoutError::Timeout) => {
                report_drops(&stderr, &mut batch, dropped_line);
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => return,
        };
        std::thread::sleep(GATHER);
        let mut next = Some(first);
        while let Some(line) = next.take() {
            batch.clear();
            batch.extend_from_slice(line.as_bytes());
            let mut lines = 1;
            while batch.len() < BATCH_BYTES {
                match rx.try_recv() {
                    Ok(line) => {
                        batch.extend_from_slice(line.as_bytes());
                        lines += 1;
                    }
                    Err(_) => break,
                }
            }
            if write_batch(&stderr, &batch).is_err() {
                count_dropped(lines);
            }
            HANDLED.fetch_add(lines, Ordering::Release);
            next = rx.try_recv().ok();
        }
        // The sink took this batch: say what was lost before it, if anything.
        report_drops(&stderr, &mut batch, dropped_line);
    }
}

/// Writes the `log.dropped` line for drops not yet reported, if any (through `batch`). If
/// that write fails, the line is lost with the sink; the metric still has the count.
fn report_drops(stderr: &io::Stderr, batch: &mut Vec<u8>, dropped_line: DroppedLine) {
    let n = DROPPED_UNREPORTED.swap(0, Ordering::Relaxed);
    if n > 0 {
        batch.clear();
        batch.extend_from_slice(dropped_line(n).as_bytes());
        let _ = write_batch(stderr, batch);
    }
}

/// Writes all of `bytes` to stderr. A full non-blocking stderr is retried here, on the
/// writer's own time; any other error (EPIPE, EBADF) gives up on the batch.
fn write_batch(stderr: &io::Stderr, bytes: &[u8]) -> io::Result<()> {
    let mut lock = stderr.lock();
    let mut done = 0;
    while done < bytes.len() {
        match lock.write(&bytes[done..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::sleep(RETRY_FULL),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
