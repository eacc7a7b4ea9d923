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

use super::AcceptProxyFlags;
use super::endpoint::{AcceptProxy, EndpointConfig, Mode, Spelling, Timeouts, TlsInput};
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

    fn as_slice(&self) -> &[T] {
        match self {
            OneOrMore::One(v) => std::slice::from_ref(v),
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
    stale_crl: Option<String>,
    #[serde(default)]
    crl_fetch: bool,
    crl_refresh: Option<String>,
    ocsp: Option<String>,
    ocsp_responder: Option<String>,
    ocsp_timeout: Option<String>,
    ocsp_max_age: Option<String>,
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
    accept_proxy: Option<Spanned<bool>>,
    accept_proxy_from: Option<Spanned<OneOrMore<String>>>,
    handshake_timeout: Option<Spanned<String>>,
    connect_timeout: Option<Spanned<String>>,
    idle_timeout: Option<Spanned<String>>,
}

/// Reads and checks `path`. The upstreams are resolved too: a file `serve` could not start
/// with is an error here. `--accept-proxy` and `--accept-proxy-from` are the default of the
/// endpoints that do not say.
pub fn load(path: &Path, flags: &AcceptProxyFlags) -> Result<Endpoints, FileError> {
    let text = std::fs::read_to_string(path).map_err(|e| FileError {
        file: path.to_owned(),
        line: None,
        endpoint: None,
        message: "cannot read".into(),
        source: Some(e),
    })?;
    parse(path, &text, flags)
}

/// Checks `text`, the contents of `path`.
pub fn parse(path: &Path, text: &str, flags: &AcceptProxyFlags) -> Result<Endpoints, FileError> {
    let tables: FileTables = toml::from_str(text).map_err(|e| FileError {
        file: path.to_owned(),
        line: e.span().map(|s| line_of(text, s.start)),
        endpoint: e.span().and_then(|s| endpoint_at(text, s.start)),
        message: e.message().trim().to_owned(),
        source: None,
    })?;
    if tables.endpoint.is_empty() {
        return Err(FileError {
            file: path.to_owned(),
            line: None,
            endpoint: None,
            message: "no [[endpoint]] table: nothing to serve".into(),
            source: None,
        });
    }
    let mut reader = Reader {
        path,
        text,
        base: path.parent().unwrap_or(Path::new(".")),
        listen: Vec::new(),
        claims: Vec::new(),
        names: HashMap::new(),
        flags,
        proxy_claims: Vec::new(),
    };
    let endpoints = tables
        .endpoint
        .into_iter()
        .map(|table| reader.endpoint(table))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Endpoints {
        listen: reader.listen,
        endpoints,
    })
}

/// What reading a file has found so far, for the checks across endpoints.
struct Reader<'a> {
    path: &'a Path,
    text: &'a str,
    /// Where relative paths start.
    base: &'a Path,
    /// The listen addresses, in order of first mention.
    listen: Vec<SocketAddr>,
    /// Per listener: who claimed which server name, and who is the default.
    claims: Vec<(Routes<Claim>, Option<Claim>)>,
    /// Endpoint names and the lines of their tables.
    names: HashMap<String, usize>,
    /// `--accept-proxy` and `--accept-proxy-from`: what an endpoint that does not say gets.
    flags: &'a AcceptProxyFlags,
    /// Per listener: the first endpoint on it (name, line) and its PROXY-header setting, which
    /// every other endpoint there must share.
    proxy_claims: Vec<Option<(Claim, Option<AcceptProxy>)>>,
}

impl Reader<'_> {
    /// An error at `span` (the table's line without one) in endpoint `name`.
    fn error(&self, span: Option<Range<usize>>, name: &str, message: String) -> FileError {
        FileError {
            file: self.path.to_owned(),
            line: span.map(|s| line_of(self.text, s.start)),
            endpoint: Some(name.to_owned()),
            message,
            source: None,
        }
    }

    fn endpoint(&mut self, table: Spanned<EndpointTable>) -> Result<EndpointConfig, FileError> {
        let table_span = Some(table.span());
        let table_line = line_of(self.text, table.span().start);
        let t = table.into_inner();
        let name = t.name.get_ref().clone();
        let name_span = t.name.span();
        if name.trim().is_empty() {
            return Err(self.error(Some(t.name.span()), &name, "name is empty".into()));
        }
        if let Some(first) = self.names.get(&name) {
            let message = format!("the name is already used by the endpoint at line {first}");
            return Err(self.error(Some(t.name.span()), &name, message));
        }
        self.names.insert(name.clone(), table_line);
        let tls = tls_input(self.base, &t);

        let listeners = self.listeners(&name, t.listen)?;
        let names_span = t.server_names.as_ref().map(|n| n.span());
        let server_names = t
            .server_names
            .map(|n| n.into_inner().into_vec())
            .unwrap_or_default();
        let default = t.default || server_names.is_empty();
        let names_line = names_span
            .as_ref()
            .map_or(table_line, |s| line_of(self.text, s.start));
        let claim = (name.clone(), names_line);
        for &index in &listeners {
            self.claim_names(index, &server_names, &claim, names_span.clone())?;
            if default {
                self.claim_default(index, (name.clone(), table_line))?;
            }
        }

        let at_table = |message: String| self.error(table_span.clone(), &name, message);
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
            Some(v) => super::parse_duration(key, v.get_ref())
                .map_err(|e| self.error(Some(v.span()), &name, e.to_string())),
        };
        let timeouts = Timeouts {
            handshake: duration(t.handshake_timeout, "handshake_timeout", defaults.handshake)?,
            connect: duration(t.connect_timeout, "connect_timeout", defaults.connect)?,
            idle: duration(t.idle_timeout, "idle_timeout", defaults.idle)?,
        };
        let accept_proxy = self.accept_proxy(
            &name,
            table_span.clone(),
            t.accept_proxy,
            t.accept_proxy_from,
        )?;
        for &index in &listeners {
            let claim = (name.clone(), table_line);
            self.claim_proxy(index, claim, Some(name_span.clone()), &accept_proxy)?;
        }
        let upstream_addrs = crate::proxy::connect::resolve(t.upstream.get_ref()).map_err(|e| {
            let message = format!("upstream: {}", crate::cause::Chain(&e));
            self.error(Some(t.upstream.span()), &name, message)
        })?;
        Ok(EndpointConfig {
            name,
            listeners,
            server_names,
            default,
            mode,
            upstream: t.upstream.into_inner(),
            upstream_addrs,
            proxy_protocol: t.proxy_protocol,
            accept_proxy,
            timeouts,
        })
    }

    /// An endpoint's `accept_proxy` and `accept_proxy_from`, the flags filling in what it does
    /// not say.
    fn accept_proxy(
        &self,
        name: &str,
        table: Option<Range<usize>>,
        on: Option<Spanned<bool>>,
        from: Option<Spanned<OneOrMore<String>>>,
    ) -> Result<Option<AcceptProxy>, FileError> {
        let on_span = on.as_ref().map(|o| o.span());
        let on = on.map_or(self.flags.on, Spanned::into_inner);
        let from = match from {
            None => self.flags.from.clone(),
            Some(given) => {
                let span = given.span();
                if !on {
                    let message = "accept_proxy_from names who may send the PROXY header, but \
                                   accept_proxy is not true: set it, or remove accept_proxy_from"
                        .to_owned();
                    return Err(self.error(Some(span), name, message));
                }
                given
                    .into_inner()
                    .into_vec()
                    .iter()
                    .map(|s| super::parse_network(s))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|m| self.error(Some(span), name, format!("accept_proxy_from {m}")))?
            }
        };
        if !on {
            return Ok(None);
        }
        if from.is_empty() {
            let message = "accept_proxy = true needs accept_proxy_from (or --accept-proxy-from): \
                           a header from anyone would let any client claim any address"
                .to_owned();
            return Err(self.error(on_span.or(table), name, message));
        }
        Ok(Some(AcceptProxy { from }))
    }

    /// The PROXY header comes before the ClientHello that chooses the endpoint, so every
    /// endpoint of listener `index` must agree on it; the first one there sets it.
    fn claim_proxy(
        &mut self,
        index: usize,
        claim: Claim,
        span: Option<Range<usize>>,
        accept: &Option<AcceptProxy>,
    ) -> Result<(), FileError> {
        if self.proxy_claims.len() <= index {
            self.proxy_claims.resize(index + 1, None);
        }
        match &self.proxy_claims[index] {
            None => {
                self.proxy_claims[index] = Some((claim, accept.clone()));
                Ok(())
            }
            Some((_, first)) if first == accept => Ok(()),
            Some(((other, line), first)) => {
                let says = |a: &Option<AcceptProxy>| match a {
                    None => "none".to_owned(),
                    Some(a) => format!(
                        "a PROXY header from {}",
                        a.from
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                };
                let message = format!(
                    "listen {}: endpoint {other:?} (line {line}) takes {} there, this one {}; \
                     the header comes before the ClientHello that picks the endpoint, so every \
                     endpoint of a listener must agree (accept_proxy, accept_proxy_from)",
                    self.listen[index],
                    says(first),
                    says(accept)
                );
                Err(self.error(span, &claim.0, message))
            }
        }
    }

    /// The indexes of an endpoint's listen addresses, each new address added to the list.
    fn listeners(
        &mut self,
        name: &str,
        listen: Spanned<OneOrMore<String>>,
    ) -> Result<Vec<usize>, FileError> {
        let span = listen.span();
        let mut listeners = Vec::new();
        for addr in listen.into_inner().into_vec() {
            let parsed = super::parse_listen(&addr).map_err(|_| {
                let message =
                    format!("listen {addr:?}: expected IP:PORT, e.g. 127.0.0.1:8443 or [::]:8443");
                self.error(Some(span.clone()), name, message)
            })?;
            let index = match self.listen.iter().position(|a| *a == parsed) {
                Some(i) => i,
                None => {
                    self.listen.push(parsed);
                    self.claims.push((Routes::new(), None));
                    self.listen.len() - 1
                }
            };
            if !listeners.contains(&index) {
                listeners.push(index);
            }
        }
        if listeners.is_empty() {
            let message = "listen is empty: give one or more addresses".to_owned();
            return Err(self.error(Some(span), name, message));
        }
        Ok(listeners)
    }

    /// Claims `names` on listener `index` for `claim`'s endpoint; a name another endpoint
    /// claimed there first is an error naming it.
    fn claim_names(
        &mut self,
        index: usize,
        names: &[String],
        claim: &Claim,
        span: Option<Range<usize>>,
    ) -> Result<(), FileError> {
        let addr = self.listen[index];
        for sni in names {
            let routes = &mut self.claims[index].0;
            let Err(e) = routes.insert(sni, claim.clone()) else {
                continue;
            };
            let message = match (&e, routes.route(Some(sni))) {
                (RouteError::Duplicate(_), Some((other, other_line))) => format!(
                    "server name {sni} on {addr} is already claimed by endpoint {other:?} (line {other_line})"
                ),
                _ => e.to_string(),
            };
            return Err(self.error(span, &claim.0, message));
        }
        Ok(())
    }

    /// Makes `claim`'s endpoint the default of listener `index`, unless another one is.
    fn claim_default(&mut self, index: usize, claim: Claim) -> Result<(), FileError> {
        let addr = self.listen[index];
        if let Some((other, other_line)) = &self.claims[index].1 {
            let message = format!(
                "{addr} already has a default endpoint, {other:?} (line {other_line}); an endpoint without server_names is a default"
            );
            return Err(FileError {
                file: self.path.to_owned(),
                line: Some(claim.1),
                endpoint: Some(claim.0),
                message,
                source: None,
            });
        }
        self.claims[index].1 = Some(claim);
        Ok(())
    }
}

/// The TLS keys of a table, paths made relative to `base`, before the checks.
fn tls_input(base: &Path, t: &EndpointTable) -> TlsInput {
    let under = |p: &PathBuf| base.join(p);
    let tables = t.certificate.iter();
    TlsInput {
        crt: t
            .crt
            .iter()
            .chain(tables.clone().map(|c| &c.crt))
            .map(under)
            .collect(),
        key: t
            .key
            .iter()
            .chain(tables.map(|c| &c.key))
            .map(under)
            .collect(),
        cas: t.mutual_tls_cas.as_slice().iter().map(under).collect(),
        crls: t.crl.as_slice().iter().map(under).collect(),
        stale_crl: t.stale_crl.clone(),
        crl_fetch: t.crl_fetch,
        crl_refresh: t.crl_refresh.clone(),
        ocsp: t.ocsp.clone(),
        ocsp_responder: t.ocsp_responder.clone(),
        ocsp_timeout: t.ocsp_timeout.clone(),
        ocsp_max_age: t.ocsp_max_age.clone(),
        ca_names: t.ca_names.clone(),
        client_auth: t.client_auth.clone(),
        allow: AllowList {
            cn: t.allow_cn.as_slice().to_vec(),
            ou: t.allow_ou.as_slice().to_vec(),
            dns: t.allow_dns.as_slice().to_vec(),
            uri: t.allow_uri.as_slice().to_vec(),
            all: t.allow_all,
        },
        alpn: t.alpn.as_slice().to_vec(),
        tls_min: t.tls_min.clone(),
    }
}

/// An endpoint's name and the line where it claimed a name (or the default).
type Claim = (String, usize);

/// The file as plain tables, for naming the endpoint an error of the typed parse is in.
#[derive(Deserialize)]
struct PlainTables {
    #[serde(default)]
    endpoint: Vec<Spanned<toml::Table>>,
}

/// The name of the `[[endpoint]]` table holding byte `offset`, when the file is valid TOML
/// (an unknown key, a value of the wrong type) and that table has a name.
fn endpoint_at(text: &str, offset: usize) -> Option<String> {
    let plain: PlainTables = toml::from_str(text).ok()?;
    // A table's span is its `[[endpoint]]` header: the table holding `offset` is the last
    // one to start before it.
    let table = plain
        .endpoint
        .iter()
        .take_while(|t| t.span().start <= offset)
        .last()?;
    Some(table.get_ref().get("name")?.as_str()?.to_owned())
}

/// The 1-based line holding byte `offset` of `text`.
fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_endpoint_an_offset_is_in() {
        let text = "[[endpoint]]\nname = \"a\"\nx = 1\n\n[[endpoint]]\nname = \"b\"\ncolour = 2\n";
        let at = text.find("colour").expect("colour");
        assert_eq!(endpoint_at(text, at).as_deref(), Some("b"));
        assert_eq!(
            endpoint_at(text, text.find("x =").expect("x")).as_deref(),
            Some("a")
        );
    }
}
