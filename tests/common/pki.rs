//! Per-run PKI built with rcgen: every CA and leaf a test needs is one call, good or broken
//! on purpose, and written only into a temp dir that disappears with the test.
//!
//! All keys are ECDSA P-256 except `Ca::server_rsa` (RSA-2048, for the PKCS#1 key test).
//! rcgen serialises keys as PKCS#8; SEC1 and PKCS#1 are derived here from the PKCS#8 DER (see
//! `KeyFormat`), so no external tool is needed to make them.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationList,
    CertificateRevocationListParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyIdMethod, KeyPair, KeyUsagePurpose, PKCS_RSA_SHA256,
    RevocationReason, RevokedCertParams, SerialNumber, date_time_ymd,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// Year every "current" CA certificate expires in (distinct from leaves, so `check` output can be
/// attributed).
pub const CA_NOT_AFTER_YEAR: i32 = 2091;
/// Year every "current" leaf certificate expires in.
pub const LEAF_NOT_AFTER_YEAR: i32 = 2089;

/// A temp dir the test's credentials and bundles are written into.
pub struct Dir {
    tmp: tempfile::TempDir,
}

impl Dir {
    pub fn new() -> Dir {
        Dir {
            tmp: tempfile::Builder::new()
                .prefix("ringtls-test-")
                .tempdir()
                .expect("create temp dir"),
        }
    }

    pub fn path(&self) -> &Path {
        self.tmp.path()
    }

    /// Writes `contents` to `name` inside the dir and returns the full path.
    pub fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.tmp.path().join(name);
        std::fs::write(&path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }
}

impl Default for Dir {
    fn default() -> Self {
        Dir::new()
    }
}

/// How a CA certificate is deliberately broken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CaFlaw {
    /// A well-formed CA: basicConstraints cA=TRUE, keyUsage keyCertSign + cRLSign.
    None,
    /// No basicConstraints extension at all.
    NoBasicConstraints,
    /// basicConstraints present with cA=FALSE.
    NotCa,
    /// keyUsage present but without keyCertSign.
    NoKeyCertSign,
    /// Validity ended in 2001.
    Expired,
}

/// How a client leaf is deliberately broken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientFlaw {
    /// extendedKeyUsage clientAuth, currently valid.
    None,
    /// extendedKeyUsage serverAuth only.
    ServerAuthOnly,
    /// Validity ended in 2001.
    Expired,
    /// Validity starts in 2090.
    NotYetValid,
    /// Valid from an hour ago until this many seconds from now.
    ExpiresIn(u64),
}

/// Serialisation of a private key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyFormat {
    /// `BEGIN PRIVATE KEY` (RFC 5208).
    Pkcs8,
    /// `BEGIN EC PRIVATE KEY` (RFC 5915), with the named-curve parameters.
    Sec1,
    /// `BEGIN RSA PRIVATE KEY` (RFC 8017 appendix A.1.2).
    Pkcs1,
}

static SERIAL: AtomicU64 = AtomicU64::new(1);

/// Unique positive serial numbers, so a CRL can revoke exactly one leaf.
fn next_serial() -> SerialNumber {
    let mut bytes = vec![0x52];
    bytes.extend_from_slice(&SERIAL.fetch_add(1, Ordering::Relaxed).to_be_bytes());
    SerialNumber::from_slice(&bytes)
}

fn dn(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn
}

fn current(params: &mut CertificateParams, not_after_year: i32) {
    params.not_before = date_time_ymd(2020, 1, 1);
    params.not_after = date_time_ymd(not_after_year, 1, 1);
}

fn expired(params: &mut CertificateParams) {
    params.not_before = date_time_ymd(2000, 1, 1);
    params.not_after = date_time_ymd(2001, 1, 1);
}

fn not_yet_valid(params: &mut CertificateParams) {
    params.not_before = date_time_ymd(2090, 1, 1);
    params.not_after = date_time_ymd(2095, 1, 1);
}

fn generate_p256() -> KeyPair {
    KeyPair::generate().expect("generate P-256 key")
}

/// A certificate authority (root or intermediate) that can issue leaves, intermediates and CRLs.
pub struct Ca {
    pub cn: String,
    issuer: CertifiedIssuer<'static, KeyPair>,
    /// Certificates between a leaf issued by this CA and the root: empty for a root, this CA's
    /// own certificate (and its parents') for an intermediate.
    chain_above: Vec<CertificateDer<'static>>,
}

impl Ca {
    /// A well-formed self-signed root CA.
    pub fn root(cn: &str) -> Ca {
        Ca::root_with(cn, CaFlaw::None)
    }

    /// A self-signed root CA, broken as `flaw` says.
    pub fn root_with(cn: &str, flaw: CaFlaw) -> Ca {
        let params = Ca::params(cn, flaw);
        let issuer =
            CertifiedIssuer::self_signed(params, generate_p256()).expect("self-sign root CA");
        Ca {
            cn: cn.to_owned(),
            issuer,
            chain_above: Vec::new(),
        }
    }

    /// A well-formed intermediate CA issued by this CA.
    pub fn intermediate(&self, cn: &str) -> Ca {
        self.intermediate_from(cn, Ca::params(cn, CaFlaw::None))
    }

    fn intermediate_from(&self, cn: &str, params: CertificateParams) -> Ca {
        let issuer = CertifiedIssuer::signed_by(params, generate_p256(), &self.issuer)
            .expect("sign intermediate CA");
        let mut chain_above = vec![issuer.der().clone()];
        chain_above.extend(self.chain_above.iter().cloned());
        Ca {
            cn: cn.to_owned(),
            issuer,
            chain_above,
        }
    }

    fn params(cn: &str, flaw: CaFlaw) -> CertificateParams {
        let mut params = CertificateParams::default();
        params.distinguished_name = dn(cn);
        params.serial_number = Some(next_serial());
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        current(&mut params, CA_NOT_AFTER_YEAR);
        match flaw {
            CaFlaw::None => {}
            CaFlaw::NoBasicConstraints => params.is_ca = IsCa::NoCa,
            CaFlaw::NotCa => params.is_ca = IsCa::ExplicitNoCa,
            CaFlaw::NoKeyCertSign => {
                params.key_usages =
                    vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::CrlSign]
            }
            CaFlaw::Expired => expired(&mut params),
        }
        params
    }

    /// The subject as the binary is expected to print it.
    pub fn subject(&self) -> String {
        format!("CN={}", self.cn)
    }

    pub fn der(&self) -> &CertificateDer<'static> {
        self.issuer.der()
    }

    /// This CA's certificate alone, PEM.
    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// Hex SHA-256 fingerprint of the DER certificate.
    pub fn fingerprint(&self) -> String {
        super::hex(&super::sha256(self.der()))
    }

    /// This CA's private key, PKCS#8 PEM (for an external tool to sign with, e.g. `openssl x509
    /// -req -CAkey`).
    pub fn key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }

    /// A valid client leaf with exactly the subject `dn` and the SANs given: for hostile
    /// subjects. `label` names it in test output.
    pub fn client_named(
        &self,
        label: &str,
        dn: DistinguishedName,
        sans: Vec<rcgen::SanType>,
    ) -> Leaf {
        let mut params = leaf_params(label);
        params.distinguished_name = dn;
        params.subject_alt_names = sans;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.issue(label, params, generate_p256())
    }

    /// A client leaf with clientAuth EKU.
    pub fn client(&self, cn: &str) -> Leaf {
        self.client_with(cn, ClientFlaw::None)
    }

    /// A client leaf, broken as `flaw` says.
    pub fn client_with(&self, cn: &str, flaw: ClientFlaw) -> Leaf {
        let mut params = leaf_params(cn);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        match flaw {
            ClientFlaw::None => {}
            ClientFlaw::ServerAuthOnly => {
                params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth]
            }
            ClientFlaw::Expired => expired(&mut params),
            ClientFlaw::NotYetValid => not_yet_valid(&mut params),
            ClientFlaw::ExpiresIn(secs) => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .expect("clock after 1970")
                    .as_secs() as i64;
                let at = |t: i64| time::OffsetDateTime::from_unix_timestamp(t).expect("time");
                params.not_before = at(now - 3600);
                params.not_after = at(now + secs as i64);
            }
        }
        self.issue(cn, params, generate_p256())
    }

    /// A valid client leaf carrying the identities the `--allow-*` flags look at: subject CN and
    /// optional OU, DNS and URI subjectAltNames.
    pub fn client_identity(&self, cn: &str, ou: Option<&str>, dns: &[&str], uris: &[&str]) -> Leaf {
        let mut params = leaf_params(cn);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        if let Some(ou) = ou {
            params
                .distinguished_name
                .push(rcgen::DnType::OrganizationalUnitName, ou);
        }
        for d in dns {
            params
                .subject_alt_names
                .push(rcgen::SanType::DnsName((*d).try_into().expect("DNS name")));
        }
        for u in uris {
            params
                .subject_alt_names
                .push(rcgen::SanType::URI((*u).try_into().expect("URI")));
        }
        self.issue(cn, params, generate_p256())
    }

    /// A client leaf whose cRLDistributionPoints name `url`.
    pub fn client_with_crl_dp(&self, cn: &str, url: &str) -> Leaf {
        let mut params = leaf_params(cn);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.crl_distribution_points = vec![rcgen::CrlDistributionPoint {
            uris: vec![url.to_owned()],
        }];
        self.issue(cn, params, generate_p256())
    }

    /// An intermediate CA issued by this CA whose cRLDistributionPoints name `url` (where this
    /// CA's CRL is).
    pub fn intermediate_with_crl_dp(&self, cn: &str, url: &str) -> Ca {
        let mut params = Ca::params(cn, CaFlaw::None);
        params.crl_distribution_points = vec![rcgen::CrlDistributionPoint {
            uris: vec![url.to_owned()],
        }];
        self.intermediate_from(cn, params)
    }

    /// A client leaf whose authorityInfoAccess names `responder` as its OCSP responder.
    pub fn client_with_ocsp(&self, cn: &str, responder: &str) -> Leaf {
        let mut params = leaf_params(cn);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.custom_extensions = vec![rcgen::CustomExtension::from_oid_content(
            &[1, 3, 6, 1, 5, 5, 7, 1, 1],
            authority_info_access_ocsp(responder),
        )];
        self.issue(cn, params, generate_p256())
    }

    /// A certificate this CA issues to a delegated OCSP responder: with id-kp-OCSPSigning when
    /// `authorised`, with serverAuth only otherwise.
    pub fn ocsp_signer(&self, cn: &str, authorised: bool) -> Leaf {
        let mut params = leaf_params(cn);
        params.extended_key_usages = match authorised {
            true => vec![ExtendedKeyUsagePurpose::OcspSigning],
            false => vec![ExtendedKeyUsagePurpose::ServerAuth],
        };
        self.issue(cn, params, generate_p256())
    }

    /// A server leaf (ECDSA P-256) for `localhost` and `127.0.0.1` with serverAuth EKU.
    pub fn server(&self) -> Leaf {
        self.issue("Test Server", server_params(), generate_p256())
    }

    /// A server leaf (ECDSA P-256) for the given DNS names only.
    pub fn server_for(&self, names: &[&str]) -> Leaf {
        let mut params = server_params();
        params.subject_alt_names = names
            .iter()
            .map(|n| rcgen::SanType::DnsName((*n).try_into().expect("DNS name")))
            .collect();
        self.issue(
            names.first().copied().unwrap_or("server"),
            params,
            generate_p256(),
        )
    }

    /// A server leaf like `server` but with an RSA-2048 key.
    pub fn server_rsa(&self) -> Leaf {
        let key = KeyPair::generate_for(&PKCS_RSA_SHA256).expect("generate RSA-2048 key");
        self.issue("Test RSA Server", server_params(), key)
    }

    fn issue(&self, cn: &str, params: CertificateParams, key: KeyPair) -> Leaf {
        let serial = params
            .serial_number
            .clone()
            .expect("leaf_params sets a serial");
        let cert = params.signed_by(&key, &self.issuer).expect("sign leaf");
        Leaf {
            cn: cn.to_owned(),
            cert: cert.der().clone(),
            key,
            chain_above: self.chain_above.clone(),
            serial,
        }
    }

    /// A CRL issued by this CA revoking `revoked` (valid 2020..2090).
    pub fn crl(&self, revoked: &[&Leaf]) -> CertificateRevocationList {
        self.crl_until(revoked, 2090)
    }

    /// A CRL whose nextUpdate is past: issued 2020, next update due 2021.
    pub fn stale_crl(&self, revoked: &[&Leaf]) -> CertificateRevocationList {
        self.crl_until(revoked, 2021)
    }

    /// A CRL revoking `revoked` with its nextUpdate on 1 January `next_year`.
    fn crl_until(&self, revoked: &[&Leaf], next_year: i32) -> CertificateRevocationList {
        self.crl_next_update(revoked, date_time_ymd(next_year, 1, 1))
    }

    /// A CRL revoking `revoked` with its nextUpdate at `next_update`.
    pub fn crl_next_update(
        &self,
        revoked: &[&Leaf],
        next_update: time::OffsetDateTime,
    ) -> CertificateRevocationList {
        CertificateRevocationListParams {
            this_update: date_time_ymd(2020, 1, 1),
            next_update,
            crl_number: next_serial(),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|leaf| RevokedCertParams {
                    serial_number: leaf.serial.clone(),
                    revocation_time: date_time_ymd(2021, 1, 1),
                    reason_code: Some(RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        }
        .signed_by(&self.issuer)
        .expect("sign CRL")
    }
}

/// Self-signed CA certificates, one per subject in `subjects`, PEM, all sharing one key: filler
/// for bundles whose size is the point (a few thousand CAs in well under a second, where a key
/// per CA would cost a key generation each). No leaf is ever issued by them.
pub fn filler_cas(subjects: impl IntoIterator<Item = DistinguishedName>) -> String {
    let key = generate_p256();
    subjects
        .into_iter()
        .map(|subject| {
            let mut params = Ca::params("filler", CaFlaw::None);
            params.distinguished_name = subject;
            params.self_signed(&key).expect("self-sign filler CA").pem()
        })
        .collect()
}

fn leaf_params(cn: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = dn(cn);
    params.serial_number = Some(next_serial());
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.use_authority_key_identifier_extension = true;
    current(&mut params, LEAF_NOT_AFTER_YEAR);
    params
}

fn server_params() -> CertificateParams {
    let mut params = leaf_params("Test Server");
    params.subject_alt_names =
        CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .expect("SANs parse")
            .subject_alt_names;
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params
}

/// An end-entity certificate with its key and the intermediates needed to reach the root.
pub struct Leaf {
    pub cn: String,
    pub cert: CertificateDer<'static>,
    pub key: KeyPair,
    chain_above: Vec<CertificateDer<'static>>,
    pub serial: SerialNumber,
}

impl Leaf {
    /// A self-signed client certificate (clientAuth EKU, not a CA).
    pub fn self_signed_client(cn: &str) -> Leaf {
        let mut params = leaf_params(cn);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let key = generate_p256();
        let serial = params
            .serial_number
            .clone()
            .expect("leaf_params sets a serial");
        let cert = params.self_signed(&key).expect("self-sign client");
        Leaf {
            cn: cn.to_owned(),
            cert: cert.der().clone(),
            key,
            chain_above: Vec::new(),
            serial,
        }
    }

    pub fn subject(&self) -> String {
        format!("CN={}", self.cn)
    }

    /// The serial as OpenSSL's index files and `x509 -serial` spell it: upper-case hex of
    /// its magnitude.
    pub fn serial_hex(&self) -> String {
        let bytes = self.serial.to_bytes();
        let magnitude = match bytes.iter().position(|b| *b != 0) {
            Some(i) => &bytes[i..],
            None => &bytes[bytes.len().saturating_sub(1)..],
        };
        magnitude.iter().map(|b| format!("{b:02X}")).collect()
    }

    /// The leaf certificate alone, PEM.
    pub fn cert_pem(&self) -> String {
        pem_block("CERTIFICATE", &self.cert)
    }

    /// Leaf first, then every intermediate up to (not including) the root, PEM.
    pub fn chain_pem(&self) -> String {
        self.chain()
            .iter()
            .map(|c| pem_block("CERTIFICATE", c))
            .collect()
    }

    /// Leaf first, then every intermediate up to (not including) the root.
    pub fn chain(&self) -> Vec<CertificateDer<'static>> {
        let mut chain = vec![self.cert.clone()];
        chain.extend(self.chain_above.iter().cloned());
        chain
    }

    /// The leaf without its intermediates (for "forgot the intermediate" tests).
    pub fn leaf_only(&self) -> Vec<CertificateDer<'static>> {
        vec![self.cert.clone()]
    }

    pub fn rustls_key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key.serialize_der()))
    }

    /// The private key in `format`. Panics on SEC1 for an RSA key and PKCS#1 for an EC key.
    pub fn key_pem(&self, format: KeyFormat) -> String {
        let pkcs8 = self.key.serialize_der();
        match format {
            KeyFormat::Pkcs8 => pem_block("PRIVATE KEY", &pkcs8),
            KeyFormat::Pkcs1 => pem_block("RSA PRIVATE KEY", pkcs8_inner(&pkcs8)),
            KeyFormat::Sec1 => pem_block("EC PRIVATE KEY", &sec1_p256(&pkcs8)),
        }
    }
}

/// authorityInfoAccess (RFC 5280 §4.2.2.1) with one id-ad-ocsp entry, DER.
fn authority_info_access_ocsp(url: &str) -> Vec<u8> {
    fn tlv(tag: u8, contents: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        match contents.len() {
            n if n < 0x80 => out.push(n as u8),
            n => {
                out.push(0x82);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
        }
        out.extend_from_slice(contents);
        out
    }
    let id_ad_ocsp = tlv(0x06, &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01]);
    // GeneralName uniformResourceIdentifier: [6] IMPLICIT IA5String.
    let location = tlv(0x86, url.as_bytes());
    let description = tlv(0x30, &[id_ad_ocsp, location].concat());
    tlv(0x30, &description)
}

/// PEM-encodes one block.
pub fn pem_block(tag: &str, der: &[u8]) -> String {
    pem::encode_config(
        &pem::Pem::new(tag, der.to_vec()),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

/// Splits one DER TLV off `input`: (tag, contents, rest). Only what PKCS#8 keys need.
fn der_tlv(input: &[u8]) -> (u8, &[u8], &[u8]) {
    let tag = input[0];
    let (len, header) = match input[1] {
        n if n < 0x80 => (n as usize, 2),
        0x81 => (input[2] as usize, 3),
        0x82 => (((input[2] as usize) << 8) | input[3] as usize, 4),
        other => panic!("unsupported DER length byte {other:#x}"),
    };
    (tag, &input[header..header + len], &input[header + len..])
}

/// The privateKey OCTET STRING of a PKCS#8 PrivateKeyInfo (RFC 5208 §5): for RSA that is the
/// PKCS#1 RSAPrivateKey, for EC the SEC1 ECPrivateKey (usually without curve parameters).
fn pkcs8_inner(pkcs8: &[u8]) -> &[u8] {
    let (tag, info, _) = der_tlv(pkcs8);
    assert_eq!(tag, 0x30, "PrivateKeyInfo is a SEQUENCE");
    let (tag, _version, rest) = der_tlv(info);
    assert_eq!(tag, 0x02, "version INTEGER");
    let (tag, _algorithm, rest) = der_tlv(rest);
    assert_eq!(tag, 0x30, "AlgorithmIdentifier SEQUENCE");
    let (tag, private_key, _) = der_tlv(rest);
    assert_eq!(tag, 0x04, "privateKey OCTET STRING");
    private_key
}

/// A complete RFC 5915 ECPrivateKey for a P-256 key: the PKCS#8 inner key usually omits the
/// `[0] parameters` (the curve lives in the AlgorithmIdentifier), but a standalone SEC1 file
/// needs them, as `openssl ecparam -genkey` writes them.
fn sec1_p256(pkcs8: &[u8]) -> Vec<u8> {
    let (tag, ec, _) = der_tlv(pkcs8_inner(pkcs8));
    assert_eq!(tag, 0x30, "ECPrivateKey SEQUENCE");
    let (_, _version, rest) = der_tlv(ec);
    let (tag, scalar, mut rest) = der_tlv(rest);
    assert_eq!(tag, 0x04, "privateKey OCTET STRING");
    assert_eq!(scalar.len(), 32, "P-256 scalar");
    let mut public_key = None;
    while !rest.is_empty() {
        let (tag, contents, next) = der_tlv(rest);
        if tag == 0xa1 {
            public_key = Some(contents.to_vec());
        }
        rest = next;
    }
    let public_key = public_key.expect("PKCS#8 EC key carries its public key");
    // [0] { OID 1.2.840.10045.3.1.7 (prime256v1) }
    const PARAMS: [u8; 12] = [
        0xa0, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07,
    ];
    let mut body = vec![0x02, 0x01, 0x01, 0x04, 0x20];
    body.extend_from_slice(scalar);
    body.extend_from_slice(&PARAMS);
    body.push(0xa1);
    body.push(public_key.len() as u8);
    body.extend_from_slice(&public_key);
    let mut out = vec![0x30, body.len() as u8];
    assert!(body.len() < 0x80);
    out.extend_from_slice(&body);
    out
}
