//! The trust store: the CA bundles given with `--mutual-tls-cas`, checked before anything binds.
//!
//! rustls' `RootCertStore` accepts any certificate as an anchor; we refuse what RFC 5280 says
//! cannot issue certificates (§4.2.1.9 basicConstraints cA, §4.2.1.3 keyCertSign) and any private
//! key found in a trust file, and we warn about expired or duplicate CAs without refusing them.

use std::path::{Path, PathBuf};

use rustls::RootCertStore;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::SectionKind;

use super::error::LoadError;
use super::pem;
use super::x509::{self, CertInfo};

const FLAG: &str = "--mutual-tls-cas";

/// One accepted CA, with what `check` and the start-up log say about it.
#[derive(Debug, Clone)]
pub struct Anchor {
    pub file: PathBuf,
    pub index: usize,
    pub info: CertInfo,
    pub fingerprint: String,
    /// The certificate, as the bundle holds it.
    pub der: CertificateDer<'static>,
    /// Reasons to warn (expired, not yet valid, duplicate); never reasons to refuse.
    pub warnings: Vec<String>,
}

/// The validated CAs and the rustls store built from them.
pub struct TrustStore {
    pub roots: RootCertStore,
    pub anchors: Vec<Anchor>,
}

impl TrustStore {
    /// A store with no CA yet; `add_bundle` fills it.
    pub fn empty() -> TrustStore {
        TrustStore {
            roots: RootCertStore::empty(),
            anchors: Vec::new(),
        }
    }
}

/// Loads and checks every bundle, in order; fails on the first unusable block.
pub(crate) fn load_trust_store(paths: &[PathBuf]) -> Result<TrustStore, LoadError> {
    let mut store = TrustStore::empty();
    let now = x509::now_unix();
    for path in paths {
        let bytes = pem::read_file(FLAG, path)?;
        add_bundle(&mut store, path, &bytes, now)?;
    }
    Ok(store)
}

/// Checks one bundle, `bytes` as read from `path` (which every error names), and adds its CAs
/// to `store`; `now` (Unix seconds) decides the validity warnings. Apart from the file read this
/// is all `load_trust_store` does, so the fuzz target drives exactly what `serve` runs.
pub fn add_bundle(
    store: &mut TrustStore,
    path: &Path,
    bytes: &[u8],
    now: i64,
) -> Result<(), LoadError> {
    let blocks = pem::blocks(FLAG, path, bytes)?;
    // A key in a trust file is the worst mistake the file can hold: report it before anything
    // else, wherever it sits.
    if let Some(key) = blocks.iter().find(|b| pem::is_private_key(b.kind)) {
        return Err(LoadError::Forbidden {
            flag: FLAG,
            path: path.to_owned(),
            index: key.index,
            what: "private key",
            why: "a trust bundle must hold CA certificates only; keep CA keys out of it",
        });
    }
    let mut found = 0;
    for block in blocks {
        if block.kind != SectionKind::Certificate {
            continue;
        }
        found += 1;
        let refuse = |subject: String, problem: String| LoadError::Certificate {
            flag: FLAG,
            path: path.to_owned(),
            index: block.index,
            subject,
            problem,
        };
        let info = CertInfo::parse(&block.der)
            .map_err(|e| refuse("unparsable".into(), format!("cannot be parsed: {e}")))?;
        if let Err(problem) = &info.ca {
            return Err(refuse(info.subject.clone(), problem.to_string()));
        }
        let fingerprint = x509::sha256_hex(&block.der);
        let mut warnings = Vec::new();
        if info.not_after < now {
            warnings.push(format!(
                "expired on {}",
                crate::time_format::spelled(info.not_after)
            ));
        }
        if info.not_before > now {
            warnings.push(format!(
                "not valid before {}",
                crate::time_format::spelled(info.not_before)
            ));
        }
        if let Some(first) = store.anchors.iter().find(|a| a.fingerprint == fingerprint) {
            warnings.push(format!(
                "duplicate of {} #{}",
                first.file.display(),
                first.index
            ));
        } else {
            store
                .roots
                .add(CertificateDer::from(block.der.clone()))
                .map_err(|e| {
                    refuse(
                        info.subject.clone(),
                        format!("is not a usable trust anchor: {e}"),
                    )
                })?;
        }
        store.anchors.push(Anchor {
            file: path.to_owned(),
            index: block.index,
            info,
            fingerprint,
            der: CertificateDer::from(block.der),
            warnings,
        });
    }
    if found == 0 {
        return Err(LoadError::Missing {
            flag: FLAG,
            path: path.to_owned(),
            what: "certificate (an empty bundle would trust no client)",
        });
    }
    Ok(())
}
