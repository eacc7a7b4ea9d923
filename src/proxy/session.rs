//! What the log (and the PROXY header) say about an established session, read once from the
//! rustls connection after the handshake.
//!
//! The client certificate's facts are parsed once per worker and certificate, and shared by
//! every connection that presents it (clients open many connections with one certificate):
//! that saves an X.509 parse per handshake and several small strings per connection, kept
//! until its close event.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::{Rc, Weak};

use rustls::ServerConnection;

use super::proxy_v2;
use crate::telemetry::log::Event;
use crate::tls::x509::{self, CertInfo};

/// `TLSv1.3` / `TLSv1.2`, as OpenSSL and HAProxy spell them.
pub fn tls_version_name(conn: &ServerConnection) -> &'static str {
    match conn.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
        _ => "unknown",
    }
}

/// The IANA name of the suite; rustls spells TLS 1.3 suites `TLS13_...`.
pub fn cipher_name(conn: &ServerConnection) -> String {
    conn.negotiated_cipher_suite()
        .map(|s| format!("{:?}", s.suite()).replacen("TLS13_", "TLS_", 1))
        .unwrap_or_default()
}

/// A client certificate's facts and its SHA-256.
type ClientFacts = (CertInfo, [u8; 32]);
/// Entries a worker's map holds before its first sweep of those no connection holds any more.
const REMEMBERED: usize = 1024;

/// This worker's parsed client certificates, by SHA-256, while a connection holds them.
struct Parsed {
    map: HashMap<[u8; 32], Weak<ClientFacts>>,
    /// The size that triggers the next sweep: twice what the last one kept (at least
    /// `REMEMBERED`), so sweeping stays amortised O(1) per insert however many are live.
    sweep_at: usize,
}

thread_local! {
    static PARSED: RefCell<Parsed> = RefCell::new(Parsed {
        map: HashMap::new(),
        sweep_at: REMEMBERED,
    });
}

/// The facts of `leaf`, parsed unless a live connection of this worker already holds them.
fn client_facts(leaf: &[u8]) -> Option<Rc<ClientFacts>> {
    let digest = x509::sha256(leaf);
    PARSED.with(|parsed| {
        let mut parsed = parsed.borrow_mut();
        if let Some(facts) = parsed.map.get(&digest).and_then(Weak::upgrade) {
            return Some(facts);
        }
        let facts = Rc::new((CertInfo::parse(leaf).ok()?, digest));
        if parsed.map.len() >= parsed.sweep_at {
            parsed.map.retain(|_, facts| facts.strong_count() > 0);
            parsed.sweep_at = (2 * parsed.map.len()).max(REMEMBERED);
        }
        parsed.map.insert(digest, Rc::downgrade(&facts));
        Some(facts)
    })
}

/// The session's facts for the close and rejection events.
pub struct SessionFacts {
    sni: String,
    alpn: String,
    tls: &'static str,
    cipher: String,
    /// The client's leaf, parsed, and its SHA-256.
    client: Option<Rc<ClientFacts>>,
}

impl SessionFacts {
    /// Reads what `conn` negotiated and what `leaf` (the client's certificate: the verified one
    /// after a handshake, the refused one after a rejection) says.
    pub fn read(conn: &ServerConnection, leaf: Option<&[u8]>) -> SessionFacts {
        let client = leaf.and_then(client_facts);
        SessionFacts {
            sni: conn.server_name().unwrap_or_default().to_owned(),
            alpn: conn
                .alpn_protocol()
                .map(|p| String::from_utf8_lossy(p).into_owned())
                .unwrap_or_default(),
            tls: tls_version_name(conn),
            cipher: cipher_name(conn),
            client,
        }
    }

    /// The client's CN, or empty without a client certificate.
    /// The client certificate's notAfter, Unix seconds.
    pub fn not_after(&self) -> Option<i64> {
        self.client.as_ref().map(|c| c.0.not_after)
    }

    pub fn client_cn(&self) -> &str {
        self.client.as_ref().map_or("", |c| c.0.common_name())
    }

    /// The TLS version, cipher and client certificate as the PROXY v2 header carries them.
    pub fn proxy_fields(&self) -> (&'static str, &str, Option<proxy_v2::CertFacts<'_>>) {
        let cert = self
            .client
            .as_deref()
            .map(|(info, fingerprint)| proxy_v2::CertFacts {
                cn: info.common_name(),
                sig_alg: &info.sig_alg,
                key_alg: &info.key_alg,
                fingerprint: *fingerprint,
            });
        (self.tls, &self.cipher, cert)
    }

    /// Adds the session's fields to `event`.
    pub fn add_to(&self, event: Event) -> Event {
        let event = event
            .text("client", self.client_cn())
            .word("tls", self.tls)
            .word("cipher", &self.cipher)
            .text("sni", &self.sni)
            .text("alpn", &self.alpn);
        match self.client.as_deref() {
            Some((info, fingerprint)) => event
                .text("subject", &info.subject)
                .text("issuer", &info.issuer)
                .word("serial", &info.serial_hex)
                .text("sans", &info.sans.join(","))
                .word("sha256", x509::hex(fingerprint))
                .word("not_after", x509::format_rfc3339(info.not_after)),
            None => event,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_with_one_certificate_share_its_facts() {
        let der = |cn: &str| {
            rcgen::generate_simple_self_signed(vec![cn.to_owned()])
                .expect("cert")
                .cert
                .der()
                .to_vec()
        };
        let (alice, bob) = (der("alice.test"), der("bob.test"));
        let a1 = client_facts(&alice).expect("parsed");
        let a2 = client_facts(&alice).expect("parsed");
        let b = client_facts(&bob).expect("parsed");
        assert!(Rc::ptr_eq(&a1, &a2), "parsed twice");
        assert!(!Rc::ptr_eq(&a1, &b));
        assert_eq!(a1.1, x509::sha256(&alice));
        assert!(
            a1.0.sans.iter().any(|s| s.contains("alice.test")),
            "{:?}",
            a1.0.sans
        );
        // Once no connection holds them, they are not kept alive.
        drop((a1, a2));
        let weak = PARSED.with(|p| p.borrow().map.get(&x509::sha256(&alice)).cloned());
        assert!(weak.is_some_and(|w| w.upgrade().is_none()));
        assert!(client_facts(b"not a certificate").is_none());
    }
}
