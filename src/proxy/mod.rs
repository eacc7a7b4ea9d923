//! One connection's life: handshake → upstream connect → data plane → close, and the one event
//! line that records it.
//!
//! The upstream is dialled only after the handshake (and so the client-certificate check) has
//! succeeded: a rejected client never causes an upstream connection, and none of its bytes reach
//! the upstream. Every outcome is logged here and nowhere else; nothing here can take down the
//! worker.

pub mod alert;
pub mod budget;
mod buffers;
pub mod connect;
pub mod guard;
pub mod handshake;
pub mod ktls;
pub mod notify;
pub mod proxy_v2;
pub mod reason;
pub mod relay;
mod session;
pub mod splice;
pub mod timer;

use std::cell::RefCell;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use monoio::net::TcpStream;
use rustls::pki_types::CertificateDer;
use rustls::server::danger::ClientCertVerifier;
use rustls::{ServerConfig, ServerConnection};

use crate::outcome::{Close, Counters, Path, Reject};
use crate::telemetry::log::{Event, Level};
use crate::telemetry::metrics::WorkerStats;
use alert::Sent;
use connect::UpstreamStream;
use handshake::HandshakeError;
use notify::Broadcast;

/// What every connection of every worker needs, shared read-only; the part files and names
/// decide is a `Generation`, replaced whole on reload.
pub struct Settings {
    /// The configuration new connections use. A connection loads it once, at accept.
    pub current: ArcSwap<Generation>,
    /// Re-check live connections' client chains after a reload (`--reauthorize-on-reload`).
    pub reauthorize: bool,
    pub handshake_timeout: Duration,
    pub connect_timeout: Duration,
    pub idle_timeout: Duration,
    /// Send a PROXY protocol v2 header to the upstream before any client byte.
    pub proxy_protocol: bool,
    /// What kernel TLS takes, when it is to be used (`--ktls` and the start-time probe).
    pub ktls: Option<ktls::Offer>,
}

/// One loaded configuration: built at start and by each successful reload, never changed.
pub struct Generation {
    /// 1 at start, +1 per successful reload.
    pub id: u64,
    pub tls: Arc<ServerConfig>,
    /// The verifier inside `tls`, to re-check the client chain of a resumed session (and of
    /// live connections after a reload).
    pub verifier: Arc<dyn ClientCertVerifier>,
    pub upstream: Vec<connect::UpstreamAddr>,
}

/// A worker's signals to its connections.
#[derive(Clone, Copy)]
pub struct WorkerSignals {
    /// A reload happened.
    pub trust_changed: &'static Broadcast,
    /// The guards' clock (`guard::ticker`).
    pub tick: &'static Broadcast,
}

/// Serves one accepted client to completion. Never panics on anything the client sends.
pub async fn serve_connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    stats: &'static WorkerStats,
    settings: Arc<Settings>,
    signals: WorkerSignals,
) {
    let worker = stats.id;
    let started = Instant::now();
    // Held until the upstream is dialled: the whole setup sees one configuration.
    let generation = settings.current.load_full();
    // Boxed: the connection state (over 1 KiB) then lives once on the heap instead of in every
    // future that holds it, which keeps an idle connection's footprint small.
    let mut conn = match ServerConnection::new(generation.tls.clone()) {
        Ok(conn) => Box::new(conn),
        Err(e) => {
            Event::error("conn.error")
                .num("worker", worker as u64)
                .word("peer", peer)
                .text("detail", &e.to_string())
                .emit();
            return;
        }
    };

    let mut out = Vec::new();
    let handshake = timer::timeout(
        settings.handshake_timeout,
        handshake::accept_client(
            &mut stream,
            &mut conn,
            Vec::with_capacity(buffers::BIG),
            &mut out,
            match settings.ktls {
                Some(_) => handshake::Reads::RecordByRecord,
                None => handshake::Reads::Greedy,
            },
        ),
    )
    .await;
    let mut early = match handshake {
        Ok(Ok(early)) => early,
        Ok(Err(err)) => {
            log_rejected(stats, peer, started, &err, &conn);
            if let HandshakeError::Tls { .. } = err {
                // Not counted against --handshake-timeout: the verdict is already out (or, where
                // none could go out, after the client's own alert or a refusal rustls sends no
                // alert for once our records are sealed, at least a FIN and not a reset).
                handshake::linger(&mut stream).await;
            }
            return;
        }
        Err(_) => {
            return log_reject(
                stats,
                peer,
                started,
                Reject::HandshakeTimeout,
                Sent::None,
                "no complete handshake in time",
            );
        }
    };

    if let Err(e) = recheck_resumed(&conn, generation.verifier.as_ref()) {
        // The session was valid when issued but its client chain no longer is: turn it away
        // like a full handshake with that chain would be.
        // rustls cannot send a fatal alert once the handshake is over; close_notify at least
        // tells the client the end is deliberate.
        conn.send_close_notify();
        // What went out is close_notify (alert 0, a warning), unless the client is gone.
        let alert = match handshake::flush(&mut stream, &mut conn, &mut out).await {
            Ok(()) => Sent::Alert(0),
            Err(_) => Sent::None,
        };
        return log_reject(
            stats,
            peer,
            started,
            reason::classify(&e),
            alert,
            &format!("resumed session: {e}"),
        );
    }

    stats.handshake_done(started.elapsed());
    let leaf = conn.peer_certificates().and_then(|chain| chain.first());
    let facts = session::SessionFacts::read(&conn, leaf.map(|der| der.as_ref()));
    let closed = |level: Level, path: Path, counters: &Counters, reason: &str, detail: &str| {
        facts
            .add_to(
                Event::connection(level, "conn.closed")
                    .num("worker", worker as u64)
                    .word("peer", peer),
            )
            .word("path", path.as_str())
            .num("up", counters.up.get())
            .num("down", counters.down.get())
            .num("spliced", counters.spliced.get())
            .num("ms", started.elapsed().as_millis())
            .word("reason", reason)
            .text("detail", detail)
            .emit();
    };

    let upstream = connect::connect(&generation.upstream, settings.connect_timeout).await;
    drop(generation);
    let upstream = match upstream {
        Ok(upstream) => upstream,
        Err(detail) => {
            // The client is told with close_notify that nothing more will come.
            conn.send_close_notify();
            let _ = handshake::flush(&mut stream, &mut conn, &mut out).await;
            stats.upstream_failures.add(1);
            stats.reject(Reject::UpstreamUnreachable);
            closed(
                Level::Warn,
                Path::None,
                &Counters::default(),
                Reject::UpstreamUnreachable.as_str(),
                &detail,
            );
            return;
        }
    };

    if settings.proxy_protocol {
        let mut header = proxy_header(&conn, &facts, peer, stream.local_addr().unwrap_or(peer));
        header.extend_from_slice(&early.plain);
        early.plain = header;
    }

    let counters = Counters::default();
    // The handshake's buffers are record-sized; the relay starts small (see `buffers`).
    drop(out);
    let guard = guard::Guard {
        idle: settings.idle_timeout,
        tick: signals.tick,
        expires: facts.not_after().and_then(guard::deadline),
        reauthorize: (settings.reauthorize && conn.peer_certificates().is_some())
            .then_some((signals.trust_changed, &*settings)),
    };
    let kernel = settings.ktls.as_ref().and_then(|offer| offer.takes(&conn));
    let (path, result) = match kernel {
        Some(suite) => {
            // The rustls connection is spent by the hand-off: keep the chain if a reload may
            // have to check it again.
            let chain: Vec<CertificateDer<'static>> = match guard.reauthorize {
                Some(_) => conn
                    .peer_certificates()
                    .map(|c| c.iter().map(|d| d.clone().into_owned()).collect())
                    .unwrap_or_default(),
                None => Vec::new(),
            };
            // Boxed: the kernel-TLS relay's state is larger than the user-space one's, and
            // inline it would set the size of every connection's task, idle ones included.
            let result = match ktls::hand_off(conn, &stream, suite, early.secrets.take()) {
                Ok(kernel) => match upstream {
                    UpstreamStream::Tcp(u) => {
                        Box::pin(ktls::relay(
                            stream, u, kernel, &chain, early, &guard, &counters,
                        ))
                        .await
                    }
                    UpstreamStream::Unix(u) => {
                        Box::pin(ktls::relay(
                            stream, u, kernel, &chain, early, &guard, &counters,
                        ))
                        .await
                    }
                },
                Err(detail) => Err(relay::RelayError::HandOff(detail)),
            };
            (Path::Kernel, result)
        }
        None => {
            // Room for a whole bulk read of upstream bytes as records, so one client write
            // carries it.
            conn.set_buffer_limit(Some(2 * buffers::HUGE));
            let conn = RefCell::new(conn);
            let result = match upstream {
                UpstreamStream::Tcp(u) => {
                    relay::relay(stream, u, &conn, early, &guard, &counters).await
                }
                UpstreamStream::Unix(u) => {
                    relay::relay(stream, u, &conn, early, &guard, &counters).await
                }
            };
            (Path::User, result)
        }
    };
    stats.count_path(path);
    let (reason, detail) = match &result {
        Ok(()) => (Close::Closed, String::new()),
        Err(e) => (e.reason(), e.detail()),
    };
    stats.bytes_up.add(counters.up.get());
    stats.bytes_down.add(counters.down.get());
    stats.bytes_spliced.add(counters.spliced.get());
    stats.count_close(reason);
    closed(Level::Info, path, &counters, reason.as_str(), &detail);
}

/// The PROXY v2 header for this connection (see `proxy_v2`), from the facts already read.
fn proxy_header(
    conn: &ServerConnection,
    facts: &session::SessionFacts,
    peer: SocketAddr,
    local: SocketAddr,
) -> Vec<u8> {
    let (version, cipher, cert) = facts.proxy_fields();
    let info = proxy_v2::ClientInfo {
        alpn: conn.alpn_protocol(),
        sni: conn.server_name(),
        version,
        cipher,
        cert,
        resumed: conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed),
    };
    let mut header = Vec::with_capacity(256);
    proxy_v2::encode(peer, local, &info, &mut header);
    header
}

/// A resumed session skips chain verification; re-run it (served from the per-worker verdict
/// cache when this worker has seen the chain) so that a session ticket never lets in a chain
/// that a full handshake would now refuse — expired since, for instance.
fn recheck_resumed(
    conn: &ServerConnection,
    verifier: &dyn ClientCertVerifier,
) -> Result<(), rustls::Error> {
    if conn.handshake_kind() != Some(rustls::HandshakeKind::Resumed) {
        return Ok(());
    }
    let chain = conn.peer_certificates();
    if chain.is_none_or(|c| c.is_empty()) && verifier.client_auth_mandatory() {
        return Err(rustls::Error::NoCertificatesPresented);
    }
    guard::verify_chain(chain, verifier)
}

fn log_rejected(
    stats: &WorkerStats,
    peer: SocketAddr,
    started: Instant,
    err: &HandshakeError,
    conn: &ServerConnection,
) {
    let (event, leaf) = match err {
        HandshakeError::Tls { error, leaf, alert } => {
            let event = reject_event(
                stats,
                peer,
                started,
                reason::classify(error),
                *alert,
                &error.to_string(),
            );
            (event, leaf.as_deref())
        }
        HandshakeError::Eof | HandshakeError::Io(_) => {
            let detail = match err {
                HandshakeError::Io(e) => e.to_string(),
                _ => "closed mid-handshake".to_owned(),
            };
            let event = reject_event(
                stats,
                peer,
                started,
                Reject::ClientClosed,
                Sent::None,
                &detail,
            );
            (event, None)
        }
    };
    // What was negotiated before the refusal, as far as it got, and the refused certificate
    // when that is what failed: the same fields as a close event.
    session::SessionFacts::read_refused(conn, leaf)
        .add_to(event)
        .emit();
}

/// Logs a client turned away, before or during the handshake.
pub fn log_reject(
    stats: &WorkerStats,
    peer: SocketAddr,
    started: Instant,
    reason: Reject,
    alert: Sent,
    detail: &str,
) {
    reject_event(stats, peer, started, reason, alert, detail).emit();
}

/// Counts a rejection and starts its event; the caller may add fields, then emits it.
fn reject_event(
    stats: &WorkerStats,
    peer: SocketAddr,
    started: Instant,
    reason: Reject,
    alert: Sent,
    detail: &str,
) -> Event {
    stats.reject(reason);
    Event::connection(Level::Info, "conn.rejected")
        .num("worker", stats.id as u64)
        .word("peer", peer)
        .word("reason", reason.as_str())
        .word("alert", alert.field())
        .num("ms", started.elapsed().as_millis())
        .text("detail", detail)
}
