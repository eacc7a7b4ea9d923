//! TLS material: the trust store (CA bundle rules), CRLs, the server's certificate and key, and
//! the one `rustls::ServerConfig` all workers share read-only.
//!
//! Most of it runs once at start (and later on reload). The two pure pieces of SNI routing run
//! per connection: `client_hello` finds the server name in a connection's first bytes, before
//! any rustls state exists, and `sni_route` maps it to an endpoint.

pub(crate) mod allow_list;
pub(crate) mod ca_names;
pub mod capture;
pub mod client_auth;
pub mod client_hello;
pub(crate) mod credentials;
pub(crate) mod crl;
pub(crate) mod error;
pub(crate) mod identity;
pub(crate) mod keylog;
pub(crate) mod limits;
mod pem;
pub mod secrets;
mod sni;
pub mod sni_route;
pub(crate) mod tickets;
// Public for the fuzz target (fuzz/fuzz_targets/trust_bundle.rs).
pub mod trust_store;

pub(crate) mod verify_cache;
pub(crate) mod x509;

use std::path::PathBuf;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls::sign::SingleCertAndKey;

use crate::revocation::{OcspMode, OcspSettings, RevocationVerifier, crl_fetch, fetcher};

pub use client_auth::ClientAuth;
pub use credentials::ServerCredentials;
pub use crl::Crls;
pub use error::LoadError;
pub use trust_store::TrustStore;

/// How long a session ticket may be used, and how often ticket keys rotate: 6 hours, as
/// rustls' own ticketer does.
const TICKET_LIFETIME_SECS: u32 = 6 * 3600;

/// The TLS side as given on the command line: the files, the identity policy applied to
/// clients whose chain they validate, the lowest protocol version and the debugging key log.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    pub allow: allow_list::AllowList,
    /// `--tls-min 1.3` turns TLS 1.2 off.
    pub tls13_only: bool,
    pub keylog: Option<PathBuf>,
    /// Let connections give up their traffic secrets, for the kernel-TLS hand-off.
    pub extract_secrets: bool,
    /// ALPN protocols to advertise, in preference order (`--alpn`); none by default.
    pub alpn: Vec<String>,
    pub crt: PathBuf,
    pub key: PathBuf,
    /// Further `--crt`/`--key` pairs, chosen by SNI; `crt`/`key` is the default.
    pub more_certs: Vec<(PathBuf, PathBuf)>,
    pub cas: Vec<PathBuf>,
    pub crls: Vec<PathBuf>,
    /// `--stale-crl`: what a CRL past its nextUpdate means.
    pub stale_crl: crl::StaleCrl,
    /// `--ca-names`: which CA subjects CertificateRequest carries.
    pub ca_names: ca_names::CaNamesMode,
    /// `--client-auth`: what is asked of the client's certificate.
    pub client_auth: ClientAuth,
    /// `--ocsp*`: the OCSP check of verified client chains.
    pub ocsp: OcspSettings,
    /// `--crl-fetch`: CRLs from distribution points too, fetched again at this interval at
    /// most (`--crl-refresh`).
    pub crl_fetch: Option<std::time::Duration>,
    /// `--ticket-keys`: session-ticket keys shared by a fleet, instead of generated ones.
    pub ticket_keys: Option<PathBuf>,
}

impl TlsSettings {
    /// One certificate and key, these CA bundles, and every other setting at its default.
    pub fn new(crt: PathBuf, key: PathBuf, cas: Vec<PathBuf>) -> TlsSettings {
        TlsSettings {
            allow: Default::default(),
            tls13_only: false,
            keylog: None,
            extract_secrets: false,
            alpn: Vec::new(),
            crt,
            key,
            more_certs: Vec::new(),
            crls: Vec::new(),
            stale_crl: crl::StaleCrl::Warn,
            ca_names: ca_names::CaNamesMode::Auto,
            client_auth: if cas.is_empty() {
                ClientAuth::None
            } else {
                ClientAuth::RequireAndVerify
            },
            cas,
            ocsp: OcspSettings::default(),
            crl_fetch: None,
            ticket_keys: None,
        }
    }
}

/// Everything loaded from [`TlsSettings`], validated, plus the shared server configuration.
pub struct TlsMaterial {
    pub server_config: Arc<ServerConfig>,
    /// The client verifier inside `server_config`, kept to re-check resumed sessions.
    pub verifier: Arc<dyn ClientCertVerifier>,
    pub credentials: ServerCredentials,
    /// The further pairs, in `--crt` order.
    pub more_credentials: Vec<ServerCredentials>,
    /// `None` when no `--mutual-tls-cas` was given: no client authentication.
    pub trust_store: Option<TrustStore>,
    pub crls: Crls,
    /// Which CA names CertificateRequest carries and why; `None` without a trust store.
    pub ca_names: Option<ca_names::CaNames>,
    /// What the verifier asks of client certificates.
    pub client_auth: ClientAuth,
    /// What a CRL past its nextUpdate means (`--stale-crl`).
    pub stale_crl: crl::StaleCrl,
    /// The OCSP part of `verifier`, under `--ocsp soft|hard`.
    pub(crate) ocsp: Option<Arc<RevocationVerifier>>,
    /// How many `--ticket-keys` keys were loaded, when they were.
    pub(crate) ticket_keys: Option<usize>,
}

/// The crypto provider: aws-lc-rs with rustls' suites and groups, AES-128-GCM first.
///
/// rustls lists AES-256-GCM-SHA384 first. AES-128-GCM with SHA-256 is as safe for TLS (NIST, the
/// Mozilla "intermediate" profile, Go's crypto/tls prefer it) and cheaper twice over: the
/// handshake's HKDF runs SHA-256 instead of SHA-384, and the bulk cipher does 10 AES rounds
/// instead of 14. The server applies this order rather than the client's (`ignore_client_order`).
pub fn provider() -> Arc<CryptoProvider> {
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    // A stable sort keeps rustls' order within each class.
    provider.cipher_suites.sort_by_key(|suite| {
        let name = format!("{:?}", suite.suite());
        u8::from(!name.contains("AES_128_GCM"))
    });
    Arc::new(provider)
}

/// Loads and validates every file, then builds the `ServerConfig`.
pub fn load_tls(files: &TlsSettings) -> Result<TlsMaterial, LoadError> {
    let provider = provider();
    let credentials = credentials::load_server_credentials(&files.crt, &files.key, &provider)?;
    let more_credentials = files
        .more_certs
        .iter()
        .map(|(crt, key)| credentials::load_server_credentials(crt, key, &provider))
        .collect::<Result<Vec<_>, _>>()?;
    let mut crls = crl::load_crls(&files.crls)?;
    let trust_store = if files.cas.is_empty() {
        None
    } else {
        Some(trust_store::load_trust_store(&files.cas)?)
    };
    if let (Some(refresh), Some(store)) = (files.crl_fetch, &trust_store) {
        // The CAs' own distribution points, each signed (if at all) by a CA of the bundle;
        // the leaves' are registered as they are seen (`RevocationVerifier`).
        let anchors: Vec<_> = store.anchors.iter().map(|a| a.der.clone()).collect();
        let fetched = &fetcher::service().crls;
        for anchor in &store.anchors {
            for url in crl_fetch::distribution_points(anchor.der.as_ref()) {
                fetched.want(&url, || anchors.clone(), refresh);
            }
        }
        crls.add_fetched(&fetched.current());
    }

    // Decided per generation, so a reload that grows the bundle past the limit is caught too.
    let schemes = provider
        .signature_verification_algorithms
        .supported_schemes()
        .len();
    let ca_names = trust_store
        .as_ref()
        .map(|store| ca_names::CaNames::decide(files.ca_names, &store.roots.subjects(), schemes));
    if let Some(d) = ca_names.filter(|d| d.unencodable()) {
        return Err(LoadError::CaNamesTooLarge {
            names: d.count,
            bytes: d.bytes,
            limit: d.wire_limit,
        });
    }
    let verifier: Arc<dyn ClientCertVerifier> = match (&trust_store, files.client_auth) {
        (_, ClientAuth::None) => WebPkiClientVerifier::no_client_auth(),
        (_, ClientAuth::RequireAny | ClientAuth::Request) => {
            let hints = match (&trust_store, ca_names) {
                (Some(store), Some(d)) if d.sent => store.roots.subjects(),
                _ => Vec::new(),
            };
            let mandatory = files.client_auth == ClientAuth::RequireAny;
            Arc::new(client_auth::UnverifiedClient::new(
                provider.clone(),
                hints,
                mandatory,
            ))
        }
        (Some(store), ClientAuth::RequireAndVerify) => {
            let builder = hint_subjects(
                WebPkiClientVerifier::builder_with_provider(
                    Arc::new(store.roots.clone()),
                    provider.clone(),
                ),
                ca_names,
            )
            .with_crls(crls.ders.iter().cloned())
            // A CRL covers the CA that issued it. Clients of CAs without a CRL are still
            // accepted: with several CAs in a bundle, one CA's CRL must not lock out every
            // other CA's clients.
            .allow_unknown_revocation_status();
            let builder = match files.stale_crl {
                // webpki then refuses a chain whose issuer's CRL is past its nextUpdate
                // (ExpiredRevocationList: `reason=crl_stale`); other CAs' clients are unaffected.
                crl::StaleCrl::Refuse => builder.enforce_revocation_expiration(),
                crl::StaleCrl::Warn => builder,
            };
            builder
                .build()
                .map(|chain| -> Arc<dyn ClientCertVerifier> {
                    // The policy sits inside the cache: a cached verdict is chain and policy
                    // together.
                    let checked = if files.allow.is_empty() {
                        chain
                    } else {
                        allow_list::AllowListVerifier::new(chain, files.allow.clone())
                    };
                    // Under refuse, a chain verified while the CRLs were fresh is not let
                    // through from the cache once the first of them goes stale.
                    let until = match files.stale_crl {
                        crl::StaleCrl::Refuse => {
                            crls.soonest_next_update().map(|t| t.max(0) as u64)
                        }
                        crl::StaleCrl::Warn => None,
                    };
                    verify_cache::CachingVerifier::new(checked, until)
                })
                .map_err(LoadError::Verifier)?
        }
        // config refuses require-and-verify without CAs; should one come, nothing verifies.
        (None, ClientAuth::RequireAndVerify) => {
            return Err(LoadError::Verifier(
                rustls::server::VerifierBuilderError::NoRootAnchors,
            ));
        }
    };

    // `--ocsp`, `--crl-fetch`: outermost, so a chain served from the verdict cache is still
    // asked about.
    let wants = files.ocsp.mode != OcspMode::Off || files.crl_fetch.is_some();
    let (verifier, ocsp) = match (&trust_store, files.client_auth) {
        (Some(store), ClientAuth::RequireAndVerify) if wants => {
            let anchors: Vec<_> = store.anchors.iter().map(|a| a.der.clone()).collect();
            let wrapped =
                RevocationVerifier::new(verifier, (&files.ocsp, files.crl_fetch), &anchors);
            let ocsp = wrapped.asks_ocsp().then(|| Arc::clone(&wrapped));
            (wrapped as Arc<dyn ClientCertVerifier>, ocsp)
        }
        _ => (verifier, None),
    };
    let versions: &[&rustls::SupportedProtocolVersion] = if files.tls13_only {
        &[&rustls::version::TLS13]
    } else {
        &[&rustls::version::TLS13, &rustls::version::TLS12]
    };
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .map_err(LoadError::Config)?
        .with_client_cert_verifier(verifier.clone())
        .with_cert_resolver(if more_credentials.is_empty() {
            Arc::new(SingleCertAndKey::from(credentials.certified_key.clone()))
        } else {
            let certs = std::iter::once(&credentials)
                .chain(&more_credentials)
                .map(|c| {
                    let sans = c
                        .chain
                        .first()
                        .map(|leaf| leaf.sans.clone())
                        .unwrap_or_default();
                    (c.certified_key.clone(), sans)
                })
                .collect();
            Arc::new(sni::SniResolver::new(certs))
        });
    config.ignore_client_order = true;
    config.enable_secret_extraction = files.extract_secrets;
    // Always: the server's secrets of each handshake are captured so the alert rustls seals
    // when it refuses a client can be read back for the log (`tls::secrets`).
    config.key_log = Arc::new(secrets::KeyLogs {
        file: match &files.keylog {
            Some(path) => Some(keylog::KeyLogFile::open(path)?),
            None => None,
        },
        // The client's traffic secret too, for following key updates on kernel TLS.
        kernel: files.extract_secrets,
    });
    // We forward bytes, so by default we advertise no ALPN and a client's h2/http1.1 offer goes
    // unanswered; `--alpn` names what the upstream speaks, and the choice reaches it in the
    // PROXY header.
    config.alpn_protocols = files.alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    // Resumption through stateless tickets only: no session cache shared (and locked) by the
    // workers, and a new key set with every config, so a trust change voids old tickets.
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    let file_keys = match &files.ticket_keys {
        None => None,
        Some(path) => Some(tickets::read_file_keys(path)?),
    };
    config.ticketer = match &file_keys {
        None => tickets::Tickets::new(TICKET_LIFETIME_SECS),
        Some(keys) => tickets::Tickets::from_file(keys, TICKET_LIFETIME_SECS),
    }
    .ok_or(LoadError::Config(rustls::Error::FailedToGetRandomBytes))?;
    Ok(TlsMaterial {
        server_config: Arc::new(config),
        verifier,
        credentials,
        more_credentials,
        trust_store,
        crls,
        ca_names,
        client_auth: files.client_auth,
        stale_crl: files.stale_crl,
        ocsp,
        ticket_keys: file_keys.map(|k| k.len()),
    })
}

/// The builder starts with every root's subject as a hint; an omitted list is cleared here. The
/// wrappers (`AllowListVerifier`, `CachingVerifier`) hand rustls the inner verifier's hints, so
/// what is decided here is what goes on the wire.
fn hint_subjects(
    builder: rustls::server::ClientCertVerifierBuilder,
    decision: Option<ca_names::CaNames>,
) -> rustls::server::ClientCertVerifierBuilder {
    match decision {
        Some(d) if !d.sent => builder.clear_root_hint_subjects(),
        _ => builder,
    }
}
