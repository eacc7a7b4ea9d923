//! Why a client was turned away: one vocabulary for the log line and the metric label, so the two
//! always agree. The alert the client saw is not derived from the reason: it is read back from
//! what went out (`alert`).

use rustls::{CertificateError, Error};

/// The reason a client did not get through the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    NoCertificate,
    UnknownCa,
    Expired,
    NotYetValid,
    Revoked,
    BadCertificate,
    WrongUsage,
    /// The chain is valid but the client is not on the `--allow-*` lists.
    NotAllowed,
    HandshakeTimeout,
    ProtocolError,
    /// The client aborted with an alert of its own (often: it does not trust our certificate).
    ClientAlert,
    /// The client closed or reset the connection mid-handshake.
    ClientClosed,
    /// The worker is at its share of `--max-conns`.
    MaxConns,
    /// The handshake succeeded but the upstream could not be reached: the client is closed with
    /// close_notify and nothing reaches the upstream.
    UpstreamUnreachable,
}

impl Reject {
    /// Every reason, in declaration order (the metrics index by `reason as usize`).
    pub const ALL: [Reject; 14] = [
        Reject::NoCertificate,
        Reject::UnknownCa,
        Reject::Expired,
        Reject::NotYetValid,
        Reject::Revoked,
        Reject::BadCertificate,
        Reject::WrongUsage,
        Reject::NotAllowed,
        Reject::HandshakeTimeout,
        Reject::ProtocolError,
        Reject::ClientAlert,
        Reject::ClientClosed,
        Reject::MaxConns,
        Reject::UpstreamUnreachable,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reject::NoCertificate => "no_certificate",
            Reject::UnknownCa => "unknown_ca",
            Reject::Expired => "expired",
            Reject::NotYetValid => "not_yet_valid",
            Reject::Revoked => "revoked",
            Reject::BadCertificate => "bad_certificate",
            Reject::WrongUsage => "wrong_usage",
            Reject::NotAllowed => "not_allowed",
            Reject::HandshakeTimeout => "handshake_timeout",
            Reject::ProtocolError => "protocol_error",
            Reject::ClientAlert => "client_alert",
            Reject::ClientClosed => "client_closed",
            Reject::MaxConns => "max_conns",
            Reject::UpstreamUnreachable => "upstream_unreachable",
        }
    }
}

/// Classifies a handshake error.
pub fn classify(err: &Error) -> Reject {
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
            CertificateError::UnknownRevocationStatus
            | CertificateError::ExpiredRevocationList
            | CertificateError::ExpiredRevocationListContext { .. } => Reject::UnknownCa,
            _ => Reject::BadCertificate,
        },
        Error::AlertReceived(_) => Reject::ClientAlert,
        _ => Reject::ProtocolError,
    }
}

#[cfg(test)]
mod tests {
    use super::Reject;

    #[test]
    fn all_lists_every_reason_at_its_own_index() {
        for (i, reason) in Reject::ALL.iter().enumerate() {
            assert_eq!(*reason as usize, i, "{reason:?} out of place");
        }
    }
}
