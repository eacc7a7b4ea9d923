//! One connection's life, told by `serve_connection`: handshake (`client`) → re-check of a
//! resumed session → upstream dial (`connect`) → data plane (`plane`: `relay` in user space or
//! `ktls` in the kernel, with the `guard`) → its `Outcome`, which `record` writes down as the one
//! event and every metric.
//!
//! The upstream is dialled only after the handshake (and so the client-certificate check) has
//! succeeded: a rejected client never causes an upstream connection, and none of its bytes reach
//! the upstream. Nothing here can take down the worker.

pub mod alert;
pub(crate) mod budget;
mod buffers;
mod client;
pub(crate) mod connect;
pub(crate) mod guard;
pub(crate) mod handshake;
pub(crate) mod ktls;
pub(crate) mod notify;
mod plane;
pub(crate) mod proxy_v2;
pub(crate) mod reason;
mod record;
pub(crate) mod relay;
pub(crate) mod relay_error;
mod session;
pub(crate) mod settings;
pub mod splice;
pub(crate) mod timer;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use monoio::net::TcpStream;

use crate::cause::Chain;
use crate::outcome::{Outcome, Reject, Sent};
use crate::telemetry::metrics::WorkerStats;
use client::{Client, Refusal};
pub(crate) use settings::{Generation, Settings, WorkerSignals};

/// Serves one accepted client to completion and records how it ended. Never panics on
/// anything the client sends.
pub async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    stats: &'static WorkerStats,
    settings: Arc<Settings>,
    signals: WorkerSignals,
) {
    let started = Instant::now();
    let record = |outcome| record::record(stats, peer, started.elapsed(), outcome);
    // Held until the upstream is dialled: the whole setup sees one configuration.
    let generation = settings.current.load_full();

    // The handshake: a client whose certificate does not pass goes no further.
    let timeout = settings.handshake_timeout;
    let by_record = settings.ktls.is_some();
    let mut client = match Client::accept(stream, &generation.tls, timeout, by_record).await {
        Ok(client) => client,
        Err(Refusal { outcome, linger }) => {
            record(outcome);
            return client::linger(linger).await;
        }
    };
    if let Err(outcome) = client.recheck_resumed(generation.verifier.as_ref()).await {
        return record(outcome);
    }
    record::handshake_done(stats, started.elapsed());
    let facts = client.facts();

    // The upstream is dialled only now: a refused client never causes a connection to it.
    let dialled = connect::connect(&generation.upstream, settings.connect_timeout).await;
    drop(generation);
    let upstream = match dialled {
        Ok(upstream) => upstream,
        Err(e) => {
            client.close_notify().await;
            let detail = Chain(&e).to_string();
            return record(Outcome::Unreachable { facts, detail });
        }
    };
    if settings.proxy_protocol {
        client.prepend_proxy_header(&facts, peer);
    }

    // The relay, until either side ends it or the guard does.
    let (stream, conn, early) = client.into_parts();
    let relayed = plane::relay(stream, conn, early, upstream, &facts, &settings, signals).await;
    record(Outcome::Closed {
        facts,
        path: relayed.path,
        counters: relayed.counters,
        reason: relayed.reason,
        detail: relayed.detail,
    });
}

/// Records a client turned away at accept, before any handshake (`--max-conns`).
pub fn refuse_at_accept(stats: &WorkerStats, peer: SocketAddr, reason: Reject, detail: &str) {
    let outcome = Outcome::Refused {
        reason,
        alert: Sent::None,
        detail: detail.to_owned(),
        presented: None,
    };
    record::record(stats, peer, Duration::ZERO, outcome);
}
