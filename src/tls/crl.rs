//! Certificate revocation lists given with `--crl`, PEM (`X509 CRL` blocks) or DER.
//!
//! webpki checks them during verification; here we only load them and parse each once with
//! x509-parser, so a broken CRL is refused at start naming its file and index.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls_pki_types::CertificateRevocationListDer;
use rustls_pki_types::pem::SectionKind;
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::revocation_list::CertificateRevocationList;

use super::error::LoadError;
use super::pem;
use crate::revocation::crl_fetch::FetchedCrl;

const FLAG: &str = "--crl";

/// `--stale-crl`: what a CRL past its nextUpdate means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StaleCrl {
    /// Log a WARN once for it and keep using it.
    #[default]
    Warn,
    /// Refuse the clients of its CA (`reason=crl_stale`).
    Refuse,
}

impl StaleCrl {
    pub fn parse(s: &str) -> Option<StaleCrl> {
        match s {
            "warn" => Some(StaleCrl::Warn),
            "refuse" => Some(StaleCrl::Refuse),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            StaleCrl::Warn => "warn",
            StaleCrl::Refuse => "refuse",
        }
    }
}

/// What `check` shows of a loaded CRL.
#[derive(Debug, Clone)]
pub struct CrlInfo {
    pub file: PathBuf,
    pub index: usize,
    pub issuer: String,
    pub revoked: usize,
    /// Seconds since the Unix epoch, if the CRL says.
    pub next_update: Option<i64>,
    /// Fetched from a distribution point (`--crl-fetch`): `file` is its URL.
    pub fetched: bool,
}

impl CrlInfo {
    /// Past its nextUpdate at `now` (Unix seconds).
    pub fn stale_at(&self, now: i64) -> bool {
        self.next_update.is_some_and(|next| next < now)
    }
}

/// The loaded CRLs.
#[derive(Default)]
pub struct Crls {
    pub ders: Vec<CertificateRevocationListDer<'static>>,
    pub infos: Vec<CrlInfo>,
}

/// Loads every CRL of every file, in order.
pub(crate) fn load_crls(paths: &[PathBuf]) -> Result<Crls, LoadError> {
    let mut crls = Crls::default();
    for path in paths {
        let bytes = pem::read_file(FLAG, path)?;
        crls.add_file(path, &bytes)?;
    }
    Ok(crls)
}

impl Crls {
    /// The soonest nextUpdate of any of them: when the first goes stale.
    pub fn soonest_next_update(&self) -> Option<i64> {
        self.infos.iter().filter_map(|c| c.next_update).min()
    }

    /// Adds the CRLs fetched from distribution points (`--crl-fetch`), as they stand.
    pub(crate) fn add_fetched(&mut self, fetched: &[Arc<FetchedCrl>]) {
        for crl in fetched {
            self.infos.push(CrlInfo {
                file: PathBuf::from(&*crl.url),
                index: 1,
                issuer: crl.issuer.clone(),
                revoked: crl.revoked_count(),
                next_update: crl.next_update,
                fetched: true,
            });
            self.ders.push(crl.der.clone());
        }
    }

    /// Adds every CRL of one file, `bytes` as read from `path` (which every error names). Split
    /// from the file read so the fuzz target drives exactly what `serve` runs.
    pub fn add_file(&mut self, path: &Path, bytes: &[u8]) -> Result<(), LoadError> {
        let ders: Vec<(usize, Vec<u8>)> = if looks_like_pem(bytes) {
            pem::blocks(FLAG, path, bytes)?
                .into_iter()
                .filter(|b| b.kind == SectionKind::Crl)
                .map(|b| (b.index, b.der))
                .collect()
        } else {
            vec![(1, bytes.to_vec())]
        };
        if ders.is_empty() {
            return Err(LoadError::Missing {
                flag: FLAG,
                path: path.to_owned(),
                what: "X509 CRL block",
            });
        }
        for (index, der) in ders {
            self.infos.push(inspect(path, index, &der)?);
            self.ders.push(CertificateRevocationListDer::from(der));
        }
        Ok(())
    }
}

fn looks_like_pem(bytes: &[u8]) -> bool {
    bytes.windows(11).any(|w| w == b"-----BEGIN ")
}

fn inspect(path: &Path, index: usize, der: &[u8]) -> Result<CrlInfo, LoadError> {
    let (_, crl) = CertificateRevocationList::from_der(der).map_err(|e| {
        // A certificate given as a CRL is a common mix-up: say so.
        let problem = if X509Certificate::from_der(der).is_ok() {
            "is a certificate, not a CRL".to_owned()
        } else {
            format!("cannot be parsed: {e}")
        };
        LoadError::Crl {
            path: path.to_owned(),
            index,
            problem,
        }
    })?;
    Ok(CrlInfo {
        file: path.to_owned(),
        index,
        issuer: crl.issuer().to_string(),
        revoked: crl.iter_revoked_certificates().count(),
        next_update: crl.next_update().map(|t| t.timestamp()),
        fetched: false,
    })
}
