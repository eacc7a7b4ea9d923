//! What the log (and the PROXY header) say about an established session, read once from the
//! rustls connection after the handshake.
//!
//! The client is named by its certificate's one `ClientIdentity` (`tls::identity`), the value
//! the allow-lists judged, shared per worker by every connection that presents it.

use std::rc::Rc;

use rustls::ServerConnection;

use super::proxy_v2;
use crate::telemetry::log::Event;
use crate::tls::identity::{self, ClientIdentity};
use crate::tls::x509;

/// `TLSv1.3` / `TLSv1.2`, as OpenSSL and HAProxy spell them.
pub(super) fn tls_version_name(conn: &ServerConnection) -> &'static str {
    match conn.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
        _ => "unknown",
    }
}

/// The IANA name of the suite; rustls spells TLS 1.3 suites `TLS13_...`.
pub(super) fn cipher_name(conn: &ServerConnection) -> String {
    conn.negotiated_cipher_suite()
        .map(|s| format!("{:?}", s.suite()).replacen("TLS13_", "TLS_", 1))
        .unwrap_or_default()
}

/// The session's facts for the close and rejection events.
pub(super) struct SessionFacts {
    sni: String,
    alpn: String,
    tls: &'static str,
    cipher: String,
    /// The client's leaf, parsed.
    client: Option<Rc<ClientIdentity>>,
    /// Its chain was verified (false under `--client-auth require-any` or `request`).
    verified: bool,
    /// What the revocation check said, when one decided or was asked (`ocsp:good`,
    /// `ocsp:revoked`, `crl_file`, ...); empty otherwise.
    revocation: &'static str,
}

impl SessionFacts {
    /// Reads what `conn` negotiated and what the verified `leaf` says, sharing its parse with
    /// the worker's other connections (`identity::of`).
    pub(super) fn read(
        conn: &ServerConnection,
        leaf: Option<&[u8]>,
        verified: bool,
    ) -> SessionFacts {
        let mut facts = SessionFacts::with_client(conn, leaf.and_then(identity::of));
        facts.verified = verified;
        facts
    }

    /// A passthrough connection's: the server name it was routed by, and nothing of TLS.
    pub(super) fn passthrough(sni: Option<&str>) -> SessionFacts {
        SessionFacts {
            sni: sni.unwrap_or_default().to_owned(),
            alpn: String::new(),
            // Empty: what `add_to` knows a passed-through connection by.
            tls: "",
            cipher: String::new(),
            client: None,
            verified: false,
            revocation: "",
        }
    }

    /// The server name the client sent.
    pub(super) fn sni(&self) -> Option<&str> {
        Some(self.sni.as_str()).filter(|s| !s.is_empty())
    }

    /// Whether the client's certificate was verified.
    pub(super) fn verified(&self) -> bool {
        self.verified
    }

    /// The same for a rejection: the refused certificate is parsed for this event alone and
    /// never kept, so a client sending certificate after certificate that fails leaves
    /// nothing behind in the worker's map.
    pub(super) fn read_refused(conn: &ServerConnection, leaf: Option<&[u8]>) -> SessionFacts {
        let client = leaf.and_then(|der| ClientIdentity::parse(der).ok().map(Rc::new));
        SessionFacts::with_client(conn, client)
    }

    fn with_client(conn: &ServerConnection, client: Option<Rc<ClientIdentity>>) -> SessionFacts {
        SessionFacts {
            sni: conn.server_name().unwrap_or_default().to_owned(),
            alpn: conn
                .alpn_protocol()
                .map(|p| String::from_utf8_lossy(p).into_owned())
                .unwrap_or_default(),
            tls: tls_version_name(conn),
            cipher: cipher_name(conn),
            client,
            // A refused certificate was not verified; `read` says so for an admitted one.
            verified: false,
            revocation: "",
        }
    }

    /// Records what the revocation check said (see `revocation`).
    pub(super) fn set_revocation(&mut self, revocation: &'static str) {
        self.revocation = revocation;
    }

    /// The client certificate's notAfter, Unix seconds.
    pub(super) fn not_after(&self) -> Option<i64> {
        self.client.as_ref().map(|c| c.info.not_after)
    }

    /// The client's CN, or empty without a client certificate or a CN (`tls::identity`).
    pub(super) fn client_cn(&self) -> &str {
        self.client
            .as_ref()
            .and_then(|c| c.common_name())
            .unwrap_or("")
    }

    /// The TLS version, cipher and client certificate as the PROXY v2 header carries them.
    pub(super) fn proxy_fields(&self) -> (&'static str, &str, Option<proxy_v2::CertFacts<'_>>) {
        let cert = self.client.as_deref().map(|client| proxy_v2::CertFacts {
            cn: client.common_name(),
            sig_alg: &client.info.sig_alg,
            key_alg: &client.info.key_alg,
            fingerprint: client.sha256,
        });
        (self.tls, &self.cipher, cert)
    }

    /// Adds the session's fields to `event`.
    pub(super) fn add_to(&self, event: Event) -> Event {
        // Passed through: nothing of the TLS was ours to see but the name it was routed by.
        if self.tls.is_empty() {
            return event.text("sni", &self.sni);
        }
        let event = event
            .text("client", self.client_cn())
            .word("tls", self.tls)
            .word("cipher", &self.cipher)
            .text("sni", &self.sni)
            .text("alpn", &self.alpn);
        let event = match self.revocation {
            "" => event,
            revocation => event.word("revocation", revocation),
        };
        match self.client.as_deref() {
            Some(client) => event
                .word("verified", self.verified)
                .text("subject", &client.info.subject)
                .text("issuer", &client.info.issuer)
                .word("serial", &client.info.serial_hex)
                .text("sans", &client.info.sans.join(","))
                .word("sha256", x509::hex(&client.sha256))
                .word(
                    "not_after",
                    crate::time_format::rfc3339(client.info.not_after),
                ),
            None => event,
        }
    }
}
