//! Reading PEM files block by block with `rustls_pki_types::pem` (rustls-pemfile is archived).
//!
//! Every recognised block is returned with its kind and 1-based index, so the callers can refuse a
//! block of the wrong kind and name it. Text between blocks (what `openssl x509 -text` writes) is
//! ignored, as are blocks with labels PEM parsing does not know.

use std::path::Path;

use rustls_pki_types::pem::{PemObject, SectionKind};

use super::error::LoadError;

/// One decoded PEM block.
pub(super) struct Block {
    /// 1-based position among the recognised blocks of the file.
    pub index: usize,
    pub kind: SectionKind,
    pub der: Vec<u8>,
}

/// Reads a whole file, naming the flag on failure.
pub(super) fn read_file(flag: &'static str, path: &Path) -> Result<Vec<u8>, LoadError> {
    std::fs::read(path).map_err(|source| LoadError::Read {
        flag,
        path: path.to_owned(),
        source,
    })
}

/// Decodes every recognised PEM block of `bytes`, in order.
pub(super) fn blocks(
    flag: &'static str,
    path: &Path,
    bytes: &[u8],
) -> Result<Vec<Block>, LoadError> {
    let mut out = Vec::new();
    for item in <(SectionKind, Vec<u8>)>::pem_slice_iter(bytes) {
        let index = out.len() + 1;
        let (kind, der) = item.map_err(|source| LoadError::Pem {
            flag,
            path: path.to_owned(),
            index,
            source,
        })?;
        out.push(Block { index, kind, der });
    }
    Ok(out)
}

/// Whether a block holds private key material, whatever its encoding.
pub(super) fn is_private_key(kind: SectionKind) -> bool {
    matches!(
        kind,
        SectionKind::PrivateKey | SectionKind::RsaPrivateKey | SectionKind::EcPrivateKey
    )
}
