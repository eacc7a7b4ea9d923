//! `--config FILE`: many endpoints in one TOML file, one `[[endpoint]]` table each, its keys
//! named like the flags with `_` for `-`. Parsing is serde with the `toml` crate; what the
//! crate cannot know (an endpoint's own rules, two endpoints claiming one name on one
//! listener) is checked here, and every error names the file, the line and the endpoint.
//!
//! Relative paths are relative to the file's directory, so a file and the certificates beside
//! it work from wherever ringtls is started.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use super::endpoint::{EndpointConfig, Mode, Spelling, Timeouts, TlsInput};
use crate::tls::allow_list::AllowList;
use crate::tls::sni_route::{RouteError, Routes};

/// A config file that cannot be used: where, in which endpoint, and why.
#[derive(Debug)]
pub struct FileError {
    pub file: PathBuf,
    /// 1-based; `None` when the file could not be read at all.
    pub line: Option<usize>,
    pub endpoint: Option<String>,
    pub message: String,
    pub source: Option<std::io::Error>,
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "--config {}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(name) = &self.endpoint {
            write!(f, ": endpoint {name:?}")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for FileError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_ref().map(|e| e as _)
    }
}

/// The endpoints of a file and the listen addresses they use, in order of first mention.
#[derive(Debug)]
pub struct Endpoints {
    pub listen: Vec<SocketAddr>,
    pub endpoints: Vec<EndpointConfig>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTables {
    #[serde(default)]
    endpoint: Vec<Spanned<EndpointTable>>,
}

/// One value or a list of them: `listen = "127.0.0.1:8443"` reads as a list of one.
#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMore<T> {
    One(T),
    More(Vec<T>),
}

impl<T> OneOrMore<T> {
    fn into_vec(self) -> Vec<T> {
        match self {
            OneOrMore::One(v) => vec![v],
            OneOrMore::More(v) => v,
        }
    }
}

impl<T> Default for OneOrMore<T> {
    fn default() -> Self {
        OneOrMore::More(Vec::new())
    }
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
enum ModeKey {
    #[default]
    Terminate,
    Passthrough,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CertificateTable {
    crt: PathBuf,
    key: PathBuf,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EndpointTable {
    name: Spanned<String>,
    // The span is the whole value's: an untagged list cannot hold spanned items (serde
    // buffers it, and a span needs toml's own deserializer).
    listen: Spanned<OneOrMore<String>>,
    server_names: Option<Spanned<OneOrMore<String>>>,
    #[serde(default)]
    default: bool,
    #[serde(default)]
    mode: ModeKey,
    crt: Option<PathBuf>,
    key: Option<PathBuf>,
    #[serde(default)]
    certificate: Vec<CertificateTable>,
    #[serde(default)]
    mutual_tls_cas: OneOrMore<PathBuf>,
    #[serde(default)]
    crl: OneOrMore<PathBuf>,
    client_auth: Option<String>,
    #[serde(default)]
    allow_cn: OneOrMore<String>,
    #[serde(default)]
    allow_ou: OneOrMore<String>,
    #[serde(default)]
    allow_dns: OneOrMore<String>,
    #[serde(default)]
    allow_uri: OneOrMore<String>,
    #[serde(default)]
    allow_all: bool,
    ca_names: Option<String>,
    #[serde(default)]
    alpn: OneOrMore<String>,
    tls_min: Option<String>,
    upstream: Spanned<String>,
    #[serde(default)]
    proxy_protocol: bool,
    handshake_timeout: Option<Spanned<String>>,
    connect_timeout: Option<Spanned<String>>,
    idle_timeout: Option<Spanned<String>>,
}

/// Reads and checks `path`. The upstreams are resolved too: a file `serve` could not start
/// with is an error here.
pub fn load(path: &Path) -> Result<Endpoints, FileError> {
    let text = std::fs::read_to_string(path).map_err(|e| FileError {
        file: path.to_owned(),
        line: None,
        endpoint: None,
        message: "cannot read".into(),
        source: Some(e),
    })?;
    parse(path, &text)
}

/// Checks `text`, the contents of `path`.
pub fn parse(path: &Path, text: &str) -> Result<Endpoints, FileError> {
    let at = |span: Option<Range<usize>>, endpoint: Option<&str>, message: String| FileError {
        file: path.to_owned(),
        line: span.map(|s| line_of(text, s.start)),
        endpoint: endpoint.map(str::to_owned),
        message,
        source: None,
    };
    let tables: FileTables =
        toml::from_str(text).map_err(|e| at(e.span(), None, e.message().trim().to_owned()))?;
    if tables.endpoint.is_empty() {
        return Err(at(
            None,
            None,
            "no [[endpoint]] table: nothing to serve".into(),
        ));
    }
    let base = path.parent().unwrap_or(Path::new("."));
    let mut listen: Vec<SocketAddr> = Vec::new();
    let mut endpoints: Vec<EndpointConfig> = Vec::new();
    // Who claimed what, per listener: the first endpoint to name a server name or to be the
    // default, and the line where it did.
    let mut claims: Vec<(Routes<Claim>, Option<Claim>)> = Vec::new();
    let mut lines: HashMap<String, usize> = HashMap::new();
    for table in tables.endpoint {
        let table_line = line_of(text, table.span().start);
        let t = table.into_inner();
        let name = t.name.get_ref().clone();
        let fail = |span: Range<usize>, message: String| at(Some(span), Some(&name), message);
        if name.trim().is_empty() {
            return Err(fail(t.name.span(), "name is empty".into()));
        }
        if let Some(first) = lines.get(&name) {
            return Err(fail(
                t.name.span(),
                format!("the name is already used by the endpoint at line {first}"),
            ));
        }
        lines.insert(name.clone(), table_line);

        let listen_span = t.listen.span();
        let mut listeners = Vec::new();
        for addr in t.listen.into_inner().into_vec() {
            let parsed = super::parse_listen(&addr).map_err(|_| {
                fail(
                    listen_span.clone(),
                    format!("listen {addr:?}: expected IP:PORT, e.g. 127.0.0.1:8443 or [::]:8443"),
                )
            })?;
            let index = match listen.iter().position(|a| *a == parsed) {
                Some(i) => i,
                None => {
                    listen.push(parsed);
                    claims.push((Routes::new(), None));
                    listen.len() - 1
                }
            };
            if !listeners.contains(&index) {
                listeners.push(index);
            }
        }
        if listeners.is_empty() {
            return Err(fail(
                listen_span,
                "listen is empty: give one or more addresses".into(),
            ));
        }

        let names_span = t.server_names.as_ref().map(|n| n.span());
        let server_names = t
            .server_names
            .map(|n| n.into_inner().into_vec())
            .unwrap_or_default();
        let names_line = names_span
            .as_ref()
            .map_or(table_line, |s| line_of(text, s.start));
        let names_span = names_span.unwrap_or(listen_span.clone());
        let default = t.default || server_names.is_empty();
        for &index in &listeners {
            let (routes, default_of) = &mut claims[index];
            for sni in &server_names {
                if let Err(e) = routes.insert(sni, (name.clone(), names_line)) {
                    let message = match (&e, routes.route(Some(sni))) {
                        (RouteError::Duplicate(_), Some((other, other_line))) => format!(
                            "server name {sni} on {} is already claimed by endpoint {other:?} (line {other_line})",
                            listen[index]
                        ),
                        _ => e.to_string(),
                    };
                    return Err(fail(names_span.clone(), message));
                }
            }
            if default {
                if let Some((other, other_line)) = default_of {
                    return Err(FileError {
                        file: path.to_owned(),
                        line: Some(table_line),
                        endpoint: Some(name.clone()),
                        message: format!(
                            "{} already has a default endpoint, {other:?} (line {other_line}); an endpoint without server_names is a default",
                            listen[index]
                        ),
                        source: None,
                    });
                }
                *default_of = Some((name.clone(), table_line));
            }
        }

        let tls = TlsInput {
            crt: t
                .crt
                .into_iter()
                .chain(t.certificate.iter().map(|c| c.crt.clone()))
                .map(|p| base.join(p))
                .collect(),
            key: t
                .key
                .into_iter()
                .chain(t.certificate.iter().map(|c| c.key.clone()))
                .map(|p| base.join(p))
                .collect(),
            cas: t
                .mutual_tls_cas
                .into_vec()
                .into_iter()
                .map(|p| base.join(p))
                .collect(),
            crls: t.crl.into_vec().into_iter().map(|p| base.join(p)).collect(),
            ca_names: t.ca_names,
            client_auth: t.client_auth,
            allow: AllowList {
                cn: t.allow_cn.into_vec(),
                ou: t.allow_ou.into_vec(),
                dns: t.allow_dns.into_vec(),
                uri: t.allow_uri.into_vec(),
                all: t.allow_all,
            },
            alpn: t.alpn.into_vec(),
            tls_min: t.tls_min,
        };
        let at_table = |message: String| FileError {
            file: path.to_owned(),
            line: Some(table_line),
            endpoint: Some(name.clone()),
            message,
            source: None,
        };
        let mode = match t.mode {
            ModeKey::Terminate => {
                Mode::Terminate(Box::new(tls.check(Spelling::File).map_err(at_table)?))
            }
            ModeKey::Passthrough => {
                if let Some(key) = tls.first_given(Spelling::File) {
                    return Err(at_table(format!(
                        "mode = \"passthrough\" forwards the TLS bytes untouched and holds no keys or trust: remove {key}"
                    )));
                }
                Mode::Passthrough
            }
        };
        let defaults = Timeouts::default();
        let duration = |value: Option<Spanned<String>>, key: &str, default| match value {
            None => Ok(default),
            Some(v) => {
                super::parse_duration(key, v.get_ref()).map_err(|e| fail(v.span(), e.to_string()))
            }
        };
        let timeouts = Timeouts {
            handshake: duration(t.handshake_timeout, "handshake_timeout", defaults.handshake)?,
            connect: duration(t.connect_timeout, "connect_timeout", defaults.connect)?,
            idle: duration(t.idle_timeout, "idle_timeout", defaults.idle)?,
        };
        let upstream_addrs = crate::proxy::connect::resolve(t.upstream.get_ref()).map_err(|e| {
            fail(
                t.upstream.span(),
                format!("upstream: {}", crate::cause::Chain(&e)),
            )
        })?;
        endpoints.push(EndpointConfig {
            name,
            listeners,
            server_names,
            default,
            mode,
            upstream: t.upstream.into_inner(),
            upstream_addrs,
            proxy_protocol: t.proxy_protocol,
            timeouts,
        });
    }
    Ok(Endpoints { listen, endpoints })
}

/// An endpoint's name and the line where it claimed a name (or the default).
type Claim = (String, usize);

/// The 1-based line holding byte `offset` of `text`.
fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}
