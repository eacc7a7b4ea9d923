//! Facts read from one X.509 certificate with x509-parser, for the CA rules, the log and `check`.
//!
//! rustls and webpki do not expose the subject, validity or extensions of a certificate, and
//! webpki accepts any certificate as a trust anchor; this module is where we look inside.

use std::fmt;

use x509_parser::prelude::*;

/// Reasons a certificate cannot serve as a trust anchor (RFC 5280 §4.2.1.9 and §4.2.1.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaProblem {
    NoBasicConstraints,
    NotCa,
    NoKeyCertSign,
    BadExtension(String),
}

impl fmt::Display for CaProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CaProblem::NoBasicConstraints => {
                f.write_str("is not a CA: it has no basicConstraints extension")
            }
            CaProblem::NotCa => f.write_str("is not a CA: basicConstraints cA is false"),
            CaProblem::NoKeyCertSign => {
                f.write_str("cannot sign certificates: its keyUsage lacks keyCertSign")
            }
            CaProblem::BadExtension(e) => write!(f, "has a malformed extension: {e}"),
        }
    }
}

/// What we keep of a parsed certificate.
#[derive(Debug, Clone)]
pub struct CertInfo {
    pub subject: String,
    pub issuer: String,
    /// Seconds since the Unix epoch.
    pub not_before: i64,
    pub not_after: i64,
    pub serial_hex: String,
    pub sans: Vec<String>,
    pub key_type: String,
    /// OpenSSL short names (`ecdsa-with-SHA256`, `id-ecPublicKey`), as HAProxy reports them.
    pub sig_alg: String,
    pub key_alg: String,
    /// `Ok` when usable as a trust anchor.
    pub ca: Result<(), CaProblem>,
}

/// Why DER is not a certificate, as x509-parser says.
pub(crate) type ParseError = x509_parser::nom::Err<x509_parser::error::X509Error>;

impl CertInfo {
    /// Parses a DER certificate; the error is x509-parser's.
    pub fn parse(der: &[u8]) -> Result<CertInfo, ParseError> {
        let (_, cert) = X509Certificate::from_der(der)?;
        Ok(CertInfo::of(&cert))
    }

    /// The facts of a certificate parsed already.
    pub fn of(cert: &X509Certificate<'_>) -> CertInfo {
        CertInfo {
            subject: name_or_empty(cert.subject()),
            issuer: name_or_empty(cert.issuer()),
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
            serial_hex: cert.raw_serial_as_string(),
            sans: sans(cert),
            key_type: key_type(cert),
            sig_alg: algorithm_name(&cert.signature_algorithm.algorithm.to_id_string()),
            key_alg: algorithm_name(&cert.public_key().algorithm.algorithm.to_id_string()),
            ca: ca_verdict(cert),
        }
    }
}

/// OpenSSL's short names for the algorithms a client certificate commonly uses, as HAProxy's
/// `ssl_c_sig_alg` / `ssl_c_key_alg` report them; the dotted OID otherwise.
fn algorithm_name(oid: &str) -> String {
    match oid {
        "1.2.840.10045.4.3.2" => "ecdsa-with-SHA256",
        "1.2.840.10045.4.3.3" => "ecdsa-with-SHA384",
        "1.2.840.10045.4.3.4" => "ecdsa-with-SHA512",
        "1.2.840.113549.1.1.11" => "sha256WithRSAEncryption",
        "1.2.840.113549.1.1.12" => "sha384WithRSAEncryption",
        "1.2.840.113549.1.1.13" => "sha512WithRSAEncryption",
        "1.2.840.113549.1.1.10" => "rsassaPss",
        "1.2.840.10045.2.1" => "id-ecPublicKey",
        "1.2.840.113549.1.1.1" => "rsaEncryption",
        "1.3.101.112" => "ED25519",
        other => other,
    }
    .to_owned()
}

fn name_or_empty(name: &X509Name<'_>) -> String {
    let s = name_string(name);
    if s.is_empty() { "no subject".into() } else { s }
}

/// A name as a string: attributes as `TYPE=value` in the certificate's order, RDNs joined by
/// `, `, the attributes of a multi-valued RDN by ` + `, and every value escaped as RFC 4514
/// §2.4 says, so no value can pass for a separator or another attribute: a subject
/// `O="x, CN=admin", CN=bob` reads `O=x\, CN=admin, CN=bob`. (x509-parser's `to_string` does not
/// escape.) A value that is not a string is `#` and its DER in hex (§2.4).
pub(crate) fn name_string(name: &X509Name<'_>) -> String {
    let mut out = String::new();
    for (i, rdn) in name.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        for (j, attr) in rdn.iter().enumerate() {
            if j > 0 {
                out.push_str(" + ");
            }
            out.push_str(&attribute_type_name(attr.attr_type()));
            out.push('=');
            match attribute_text(attr.attr_value()) {
                Some(text) => escape_rfc4514(&text, &mut out),
                None => {
                    out.push('#');
                    out.push_str(&hex(attr.attr_value().as_bytes()));
                }
            }
        }
    }
    out
}

/// The short names OpenSSL and RFC 4514 use for common attribute types; the dotted OID else.
fn attribute_type_name(oid: &x509_parser::der_parser::oid::Oid<'_>) -> String {
    match oid.to_id_string().as_str() {
        "2.5.4.3" => "CN",
        "2.5.4.4" => "SN",
        "2.5.4.5" => "serialNumber",
        "2.5.4.6" => "C",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.9" => "street",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "2.5.4.12" => "title",
        "2.5.4.42" => "GN",
        "2.5.4.46" => "dnQualifier",
        "0.9.2342.19200300.100.1.1" => "UID",
        "0.9.2342.19200300.100.1.25" => "DC",
        "1.2.840.113549.1.9.1" => "emailAddress",
        other => return other.to_owned(),
    }
    .to_owned()
}

/// The text of a directory-string attribute value (RFC 5280 §4.1.2.4), decoded by its type:
/// UTF8String, PrintableString, IA5String, NumericString and VisibleString as UTF-8 (strictly),
/// BMPString as UTF-16BE, UniversalString as UTF-32BE, TeletexString as Latin-1 (what OpenSSL
/// and most CAs mean by it). `None` for anything else or an undecodable value.
pub(crate) fn attribute_text(value: &x509_parser::der_parser::asn1_rs::Any<'_>) -> Option<String> {
    use x509_parser::der_parser::asn1_rs::Tag;
    let data = value.data;
    match value.tag() {
        Tag::Utf8String
        | Tag::PrintableString
        | Tag::Ia5String
        | Tag::NumericString
        | Tag::VisibleString => std::str::from_utf8(data).ok().map(str::to_owned),
        Tag::BmpString => {
            if data.len() % 2 != 0 {
                return None;
            }
            let units = data
                .chunks_exact(2)
                .map(|u| u16::from_be_bytes([u[0], u[1]]));
            char::decode_utf16(units)
                .collect::<Result<String, _>>()
                .ok()
        }
        Tag::UniversalString => {
            if data.len() % 4 != 0 {
                return None;
            }
            data.chunks_exact(4)
                .map(|c| char::from_u32(u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
                .collect()
        }
        Tag::T61String => Some(data.iter().map(|&b| char::from(b)).collect()),
        _ => None,
    }
}

/// Appends `value` escaped as an RFC 4514 §2.4 attribute value: `,` `+` `"` `\` `<` `>` `;`
/// with a backslash, a leading `#` or space and a trailing space likewise, NUL and other
/// control characters as `\XX` hex pairs of their UTF-8 bytes.
fn escape_rfc4514(value: &str, out: &mut String) {
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        match c {
            ',' | '+' | '"' | '\\' | '<' | '>' | ';' => {
                out.push('\\');
                out.push(c);
            }
            '#' | ' ' if i == 0 => {
                out.push('\\');
                out.push(c);
            }
            ' ' if i == last => out.push_str("\\ "),
            c if c.is_control() => {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    use std::fmt::Write;
                    // Writing into a String cannot fail.
                    let _ = write!(out, "\\{b:02X}");
                }
            }
            c => out.push(c),
        }
    }
}

fn ca_verdict(cert: &X509Certificate<'_>) -> Result<(), CaProblem> {
    match cert.basic_constraints() {
        Ok(Some(bc)) if bc.value.ca => {}
        Ok(Some(_)) => return Err(CaProblem::NotCa),
        Ok(None) => return Err(CaProblem::NoBasicConstraints),
        Err(e) => return Err(CaProblem::BadExtension(e.to_string())),
    }
    match cert.key_usage() {
        Ok(Some(ku)) if !ku.value.key_cert_sign() => Err(CaProblem::NoKeyCertSign),
        Ok(_) => Ok(()),
        Err(e) => Err(CaProblem::BadExtension(e.to_string())),
    }
}

/// The SANs as `KIND:value` strings, for display (`check`, the log's `sans`, joined by `,`). A
/// value is the client's to choose and an IA5String may hold a comma: `,` and `\` in it are
/// escaped with a backslash, so `DNS:a,DNS:admin` cannot pass for two names.
fn sans(cert: &X509Certificate<'_>) -> Vec<String> {
    let Ok(Some(ext)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    ext.value
        .general_names
        .iter()
        .map(|name| match name {
            GeneralName::DNSName(d) => format!("DNS:{d}"),
            GeneralName::IPAddress(ip) => match ip.len() {
                4 => format!(
                    "IP:{}",
                    std::net::Ipv4Addr::from([ip[0], ip[1], ip[2], ip[3]])
                ),
                16 => {
                    let mut b = [0u8; 16];
                    b.copy_from_slice(ip);
                    format!("IP:{}", std::net::Ipv6Addr::from(b))
                }
                _ => "IP:?".into(),
            },
            GeneralName::URI(u) => format!("URI:{u}"),
            GeneralName::RFC822Name(e) => format!("email:{e}"),
            other => format!("{other:?}"),
        })
        .map(|san| {
            if san.contains([',', '\\']) {
                san.replace('\\', "\\\\").replace(',', "\\,")
            } else {
                san
            }
        })
        .collect()
}

fn key_type(cert: &X509Certificate<'_>) -> String {
    match cert.public_key().parsed() {
        Ok(x509_parser::public_key::PublicKey::RSA(rsa)) => format!("RSA-{}", rsa.key_size()),
        Ok(x509_parser::public_key::PublicKey::EC(ec)) => {
            let curve = cert
                .public_key()
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|oid| match oid.to_id_string().as_str() {
                    "1.2.840.10045.3.1.7" => "P-256".to_owned(),
                    "1.3.132.0.34" => "P-384".to_owned(),
                    "1.3.132.0.35" => "P-521".to_owned(),
                    other => other.to_owned(),
                })
                .unwrap_or_else(|| format!("{} bits", ec.key_size()));
            format!("ECDSA {curve}")
        }
        Ok(_) => match cert
            .public_key()
            .algorithm
            .algorithm
            .to_id_string()
            .as_str()
        {
            "1.3.101.112" => "Ed25519".into(),
            other => other.into(),
        },
        Err(_) => "unknown".into(),
    }
}

/// Lowercase hex SHA-256 of `der`, colon-free, for fingerprints.
pub(crate) fn sha256_hex(der: &[u8]) -> String {
    hex(&sha256(der))
}

/// SHA-256 of `der`.
pub(crate) fn sha256(der: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der).as_ref());
    out
}

/// Lowercase hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(2 * bytes.len());
    for b in bytes {
        use std::fmt::Write;
        // Writing into a String cannot fail.
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Seconds since the Unix epoch, now.
pub(crate) fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
