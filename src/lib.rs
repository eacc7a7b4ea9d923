//! ringtls: a mutual-TLS terminator. It accepts TLS, requires each client to present a
//! certificate signed by one of the configured CAs, and forwards the decrypted byte stream to a
//! plaintext TCP upstream.
//!
//! Layout:
//! - `cli`: argh flag structs only (the `--help` text)
//! - `config`: validated `ServeConfig`; every cross-flag check; its endpoints, from the flags
//!   or a `--config` TOML file (`config::file`, errors by file, line and endpoint)
//! - `error`: the top-level error, wrapping the error it came from, and its exit codes
//! - `tls`: trust store (CA bundle rules), CRLs, server credentials, the shared `ServerConfig`
//!   and, per connection, the SNI of a raw ClientHello and the endpoint it names
//! - `listen`: binding one SO_REUSEPORT socket per worker, refusing ports owned by others; or
//!   sharing the socket-activated ones among the workers
//! - `runtime`: pinned worker threads, each with its own monoio runtime and accept loop
//! - `proxy`: one connection's life, told by `proxy::serve_connection`: establish (the endpoint,
//!   by SNI → handshake → re-check of a resumed session, or passthrough → upstream dial) → data plane (user space or kernel TLS) →
//!   its outcome, recorded once (`proxy::record`) as the event and every metric
//! - `outcome`: how a connection ended, as values (the `Outcome`, refusal and close reasons, the
//!   alert sent, data path, bytes) that the proxy produces and records; a leaf
//! - `cause`: printing an error with its causes (each `Display` says its own part)
//! - `control`: reload (SIGHUP, `--watch`) and drain (SIGTERM/SIGINT), off the workers
//! - `sys`: the only `unsafe`: signals, inotify, listener shutdown, socket activation
//!   (LISTEN_FDS), raising RLIMIT_NOFILE
//! - `telemetry`: the event log, metrics and health endpoints
//! - `time_format`: how times are written (RFC 3339 and a spelled-out form), with the `time` crate
//! - `engine`: the sans-I/O adapter between owned buffers and rustls (server and client side)
//! - `tools`: the subcommands that are not the terminator (`load`, `demo`, `check`, `pki`,
//!   `healthcheck`, and `peer`, the plaintext test service behind `ringtls upstream`); the
//!   serve path imports none of them

#![deny(unsafe_code)]

/// Implements every `ClientCertVerifier` method but `verify_client_cert` by delegating to
/// `self.inner`: our verifiers wrap rustls' and change only the chain decision.
macro_rules! delegate_client_verifier {
    () => {
        fn offer_client_auth(&self) -> bool {
            self.inner.offer_client_auth()
        }

        fn client_auth_mandatory(&self) -> bool {
            self.inner.client_auth_mandatory()
        }

        fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
            self.inner.root_hint_subjects()
        }

        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &rustls::pki_types::CertificateDer<'_>,
            dss: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            self.inner.verify_tls12_signature(message, cert, dss)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &rustls::pki_types::CertificateDer<'_>,
            dss: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            self.inner.verify_tls13_signature(message, cert, dss)
        }

        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.inner.supported_verify_schemes()
        }

        fn requires_raw_public_keys(&self) -> bool {
            self.inner.requires_raw_public_keys()
        }
    };
}

// The library's public API is what `main.rs`, the tests and the benchmarks use; everything
// else is crate-private, so the dead-code lint sees it (`unreachable_pub` in Cargo.toml).
pub mod cause;
pub mod cli;
pub mod config;
pub(crate) mod control;
pub mod engine;
pub(crate) mod error;
pub(crate) mod listen;
pub(crate) mod outcome;
pub mod proxy;
pub mod revocation;
pub(crate) mod runtime;
// The one module allowed `unsafe`: its `//!` states the invariants.
#[allow(unsafe_code)]
pub mod sys;
pub mod telemetry;
pub(crate) mod time_format;
pub mod tls;
pub mod tools;

use std::sync::Arc;

use arc_swap::ArcSwap;

pub use config::{Listen, ServeConfig};
pub use control::Control;
pub use error::Error;
pub use runtime::Server;

use telemetry::log::Event;
use telemetry::metrics::ControlStats;

/// Loads and validates every file, binds every listener (or takes the socket-activated ones)
/// and starts the workers. Returns once all workers accept connections; `Control::local_addrs`
/// then gives the bound addresses.
pub fn start(config: &ServeConfig) -> Result<Control, Error> {
    telemetry::log::configure(config.log);
    // What a start has to say is held until every check passed and every listener is bound:
    // a refused start (a bad file, a port another process holds) is one error line with
    // nothing before it, and no `serve.start` line announces a start that then failed.
    let mut held: Vec<Event> = Vec::new();
    // Passed sockets are taken first, before anything else opens a file that could land on a
    // descriptor number LISTEN_FDS promised but the service manager did not pass.
    let sockets = match &config.listen {
        Listen::Bind(addrs) => runtime::Sockets::Bind(addrs.clone()),
        Listen::Activated(passed) => {
            let activated = sys::activation::take_listeners(passed).map_err(Error::Activation)?;
            let addrs: Vec<String> = activated.iter().map(|a| a.addr.to_string()).collect();
            let mut event = Event::info("listen.activated")
                .num("fds", activated.len() as u64)
                .word("listen", addrs.join(","));
            if !passed.names.is_empty() {
                event = event.text("names", &passed.names.join(":"));
            }
            held.push(event);
            runtime::Sockets::Passed(
                activated
                    .into_iter()
                    .map(|a| (a.addr, a.listener))
                    .collect(),
            )
        }
    };
    // Secrets may leave a connection only when kernel TLS may take them: when it is wanted and
    // this kernel offers it (the probe is logged and judged after the files are read).
    let probe = (config.ktls != config::KtlsMode::Off).then(sys::ktls::probe);
    let extract_secrets = matches!(&probe, Some(Ok(suites)) if !suites.is_empty());
    let fingerprint = control::generation::fingerprint(config, &config.endpoints);
    let listeners = match &sockets {
        runtime::Sockets::Bind(addrs) => addrs.len(),
        runtime::Sockets::Passed(passed) => passed.len(),
    };
    let control_stats = ControlStats::leak();
    let shape = control::generation::Shape {
        listeners,
        workers: config.threads,
        extract_secrets,
        from_file: config.file.is_some(),
        stats: control_stats,
    };
    let built = control::generation::build(&config.endpoints, shape, 1)?;
    let (ktls, ktls_event) = kernel_tls(config.ktls, probe)?;
    held.extend(ktls_event);
    for (name, material) in &built.materials {
        held.extend(trust_warnings(name, material));
    }
    if let Some(path) = &config.keylog {
        held.push(
            Event::warn("tls.unsafe_keylog")
                .text("file", &path.display().to_string())
                .text(
                    "message",
                    "writing TLS secrets: anyone who can read the file can decrypt this traffic; for debugging only",
                ),
        );
    }
    let listen: Vec<String> = match &sockets {
        runtime::Sockets::Bind(addrs) => addrs.iter().map(|a| a.to_string()).collect(),
        runtime::Sockets::Passed(passed) => passed.iter().map(|(a, _)| a.to_string()).collect(),
    };
    let mut start = Event::info("serve.start").word("listen", listen.join(","));
    if let runtime::Sockets::Passed(passed) = &sockets {
        start = start.num("socket_activation", passed.len() as u64);
    }
    if let Some(file) = &config.file {
        start = start
            .text("config", &file.display().to_string())
            .num("endpoints", config.endpoints.len() as u64);
    }
    // One endpoint's upstream is named; a file's many are in `check --config`'s table.
    if let [only] = config.endpoints.as_slice() {
        start = start.word("upstream", &only.upstream);
    }
    held.push(
        start
            .num("threads", config.threads as u64)
            .num("cas", built.cas() as u64)
            .num("crls", built.crls() as u64)
            .word("ca_names", built.ca_names_verdict()),
    );
    control_stats.set_generation(1, built.expiries, built.crls.clone());
    let settings = Arc::new(proxy::Settings {
        current: ArcSwap::from_pointee(built.generation),
        reauthorize: config.reauthorize,
        ktls: ktls.clone(),
        drain_timeout: config.drain_timeout,
    });
    // After every check and before binding, so that the listeners count against the new limit.
    held.push(raise_open_files_limit());
    if let Some(path) = &config.ticket_keys {
        // The count as loaded, not as the file may read a moment later.
        let loaded = built.materials.iter().find_map(|(_, m)| m.ticket_keys);
        held.extend(ticket_keys_events(path, loaded));
    }
    let listeners = runtime::bind(sockets, config.threads)?;
    // Bound before the workers start, so a bad --metrics address fails the start.
    let metrics = config
        .metrics
        .map(|addr| {
            telemetry::http::bind(addr).map_err(Error::io(format!("--metrics {addr}: cannot bind")))
        })
        .transpose()?;
    for event in held {
        event.emit();
    }
    let plan = runtime::WorkerPlan {
        listeners,
        max_conns: config.max_conns,
        idle_tick: config.endpoints.iter().map(|e| e.timeouts.idle).min(),
    };
    let mut server = runtime::start(plan, Arc::clone(&settings))?;
    let fetch_crls = config.endpoints.iter().any(|e| match &e.mode {
        config::Mode::Terminate(tls) => tls.crl_fetch.is_some(),
        config::Mode::Passthrough => false,
    });
    if fetch_crls {
        revocation::fetcher::service().fetch_crls();
    }
    if let Some(listener) = metrics {
        let addr = listener.local_addr().map_err(Error::io("--metrics"))?;
        let upstreams = config.ready_requires_upstream.then(|| {
            control_stats
                .set_upstream_unready(Some("the upstreams have not been dialled yet".into()));
            let settings = Arc::clone(&settings);
            Box::new(move || {
                let generation = settings.current.load();
                let mut all: Vec<_> = generation
                    .by_name
                    .values()
                    .map(|e| (Arc::clone(&e.name), e.upstream.clone()))
                    .collect();
                all.sort_by(|a, b| a.0.cmp(&b.0));
                all
            }) as telemetry::readiness::Upstreams
        });
        telemetry::http::serve(listener, server.stats(), control_stats, upstreams)
            .map_err(Error::io(format!("--metrics {addr}: cannot start")))?;
        server.set_metrics_addr(addr);
    }
    let fresh = control::fresh_crls(&built.materials);
    Ok(Control::new(
        server,
        settings,
        config.clone(),
        control_stats,
        (fingerprint, fresh),
    ))
}

/// Lifts the soft limit on open files to the hard limit: each connection holds two descriptors,
/// and the common soft default of 1024 would refuse connections long before the machine must.
/// A failure is a warning; serving within the old limit still works. Returns the event saying
/// which, for the caller to log once the start is certain.
fn raise_open_files_limit() -> Event {
    let shown = |n: u64| {
        if n == libc::RLIM_INFINITY {
            "unlimited".to_owned()
        } else {
            n.to_string()
        }
    };
    match sys::rlimit::raise_nofile() {
        Ok(raised) => Event::info("rlimit.nofile")
            .word("old", shown(raised.old))
            .word("new", shown(raised.new)),
        Err(e) => Event::warn("rlimit.nofile")
            .text(
                "message",
                "cannot raise the open-files limit (RLIMIT_NOFILE) to the hard limit; serving within the current one",
            )
            .text("detail", &e.to_string()),
    }
}

/// Decides on kernel TLS from `--ktls` and what the start-time probe found (`None`: not probed,
/// `--ktls off`), with the event that says so in the log.
fn kernel_tls(
    mode: config::KtlsMode,
    probe: Option<std::io::Result<Vec<(u16, u16)>>>,
) -> Result<(Option<proxy::ktls_offer::Offer>, Option<Event>), Error> {
    use config::KtlsMode;
    let Some(probe) = probe else {
        return Ok((None, None));
    };
    let detail = match probe {
        Ok(suites) if !suites.is_empty() => {
            let names: Vec<String> = suites
                .iter()
                .map(|&(v, c)| proxy::ktls_offer::suite_name(v, c))
                .collect();
            let event = Event::info("ktls.available").word("suites", names.join(","));
            return Ok((Some(proxy::ktls_offer::Offer(suites)), Some(event)));
        }
        Ok(_) => "the tls module takes none of the AES-GCM or ChaCha20-Poly1305 suites".to_owned(),
        Err(e) => format!(
            "setsockopt TCP_ULP \"tls\": {e} (a kernel without CONFIG_TLS, or the tls module cannot load)"
        ),
    };
    if mode == KtlsMode::On {
        return Err(Error::Config(format!(
            "--ktls on: this kernel offers no kernel TLS: {detail}"
        )));
    }
    let event = Event::info("ktls.unavailable")
        .text("detail", &detail)
        .text("message", "rustls does all record work in user space");
    Ok((None, Some(event)))
}

/// Says on stderr what is accepted but deserves a look: expired, not-yet-valid or duplicate CAs,
/// and clients that are not authenticated at all.
pub fn log_trust_warnings(endpoint: &str, material: &tls::TlsMaterial) {
    for event in trust_warnings(endpoint, material) {
        event.emit();
    }
}

/// The events of `log_trust_warnings`, not yet logged.
fn trust_warnings(endpoint: &str, material: &tls::TlsMaterial) -> Vec<Event> {
    let mut events = Vec::new();
    if let Some(decision) = &material.ca_names {
        events.push(ca_names_event(decision).word("endpoint", endpoint));
    }
    if let Some(store) = &material.trust_store {
        for anchor in store.anchors.iter().filter(|a| !a.warnings.is_empty()) {
            events.push(
                Event::warn("trust.warning")
                    .word("endpoint", endpoint)
                    .text("file", &anchor.file.display().to_string())
                    .num("index", anchor.index as u64)
                    .text("subject", &anchor.info.subject)
                    .text("problem", &anchor.warnings.join("; ")),
            );
        }
    }
    let now = tls::x509::now_unix();
    for crl in material.crls.infos.iter().filter(|c| c.stale_at(now)) {
        events.push(crl_stale_event(endpoint, crl, material.stale_crl));
    }
    let unverified = match material.client_auth {
        tls::ClientAuth::RequireAndVerify => None,
        tls::ClientAuth::None => Some((
            "tls.no_client_auth",
            "serving without client authentication: no --mutual-tls-cas given, any client gets through",
        )),
        tls::ClientAuth::RequireAny => Some((
            "tls.unverified_clients",
            "client_auth require-any: a certificate is required but its chain is not verified; connections are marked verified=false",
        )),
        tls::ClientAuth::Request => Some((
            "tls.unverified_clients",
            "client_auth request: a certificate is asked for but neither required nor verified; connections are marked verified=false",
        )),
    };
    if let Some((name, message)) = unverified {
        events.push(
            Event::warn(name)
                .word("endpoint", endpoint)
                .word("client_auth", material.client_auth.as_str())
                .text("message", message),
        );
    }
    events
}

/// A CRL past its nextUpdate, logged once: at start or reload when it is stale already, else
/// by the control thread when it goes stale (`Control::run`).
pub(crate) fn crl_stale_event(
    endpoint: &str,
    crl: &tls::crl::CrlInfo,
    policy: tls::crl::StaleCrl,
) -> Event {
    let next = crl
        .next_update
        .map(time_format::rfc3339)
        .unwrap_or_default();
    let message = match policy {
        tls::crl::StaleCrl::Warn => "the CRL is past its nextUpdate; still used (--stale-crl warn)",
        tls::crl::StaleCrl::Refuse => {
            "the CRL is past its nextUpdate; its CA's clients are refused (--stale-crl refuse)"
        }
    };
    Event::warn("crl.stale")
        .word("endpoint", endpoint)
        .text("file", &crl.file.display().to_string())
        .num("index", crl.index as u64)
        .text("issuer", &crl.issuer)
        .word("next_update", next)
        .word("policy", policy.as_str())
        .text("message", message)
}

/// At WARN when the CA names were dropped for their size (`auto`) or are sent although some
/// clients will refuse them (`all`), and at INFO otherwise, so that every generation's decision
/// is in the log.
fn ca_names_event(decision: &tls::ca_names::CaNames) -> Event {
    let event = if decision.omitted_for_size() || decision.oversized() {
        Event::warn("tls.ca_names")
    } else {
        Event::info("tls.ca_names")
    };
    event
        .word("mode", decision.mode.as_str())
        .word("verdict", decision.verdict())
        .num("names", decision.count as u64)
        .num("bytes", decision.bytes as u64)
        .num("limit", tls::ca_names::AUTO_LIMIT as u64)
        .text(
            "message",
            &format!("CA names in CertificateRequest {decision}"),
        )
}

/// The readiness line `serve` prints on stdout: `{"listening":["127.0.0.1:43817"]}`, with
/// `"metrics":"127.0.0.1:9090"` added when `--metrics` is on.
pub fn listening_line(server: &Server) -> String {
    let addrs: Vec<String> = server
        .local_addrs()
        .iter()
        .map(|a| format!("\"{a}\""))
        .collect();
    match server.metrics_addr() {
        Some(m) => format!(
            "{{\"listening\":[{}],\"metrics\":\"{m}\"}}",
            addrs.join(",")
        ),
        None => format!("{{\"listening\":[{}]}}", addrs.join(",")),
    }
}

/// What `--ticket-keys` says at start: how many keys and which encrypts (never the keys), and
/// a WARN when the file is open to others. Group-readable is how a service group (systemd's
/// `SupplementaryGroups=`) or a pod's `fsGroup` reads a Secret, so 0640 and 0440 pass.
fn ticket_keys_events(path: &std::path::Path, loaded: Option<usize>) -> Vec<Event> {
    use std::os::unix::fs::PermissionsExt;
    let mut events = Vec::new();
    if let Some(keys) = loaded {
        events.push(
            Event::info("ticket_keys.loaded")
                .text("file", &path.display().to_string())
                .num("keys", keys as u64)
                .num("encrypting", tls::tickets::encrypting_line(keys) as u64 + 1),
        );
    }
    let mode = std::fs::metadata(path).map(|m| m.permissions().mode() & 0o777);
    if let Ok(mode) = mode
        && mode & 0o007 != 0
    {
        events.push(
            Event::warn("ticket_keys.readable")
                .text("file", &path.display().to_string())
                .word("mode", format!("{mode:o}"))
                .text(
                    "message",
                    "session-ticket keys open to others: whoever reads them can open the tickets of recorded sessions; chmod 600 (640 for a service group)",
                ),
        );
    }
    events
}
