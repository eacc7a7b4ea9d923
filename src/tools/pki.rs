//! `ringtls pki DIR`: a development PKI, all PEM, ECDSA P-256 — a CA, a server certificate for
//! localhost/127.0.0.1 and a client certificate, plus the client's certificate and key in one
//! file for `curl --cert`. For trying ringtls out and for the demo; not for production.

use std::io::Write;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};

use crate::error::Error;

/// The generated files' contents, in memory.
pub struct DevPki {
    pub ca_pem: String,
    pub ca_key: String,
    pub server_pem: String,
    pub server_key: String,
    pub client_pem: String,
    pub client_key: String,
}

/// The files `write_dev_pki` creates, in order.
pub const FILES: [&str; 7] = [
    "ca.pem",
    "ca.key",
    "server.pem",
    "server.key",
    "client.pem",
    "client.key",
    "client-cert-and-key.pem",
];

impl DevPki {
    /// Generates a fresh PKI valid from today for two years.
    pub fn generate() -> Result<DevPki, rcgen::Error> {
        let (not_before, not_after) = validity();

        // A name of its own per PKI: two dev PKIs must not look like the same CA, or a client
        // of one is refused by the other as badly signed (decrypt_error) instead of as from an
        // unknown CA, and the CA hint list a server sends cannot tell them apart.
        let mut tag = [0u8; 4];
        aws_lc_rs::rand::fill(&mut tag).map_err(|_| rcgen::Error::RingUnspecified)?;
        let mut ca = CertificateParams::default();
        ca.distinguished_name.push(
            DnType::CommonName,
            format!("ringtls dev CA {}", crate::tls::x509::hex(&tag)),
        );
        ca.distinguished_name
            .push(DnType::OrganizationName, "ringtls");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        ca.not_before = not_before;
        ca.not_after = not_after;
        let ca_key = KeyPair::generate()?;
        let ca_key_pem = ca_key.serialize_pem();
        let ca = CertifiedIssuer::self_signed(ca, ca_key)?;

        let mut server = CertificateParams::new(vec!["localhost".to_owned()])?;
        server
            .subject_alt_names
            .push(SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()));
        server
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        server.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        server.not_before = not_before;
        server.not_after = not_after;
        let server_key = KeyPair::generate()?;
        let server_cert = server.signed_by(&server_key, &ca)?;

        let mut client = CertificateParams::default();
        client
            .distinguished_name
            .push(DnType::CommonName, "ringtls dev client");
        client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        client.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        client.not_before = not_before;
        client.not_after = not_after;
        let client_key = KeyPair::generate()?;
        let client_cert = client.signed_by(&client_key, &ca)?;

        Ok(DevPki {
            ca_pem: ca.pem(),
            ca_key: ca_key_pem,
            server_pem: server_cert.pem(),
            server_key: server_key.serialize_pem(),
            client_pem: client_cert.pem(),
            client_key: client_key.serialize_pem(),
        })
    }

    fn contents(&self) -> [String; 7] {
        [
            self.ca_pem.clone(),
            self.ca_key.clone(),
            self.server_pem.clone(),
            self.server_key.clone(),
            self.client_pem.clone(),
            self.client_key.clone(),
            format!("{}{}", self.client_pem, self.client_key),
        ]
    }
}

/// From one hour ago (clock skew between machines) to two years from now.
fn validity() -> (time::OffsetDateTime, time::OffsetDateTime) {
    let now = crate::tls::x509::now_unix();
    let at = |ts: i64| {
        time::OffsetDateTime::from_unix_timestamp(ts).unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
    };
    (at(now - 3600), at(now + 2 * 365 * 86_400))
}

/// Writes a fresh dev PKI into `dir`; refuses (changing nothing) if any of the files exists.
pub fn write_dev_pki(dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let paths: Vec<PathBuf> = FILES.iter().map(|f| dir.join(f)).collect();
    if let Some(existing) = paths.iter().find(|p| p.exists()) {
        return Err(Error::Config(format!(
            "pki {}: {} already exists; refusing to overwrite (choose an empty directory)",
            dir.display(),
            existing.display()
        )));
    }
    std::fs::create_dir_all(dir).map_err(|e| {
        Error::Runtime(format!(
            "pki {}: cannot create directory: {e}",
            dir.display()
        ))
    })?;
    let pki =
        DevPki::generate().map_err(|e| Error::Runtime(format!("pki: cannot generate: {e}")))?;
    for (path, content) in paths.iter().zip(pki.contents()) {
        write_new(path, content.as_bytes(), is_secret(path))
            .map_err(|e| Error::Runtime(format!("pki {}: cannot write: {e}", path.display())))?;
    }
    Ok(paths)
}

fn is_secret(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "key") || path.ends_with("client-cert-and-key.pem")
}

/// Creates `path` exclusively (never truncating an existing file); keys get mode 0600.
fn write_new(path: &Path, content: &[u8], secret: bool) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(content)
}
