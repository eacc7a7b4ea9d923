//! The control plane of a `serve` process: what happens between connections. SIGHUP (and, with
//! `--watch`, a changed file) reloads the configuration; SIGTERM/SIGINT drains and exits.
//!
//! A reload validates the new files exactly as at start and, only if all of them are good,
//! swaps the shared `Generation` atomically (one `ArcSwap` store): each worker's next handshake
//! uses the new one, established connections keep theirs. A bad file is logged and the old
//! configuration goes on serving. Every new generation has new session-ticket keys, so a
//! ticket issued under the old trust store is never honoured after a trust change.
//!
//! Reloads are serialised by one mutex; nothing here runs on a worker.

pub(crate) mod generation;
pub(crate) mod watch;

use crate::cause::Chain;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::ServeConfig;
use crate::error::Error;
use crate::proxy::Settings;
use crate::revocation::fetcher;
use crate::runtime::Server;
use crate::sys::signals::{Signal, Signals};
use crate::telemetry::log::Event;
use crate::telemetry::metrics::{ControlStats, ReloadResult};
use crate::tls::TlsMaterial;
use crate::tls::crl::{CrlInfo, StaleCrl};
use generation::Fingerprint;

/// How long the workers get to confirm their listeners are closed.
const STOP_ACCEPTING_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the control thread checks that every worker is still running.
const WORKER_CHECK: Duration = Duration::from_secs(1);
/// How often the drain looks at the connection count (and for a second signal).
const DRAIN_POLL: Duration = Duration::from_millis(50);

/// What started a reload.
#[derive(Debug, Clone, Copy)]
pub enum Cause {
    Signal,
    Watch,
    /// A CRL fetched from a distribution point changed (`--crl-fetch`).
    CrlFetch,
}

impl Cause {
    fn as_str(self) -> &'static str {
        match self {
            Cause::Signal => "sighup",
            Cause::Watch => "watch",
            Cause::CrlFetch => "crl_fetch",
        }
    }
}

/// The running server and what it needs to reload and drain.
pub struct Control {
    server: Server,
    settings: Arc<Settings>,
    config: ServeConfig,
    stats: &'static ControlStats,
    /// The fingerprint of the generation in force; holding the lock is what serialises reloads.
    in_force: Mutex<Fingerprint>,
    /// The generation's CRLs not yet past their nextUpdate: each is logged once when it is.
    fresh_crls: Mutex<Vec<FreshCrl>>,
    /// The version of the fetched CRLs last reloaded for (`--crl-fetch`).
    fetched_crls: AtomicU64,
}

/// A CRL to watch for staleness.
pub(crate) struct FreshCrl {
    endpoint: String,
    info: CrlInfo,
    policy: StaleCrl,
}

/// The CRLs of `materials` with a nextUpdate still ahead.
pub(crate) fn fresh_crls(materials: &[(String, TlsMaterial)]) -> Vec<FreshCrl> {
    let now = crate::tls::x509::now_unix();
    let crls = materials.iter().flat_map(|(endpoint, m)| {
        let fresh = m
            .crls
            .infos
            .iter()
            .filter(move |c| c.next_update.is_some() && !c.stale_at(now));
        fresh.map(move |c| FreshCrl {
            endpoint: endpoint.clone(),
            info: c.clone(),
            policy: m.stale_crl,
        })
    });
    crls.collect()
}

impl Control {
    pub(crate) fn new(
        server: Server,
        settings: Arc<Settings>,
        config: ServeConfig,
        stats: &'static ControlStats,
        (fingerprint, fresh): (Fingerprint, Vec<FreshCrl>),
    ) -> Control {
        Control {
            server,
            settings,
            config,
            stats,
            in_force: Mutex::new(fingerprint),
            fresh_crls: Mutex::new(fresh),
            fetched_crls: AtomicU64::new(fetcher::service().crls.version()),
        }
    }

    /// Logs each watched CRL that has gone past its nextUpdate, once.
    fn warn_stale_crls(&self) {
        let now = crate::tls::x509::now_unix();
        let mut fresh = self.fresh_crls.lock().unwrap_or_else(|p| p.into_inner());
        fresh.retain(|c| {
            if !c.info.stale_at(now) {
                return true;
            }
            crate::crl_stale_event(&c.endpoint, &c.info, c.policy).emit();
            false
        });
    }

    /// Reloads once for each change of the fetched CRLs (`--crl-fetch`): the new verifiers
    /// carry them, and with `--reauthorize-on-reload` live connections are re-checked. A
    /// reload that fails is not retried until they change again.
    fn apply_fetched_crls(&self) {
        let version = fetcher::service().crls.version();
        if self.fetched_crls.swap(version, Ordering::Relaxed) != version {
            self.reload(Cause::CrlFetch);
        }
    }

    pub fn server(&self) -> &Server {
        &self.server
    }

    /// Every bound address, in `--listen` order.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        self.server.local_addrs()
    }

    /// Re-reads every file and re-resolves the upstream; swaps the configuration if anything
    /// changed and all of it is valid.
    pub fn reload(&self, cause: Cause) -> ReloadResult {
        // A poisoned lock only means another reload panicked; the fingerprint is still usable.
        let mut in_force = self.in_force.lock().unwrap_or_else(|p| p.into_inner());
        let (result, event) = self.try_reload(cause, &mut in_force);
        // Counted before it is logged: whoever sees the line sees the count.
        self.stats.count_reload(result);
        event.emit();
        if result == ReloadResult::Ok {
            self.server.announce_reload();
        }
        result
    }

    /// Does the reload; returns its result and the event that tells it.
    fn try_reload(&self, cause: Cause, in_force: &mut Fingerprint) -> (ReloadResult, Event) {
        let failed = |e: &Error| {
            let event = Event::error("reload.failed")
                .word("cause", cause.as_str())
                .num("generation", self.settings.current.load().id)
                .text("error", &Chain(e).to_string())
                .text("message", "keeping the configuration in force");
            (ReloadResult::Failed, event)
        };
        // The file is read again, and every name resolved again: addresses may have moved.
        let endpoints = match self.config.reread() {
            Ok(e) => e,
            Err(e) => return failed(&e),
        };
        let fingerprint = generation::fingerprint(&self.config, &endpoints);
        if fingerprint == *in_force {
            let event = Event::info("reload.unchanged")
                .word("cause", cause.as_str())
                .num("generation", self.settings.current.load().id);
            return (ReloadResult::Unchanged, event);
        }
        let id = self.settings.current.load().id + 1;
        let shape = generation::Shape {
            listeners: self.server.local_addrs().len(),
            workers: self.server.stats().len(),
            extract_secrets: self.settings.ktls.is_some(),
            from_file: self.config.file.is_some(),
            stats: self.stats,
        };
        let built = match generation::build(&endpoints, shape, id) {
            Ok(b) => b,
            Err(e) => return failed(&e),
        };
        for (name, material) in &built.materials {
            crate::log_trust_warnings(name, material);
        }
        let mut event = Event::info("reload.ok")
            .word("cause", cause.as_str())
            .num("generation", id)
            .num("endpoints", endpoints.len() as u64)
            .num("cas", built.cas() as u64)
            .num("crls", built.crls() as u64)
            .word("ca_names", built.ca_names_verdict());
        // One endpoint's addresses, as resolved now; a file's many would make a line per
        // reload of any length.
        if let [only] = endpoints.as_slice() {
            let addrs: Vec<String> = only.upstream_addrs.iter().map(|a| a.to_string()).collect();
            event = event.word("upstream", addrs.join(","));
        }
        let event = event.num("reauthorize", u64::from(self.settings.reauthorize));
        self.settings.current.store(Arc::new(built.generation));
        *in_force = fingerprint;
        self.stats
            .set_generation(id, built.expiries, built.crls.clone());
        *self.fresh_crls.lock().unwrap_or_else(|p| p.into_inner()) = fresh_crls(&built.materials);
        (ReloadResult::Ok, event)
    }

    /// Serves until SIGTERM or SIGINT, reloading on SIGHUP (and on file changes with
    /// `--watch`), then drains. `signals` must have been blocked before any thread started.
    pub fn run(self: Arc<Self>, signals: &Signals) -> Result<(), Error> {
        if self.config.watch {
            watch::spawn(Arc::clone(&self))?;
        }
        loop {
            match signals.wait(Some(WORKER_CHECK)) {
                Some(Signal::Hangup) => {
                    self.reload(Cause::Signal);
                }
                Some(signal @ (Signal::Terminate | Signal::Interrupt)) => {
                    self.drain(signal, signals);
                    return Ok(());
                }
                None => {
                    self.warn_stale_crls();
                    self.apply_fetched_crls();
                    if let Some(worker) = self.server.stopped_worker() {
                        return Err(Error::Runtime(format!(
                            "worker {worker} stopped unexpectedly; exiting rather than serving on fewer workers"
                        )));
                    }
                }
            }
        }
    }

    /// Reports not ready, keeps accepting for `--drain-delay`, stops accepting, lets
    /// established connections finish for `--drain-timeout`, and returns (the process then
    /// exits, closing whatever is left). A second SIGTERM or SIGINT returns at once.
    ///
    /// The delay is for balancers: their health check sees `/readyz` 503 and stops sending
    /// before the listeners close, since a connection still in a listener's queue when it
    /// closes is reset.
    fn drain(&self, signal: Signal, signals: &Signals) {
        self.stats.set_draining();
        let started = Instant::now();
        Event::info("drain.start")
            .word("signal", signal.name())
            .num("active", self.server.active_connections())
            .num("delay_ms", self.config.drain_delay.as_millis())
            .num("timeout_ms", self.config.drain_timeout.as_millis())
            .emit();
        let accepting_until = started + self.config.drain_delay;
        while let Some(left) = time_left(accepting_until) {
            if !self.wait_draining(signals, left, started) {
                return;
            }
        }
        let deadline = Instant::now() + self.config.drain_timeout;
        match self.server.stop_accepting(STOP_ACCEPTING_TIMEOUT) {
            Ok(()) => Event::info("drain.listeners_closed")
                .num("active", self.server.active_connections())
                .emit(),
            Err(e) => Event::error("drain.listeners_closed")
                .text("error", &e.to_string())
                .emit(),
        }
        loop {
            let active = self.server.active_connections();
            let ms = started.elapsed().as_millis();
            if active == 0 {
                Event::info("drain.done").num("ms", ms).emit();
                return;
            }
            let Some(left) = time_left(deadline) else {
                Event::warn("drain.timeout")
                    .num("closing", active)
                    .num("ms", ms)
                    .emit();
                return;
            };
            if !self.wait_draining(signals, left.min(DRAIN_POLL), started) {
                return;
            }
        }
    }

    /// Waits up to `timeout` for a signal while draining: SIGHUP still reloads; a second
    /// SIGTERM or SIGINT abandons the drain (`false`).
    fn wait_draining(&self, signals: &Signals, timeout: Duration, started: Instant) -> bool {
        match signals.wait(Some(timeout)) {
            Some(second @ (Signal::Terminate | Signal::Interrupt)) => {
                Event::warn("drain.abandoned")
                    .word("signal", second.name())
                    .num("closing", self.server.active_connections())
                    .num("ms", started.elapsed().as_millis())
                    .emit();
                false
            }
            Some(Signal::Hangup) => {
                self.reload(Cause::Signal);
                true
            }
            None => true,
        }
    }
}

/// What is left until `deadline`; `None` once it has passed.
fn time_left(deadline: Instant) -> Option<Duration> {
    Some(deadline.saturating_duration_since(Instant::now())).filter(|d| !d.is_zero())
}

/// `sent`, `omitted` or `none` (no trust store): whether this generation's CertificateRequest
/// carries the CA names (the `tls.ca_names` event before it says why).
pub(crate) fn ca_names_verdict(material: &crate::tls::TlsMaterial) -> &'static str {
    material.ca_names.map_or("none", |d| d.verdict())
}
