//! One connection's life, told by `serve_connection`: `establish` (the handshake in `client`,
//! the re-check of a resumed session, the upstream dial in `connect`) → data plane (`plane`:
//! `relay` in user space or `ktls` in the kernel, raced against the `guard`) → its `Outcome`,
//! which `record` writes down as the one event and every metric.
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
pub(crate) mod ktls_offer;
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
use plane::Established;
pub(crate) use settings::{Generation, Settings, WorkerSignals};

/// Serves one accepted client to completion and records how it ended. Never panics on
/// anything the client sends.
pub(crate) async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    stats: &'static WorkerStats,
    settings: Arc<Settings>,
    signals: WorkerSignals,
) {
    let started = Instant::now();
    let record = |outcome| record::record(stats, peer, started.elapsed(), outcome);
    // Boxed either way, so that the result held between the two waits is two words in the
    // task, not the whole connection a second time.
    let established = match establish(stream, peer, stats, &settings, started).await {
        Ok(established) => established,
        Err(refusal) => {
            let Refusal { outcome, linger } = *refusal;
            record(outcome);
            return client::linger(linger).await;
        }
    };
    // The relay, until either side ends it or the guard does.
    let relayed = plane::relay(*established, &settings, signals).await;
    record(Outcome::Closed {
        facts: relayed.facts,
        path: relayed.path,
        counters: relayed.counters,
        reason: relayed.reason,
        detail: relayed.detail,
    });
}

/// The connection up to its relay: the handshake, the re-check of a resumed session, the
/// dial. A future of its own, so that nothing it holds across its waits takes room in the
/// task while the relay runs (a coroutine keeps a local that lives across two waits in every
/// state, the relay's long one included).
async fn establish(
    stream: TcpStream,
    peer: SocketAddr,
    stats: &WorkerStats,
    settings: &Settings,
    started: Instant,
) -> Result<Box<Established>, Box<Refusal>> {
    // Held until the upstream is dialled: the whole setup sees one configuration.
    let generation = settings.current.load_full();
    // The handshake: a client whose certificate does not pass goes no further.
    let timeout = settings.handshake_timeout;
    let by_record = settings.ktls.is_some();
    let mut client = Client::accept(stream, &generation.tls, timeout, by_record).await?;
    let verifier = generation.verifier.as_ref();
    let resumed = client.recheck_resumed(verifier).await;
    resumed.map_err(|outcome| Box::new(Refusal::ended(outcome)))?;
    record::handshake_done(stats, started.elapsed());
    let facts = client.facts();

    // The upstream is dialled only now: a refused client never causes a connection to it.
    let upstream = match connect::connect(&generation.upstream, settings.connect_timeout).await {
        Ok(upstream) => upstream,
        Err(e) => {
            client.close_notify().await;
            let detail = Chain(&e).to_string();
            return Err(Box::new(Refusal::ended(Outcome::Unreachable {
                facts,
                detail,
            })));
        }
    };
    if settings.proxy_protocol {
        client.prepend_proxy_header(&facts, peer);
    }
    let (stream, conn, early) = client.into_parts();
    Ok(Box::new(Established {
        client: stream,
        conn,
        early,
        upstream,
        facts,
    }))
}

/// Records a client turned away at accept, before any handshake (`--max-conns`).
pub(crate) fn refuse_at_accept(
    stats: &WorkerStats,
    peer: SocketAddr,
    reason: Reject,
    detail: &str,
) {
    let outcome = Outcome::Refused {
        reason,
        alert: Sent::None,
        detail: detail.to_owned(),
        presented: None,
    };
    record::record(stats, peer, Duration::ZERO, outcome);
}
