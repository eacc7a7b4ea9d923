//! `ringtls pki DIR`: a development PKI, all PEM, ECDSA P-256 — a CA, a server certificate for
//! localhost/127.0.0.1 and a client certificate, plus the client's certificate and key in one
//! file for `curl --cert`. For trying ringtls out and for the demo; not for production.
//!
//! `--names kubernetes` names the files `serve` reads as a Kubernetes TLS Secret does (`tls.crt`,
//! `tls.key`, `ca.crt`), the names the image, the manifests and the systemd unit under packaging/
//! use. `--owner UID:GID` hands exactly those three to the user that will run `serve` (the image's
//! is 65532:65532), the key group-readable; the CA key and the client's key are not the server's
//! to read, so they stay the caller's, mode 0600.

use std::fs::Permissions;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};

use crate::cli::PkiArgs;
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

/// The files of a PKI, in the order `write_pki` creates them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Part {
    CaCert,
    CaKey,
    ServerCert,
    ServerKey,
    ClientCert,
    ClientKey,
    ClientCertAndKey,
}

const PARTS: [Part; 7] = [
    Part::CaCert,
    Part::CaKey,
    Part::ServerCert,
    Part::ServerKey,
    Part::ClientCert,
    Part::ClientKey,
    Part::ClientCertAndKey,
];

impl Part {
    fn file_name(self, names: Names) -> &'static str {
        match (self, names) {
            (Part::CaCert, Names::Pem) => "ca.pem",
            (Part::CaCert, Names::Kubernetes) => "ca.crt",
            (Part::ServerCert, Names::Pem) => "server.pem",
            (Part::ServerCert, Names::Kubernetes) => "tls.crt",
            (Part::ServerKey, Names::Pem) => "server.key",
            (Part::ServerKey, Names::Kubernetes) => "tls.key",
            (Part::CaKey, _) => "ca.key",
            (Part::ClientCert, _) => "client.pem",
            (Part::ClientKey, _) => "client.key",
            (Part::ClientCertAndKey, _) => "client-cert-and-key.pem",
        }
    }

    /// What `serve` reads: the files `--owner` hands over.
    fn served(self) -> bool {
        matches!(self, Part::CaCert | Part::ServerCert | Part::ServerKey)
    }

    fn secret(self) -> bool {
        matches!(
            self,
            Part::CaKey | Part::ServerKey | Part::ClientKey | Part::ClientCertAndKey
        )
    }

    /// Set exactly (not through the umask): a umask of 077 must not make the image's user
    /// unable to read a certificate, nor a umask of 0 make a key readable by others.
    fn mode(self, owner: Option<Owner>) -> u32 {
        match (self.secret(), self.served() && owner.is_some()) {
            (false, _) => 0o644,
            (true, true) => 0o640,
            (true, false) => 0o600,
        }
    }
}

/// `--names`: what the files `serve` reads are called.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Names {
    /// `server.pem`, `server.key`, `ca.pem`: the README's examples.
    Pem,
    /// `tls.crt`, `tls.key`, `ca.crt`: a Kubernetes TLS Secret's keys, and packaging/'s paths.
    Kubernetes,
}

impl Names {
    pub fn parse(text: &str) -> Result<Names, Error> {
        match text {
            "pem" => Ok(Names::Pem),
            "kubernetes" => Ok(Names::Kubernetes),
            other => Err(Error::Usage(format!(
                "--names {other}: expected pem (server.pem, server.key, ca.pem) or kubernetes \
                 (tls.crt, tls.key, ca.crt)"
            ))),
        }
    }

    /// The file names, in the order they are written.
    pub fn files(self) -> [&'static str; 7] {
        PARTS.map(|part| part.file_name(self))
    }
}

/// `--owner UID:GID`, numeric: the image has no passwd entry to look a name up in, and a
/// Kubernetes `runAsUser` is a number too.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
}

impl Owner {
    pub fn parse(text: &str) -> Result<Owner, Error> {
        let bad = || {
            Error::Usage(format!(
                "--owner {text}: expected a numeric UID:GID, e.g. 65532:65532"
            ))
        };
        let (uid, gid) = text.split_once(':').ok_or_else(bad)?;
        let number = |s: &str| {
            // u32::from_str takes a leading '+'; an ID is digits only.
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            // u32::MAX is chown's "leave unchanged", not an owner.
            s.parse::<u32>().ok().filter(|&n| n != u32::MAX)
        };
        Ok(Owner {
            uid: number(uid).ok_or_else(bad)?,
            gid: number(gid).ok_or_else(bad)?,
        })
    }
}

impl std::fmt::Display for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.uid, self.gid)
    }
}

/// A validated `ringtls pki` command line.
#[derive(Debug)]
pub struct PkiPlan {
    pub dir: PathBuf,
    pub names: Names,
    pub owner: Option<Owner>,
}

pub fn pki_plan(args: PkiArgs) -> Result<PkiPlan, Error> {
    Ok(PkiPlan {
        names: Names::parse(&args.names)?,
        owner: args.owner.as_deref().map(Owner::parse).transpose()?,
        dir: args.dir,
    })
}

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

/// Writes a fresh dev PKI into `dir` with the default names, for the demo.
pub fn write_dev_pki(dir: &Path) -> Result<Vec<PathBuf>, Error> {
    write_pki(&PkiPlan {
        dir: dir.to_path_buf(),
        names: Names::Pem,
        owner: None,
    })
}

/// Writes a fresh PKI as `plan` says; refuses (changing nothing) if any of the files exists,
/// and on any failure removes what it wrote, so that the same command can simply be run again.
pub fn write_pki(plan: &PkiPlan) -> Result<Vec<PathBuf>, Error> {
    let dir = plan.dir.as_path();
    let paths: Vec<PathBuf> = plan.names.files().iter().map(|f| dir.join(f)).collect();
    if let Some(existing) = paths.iter().find(|p| p.exists()) {
        return Err(Error::Config(format!(
            "pki {}: {} already exists; refusing to overwrite (choose an empty directory)",
            dir.display(),
            existing.display()
        )));
    }
    let pki =
        DevPki::generate().map_err(|e| Error::Runtime(format!("pki: cannot generate: {e}")))?;
    let created_dir = !dir.exists();
    std::fs::create_dir_all(dir).map_err(|e| {
        Error::Runtime(format!(
            "pki {}: cannot create directory: {e}",
            dir.display()
        ))
    })?;
    let mut written = Vec::new();
    let result = write_all(plan, created_dir, &paths, &pki, &mut written);
    if result.is_err() {
        for path in &written {
            // Best effort: the error being returned is the one worth reading.
            let _ = std::fs::remove_file(path);
        }
        if created_dir {
            let _ = std::fs::remove_dir(dir);
        }
    }
    result.map(|()| paths)
}

fn write_all(
    plan: &PkiPlan,
    created_dir: bool,
    paths: &[PathBuf],
    pki: &DevPki,
    written: &mut Vec<PathBuf>,
) -> Result<(), Error> {
    let chown_failed = |path: &Path, owner: Owner| {
        Error::io(format!(
            "pki {}: --owner {owner}: cannot chown {} (another UID needs root or CAP_CHOWN); \
             nothing was left behind",
            plan.dir.display(),
            path.display()
        ))
    };
    if let (true, Some(owner)) = (created_dir, plan.owner) {
        // The user that reads the files must be able to enter the directory; the caller
        // keeps access as root or through the group.
        std::os::unix::fs::chown(&plan.dir, Some(owner.uid), Some(owner.gid))
            .map_err(chown_failed(&plan.dir, owner))?;
        std::fs::set_permissions(&plan.dir, Permissions::from_mode(0o750)).map_err(Error::io(
            format!("pki {}: cannot chmod the directory", plan.dir.display()),
        ))?;
    }
    for ((path, part), content) in paths.iter().zip(PARTS).zip(pki.contents()) {
        let mut options = std::fs::OpenOptions::new();
        // Created 0600 and only then handed over and opened up, so no other user can open
        // a key in the moment between.
        options.write(true).create_new(true);
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options
            .open(path)
            .map_err(Error::io(format!("pki {}: cannot create", path.display())))?;
        written.push(path.clone());
        if let (true, Some(owner)) = (part.served(), plan.owner) {
            std::os::unix::fs::fchown(&file, Some(owner.uid), Some(owner.gid))
                .map_err(chown_failed(path, owner))?;
        }
        file.set_permissions(Permissions::from_mode(part.mode(plan.owner)))
            .and_then(|()| file.write_all(content.as_bytes()))
            .map_err(Error::io(format!("pki {}: cannot write", path.display())))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubernetes_names_rename_only_what_serve_reads() {
        assert_eq!(
            Names::Kubernetes.files(),
            [
                "ca.crt",
                "ca.key",
                "tls.crt",
                "tls.key",
                "client.pem",
                "client.key",
                "client-cert-and-key.pem"
            ]
        );
        assert_eq!(
            Names::Pem.files()[..4],
            ["ca.pem", "ca.key", "server.pem", "server.key"]
        );
    }

    #[test]
    fn rejects_names_it_does_not_know_naming_the_flag() {
        let err = Names::parse("k8s").unwrap_err().to_string();
        assert!(err.starts_with("--names k8s: expected pem"), "{err}");
    }

    #[test]
    fn parses_numeric_owner_only() {
        assert_eq!(
            Owner::parse("65532:65532").ok(),
            Some(Owner {
                uid: 65532,
                gid: 65532
            })
        );
        for bad in [
            "nonroot",
            "65532",
            "65532:",
            ":65532",
            "+1:1",
            "1:-1",
            "a:1",
            "1:2:3",
            "4294967295:1",
            "4294967296:1",
            "",
        ] {
            let err = Owner::parse(bad).map(|o| o.to_string());
            let Err(err) = err else {
                panic!("--owner {bad:?} was accepted as {err:?}");
            };
            assert!(
                err.to_string()
                    .starts_with(&format!("--owner {bad}: expected a numeric UID:GID")),
                "{err}"
            );
        }
    }

    #[test]
    fn keys_open_to_the_group_only_when_handed_over() {
        let owner = Some(Owner { uid: 1, gid: 1 });
        assert_eq!(Part::ServerKey.mode(None), 0o600);
        assert_eq!(Part::ServerKey.mode(owner), 0o640);
        assert_eq!(Part::CaKey.mode(owner), 0o600);
        assert_eq!(Part::ClientCertAndKey.mode(owner), 0o600);
        assert_eq!(Part::ServerCert.mode(owner), 0o644);
        assert_eq!(Part::ClientCert.mode(None), 0o644);
    }
}
