//! The top-level error: every way a command can fail, and the stable exit code of each
//! (sysexits: 64 usage, 78 configuration; 1 for failures at run time). It wraps the error it
//! came from, and is printed with its causes (`cause::Chain`).

use std::fmt;
use std::io;
use std::path::PathBuf;

use crate::config::file::FileError;
use crate::proxy::connect::ResolveError;
use crate::runtime::StartError;
use crate::sys::activation::ActivationError;
use crate::tls::LoadError;

#[derive(Debug)]
pub enum Error {
    /// The command line is wrong: unknown flag, missing value, malformed value.
    Usage(String),
    /// A flag value is well-formed but unusable (e.g. an upstream name that does not resolve).
    Config(String),
    /// The `--config` file is unusable: its file, line and endpoint.
    File(FileError),
    /// `--upstream` names no address we can reach now.
    Upstream(ResolveError),
    /// A certificate, key, CA bundle or CRL is unusable.
    Load(LoadError),
    /// A `--config` endpoint's certificate, key, CA bundle or CRL is unusable.
    InEndpoint {
        endpoint: String,
        source: Box<LoadError>,
    },
    /// The sockets passed by socket activation are unusable.
    Activation(ActivationError),
    /// Binding or starting the workers failed.
    Start(StartError),
    /// A system call failed at run time: what we were doing when it did.
    Io { doing: String, source: io::Error },
    /// `--watch` cannot watch a directory that holds a flagged file.
    Unwatchable { dir: PathBuf, source: io::Error },
    /// Anything else at run time.
    Runtime(String),
}

impl Error {
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Usage(_) => 64,
            Error::Config(_)
            | Error::File(_)
            | Error::Upstream(_)
            | Error::Load(_)
            | Error::InEndpoint { .. }
            | Error::Activation(_)
            | Error::Unwatchable { .. } => 78,
            Error::Start(_) | Error::Io { .. } | Error::Runtime(_) => 1,
        }
    }

    /// `doing` failed with `source`: for `map_err(Error::io("--metrics: cannot bind"))`.
    pub fn io(doing: impl Into<String>) -> impl FnOnce(io::Error) -> Error {
        let doing = doing.into();
        move |source| Error::Io { doing, source }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Usage(m) | Error::Config(m) | Error::Runtime(m) => f.write_str(m),
            Error::Io { doing, .. } => f.write_str(doing),
            Error::Unwatchable { dir, .. } => {
                write!(f, "--watch: cannot watch directory {}", dir.display())
            }
            Error::Upstream(e) => e.fmt(f),
            Error::File(e) => e.fmt(f),
            Error::Load(e) => e.fmt(f),
            Error::InEndpoint { endpoint, source } => write!(f, "endpoint {endpoint:?}: {source}"),
            Error::Start(e) => e.fmt(f),
            Error::Activation(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        // The wrapped errors' own words are the Display above: the chain goes on with their
        // causes.
        match self {
            Error::Upstream(e) => e.source(),
            Error::File(e) => e.source(),
            Error::Load(e) => e.source(),
            Error::InEndpoint { source, .. } => source.source(),
            Error::Start(e) => e.source(),
            Error::Activation(e) => e.source(),
            Error::Io { source, .. } | Error::Unwatchable { source, .. } => Some(source),
            Error::Usage(_) | Error::Config(_) | Error::Runtime(_) => None,
        }
    }
}

impl From<LoadError> for Error {
    fn from(e: LoadError) -> Self {
        Error::Load(e)
    }
}

impl From<StartError> for Error {
    fn from(e: StartError) -> Self {
        Error::Start(e)
    }
}
