//! Revocation checks beyond `--crl` files: OCSP for client certificates (`--ocsp`) and CRLs
//! from distribution points (`--crl-fetch`).
//!
//! Nothing here puts network I/O on a worker. The pieces, each doing one thing:
//! - `ocsp`: the request for one certificate and the full check of a responder's answer (pure);
//! - `http`: the one HTTP exchange the fetcher makes (hyper's client, a deadline, a size cap);
//! - `fetcher`: the thread that makes them, off the workers, and tells the workers when an
//!   answer arrives (a byte on each worker's control socket, as the controller's commands);
//! - `crl_fetch`: the distribution points to fetch and their last good CRLs, which a reload
//!   hands to the verifiers;
//! - `cache`: the answers every worker reads, per (issuer key hash, serial), until their
//!   nextUpdate (capped by `--ocsp-max-age`), refreshed ahead of expiry while still in use;
//! - `verifier`: the `ClientCertVerifier` wrapper that consults the cache during the
//!   handshake (`decide`), which `proxy::ocsp_gate` asks again after it when the cache had no
//!   answer yet, waiting for the fetcher.

pub(crate) mod cache;
pub(crate) mod crl_fetch;
pub(crate) mod fetcher;
pub(crate) mod http;
pub(crate) mod ocsp;
pub(crate) mod verifier;

use std::time::Duration;

pub(crate) use cache::Lease;
pub(crate) use verifier::RevocationVerifier;

/// `--ocsp`: what the OCSP status of a client certificate decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OcspMode {
    /// Not asked (the default).
    #[default]
    Off,
    /// Asked; only a valid "revoked" answer refuses.
    Soft,
    /// Asked; anything but a valid "good" answer refuses.
    Hard,
}

impl OcspMode {
    pub fn parse(s: &str) -> Option<OcspMode> {
        match s {
            "off" => Some(OcspMode::Off),
            "soft" => Some(OcspMode::Soft),
            "hard" => Some(OcspMode::Hard),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            OcspMode::Off => "off",
            OcspMode::Soft => "soft",
            OcspMode::Hard => "hard",
        }
    }
}

/// One endpoint's `--ocsp*` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OcspSettings {
    pub mode: OcspMode,
    /// `--ocsp-responder`: asked instead of the one the certificate names (AIA).
    pub responder: Option<String>,
    /// `--ocsp-timeout`: how long one request may take, connect to last byte.
    pub timeout: Duration,
    /// `--ocsp-max-age`: no answer is used longer than this after it was fetched, whatever its
    /// nextUpdate says.
    pub max_age: Duration,
}

impl Default for OcspSettings {
    fn default() -> OcspSettings {
        OcspSettings {
            mode: OcspMode::Off,
            responder: None,
            timeout: Duration::from_secs(3),
            max_age: Duration::from_secs(3600),
        }
    }
}
