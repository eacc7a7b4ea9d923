//! `--crl-fetch`: CRLs from the HTTP distribution points (cRLDistributionPoints) of the trust
//! store's CAs and of the client certificates seen, fetched by the fetcher thread, never by a
//! worker.
//!
//! - A URL is registered (`want`) with the certificates that may have signed what it serves:
//!   the trust store's CAs for a CA's distribution point, the leaf's issuer for a leaf's.
//! - A fetched CRL counts only if it parses and one of those certificates, with the CRL's
//!   issuer name, made its signature: a tampered or substituted CRL on a plain-HTTP path is
//!   refused (and the last good one kept), never handed to the verifier, where a bad signature
//!   would fail every chain of that CA.
//! - Each URL is fetched again at `--crl-refresh` (default 1h), or sooner so that a fresh CRL
//!   is in hand before the current one's nextUpdate (a fifth of its lifetime ahead); a failed
//!   fetch keeps the last good CRL and is retried at the refresh interval, at most every 10 s.
//! - A CRL whose bytes changed bumps `version`; the control thread then reloads
//!   (`cause=crl_fetch`), which builds verifiers with the new CRLs, and under
//!   `--reauthorize-on-reload` ends the live connections they now refuse.
//!
//! Nothing is fetched until `serve` says so (`Service::fetch_crls`): `check` registers the
//! URLs it would fetch and opens no socket.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer};
use x509_parser::prelude::{FromDer, ParsedExtension, X509Certificate};
use x509_parser::revocation_list::CertificateRevocationList;

use super::cache::FailedAs;
use super::ocsp::{magnitude, signed_by};
use crate::telemetry::log::Event;

/// Distribution points kept; one past it is not fetched (`crl.sources_full`, logged once).
const MAX_SOURCES: usize = 1024;
/// A failed fetch is tried again no sooner than this (seconds), whatever `--crl-refresh` says.
const RETRY_AT_LEAST: i64 = 1;
/// ... and no later than this.
const RETRY_AT_MOST: i64 = 10;

/// A CRL as fetched and validated.
#[derive(Debug)]
pub(crate) struct FetchedCrl {
    pub url: Arc<str>,
    pub der: CertificateRevocationListDer<'static>,
    /// Its issuer, for messages and metrics.
    pub issuer: String,
    /// Its issuer's name, DER.
    pub issuer_der: Vec<u8>,
    /// The serials it lists (magnitude, no leading zeros).
    revoked: HashSet<Box<[u8]>>,
    /// Unix seconds.
    pub next_update: Option<i64>,
}

impl FetchedCrl {
    pub(crate) fn revoked_count(&self) -> usize {
        self.revoked.len()
    }
}

struct Source {
    issuers: Vec<CertificateDer<'static>>,
    refresh: Duration,
    good: Option<Arc<FetchedCrl>>,
    /// Unix seconds.
    next_fetch: i64,
    in_flight: bool,
}

/// The distribution points and their last good CRLs.
#[derive(Default)]
pub(crate) struct CrlStore {
    sources: Mutex<HashMap<Arc<str>, Source>>,
    /// Bumped when a CRL's bytes change.
    version: AtomicU64,
    /// `serve` runs: fetches may go out.
    fetching: AtomicBool,
    /// `MAX_SOURCES` was reached (and logged).
    full: AtomicBool,
}

impl CrlStore {
    /// Registers `url` (an `http://` distribution point; others are ignored) with the
    /// certificates that may sign it, fetched every `refresh` at most. Cheap when known.
    pub(crate) fn want(
        &self,
        url: &str,
        issuers: impl FnOnce() -> Vec<CertificateDer<'static>>,
        refresh: Duration,
    ) {
        if super::http::check_url(url).is_err() {
            return;
        }
        let Ok(mut sources) = self.sources.lock() else {
            return;
        };
        if let Some(source) = sources.get_mut(url) {
            source.refresh = source.refresh.min(refresh);
            return;
        }
        if sources.len() >= MAX_SOURCES {
            if !self.full.swap(true, Ordering::Relaxed) {
                Event::warn("crl.sources_full")
                    .num("limit", MAX_SOURCES as u64)
                    .text("url", url)
                    .text(
                        "message",
                        "this and further distribution points are not fetched",
                    )
                    .emit();
            }
            return;
        }
        sources.insert(
            url.into(),
            Source {
                issuers: issuers(),
                refresh,
                good: None,
                next_fetch: 0,
                in_flight: false,
            },
        );
    }

    /// Every good CRL in hand.
    pub(crate) fn current(&self) -> Vec<Arc<FetchedCrl>> {
        let Ok(sources) = self.sources.lock() else {
            return Vec::new();
        };
        let mut crls: Vec<Arc<FetchedCrl>> =
            sources.values().filter_map(|s| s.good.clone()).collect();
        crls.sort_by(|a, b| a.url.cmp(&b.url));
        crls
    }

    /// Changes whenever a CRL in hand changes.
    pub(crate) fn version(&self) -> u64 {
        self.version.load(Ordering::Relaxed)
    }

    /// Lets fetches go out (`serve`).
    pub(crate) fn start(&self) {
        self.fetching.store(true, Ordering::Relaxed);
    }

    /// The URLs to fetch now (each marked in flight), with the certificates that may sign them.
    pub(crate) fn due(&self, now: i64) -> Vec<(Arc<str>, Vec<CertificateDer<'static>>)> {
        if !self.fetching.load(Ordering::Relaxed) {
            return Vec::new();
        }
        let Ok(mut sources) = self.sources.lock() else {
            return Vec::new();
        };
        let mut due = Vec::new();
        for (url, source) in sources.iter_mut() {
            if source.in_flight || source.next_fetch > now {
                continue;
            }
            source.in_flight = true;
            due.push((Arc::clone(url), source.issuers.clone()));
        }
        due
    }

    /// Stores what a fetch of `url` at `now` gave; true when the CRL in hand changed.
    pub(crate) fn store(&self, url: &str, fetched: Result<FetchedCrl, FailedAs>, now: i64) -> bool {
        let Ok(mut sources) = self.sources.lock() else {
            return false;
        };
        let Some(source) = sources.get_mut(url) else {
            return false;
        };
        source.in_flight = false;
        let refresh = i64::try_from(source.refresh.as_secs())
            .unwrap_or(i64::MAX)
            .max(1);
        match fetched {
            Ok(crl) => {
                // Fetched again before its nextUpdate, a fifth of the way ahead of it.
                let before_stale = crl.next_update.map(|next| {
                    let lifetime = next.saturating_sub(now).max(0);
                    next.saturating_sub((lifetime / 5).max(1))
                });
                let at = now.saturating_add(refresh);
                source.next_fetch = before_stale.map_or(at, |b| b.min(at)).max(now + 1);
                let changed = source.good.as_ref().is_none_or(|g| g.der != crl.der);
                if changed {
                    source.good = Some(Arc::new(crl));
                    self.version.fetch_add(1, Ordering::Relaxed);
                }
                changed
            }
            Err(_) => {
                source.next_fetch =
                    now.saturating_add(refresh.clamp(RETRY_AT_LEAST, RETRY_AT_MOST));
                false
            }
        }
    }

    /// Which CRL refused `leaf` (DER): `crl_fetched` when a fetched CRL of its issuer lists
    /// its serial (or, `listed` false, a stale CRL: when one of its issuer is in hand),
    /// `crl_file` otherwise. Run on refusals only.
    pub(crate) fn source_of(&self, leaf: &[u8], listed: bool) -> &'static str {
        let Ok((_, cert)) = X509Certificate::from_der(leaf) else {
            return "crl_file";
        };
        let issuer = cert.issuer().as_raw();
        let serial = magnitude(cert.tbs_certificate.raw_serial());
        let Ok(sources) = self.sources.lock() else {
            return "crl_file";
        };
        let fetched = sources
            .values()
            .filter_map(|s| s.good.as_ref())
            .filter(|crl| crl.issuer_der == issuer)
            .any(|crl| !listed || crl.revoked.contains(serial));
        if fetched { "crl_fetched" } else { "crl_file" }
    }
}

/// Checks a body fetched from `url`: a CRL (DER, or one PEM `X509 CRL` block) signed by one of
/// `issuers` under its issuer's name.
pub(crate) fn validate(
    url: &Arc<str>,
    body: &[u8],
    issuers: &[CertificateDer<'static>],
) -> Result<FetchedCrl, String> {
    let der = if body.starts_with(b"-----BEGIN") {
        CertificateRevocationListDer::from_pem_slice(body)
            .map_err(|e| format!("not a PEM CRL: {e}"))?
    } else {
        CertificateRevocationListDer::from(body.to_vec())
    };
    let (_, crl) =
        CertificateRevocationList::from_der(der.as_ref()).map_err(|e| format!("not a CRL: {e}"))?;
    let issuer_der = crl.issuer().as_raw().to_vec();
    let signed = issuers.iter().any(|cert| {
        let named = X509Certificate::from_der(cert.as_ref())
            .is_ok_and(|(_, c)| c.subject().as_raw() == issuer_der.as_slice());
        named && signed_by(der.as_ref(), cert)
    });
    if !signed {
        return Err(format!(
            "not signed by a CA known as its issuer ({})",
            crl.issuer()
        ));
    }
    let revoked = crl
        .iter_revoked_certificates()
        .map(|r| magnitude(r.raw_serial()).into())
        .collect();
    Ok(FetchedCrl {
        url: Arc::clone(url),
        issuer: crl.issuer().to_string(),
        issuer_der,
        revoked,
        next_update: crl.next_update().map(|t| t.timestamp()),
        der: CertificateRevocationListDer::from(der.as_ref().to_vec()),
    })
}

/// The HTTP cRLDistributionPoints of a certificate (full names only).
pub(crate) fn distribution_points(cert: &[u8]) -> Vec<String> {
    let Ok((_, cert)) = X509Certificate::from_der(cert) else {
        return Vec::new();
    };
    let mut urls = Vec::new();
    for ext in cert.extensions() {
        let ParsedExtension::CRLDistributionPoints(points) = ext.parsed_extension() else {
            continue;
        };
        for point in points.iter() {
            let Some(x509_parser::extensions::DistributionPointName::FullName(names)) =
                &point.distribution_point
            else {
                continue;
            };
            for name in names {
                if let x509_parser::extensions::GeneralName::URI(uri) = name
                    && uri.starts_with("http://")
                {
                    urls.push((*uri).to_owned());
                }
            }
        }
    }
    urls
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crl(url: &Arc<str>, byte: u8, next_update: Option<i64>) -> FetchedCrl {
        FetchedCrl {
            url: Arc::clone(url),
            der: CertificateRevocationListDer::from(vec![byte]),
            issuer: "CN=ca".into(),
            issuer_der: Vec::new(),
            revoked: HashSet::new(),
            next_update,
        }
    }

    fn next_fetch(store: &CrlStore, url: &str) -> i64 {
        store.sources.lock().expect("lock")[url].next_fetch
    }

    #[test]
    fn refreshes_before_next_update_and_keeps_the_last_good_crl() {
        let store = CrlStore::default();
        let url: Arc<str> = "http://127.0.0.1:1/ca.crl".into();
        store.want(&url, Vec::new, Duration::from_secs(3600));
        assert!(
            store.due(0).is_empty(),
            "nothing goes out before serve starts"
        );
        store.start();
        assert_eq!(store.due(1000).len(), 1, "a new point is fetched at once");
        // nextUpdate in 1,000 s: fetched again 200 s before it, sooner than the hour.
        assert!(store.store(&url, Ok(crl(&url, 1, Some(2000))), 1000), "new");
        assert_eq!(next_fetch(&store, &url), 1800);
        assert_eq!(store.version(), 1);
        // The same bytes again: no change, no new version.
        assert!(!store.store(&url, Ok(crl(&url, 1, None)), 1800));
        assert_eq!(
            next_fetch(&store, &url),
            1800 + 3600,
            "no nextUpdate: the refresh"
        );
        assert_eq!(store.version(), 1);
        // A failure keeps the CRL and retries within 10 s.
        assert!(!store.store(&url, Err(FailedAs::Unreachable), 5400));
        assert_eq!(next_fetch(&store, &url), 5410);
        assert_eq!(store.current().len(), 1, "the last good CRL stays");
        assert!(store.store(&url, Ok(crl(&url, 2, None)), 5410), "changed");
        assert_eq!(store.version(), 2);
    }

    #[test]
    fn ignores_what_it_cannot_fetch() {
        let store = CrlStore::default();
        store.want(
            "ldap://ldap.example/cn=ca",
            Vec::new,
            Duration::from_secs(1),
        );
        store.want(
            "https://ca.example/ca.crl",
            Vec::new,
            Duration::from_secs(1),
        );
        store.start();
        assert!(store.due(0).is_empty());
    }
}
