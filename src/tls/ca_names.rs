//! Which CA names the server puts in CertificateRequest (`--ca-names auto|all|none`).
//!
//! The certificate_authorities list (RFC 8446 §4.2.4; RFC 5246 §7.4.4 for TLS 1.2) tells a
//! client which CAs we trust, so one holding several certificates can pick the right one. Each
//! CA costs its DER subject plus two bytes, and clients cap the size of a handshake message they
//! will buffer: with a few thousand CAs the CertificateRequest outgrows that cap and the client
//! aborts the handshake (OpenSSL: "excessive message size") even when it holds a valid
//! certificate. Sending no names is always allowed ("the client MAY use any certificate"), and
//! clients with one certificate, the usual mTLS case, never look at them.
//!
//! `auto` therefore sends the list while it stays under [`AUTO_LIMIT`] and omits it above, and
//! says so at start and on every reload.

use std::fmt;

use rustls::DistinguishedName;

/// The largest certificate_authorities list (its encoded bytes, as [`CaNames::bytes`] counts
/// them) that `auto` still sends: half the smallest limit measured.
///
/// Measured with `scripts/ca-names-limits.py` (ringtls `serve --ca-names all`, each client
/// bisected to the byte on the list size, TLS 1.3 / TLS 1.2; the CertificateRequest body is the
/// list plus 39 / 25 bytes):
///
/// | client                       | largest list, 1.3 / 1.2 | where the limit comes from                                  |
/// |------------------------------|-------------------------|-------------------------------------------------------------|
/// | Java 17.0.15 (JSSE)          | 32,729 / 32,743         | handshake message ≤ 32,768 (`jdk.tls.maxHandshakeMessageSize`) |
/// | rustls 0.23 (`ringtls load`) | 64,865 / 64,898         | 64 KiB of buffered records per handshake message (`MAX_HANDSHAKE_SIZE`, msgs/deframer); moves a few bytes with the server's chain |
/// | OpenSSL 3.0.19 s_client      | 65,499 / 65,537 (all)   | none below the protocol's; `SSL_MAX_CERT_LIST_DEFAULT` (100 KiB) applies past it |
/// | curl 7.88.1 (OpenSSL 3.0.19) | 65,499 / 65,537 (all)   | as OpenSSL                                                  |
/// | Python 3.11.7 `ssl` (OpenSSL 3.0.19) | 65,499 / 65,537 (all) | as OpenSSL                                            |
/// | gnutls-cli 3.7.9             | 65,499 / 65,537 (all)   | none below the protocol's                                   |
///
/// "all": everything the protocol can encode (see [`wire_limit`]; 65,537 in TLS 1.2 was measured
/// before ringtls refused lists past the TLS 1.3 limit). The smallest, Java's, is halved: room for
/// clients not measured here (embedded stacks often have a 16 KiB input buffer), and 16 KiB still
/// holds about 160 names of a typical size (C, O, OU, CN) or 450 CN-only ones.
pub(crate) const AUTO_LIMIT: usize = 16 * 1024;

/// The largest list a CertificateRequest can carry at all. RFC 5246 §7.4.4 (TLS 1.2) gives the
/// list a 2-byte length, and RFC 8446 §4.2 (TLS 1.3) puts it in an extension inside a block of
/// extensions that also has a 2-byte length and holds the signature_algorithms extension too:
/// 65,535 less the extension header (4) and signature_algorithms (4 + 2 + 2 per scheme). With
/// aws-lc-rs' 13 schemes that is 65,499, the largest list measured to arrive intact. rustls does
/// not check this (its encoder truncates the length: every client then refuses the corrupt
/// message, OpenSSL with "excessive message size" once it passes 100 KiB, and a debug build
/// panics), so a list past it is refused at start.
pub(crate) fn wire_limit(signature_schemes: usize) -> usize {
    0xffff - 4 - (4 + 2 + 2 * signature_schemes)
}

/// `--ca-names`: which CA subjects CertificateRequest carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CaNamesMode {
    /// Every CA's subject while the list stays under [`AUTO_LIMIT`], none above it.
    #[default]
    Auto,
    /// Every CA's subject, however large the list.
    All,
    /// No names: clients choose their certificate themselves.
    None,
}

impl CaNamesMode {
    /// Parses the flag's value.
    pub fn parse(s: &str) -> Option<CaNamesMode> {
        match s {
            "auto" => Some(CaNamesMode::Auto),
            "all" => Some(CaNamesMode::All),
            "none" => Some(CaNamesMode::None),
            _ => None,
        }
    }

    /// The flag's value, for messages.
    pub fn as_str(self) -> &'static str {
        match self {
            CaNamesMode::Auto => "auto",
            CaNamesMode::All => "all",
            CaNamesMode::None => "none",
        }
    }
}

/// What one generation sends, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CaNames {
    pub mode: CaNamesMode,
    /// Names in the trust store (one per CA subject).
    pub count: usize,
    /// The encoded list: its 2-byte length and, per name, a 2-byte length and the DER subject.
    pub bytes: usize,
    /// Whether CertificateRequest carries them.
    pub sent: bool,
    /// [`wire_limit`] for this server's signature schemes.
    pub wire_limit: usize,
}

impl CaNames {
    /// Decides for the trust store's `subjects` under `mode`, for a server offering
    /// `signature_schemes` schemes (they share the CertificateRequest with the names).
    pub fn decide(
        mode: CaNamesMode,
        subjects: &[DistinguishedName],
        signature_schemes: usize,
    ) -> CaNames {
        let bytes = 2 + subjects.iter().map(|s| 2 + s.as_ref().len()).sum::<usize>();
        let sent = match mode {
            CaNamesMode::All => true,
            CaNamesMode::None => false,
            CaNamesMode::Auto => bytes <= AUTO_LIMIT,
        };
        CaNames {
            mode,
            count: subjects.len(),
            bytes,
            sent,
            wire_limit: wire_limit(signature_schemes),
        }
    }

    /// Whether the list is to be sent but cannot be encoded: a start (or reload) error.
    pub fn unencodable(&self) -> bool {
        self.sent && self.bytes > self.wire_limit
    }

    /// Whether the list is sent although some mainstream clients will refuse it.
    pub fn oversized(&self) -> bool {
        self.sent && self.bytes > AUTO_LIMIT
    }

    /// Whether `auto` dropped the list for its size: what the start-up WARN is about.
    pub fn omitted_for_size(&self) -> bool {
        self.mode == CaNamesMode::Auto && !self.sent
    }

    /// `sent` or `omitted`, for log fields.
    pub fn verdict(&self) -> &'static str {
        if self.sent { "sent" } else { "omitted" }
    }
}

impl fmt::Display for CaNames {
    /// The decision and its reason, as `check` prints it and the log's message says it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let size = format!(
            "{} names, {} bytes (limit {AUTO_LIMIT})",
            self.count, self.bytes
        );
        match (self.mode, self.sent) {
            (CaNamesMode::Auto, true) => write!(f, "sent: {size}, small enough for every client"),
            (CaNamesMode::Auto, false) => write!(
                f,
                "omitted: {size}; Java clients refuse a CertificateRequest over 32 KiB, rustls \
                 ones over 64 KiB, and past {} bytes it cannot be encoded at all (curl and \
                 openssl s_client: \"excessive message size\"), so clients pick their \
                 certificate themselves; --ca-names all sends the list anyway (up to {} bytes)",
                self.wire_limit, self.wire_limit
            ),
            (CaNamesMode::All, _) if self.oversized() => write!(
                f,
                "sent (--ca-names all): {size}; clients with a smaller limit (Java: 32 KiB, \
                 rustls: 64 KiB) will refuse the handshake; --ca-names auto omits the list \
                 above the limit"
            ),
            (CaNamesMode::All, _) => write!(f, "sent (--ca-names all): {size}"),
            (CaNamesMode::None, _) => write!(f, "omitted (--ca-names none): {size}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize, len: usize) -> Vec<DistinguishedName> {
        (0..n)
            .map(|_| DistinguishedName::from(vec![0x30; len]))
            .collect()
    }

    #[test]
    fn auto_sends_a_list_up_to_the_limit_and_omits_a_larger_one() {
        // Each name costs len + 2, the list 2 more.
        let at_limit = names(1, AUTO_LIMIT - 4);
        let decision = CaNames::decide(CaNamesMode::Auto, &at_limit, 13);
        assert_eq!(decision.bytes, AUTO_LIMIT);
        assert!(decision.sent);
        let over = names(1, AUTO_LIMIT - 3);
        let decision = CaNames::decide(CaNamesMode::Auto, &over, 13);
        assert!(!decision.sent && decision.omitted_for_size());
        assert!(decision.to_string().contains("--ca-names all"));
    }

    #[test]
    fn all_and_none_ignore_the_size() {
        let big = names(2000, 40);
        let all = CaNames::decide(CaNamesMode::All, &big, 13);
        assert!(all.sent && all.oversized() && all.unencodable());
        let none = CaNames::decide(CaNamesMode::None, &names(1, 10), 13);
        assert!(!none.sent && !none.omitted_for_size());
        assert_eq!(none.bytes, 2 + 12);
    }

    #[test]
    fn wire_limit_leaves_room_for_the_signature_algorithms() {
        assert_eq!(wire_limit(13), 65_499);
        let fits = CaNames::decide(CaNamesMode::All, &names(1, 65_499 - 4), 13);
        assert!(fits.sent && !fits.unencodable());
        let over = CaNames::decide(CaNamesMode::All, &names(1, 65_499 - 3), 13);
        assert!(over.unencodable());
    }
}
