//! One connection's life, told by `serve_connection`: `establish` (the endpoint chosen by the
//! ClientHello's SNI in `route`; for a terminating endpoint the handshake in `client` and the
//! re-check of a resumed session; the upstream dial in `connect`) → data plane (`plane`:
//! `relay` in user space, `ktls` in the kernel, or `passthrough`'s splice of the untouched TLS
//! bytes, raced against the `guard`) → its `Outcome`, which `record` writes down as the one
//! event and every metric of its endpoint.
//!
//! The upstream is dialled only after the handshake (and so the client-certificate check) has
//! succeeded: a rejected client never causes an upstream connection, and none of its bytes reach
//! the upstream. Nothing here can take down the worker.

mod accept_proxy;
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
mod ocsp_gate;
mod passthrough;
mod plane;
// Public for the fuzz targets (fuzz/fuzz_targets/proxy_in.rs, proxy_v2.rs).
pub mod proxy_in;
pub mod proxy_v2;
pub(crate) mod reason;
mod record;
pub(crate) mod relay;
pub(crate) mod relay_error;
mod route;
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
use crate::tls::ClientAuth;
pub use accept_proxy::AcceptProxy;
use client::{Client, Refusal};
use plane::{Established, Link};
use session::SessionFacts;
pub use settings::Timeouts;
pub(crate) use settings::{Endpoint, Generation, Serve, Settings, WorkerSignals};

/// Serves one accepted client (on listener `listener`, an index into the listen addresses)
/// to completion and records how it ended. Never panics on anything the client sends.
pub(crate) async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    listener: usize,
    stats: &'static WorkerStats,
    settings: Arc<Settings>,
    signals: WorkerSignals,
) {
    let started = Instant::now();
    let mut stream = stream;
    // `--accept-proxy` (or the listener's `accept_proxy`): the client is who the balancer's
    // header says.
    let accept = {
        let generation = settings.current.load();
        generation
            .accept_proxy(listener)
            .cloned()
            .map(|a| (a, generation.hello_timeout))
    };
    let (peer, local, first) = match accept {
        None => (peer, None, Vec::new()),
        Some((accept, timeout)) => match accept.take(&mut stream, peer, timeout).await {
            Ok(taken) => (taken.peer, taken.local, taken.rest),
            Err(refusal) => {
                record::record(stats, peer, started.elapsed(), None, refusal.outcome);
                return;
            }
        },
    };
    let record = |endpoint: Option<&Endpoint>, outcome| {
        record::record(stats, peer, started.elapsed(), endpoint, outcome)
    };
    // Boxed either way, so that the result held between the two waits is two words in the
    // task, not the whole connection a second time.
    let at = At {
        peer,
        local,
        listener,
        started,
        first,
    };
    let established = match establish(stream, at, stats, &settings, signals).await {
        Ok(established) => established,
        Err(refusal) => {
            let Refusal {
                outcome,
                linger,
                endpoint,
            } = *refusal;
            record(endpoint.as_deref(), outcome);
            return client::linger(linger).await;
        }
    };
    // The relay, until either side ends it or the guard does.
    let relayed = plane::relay(*established, &settings, signals).await;
    record(
        Some(&relayed.endpoint),
        Outcome::Closed {
            facts: relayed.facts,
            path: relayed.path,
            counters: relayed.counters,
            reason: relayed.reason,
            detail: relayed.detail,
        },
    );
}

/// The connection up to its relay: the choice of endpoint, then the handshake and the
/// re-check of a resumed session (or, passed through, nothing), then the dial. A future of
/// its own, so that nothing it holds across its waits takes room in the task while the relay
/// runs (a coroutine keeps a local that lives across two waits in every state, the relay's
/// long one included).
async fn establish(
    stream: TcpStream,
    at: At,
    stats: &WorkerStats,
    settings: &Settings,
    signals: WorkerSignals,
) -> Result<Box<Established>, Box<Refusal>> {
    let At {
        peer,
        local,
        listener,
        started,
        first,
    } = at;
    // Held until the upstream is dialled: the whole setup sees one configuration.
    let generation = settings.current.load_full();
    let Some(routes) = generation.routes(listener) else {
        let detail = format!("listener #{listener} has no endpoints");
        return Err(Box::new(Refusal::ended(Outcome::Failed { detail })));
    };
    // One budget for the PROXY header and the ClientHello together: a sender that trickles
    // the header does not get a second full timeout for the hello.
    let hello_left = generation.hello_timeout.saturating_sub(started.elapsed());
    let hello_left = hello_left.max(Duration::from_millis(1));
    let (stream, routed) = route::choose(stream, routes, hello_left, first).await?;
    let endpoint = routed.endpoint;
    let named = |mut refusal: Box<Refusal>| {
        refusal.endpoint = Some(Arc::clone(&endpoint));
        refusal
    };
    let (stream, link, facts, lease) = match &endpoint.serve {
        Serve::Passthrough => {
            let facts = SessionFacts::passthrough(routed.sni.as_deref());
            (
                stream,
                Link::Passthrough { first: routed.read },
                facts,
                None,
            )
        }
        Serve::Terminate {
            tls,
            verifier,
            client_auth,
            ocsp,
        } => {
            // The handshake: a client whose certificate does not pass goes no further.
            let left = endpoint
                .timeouts
                .handshake
                .saturating_sub(started.elapsed());
            let timeout = left.max(Duration::from_millis(1));
            let by_record = settings.ktls.is_some();
            let accepted = Client::accept(stream, routed.read, tls, timeout, by_record).await;
            let mut client = accepted.map_err(|r| named(Box::new(r)))?;
            let resumed = client.recheck_resumed(verifier.as_ref()).await;
            resumed.map_err(|outcome| named(Box::new(Refusal::ended(outcome))))?;
            let mut facts = client.facts(client_auth.verifies());
            // `--ocsp`: the status, waited for here when the cache had none.
            let lease = match ocsp {
                None => None,
                Some(ocsp) => match ocsp_gate::admit(ocsp, client.chain(), signals.ocsp).await {
                    Ok(admitted) => {
                        facts.set_revocation(admitted.revocation);
                        admitted.lease
                    }
                    Err(refused) => {
                        facts.set_revocation(refused.revocation);
                        let ended = client
                            .refuse(refused.reason, refused.detail, Some(facts))
                            .await;
                        return Err(named(Box::new(Refusal::ended(ended))));
                    }
                },
            };
            let unchecked = matches!(client_auth, ClientAuth::RequireAny | ClientAuth::Request);
            record::handshake_done(stats, &endpoint, started.elapsed(), !unchecked);
            let (stream, conn, early) = client.into_parts();
            (stream, Link::Tls { conn, early }, facts, lease)
        }
    };

    // The upstream is dialled only now: a refused client never causes a connection to it.
    let upstream = match connect::connect(&endpoint.upstream, endpoint.timeouts.connect).await {
        Ok(upstream) => upstream,
        Err(e) => {
            let detail = Chain(&e).to_string();
            let outcome = Outcome::Unreachable { facts, detail };
            let linger = match link {
                Link::Tls { conn, early } => {
                    let mut client = Client::from_parts(stream, conn, early);
                    client.close_notify().await;
                    None
                }
                // Nothing of TLS was said to a passed-through client: it sees the close.
                Link::Passthrough { .. } => None,
            };
            let refusal = Refusal {
                outcome,
                linger,
                endpoint: None,
            };
            return Err(named(Box::new(refusal)));
        }
    };
    let mut link = link;
    if endpoint.proxy_protocol {
        let local = local.unwrap_or_else(|| stream.local_addr().unwrap_or(peer));
        match &mut link {
            Link::Tls { conn, early } => {
                client::prepend_proxy_header(conn, early, &facts, peer, local)
            }
            Link::Passthrough { first } => {
                client::prepend_passthrough_header(first, &facts, peer, local)
            }
        }
    }
    Ok(Box::new(Established {
        client: stream,
        link,
        upstream,
        facts,
        endpoint,
        lease,
    }))
}

/// Where a connection came from and what was read of it before its endpoint is chosen.
struct At {
    /// The client: the accepted peer, or the PROXY header's source.
    peer: SocketAddr,
    /// The address it connected to, when a PROXY header says (else the socket's).
    local: Option<SocketAddr>,
    listener: usize,
    started: Instant,
    /// What followed the PROXY header.
    first: Vec<u8>,
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
    record::record(stats, peer, Duration::ZERO, None, outcome);
}
