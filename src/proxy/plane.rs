//! The data plane of an established connection: which path carries it (rustls in user space,
//! or the kernel after a hand-off, `ktls`), the guard that may end it, and the one dispatch
//! that runs either path over either kind of upstream.

use std::cell::RefCell;

use monoio::net::TcpStream;
use rustls::ServerConnection;
use rustls::pki_types::CertificateDer;

use super::connect::{Upstream, UpstreamStream};
use super::guard::Guard;
use super::handshake::Early;
use super::ktls::{self, Kernel};
use super::relay_error::RelayError;
use super::session::SessionFacts;
use super::settings::{Settings, WorkerSignals};
use super::{buffers, relay};
use crate::outcome::{Close, Counters, Path};

/// How a relay ended: the path it took, what it moved, and why it ended.
pub(crate) struct Relayed {
    pub path: Path,
    pub counters: Counters,
    pub reason: Close,
    pub detail: String,
}

/// Relays between the client and `upstream` until the connection ends.
pub(crate) async fn relay(
    client: TcpStream,
    conn: Box<ServerConnection>,
    mut early: Early,
    upstream: UpstreamStream,
    facts: &SessionFacts,
    settings: &Settings,
    signals: WorkerSignals,
) -> Relayed {
    let counters = Counters::default();
    let guard = Guard {
        idle: settings.idle_timeout,
        tick: signals.tick,
        expires: facts.not_after().and_then(super::guard::deadline),
        reauthorize: (settings.reauthorize && conn.peer_certificates().is_some())
            .then_some((signals.trust_changed, settings)),
    };
    let kernel = settings.ktls.as_ref().and_then(|offer| offer.takes(&conn));
    let (path, result) = match kernel {
        Some(suite) => {
            // The rustls connection is spent by the hand-off: keep the chain if a reload may
            // have to check it again.
            let chain = match guard.reauthorize {
                Some(_) => owned_chain(&conn),
                None => Vec::new(),
            };
            let secrets = early.secrets.take();
            let result = match ktls::hand_off(conn, &client, suite, secrets) {
                Ok(kernel) => {
                    let kernel = Box::new(kernel);
                    let plane = Plane::Kernel { kernel, chain };
                    carry_over(plane, client, upstream, early, &guard, &counters).await
                }
                Err(e) => Err(RelayError::HandOff(e)),
            };
            (Path::Kernel, result)
        }
        None => {
            // Room for a whole bulk read of upstream bytes as records, so one client write
            // carries it.
            let mut conn = conn;
            conn.set_buffer_limit(Some(2 * buffers::HUGE));
            let plane = Plane::User(RefCell::new(conn));
            let result = carry_over(plane, client, upstream, early, &guard, &counters).await;
            (Path::User, result)
        }
    };
    let (reason, detail) = match &result {
        Ok(()) => (Close::Closed, String::new()),
        Err(e) => (e.reason(), e.detail()),
    };
    Relayed {
        path,
        counters,
        reason,
        detail,
    }
}

/// The client's chain, owned, for re-checks after the rustls connection is gone.
fn owned_chain(conn: &ServerConnection) -> Vec<CertificateDer<'static>> {
    conn.peer_certificates()
        .map(|c| c.iter().map(|d| d.clone().into_owned()).collect())
        .unwrap_or_default()
}

/// What carries the client's records.
enum Plane {
    /// rustls, in user space (`relay`).
    User(RefCell<Box<ServerConnection>>),
    /// The kernel (`ktls`), with the chain kept for re-checks after a reload. Boxed: a
    /// connection's task holds the plane for its whole life, and most take the user path.
    Kernel {
        kernel: Box<Kernel>,
        chain: Vec<CertificateDer<'static>>,
    },
}

/// Runs `plane` over whichever kind of upstream was dialled: the one place the four
/// combinations meet. A plain function over one generic `carry`, not another async layer:
/// every async layer keeps its own copy of its arguments for the whole connection.
async fn carry_over(
    plane: Plane,
    client: TcpStream,
    upstream: UpstreamStream,
    early: Early,
    guard: &Guard<'_>,
    counters: &Counters,
) -> Result<(), RelayError> {
    match upstream {
        UpstreamStream::Tcp(u) => carry(plane, client, u, early, guard, counters).await,
        UpstreamStream::Unix(u) => carry(plane, client, u, early, guard, counters).await,
    }
}

async fn carry<U: Upstream>(
    plane: Plane,
    client: TcpStream,
    upstream: U,
    early: Early,
    guard: &Guard<'_>,
    counters: &Counters,
) -> Result<(), RelayError> {
    match plane {
        Plane::User(conn) => {
            let stop = guard.watch(&conn, counters);
            relay::relay(client, upstream, &conn, early, stop, counters).await
        }
        // Boxed: the kernel-TLS relay's state is larger than the user-space one's, and
        // inline it would set the size of every connection's task, idle ones included.
        Plane::Kernel { kernel, chain } => {
            let stop = guard.watch(&chain, counters);
            Box::pin(ktls::relay(
                client, upstream, *kernel, early, stop, counters,
            ))
            .await
        }
    }
}
