//! Identity allow-lists (`--allow-cn`, `--allow-ou`, `--allow-dns`, `--allow-uri`), enforced
//! inside the handshake: a client whose chain is valid but whose certificate matches none of
//! the entries is refused with alert access_denied (49), like ghostunnel's flags. Entries of
//! all kinds are ORed together.
//!
//! Matching: CN and OU compare whole values; a DNS entry compares label by label and a URI entry
//! path segment by path segment, where `*` stands for exactly one label or segment
//! (`*.svc.example.com`, `spiffe://example.org/ns/*/sa/web`).

use std::fmt;
use std::sync::Arc;

use rustls::CertificateError;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};

use super::identity::{self, ClientIdentity};

/// Which client identities get through.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList {
    pub cn: Vec<String>,
    pub ou: Vec<String>,
    pub dns: Vec<String>,
    pub uri: Vec<String>,
    /// `--allow-all` was given. It admits what an empty list admits; it is kept only so that
    /// `check` reports the flag when, and only when, the user passed it.
    pub all: bool,
}

impl AllowList {
    /// No entry at all: every client with a valid chain is allowed.
    pub fn is_empty(&self) -> bool {
        self.cn.is_empty() && self.ou.is_empty() && self.dns.is_empty() && self.uri.is_empty()
    }

    /// Whether the client's identity matches any entry. The CN is the certificate's one CN
    /// (`identity`'s rule: none when there are several), the same one SSL_CN and the log name.
    pub fn allows(&self, client: &ClientIdentity) -> bool {
        client
            .common_name()
            .is_some_and(|cn| self.cn.iter().any(|want| want == cn))
            || client
                .ous
                .iter()
                .any(|ou| self.ou.iter().any(|want| want == ou))
            || client
                .dns
                .iter()
                .any(|d| self.dns.iter().any(|p| matches_parts(p, d, '.')))
            || client
                .uris
                .iter()
                .any(|u| self.uri.iter().any(|p| matches_parts(p, u, '/')))
    }
}

impl fmt::Display for AllowList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str(if self.all {
                "any client with a valid chain (--allow-all)"
            } else {
                "any client with a valid chain (no --allow-* flag given)"
            });
        }
        let mut first = true;
        for (kind, values) in [
            ("CN", &self.cn),
            ("OU", &self.ou),
            ("DNS", &self.dns),
            ("URI", &self.uri),
        ] {
            for v in values {
                if !first {
                    f.write_str(" or ")?;
                }
                first = false;
                write!(f, "{kind}={v}")?;
            }
        }
        Ok(())
    }
}

/// Compares `pattern` and `value` part by part (split on `sep`); `*` matches one whole part.
/// DNS names compare case-insensitively (RFC 4343), URIs exactly.
fn matches_parts(pattern: &str, value: &str, sep: char) -> bool {
    let mut want = pattern.split(sep);
    let mut have = value.split(sep);
    loop {
        match (want.next(), have.next()) {
            (None, None) => return true,
            (Some("*"), Some(part)) if !part.is_empty() => {}
            (Some(w), Some(h)) if sep == '.' && w.eq_ignore_ascii_case(h) => {}
            (Some(w), Some(h)) if w == h => {}
            _ => return false,
        }
    }
}

/// Wraps the chain verifier: a valid chain must also match the allow-list.
#[derive(Debug)]
pub(crate) struct AllowListVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    allow: AllowList,
}

impl AllowListVerifier {
    pub(crate) fn new(
        inner: Arc<dyn ClientCertVerifier>,
        allow: AllowList,
    ) -> Arc<AllowListVerifier> {
        Arc::new(AllowListVerifier { inner, allow })
    }
}

impl ClientCertVerifier for AllowListVerifier {
    delegate_client_verifier!();

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        if identity::of(end_entity).is_some_and(|client| self.allow.allows(&client)) {
            Ok(verified)
        } else {
            // rustls answers this with alert access_denied (49).
            Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn star_matches_exactly_one_label_or_segment() {
        assert!(matches_parts("*.example.com", "a.example.com", '.'));
        assert!(matches_parts("*.example.com", "A.Example.COM", '.'));
        assert!(!matches_parts("*.example.com", "a.b.example.com", '.'));
        assert!(!matches_parts("*.example.com", "example.com", '.'));
        assert!(matches_parts(
            "spiffe://example.org/ns/*/sa/web",
            "spiffe://example.org/ns/prod/sa/web",
            '/'
        ));
        assert!(!matches_parts(
            "spiffe://example.org/ns/*/sa/web",
            "spiffe://example.org/ns/a/b/sa/web",
            '/'
        ));
        assert!(!matches_parts(
            "spiffe://example.org/ns/*",
            "spiffe://example.org/ns/",
            '/'
        ));
        assert!(!matches_parts(
            "spiffe://Example.org/x",
            "spiffe://example.org/x",
            '/'
        ));
    }
}
