//! What kernel TLS takes: the (version, cipher) pairs the start-time probe found
//! (`sys::ktls::probe`), and whether a connection's negotiated suite is one of them. Apart
//! from the hand-off and relay (`ktls`) because the settings every connection shares hold it.

use rustls::{CipherSuite, ServerConnection};

use crate::sys::ktls as sys;

/// The (version, cipher) pairs the kernel took at start (`sys::ktls::probe`).
#[derive(Debug, Clone)]
pub(crate) struct Offer(pub Vec<(u16, u16)>);

impl Offer {
    /// The kernel's name for the connection's suite, if the kernel takes it.
    pub(crate) fn takes(&self, conn: &ServerConnection) -> Option<(u16, u16)> {
        let suite = conn.negotiated_cipher_suite()?.suite();
        let pair = kernel_suite(suite)?;
        self.0.contains(&pair).then_some(pair)
    }
}

/// `TLS1.3/AES-128-GCM`, for the log.
pub(crate) fn suite_name(version: u16, cipher: u16) -> String {
    let v = if version == sys::TLS_1_3 {
        "TLS1.3"
    } else {
        "TLS1.2"
    };
    let c = match cipher {
        sys::AES_GCM_128 => "AES-128-GCM",
        sys::AES_GCM_256 => "AES-256-GCM",
        _ => "CHACHA20-POLY1305",
    };
    format!("{v}/{c}")
}

fn kernel_suite(suite: CipherSuite) -> Option<(u16, u16)> {
    use CipherSuite::*;
    Some(match suite {
        TLS13_AES_128_GCM_SHA256 => (sys::TLS_1_3, sys::AES_GCM_128),
        TLS13_AES_256_GCM_SHA384 => (sys::TLS_1_3, sys::AES_GCM_256),
        TLS13_CHACHA20_POLY1305_SHA256 => (sys::TLS_1_3, sys::CHACHA20_POLY1305),
        TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 | TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 => {
            (sys::TLS_1_2, sys::AES_GCM_128)
        }
        TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384 | TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 => {
            (sys::TLS_1_2, sys::AES_GCM_256)
        }
        TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
        | TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256 => (sys::TLS_1_2, sys::CHACHA20_POLY1305),
        _ => return None,
    })
}
