//! A configuration generation built from the endpoints (the flags' one, or a `--config`
//! file's): each endpoint's TLS material and upstream addresses, the per-listener SNI routes,
//! the fingerprint that tells a reload whether anything changed, and the certificate expiries
//! the metrics export.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use aws_lc_rs::digest;

use crate::config::{EndpointConfig, Mode, ServeConfig};
use crate::error::Error;
use crate::proxy::{AcceptProxy, Endpoint, Generation, Serve};
use crate::telemetry::metrics::{ControlStats, CrlExpiry, Expiry};
use crate::tls::sni_route::Routes;
use crate::tls::{self, TlsMaterial};

/// SHA-256 over every input of a generation.
pub(crate) type Fingerprint = [u8; 32];

/// A generation and what was learnt building it.
pub(crate) struct Built {
    pub generation: Generation,
    /// Each terminating endpoint's material, by endpoint name.
    pub materials: Vec<(String, TlsMaterial)>,
    pub expiries: Vec<Expiry>,
    /// Every CRL's nextUpdate, by endpoint.
    pub crls: Vec<CrlExpiry>,
}

impl Built {
    /// CA certificates over all endpoints.
    pub(crate) fn cas(&self) -> usize {
        let stores = self
            .materials
            .iter()
            .filter_map(|(_, m)| m.trust_store.as_ref());
        stores.map(|s| s.anchors.len()).sum()
    }

    /// CRLs over all endpoints.
    pub(crate) fn crls(&self) -> usize {
        self.materials.iter().map(|(_, m)| m.crls.infos.len()).sum()
    }

    /// Whether CertificateRequest carries the CA names: `sent`, `omitted` or `none`; with
    /// several endpoints deciding differently, `mixed` (each endpoint's `tls.ca_names` event
    /// says which).
    pub(crate) fn ca_names_verdict(&self) -> &'static str {
        let mut verdicts = self
            .materials
            .iter()
            .map(|(_, m)| super::ca_names_verdict(m));
        let first = verdicts.next().unwrap_or("none");
        match verdicts.all(|v| v == first) {
            true => first,
            false => "mixed",
        }
    }
}

/// Fingerprints the config file, the upstreams' addresses and every file the endpoints name,
/// without parsing them: cheap enough to run on every SIGHUP or file event.
pub(crate) fn fingerprint(config: &ServeConfig, endpoints: &[EndpointConfig]) -> Fingerprint {
    let mut ctx = digest::Context::new(&digest::SHA256);
    // The CRLs fetched from distribution points (`--crl-fetch`): a new one is a change.
    let fetched = crate::revocation::fetcher::service().crls.version();
    ctx.update(&fetched.to_be_bytes());
    for endpoint in endpoints {
        ctx.update(endpoint.name.as_bytes());
        ctx.update(b"\0");
        for addr in &endpoint.upstream_addrs {
            ctx.update(addr.to_string().as_bytes());
            ctx.update(b"\0");
        }
    }
    for path in config
        .file
        .iter()
        .map(|p| p.as_path())
        .chain(files(endpoints))
    {
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

/// Every file a reload re-reads (and `--watch` watches): the config file, and the
/// certificates, keys, CA bundles, CRLs and ticket keys of every endpoint.
pub(crate) fn watched(config: &ServeConfig) -> impl Iterator<Item = &Path> {
    let file = config.file.iter().map(|p| p.as_path());
    file.chain(files(&config.endpoints))
}

/// The certificates, keys, CA bundles and CRLs the endpoints name.
fn files(endpoints: &[EndpointConfig]) -> impl Iterator<Item = &Path> {
    endpoints.iter().flat_map(|e| match &e.mode {
        Mode::Terminate(t) => {
            let pairs =
                std::iter::once((&t.crt, &t.key)).chain(t.more_certs.iter().map(|(c, k)| (c, k)));
            let named: Vec<&Path> = pairs
                .flat_map(|(c, k)| [c.as_path(), k.as_path()])
                .chain(t.cas.iter().map(|p| p.as_path()))
                .chain(t.crls.iter().map(|p| p.as_path()))
                .chain(t.ticket_keys.as_deref())
                .collect();
            named
        }
        Mode::Passthrough => Vec::new(),
    })
}

/// What a generation is built for: the process around it.
#[derive(Clone, Copy)]
pub(crate) struct Shape<'a> {
    /// Listen addresses (bound or passed).
    pub listeners: usize,
    pub workers: usize,
    /// Connections may give up their secrets, for kernel TLS.
    pub extract_secrets: bool,
    /// The endpoints come from `--config`: load errors name them.
    pub from_file: bool,
    /// Where each endpoint's counters live, across generations.
    pub stats: &'a ControlStats,
}

/// Loads and validates every file exactly as at start and builds generation `id` for
/// its `shape`. That includes deciding again whether CertificateRequest
/// carries the CA names (`--ca-names auto` looks at the size of the bundle as it is now); the
/// caller logs the decision with the trust warnings (`log_trust_warnings`) and names it in
/// `serve.start` / `reload.ok`.
pub(crate) fn build(
    endpoints: &[EndpointConfig],
    shape: Shape<'_>,
    id: u64,
) -> Result<Built, Error> {
    let Shape {
        listeners,
        workers,
        extract_secrets,
        from_file,
        stats,
    } = shape;
    let mut routes: Vec<Routes<Arc<Endpoint>>> = (0..listeners).map(|_| Routes::new()).collect();
    // The configuration made every endpoint of a listener agree: the first one says.
    let mut accept_proxy: Vec<Option<Arc<AcceptProxy>>> = vec![None; listeners];
    let mut by_name = HashMap::with_capacity(endpoints.len());
    let mut materials = Vec::new();
    let mut expiries = Vec::new();
    for config in endpoints {
        let serve = match &config.mode {
            Mode::Terminate(files) => {
                let mut files = (**files).clone();
                files.extract_secrets = extract_secrets;
                let material =
                    tls::load_tls(&files).map_err(|e| in_endpoint(from_file, config, e))?;
                expiries.extend(expiries_of(&files, &material));
                let serve = Serve::Terminate {
                    tls: Arc::clone(&material.server_config),
                    verifier: Arc::clone(&material.verifier),
                    client_auth: files.client_auth,
                    ocsp: material.ocsp.clone(),
                };
                materials.push((config.name.clone(), material));
                serve
            }
            Mode::Passthrough => Serve::Passthrough,
        };
        let name: Arc<str> = Arc::from(config.name.as_str());
        let endpoint = Arc::new(Endpoint {
            stats: stats.endpoint(&name, workers),
            name,
            serve,
            upstream: config.upstream_addrs.clone(),
            proxy_protocol: config.proxy_protocol,
            timeouts: config.timeouts,
        });
        // config checked every name and every claim; a conflict here is a bug, said plainly.
        let conflict = |e: tls::sni_route::RouteError| {
            Error::Config(format!("endpoint {:?}: {e}", config.name))
        };
        for &listener in &config.listeners {
            let table = routes.get_mut(listener).ok_or_else(|| {
                Error::Config(format!(
                    "endpoint {:?}: listener #{listener} does not exist",
                    config.name
                ))
            })?;
            for name in &config.server_names {
                table
                    .insert(name, Arc::clone(&endpoint))
                    .map_err(conflict)?;
            }
            if let (Some(slot @ None), Some(accept)) =
                (accept_proxy.get_mut(listener), &config.accept_proxy)
            {
                *slot = Some(Arc::new(accept.clone()));
            }
            if config.default {
                table.set_default(Arc::clone(&endpoint)).map_err(conflict)?;
            }
        }
        by_name.insert(Arc::clone(&endpoint.name), endpoint);
    }
    Ok(Built {
        generation: Generation {
            id,
            listeners: routes,
            by_name,
            hello_timeout: endpoints
                .iter()
                .map(|e| e.timeouts.handshake)
                .min()
                .unwrap_or(crate::proxy::Timeouts::default().handshake),
            accept_proxy,
        },
        crls: crl_expiries(&materials),
        materials,
        expiries,
    })
}

/// A load error of a file endpoint names the endpoint; the flags' one endpoint needs no name.
fn in_endpoint(from_file: bool, config: &EndpointConfig, e: tls::LoadError) -> Error {
    match from_file {
        false => Error::Load(e),
        true => Error::InEndpoint {
            endpoint: config.name.clone(),
            source: Box::new(e),
        },
    }
}

/// Each endpoint's CRLs that have a nextUpdate.
fn crl_expiries(materials: &[(String, TlsMaterial)]) -> Vec<CrlExpiry> {
    let crls = materials
        .iter()
        .flat_map(|(endpoint, m)| m.crls.infos.iter().map(move |c| (endpoint, c)));
    crls.filter_map(|(endpoint, c)| {
        Some(CrlExpiry {
            endpoint: endpoint.clone(),
            issuer: c.issuer.clone(),
            source: if c.fetched { "fetched" } else { "file" },
            file: c.file.display().to_string(),
            index: c.index,
            next_update: c.next_update?,
        })
    })
    .collect()
}

/// Each server chain's soonest notAfter and each CA's.
fn expiries_of(files: &tls::TlsSettings, material: &TlsMaterial) -> Vec<Expiry> {
    let crts = std::iter::once(&files.crt).chain(files.more_certs.iter().map(|(c, _)| c));
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
