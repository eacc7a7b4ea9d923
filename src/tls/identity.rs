//! A client certificate's identity: parsed once, read by everything that names the client.
//!
//! Every field of a client certificate is the client's to choose (within what its CA signs),
//! so its identity is read from parsed attributes, never from a formatted subject cut apart
//! again: a subject `O="x, CN=admin", CN=bob` has one CN, `bob`, whatever its string looks
//! like. One `ClientIdentity` value feeds the `--allow-*` lists (inside the handshake), the
//! PROXY v2 header (`SSL_CN`, `UNIQUE_ID`), the event log and `check`, so none of them can
//! disagree with another about who the client is.
//!
//! The CN rule, the same everywhere: a certificate's CN is the value of its subject's one
//! commonName attribute. With no commonName, several (in one RDN or in several), or one whose
//! value cannot be decoded as a directory string or holds a control character (an embedded NUL
//! would end the name early for a C upstream reading SSL_CN), the certificate has **no CN**:
//! `--allow-cn` matches nothing, no SSL_CN TLV is sent, and the log's `client` is empty (its
//! `subject` still shows every attribute, escaped). An ambiguous name is no name, rather than a
//! choice an attacker can steer.
//!
//! Each worker keeps the identities of the certificates its live connections hold, by SHA-256:
//! clients open many connections with one certificate, and the verifier, the session's log
//! fields and the PROXY header then share one parse.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::IpAddr;
use std::rc::Rc;

use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use super::x509::{self, CertInfo};

/// Who a client certificate says its holder is.
#[derive(Debug, Clone)]
pub struct ClientIdentity {
    /// Subject, issuer, serial, validity, algorithms, SANs as display strings.
    pub info: CertInfo,
    /// SHA-256 of the certificate's DER.
    pub sha256: [u8; 32],
    /// The CN, by the rule above.
    cn: Option<String>,
    /// Every commonName value that decoded, in certificate order (for the log's `subject` the
    /// escaped string is used; this is for tests and `check`).
    pub cns: Vec<String>,
    /// organizationalUnitName values that decoded.
    pub ous: Vec<String>,
    pub dns: Vec<String>,
    pub uris: Vec<String>,
    pub emails: Vec<String>,
    pub ips: Vec<IpAddr>,
}

impl ClientIdentity {
    /// Parses a DER certificate; the error is x509-parser's.
    pub fn parse(der: &[u8]) -> Result<ClientIdentity, x509::ParseError> {
        let (_, cert) = X509Certificate::from_der(der)?;
        Ok(ClientIdentity::of(&cert, x509::sha256(der)))
    }

    fn of(cert: &X509Certificate<'_>, sha256: [u8; 32]) -> ClientIdentity {
        let subject = cert.subject();
        let cn_attrs: Vec<_> = subject.iter_common_name().collect();
        let cns: Vec<String> = cn_attrs
            .iter()
            .filter_map(|a| x509::attribute_text(a.attr_value()))
            .collect();
        let cn = match (cn_attrs.len(), cns.as_slice()) {
            (1, [only]) if !only.is_empty() && !only.chars().any(char::is_control) => {
                Some(only.clone())
            }
            _ => None,
        };
        let ous = subject
            .iter_organizational_unit()
            .filter_map(|a| x509::attribute_text(a.attr_value()))
            .collect();
        let mut identity = ClientIdentity {
            info: CertInfo::of(cert),
            sha256,
            cn,
            cns,
            ous,
            dns: Vec::new(),
            uris: Vec::new(),
            emails: Vec::new(),
            ips: Vec::new(),
        };
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(d) => identity.dns.push((*d).to_owned()),
                    GeneralName::URI(u) => identity.uris.push((*u).to_owned()),
                    GeneralName::RFC822Name(e) => identity.emails.push((*e).to_owned()),
                    GeneralName::IPAddress(ip) => {
                        if let Ok(v4) = <[u8; 4]>::try_from(*ip) {
                            identity.ips.push(IpAddr::from(v4));
                        } else if let Ok(v6) = <[u8; 16]>::try_from(*ip) {
                            identity.ips.push(IpAddr::from(v6));
                        }
                    }
                    _ => {}
                }
            }
        }
        identity
    }

    /// The certificate's CN, if it has exactly one usable CN (see the module doc).
    pub fn common_name(&self) -> Option<&str> {
        self.cn.as_deref()
    }
}

/// Entries a worker's map holds before its first sweep of those no connection holds any more.
const REMEMBERED: usize = 1024;

/// This worker's parsed client certificates, by SHA-256.
struct Parsed {
    /// Strong references: an identity parsed by the verifier stays until the session reads it
    /// moments later; a sweep drops those only the map still holds.
    map: HashMap<[u8; 32], Rc<ClientIdentity>>,
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

/// The identity of the certificate `der`, parsed unless this worker has it already; `None`
/// when it does not parse.
pub(crate) fn of(der: &[u8]) -> Option<Rc<ClientIdentity>> {
    let digest = x509::sha256(der);
    PARSED.with(|parsed| {
        let mut parsed = parsed.borrow_mut();
        if let Some(identity) = parsed.map.get(&digest) {
            return Some(Rc::clone(identity));
        }
        let (_, cert) = X509Certificate::from_der(der).ok()?;
        let identity = Rc::new(ClientIdentity::of(&cert, digest));
        if parsed.map.len() >= parsed.sweep_at {
            parsed.map.retain(|_, id| Rc::strong_count(id) > 1);
            parsed.sweep_at = (2 * parsed.map.len()).max(REMEMBERED);
        }
        parsed.map.insert(digest, Rc::clone(&identity));
        Some(identity)
    })
}

#[cfg(test)]
mod tests {
    use rcgen::{CertificateParams, DistinguishedName, DnType, DnValue, KeyPair, SanType};

    use super::*;

    fn cert(dn: DistinguishedName, sans: Vec<SanType>) -> Vec<u8> {
        let mut params = CertificateParams::default();
        params.distinguished_name = dn;
        params.subject_alt_names = sans;
        let key = KeyPair::generate().expect("key");
        params.self_signed(&key).expect("cert").der().to_vec()
    }

    fn dn(entries: &[(DnType, DnValue)]) -> DistinguishedName {
        let mut dn = DistinguishedName::new();
        for (ty, value) in entries {
            dn.push(ty.clone(), value.clone());
        }
        dn
    }

    fn utf8(s: &str) -> DnValue {
        DnValue::Utf8String(s.to_owned())
    }

    /// commonName under a type rcgen keeps apart from `DnType::CommonName`: a second CN.
    fn second_cn() -> DnType {
        DnType::CustomDnType(vec![2, 5, 4, 3])
    }

    #[test]
    fn cn_inside_another_attribute_is_not_the_cn() {
        let der = cert(
            dn(&[
                (DnType::OrganizationName, utf8("x, CN=admin")),
                (DnType::OrganizationalUnitName, utf8("CN=root+OU=ops")),
                (DnType::CommonName, utf8("bob")),
            ]),
            vec![],
        );
        let id = ClientIdentity::parse(&der).expect("parse");
        assert_eq!(id.common_name(), Some("bob"));
        assert_eq!(
            id.info.subject,
            "O=x\\, CN=admin, OU=CN=root\\+OU=ops, CN=bob"
        );
        assert_eq!(id.ous, ["CN=root+OU=ops"]);
    }

    #[test]
    fn a_certificate_without_cn_has_none() {
        let der = cert(dn(&[(DnType::OrganizationName, utf8("Acme"))]), vec![]);
        let id = ClientIdentity::parse(&der).expect("parse");
        assert_eq!(id.common_name(), None);
        assert_eq!(id.info.subject, "O=Acme");
    }

    #[test]
    fn two_cns_make_no_cn() {
        let der = cert(
            dn(&[
                (DnType::CommonName, utf8("admin")),
                (second_cn(), utf8("bob")),
            ]),
            vec![],
        );
        let id = ClientIdentity::parse(&der).expect("parse");
        assert_eq!(id.cns, ["admin", "bob"]);
        assert_eq!(id.common_name(), None);
        assert_eq!(id.info.subject, "CN=admin, CN=bob");
    }

    #[test]
    fn an_embedded_nul_or_control_character_makes_no_cn() {
        for bad in ["bob\0admin", "bob\nINFO forged=1", ""] {
            let der = cert(dn(&[(DnType::CommonName, utf8(bad))]), vec![]);
            let id = ClientIdentity::parse(&der).expect("parse");
            assert_eq!(id.common_name(), None, "{bad:?}");
        }
        let der = cert(dn(&[(DnType::CommonName, utf8("bob\0admin"))]), vec![]);
        let id = ClientIdentity::parse(&der).expect("parse");
        assert_eq!(id.info.subject, "CN=bob\\00admin");
    }

    #[test]
    fn decodes_bmp_universal_teletex_and_utf8_values() {
        let cases = [
            (
                DnValue::BmpString("Jürgen Ω".try_into().expect("bmp")),
                "Jürgen Ω",
            ),
            (
                DnValue::UniversalString("Zoë 😀".try_into().expect("universal")),
                "Zoë 😀",
            ),
            (
                DnValue::TeletexString("plain".try_into().expect("teletex")),
                "plain",
            ),
            (utf8("Łukasz ✓"), "Łukasz ✓"),
            (
                DnValue::PrintableString("Bob Smith".try_into().expect("printable")),
                "Bob Smith",
            ),
        ];
        for (value, want) in cases {
            let der = cert(dn(&[(DnType::CommonName, value)]), vec![]);
            let id = ClientIdentity::parse(&der).expect("parse");
            assert_eq!(id.common_name(), Some(want));
        }
    }

    #[test]
    fn escapes_what_rfc_4514_says() {
        let der = cert(
            dn(&[(DnType::CommonName, utf8(" #a\"b\\c<d>e;f "))]),
            vec![],
        );
        let id = ClientIdentity::parse(&der).expect("parse");
        assert_eq!(id.common_name(), Some(" #a\"b\\c<d>e;f "));
        assert_eq!(id.info.subject, "CN=\\ #a\\\"b\\\\c\\<d\\>e\\;f\\ ");
    }

    #[test]
    fn sans_are_kept_by_kind_and_never_taken_for_a_cn() {
        let der = cert(
            dn(&[(DnType::CommonName, utf8("bob"))]),
            vec![
                SanType::DnsName("admin".try_into().expect("dns")),
                SanType::URI("spiffe://example.org/ns/a/sa/web".try_into().expect("uri")),
                SanType::Rfc822Name("bob@example.org".try_into().expect("email")),
                SanType::IpAddress("10.0.0.1".parse().expect("ip")),
            ],
        );
        let id = ClientIdentity::parse(&der).expect("parse");
        assert_eq!(id.common_name(), Some("bob"));
        assert_eq!(id.dns, ["admin"]);
        assert_eq!(id.uris, ["spiffe://example.org/ns/a/sa/web"]);
        assert_eq!(id.emails, ["bob@example.org"]);
        assert_eq!(id.ips, [IpAddr::from([10, 0, 0, 1])]);
    }

    #[test]
    fn a_comma_in_a_san_cannot_pass_for_a_second_one_in_the_display() {
        let der = cert(
            dn(&[(DnType::CommonName, utf8("bob"))]),
            vec![SanType::DnsName("a,DNS:admin".try_into().expect("dns"))],
        );
        let id = ClientIdentity::parse(&der).expect("parse");
        assert_eq!(id.dns, ["a,DNS:admin"]);
        assert_eq!(id.info.sans, ["DNS:a\\,DNS:admin"]);
    }

    #[test]
    fn connections_with_one_certificate_share_its_identity() {
        let der = |cn: &str| cert(dn(&[(DnType::CommonName, utf8(cn))]), vec![]);
        let (alice, bob) = (der("alice"), der("bob"));
        let a1 = of(&alice).expect("parsed");
        let a2 = of(&alice).expect("parsed");
        let b = of(&bob).expect("parsed");
        assert!(Rc::ptr_eq(&a1, &a2), "parsed twice");
        assert!(!Rc::ptr_eq(&a1, &b));
        assert_eq!(a1.sha256, x509::sha256(&alice));
        assert!(of(b"not a certificate").is_none());
    }
}
