//! Writing a connection's outcome down: the one event line and every metric it moves, in one
//! place, so the log and the counters agree by construction rather than by care
//! (`tests/outcome_agreement.rs` checks that they do).
//!
//! The handshake histogram is the one metric written before the end: a completed handshake
//! is counted when it completes, so a pool of long-lived connections shows its handshakes when
//! they happen (as Envoy's and HAProxy's handshake counters do), not hours later at close.

use std::net::SocketAddr;
use std::time::Duration;

use super::session::SessionFacts;
use super::settings::Endpoint;
use crate::outcome::{Counters, Outcome, Path, Reject};
use crate::telemetry::log::{Event, Level};
use crate::telemetry::metrics::WorkerStats;

/// How one connection of this worker ended, `took` after it was accepted.
pub(crate) fn record(
    worker: &WorkerStats,
    peer: SocketAddr,
    took: Duration,
    endpoint: Option<&Endpoint>,
    outcome: Outcome<SessionFacts>,
) {
    let at = |event: Event| match endpoint {
        Some(e) => event.word("endpoint", &e.name),
        None => event,
    };
    // The endpoint's counters on this worker, or those of connections no endpoint took.
    let stats = endpoint.map_or(&worker.unrouted, |e| e.stats.worker(worker.id));
    let ms = took.as_millis();
    let worker = worker.id as u64;
    match outcome {
        Outcome::Failed { detail } => at(Event::error("conn.error")
            .num("worker", worker)
            .word("peer", peer))
        .text("detail", &detail)
        .emit(),
        Outcome::Refused {
            reason,
            alert,
            detail,
            presented,
        } => {
            stats.reject(reason);
            let event = at(Event::connection(Level::Info, "conn.rejected")
                .num("worker", worker)
                .word("peer", peer))
            .word("reason", reason.as_str())
            .word("alert", alert)
            .num("ms", ms)
            .text("detail", &detail);
            // What was negotiated before the refusal, as far as it got, and the refused
            // certificate when that is what failed: the same fields as a close event.
            match presented {
                Some(facts) => facts.add_to(event),
                None => event,
            }
            .emit();
        }
        Outcome::Unreachable { facts, detail } => {
            stats.upstream_failures.add(1);
            stats.reject(Reject::UpstreamUnreachable);
            let closed = Closed {
                path: Path::None,
                counters: &Counters::default(),
                reason: Reject::UpstreamUnreachable.as_str(),
                detail: &detail,
                ms,
            };
            closed
                .event(at(start(Level::Warn, worker, peer)), &facts)
                .emit();
        }
        Outcome::Closed {
            facts,
            path,
            counters,
            reason,
            detail,
        } => {
            stats.count_path(path);
            stats.bytes_up.add(counters.up.get());
            stats.bytes_down.add(counters.down.get());
            stats.bytes_spliced.add(counters.spliced.get());
            stats.count_close(reason);
            let closed = Closed {
                path,
                counters: &counters,
                reason: reason.as_str(),
                detail: &detail,
                ms,
            };
            closed
                .event(at(start(Level::Info, worker, peer)), &facts)
                .emit();
        }
    }
}

/// A completed handshake on `endpoint`, `took` after the accept; `verified` unless the
/// endpoint leaves client certificates unchecked.
pub(crate) fn handshake_done(
    worker: &WorkerStats,
    endpoint: &Endpoint,
    took: Duration,
    verified: bool,
) {
    let stats = endpoint.stats.worker(worker.id);
    stats.handshake_done(took, verified);
}

/// The start of a `conn.closed` event.
fn start(level: Level, worker: u64, peer: SocketAddr) -> Event {
    Event::connection(level, "conn.closed")
        .num("worker", worker)
        .word("peer", peer)
}

/// The fields of a `conn.closed` event after the session's.
struct Closed<'a> {
    path: Path,
    counters: &'a Counters,
    reason: &'static str,
    detail: &'a str,
    ms: u128,
}

impl Closed<'_> {
    fn event(&self, start: Event, facts: &SessionFacts) -> Event {
        facts
            .add_to(start)
            .word("path", self.path.as_str())
            .num("up", self.counters.up.get())
            .num("down", self.counters.down.get())
            .num("spliced", self.counters.spliced.get())
            .num("ms", self.ms)
            .word("reason", self.reason)
            .text("detail", self.detail)
    }
}
