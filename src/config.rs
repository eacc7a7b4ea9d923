//! `Config`: flag values checked and converted, with every cross-flag rule in one place. What
//! leaves here is valid; what is not becomes a usage error (exit 64) or a configuration error
//! (exit 78) naming the flag.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use crate::cli::{CheckArgs, ServeArgs};
use crate::error::Error;
use crate::proxy::connect::{self, ResolveError, UpstreamAddr};
use crate::sys::activation::{self, Passed};
use crate::telemetry::log::{
    Connections as LogConnections, Format as LogFormat, Level, LogSettings,
};
use crate::tls::TlsSettings;
use crate::tls::allow_list::AllowList;
use crate::tls::ca_names::CaNamesMode;

/// A validated `serve` invocation.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub listen: Listen,
    /// The upstream as given, for messages.
    pub upstream: String,
    /// The upstream's addresses, resolved at start (and again on reload), tried in turn.
    pub upstream_addrs: Vec<UpstreamAddr>,
    pub tls: TlsSettings,
    pub threads: usize,
    pub handshake_timeout: Duration,
    pub connect_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_conns: Option<usize>,
    pub proxy_protocol: bool,
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
    /// `--ktls`: whether to hand established connections to kernel TLS.
    pub ktls: KtlsMode,
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
        args: ServeArgs,
        passed: Option<Passed>,
    ) -> Result<ServeConfig, Error> {
        let listen = match (args.listen.is_empty(), passed) {
            (true, None) => {
                return Err(Error::Usage(
                    "--listen is required (e.g. --listen 0.0.0.0:8443) unless started by socket activation (LISTEN_FDS)".into(),
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
        let upstream_addrs = resolve_upstream(&args.upstream)?;
        if args.reauthorize_on_reload && args.mutual_tls_cas.is_empty() {
            return Err(Error::Usage(
                "--reauthorize-on-reload needs --mutual-tls-cas: without a trust store there is nothing to re-check".into(),
            ));
        }
        let mut tls = tls_settings(shared_tls_flags!(args))?;
        tls.tls13_only = parse_tls_min(&args.tls_min)?;
        tls.keylog = args.unsafe_keylog;
        tls.alpn = parse_alpn(args.alpn)?;
        let threads = match args.threads {
            Some(0) => return Err(Error::Usage("--threads must be at least 1".into())),
            Some(n) => n,
            None => default_threads(),
        };
        if args.max_conns == Some(0) {
            return Err(Error::Usage("--max-conns must be at least 1".into()));
        }
        Ok(ServeConfig {
            listen,
            upstream: args.upstream,
            upstream_addrs,
            tls,
            threads,
            handshake_timeout: parse_duration("--handshake-timeout", &args.handshake_timeout)?,
            connect_timeout: parse_duration("--connect-timeout", &args.connect_timeout)?,
            idle_timeout: parse_duration("--idle-timeout", &args.idle_timeout)?,
            max_conns: args.max_conns,
            proxy_protocol: args.proxy_protocol,
            watch: args.watch,
            reauthorize: args.reauthorize_on_reload,
            drain_timeout: parse_duration("--drain-timeout", &args.drain_timeout)?,
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
        })
    }
}

/// The credential and identity-policy flags `serve` and `check` share, moved out of either
/// argh struct (argh has no flattening).
macro_rules! shared_tls_flags {
    ($args:ident) => {
        SharedTlsFlags {
            crt: $args.crt,
            key: $args.key,
            cas: $args.mutual_tls_cas,
            crls: $args.crl,
            ca_names: $args.ca_names,
            allow: AllowList {
                cn: $args.allow_cn,
                ou: $args.allow_ou,
                dns: $args.allow_dns,
                uri: $args.allow_uri,
                all: $args.allow_all,
            },
        }
    };
}
use shared_tls_flags;

/// See `shared_tls_flags!`.
struct SharedTlsFlags {
    crt: Vec<PathBuf>,
    key: Vec<PathBuf>,
    cas: Vec<PathBuf>,
    crls: Vec<PathBuf>,
    ca_names: Option<String>,
    allow: AllowList,
}

/// Checks the shared flags; the `serve`-only TLS settings start at their defaults.
fn tls_settings(flags: SharedTlsFlags) -> Result<TlsSettings, Error> {
    let (crt, key, more_certs) = cert_pairs(flags.crt, flags.key)?;
    let allow = allow_list(!flags.cas.is_empty(), flags.allow)?;
    let ca_names = parse_ca_names(!flags.cas.is_empty(), flags.ca_names.as_deref())?;
    Ok(TlsSettings {
        allow,
        more_certs,
        crls: flags.crls,
        ca_names,
        ..TlsSettings::new(crt, key, flags.cas)
    })
}

/// The TLS settings of a `check` invocation.
pub fn check_files(args: CheckArgs) -> Result<TlsSettings, Error> {
    tls_settings(shared_tls_flags!(args))
}

/// `--crt`/`--key` in pairs: the first pair (the default certificate) and the others.
#[allow(clippy::type_complexity)]
fn cert_pairs(
    crts: Vec<PathBuf>,
    keys: Vec<PathBuf>,
) -> Result<(PathBuf, PathBuf, Vec<(PathBuf, PathBuf)>), Error> {
    if crts.is_empty() || keys.is_empty() {
        return Err(Error::Usage(
            "--crt and --key are required (e.g. --crt server.pem --key server.key)".into(),
        ));
    }
    if crts.len() != keys.len() {
        return Err(Error::Usage(format!(
            "--crt and --key go in pairs: {} --crt but {} --key",
            crts.len(),
            keys.len()
        )));
    }
    let mut pairs = crts.into_iter().zip(keys);
    let (crt, key) = pairs
        .next()
        .ok_or_else(|| Error::Usage("--crt is required".into()))?;
    Ok((crt, key, pairs.collect()))
}

/// `--ca-names auto|all|none` (default auto); it shapes the client-certificate request, so it
/// needs a trust store like the `--allow-*` flags do.
fn parse_ca_names(have_cas: bool, value: Option<&str>) -> Result<CaNamesMode, Error> {
    let Some(value) = value else {
        return Ok(CaNamesMode::Auto);
    };
    let mode = CaNamesMode::parse(value)
        .ok_or_else(|| Error::Usage(format!("--ca-names {value}: expected auto, all or none")))?;
    if !have_cas {
        return Err(Error::Usage(format!(
            "--ca-names {value} needs --mutual-tls-cas: without a trust store no client certificate is requested"
        )));
    }
    Ok(mode)
}

/// `--alpn`: protocol names of 1 to 255 bytes (RFC 7301 §3.1).
fn parse_alpn(protocols: Vec<String>) -> Result<Vec<String>, Error> {
    match protocols.iter().find(|p| p.is_empty() || p.len() > 255) {
        Some(bad) => Err(Error::Usage(format!(
            "--alpn {bad:?}: a protocol name is 1 to 255 bytes"
        ))),
        None => Ok(protocols),
    }
}

/// `--tls-min`: whether TLS 1.2 is turned off.
fn parse_tls_min(s: &str) -> Result<bool, Error> {
    match s {
        "1.2" => Ok(false),
        "1.3" => Ok(true),
        other => Err(Error::Usage(format!(
            "--tls-min {other}: expected 1.2 or 1.3 (older versions are not supported)"
        ))),
    }
}

/// The identity allow-list from the `--allow-*` flags: `--allow-all` excludes the others, and
/// any of them needs a trust store to check chains against.
fn allow_list(have_cas: bool, list: AllowList) -> Result<AllowList, Error> {
    if list.all && !list.is_empty() {
        return Err(Error::Usage(
            "--allow-all admits every valid client; it cannot be combined with --allow-cn, --allow-ou, --allow-dns or --allow-uri".into(),
        ));
    }
    if (list.all || !list.is_empty()) && !have_cas {
        return Err(Error::Usage(
            "--allow-* flags need --mutual-tls-cas: without a trust store no client certificate is checked".into(),
        ));
    }
    if let Some(bad) = list
        .dns
        .iter()
        .chain(&list.uri)
        .chain(&list.cn)
        .chain(&list.ou)
        .find(|v| v.trim().is_empty())
    {
        return Err(Error::Usage(format!("--allow-*: empty value {bad:?}")));
    }
    Ok(list)
}

/// The number of cores this process may run on (its affinity mask, not the machine's count).
pub fn default_threads() -> usize {
    core_affinity::get_core_ids()
        .map(|ids| ids.len())
        .filter(|&n| n > 0)
        .or_else(|| std::thread::available_parallelism().ok().map(|n| n.get()))
        .unwrap_or(1)
}

fn parse_listen(s: &str) -> Result<SocketAddr, Error> {
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

/// Splits `64MiB` into (64, "MiB"); `None` when it does not start with a whole number.
fn split_quantity(s: &str) -> Option<(u64, &str)> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    Some((num.parse().ok()?, unit))
}

/// Parses `10s`, `500ms`, `5m`, `1h` or a bare number of seconds.
pub fn parse_duration(flag: &str, s: &str) -> Result<Duration, Error> {
    let bad = || {
        Error::Usage(format!(
            "{flag} {s}: expected a duration such as 500ms, 10s, 5m or 1h"
        ))
    };
    let (n, unit) = split_quantity(s).ok_or_else(bad)?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "" | "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        _ => return Err(bad()),
    };
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
