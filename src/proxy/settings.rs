//! What every connection of every worker shares, read-only: the settings fixed at start and
//! the configuration generation that files and names decide, replaced whole on reload.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::ServerConfig;
use rustls::server::danger::ClientCertVerifier;

use super::AcceptProxy;
use super::connect;
use super::ktls_offer::Offer;
use super::notify::Broadcast;
use crate::revocation::RevocationVerifier;
use crate::telemetry::metrics::EndpointStats;
use crate::tls::ClientAuth;
use crate::tls::sni_route::Routes;

/// What every connection of every worker needs, shared read-only; the part files and names
/// decide is a `Generation`, replaced whole on reload.
pub(crate) struct Settings {
    /// The configuration new connections use. A connection loads it once, at accept.
    pub current: ArcSwap<Generation>,
    /// Re-check live connections' client chains after a reload (`--reauthorize-on-reload`).
    pub reauthorize: bool,
    /// What kernel TLS takes, when it is to be used (`--ktls` and the start-time probe).
    pub ktls: Option<Offer>,
    /// `--drain-timeout`: also what a removed endpoint's live connections get.
    pub drain_timeout: Duration,
}

/// One loaded configuration: built at start and by each successful reload, never changed.
pub(crate) struct Generation {
    /// 1 at start, +1 per successful reload.
    pub id: u64,
    /// Per listener, in the order of the listen addresses: its endpoints by server name.
    pub listeners: Vec<Routes<Arc<Endpoint>>>,
    /// Every endpoint by name: where a live connection finds its endpoint after a reload.
    pub by_name: HashMap<Arc<str>, Arc<Endpoint>>,
    /// How long a ClientHello may take to arrive whole, where it is read to choose the
    /// endpoint: the shortest handshake timeout of any endpoint.
    pub hello_timeout: Duration,
    /// Per listener: whose PROXY header its connections start with (`accept_proxy`), if any.
    pub accept_proxy: Vec<Option<Arc<AcceptProxy>>>,
}

impl Generation {
    /// The endpoints of `listener` (an index the runtime got from the same listen list).
    pub(crate) fn routes(&self, listener: usize) -> Option<&Routes<Arc<Endpoint>>> {
        self.listeners.get(listener)
    }

    /// The PROXY-header sources of `listener`, when its connections start with one.
    pub(crate) fn accept_proxy(&self, listener: usize) -> Option<&Arc<AcceptProxy>> {
        self.accept_proxy.get(listener).and_then(Option::as_ref)
    }
}

/// One endpoint as loaded.
pub(crate) struct Endpoint {
    /// Its `name`: the `endpoint` label of its events.
    pub name: Arc<str>,
    pub serve: Serve,
    pub upstream: Vec<connect::UpstreamAddr>,
    /// Send a PROXY protocol v2 header to the upstream before any client byte.
    pub proxy_protocol: bool,
    pub timeouts: Timeouts,
    /// Its counters (`endpoint` label), which outlive this generation.
    pub stats: Arc<EndpointStats>,
}

/// What an endpoint does with the TLS it accepts.
pub(crate) enum Serve {
    /// The handshake happens here, with this configuration.
    Terminate {
        tls: Arc<ServerConfig>,
        /// The verifier inside `tls`, to re-check the client chain of a resumed session (and
        /// of live connections after a reload).
        verifier: Arc<dyn ClientCertVerifier>,
        /// What that verifier asks of client certificates.
        client_auth: ClientAuth,
        /// `--ocsp soft|hard`: the OCSP part of that verifier, which a connection without an
        /// answer yet waits on after its handshake.
        ocsp: Option<Arc<RevocationVerifier>>,
    },
    /// The TLS bytes go to the upstream untouched.
    Passthrough,
}

/// `--handshake-timeout`, `--connect-timeout`, `--idle-timeout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub handshake: Duration,
    pub connect: Duration,
    pub idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts {
            handshake: Duration::from_secs(10),
            connect: Duration::from_secs(5),
            idle: Duration::from_secs(300),
        }
    }
}

/// A worker's signals to its connections.
#[derive(Clone, Copy)]
pub(crate) struct WorkerSignals {
    /// A reload happened.
    pub trust_changed: &'static Broadcast,
    /// The guards' clock (`guard::ticker`).
    pub tick: &'static Broadcast,
    /// An OCSP answer arrived (`revocation::fetcher`): connections waiting on one look again.
    pub ocsp: &'static Broadcast,
}
