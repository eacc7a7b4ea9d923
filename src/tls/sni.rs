//! Choosing the server certificate by SNI when several `--crt`/`--key` pairs are given.
//!
//! rustls' own SNI resolver matches exact names only; here a certificate is chosen when one of
//! its DNS subjectAltNames matches the SNI as RFC 6125 §6.4 says: case-insensitively, and a
//! wildcard only as the whole leftmost label, standing for exactly one label (`*.example.com`
//! matches `api.example.com`, not `example.com` or `a.b.example.com`). The first pair is the
//! default, for clients without SNI or with a name no certificate covers.

use std::sync::Arc;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// One certificate and the DNS names it covers.
#[derive(Debug)]
struct Candidate {
    names: Vec<String>,
    key: Arc<CertifiedKey>,
}

#[derive(Debug)]
pub(super) struct SniResolver {
    /// In `--crt` order; the first is the default.
    candidates: Vec<Candidate>,
}

impl SniResolver {
    /// `certs`: each certificate with its SAN strings as `CertInfo::sans` spells them
    /// (`DNS:name`, `IP:addr`, ...); only the DNS names take part in the choice.
    pub(super) fn new(certs: Vec<(Arc<CertifiedKey>, Vec<String>)>) -> SniResolver {
        SniResolver {
            candidates: certs
                .into_iter()
                .map(|(key, sans)| Candidate {
                    names: sans
                        .iter()
                        .filter_map(|s| s.strip_prefix("DNS:"))
                        .map(str::to_ascii_lowercase)
                        .collect(),
                    key,
                })
                .collect(),
        }
    }

    fn choose(&self, sni: Option<&str>) -> Option<Arc<CertifiedKey>> {
        let chosen = sni.and_then(|sni| {
            let sni = sni.to_ascii_lowercase();
            self.candidates
                .iter()
                .find(|c| c.names.iter().any(|n| dns_matches(n, &sni)))
        });
        chosen.or(self.candidates.first()).map(|c| c.key.clone())
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.choose(client_hello.server_name())
    }
}

/// RFC 6125 §6.4.3, restricted as browsers do: `*` only as the entire leftmost label.
fn dns_matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(suffix) => name
            .split_once('.')
            .is_some_and(|(first, rest)| !first.is_empty() && rest == suffix),
        None => pattern == name,
    }
}

#[cfg(test)]
mod tests {
    use super::dns_matches;

    #[test]
    fn wildcard_covers_exactly_one_leftmost_label() {
        assert!(dns_matches("api.example.com", "api.example.com"));
        assert!(dns_matches("*.example.com", "api.example.com"));
        assert!(!dns_matches("*.example.com", "example.com"));
        assert!(!dns_matches("*.example.com", "a.b.example.com"));
        assert!(!dns_matches("*.example.com", ".example.com"));
        assert!(!dns_matches("api.example.com", "www.example.com"));
    }
}
