//! Why a relay ended early (`RelayError`), with the kernel-TLS path's own causes, each keeping
//! the error it came from. Both data paths return it; the close event and the metrics read
//! its `reason()` and `detail()`.

use std::fmt;
use std::io;

use crate::cause::Chain;
use crate::outcome::{Close, Stop};

/// Why the relay ended early.
#[derive(Debug)]
pub(crate) enum RelayError {
    ClientRead(io::Error),
    ClientWrite(io::Error),
    UpstreamRead(io::Error),
    UpstreamWrite(io::Error),
    Tls(rustls::Error),
    /// The guard ended it (idle, the certificate expired, a reload's re-check failed).
    Stopped(Stop),
    /// The client sent a KeyUpdate the kernel-TLS path could not follow.
    KeyUpdate(KeyUpdateError),
    /// Handing the connection to kernel TLS failed after its secrets were taken.
    HandOff(HandOffError),
}

impl RelayError {
    /// Why the connection ended, for the close event and the metrics.
    pub(crate) fn reason(&self) -> Close {
        let reset = |e: &io::Error| {
            matches!(
                e.kind(),
                io::ErrorKind::ConnectionReset
                    | io::ErrorKind::BrokenPipe
                    | io::ErrorKind::ConnectionAborted
            )
        };
        match self {
            RelayError::ClientRead(e) | RelayError::ClientWrite(e) if reset(e) => {
                Close::ClientReset
            }
            RelayError::ClientRead(_) | RelayError::ClientWrite(_) => Close::ClientIoError,
            RelayError::UpstreamRead(e) | RelayError::UpstreamWrite(e) if reset(e) => {
                Close::UpstreamReset
            }
            RelayError::UpstreamRead(_) | RelayError::UpstreamWrite(_) => Close::UpstreamIoError,
            RelayError::Tls(_) => Close::TlsError,
            RelayError::Stopped(stop) => stop.reason(),
            RelayError::KeyUpdate(_) => Close::KeyUpdateUnsupported,
            RelayError::HandOff(_) => Close::KtlsFailed,
        }
    }

    /// The underlying cause, for the log's detail field.
    pub(crate) fn detail(&self) -> String {
        match self {
            RelayError::ClientRead(e)
            | RelayError::ClientWrite(e)
            | RelayError::UpstreamRead(e)
            | RelayError::UpstreamWrite(e) => e.to_string(),
            RelayError::Tls(e) => e.to_string(),
            RelayError::Stopped(stop) => stop.to_string(),
            RelayError::KeyUpdate(why) => format!("the client updated its keys: {}", Chain(why)),
            RelayError::HandOff(e) => format!("kernel TLS hand-off: {}", Chain(e)),
        }
    }
}

/// Why a connection could not be handed to the kernel (after its secrets were taken).
#[derive(Debug)]
pub(crate) enum HandOffError {
    /// rustls would not give up the traffic secrets.
    Secrets(rustls::Error),
    /// The negotiated suite's keys have no kernel form.
    NoKernelForm,
    /// `setsockopt(TCP_ULP, "tls")` failed.
    Attach(io::Error),
    /// `setsockopt(TLS_TX / TLS_RX)` failed.
    Install(io::Error),
}

impl fmt::Display for HandOffError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandOffError::Secrets(_) => f.write_str("extracting the traffic secrets"),
            HandOffError::NoKernelForm => f.write_str("the negotiated suite has no kernel form"),
            HandOffError::Attach(_) => f.write_str("TCP_ULP tls"),
            HandOffError::Install(_) => f.write_str("TLS_TX/TLS_RX"),
        }
    }
}

impl std::error::Error for HandOffError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            HandOffError::Secrets(e) => Some(e),
            HandOffError::NoKernelForm => None,
            HandOffError::Attach(e) | HandOffError::Install(e) => Some(e),
        }
    }
}

/// Why a client's KeyUpdate could not be followed on the kernel-TLS path.
#[derive(Debug)]
pub(crate) enum KeyUpdateError {
    /// The handshake kept no traffic secrets to derive the next keys from.
    NoSecrets,
    /// The next key has no kernel form.
    NoKernelForm,
    /// The kernel refused the next receiving key (no TLS 1.3 rekey before Linux 6.14).
    Receive(io::Error),
    /// The kernel refused the next sending key.
    Send(io::Error),
}

impl fmt::Display for KeyUpdateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyUpdateError::NoSecrets => {
                f.write_str("no traffic secrets were kept for this connection")
            }
            KeyUpdateError::NoKernelForm => f.write_str("the new key has no kernel form"),
            KeyUpdateError::Receive(_) => {
                f.write_str("this kernel cannot take new receive keys (TLS_RX)")
            }
            KeyUpdateError::Send(_) => {
                f.write_str("this kernel cannot take new sending keys (TLS_TX)")
            }
        }
    }
}

impl std::error::Error for KeyUpdateError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            KeyUpdateError::Receive(e) | KeyUpdateError::Send(e) => Some(e),
            KeyUpdateError::NoSecrets | KeyUpdateError::NoKernelForm => None,
        }
    }
}
