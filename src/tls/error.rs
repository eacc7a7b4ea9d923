//! Why credentials or a trust store could not be loaded. Every message names the flag and file
//! at fault and, inside a bundle, the block's 1-based index and the certificate's subject, so a
//! operator can fix the right line of the right file without guessing.

use std::fmt;
use std::path::PathBuf;

/// A credential or trust-store file that cannot be used; `serve` and `check` exit 78 on it.
#[derive(Debug)]
pub enum LoadError {
    /// The file could not be read at all.
    Read {
        flag: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// A PEM block is malformed (bad base64, missing END line, ...).
    Pem {
        flag: &'static str,
        path: PathBuf,
        index: usize,
        source: rustls_pki_types::pem::Error,
    },
    /// The file holds no block of the kind the flag needs.
    Missing {
        flag: &'static str,
        path: PathBuf,
        what: &'static str,
    },
    /// A block of a kind that must never be in this file (a private key in a trust bundle).
    Forbidden {
        flag: &'static str,
        path: PathBuf,
        index: usize,
        what: &'static str,
        why: &'static str,
    },
    /// A certificate that is well-formed PEM but unusable for this flag.
    Certificate {
        flag: &'static str,
        path: PathBuf,
        index: usize,
        subject: String,
        problem: String,
    },
    /// The private key cannot be used (unsupported type, malformed, or not the certificate's).
    Key {
        path: PathBuf,
        crt: PathBuf,
        source: rustls::Error,
    },
    /// A CRL that cannot be parsed.
    Crl {
        path: PathBuf,
        index: usize,
        problem: String,
    },
    /// `--ca-names all` with more CA names than a CertificateRequest can carry.
    CaNamesTooLarge {
        names: usize,
        bytes: usize,
        limit: usize,
    },
    /// `--ticket-keys`: a line that is not an 80-byte base64 key, or no key at all.
    TicketKeys {
        path: PathBuf,
        /// 1-based; 0 when the whole file is at fault.
        line: usize,
        problem: String,
    },
    /// rustls refused to build the client verifier from otherwise valid inputs.
    Verifier(rustls::server::VerifierBuilderError),
    /// rustls refused the server configuration.
    Config(rustls::Error),
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Read { flag, path, .. } => {
                write!(f, "{flag} {}: cannot read", path.display())
            }
            LoadError::Pem {
                flag, path, index, ..
            } => write!(
                f,
                "{flag} {}: PEM block #{index} cannot be decoded",
                path.display()
            ),
            LoadError::Missing { flag, path, what } => {
                write!(f, "{flag} {}: no {what} found", path.display())
            }
            LoadError::Forbidden {
                flag,
                path,
                index,
                what,
                why,
            } => write!(
                f,
                "{flag} {}: block #{index} is a {what}: {why}",
                path.display()
            ),
            LoadError::Certificate {
                flag,
                path,
                index,
                subject,
                problem,
            } => write!(
                f,
                "{flag} {}: certificate #{index} ({subject}) {problem}",
                path.display()
            ),
            LoadError::Key { path, crt, source } => match source {
                rustls::Error::InconsistentKeys(_) => write!(
                    f,
                    "--key {}: does not match the certificate in --crt {}",
                    path.display(),
                    crt.display()
                ),
                _ => write!(f, "--key {}: cannot use this key", path.display()),
            },
            LoadError::Crl {
                path,
                index,
                problem,
            } => write!(f, "--crl {}: CRL #{index} {problem}", path.display()),
            LoadError::CaNamesTooLarge {
                names,
                bytes,
                limit,
            } => write!(
                f,
                "--ca-names all: the {names} CA names of --mutual-tls-cas take {bytes} bytes, more than the {limit} a CertificateRequest can carry (a 2-byte length, RFC 8446 §4.2); no client could parse it: use --ca-names auto (omits the list) or none, or split the bundle"
            ),
            LoadError::TicketKeys {
                path,
                line: 0,
                problem,
            } => write!(f, "--ticket-keys {}: {problem}", path.display()),
            LoadError::TicketKeys {
                path,
                line,
                problem,
            } => write!(
                f,
                "--ticket-keys {}: line {line}: {problem}",
                path.display()
            ),
            LoadError::Verifier(_) => {
                f.write_str("--mutual-tls-cas: cannot build the client verifier")
            }
            LoadError::Config(_) => f.write_str("cannot build the TLS configuration"),
        }
    }
}

impl std::error::Error for LoadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LoadError::Read { source, .. } => Some(source),
            LoadError::Pem { source, .. } => Some(source),
            // A key that is not the certificate's is all the message says; rustls' own words
            // ("keys do not match") would add nothing.
            LoadError::Key {
                source: rustls::Error::InconsistentKeys(_),
                ..
            } => None,
            LoadError::Key { source, .. } => Some(source),
            LoadError::Verifier(e) => Some(e),
            LoadError::Config(e) => Some(e),
            _ => None,
        }
    }
}
