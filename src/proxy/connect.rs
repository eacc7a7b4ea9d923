//! The upstream: where it is (`HOST:PORT`, resolved to addresses, or `unix:/path`) and dialling it.
//!
//! A name is resolved when the configuration is built (at start and on every reload), not per
//! connection: a DNS lookup is blocking and slow, and the workers never block. Every resolved
//! address is tried in turn, each within `--connect-timeout`, so one dead address of a name does
//! not fail the connection.

use std::fmt;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use monoio::io::{AsyncReadRent, AsyncWriteRent, Split};
use monoio::net::{TcpStream, UnixStream};

use super::splice::Ready;

/// One place the upstream can be reached.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum UpstreamAddr {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl fmt::Display for UpstreamAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UpstreamAddr::Tcp(addr) => addr.fmt(f),
            UpstreamAddr::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// Why `--upstream` could not be turned into addresses.
#[derive(Debug)]
pub enum ResolveError {
    /// Not `HOST:PORT` nor `unix:/path`: a usage mistake (the message says what was expected).
    Syntax(String),
    /// Well formed, but the name does not resolve (now).
    Unresolvable { spec: String, source: io::Error },
    /// The name resolves to no address.
    NoAddress { spec: String },
}

impl fmt::Display for ResolveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResolveError::Syntax(m) => f.write_str(m),
            ResolveError::Unresolvable { spec, .. } => {
                write!(f, "--upstream {spec}: cannot resolve")
            }
            ResolveError::NoAddress { spec } => {
                write!(f, "--upstream {spec}: name resolves to no address")
            }
        }
    }
}

impl std::error::Error for ResolveError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ResolveError::Unresolvable { source, .. } => Some(source),
            ResolveError::Syntax(_) | ResolveError::NoAddress { .. } => None,
        }
    }
}

/// Parses `--upstream` and resolves it: `unix:/path` is one address, `HOST:PORT` every address
/// the name has, in the resolver's order.
pub(crate) fn resolve(spec: &str) -> Result<Vec<UpstreamAddr>, ResolveError> {
    if let Some(path) = spec.strip_prefix("unix:") {
        if path.is_empty() {
            return Err(ResolveError::Syntax(format!(
                "--upstream {spec}: expected unix:/path/to/socket"
            )));
        }
        return Ok(vec![UpstreamAddr::Unix(PathBuf::from(path))]);
    }
    if spec
        .rsplit_once(':')
        .is_none_or(|(_, port)| port.parse::<u16>().is_err())
    {
        return Err(ResolveError::Syntax(format!(
            "--upstream {spec}: expected HOST:PORT (e.g. 127.0.0.1:8080) or unix:/path"
        )));
    }
    let addrs: Vec<UpstreamAddr> = spec
        .to_socket_addrs()
        .map_err(|source| ResolveError::Unresolvable {
            spec: spec.to_owned(),
            source,
        })?
        .map(UpstreamAddr::Tcp)
        .collect();
    if addrs.is_empty() {
        return Err(ResolveError::NoAddress {
            spec: spec.to_owned(),
        });
    }
    Ok(addrs)
}

/// A connected upstream.
pub(crate) enum UpstreamStream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

/// What both data paths need of an upstream socket: monoio's owned-buffer I/O and its halves
/// (user space), readiness and a descriptor (kernel TLS, `splice`).
pub(crate) trait Upstream: Split + AsyncReadRent + AsyncWriteRent + Ready {}

impl<T: Split + AsyncReadRent + AsyncWriteRent + Ready> Upstream for T {}

/// Why no upstream address could be dialled: the last address's failure.
#[derive(Debug)]
pub(crate) enum DialError {
    /// The configuration holds no address (cannot happen after `resolve`).
    NoAddress,
    Failed {
        addr: UpstreamAddr,
        source: io::Error,
    },
    TimedOut {
        addr: UpstreamAddr,
        after: Duration,
    },
}

impl fmt::Display for DialError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DialError::NoAddress => f.write_str("no upstream address"),
            DialError::Failed { addr, .. } => addr.fmt(f),
            DialError::TimedOut { addr, after } => {
                write!(f, "{addr}: connect timed out after {after:?}")
            }
        }
    }
}

impl std::error::Error for DialError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DialError::Failed { source, .. } => Some(source),
            DialError::NoAddress | DialError::TimedOut { .. } => None,
        }
    }
}

/// Dials each address in turn, each within `timeout`; the error is the last failure.
pub(crate) async fn connect(
    addrs: &[UpstreamAddr],
    timeout: Duration,
) -> Result<UpstreamStream, DialError> {
    let mut last = DialError::NoAddress;
    for addr in addrs {
        let attempt = async {
            match addr {
                UpstreamAddr::Tcp(a) => TcpStream::connect_addr(*a).await.map(|stream| {
                    // Latency over batching: the client's records arrive already batched.
                    let _ = stream.set_nodelay(true);
                    UpstreamStream::Tcp(stream)
                }),
                UpstreamAddr::Unix(path) => {
                    UnixStream::connect(path).await.map(UpstreamStream::Unix)
                }
            }
        };
        let addr = addr.clone();
        match super::timer::timeout(timeout, attempt).await {
            Ok(Ok(stream)) => return Ok(stream),
            Ok(Err(source)) => last = DialError::Failed { addr, source },
            Err(_) => {
                last = DialError::TimedOut {
                    addr,
                    after: timeout,
                }
            }
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dials_the_next_address_when_one_refuses() {
        let good = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let refused = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("bind");
        let addrs = [
            UpstreamAddr::Tcp(refused),
            UpstreamAddr::Tcp(good.local_addr().expect("addr")),
        ];
        let mut rt = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
            .enable_timer()
            .build()
            .expect("runtime");
        let result = rt.block_on(connect(&addrs, Duration::from_secs(5)));
        assert!(matches!(result, Ok(UpstreamStream::Tcp(_))));
        let failed = rt.block_on(connect(&addrs[..1], Duration::from_secs(5)));
        assert!(
            matches!(&failed, Err(DialError::Failed { addr, .. }) if *addr == addrs[0]),
            "the error names the address"
        );
    }

    #[test]
    fn parses_unix_and_host_port() {
        assert_eq!(
            resolve("unix:/run/app.sock").ok(),
            Some(vec![UpstreamAddr::Unix("/run/app.sock".into())])
        );
        assert_eq!(resolve("127.0.0.1:9").map(|a| a.len()).ok(), Some(1));
        for bad in ["localhost", "127.0.0.1:http", "unix:", ""] {
            assert!(
                matches!(resolve(bad), Err(ResolveError::Syntax(m)) if m.contains("--upstream")),
                "{bad:?} accepted"
            );
        }
    }
}
