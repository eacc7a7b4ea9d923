//! What every connection of every worker shares, read-only: the settings fixed at start and
//! the configuration generation that files and names decide, replaced whole on reload.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::ServerConfig;
use rustls::server::danger::ClientCertVerifier;

use super::connect;
use super::ktls_offer::Offer;
use super::notify::Broadcast;

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
    pub ktls: Option<Offer>,
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
pub(crate) struct WorkerSignals {
    /// A reload happened.
    pub trust_changed: &'static Broadcast,
    /// The guards' clock (`guard::ticker`).
    pub tick: &'static Broadcast,
}
