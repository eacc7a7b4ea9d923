//! ringtls: a mutual-TLS terminator. It accepts TLS, requires each client to present a
//! certificate signed by one of the configured CAs, and forwards the decrypted byte stream to a
//! plaintext TCP upstream.
//!
//! Layout:
//! - `cli`: argh flag structs only (the `--help` text)
//! - `config`: validated `ServeConfig`; every cross-flag check
//! - `error`: the top-level error and its exit codes
//! - `tls`: trust store (CA bundle rules), CRLs, server credentials, the shared `ServerConfig`
//! - `listen`: binding one SO_REUSEPORT socket per worker, refusing ports owned by others
//! - `runtime`: pinned worker threads, each with its own monoio runtime and accept loop
//! - `proxy`: one connection's life: handshake → upstream connect → relay → close
//! - `control`: reload (SIGHUP, `--watch`) and drain (SIGTERM/SIGINT), off the workers
//! - `sys`: the only `unsafe`: signals, inotify
//! - `telemetry`: the event log, metrics and health endpoints
//! - `engine`: the sans-I/O adapter between owned buffers and rustls (server and client side)
//! - `load`: the mTLS load generator (`ringtls load`)
//! - `check`, `pki`, `demo`, `upstream`, `healthcheck`: the other subcommands

pub mod check;
pub mod cli;
pub mod config;
pub mod control;
pub mod demo;
pub mod engine;
pub mod error;
pub mod healthcheck;
pub mod listen;
pub mod load;
pub mod pki;
pub mod proxy;
pub mod runtime;
pub mod sys;
pub mod telemetry;
pub mod tls;
pub mod upstream;

use std::sync::Arc;

use arc_swap::ArcSwap;

pub use config::ServeConfig;
pub use control::Control;
pub use error::Error;
pub use runtime::Server;

use telemetry::log::Event;
use telemetry::metrics::ControlStats;

/// Loads and validates every file, binds every listener and starts the workers. Returns once
/// all workers accept connections; `Control::local_addrs` then gives the bound addresses.
pub fn start(config: &ServeConfig) -> Result<Control, Error> {
    telemetry::log::set_format(config.log_format);
    let fingerprint = control::generation::fingerprint(config, &config.upstream_addrs);
    let built = control::generation::build(config, 1, config.upstream_addrs.clone())?;
    let material = &built.material;
    log_trust_warnings(material);
    if let Some(path) = &config.tls.keylog {
        Event::warn("tls.unsafe_keylog")
            .text("file", &path.display().to_string())
            .text(
                "message",
                "writing TLS secrets: anyone who can read the file can decrypt this traffic; for debugging only",
            )
            .emit();
    }
    let listen: Vec<String> = config.listen.iter().map(|a| a.to_string()).collect();
    Event::info("serve.start")
        .word("listen", listen.join(","))
        .word("upstream", &config.upstream)
        .num("threads", config.threads as u64)
        .num(
            "cas",
            material.trust_store.as_ref().map_or(0, |s| s.anchors.len()) as u64,
        )
        .num("crls", material.crls.infos.len() as u64)
        .emit();
    let control_stats = ControlStats::leak();
    control_stats.set_generation(1, built.expiries);
    let settings = Arc::new(proxy::Settings {
        current: ArcSwap::from_pointee(built.generation),
        reauthorize: config.reauthorize,
        handshake_timeout: config.handshake_timeout,
        connect_timeout: config.connect_timeout,
        idle_timeout: config.idle_timeout,
        proxy_protocol: config.proxy_protocol,
    });
    let plan = runtime::WorkerPlan {
        listen: config.listen.clone(),
        threads: config.threads,
        max_conns: config.max_conns,
    };
    // Bound before the workers start, so a bad --metrics address fails the start.
    let metrics = config
        .metrics
        .map(|addr| {
            telemetry::metrics::bind(addr)
                .map_err(|e| Error::Runtime(format!("--metrics {addr}: cannot bind: {e}")))
        })
        .transpose()?;
    let mut server = runtime::start(&plan, Arc::clone(&settings))?;
    if let Some(listener) = metrics {
        let addr = listener
            .local_addr()
            .map_err(|e| Error::Runtime(format!("--metrics: {e}")))?;
        telemetry::metrics::serve(listener, server.stats(), control_stats)
            .map_err(|e| Error::Runtime(format!("--metrics {addr}: cannot start: {e}")))?;
        server.set_metrics_addr(addr);
    }
    Ok(Control::new(
        server,
        settings,
        config.clone(),
        control_stats,
        fingerprint,
    ))
}

/// Says on stderr what is accepted but deserves a look: expired, not-yet-valid or duplicate CAs,
/// and serving without client authentication at all.
pub fn log_trust_warnings(material: &tls::TlsMaterial) {
    match &material.trust_store {
        Some(store) => {
            for anchor in store.anchors.iter().filter(|a| !a.warnings.is_empty()) {
                Event::warn("trust.warning")
                    .text("file", &anchor.file.display().to_string())
                    .num("index", anchor.index as u64)
                    .text("subject", &anchor.info.subject)
                    .text("problem", &anchor.warnings.join("; "))
                    .emit();
            }
        }
        None => Event::warn("tls.no_client_auth")
            .text(
                "message",
                "serving without client authentication: no --mutual-tls-cas given, any client gets through",
            )
            .emit(),
    }
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
