//! The server's own certificate chain (`--crt`, leaf first) and private key (`--key`: PKCS#8,
//! SEC1 or PKCS#1), checked to belong together before anything binds.

use std::path::Path;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::SectionKind;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::error::LoadError;
use super::pem;
use super::x509::CertInfo;

/// The server's certificate chain and signing key.
pub struct ServerCredentials {
    pub certified_key: Arc<CertifiedKey>,
    /// Parsed chain, leaf first, for `check` and the start-up log.
    pub chain: Vec<CertInfo>,
}

/// Loads `--crt` and `--key` and proves the key is the leaf's.
pub(crate) fn load_server_credentials(
    crt: &Path,
    key: &Path,
    provider: &CryptoProvider,
) -> Result<ServerCredentials, LoadError> {
    let bytes = pem::read_file("--crt", crt)?;
    let mut chain_der = Vec::new();
    let mut chain = Vec::new();
    for block in pem::blocks("--crt", crt, &bytes)? {
        if block.kind != SectionKind::Certificate {
            continue;
        }
        let info = CertInfo::parse(&block.der).map_err(|e| LoadError::Certificate {
            flag: "--crt",
            path: crt.to_owned(),
            index: block.index,
            subject: "unparsable".into(),
            problem: format!("cannot be parsed: {e}"),
        })?;
        chain.push(info);
        chain_der.push(CertificateDer::from(block.der));
    }
    if chain_der.is_empty() {
        return Err(LoadError::Missing {
            flag: "--crt",
            path: crt.to_owned(),
            what: "certificate",
        });
    }

    let key_bytes = pem::read_file("--key", key)?;
    let key_der = load_private_key(key, &key_bytes)?;
    let certified_key =
        CertifiedKey::from_der(chain_der, key_der, provider).map_err(|source| LoadError::Key {
            path: key.to_owned(),
            crt: crt.to_owned(),
            source,
        })?;
    Ok(ServerCredentials {
        certified_key: Arc::new(certified_key),
        chain,
    })
}

fn load_private_key(path: &Path, bytes: &[u8]) -> Result<PrivateKeyDer<'static>, LoadError> {
    let mut keys = pem::blocks("--key", path, bytes)?
        .into_iter()
        .filter(|b| pem::is_private_key(b.kind));
    let Some(block) = keys.next() else {
        return Err(LoadError::Missing {
            flag: "--key",
            path: path.to_owned(),
            what: "private key (expected PRIVATE KEY, EC PRIVATE KEY or RSA PRIVATE KEY)",
        });
    };
    if let Some(extra) = keys.next() {
        return Err(LoadError::Forbidden {
            flag: "--key",
            path: path.to_owned(),
            index: extra.index,
            what: "second private key",
            why: "the file must hold exactly one key",
        });
    }
    Ok(match block.kind {
        SectionKind::RsaPrivateKey => PrivateKeyDer::Pkcs1(block.der.into()),
        SectionKind::EcPrivateKey => PrivateKeyDer::Sec1(block.der.into()),
        _ => PrivateKeyDer::Pkcs8(block.der.into()),
    })
}
