//! A configuration generation built from the flags: the TLS material and the upstream's
//! addresses, with the fingerprint that tells a reload whether anything changed and the
//! certificate expiries the metrics export.

use std::path::Path;
use std::sync::Arc;

use aws_lc_rs::digest;

use crate::config::ServeConfig;
use crate::error::Error;
use crate::proxy::Generation;
use crate::proxy::connect::UpstreamAddr;
use crate::telemetry::metrics::Expiry;
use crate::tls::{self, TlsMaterial};

/// SHA-256 over every input of a generation.
pub(crate) type Fingerprint = [u8; 32];

/// A generation and what was learnt building it.
pub(crate) struct Built {
    pub generation: Generation,
    pub material: TlsMaterial,
    pub expiries: Vec<Expiry>,
}

/// Fingerprints the upstream's addresses and every file the flags name, without parsing them:
/// cheap enough to run on every SIGHUP or file event.
pub(crate) fn fingerprint(config: &ServeConfig, upstream: &[UpstreamAddr]) -> Fingerprint {
    let mut ctx = digest::Context::new(&digest::SHA256);
    for addr in upstream {
        ctx.update(addr.to_string().as_bytes());
        ctx.update(b"\0");
    }
    for path in files(config) {
        ctx.update(path.as_os_str().as_encoded_bytes());
        ctx.update(b"\0");
        // An unreadable file is hashed as such; loading it reports the error properly.
        match std::fs::read(path) {
            Ok(bytes) => {
                ctx.update(&(bytes.len() as u64).to_be_bytes());
                ctx.update(&bytes);
            }
            Err(e) => ctx.update(format!("unreadable: {e}").as_bytes()),
        }
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// Every file a reload re-reads (and `--watch` watches): certificates, keys, CA bundles, CRLs.
pub(crate) fn files(config: &ServeConfig) -> impl Iterator<Item = &Path> {
    let t = &config.tls;
    [t.crt.as_path(), t.key.as_path()]
        .into_iter()
        .chain(
            t.more_certs
                .iter()
                .flat_map(|(c, k)| [c.as_path(), k.as_path()]),
        )
        .chain(t.cas.iter().map(|p| p.as_path()))
        .chain(t.crls.iter().map(|p| p.as_path()))
}

/// Loads and validates every file exactly as at start and builds generation `id`. That
/// includes deciding again whether CertificateRequest carries the CA names (`--ca-names auto`
/// looks at the size of the bundle as it is now); the caller logs the decision with the trust
/// warnings (`log_trust_warnings`) and names it in `serve.start` / `reload.ok`.
pub(crate) fn build(
    config: &ServeConfig,
    id: u64,
    upstream: Vec<UpstreamAddr>,
) -> Result<Built, Error> {
    let material = tls::load_tls(&config.tls)?;
    let expiries = expiries(config, &material);
    Ok(Built {
        generation: Generation {
            id,
            tls: Arc::clone(&material.server_config),
            verifier: Arc::clone(&material.verifier),
            upstream,
        },
        material,
        expiries,
    })
}

/// Each server chain's soonest notAfter and each CA's.
fn expiries(config: &ServeConfig, material: &TlsMaterial) -> Vec<Expiry> {
    let crts = std::iter::once(&config.tls.crt).chain(config.tls.more_certs.iter().map(|(c, _)| c));
    let creds = std::iter::once(&material.credentials).chain(&material.more_credentials);
    let mut out: Vec<Expiry> = crts
        .zip(creds)
        .enumerate()
        .filter_map(|(i, (file, cred))| {
            let soonest = cred.chain.iter().map(|c| c.not_after).min()?;
            Some(Expiry {
                role: "server",
                file: file.display().to_string(),
                index: i + 1,
                subject: cred.chain.first()?.subject.clone(),
                not_after: soonest,
            })
        })
        .collect();
    if let Some(store) = &material.trust_store {
        out.extend(store.anchors.iter().map(|a| Expiry {
            role: "ca",
            file: a.file.display().to_string(),
            index: a.index,
            subject: a.info.subject.clone(),
            not_after: a.info.not_after,
        }));
    }
    out
}
