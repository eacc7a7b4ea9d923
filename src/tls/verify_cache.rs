//! Certificate verifiers that remember chains they have already verified.
//!
//! mTLS clients reconnect with the same certificate again and again (sidecars, service
//! accounts, load balancers' health checks), and verifying the chain costs an ECDSA or RSA
//! signature check per link (≈ 65 µs per P-256 verify on the benchmark machine, a third of a
//! full handshake's crypto). Whether a chain is valid is a pure function of its bytes, the trust
//! store, the CRLs and the time; this wrapper memoises it:
//! - the key is the SHA-256 of the exact chain presented (leaf and intermediates, in order);
//! - a hit is honoured only while `now` lies inside the chain's validity window (the latest
//!   notBefore and the earliest notAfter of the certificates presented), so expiry is still
//!   enforced to the second;
//! - the trust store and CRLs are fixed for the life of a verifier (a reload builds a new one),
//!   and each cache is tied to one verifier, so a trust change invalidates every entry;
//! - only successes are kept, so a rejected chain is re-verified (and re-rejected) every time;
//! - the proof of possession (the client's CertificateVerify signature) is never cached: it is
//!   checked on every handshake, so a copied certificate without its key gets nothing.
//!
//! Each worker thread keeps its own cache (no lock on the handshake path), bounded in size. The
//! load generator uses the same cache for the server's chain (`CachingServerVerifier`).

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, SignatureScheme};
use x509_parser::prelude::{FromDer, X509Certificate};

/// Entries a worker keeps before it starts over.
const CAPACITY: usize = 4096;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Chain digest -> validity window (Unix seconds, inclusive).
type Verdicts = HashMap<[u8; 32], (u64, u64)>;

thread_local! {
    /// The verdicts of one verifier (by id) on this worker.
    static CACHE: RefCell<(u64, Verdicts)> = RefCell::new((0, HashMap::new()));
}

/// One verifier's memory of the chains it accepted, kept per worker thread.
#[derive(Debug)]
pub(crate) struct VerdictCache {
    id: u64,
    /// No verdict outlives this (Unix seconds): under `--stale-crl refuse`, the soonest
    /// nextUpdate of the verifier's CRLs, after which the same chain must be refused.
    until: Option<u64>,
}

impl Default for VerdictCache {
    fn default() -> Self {
        VerdictCache {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            until: None,
        }
    }
}

impl VerdictCache {
    /// Runs `verify` unless this exact chain (with `context`, e.g. the server name it was
    /// checked for) was accepted before and `now` lies inside its validity window.
    pub(crate) fn verified<E>(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        context: &[u8],
        now: UnixTime,
        verify: impl FnOnce() -> Result<(), E>,
    ) -> Result<(), E> {
        let key = chain_digest(end_entity, intermediates, context);
        if self.lookup(&key, now.as_secs()) {
            return Ok(());
        }
        verify()?;
        if let Some((from, until)) = validity_window(end_entity, intermediates) {
            let until = self.until.map_or(until, |cap| until.min(cap));
            self.remember(key, (from, until));
        }
        Ok(())
    }

    fn lookup(&self, key: &[u8; 32], now: u64) -> bool {
        CACHE.with(|cache| {
            let (id, map) = &*cache.borrow();
            *id == self.id
                && map
                    .get(key)
                    .is_some_and(|&(from, until)| from <= now && now <= until)
        })
    }

    fn remember(&self, key: [u8; 32], window: (u64, u64)) {
        CACHE.with(|cache| {
            let (id, map) = &mut *cache.borrow_mut();
            if *id != self.id || map.len() >= CAPACITY {
                *id = self.id;
                map.clear();
            }
            map.insert(key, window);
        });
    }
}

/// Wraps a verifier (rustls' `WebPkiClientVerifier`) with a per-worker cache of good chains.
#[derive(Debug)]
pub(crate) struct CachingVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    cache: VerdictCache,
}

impl CachingVerifier {
    /// `until`: no cached verdict is honoured past it (see `VerdictCache::until`).
    pub(crate) fn new(
        inner: Arc<dyn ClientCertVerifier>,
        until: Option<u64>,
    ) -> Arc<CachingVerifier> {
        Arc::new(CachingVerifier {
            inner,
            cache: VerdictCache {
                until,
                ..VerdictCache::default()
            },
        })
    }
}

/// The same for the other side: wraps rustls' `WebPkiServerVerifier` for `ringtls load`, whose
/// client would otherwise re-verify the server's chain on each of its handshakes and run out of
/// CPU before the server under test does. The server name is part of the key.
#[derive(Debug)]
pub(crate) struct CachingServerVerifier {
    inner: Arc<dyn ServerCertVerifier>,
    cache: VerdictCache,
}

impl CachingServerVerifier {
    pub(crate) fn new(inner: Arc<dyn ServerCertVerifier>) -> Arc<CachingServerVerifier> {
        Arc::new(CachingServerVerifier {
            inner,
            cache: VerdictCache::default(),
        })
    }
}

impl ServerCertVerifier for CachingServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let name = server_name.to_str();
        self.cache
            .verified(end_entity, intermediates, name.as_bytes(), now, || {
                self.inner
                    .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
                    .map(|_| ())
            })
            .map(|()| ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// SHA-256 over the chain and the context, each part prefixed by its length so boundaries count.
fn chain_digest(
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    context: &[u8],
) -> [u8; 32] {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    let parts = std::iter::once(end_entity.as_ref())
        .chain(intermediates.iter().map(|c| c.as_ref()))
        .chain(std::iter::once(context));
    for part in parts {
        ctx.update(&(part.len() as u64).to_be_bytes());
        ctx.update(part);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// The latest notBefore and earliest notAfter over the chain, in Unix seconds; `None` if a
/// certificate cannot be parsed (then nothing is cached).
fn validity_window(
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
) -> Option<(u64, u64)> {
    let mut window = (0u64, u64::MAX);
    for cert in std::iter::once(end_entity).chain(intermediates) {
        let (_, parsed) = X509Certificate::from_der(cert.as_ref()).ok()?;
        let from = u64::try_from(parsed.validity().not_before.timestamp()).unwrap_or(0);
        let until = u64::try_from(parsed.validity().not_after.timestamp()).ok()?;
        window = (window.0.max(from), window.1.min(until));
    }
    Some(window)
}

impl ClientCertVerifier for CachingVerifier {
    delegate_client_verifier!();

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        // The outermost verifier: the cap applies before the cache or any path building.
        super::limits::check_client_chain(end_entity, intermediates)
            .and_then(|()| {
                self.cache
                    .verified(end_entity, intermediates, &[], now, || {
                        self.inner
                            .verify_client_cert(end_entity, intermediates, now)
                            .map(|_| ())
                    })
            })
            .map(|()| ClientCertVerified::assertion())
            .inspect_err(|_| {
                // For the rejection's log line, as rustls keeps no peer certificate once
                // verification fails; only inside a handshake step (`capture`), so the
                // re-checks after resumption and reload, which run outside one, leave nothing
                // for the next client. Only on refusal: the accepted path copies nothing.
                super::capture::record(|c| c.rejected_leaf = Some(end_entity.to_vec()));
            })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use rustls::DistinguishedName;

    use super::*;

    /// Accepts everything and counts how often it was asked.
    #[derive(Debug, Default)]
    struct Counting(AtomicUsize);

    impl ClientCertVerifier for Counting {
        fn root_hint_subjects(&self) -> &[DistinguishedName] {
            &[]
        }
        fn verify_client_cert(
            &self,
            _: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: UnixTime,
        ) -> Result<ClientCertVerified, rustls::Error> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok(ClientCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            _: &[u8],
            _: &CertificateDer<'_>,
            _: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            Err(rustls::Error::General("unused".into()))
        }
        fn verify_tls13_signature(
            &self,
            _: &[u8],
            _: &CertificateDer<'_>,
            _: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            Err(rustls::Error::General("unused".into()))
        }
        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            Vec::new()
        }
    }

    fn cert(not_before: i64, not_after: i64) -> CertificateDer<'static> {
        let mut params = rcgen::CertificateParams::new(vec!["client".to_owned()]).expect("params");
        params.not_before = time::OffsetDateTime::from_unix_timestamp(not_before).expect("time");
        params.not_after = time::OffsetDateTime::from_unix_timestamp(not_after).expect("time");
        let key = rcgen::KeyPair::generate().expect("key");
        params.self_signed(&key).expect("cert").der().clone()
    }

    #[test]
    fn verifies_a_chain_once_while_it_is_valid() {
        let inner = Arc::new(Counting::default());
        let v = CachingVerifier::new(inner.clone(), None);
        let leaf = cert(1_000_000_000, 2_000_000_000);
        let at = |s| UnixTime::since_unix_epoch(std::time::Duration::from_secs(s));
        for _ in 0..3 {
            v.verify_client_cert(&leaf, &[], at(1_500_000_000))
                .expect("ok");
        }
        assert_eq!(
            inner.0.load(Ordering::SeqCst),
            1,
            "chain verified more than once"
        );
        // Past notAfter the cached verdict is not used: the inner verifier decides again.
        v.verify_client_cert(&leaf, &[], at(2_000_000_001))
            .expect("inner accepts");
        assert_eq!(
            inner.0.load(Ordering::SeqCst),
            2,
            "expired chain served from cache"
        );
    }

    #[test]
    fn keeps_no_verdict_across_verifiers() {
        let inner = Arc::new(Counting::default());
        let leaf = cert(1_000_000_000, 2_000_000_000);
        let at = UnixTime::since_unix_epoch(std::time::Duration::from_secs(1_500_000_000));
        CachingVerifier::new(inner.clone(), None)
            .verify_client_cert(&leaf, &[], at)
            .expect("ok");
        // A reload builds a new verifier: it must verify again.
        CachingVerifier::new(inner.clone(), None)
            .verify_client_cert(&leaf, &[], at)
            .expect("ok");
        assert_eq!(inner.0.load(Ordering::SeqCst), 2);
    }
}
