//! Caps on what a client may present, checked before any path building.
//!
//! rustls already refuses a handshake message over 64 KiB, which bounds the bytes of a client's
//! Certificate message. The number of certificates in it is ours to bound: webpki builds paths
//! through at most six sub-CAs, so a longer chain can only be padding or an attempt to make the
//! server try many paths. More than `MAX_CLIENT_CHAIN` certificates is refused outright, with
//! certificate_unknown (46) and a message saying why.

use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::{CertificateError, OtherError};

/// Leaf plus intermediates: room for six sub-CAs, a root sent along, and some slack.
pub const MAX_CLIENT_CHAIN: usize = 10;

/// A client chain longer than `MAX_CLIENT_CHAIN`.
pub struct ChainTooLong {
    pub presented: usize,
}

/// rustls shows a `CertificateError::Other` with `{:?}`: make that the sentence, so the
/// rejection's log line reads as one.
impl std::fmt::Debug for ChainTooLong {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

impl std::fmt::Display for ChainTooLong {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "client chain has {} certificates; at most {MAX_CLIENT_CHAIN} are accepted",
            self.presented
        )
    }
}

impl std::error::Error for ChainTooLong {}

/// Refuses a chain (leaf + `intermediates`) longer than `MAX_CLIENT_CHAIN`.
pub fn check_client_chain(intermediates: &[CertificateDer<'_>]) -> Result<(), rustls::Error> {
    let presented = intermediates.len() + 1;
    if presented > MAX_CLIENT_CHAIN {
        return Err(rustls::Error::InvalidCertificate(CertificateError::Other(
            OtherError(Arc::new(ChainTooLong { presented })),
        )));
    }
    Ok(())
}
