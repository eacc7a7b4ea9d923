//! `ringtls check`: load exactly what `serve` would and show it — the trust store, the CRLs and
//! the server certificate — without opening a socket. Exit 0 means `serve` would start.

use std::fmt::Write;

use std::path::Path;

use crate::config::Mode;
use crate::config::file::Endpoints;
use crate::error::Error;
use crate::revocation::OcspMode;
use crate::tls::{TlsMaterial, TlsSettings, x509};

/// Loads every endpoint of a `--config` file as `serve` would and renders a table of them,
/// then each terminating endpoint's material as `report` does; the first endpoint that does
/// not load is the error.
pub fn report_file(path: &Path, file: &Endpoints) -> Result<String, Error> {
    let endpoints = &file.endpoints;
    let mut loaded = Vec::with_capacity(endpoints.len());
    for endpoint in endpoints {
        let material = match &endpoint.mode {
            Mode::Terminate(files) => {
                let material = crate::tls::load_tls(files).map_err(|source| Error::InEndpoint {
                    endpoint: endpoint.name.clone(),
                    source: Box::new(source),
                })?;
                crate::log_trust_warnings(&endpoint.name, &material);
                Some(material)
            }
            Mode::Passthrough => None,
        };
        loaded.push(material);
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "config {}: {} endpoint(s)",
        path.display(),
        endpoints.len()
    );
    let _ = writeln!(
        out,
        "  {:<20} {:<12} {:<22} {:<8} {:<32} {:<19} {:<5} UPSTREAM",
        "ENDPOINT", "MODE", "LISTEN", "DEFAULT", "SERVER NAMES", "CLIENT AUTH", "CAS"
    );
    for (endpoint, material) in endpoints.iter().zip(&loaded) {
        let client_auth = match &endpoint.mode {
            Mode::Terminate(files) => files.client_auth.as_str(),
            Mode::Passthrough => "-",
        };
        let cas = material
            .as_ref()
            .and_then(|m| m.trust_store.as_ref())
            .map_or(0, |s| s.anchors.len());
        let listen: Vec<String> = endpoint
            .listeners
            .iter()
            .filter_map(|&i| file.listen.get(i))
            .map(|a| a.to_string())
            .collect();
        let names = match endpoint.server_names.is_empty() {
            true => "-".to_owned(),
            false => endpoint.server_names.join(","),
        };
        let _ = writeln!(
            out,
            "  {:<20} {:<12} {:<22} {:<8} {:<32} {:<19} {:<5} {}",
            endpoint.name,
            endpoint.mode.as_str(),
            listen.join(","),
            if endpoint.default { "yes" } else { "no" },
            names,
            client_auth,
            cas,
            endpoint.upstream
        );
    }
    for (endpoint, material) in endpoints.iter().zip(&loaded) {
        if let (Mode::Terminate(files), Some(material)) = (&endpoint.mode, material) {
            let _ = writeln!(out);
            let _ = writeln!(out, "endpoint {:?}:", endpoint.name);
            let body = report(files, material);
            for line in body.lines().filter(|l| !l.starts_with("ok: ")) {
                let _ = writeln!(out, "  {line}");
            }
        }
    }
    let _ = writeln!(out, "ok: serve would start with this configuration");
    Ok(out)
}

/// Renders the report of successfully loaded material.
pub fn report(files: &TlsSettings, material: &TlsMaterial) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail; the results are ignored throughout.
    match &material.trust_store {
        Some(store) => {
            let _ = writeln!(
                out,
                "trust store (--mutual-tls-cas): {} CA certificate(s); client certificates required",
                store.anchors.len()
            );
            let _ = writeln!(
                out,
                "  {:<4} {:<24} {:<40} {:<64} {:<23} VERDICT",
                "#", "FILE", "SUBJECT", "SHA-256", "NOT AFTER"
            );
            for a in &store.anchors {
                let verdict = if a.warnings.is_empty() {
                    "ok".to_owned()
                } else {
                    format!("WARNING: {}", a.warnings.join("; "))
                };
                let _ = writeln!(
                    out,
                    "  {:<4} {:<24} {:<40} {:<64} {:<23} {verdict}",
                    a.index,
                    a.file.display().to_string(),
                    a.info.subject,
                    a.fingerprint,
                    crate::time_format::spelled(a.info.not_after),
                );
            }
        }
        None => {
            let _ = writeln!(
                out,
                "trust store: none (no --mutual-tls-cas): WARNING: serve would run without client authentication"
            );
        }
    }
    if material.trust_store.is_some() {
        let _ = writeln!(out, "client identity policy: {}", files.allow);
    }
    if let Some(decision) = &material.ca_names {
        let _ = writeln!(
            out,
            "CA names in CertificateRequest (--ca-names {}): {decision}",
            decision.mode.as_str()
        );
    }
    if !material.crls.infos.is_empty() {
        let _ = writeln!(
            out,
            "revocation lists (--crl): {}; past its nextUpdate, a CRL is {} (--stale-crl {})",
            material.crls.infos.len(),
            match material.stale_crl {
                crate::tls::crl::StaleCrl::Warn => "still used, with a WARN",
                crate::tls::crl::StaleCrl::Refuse => "a refusal of its CA's clients",
            },
            material.stale_crl.as_str()
        );
        let now = x509::now_unix();
        for c in &material.crls.infos {
            let next = c
                .next_update
                .map(crate::time_format::spelled)
                .unwrap_or_else(|| "none".into());
            let stale = match c.stale_at(now) {
                true => "  STALE: past its nextUpdate",
                false => "",
            };
            let _ = writeln!(
                out,
                "  {} #{}: issuer {}; {} revoked; next update {next}{stale}",
                c.file.display(),
                c.index,
                c.issuer,
                c.revoked
            );
        }
    }
    revocation(&mut out, files);
    let pairs = std::iter::once((&files.crt, &files.key, &material.credentials)).chain(
        files
            .more_certs
            .iter()
            .zip(&material.more_credentials)
            .map(|((crt, key), creds)| (crt, key, creds)),
    );
    for (i, (crt, key, creds)) in pairs.enumerate() {
        let role = if i == 0 { "default" } else { "by SNI" };
        let _ = writeln!(out, "server certificate ({role}; --crt {}):", crt.display());
        if let Some(leaf) = creds.chain.first() {
            let now = x509::now_unix();
            let expiry = if leaf.not_after < now {
                "  WARNING: expired"
            } else {
                ""
            };
            let _ = writeln!(out, "  subject:   {}", leaf.subject);
            let _ = writeln!(out, "  issuer:    {}", leaf.issuer);
            let _ = writeln!(out, "  SANs:      {}", leaf.sans.join(", "));
            let _ = writeln!(
                out,
                "  not after: {}{expiry}",
                crate::time_format::spelled(leaf.not_after)
            );
            let _ = writeln!(
                out,
                "  key type:  {} (--key {} matches)",
                leaf.key_type,
                key.display()
            );
            let _ = writeln!(out, "  chain:     {} certificate(s)", creds.chain.len());
        }
    }
    let _ = writeln!(out, "ok: serve would start with this configuration");
    out
}

/// What `--ocsp` and `--crl-fetch` would do; `check` asks no responder and fetches nothing.
fn revocation(out: &mut String, files: &TlsSettings) {
    let ocsp = &files.ocsp;
    if ocsp.mode != OcspMode::Off {
        let asked = ocsp
            .responder
            .as_deref()
            .unwrap_or("the responder each certificate names");
        let _ = writeln!(
            out,
            "OCSP (--ocsp {}): {asked}; timeout {:?}; answers used for {:?} at most; {}",
            ocsp.mode.as_str(),
            ocsp.timeout,
            ocsp.max_age,
            match ocsp.mode {
                OcspMode::Hard => "anything but a valid good answer refuses",
                _ => "only a valid revoked answer refuses",
            }
        );
    }
    if let Some(refresh) = files.crl_fetch {
        let _ = writeln!(
            out,
            "CRL distribution points (--crl-fetch): the CAs' and each client certificate's, fetched by serve (not here), again every {refresh:?} at most"
        );
    }
}
