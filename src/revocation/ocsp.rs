//! OCSP (RFC 6960) for one client certificate: the request, and the full check of the answer.
//! Pure: no I/O and no clock of its own (`now` is given), so every rule is testable alone.
//!
//! What an answer must be before it counts (§3.2, §4.2.2.2):
//! - a `successful` response of type id-pkix-ocsp-basic that decodes;
//! - signed by the issuer itself, or by a responder certificate the issuer signed that carries
//!   id-kp-OCSPSigning and is valid now (webpki checks that certificate as it would any leaf,
//!   with the issuer as its only anchor);
//! - about our certificate: a SingleResponse whose CertID has our hash algorithm, issuer name
//!   hash, issuer key hash and serial;
//! - current: thisUpdate not in the future and nextUpdate (when given) not in the past, each
//!   with `SKEW` of allowance for clocks that disagree.
//!
//! The request names the certificate with SHA-1 hashes (RFC 5019 §2.1.1: what every responder
//! understands) and carries no nonce, so one answer can be cached and reused (RFC 5019 §2.1.2).

use std::fmt;
use std::sync::Arc;

use der::asn1::{Null, ObjectIdentifier, OctetString};
use der::{Decode, Encode, Reader, SliceReader};
use rustls::pki_types::{CertificateDer, SignatureVerificationAlgorithm, UnixTime};
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::AlgorithmIdentifierOwned;
use x509_ocsp::{
    BasicOcspResponse, CertId, CertStatus, OcspRequest, OcspResponse, OcspResponseStatus, Request,
    TbsRequest, Version,
};
use x509_parser::prelude::{FromDer, ParsedExtension, X509Certificate};

/// id-sha1.
const SHA1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.14.3.2.26");
/// id-pkix-ocsp-basic.
const OCSP_BASIC: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.1.1");
/// id-kp-OCSPSigning (1.3.6.1.5.5.7.3.9), the OID's value bytes, as webpki takes it.
const OCSP_SIGNING: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x09];
/// id-ad-ocsp, as x509-parser spells OIDs.
const AD_OCSP: &str = "1.3.6.1.5.5.7.48.1";

/// How far thisUpdate may lie ahead of our clock, and nextUpdate behind it (seconds).
pub(crate) const SKEW: i64 = 300;

/// What an answer is about: the issuer's key (SHA-1 of its subjectPublicKey) and the serial.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct CertKey {
    pub issuer_key_hash: [u8; 20],
    /// The serial's magnitude, big-endian, without leading zeros.
    pub serial: Box<[u8]>,
}

impl CertKey {
    /// The serial in hex, as `openssl x509 -serial` prints it.
    pub(crate) fn serial_hex(&self) -> String {
        self.serial.iter().map(|b| format!("{b:02X}")).collect()
    }
}

/// The CA that issued a client certificate, as OCSP names it.
pub(crate) struct Issuer {
    pub der: CertificateDer<'static>,
    /// Its subject, for messages.
    pub subject: String,
    /// Its subject, DER: what a leaf's issuer field must equal.
    pub subject_der: Vec<u8>,
    name_hash: [u8; 20],
    key_hash: [u8; 20],
}

impl fmt::Debug for Issuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Issuer")
            .field("subject", &self.subject)
            .finish()
    }
}

impl Issuer {
    /// `None` if the certificate cannot be parsed.
    pub(crate) fn new(der: CertificateDer<'static>) -> Option<Issuer> {
        let (_, cert) = X509Certificate::from_der(der.as_ref()).ok()?;
        let name_hash = sha1(cert.subject().as_raw());
        let key_hash = sha1(&cert.public_key().subject_public_key.data);
        let subject = cert.subject().to_string();
        let subject_der = cert.subject().as_raw().to_vec();
        Some(Issuer {
            der,
            subject,
            subject_der,
            name_hash,
            key_hash,
        })
    }
}

/// What the handshake's leaf tells OCSP: its serial, its issuer's name, and the
/// responders it names (authorityInfoAccess id-ad-ocsp, HTTP only).
#[derive(Debug, Clone)]
pub(crate) struct Leaf {
    /// The serial as the certificate encodes it (INTEGER contents).
    pub serial: Vec<u8>,
    /// The issuer's name, DER.
    pub issuer: Vec<u8>,
    pub responders: Vec<String>,
}

impl Leaf {
    pub(crate) fn parse(der: &[u8]) -> Option<Leaf> {
        let (_, cert) = X509Certificate::from_der(der).ok()?;
        let mut responders = Vec::new();
        for ext in cert.extensions() {
            let ParsedExtension::AuthorityInfoAccess(aia) = ext.parsed_extension() else {
                continue;
            };
            for desc in &aia.accessdescs {
                if desc.access_method.to_id_string() != AD_OCSP {
                    continue;
                }
                if let x509_parser::extensions::GeneralName::URI(uri) = &desc.access_location {
                    responders.push((*uri).to_owned());
                }
            }
        }
        Some(Leaf {
            serial: cert.tbs_certificate.raw_serial().to_vec(),
            issuer: cert.issuer().as_raw().to_vec(),
            responders,
        })
    }
}

/// One certificate's question: the request to send, where, and what the answer must match.
#[derive(Debug)]
pub(crate) struct Query {
    pub key: CertKey,
    pub issuer: Arc<Issuer>,
    /// The responder asked.
    pub url: String,
    /// The OCSPRequest, DER.
    pub request: Vec<u8>,
}

impl Query {
    /// The question about the certificate with `serial` (INTEGER contents) from `issuer`.
    pub(crate) fn new(issuer: Arc<Issuer>, serial: &[u8], url: String) -> Result<Query, String> {
        let serial =
            SerialNumber::new(serial).map_err(|e| format!("unusable serial number: {e}"))?;
        let cert_id = CertId {
            hash_algorithm: AlgorithmIdentifierOwned {
                oid: SHA1,
                parameters: Some(Null.into()),
            },
            issuer_name_hash: octets(&issuer.name_hash)?,
            issuer_key_hash: octets(&issuer.key_hash)?,
            serial_number: serial.clone(),
        };
        let request = OcspRequest {
            tbs_request: TbsRequest {
                version: Version::V1,
                requestor_name: None,
                request_list: vec![Request {
                    req_cert: cert_id,
                    single_request_extensions: None,
                }],
                request_extensions: None,
            },
            optional_signature: None,
        }
        .to_der()
        .map_err(|e| format!("cannot encode the OCSP request: {e}"))?;
        Ok(Query {
            key: CertKey {
                issuer_key_hash: issuer.key_hash,
                serial: magnitude(serial.as_bytes()).into(),
            },
            issuer,
            url,
            request,
        })
    }
}

/// The certificate's status, as a valid answer gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    Good,
    /// Revoked at this time (Unix seconds).
    Revoked {
        at: i64,
    },
    /// The responder does not know the certificate.
    Unknown,
}

impl Status {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Status::Good => "good",
            Status::Revoked { .. } => "revoked",
            Status::Unknown => "unknown",
        }
    }
}

/// A valid answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Answer {
    pub status: Status,
    /// Unix seconds.
    pub this_update: i64,
    pub next_update: Option<i64>,
}

/// Why an answer does not count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Invalid {
    /// It does not decode as an OCSPResponse.
    Malformed(String),
    /// The responder said something other than `successful`.
    Refused(OcspResponseStatus),
    /// No key that may sign for the issuer made the signature.
    BadSignature,
    /// The signer's certificate is not one the issuer authorised to answer (its reason).
    UnauthorizedSigner { subject: String, why: String },
    /// No SingleResponse is about our certificate.
    NotAnswered,
    /// thisUpdate lies in the future.
    NotYetValid { this_update: i64 },
    /// nextUpdate has passed.
    Expired { next_update: i64 },
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Invalid::Malformed(e) => write!(f, "not an OCSP response: {e}"),
            Invalid::Refused(status) => write!(f, "the responder answered {status:?}"),
            Invalid::BadSignature => {
                f.write_str("not signed by the issuer nor by a responder certificate it issued")
            }
            Invalid::UnauthorizedSigner { subject, why } => write!(
                f,
                "signed by {subject}, which may not answer for the issuer: {why}"
            ),
            Invalid::NotAnswered => f.write_str("no answer about this certificate in it"),
            Invalid::NotYetValid { this_update } => write!(
                f,
                "thisUpdate {} is in the future",
                crate::time_format::spelled(*this_update)
            ),
            Invalid::Expired { next_update } => write!(
                f,
                "expired: nextUpdate {} has passed",
                crate::time_format::spelled(*next_update)
            ),
        }
    }
}

/// Checks the responder's `body` as the answer to `query` at `now` (Unix seconds), with
/// `algs` the signature algorithms we accept.
pub(crate) fn check(
    query: &Query,
    body: &[u8],
    now: i64,
    algs: &[&'static dyn SignatureVerificationAlgorithm],
) -> Result<Answer, Invalid> {
    let malformed = |e: der::Error| Invalid::Malformed(e.to_string());
    let response = OcspResponse::from_der(body).map_err(malformed)?;
    if response.response_status != OcspResponseStatus::Successful {
        return Err(Invalid::Refused(response.response_status));
    }
    let bytes = response
        .response_bytes
        .ok_or_else(|| Invalid::Malformed("a successful response without responseBytes".into()))?;
    if bytes.response_type != OCSP_BASIC {
        return Err(Invalid::Malformed(format!(
            "response type {} is not id-pkix-ocsp-basic",
            bytes.response_type
        )));
    }
    let raw = bytes.response.as_bytes();
    let basic = BasicOcspResponse::from_der(raw).map_err(malformed)?;
    // The signature covers tbsResponseData as it was sent: take those bytes, not a re-encoding.
    let tbs = first_element(raw)
        .ok_or_else(|| Invalid::Malformed("tbsResponseData cannot be located".into()))?;
    let signature = basic
        .signature
        .as_bytes()
        .ok_or_else(|| Invalid::Malformed("the signature is not a whole number of bytes".into()))?;
    let algorithm = basic.signature_algorithm.to_der().map_err(malformed)?;
    let algorithm = contents(&algorithm)
        .ok_or_else(|| Invalid::Malformed("the signature algorithm does not decode".into()))?;
    let signed = Signed {
        tbs,
        algorithm,
        signature,
        algs,
    };
    authorised_signer(query, &basic, &signed, now)?;

    let single = basic
        .tbs_response_data
        .responses
        .iter()
        .find(|r| about(&r.cert_id, query))
        .ok_or(Invalid::NotAnswered)?;
    let this_update = secs(&single.this_update.0);
    let next_update = single.next_update.as_ref().map(|t| secs(&t.0));
    if this_update > now.saturating_add(SKEW) {
        return Err(Invalid::NotYetValid { this_update });
    }
    if let Some(next_update) = next_update.filter(|&n| n.saturating_add(SKEW) < now) {
        return Err(Invalid::Expired { next_update });
    }
    let status = match &single.cert_status {
        CertStatus::Good(_) => Status::Good,
        CertStatus::Revoked(info) => Status::Revoked {
            at: secs(&info.revocation_time.0),
        },
        CertStatus::Unknown(_) => Status::Unknown,
    };
    Ok(Answer {
        status,
        this_update,
        next_update,
    })
}

/// What was signed, how, and the algorithms we accept.
struct Signed<'a> {
    tbs: &'a [u8],
    /// The AlgorithmIdentifier's contents, as rustls' algorithms name themselves.
    algorithm: &'a [u8],
    signature: &'a [u8],
    algs: &'a [&'static dyn SignatureVerificationAlgorithm],
}

impl Signed<'_> {
    /// Whether the key of `cert` made the signature.
    fn by(&self, cert: &CertificateDer<'_>) -> bool {
        let Ok(cert) = webpki::EndEntityCert::try_from(cert) else {
            return false;
        };
        self.algs
            .iter()
            .filter(|alg| alg.signature_alg_id().as_ref() == self.algorithm)
            .any(|alg| {
                cert.verify_signature(*alg, self.tbs, self.signature)
                    .is_ok()
            })
    }
}

/// Whether the key of `issuer` made the signature on the certificate `cert`.
pub(crate) fn signed_by(cert: &[u8], issuer: &CertificateDer<'_>) -> bool {
    let parts = (|| {
        let body = contents(cert)?;
        let tbs = first_element_of(body)?;
        let rest = &body[tbs.len()..];
        let algorithm = first_element_of(rest)?;
        let bits = contents(&rest[algorithm.len()..])?;
        // A BIT STRING's first byte counts the unused bits: none in a signature.
        let signature = bits.strip_prefix(&[0])?;
        Some((tbs, contents(algorithm)?, signature))
    })();
    let Some((tbs, algorithm, signature)) = parts else {
        return false;
    };
    Signed {
        tbs,
        algorithm,
        signature,
        algs: webpki::ALL_VERIFICATION_ALGS,
    }
    .by(issuer)
}

/// The issuer signed it, or a delegated responder whose certificate the issuer issued with
/// id-kp-OCSPSigning (RFC 6960 §4.2.2.2).
fn authorised_signer(
    query: &Query,
    basic: &BasicOcspResponse,
    signed: &Signed<'_>,
    now: i64,
) -> Result<(), Invalid> {
    if signed.by(&query.issuer.der) {
        return Ok(());
    }
    for cert in basic.certs.iter().flatten() {
        let Ok(der) = cert.to_der() else { continue };
        let der = CertificateDer::from(der);
        if !signed.by(&der) {
            continue;
        }
        let subject = X509Certificate::from_der(der.as_ref())
            .map(|(_, c)| c.subject().to_string())
            .unwrap_or_else(|_| "an unparsable certificate".into());
        let unauthorised = |why: String| Invalid::UnauthorizedSigner {
            subject: subject.clone(),
            why,
        };
        let anchor = webpki::anchor_from_trusted_cert(&query.issuer.der)
            .map_err(|e| unauthorised(format!("the issuer is not usable as its anchor: {e}")))?;
        let responder = webpki::EndEntityCert::try_from(&der)
            .map_err(|e| unauthorised(format!("cannot be parsed: {e}")))?;
        let at = UnixTime::since_unix_epoch(std::time::Duration::from_secs(
            u64::try_from(now).unwrap_or(0),
        ));
        return responder
            .verify_for_usage(
                signed.algs,
                &[anchor],
                &[],
                at,
                webpki::KeyUsage::required(OCSP_SIGNING),
                None,
                None,
            )
            .map(|_| ())
            .map_err(|e| unauthorised(responder_problem(e)));
    }
    Err(Invalid::BadSignature)
}

/// webpki's verdict on a responder certificate, in words.
fn responder_problem(e: webpki::Error) -> String {
    match e {
        webpki::Error::RequiredEkuNotFoundContext(_) => {
            "it lacks extended key usage id-kp-OCSPSigning".into()
        }
        webpki::Error::UnknownIssuer => "the issuer did not issue it".into(),
        other => format!("{other:?}"),
    }
}

/// Whether `id` names the certificate of `query`.
fn about(id: &CertId, query: &Query) -> bool {
    id.hash_algorithm.oid == SHA1
        && id.issuer_name_hash.as_bytes() == query.issuer.name_hash
        && id.issuer_key_hash.as_bytes() == query.key.issuer_key_hash
        && *magnitude(id.serial_number.as_bytes()) == *query.key.serial
}

fn secs(t: &der::asn1::GeneralizedTime) -> i64 {
    i64::try_from(t.to_unix_duration().as_secs()).unwrap_or(i64::MAX)
}

fn octets(bytes: &[u8]) -> Result<OctetString, String> {
    OctetString::new(bytes).map_err(|e| e.to_string())
}

/// A serial's magnitude: the INTEGER contents without leading zero bytes.
pub(crate) fn magnitude(serial: &[u8]) -> &[u8] {
    let start = serial
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(serial.len().saturating_sub(1));
    &serial[start..]
}

pub(crate) fn sha1(bytes: &[u8]) -> [u8; 20] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, bytes);
    let mut out = [0u8; 20];
    out.copy_from_slice(digest.as_ref());
    out
}

/// The first element of the SEQUENCE `seq`, header included, as encoded.
fn first_element(seq: &[u8]) -> Option<&[u8]> {
    first_element_of(contents(seq)?)
}

/// The first TLV of `bytes` (a SEQUENCE's contents), header included.
fn first_element_of(bytes: &[u8]) -> Option<&[u8]> {
    let mut reader = SliceReader::new(bytes).ok()?;
    let header = der::Header::decode(&mut reader).ok()?;
    let header_end = usize::try_from(reader.position()).ok()?;
    let len = usize::try_from(header.length).ok()?;
    bytes.get(..header_end.checked_add(len)?)
}

/// The contents of the one TLV `tlv` (its value, without tag and length).
fn contents(tlv: &[u8]) -> Option<&[u8]> {
    let mut reader = SliceReader::new(tlv).ok()?;
    let header = der::Header::decode(&mut reader).ok()?;
    let start = usize::try_from(reader.position()).ok()?;
    let len = usize::try_from(header.length).ok()?;
    tlv.get(start..start.checked_add(len)?)
}
