//! Between the handshake and the upstream dial, under `--ocsp`: a client whose certificate has
//! no OCSP answer in the cache yet waits here for the fetcher, while the worker serves everyone
//! else. Nothing of the client reaches the upstream before the status is known, because the
//! upstream is not dialled before. The wait is for the worker's `ocsp_answered` signal (a byte
//! from the fetcher on the control socket), bounded by `--ocsp-timeout` and a second.
//!
//! The handshake is over by then, so a refusal here is a close_notify, not an alert (what the
//! verifier refuses during the handshake, from a cached answer, gets certificate_revoked).

use std::time::Instant;

use rustls::pki_types::CertificateDer;

use super::notify::Broadcast;
use super::timer;
use crate::outcome::Reject;
use crate::revocation::verifier::Decision;
use crate::revocation::{Lease, RevocationVerifier};

/// Let through: the hold on the certificate's answer, and what the events say.
pub(super) struct Admitted {
    pub lease: Option<Lease>,
    pub revocation: &'static str,
}

/// Turned away.
pub(super) struct Refused {
    pub reason: Reject,
    pub detail: String,
    pub revocation: &'static str,
}

/// Waits until the OCSP status of `chain` (leaf first, already verified) decides.
pub(super) async fn admit(
    ocsp: &RevocationVerifier,
    chain: &[CertificateDer<'_>],
    answered: &Broadcast,
) -> Result<Admitted, Refused> {
    let Some((leaf, intermediates)) = chain.split_first() else {
        return Ok(Admitted {
            lease: None,
            revocation: "",
        });
    };
    let deadline = Instant::now() + ocsp.wait_limit();
    loop {
        // Taken before the look, so an answer stored in between still wakes us.
        let changed = answered.changed();
        match ocsp.decide(leaf, intermediates) {
            Decision::Admit { revocation, query } => {
                let lease = query.and_then(|query| ocsp.lease(&query));
                return Ok(Admitted { lease, revocation });
            }
            Decision::Refuse {
                revoked,
                revocation,
                detail,
            } => {
                let reason = match revoked {
                    true => Reject::Revoked,
                    false => Reject::OcspUnavailable,
                };
                return Err(Refused {
                    reason,
                    detail,
                    revocation,
                });
            }
            Decision::Wait => {}
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || timer::timeout(left, changed).await.is_err() {
            let revocation = "ocsp:timeout";
            if !ocsp.hard() {
                return Ok(Admitted {
                    lease: None,
                    revocation,
                });
            }
            return Err(Refused {
                reason: Reject::OcspUnavailable,
                detail: format!("OCSP: no answer within {:?}", ocsp.wait_limit()),
                revocation,
            });
        }
    }
}
