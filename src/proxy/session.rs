//! What the log (and the PROXY header) say about an established session, read once from the
//! rustls connection after the handshake.

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

/// The session's facts for the close and rejection events.
pub struct SessionFacts {
    sni: String,
    alpn: String,
    tls: &'static str,
    cipher: String,
    /// The client's leaf, parsed once, and its SHA-256.
    client: Option<(CertInfo, [u8; 32])>,
}

impl SessionFacts {
    /// Reads what `conn` negotiated and what `leaf` (the client's certificate: the verified one
    /// after a handshake, the refused one after a rejection) says.
    pub fn read(conn: &ServerConnection, leaf: Option<&[u8]>) -> SessionFacts {
        let client = leaf.and_then(|leaf| {
            let info = CertInfo::parse(leaf).ok()?;
            Some((info, x509::sha256(leaf)))
        });
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
        self.client.as_ref().map(|(info, _)| info.not_after)
    }

    pub fn client_cn(&self) -> &str {
        self.client
            .as_ref()
            .map_or("", |(info, _)| info.common_name())
    }

    /// The TLS version, cipher and client certificate as the PROXY v2 header carries them.
    pub fn proxy_fields(&self) -> (&'static str, &str, Option<proxy_v2::CertFacts<'_>>) {
        let cert = self
            .client
            .as_ref()
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
        match &self.client {
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
