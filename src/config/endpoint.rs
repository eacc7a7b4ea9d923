//! One endpoint: where it listens, which server names it answers, whether it terminates TLS
//! (and with which credentials, trust store and verification strategy) or passes it through,
//! and where its bytes go. The rules an endpoint must obey are here once, for both of its
//! spellings: the one-endpoint flags (`--crt`, `--allow-cn`) and a `--config` file's tables
//! (`crt`, `allow_cn`); `Spelling` names a setting the way its source does.

use std::path::PathBuf;
use std::time::Duration;

use crate::proxy::connect::UpstreamAddr;
pub use crate::proxy::{AcceptProxy, Timeouts};
use crate::revocation::{OcspMode, OcspSettings};
pub use crate::tls::ClientAuth;
use crate::tls::TlsSettings;
use crate::tls::allow_list::AllowList;
use crate::tls::ca_names::CaNamesMode;
use crate::tls::crl::StaleCrl;

/// An endpoint, checked.
#[derive(Debug, Clone)]
pub struct EndpointConfig {
    /// `name` in the file; `default` for the flags form. Labels its events and metrics.
    pub name: String,
    /// Indexes into the listen addresses (`ServeConfig::listen`) this endpoint is served on.
    pub listeners: Vec<usize>,
    /// SNI names it answers (`*.example.com` covers one label); none: only as a default.
    pub server_names: Vec<String>,
    /// Serves clients with no SNI, or one no endpoint on the listener names.
    pub default: bool,
    pub mode: Mode,
    /// The upstream as given, for messages.
    pub upstream: String,
    /// Its addresses, resolved at start (and again on reload), tried in turn.
    pub upstream_addrs: Vec<UpstreamAddr>,
    /// Send a PROXY protocol v2 header to the upstream before any client byte.
    pub proxy_protocol: bool,
    /// Its listeners' connections start with a PROXY header from these sources
    /// (`--accept-proxy`, or `accept_proxy` in a file); every endpoint of a listener agrees.
    pub accept_proxy: Option<AcceptProxy>,
    pub timeouts: Timeouts,
}

/// What an endpoint does with the TLS it accepts.
#[derive(Debug, Clone)]
pub enum Mode {
    /// Completes the handshake here and forwards the plaintext.
    Terminate(Box<TlsSettings>),
    /// Forwards the TLS bytes untouched: the upstream terminates.
    Passthrough,
}

impl Mode {
    pub fn as_str(&self) -> &'static str {
        match self {
            Mode::Terminate(_) => "terminate",
            Mode::Passthrough => "passthrough",
        }
    }
}

/// How a setting is named where it was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Spelling {
    /// `--mutual-tls-cas`.
    Flag,
    /// `mutual_tls_cas`.
    File,
}

impl Spelling {
    /// `key` (kebab-case, as the flag) the way this source spells it.
    pub(crate) fn key(self, key: &str) -> String {
        match self {
            Spelling::Flag => format!("--{key}"),
            Spelling::File => key.replace('-', "_"),
        }
    }
}

/// The TLS settings of one endpoint as given, before the checks.
pub(crate) struct TlsInput {
    pub crt: Vec<PathBuf>,
    pub key: Vec<PathBuf>,
    pub cas: Vec<PathBuf>,
    pub crls: Vec<PathBuf>,
    pub stale_crl: Option<String>,
    pub crl_fetch: bool,
    pub crl_refresh: Option<String>,
    pub ocsp: Option<String>,
    pub ocsp_responder: Option<String>,
    pub ocsp_timeout: Option<String>,
    pub ocsp_max_age: Option<String>,
    pub ca_names: Option<String>,
    pub client_auth: Option<String>,
    pub allow: AllowList,
    pub alpn: Vec<String>,
    pub tls_min: Option<String>,
}

impl TlsInput {
    /// Whether anything but the certificates was given (a passthrough endpoint may have none).
    pub(crate) fn first_given(&self, s: Spelling) -> Option<String> {
        let named = [
            ("crt", !self.crt.is_empty()),
            ("key", !self.key.is_empty()),
            ("mutual-tls-cas", !self.cas.is_empty()),
            ("crl", !self.crls.is_empty()),
            ("stale-crl", self.stale_crl.is_some()),
            ("crl-fetch", self.crl_fetch),
            ("crl-refresh", self.crl_refresh.is_some()),
            ("ocsp", self.ocsp.is_some()),
            ("ocsp-responder", self.ocsp_responder.is_some()),
            ("ocsp-timeout", self.ocsp_timeout.is_some()),
            ("ocsp-max-age", self.ocsp_max_age.is_some()),
            ("ca-names", self.ca_names.is_some()),
            ("client-auth", self.client_auth.is_some()),
            ("allow-cn", !self.allow.cn.is_empty()),
            ("allow-ou", !self.allow.ou.is_empty()),
            ("allow-dns", !self.allow.dns.is_empty()),
            ("allow-uri", !self.allow.uri.is_empty()),
            ("allow-all", self.allow.all),
            ("alpn", !self.alpn.is_empty()),
            ("tls-min", self.tls_min.is_some()),
        ];
        named
            .iter()
            .find(|(_, given)| *given)
            .map(|(key, _)| s.key(key))
    }

    /// Checks every rule; the message names the settings at fault as `s` spells them.
    pub(crate) fn check(self, s: Spelling) -> Result<TlsSettings, String> {
        let k = |key: &str| s.key(key);
        let (crt, key, more_certs) = cert_pairs(s, self.crt, self.key)?;
        let have_cas = !self.cas.is_empty();
        let client_auth = match self.client_auth.as_deref() {
            None if have_cas => ClientAuth::RequireAndVerify,
            None => ClientAuth::None,
            Some(v) => ClientAuth::parse(v).ok_or_else(|| {
                format!(
                    "{} {v}: expected require-and-verify, require-any, request or none",
                    k("client-auth")
                )
            })?,
        };
        if client_auth.verifies() && !have_cas {
            return Err(format!(
                "{} require-and-verify needs {}: without a trust store no chain can be verified",
                k("client-auth"),
                k("mutual-tls-cas")
            ));
        }
        if client_auth == ClientAuth::None && have_cas {
            return Err(format!(
                "{} none asks for no client certificate: {} would never be used",
                k("client-auth"),
                k("mutual-tls-cas")
            ));
        }
        let allow = allow_list(s, client_auth, self.allow)?;
        let ca_names = parse_ca_names(s, have_cas, self.ca_names.as_deref())?;
        let stale_crl = match self.stale_crl.as_deref() {
            None => StaleCrl::Warn,
            Some(v) => StaleCrl::parse(v)
                .ok_or_else(|| format!("{} {v}: expected warn or refuse", k("stale-crl")))?,
        };
        if self.stale_crl.is_some() && self.crls.is_empty() && !self.crl_fetch {
            return Err(format!(
                "{} needs {} or {}: it says what a CRL past its nextUpdate means",
                k("stale-crl"),
                k("crl"),
                k("crl-fetch")
            ));
        }
        let crl_fetch = crl_fetch(s, client_auth, self.crl_fetch, self.crl_refresh)?;
        let ocsp = ocsp_settings(
            s,
            client_auth,
            [
                self.ocsp,
                self.ocsp_responder,
                self.ocsp_timeout,
                self.ocsp_max_age,
            ],
        )?;
        let alpn = match self.alpn.iter().find(|p| p.is_empty() || p.len() > 255) {
            // RFC 7301 §3.1.
            Some(bad) => {
                return Err(format!(
                    "{} {bad:?}: a protocol name is 1 to 255 bytes",
                    k("alpn")
                ));
            }
            None => self.alpn,
        };
        let tls13_only = match self.tls_min.as_deref() {
            None | Some("1.2") => false,
            Some("1.3") => true,
            Some(other) => {
                return Err(format!(
                    "{} {other}: expected 1.2 or 1.3 (older versions are not supported)",
                    k("tls-min")
                ));
            }
        };
        Ok(TlsSettings {
            allow,
            more_certs,
            crls: self.crls,
            stale_crl,
            crl_fetch,
            ocsp,
            ca_names,
            client_auth,
            alpn,
            tls13_only,
            ..TlsSettings::new(crt, key, self.cas)
        })
    }
}

/// `--crl-fetch` and `--crl-refresh`: the refresh interval when CRLs are fetched.
fn crl_fetch(
    s: Spelling,
    client_auth: ClientAuth,
    fetch: bool,
    refresh: Option<String>,
) -> Result<Option<Duration>, String> {
    let k = |key: &str| s.key(key);
    if !fetch {
        return match refresh {
            Some(_) => Err(format!(
                "{} needs {}: it says how often fetched CRLs are fetched again",
                k("crl-refresh"),
                k("crl-fetch")
            )),
            None => Ok(None),
        };
    }
    if !client_auth.verifies() {
        return Err(format!(
            "{} needs {} require-and-verify: only a verified chain is checked against CRLs",
            k("crl-fetch"),
            k("client-auth")
        ));
    }
    match refresh {
        None => Ok(Some(Duration::from_secs(3600))),
        Some(v) => super::parse_duration(&k("crl-refresh"), &v)
            .map(Some)
            .map_err(|e| e.to_string()),
    }
}

/// `--ocsp`, `--ocsp-responder`, `--ocsp-timeout`, `--ocsp-max-age`, in that order.
fn ocsp_settings(
    s: Spelling,
    client_auth: ClientAuth,
    [mode, responder, timeout, max_age]: [Option<String>; 4],
) -> Result<OcspSettings, String> {
    let k = |key: &str| s.key(key);
    let defaults = OcspSettings::default();
    let mode = match mode.as_deref() {
        None => OcspMode::Off,
        Some(v) => OcspMode::parse(v)
            .ok_or_else(|| format!("{} {v}: expected off, soft or hard", k("ocsp")))?,
    };
    if mode == OcspMode::Off {
        let given = [
            ("ocsp-responder", responder.is_some()),
            ("ocsp-timeout", timeout.is_some()),
            ("ocsp-max-age", max_age.is_some()),
        ];
        if let Some((key, _)) = given.iter().find(|(_, g)| *g) {
            return Err(format!(
                "{} needs {} soft or hard: it says how OCSP is asked",
                k(key),
                k("ocsp")
            ));
        }
        return Ok(defaults);
    }
    if !client_auth.verifies() {
        return Err(format!(
            "{} {} needs {} require-and-verify: only a verified chain has an issuer to ask about",
            k("ocsp"),
            mode.as_str(),
            k("client-auth")
        ));
    }
    if let Some(url) = &responder {
        crate::revocation::http::check_url(url)
            .map_err(|e| format!("{}: {e}", k("ocsp-responder")))?;
    }
    let duration = |key: &str, value: Option<String>, default| match value {
        None => Ok(default),
        Some(v) => super::parse_duration(&k(key), &v).map_err(|e| e.to_string()),
    };
    Ok(OcspSettings {
        mode,
        responder,
        timeout: duration("ocsp-timeout", timeout, defaults.timeout)?,
        max_age: duration("ocsp-max-age", max_age, defaults.max_age)?,
    })
}

/// `crt`/`key` in pairs: the first pair (the default certificate) and the others.
#[allow(clippy::type_complexity)]
fn cert_pairs(
    s: Spelling,
    crts: Vec<PathBuf>,
    keys: Vec<PathBuf>,
) -> Result<(PathBuf, PathBuf, Vec<(PathBuf, PathBuf)>), String> {
    let (crt, key) = (s.key("crt"), s.key("key"));
    if crts.len() != keys.len() && !crts.is_empty() && !keys.is_empty() {
        return Err(format!(
            "{crt} and {key} go in pairs: {} {crt} but {} {key}",
            crts.len(),
            keys.len()
        ));
    }
    let mut pairs = crts.into_iter().zip(keys);
    let Some((first_crt, first_key)) = pairs.next() else {
        let example = match s {
            Spelling::Flag => "e.g. --crt server.pem --key server.key",
            Spelling::File => {
                "crt = \"server.pem\" and key = \"server.key\", or [[endpoint.certificate]] tables"
            }
        };
        return Err(format!(
            "{crt} and {key} are required to terminate TLS ({example})"
        ));
    };
    Ok((first_crt, first_key, pairs.collect()))
}

/// `ca-names auto|all|none` (default auto); it shapes the client-certificate request, so it
/// needs a trust store.
fn parse_ca_names(s: Spelling, have_cas: bool, value: Option<&str>) -> Result<CaNamesMode, String> {
    let Some(value) = value else {
        return Ok(CaNamesMode::Auto);
    };
    let key = s.key("ca-names");
    let mode = CaNamesMode::parse(value)
        .ok_or_else(|| format!("{key} {value}: expected auto, all or none"))?;
    if !have_cas {
        return Err(format!(
            "{key} {value} needs {}: without a trust store there are no CA names to send",
            s.key("mutual-tls-cas")
        ));
    }
    Ok(mode)
}

/// The identity allow-list: `allow-all` excludes the others, and any of them needs chains
/// that are verified.
fn allow_list(s: Spelling, client_auth: ClientAuth, list: AllowList) -> Result<AllowList, String> {
    let allow = s.key("allow-*");
    if list.all && !list.is_empty() {
        return Err(format!(
            "{} admits every valid client; it cannot be combined with {}, {}, {} or {}",
            s.key("allow-all"),
            s.key("allow-cn"),
            s.key("allow-ou"),
            s.key("allow-dns"),
            s.key("allow-uri")
        ));
    }
    if (list.all || !list.is_empty()) && !client_auth.verifies() {
        return Err(match client_auth {
            ClientAuth::None => format!(
                "{allow} needs {}: without a trust store no client certificate is checked",
                s.key("mutual-tls-cas")
            ),
            other => format!(
                "{allow} needs {} require-and-verify: with {other} the client's certificate is not verified, so its identity proves nothing",
                s.key("client-auth")
            ),
        });
    }
    if let Some(bad) = list
        .dns
        .iter()
        .chain(&list.uri)
        .chain(&list.cn)
        .chain(&list.ou)
        .find(|v| v.trim().is_empty())
    {
        return Err(format!("{allow}: empty value {bad:?}"));
    }
    Ok(list)
}
