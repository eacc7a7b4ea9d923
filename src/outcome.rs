//! How a connection ended, as values: the `Outcome` itself, why a client was refused
//! (`Reject`) and what it was told (`Sent`), why an established connection closed (`Close`),
//! which data path carried it (`Path`) and what it moved (`Counters`). The proxy produces them
//! and `proxy::record` writes them down, as the one event and every metric; this leaf imports
//! nothing of ringtls, so neither side has to import the other for its vocabulary, and the
//! wire names (`as_str`) are the one spelling the log and the metric labels share.

use std::cell::Cell;

/// How one connection ended. `F` is what the handshake established about the session (the
/// proxy's `SessionFacts`), which the log reports with the outcome.
pub(crate) enum Outcome<F> {
    /// The connection could not even be set up on our side (`conn.error`; no metric).
    Failed { detail: String },
    /// Turned away before or during the handshake, or by the resumed-session re-check
    /// (`conn.rejected`). `presented`: what the handshake got to, when it got anywhere.
    Refused {
        reason: Reject,
        alert: Sent,
        detail: String,
        presented: Option<F>,
    },
    /// Through the handshake, but the upstream could not be reached: the client was closed
    /// with close_notify and nothing reached the upstream (a `conn.closed` warning, counted
    /// as the refusal `upstream_unreachable`).
    Unreachable { facts: F, detail: String },
    /// Relayed, then closed (`conn.closed`).
    Closed {
        facts: F,
        path: Path,
        counters: Counters,
        reason: Close,
        detail: String,
    },
}

/// What a refused client was told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// No alert went out (or the write failed).
    None,
    /// This alert description (RFC 8446 §6).
    Alert(u8),
    /// A TLS 1.2 alert sealed under keys we do not hold: which one is not known.
    Sealed,
}

/// The `alert=` field: the description's number, `none` or `sealed`; written straight into
/// the event, so a refusal that is logged costs no string of its own for it.
impl std::fmt::Display for Sent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Sent::None => f.write_str("none"),
            Sent::Alert(description) => description.fmt(f),
            Sent::Sealed => f.write_str("sealed"),
        }
    }
}

/// The reason a client did not get through the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    NoCertificate,
    UnknownCa,
    Expired,
    NotYetValid,
    Revoked,
    BadCertificate,
    WrongUsage,
    /// The chain is valid but the client is not on the `--allow-*` lists.
    NotAllowed,
    HandshakeTimeout,
    ProtocolError,
    /// The client aborted with an alert of its own (often: it does not trust our certificate).
    ClientAlert,
    /// The client closed or reset the connection mid-handshake.
    ClientClosed,
    /// The worker is at its share of `--max-conns`.
    MaxConns,
    /// `--stale-crl refuse`: the CRL of the client's CA is past its nextUpdate.
    CrlStale,
    /// `--ocsp hard`: no OCSP answer that counts (unknown, unreachable, too slow, invalid).
    OcspUnavailable,
    /// `--accept-proxy`: the connection came from no `--accept-proxy-from` source.
    ProxyUntrusted,
    /// `--accept-proxy`: the PROXY header was malformed, cut short or late.
    ProxyHeader,
    /// No endpoint on the listener answers the ClientHello's server name (or its lack of
    /// one): alert unrecognized_name (112), no upstream connection.
    UnknownServerName,
    /// The handshake succeeded but the upstream could not be reached: the client is closed with
    /// close_notify and nothing reaches the upstream.
    UpstreamUnreachable,
}

impl Reject {
    /// Every reason, in declaration order (the metrics index by `reason as usize`).
    pub const ALL: [Reject; 19] = [
        Reject::NoCertificate,
        Reject::UnknownCa,
        Reject::Expired,
        Reject::NotYetValid,
        Reject::Revoked,
        Reject::BadCertificate,
        Reject::WrongUsage,
        Reject::NotAllowed,
        Reject::HandshakeTimeout,
        Reject::ProtocolError,
        Reject::ClientAlert,
        Reject::ClientClosed,
        Reject::MaxConns,
        Reject::CrlStale,
        Reject::OcspUnavailable,
        Reject::ProxyUntrusted,
        Reject::ProxyHeader,
        Reject::UnknownServerName,
        Reject::UpstreamUnreachable,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reject::NoCertificate => "no_certificate",
            Reject::UnknownCa => "unknown_ca",
            Reject::Expired => "expired",
            Reject::NotYetValid => "not_yet_valid",
            Reject::Revoked => "revoked",
            Reject::BadCertificate => "bad_certificate",
            Reject::WrongUsage => "wrong_usage",
            Reject::NotAllowed => "not_allowed",
            Reject::HandshakeTimeout => "handshake_timeout",
            Reject::ProtocolError => "protocol_error",
            Reject::ClientAlert => "client_alert",
            Reject::ClientClosed => "client_closed",
            Reject::MaxConns => "max_conns",
            Reject::CrlStale => "crl_stale",
            Reject::OcspUnavailable => "ocsp_unavailable",
            Reject::ProxyUntrusted => "proxy_untrusted",
            Reject::ProxyHeader => "proxy_header_invalid",
            Reject::UnknownServerName => "unknown_server_name",
            Reject::UpstreamUnreachable => "upstream_unreachable",
        }
    }
}

/// Why an established connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Close {
    /// Both sides finished cleanly.
    Closed,
    ClientReset,
    ClientIoError,
    UpstreamReset,
    UpstreamIoError,
    /// rustls refused a record (or the client sent a fatal alert).
    TlsError,
    /// No bytes either way for `--idle-timeout`.
    IdleTimeout,
    /// The client certificate's notAfter passed.
    ClientCertExpired,
    /// After a reload the client chain no longer verifies (`--reauthorize-on-reload`).
    ReauthorizationFailed,
    /// The client updated its keys and the kernel-TLS path could not follow.
    KeyUpdateUnsupported,
    /// Handing the connection to kernel TLS failed after its secrets were taken.
    KtlsFailed,
    /// A reload removed its endpoint, and the `--drain-timeout` it then had is over.
    EndpointRemoved,
    /// Its client certificate was found revoked while it was open (`--reauthorize-on-reload`).
    Revoked,
}

impl Close {
    /// Every reason, in declaration order (the metrics index by `reason as usize`).
    pub const ALL: [Close; 13] = [
        Close::Closed,
        Close::ClientReset,
        Close::ClientIoError,
        Close::UpstreamReset,
        Close::UpstreamIoError,
        Close::TlsError,
        Close::IdleTimeout,
        Close::ClientCertExpired,
        Close::ReauthorizationFailed,
        Close::KeyUpdateUnsupported,
        Close::KtlsFailed,
        Close::EndpointRemoved,
        Close::Revoked,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Close::Closed => "closed",
            Close::ClientReset => "client_reset",
            Close::ClientIoError => "client_io_error",
            Close::UpstreamReset => "upstream_reset",
            Close::UpstreamIoError => "upstream_io_error",
            Close::TlsError => "tls_error",
            Close::IdleTimeout => "idle_timeout",
            Close::ClientCertExpired => "client_cert_expired",
            Close::ReauthorizationFailed => "reauthorization_failed",
            Close::KeyUpdateUnsupported => "key_update_unsupported",
            Close::KtlsFailed => "ktls_failed",
            Close::EndpointRemoved => "endpoint_removed",
            Close::Revoked => "revoked",
        }
    }
}

/// The guard's verdict on a live connection: why it must end.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Stop {
    /// No bytes either way for `--idle-timeout`.
    Idle,
    /// The client certificate's notAfter passed.
    CertExpired,
    /// After a reload the client chain no longer verifies: why.
    Reauthorization(rustls::Error),
    /// A reload removed the endpoint, and the drain time it gave is over.
    EndpointRemoved,
}

impl Stop {
    pub(crate) fn reason(&self) -> Close {
        match self {
            Stop::Idle => Close::IdleTimeout,
            Stop::CertExpired => Close::ClientCertExpired,
            Stop::Reauthorization(rustls::Error::InvalidCertificate(
                rustls::CertificateError::Revoked,
            )) => Close::Revoked,
            Stop::Reauthorization(_) => Close::ReauthorizationFailed,
            Stop::EndpointRemoved => Close::EndpointRemoved,
        }
    }
}

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stop::Idle => f.write_str("no bytes either way"),
            Stop::CertExpired => f.write_str("the client certificate's notAfter has passed"),
            Stop::Reauthorization(e) => write!(f, "its chain re-checked: {e}"),
            Stop::EndpointRemoved => {
                f.write_str("a reload removed the endpoint; its --drain-timeout is over")
            }
        }
    }
}

/// Which data path carried an established connection.
#[derive(Clone, Copy)]
pub enum Path {
    /// rustls in user space.
    User,
    /// Kernel TLS (`ktls`).
    Kernel,
    /// TLS passed through untouched to the upstream, spliced.
    Passthrough,
    /// None: it ended before the relay.
    None,
}

impl Path {
    /// The paths a relay takes, in metric order (the metrics index by `path as usize`).
    pub const RELAYED: [Path; 3] = [Path::User, Path::Kernel, Path::Passthrough];

    pub fn as_str(self) -> &'static str {
        match self {
            Path::None => "none",
            Path::User => "userspace",
            Path::Kernel => "ktls",
            Path::Passthrough => "passthrough",
        }
    }
}

/// Bytes moved, for the close event.
#[derive(Default)]
pub(crate) struct Counters {
    /// Plaintext bytes client → upstream.
    pub up: Cell<u64>,
    /// Plaintext bytes upstream → client.
    pub down: Cell<u64>,
    /// Of those, the bytes that went through a pipe (kernel TLS), never entering user space.
    pub spliced: Cell<u64>,
    /// Bumped on every read either way; the idle watch looks for it to stand still.
    activity: Cell<u64>,
}

impl Counters {
    pub(crate) fn touch(&self) {
        self.activity.set(self.activity.get().wrapping_add(1));
    }

    /// Changes whenever a read happens either way.
    pub(crate) fn activity(&self) -> u64 {
        self.activity.get()
    }
}

#[cfg(test)]
mod tests {
    use super::{Close, Reject};

    #[test]
    fn all_lists_every_reason_at_its_own_index() {
        for (i, reason) in Reject::ALL.iter().enumerate() {
            assert_eq!(*reason as usize, i, "{reason:?} out of place");
        }
        for (i, reason) in Close::ALL.iter().enumerate() {
            assert_eq!(*reason as usize, i, "{reason:?} out of place");
        }
    }
}
