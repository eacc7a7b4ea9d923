//! The data plane of an established connection: which path carries it (rustls in user space,
//! or the kernel after a hand-off, `ktls`), the guard that may end it, and the one dispatch
//! that runs either path over either kind of upstream.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use monoio::net::TcpStream;
use pin_project_lite::pin_project;
use rustls::ServerConnection;
use rustls::pki_types::CertificateDer;

use super::connect::{Upstream, UpstreamStream};
use super::guard::{Guard, Reload};
use super::handshake::Early;
use super::ktls::{self, Kernel};
use super::relay_error::RelayError;
use super::session::SessionFacts;
use super::settings::Endpoint;
use super::settings::{Settings, WorkerSignals};
use super::{buffers, passthrough, relay};
use crate::outcome::{Close, Counters, Path};

/// How a relay ended: the path it took, what it moved, and why it ended (and the session's
/// facts, handed back for the close event).
pub(crate) struct Relayed {
    /// The endpoint, for the close event and its counters.
    pub endpoint: Arc<Endpoint>,
    pub facts: SessionFacts,
    pub path: Path,
    pub counters: Counters,
    pub reason: Close,
    pub detail: String,
}

/// A connection through its handshake (or, passed through, its routing) with its upstream
/// dialled: what the relay starts from.
pub(crate) struct Established {
    pub client: TcpStream,
    pub link: Link,
    pub upstream: UpstreamStream,
    pub facts: SessionFacts,
    pub endpoint: Arc<Endpoint>,
    /// `--ocsp`: the hold on the client certificate's answer, for as long as the connection
    /// lives (`revocation::Lease`).
    pub lease: Option<crate::revocation::Lease>,
}

/// What stands between the client's bytes and the upstream.
pub(crate) enum Link {
    /// The TLS ends here: rustls' connection, and what the client sent with the end of its
    /// handshake.
    Tls {
        conn: Box<ServerConnection>,
        early: Early,
    },
    /// The TLS goes through: what was read to route the connection goes first.
    Passthrough { first: Vec<u8> },
}

/// Relays between the client and its upstream until the connection ends.
///
/// Not an `async fn`: the choice of path (and the hand-off to the kernel) is made before the
/// future exists, and the future is one async block that uses what it captured in place. An
/// `async fn` would also copy each argument into a local of its own, and both copies would
/// stay in every connection's task as long as it lives.
pub(crate) fn relay<'a>(
    established: Established,
    settings: &'a Settings,
    signals: WorkerSignals,
) -> impl Future<Output = Relayed> + 'a {
    let Established {
        client,
        link,
        upstream,
        facts,
        endpoint,
        lease,
    } = established;
    let (path, plane, reauthorize) = match link {
        Link::Tls { conn, early } => {
            let reauthorize = settings.reauthorize && conn.peer_certificates().is_some();
            let (path, plane) = tls_plane(settings, conn, early, &client, reauthorize);
            (path, plane, reauthorize)
        }
        Link::Passthrough { first } => (Path::Passthrough, Ok(Plane::Passthrough(first)), false),
    };
    let expires = facts.not_after().and_then(super::guard::deadline);
    async move {
        // Dropped with the connection.
        let _lease = lease;
        let counters = Counters::default();
        let guard = Guard {
            idle: endpoint.timeouts.idle,
            tick: signals.tick,
            expires,
            reload: Reload {
                changed: signals.trust_changed,
                settings,
                endpoint: &endpoint.name,
                reauthorize,
            },
        };
        // The one dispatch over the kinds of upstream; `carry` is generic over it.
        let result = match plane {
            Ok(plane) => match upstream {
                UpstreamStream::Tcp(u) => carry(plane, client, u, &guard, &counters).await,
                UpstreamStream::Unix(u) => carry(plane, client, u, &guard, &counters).await,
            },
            Err(e) => Err(e),
        };
        let (reason, detail) = match &result {
            Ok(()) => (Close::Closed, String::new()),
            Err(e) => (e.reason(), e.detail()),
        };
        Relayed {
            endpoint: Arc::clone(&endpoint),
            facts,
            path,
            counters,
            reason,
            detail,
        }
    }
}

/// The path of a terminated connection: kernel TLS when it takes the negotiated suite, else
/// rustls in user space.
fn tls_plane(
    settings: &Settings,
    conn: Box<ServerConnection>,
    mut early: Early,
    client: &TcpStream,
    reauthorize: bool,
) -> (Path, Result<Plane, RelayError>) {
    match settings.ktls.as_ref().and_then(|offer| offer.takes(&conn)) {
        Some(suite) => {
            // The rustls connection is spent by the hand-off: keep the chain if a reload may
            // have to check it again.
            let chain = match reauthorize {
                true => owned_chain(&conn),
                false => Vec::new(),
            };
            let secrets = early.secrets.take();
            let plane = ktls::hand_off(conn, client, suite, secrets)
                .map(|kernel| Plane::Kernel {
                    kernel: Box::new(kernel),
                    chain,
                    early,
                })
                .map_err(RelayError::HandOff);
            (Path::Kernel, plane)
        }
        None => {
            // Room for a whole bulk read of upstream bytes as records, so one client write
            // carries it.
            let mut conn = conn;
            conn.set_buffer_limit(Some(2 * buffers::HUGE));
            (Path::User, Ok(Plane::User(conn, early)))
        }
    }
}

/// The client's chain, owned, for re-checks after the rustls connection is gone.
fn owned_chain(conn: &ServerConnection) -> Vec<CertificateDer<'static>> {
    conn.peer_certificates()
        .map(|c| c.iter().map(|d| d.clone().into_owned()).collect())
        .unwrap_or_default()
}

/// What carries the client's records, with what is to go to the upstream first.
enum Plane {
    /// rustls, in user space (`relay`).
    User(Box<ServerConnection>, Early),
    /// The kernel (`ktls`), with the chain kept for re-checks after a reload. Boxed: a
    /// connection's task holds the plane for its whole life, and most take the user path.
    Kernel {
        kernel: Box<Kernel>,
        chain: Vec<CertificateDer<'static>>,
        early: Early,
    },
    /// Nothing: the TLS bytes go through (`passthrough`).
    Passthrough(Vec<u8>),
}

/// Runs `plane` over an upstream of any kind: the one place the four combinations of
/// upstream and data path meet. A plain function that returns the path's future rather than
/// an `async fn` that awaits it, which would keep its own dead copy of the sockets for the
/// whole connection.
fn carry<'a, U: Upstream + 'a>(
    plane: Plane,
    client: TcpStream,
    upstream: U,
    guard: &'a Guard<'a>,
    counters: &'a Counters,
) -> impl Future<Output = Result<(), RelayError>> + 'a {
    match plane {
        Plane::User(conn, early) => Either::Inline {
            future: relay::relay(client, upstream, conn, early, guard, counters),
        },
        // Boxed: the kernel-TLS relay's state is larger than the user-space one's, and
        // inline it would set the size of every connection's task, idle ones included.
        Plane::Kernel {
            kernel,
            chain,
            early,
        } => Either::Boxed {
            future: Box::pin(ktls::relay(
                client, upstream, *kernel, chain, early, guard, counters,
            )),
        },
        // Boxed too: its state is as large as the kernel path's, and few connections take it.
        Plane::Passthrough(first) => Either::Spliced {
            future: Box::pin(passthrough::relay(client, upstream, first, guard, counters)),
        },
    }
}

pin_project! {
    /// One of three futures with the same output: the user-space relay inline, the kernel-TLS
    /// and passthrough ones on the heap.
    #[project = EitherProj]
    enum Either<A, B, C> {
        Inline { #[pin] future: A },
        Boxed { future: Pin<Box<B>> },
        Spliced { future: Pin<Box<C>> },
    }
}

impl<A: Future, B: Future<Output = A::Output>, C: Future<Output = A::Output>> Future
    for Either<A, B, C>
{
    type Output = A::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<A::Output> {
        match self.project() {
            EitherProj::Inline { future } => future.poll(cx),
            EitherProj::Boxed { future } => future.as_mut().poll(cx),
            EitherProj::Spliced { future } => future.as_mut().poll(cx),
        }
    }
}
