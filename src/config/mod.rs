//! `Config`: flag values checked and converted, with every cross-flag rule in one place. What
//! leaves here is valid; what is not becomes a usage error (exit 64) or a configuration error
//! (exit 78) naming the flag.

pub mod endpoint;
pub mod file;

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use crate::cli::{CheckArgs, ServeArgs};
use crate::error::Error;
use crate::proxy::AcceptProxy;
use crate::proxy::connect::{self, ResolveError, UpstreamAddr};
use crate::sys::activation::{self, Passed};
use crate::telemetry::log::{
    Connections as LogConnections, Format as LogFormat, Level, LogSettings,
};
use crate::tls::TlsSettings;
use crate::tls::allow_list::AllowList;
pub use endpoint::{ClientAuth, EndpointConfig, Mode, Timeouts};
use endpoint::{Spelling, TlsInput};

/// The TLS flags `serve` and `check` share, moved out of either argh struct (argh has no
/// flattening).
macro_rules! tls_input {
    ($args:ident) => {
        TlsInput {
            crt: std::mem::take(&mut $args.crt),
            key: std::mem::take(&mut $args.key),
            cas: std::mem::take(&mut $args.mutual_tls_cas),
            crls: std::mem::take(&mut $args.crl),
            stale_crl: $args.stale_crl.take(),
            crl_fetch: $args.crl_fetch,
            crl_refresh: $args.crl_refresh.take(),
            ocsp: $args.ocsp.take(),
            ocsp_responder: $args.ocsp_responder.take(),
            ocsp_timeout: $args.ocsp_timeout.take(),
            ocsp_max_age: $args.ocsp_max_age.take(),
            ca_names: $args.ca_names.take(),
            client_auth: $args.client_auth.take(),
            allow: AllowList {
                cn: std::mem::take(&mut $args.allow_cn),
                ou: std::mem::take(&mut $args.allow_ou),
                dns: std::mem::take(&mut $args.allow_dns),
                uri: std::mem::take(&mut $args.allow_uri),
                all: $args.allow_all,
            },
            alpn: std::mem::take(&mut $args.alpn),
            tls_min: $args.tls_min.take(),
        }
    };
}

/// A validated `serve` invocation.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub listen: Listen,
    /// What is served: the one endpoint of the flags, or a `--config` file's.
    pub endpoints: Vec<EndpointConfig>,
    /// `--config`: the file the endpoints come from, read again on reload.
    pub file: Option<PathBuf>,
    pub threads: usize,
    pub max_conns: Option<usize>,
    /// `--log-format`, `--log-level`, `--log-connections`.
    pub log: LogSettings,
    /// Where to serve `/metrics`, `/healthz` and `/readyz`.
    pub metrics: Option<SocketAddr>,
    /// Reload when a file given by flag (or its directory's `..data` link) changes.
    pub watch: bool,
    /// After a reload that changes trust, close live connections whose chain now fails.
    pub reauthorize: bool,
    /// How long established connections may take to finish after SIGTERM/SIGINT.
    pub drain_timeout: Duration,
    /// `--drain-delay`: how long the listeners stay open after SIGTERM/SIGINT, `/readyz` 503.
    pub drain_delay: Duration,
    /// `--ktls`: whether to hand established connections to kernel TLS.
    pub ktls: KtlsMode,
    /// `--unsafe-keylog`: every terminating endpoint appends its TLS secrets here.
    pub keylog: Option<PathBuf>,
    /// `--accept-proxy` and `--accept-proxy-from`: the flags' endpoint's setting, and the
    /// default of a file's endpoints (read again on reload).
    pub accept_proxy: AcceptProxyFlags,
    /// `--ticket-keys`: every terminating endpoint's session-ticket keys.
    pub ticket_keys: Option<PathBuf>,
    /// `--ready-requires-upstream`: `/readyz` says whether the upstreams can be dialled.
    pub ready_requires_upstream: bool,
}

/// `--ktls auto|on|off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KtlsMode {
    /// When the kernel offers it and the negotiated suite is one it takes.
    #[default]
    Auto,
    /// Refuse to start without it.
    On,
    /// Never: rustls does all the record work.
    Off,
}

/// Where `serve` accepts connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    /// `--listen`: bind each address, one SO_REUSEPORT socket per worker.
    Bind(Vec<SocketAddr>),
    /// Socket activation: the listening sockets the service manager passed, shared by every
    /// worker.
    Activated(Passed),
}

impl ServeConfig {
    /// Checks the flags, and the environment for socket activation.
    pub fn from_args(args: ServeArgs) -> Result<ServeConfig, Error> {
        let passed = activation::passed_from_env().map_err(Error::Activation)?;
        ServeConfig::from_args_and_activation(args, passed)
    }

    /// `from_args` with the socket-activation environment already read.
    pub fn from_args_and_activation(
        mut args: ServeArgs,
        passed: Option<Passed>,
    ) -> Result<ServeConfig, Error> {
        let file = args.config.take();
        let accept_proxy = AcceptProxyFlags::parse(args.accept_proxy, &args.accept_proxy_from)?;
        let (listen, endpoints) = match &file {
            Some(path) => {
                if let Some(flag) = endpoint_flag(&mut args) {
                    return Err(Error::Usage(format!(
                        "--config {} and {flag}: with a config file, {flag} is set per endpoint in the file",
                        path.display()
                    )));
                }
                if let Some(passed) = passed {
                    return Err(Error::Usage(format!(
                        "--config {}: started by socket activation with {} socket(s) (LISTEN_FDS); a config file binds its own listen addresses",
                        path.display(),
                        passed.count
                    )));
                }
                let loaded = file::load(path, &accept_proxy).map_err(Error::File)?;
                (Listen::Bind(loaded.listen), loaded.endpoints)
            }
            None => flags_endpoint(&mut args, passed, accept_proxy.for_flags()?)?,
        };
        let mut endpoints = endpoints;
        for endpoint in &mut endpoints {
            if let Mode::Terminate(tls) = &mut endpoint.mode {
                tls.keylog.clone_from(&args.unsafe_keylog);
                tls.ticket_keys.clone_from(&args.ticket_keys);
            }
        }
        let verifies = endpoints
            .iter()
            .any(|e| matches!(&e.mode, Mode::Terminate(tls) if tls.client_auth.verifies()));
        if args.reauthorize_on_reload && !verifies {
            return Err(Error::Usage(
                "--reauthorize-on-reload needs --mutual-tls-cas: without a trust store there is nothing to re-check".into(),
            ));
        }
        let threads = match args.threads {
            Some(0) => return Err(Error::Usage("--threads must be at least 1".into())),
            Some(n) => n,
            None => default_threads(),
        };
        if args.max_conns == Some(0) {
            return Err(Error::Usage("--max-conns must be at least 1".into()));
        }
        if args.ready_requires_upstream && args.metrics.is_none() {
            return Err(Error::Usage(
                "--ready-requires-upstream needs --metrics: it is /readyz that says so".into(),
            ));
        }
        Ok(ServeConfig {
            listen,
            endpoints,
            file,
            accept_proxy,
            ticket_keys: args.ticket_keys.clone(),
            ready_requires_upstream: args.ready_requires_upstream,
            threads,
            max_conns: args.max_conns,
            watch: args.watch,
            reauthorize: args.reauthorize_on_reload,
            drain_timeout: parse_duration("--drain-timeout", &args.drain_timeout)?,
            drain_delay: parse_duration_or_zero("--drain-delay", &args.drain_delay)?,
            ktls: match args.ktls.as_str() {
                "auto" => KtlsMode::Auto,
                "on" => KtlsMode::On,
                "off" => KtlsMode::Off,
                other => {
                    return Err(Error::Usage(format!(
                        "--ktls {other}: expected auto, on or off"
                    )));
                }
            },
            metrics: args
                .metrics
                .as_deref()
                .map(|m| {
                    m.parse().map_err(|_| {
                        Error::Usage(format!(
                            "--metrics {m}: expected IP:PORT, e.g. 127.0.0.1:9090"
                        ))
                    })
                })
                .transpose()?,
            log: LogSettings {
                format: match args.log_format.as_str() {
                    "text" => LogFormat::Text,
                    "json" => LogFormat::Json,
                    other => {
                        return Err(Error::Usage(format!(
                            "--log-format {other}: expected text or json"
                        )));
                    }
                },
                level: Level::parse(&args.log_level).ok_or_else(|| {
                    Error::Usage(format!(
                        "--log-level {}: expected error, warn, info or debug",
                        args.log_level
                    ))
                })?,
                connections: LogConnections::parse(&args.log_connections).ok_or_else(|| {
                    Error::Usage(format!(
                        "--log-connections {}: expected all, rejected or none",
                        args.log_connections
                    ))
                })?,
            },
            keylog: args.unsafe_keylog,
        })
    }

    /// Reads the `--config` file again (a reload): its endpoints, which must listen only on
    /// the addresses bound at start.
    pub fn reread(&self) -> Result<Vec<EndpointConfig>, Error> {
        let Some(path) = &self.file else {
            let mut endpoints = self.endpoints.clone();
            for endpoint in &mut endpoints {
                endpoint.upstream_addrs = resolve_upstream(&endpoint.upstream)?;
            }
            return Ok(endpoints);
        };
        let loaded = file::load(path, &self.accept_proxy).map_err(Error::File)?;
        let Listen::Bind(bound) = &self.listen else {
            return Ok(loaded.endpoints);
        };
        let mut endpoints = loaded.endpoints;
        for endpoint in &mut endpoints {
            for index in &mut endpoint.listeners {
                let addr = loaded.listen[*index];
                *index = bound.iter().position(|b| *b == addr).ok_or_else(|| {
                    Error::Config(format!(
                        "--config {}: endpoint {:?}: listen {addr} is not bound (listeners are bound at start; adding one needs a restart)",
                        path.display(),
                        endpoint.name
                    ))
                })?;
            }
            if let Mode::Terminate(tls) = &mut endpoint.mode {
                tls.keylog.clone_from(&self.keylog);
                tls.ticket_keys.clone_from(&self.ticket_keys);
            }
        }
        Ok(endpoints)
    }
}

/// The first flag given that a config file sets per endpoint: the TLS ones are
/// `TlsInput::first_given`'s list (taken out of `args`, which a config file does not use).
fn endpoint_flag(args: &mut ServeArgs) -> Option<String> {
    let given = [
        ("--listen", !args.listen.is_empty()),
        ("--upstream", args.upstream.is_some()),
        ("--proxy-protocol", args.proxy_protocol),
        ("--handshake-timeout", args.handshake_timeout.is_some()),
        ("--connect-timeout", args.connect_timeout.is_some()),
        ("--idle-timeout", args.idle_timeout.is_some()),
    ];
    let other = given
        .iter()
        .find(|(_, g)| *g)
        .map(|(flag, _)| (*flag).to_owned());
    other.or_else(|| tls_input!(args).first_given(Spelling::Flag))
}

/// The flags form: one endpoint, named `default`, on every listener.
fn flags_endpoint(
    args: &mut ServeArgs,
    passed: Option<Passed>,
    accept_proxy: Option<AcceptProxy>,
) -> Result<(Listen, Vec<EndpointConfig>), Error> {
    let listen = match (args.listen.is_empty(), passed) {
        (true, None) => {
            return Err(Error::Usage(
                "--listen is required (e.g. --listen 0.0.0.0:8443) unless started by socket activation (LISTEN_FDS), or --config FILE".into(),
            ));
        }
        (false, Some(passed)) => {
            return Err(Error::Usage(format!(
                "--listen {}: started by socket activation with {} socket(s) (LISTEN_FDS); use one or the other",
                args.listen.join(" --listen "),
                passed.count
            )));
        }
        (true, Some(passed)) => Listen::Activated(passed),
        (false, None) => Listen::Bind(
            args.listen
                .iter()
                .map(|s| parse_listen(s))
                .collect::<Result<Vec<_>, _>>()?,
        ),
    };
    let upstream = args.upstream.take().ok_or_else(|| {
        Error::Usage(
            "--upstream is required (e.g. --upstream 127.0.0.1:8080), or --config FILE".into(),
        )
    })?;
    let upstream_addrs = resolve_upstream(&upstream)?;
    let tls = tls_input!(args)
        .check(Spelling::Flag)
        .map_err(Error::Usage)?;
    let defaults = Timeouts::default();
    let duration = |flag: &str, value: &Option<String>, default| match value {
        None => Ok(default),
        Some(v) => parse_duration(flag, v),
    };
    let timeouts = Timeouts {
        handshake: duration(
            "--handshake-timeout",
            &args.handshake_timeout,
            defaults.handshake,
        )?,
        connect: duration("--connect-timeout", &args.connect_timeout, defaults.connect)?,
        idle: duration("--idle-timeout", &args.idle_timeout, defaults.idle)?,
    };
    let listeners = match &listen {
        Listen::Bind(addrs) => (0..addrs.len()).collect(),
        Listen::Activated(passed) => (0..passed.count).collect(),
    };
    let endpoint = EndpointConfig {
        name: "default".into(),
        listeners,
        server_names: Vec::new(),
        default: true,
        mode: Mode::Terminate(Box::new(tls)),
        upstream,
        upstream_addrs,
        proxy_protocol: args.proxy_protocol,
        accept_proxy,
        timeouts,
    };
    Ok((listen, vec![endpoint]))
}

/// What `check` loads: the TLS settings of its flags, or a config file's endpoints.
pub enum CheckTarget {
    Flags(Box<TlsSettings>),
    File(PathBuf, file::Endpoints),
}

/// The TLS settings of a `check` invocation, or the endpoints of its `--config` file.
pub fn check_target(mut args: CheckArgs) -> Result<CheckTarget, Error> {
    if let Some(path) = args.config.take() {
        let given = tls_input!(args).first_given(Spelling::Flag);
        if let Some(flag) = given {
            return Err(Error::Usage(format!(
                "--config {} and {flag}: with a config file, {flag} is set per endpoint in the file",
                path.display()
            )));
        }
        let loaded = file::load(&path, &AcceptProxyFlags::default()).map_err(Error::File)?;
        return Ok(CheckTarget::File(path, loaded));
    }
    let tls = tls_input!(args)
        .check(Spelling::Flag)
        .map_err(Error::Usage)?;
    Ok(CheckTarget::Flags(Box::new(tls)))
}

/// The number of cores this process may run on (its affinity mask, not the machine's count).
pub fn default_threads() -> usize {
    core_affinity::get_core_ids()
        .map(|ids| ids.len())
        .filter(|&n| n > 0)
        .or_else(|| std::thread::available_parallelism().ok().map(|n| n.get()))
        .unwrap_or(1)
}

pub(crate) fn parse_listen(s: &str) -> Result<SocketAddr, Error> {
    if let Ok(addr) = s.parse() {
        return Ok(addr);
    }
    // A name such as localhost:8443: listen on its first address.
    s.to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .ok_or_else(|| {
            Error::Usage(format!(
                "--listen {s}: expected IP:PORT, e.g. 127.0.0.1:8443 or [::]:8443"
            ))
        })
}

/// `--upstream`, resolved now; a malformed value is a usage error, a name that does not
/// resolve a configuration error.
pub fn resolve_upstream(s: &str) -> Result<Vec<UpstreamAddr>, Error> {
    connect::resolve(s).map_err(|e| match e {
        ResolveError::Syntax(m) => Error::Usage(m),
        other => Error::Upstream(other),
    })
}

/// `--accept-proxy` and `--accept-proxy-from` as given: the flags' endpoint's setting, and
/// what a file's endpoints get unless they say (`accept_proxy`, `accept_proxy_from`).
#[derive(Debug, Clone, Default)]
pub struct AcceptProxyFlags {
    pub on: bool,
    pub from: Vec<ipnet::IpNet>,
}

impl AcceptProxyFlags {
    fn parse(on: bool, from: &[String]) -> Result<AcceptProxyFlags, Error> {
        let from = from
            .iter()
            .map(|s| parse_network(s).map_err(|m| Error::Usage(format!("--accept-proxy-from {m}"))))
            .collect::<Result<Vec<_>, _>>()?;
        if on && from.is_empty() {
            return Err(Error::Usage(
                "--accept-proxy needs --accept-proxy-from CIDR: a header from anyone would let any client claim any address".into(),
            ));
        }
        Ok(AcceptProxyFlags { on, from })
    }

    /// The flags' one endpoint: `--accept-proxy-from` alone would name sources for nothing
    /// (with `--config` it is the default of the file's `accept_proxy = true` endpoints).
    fn for_flags(&self) -> Result<Option<AcceptProxy>, Error> {
        match (self.on, self.from.is_empty()) {
            (false, true) => Ok(None),
            (false, false) => Err(Error::Usage(
                "--accept-proxy-from needs --accept-proxy: it names who may send the PROXY header"
                    .into(),
            )),
            (true, _) => Ok(Some(AcceptProxy {
                from: self.from.clone(),
            })),
        }
    }
}

/// One `--accept-proxy-from` or `accept_proxy_from` value: a network, or one address (a /32 or
/// /128). The error is the value and what was expected.
pub(crate) fn parse_network(s: &str) -> Result<ipnet::IpNet, String> {
    s.parse::<ipnet::IpNet>()
        .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| {
            format!("{s}: expected a network such as 10.0.0.0/8 or fd00::/8, or one address")
        })
}

/// Splits `64MiB` into (64, "MiB"); `None` when it does not start with a whole number.
fn split_quantity(s: &str) -> Option<(u64, &str)> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    Some((num.parse().ok()?, unit))
}

/// A duration as `parse_duration` reads it, where zero is allowed (`--drain-delay 0s`).
pub fn parse_duration_or_zero(flag: &str, s: &str) -> Result<Duration, Error> {
    let bad = || {
        Error::Usage(format!(
            "{flag} {s}: expected a duration such as 500ms, 10s, 5m or 1h"
        ))
    };
    let (n, unit) = split_quantity(s).ok_or_else(bad)?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "" | "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n.saturating_mul(60))),
        "h" => Ok(Duration::from_secs(n.saturating_mul(3600))),
        _ => Err(bad()),
    }
}

/// Parses `10s`, `500ms`, `5m`, `1h` or a bare number of seconds.
pub fn parse_duration(flag: &str, s: &str) -> Result<Duration, Error> {
    let d = parse_duration_or_zero(flag, s)?;
    if d.is_zero() {
        return Err(Error::Usage(format!("{flag} {s}: must be more than zero")));
    }
    Ok(d)
}

/// Parses `4096`, `64K`, `64KiB`, `16M`, `1G` (binary units).
pub fn parse_size(flag: &str, s: &str) -> Result<u64, Error> {
    let bad = || {
        Error::Usage(format!(
            "{flag} {s}: expected a size such as 4096, 64K, 16MiB or 1G"
        ))
    };
    let (n, unit) = split_quantity(s).ok_or_else(bad)?;
    let mult: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" | "kb" => 1 << 10,
        "m" | "mib" | "mb" => 1 << 20,
        "g" | "gib" | "gb" => 1 << 30,
        _ => return Err(bad()),
    };
    n.checked_mul(mult).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_durations() {
        assert_eq!(
            parse_duration("--x", "10s").ok(),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            parse_duration("--x", "250ms").ok(),
            Some(Duration::from_millis(250))
        );
        assert_eq!(
            parse_duration("--x", "2m").ok(),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_duration("--x", "7").ok(),
            Some(Duration::from_secs(7))
        );
    }

    #[test]
    fn rejects_bad_durations_naming_the_flag() {
        for bad in ["", "s", "10x", "-1s", "0s", "1.5s"] {
            let err = parse_duration("--idle-timeout", bad)
                .err()
                .map(|e| e.to_string());
            assert!(
                err.is_some_and(|e| e.contains("--idle-timeout")),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn parses_sizes() {
        assert_eq!(parse_size("--bytes", "4096").ok(), Some(4096));
        assert_eq!(parse_size("--bytes", "64K").ok(), Some(65536));
        assert_eq!(parse_size("--bytes", "16MiB").ok(), Some(16 << 20));
        assert!(parse_size("--bytes", "1.5M").is_err());
        assert!(parse_size("--bytes", "12Q").is_err());
    }
}
