//! Why a client was turned away: one vocabulary for the log line and the metric label, so the two
//! always agree. The alert the client saw is not derived from the reason: it is read back from
//! what went out (`alert`).

use rustls::{CertificateError, Error};

use crate::revocation::verifier::Unavailable;

pub(crate) use crate::outcome::Reject;

/// Classifies a handshake error.
pub(crate) fn classify(err: &Error) -> Reject {
    match err {
        Error::NoCertificatesPresented => Reject::NoCertificate,
        Error::InvalidCertificate(cert_err) => match cert_err {
            CertificateError::UnknownIssuer => Reject::UnknownCa,
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => Reject::Expired,
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                Reject::NotYetValid
            }
            CertificateError::Revoked => Reject::Revoked,
            CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
                Reject::WrongUsage
            }
            CertificateError::ApplicationVerificationFailure => Reject::NotAllowed,
            CertificateError::UnknownRevocationStatus => Reject::UnknownCa,
            CertificateError::Other(other) if other.0.downcast_ref::<Unavailable>().is_some() => {
                Reject::OcspUnavailable
            }
            // `--stale-crl refuse`: the issuer's CRL is past its nextUpdate.
            CertificateError::ExpiredRevocationList
            | CertificateError::ExpiredRevocationListContext { .. } => Reject::CrlStale,
            _ => Reject::BadCertificate,
        },
        Error::AlertReceived(_) => Reject::ClientAlert,
        _ => Reject::ProtocolError,
    }
}
