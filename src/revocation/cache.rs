//! The OCSP answers every worker reads, one entry per (issuer key hash, serial), shared by all
//! endpoints and kept across reloads (an answer depends on the certificate and its issuer
//! only). Workers take the read lock for a lookup; the fetcher takes the write lock to store an
//! answer, a worker to add a certificate it has not seen.
//!
//! An entry is used until `until`: the answer's nextUpdate, capped by `--ocsp-max-age` from
//! when it was fetched; a failed fetch is remembered for `RETRY` (capped the same way), so a
//! responder that is down is not asked again by every handshake. An entry that live
//! connections hold (`Lease`), or that a handshake used since it was fetched, is fetched again
//! ahead of its end (`due`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use super::ocsp::{CertKey, Query, Status};
use crate::telemetry::metrics::OCSP_CACHE_ENTRIES;

/// How long a failed fetch stands before the next handshake asks again (seconds).
const RETRY: i64 = 5;
/// Entries kept before those nobody holds and past their end are dropped.
const CAPACITY: usize = 100_000;

/// What the cache knows about one certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// A valid answer said this.
    Answered(Status),
    /// No valid answer: why.
    Failed(Failure),
}

/// A fetch that gave no valid answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    pub result: FailedAs,
    pub detail: Arc<str>,
}

/// The `result` label of a fetch without a valid answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FailedAs {
    /// No TCP connection, or an HTTP error.
    Unreachable,
    /// No whole answer within `--ocsp-timeout`.
    Timeout,
    /// An answer that does not count (`ocsp::Invalid`).
    Invalid,
}

impl FailedAs {
    /// The `result` label.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            FailedAs::Unreachable => "unreachable",
            FailedAs::Timeout => "timeout",
            FailedAs::Invalid => "invalid",
        }
    }

    /// The events' `revocation=` value for an OCSP fetch that failed so.
    pub(crate) fn ocsp_revocation(self) -> &'static str {
        match self {
            FailedAs::Unreachable => "ocsp:unreachable",
            FailedAs::Timeout => "ocsp:timeout",
            FailedAs::Invalid => "ocsp:invalid",
        }
    }
}

/// What a fetch is asked with: the endpoint's `--ocsp-timeout` and `--ocsp-max-age`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub timeout: Duration,
    pub max_age: Duration,
}

struct Entry {
    query: Arc<Query>,
    limits: Limits,
    /// `None` until the first fetch ends.
    verdict: Option<Verdict>,
    /// Unix seconds: the verdict is not used after this.
    until: i64,
    fetched_at: i64,
    /// A fetch is out for it.
    in_flight: bool,
    /// Live connections admitted on it.
    leases: AtomicUsize,
    /// A handshake looked it up since the last fetch.
    used: AtomicBool,
}

/// See the module documentation.
#[derive(Default)]
pub(crate) struct Cache {
    entries: RwLock<HashMap<CertKey, Entry>>,
}

impl Cache {
    /// The verdict on `key` if there is a current one.
    pub(crate) fn lookup(&self, key: &CertKey, now: i64) -> Option<Verdict> {
        let entries = self.entries.read().ok()?;
        let entry = entries.get(key)?;
        entry.used.store(true, Ordering::Relaxed);
        entry
            .verdict
            .as_ref()
            .filter(|_| now <= entry.until)
            .cloned()
    }

    /// Adds `query`'s certificate if it is new; true when a fetch must go out for it (none is
    /// out, and there is no current verdict).
    pub(crate) fn want(&self, query: &Arc<Query>, limits: Limits, now: i64) -> bool {
        let Ok(mut entries) = self.entries.write() else {
            return false;
        };
        if let Some(entry) = entries.get_mut(&query.key) {
            let current = entry.verdict.is_some() && now <= entry.until;
            if current || entry.in_flight {
                return false;
            }
            entry.in_flight = true;
            return true;
        }
        if entries.len() >= CAPACITY {
            entries.retain(|_, e| e.leases.load(Ordering::Relaxed) > 0 || now <= e.until);
        }
        entries.insert(
            query.key.clone(),
            Entry {
                query: Arc::clone(query),
                limits,
                verdict: None,
                until: 0,
                fetched_at: now,
                in_flight: true,
                leases: AtomicUsize::new(0),
                used: AtomicBool::new(true),
            },
        );
        OCSP_CACHE_ENTRIES.set(entries.len() as u64);
        true
    }

    /// Stores the outcome of a fetch for `key` made at `now`; `next_update` is the answer's,
    /// when it gave one. Returns the verdict it replaces.
    pub(crate) fn store(
        &self,
        key: &CertKey,
        verdict: Verdict,
        next_update: Option<i64>,
        now: i64,
    ) -> Option<Verdict> {
        let mut entries = self.entries.write().ok()?;
        let entry = entries.get_mut(key)?;
        let max_age = i64::try_from(entry.limits.max_age.as_secs()).unwrap_or(i64::MAX);
        let lifetime = match verdict {
            Verdict::Answered(_) => next_update.map_or(max_age, |n| n.saturating_sub(now)),
            Verdict::Failed(_) => RETRY,
        };
        // At least a second, so an answer whose nextUpdate passed within the skew allowance
        // still decides the handshakes waiting for it.
        entry.until = now.saturating_add(lifetime.min(max_age).max(1));
        entry.fetched_at = now;
        entry.in_flight = false;
        entry.used.store(false, Ordering::Relaxed);
        entry.verdict.replace(verdict)
    }

    /// The certificates to fetch again now: those in use whose verdict ends within a fifth of
    /// its lifetime (at least a second, at most five minutes) and that no fetch is out for.
    /// Each is marked as fetched.
    pub(crate) fn due(&self, now: i64) -> Vec<(Arc<Query>, Limits)> {
        let Ok(mut entries) = self.entries.write() else {
            return Vec::new();
        };
        let mut due = Vec::new();
        for entry in entries.values_mut() {
            let in_use =
                entry.leases.load(Ordering::Relaxed) > 0 || entry.used.load(Ordering::Relaxed);
            let lead = ((entry.until - entry.fetched_at) / 5).clamp(1, 300);
            if entry.in_flight || entry.verdict.is_none() || !in_use || entry.until - now > lead {
                continue;
            }
            entry.in_flight = true;
            due.push((Arc::clone(&entry.query), entry.limits));
        }
        due
    }

    /// Marks `query`'s certificate as held by a live connection until the lease is dropped.
    /// The process's cache lives as long as the process: the lease borrows it, and holds the
    /// question it already shares, so taking one allocates nothing.
    pub(crate) fn lease(&'static self, query: &Arc<Query>) -> Option<Lease> {
        let entries = self.entries.read().ok()?;
        entries
            .get(&query.key)?
            .leases
            .fetch_add(1, Ordering::Relaxed);
        Some(Lease {
            cache: self,
            query: Arc::clone(query),
        })
    }

    /// How many certificates it holds.
    pub(crate) fn len(&self) -> usize {
        self.entries.read().map_or(0, |e| e.len())
    }
}

/// A live connection's hold on its certificate's entry: while it lasts, the entry is fetched
/// again ahead of its end, so a revocation reaches the connection (`--reauthorize-on-reload`).
pub(crate) struct Lease {
    cache: &'static Cache,
    query: Arc<Query>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Ok(entries) = self.cache.entries.read()
            && let Some(entry) = entries.get(&self.query.key)
        {
            entry.leases.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(serial: u8) -> Arc<Query> {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = params.self_signed(&key).expect("ca");
        let issuer = super::super::ocsp::Issuer::new(ca.der().clone()).expect("issuer");
        let url = "http://127.0.0.1:1/".to_owned();
        Arc::new(Query::new(Arc::new(issuer), &[serial], url).expect("query"))
    }

    const LIMITS: Limits = Limits {
        timeout: Duration::from_secs(3),
        max_age: Duration::from_secs(100),
    };

    #[test]
    fn one_fetch_at_a_time_and_answers_until_their_end() {
        let cache = Cache::default();
        let q = query(1);
        assert!(cache.want(&q, LIMITS, 1000), "a new certificate is fetched");
        assert!(!cache.want(&q, LIMITS, 1000), "not twice while in flight");
        assert_eq!(cache.lookup(&q.key, 1000), None, "no answer yet");
        let good = Verdict::Answered(Status::Good);
        // nextUpdate in 50 s: used until then.
        cache.store(&q.key, good.clone(), Some(1050), 1000);
        assert_eq!(cache.lookup(&q.key, 1050), Some(good.clone()));
        assert_eq!(cache.lookup(&q.key, 1051), None, "past its end");
        assert!(cache.want(&q, LIMITS, 1051), "fetched again once over");
        // nextUpdate far off: --ocsp-max-age caps it.
        cache.store(&q.key, good.clone(), Some(1_000_000), 2000);
        assert_eq!(cache.lookup(&q.key, 2100), Some(good));
        assert_eq!(cache.lookup(&q.key, 2101), None, "capped by max-age");
    }

    #[test]
    fn a_failure_stands_for_a_few_seconds() {
        let cache = Cache::default();
        let q = query(2);
        cache.want(&q, LIMITS, 1000);
        let failed = Verdict::Failed(Failure {
            result: FailedAs::Timeout,
            detail: "slow".into(),
        });
        cache.store(&q.key, failed.clone(), None, 1000);
        assert_eq!(cache.lookup(&q.key, 1000 + RETRY), Some(failed));
        assert_eq!(cache.lookup(&q.key, 1001 + RETRY), None);
    }

    #[test]
    fn only_answers_in_use_are_refreshed_ahead_of_their_end() {
        let cache: &'static Cache = Box::leak(Box::default());
        let (used, idle) = (query(3), query(4));
        for q in [&used, &idle] {
            cache.want(q, LIMITS, 1000);
            cache.store(&q.key, Verdict::Answered(Status::Good), Some(1100), 1000);
        }
        // A fifth of the lifetime (100 s) ahead of its end: from 1080.
        cache.lookup(&used.key, 1010);
        assert!(cache.due(1079).is_empty(), "not yet");
        let due = cache.due(1080);
        assert_eq!(due.len(), 1, "only the one a handshake used");
        assert_eq!(due[0].0.key, used.key);
        assert!(cache.due(1081).is_empty(), "in flight now");
        // A live connection's lease keeps the idle one fresh too.
        let lease = cache.lease(&idle).expect("lease");
        assert_eq!(cache.due(1080).len(), 1);
        drop(lease);
    }
}
