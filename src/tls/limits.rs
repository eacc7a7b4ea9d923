//! Caps on what a client may present, checked before any path building.
//!
//! webpki builds paths through at most six sub-CAs, so a longer chain can only be padding or an
//! attempt to make the server try many paths; real chains are a few kilobytes. More than
//! `MAX_CLIENT_CHAIN` certificates or `MAX_CLIENT_CHAIN_BYTES` bytes is refused outright, with
//! certificate_unknown (46) and a message saying why. (rustls itself refuses any handshake
//! message over 64 KiB, but without an alert; the byte cap sits below that so a client with an
//! absurd chain learns why.)

use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::{CertificateError, OtherError};

/// Leaf plus intermediates: room for six sub-CAs, a root sent along, and some slack.
pub(crate) const MAX_CLIENT_CHAIN: usize = 10;
/// Ten RSA-4096 certificates with long names fit; rustls' 64 KiB message limit is above.
pub(crate) const MAX_CLIENT_CHAIN_BYTES: usize = 32 * 1024;

/// A client chain over `MAX_CLIENT_CHAIN` certificates or `MAX_CLIENT_CHAIN_BYTES` bytes.
pub(crate) struct ChainTooLong {
    pub presented: usize,
    pub bytes: usize,
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
        if self.presented > MAX_CLIENT_CHAIN {
            write!(
                f,
                "client chain has {} certificates; at most {MAX_CLIENT_CHAIN} are accepted",
                self.presented
            )
        } else {
            write!(
                f,
                "client chain is {} bytes; at most {MAX_CLIENT_CHAIN_BYTES} are accepted",
                self.bytes
            )
        }
    }
}

impl std::error::Error for ChainTooLong {}

/// Refuses a chain (`leaf` + `intermediates`) over either cap.
pub(crate) fn check_client_chain(
    leaf: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
) -> Result<(), rustls::Error> {
    let presented = intermediates.len() + 1;
    let bytes = leaf.len() + intermediates.iter().map(|c| c.len()).sum::<usize>();
    if presented > MAX_CLIENT_CHAIN || bytes > MAX_CLIENT_CHAIN_BYTES {
        return Err(rustls::Error::InvalidCertificate(CertificateError::Other(
            OtherError(Arc::new(ChainTooLong { presented, bytes })),
        )));
    }
    Ok(())
}
