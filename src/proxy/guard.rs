//! What ends an established connection from outside its byte streams: no bytes for
//! `--idle-timeout`, its client certificate's notAfter passing (short-lived certificates as
//! revocation), a reload that removed its endpoint (after `--drain-timeout`, as a drain gives),
//! and, with `--reauthorize-on-reload`, a reload after which its client chain no longer
//! verifies.
//!
//! One future per connection, raced against the relay. It owns no timer: the worker's ticker
//! (`ticker`) advances a `Broadcast` every quarter of the shortest idle timeout, and each guard
//! holds a slot in it and one in the worker's reload `Broadcast`, reading the clock only on a
//! tick. A timer of its own would cost each idle connection about a kilobyte
//! and a half (see `timer`); a slot costs 16 bytes. Only a certificate expiring before the next
//! tick gets a timer of its own, on the heap, so that expiry fires on time.

use std::cell::RefCell;
use std::time::{Duration, Instant};

use rustls::ServerConnection;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::ClientCertVerifier;

use super::notify::Broadcast;
use super::settings::{Serve, Settings};
use super::timer;
use crate::outcome::{Counters, Stop};

/// What the guard watches for one connection.
pub(crate) struct Guard<'a> {
    pub idle: Duration,
    /// The worker's ticker (`ticker`, with a period of `tick_period(idle)`).
    pub tick: &'a Broadcast,
    /// When the client certificate stops being valid.
    pub expires: Option<Instant>,
    /// What a reload means for this connection.
    pub reload: Reload<'a>,
}

/// Where a guard learns of reloads and what it checks after one.
pub(crate) struct Reload<'a> {
    /// The worker's "configuration changed" signal.
    pub changed: &'a Broadcast,
    /// Where the new configuration is read.
    pub settings: &'a Settings,
    /// The connection's endpoint, by name: a generation without it has removed it (the
    /// connection then gets `--drain-timeout` to finish), and with it gives the verifier.
    pub endpoint: &'a str,
    /// Re-check the client's chain (`--reauthorize-on-reload`, and a certificate was shown).
    pub reauthorize: bool,
}

/// Where the client's chain is kept: in the rustls connection on the user-space path, copied
/// out before the hand-off on the kernel-TLS path.
pub(crate) trait PeerChain {
    /// Verifies the chain (if the client presented one) with `verifier`.
    fn verify_with(&self, verifier: &dyn ClientCertVerifier) -> Result<(), rustls::Error>;
}

impl PeerChain for RefCell<Box<ServerConnection>> {
    fn verify_with(&self, verifier: &dyn ClientCertVerifier) -> Result<(), rustls::Error> {
        verify_chain(self.borrow().peer_certificates(), verifier)
    }
}

impl PeerChain for Vec<CertificateDer<'static>> {
    fn verify_with(&self, verifier: &dyn ClientCertVerifier) -> Result<(), rustls::Error> {
        verify_chain(Some(self), verifier)
    }
}

/// Verifies a client chain (leaf first) as a handshake would, now; no chain passes.
pub(super) fn verify_chain(
    chain: Option<&[CertificateDer<'_>]>,
    verifier: &dyn ClientCertVerifier,
) -> Result<(), rustls::Error> {
    match chain {
        Some([leaf, intermediates @ ..]) => verifier
            .verify_client_cert(leaf, intermediates, UnixTime::now())
            .map(|_| ()),
        _ => Ok(()),
    }
}

impl Guard<'_> {
    /// Resolves with the reason the connection must end.
    pub(crate) async fn watch(&self, chain: &dyn PeerChain, counters: &Counters) -> Stop {
        let reloads = async {
            let Reload {
                changed,
                settings,
                endpoint,
                reauthorize,
            } = self.reload;
            loop {
                changed.changed().await;
                let generation = settings.current.load();
                match generation.by_name.get(endpoint).map(|e| &e.serve) {
                    // Removed: the drain rules, as for SIGTERM. (A timer of its own, on the
                    // heap, only for the connections of a removed endpoint.)
                    None => {
                        drop(generation);
                        timer::sleep(settings.drain_timeout).await;
                        return Stop::EndpointRemoved;
                    }
                    Some(Serve::Terminate { verifier, .. }) if reauthorize => {
                        if let Err(e) = chain.verify_with(verifier.as_ref()) {
                            return Stop::Reauthorization(e);
                        }
                    }
                    // Changed in place, or now passed through: live connections keep what
                    // they were admitted under, as a reload's old generation does.
                    Some(_) => {}
                }
            }
        };
        monoio::select! {
            e = reloads => e,
            e = self.watch_clock(counters) => e,
        }
    }

    /// Idle timeout and expiry. The idle check samples a counter on each tick rather than
    /// reading the clock on every read: one quiet tick more than `idle` holds (the first one
    /// may be partial) makes at least `idle` without a byte, and at most a tick more (1.25 ×
    /// `idle` from 40 ms up). The expiry fires on time.
    async fn watch_clock(&self, counters: &Counters) -> Stop {
        let step = tick_period(self.idle);
        let ticks_per_idle =
            u32::try_from(self.idle.as_nanos().div_ceil(step.as_nanos())).unwrap_or(u32::MAX);
        let mut seen = counters.activity();
        let mut quiet_ticks = 0u32;
        loop {
            if let Some(at) = self.expires {
                let left = at.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Stop::CertExpired;
                }
                if left < step {
                    timer::sleep(left).await;
                    return Stop::CertExpired;
                }
            }
            self.tick.changed().await;
            let now = counters.activity();
            if now != seen {
                seen = now;
                quiet_ticks = 0;
            } else {
                quiet_ticks += 1;
                if quiet_ticks > ticks_per_idle {
                    return Stop::Idle;
                }
            }
        }
    }
}

/// Ticks per `--idle-timeout`.
const TICKS_PER_IDLE: u32 = 4;

/// How often the worker's ticker ticks for this idle timeout.
pub(crate) fn tick_period(idle: Duration) -> Duration {
    (idle / TICKS_PER_IDLE).max(Duration::from_millis(10))
}

/// A worker's ticker: advances `tick` every `tick_period(idle)`, for every guard of the worker.
/// Runs forever.
pub(crate) async fn ticker(tick: &'static Broadcast, idle: Duration) {
    let period = tick_period(idle);
    loop {
        monoio::time::sleep(period).await;
        tick.advance();
    }
}

/// The `Instant` at Unix time `not_after` (seconds), or `None` if it is too far off to matter.
pub(crate) fn deadline(not_after: i64) -> Option<Instant> {
    let now = crate::tls::x509::now_unix();
    // RFC 5280 §4.1.2.5: the certificate is valid through notAfter, inclusive.
    let left = not_after.saturating_add(1).saturating_sub(now).max(0);
    Instant::now().checked_add(Duration::from_secs(u64::try_from(left).ok()?))
}
