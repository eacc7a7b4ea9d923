//! Revocation in the handshake: a `ClientCertVerifier` around the chain verifier. Under
//! `--crl-fetch` it registers the distribution points of each leaf it sees first (`crl_fetch`);
//! under `--ocsp soft|hard`, once the chain has passed, it reads the leaf's status from the
//! answer cache. It never waits:
//! - a cached `revoked` refuses with alert certificate_revoked (44), in either mode;
//! - under `hard`, a cached `unknown` or failed fetch, or a certificate no responder can be
//!   asked about, refuses with certificate_unknown (46) (`reason=ocsp_unavailable`; rustls
//!   would send unknown_ca for its own `UnknownRevocationStatus`, which names the wrong fault);
//! - no answer yet: the fetcher is asked and the handshake goes on; the connection then waits
//!   for the answer before anything reaches the upstream (`decide`, from `proxy::ocsp_gate`).
//!
//! The issuer OCSP names is the certificate whose key made the leaf's signature: among the
//! intermediates the client sent and the trust store's CAs with the leaf's issuer name, the one
//! the signature verifies with. A look-alike intermediate with the same name cannot steer the
//! question to a key of its own. What a worker worked out for a leaf is kept per worker
//! (`QUESTIONS`), keyed by the leaf's SHA-256: the cost on a handshake with a cached answer is
//! one digest and two hash lookups.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, Error, OtherError};

use super::cache::{Lease, Limits, Verdict};
use super::crl_fetch;
use super::fetcher::service;
use super::ocsp::{self, Issuer, Leaf, Query, Status};
use super::{OcspMode, OcspSettings};
use crate::tls::x509::now_unix;

/// Questions a worker keeps before it starts over.
const CAPACITY: usize = 4096;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// (Verifier id, leaf SHA-256) → its question, or why there is none. Keyed by verifier too,
/// so the endpoints of one worker do not evict each other's.
type Questions = HashMap<(u64, [u8; 32]), Result<Arc<Query>, Arc<str>>>;

thread_local! {
    /// The questions of this worker's verifiers.
    static QUESTIONS: RefCell<Questions> = RefCell::new(HashMap::new());
}

/// What the OCSP status of an admitted chain decides, after the handshake.
pub(crate) enum Decision {
    /// Let it through; `revocation` is what the events say (`ocsp:good`, or under `soft` why
    /// no answer counted).
    Admit {
        revocation: &'static str,
        /// The question whose good answer admitted it: what a live connection leases.
        query: Option<Arc<Query>>,
    },
    /// Turn it away: `revoked` (true) or no answer that counts under `hard`; `revocation`
    /// as in `Admit`.
    Refuse {
        revoked: bool,
        revocation: &'static str,
        detail: String,
    },
    /// No answer yet: wait for the fetcher.
    Wait,
}

/// `--ocsp hard` without an answer that counts: why (`reason=ocsp_unavailable`).
#[derive(Debug)]
pub(crate) struct Unavailable(pub String);

impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Unavailable {}

/// See the module documentation.
pub(crate) struct RevocationVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    /// `--crl-fetch`: the leaves' distribution points are registered, at this refresh.
    crl_refresh: Option<Duration>,
    mode: OcspMode,
    responder: Option<String>,
    limits: Limits,
    /// The trust store's CAs by subject (DER).
    anchors: HashMap<Vec<u8>, Vec<Arc<Issuer>>>,
    id: u64,
}

impl std::fmt::Debug for RevocationVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RevocationVerifier")
            .field("mode", &self.mode)
            .field("responder", &self.responder)
            .finish()
    }
}

impl RevocationVerifier {
    /// Wraps `inner` (the chain verifier); `anchors` are the trust store's CAs.
    pub(crate) fn new(
        inner: Arc<dyn ClientCertVerifier>,
        (settings, crl_refresh): (&OcspSettings, Option<Duration>),
        anchors: &[CertificateDer<'static>],
    ) -> Arc<RevocationVerifier> {
        let mut by_subject: HashMap<Vec<u8>, Vec<Arc<Issuer>>> = HashMap::new();
        for der in anchors {
            if let Some(issuer) = Issuer::new(der.clone()) {
                by_subject
                    .entry(issuer.subject_der.clone())
                    .or_default()
                    .push(Arc::new(issuer));
            }
        }
        Arc::new(RevocationVerifier {
            inner,
            crl_refresh,
            mode: settings.mode,
            responder: settings.responder.clone(),
            limits: Limits {
                timeout: settings.timeout,
                max_age: settings.max_age,
            },
            anchors: by_subject,
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        })
    }

    /// How long a connection waits for an answer after its handshake: the request's own
    /// timeout and a second for the fetcher to get to it.
    pub(crate) fn wait_limit(&self) -> Duration {
        self.limits.timeout + Duration::from_secs(1)
    }

    /// Whether OCSP is asked (`--ocsp soft|hard`).
    pub(crate) fn asks_ocsp(&self) -> bool {
        self.mode != OcspMode::Off
    }

    /// Whether an answer that never came refuses (`hard`).
    pub(crate) fn hard(&self) -> bool {
        self.mode == OcspMode::Hard
    }

    /// The status of the verified chain `leaf` + `intermediates`, from the cache; asks the
    /// fetcher when there is no answer.
    pub(crate) fn decide(
        &self,
        leaf: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
    ) -> Decision {
        let query = match self.question(leaf, intermediates) {
            Ok(query) => query,
            Err(why) => return self.without_answer("ocsp:no_responder", why.to_string()),
        };
        match service().cache.lookup(&query.key, now_unix()) {
            Some(Verdict::Answered(Status::Good)) => Decision::Admit {
                revocation: "ocsp:good",
                query: Some(query),
            },
            Some(Verdict::Answered(Status::Revoked { at })) => Decision::Refuse {
                revoked: true,
                revocation: "ocsp:revoked",
                detail: format!(
                    "OCSP: revoked on {} ({})",
                    crate::time_format::spelled(at),
                    query.url
                ),
            },
            Some(Verdict::Answered(Status::Unknown)) => self.without_answer(
                "ocsp:unknown",
                format!("OCSP: the responder {} does not know it", query.url),
            ),
            Some(Verdict::Failed(f)) => self.without_answer(
                f.result.ocsp_revocation(),
                format!("OCSP ({}): {}", query.url, f.detail),
            ),
            None => {
                service().ask(&query, self.limits);
                Decision::Wait
            }
        }
    }

    /// No answer that counts: `hard` refuses, `soft` lets it through.
    fn without_answer(&self, revocation: &'static str, detail: String) -> Decision {
        match self.mode {
            OcspMode::Hard => Decision::Refuse {
                revoked: false,
                revocation,
                detail,
            },
            _ => Decision::Admit {
                revocation,
                query: None,
            },
        }
    }

    /// Holds `query`'s answer fresh for a live connection.
    pub(crate) fn lease(&self, query: &Arc<Query>) -> Option<Lease> {
        service().cache.lease(query)
    }

    /// The question about `leaf`, worked out once per worker.
    fn question(
        &self,
        leaf: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
    ) -> Result<Arc<Query>, Arc<str>> {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, leaf.as_ref());
        let mut key = [0u8; 32];
        key.copy_from_slice(digest.as_ref());
        let key = (self.id, key);
        if let Some(known) = QUESTIONS.with(|q| q.borrow().get(&key).cloned()) {
            return known;
        }
        let worked_out = self.work_out(leaf, intermediates).map_err(Arc::from);
        QUESTIONS.with(|q| {
            let mut map = q.borrow_mut();
            // Entries of verifiers gone with their generation go too, when it fills.
            if map.len() >= CAPACITY {
                map.clear();
            }
            map.insert(key, worked_out.clone());
        });
        worked_out
    }

    /// The first sight of a leaf on this worker: its distribution points are registered
    /// (`--crl-fetch`), and its OCSP question worked out.
    fn work_out(
        &self,
        leaf: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
    ) -> Result<Arc<Query>, String> {
        let parsed = Leaf::parse(leaf.as_ref()).ok_or("the certificate cannot be parsed")?;
        let issuer = self.issuer_of(leaf, &parsed, intermediates);
        if let (Some(refresh), Some(issuer)) = (self.crl_refresh, &issuer) {
            for url in crl_fetch::distribution_points(leaf.as_ref()) {
                let signer = || vec![issuer.der.clone()];
                service().crls.want(&url, signer, refresh);
            }
        }
        let url = match (&self.responder, parsed.responders.first()) {
            (Some(url), _) | (None, Some(url)) => url.clone(),
            (None, None) => {
                return Err(
                    "the certificate names no OCSP responder and --ocsp-responder is not set"
                        .into(),
                );
            }
        };
        let issuer = issuer
            .ok_or("its issuer is neither among the intermediates sent nor in the trust store")?;
        Query::new(issuer, &parsed.serial, url).map(Arc::new)
    }

    /// The certificate whose key made the leaf's signature, among the intermediates sent and
    /// the trust store's CAs with the leaf's issuer name.
    fn issuer_of(
        &self,
        leaf: &CertificateDer<'_>,
        parsed: &Leaf,
        intermediates: &[CertificateDer<'_>],
    ) -> Option<Arc<Issuer>> {
        let presented = intermediates
            .iter()
            .filter_map(|der| Issuer::new(der.clone().into_owned()).map(Arc::new))
            .filter(|i| i.subject_der == parsed.issuer);
        let anchored = self
            .anchors
            .get(&parsed.issuer)
            .into_iter()
            .flatten()
            .cloned();
        presented
            .chain(anchored)
            .find(|issuer| ocsp::signed_by(leaf.as_ref(), &issuer.der))
    }
}

impl ClientCertVerifier for RevocationVerifier {
    delegate_client_verifier!();

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        if !self.asks_ocsp() {
            // `--crl-fetch` alone: only the first sight of the leaf matters.
            let _ = self.question(end_entity, intermediates);
            return Ok(verified);
        }
        let (revoked, revocation, detail) = match self.decide(end_entity, intermediates) {
            Decision::Admit { .. } | Decision::Wait => return Ok(verified),
            Decision::Refuse {
                revoked,
                revocation,
                detail,
            } => (revoked, revocation, detail),
        };
        crate::tls::capture::record(|c| {
            c.rejected_leaf = Some(end_entity.to_vec());
            c.revocation = Some(revocation);
        });
        Err(Error::InvalidCertificate(match revoked {
            true => CertificateError::Revoked,
            // rustls sends certificate_unknown (46) for `Other`.
            false => CertificateError::Other(OtherError(Arc::new(Unavailable(detail)))),
        }))
    }
}
