//! The client's side of a connection, phase by phase, each ending in the connection's
//! `Outcome` when it fails: the handshake (`Client::accept`), the re-check of a resumed
//! session (`recheck_resumed`) and, once the upstream is dialled, the PROXY header.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use monoio::net::TcpStream;
use rustls::server::danger::ClientCertVerifier;
use rustls::{ServerConfig, ServerConnection};

use super::buffers;
use super::guard;
use super::handshake::{self, Early, HandshakeError};
use super::proxy_v2;
use super::reason;
use super::session::SessionFacts;
use super::settings::Endpoint;
use super::timer;
use crate::outcome::{Outcome, Reject, Sent};

/// How long a close_notify we send on our own initiative may wait for room (as the relay's).
const CLOSE_NOTIFY_WAIT: Duration = Duration::from_secs(1);

/// How a connection that is still only ours has ended: its outcome.
pub(crate) type Ended = Outcome<SessionFacts>;

/// A client through the handshake.
pub(crate) struct Client {
    stream: TcpStream,
    /// Boxed: the connection state (over 1 KiB) then lives once on the heap instead of in
    /// every future that holds it, which keeps an idle connection's footprint small.
    conn: Box<ServerConnection>,
    /// What the client sent with the end of its handshake.
    early: Early,
    /// The handshake's write buffer, for what goes out before the relay.
    out: Vec<u8>,
}

/// A client that will not be relayed: its outcome, and the socket to close gently when an
/// alert went out.
pub(crate) struct Refusal {
    pub outcome: Ended,
    /// Lingered on after the outcome is recorded (`handshake::linger`), so the alert is not
    /// lost to a reset.
    pub linger: Option<TcpStream>,
    /// The endpoint the client was routed to, once it was.
    pub endpoint: Option<Arc<Endpoint>>,
}

impl Refusal {
    /// A refusal with nothing to linger on.
    pub(crate) fn ended(outcome: Ended) -> Refusal {
        Refusal {
            outcome,
            linger: None,
            endpoint: None,
        }
    }
}

/// Closes a refused client's socket after the alert, not counted against
/// --handshake-timeout: the verdict is already out (or, where none could go out, after the
/// client's own alert or a refusal rustls sends no alert for once our records are sealed, at
/// least a FIN and not a reset).
pub(crate) async fn linger(stream: Option<TcpStream>) {
    if let Some(mut stream) = stream {
        handshake::linger(&mut stream).await;
    }
}

impl Client {
    /// Runs the handshake within `timeout`, starting from `hello` (what was read to route the
    /// connection; empty when nothing was). `record_by_record` when the connection may go to
    /// kernel TLS (see `handshake::Reads`).
    pub(super) async fn accept(
        mut stream: TcpStream,
        hello: Vec<u8>,
        tls: &std::sync::Arc<ServerConfig>,
        timeout: Duration,
        record_by_record: bool,
    ) -> Result<Client, Refusal> {
        let mut conn = match ServerConnection::new(tls.clone()) {
            Ok(conn) => Box::new(conn),
            Err(e) => {
                let detail = e.to_string();
                return Err(Refusal::ended(Outcome::Failed { detail }));
            }
        };
        let reads = match record_by_record {
            true => handshake::Reads::RecordByRecord,
            false => handshake::Reads::Greedy,
        };
        let mut out = Vec::new();
        let buf = Vec::with_capacity(buffers::BIG);
        let handshake =
            handshake::accept_client(&mut stream, &mut conn, (hello, buf), &mut out, reads);
        let err = match timer::timeout(timeout, handshake).await {
            Ok(Ok(early)) => {
                return Ok(Client {
                    stream,
                    conn,
                    early,
                    out,
                });
            }
            Ok(Err(err)) => err,
            Err(_) => {
                return Err(Refusal::ended(refused(
                    Reject::HandshakeTimeout,
                    Sent::None,
                    "no complete handshake in time".into(),
                    None,
                )));
            }
        };
        // A refusal of ours lingers; a client that closed or reset is simply gone.
        let (reason, alert, detail, leaf, linger) = match err {
            HandshakeError::Tls {
                error,
                leaf,
                alert,
                revocation,
            } => {
                let reason = reason::classify(&error);
                // A revocation refusal not made by OCSP was made by a CRL: fetched, or a file.
                let crls = &crate::revocation::fetcher::service().crls;
                let revocation = revocation.or(match (reason, leaf.as_deref()) {
                    (Reject::Revoked, Some(leaf)) => Some(crls.source_of(leaf, true)),
                    (Reject::CrlStale, Some(leaf)) => Some(crls.source_of(leaf, false)),
                    (Reject::Revoked | Reject::CrlStale, None) => Some("crl_file"),
                    _ => None,
                });
                let detail = match revocation {
                    Some(r) => format!("{error} ({r})"),
                    None => error.to_string(),
                };
                let leaf = leaf.map(|leaf| (leaf, revocation.unwrap_or_default()));
                (reason, alert, detail, leaf, Some(stream))
            }
            HandshakeError::Io(e) => {
                let detail = e.to_string();
                (Reject::ClientClosed, Sent::None, detail, None, None)
            }
            HandshakeError::Eof => {
                let detail = "closed mid-handshake".to_owned();
                (Reject::ClientClosed, Sent::None, detail, None, None)
            }
        };
        let mut presented = SessionFacts::read_refused(&conn, leaf.as_ref().map(|l| &l.0[..]));
        if let Some((_, revocation)) = leaf {
            presented.set_revocation(revocation);
        }
        Err(Refusal {
            outcome: refused(reason, alert, detail, Some(presented)),
            linger,
            endpoint: None,
        })
    }

    /// A resumed session skips chain verification; re-run it (served from the per-worker
    /// verdict cache when this worker has seen the chain) so that a session ticket never lets
    /// in a chain that a full handshake would now refuse — expired since, for instance.
    pub(super) async fn recheck_resumed(
        &mut self,
        verifier: &dyn ClientCertVerifier,
    ) -> Result<(), Ended> {
        let Err(e) = resumed_chain_verifies(&self.conn, verifier) else {
            return Ok(());
        };
        // The session was valid when issued but its client chain no longer is: turn it away
        // like a full handshake with that chain would be.
        let detail = format!("resumed session: {e}");
        Err(self.refuse(reason::classify(&e), detail, None).await)
    }

    /// Turns the client away after its handshake. rustls cannot send a fatal alert once the
    /// handshake is over; close_notify at least tells the client the end is deliberate.
    pub(super) async fn refuse(
        &mut self,
        reason: Reject,
        detail: String,
        presented: Option<SessionFacts>,
    ) -> Ended {
        self.conn.send_close_notify();
        // What went out is close_notify (alert 0, a warning), unless the client is gone.
        let alert = match self.flush().await {
            true => Sent::Alert(0),
            false => Sent::None,
        };
        refused(reason, alert, detail, presented)
    }

    /// The client's chain, leaf first, as the handshake received it.
    pub(super) fn chain(&self) -> &[rustls::pki_types::CertificateDer<'static>] {
        self.conn.peer_certificates().unwrap_or_default()
    }

    /// Tells the client with close_notify that nothing more will come (the upstream is
    /// unreachable), best effort.
    pub(super) async fn close_notify(&mut self) {
        self.conn.send_close_notify();
        self.flush().await;
    }

    /// Writes what rustls queued (a close_notify) within `CLOSE_NOTIFY_WAIT`; false if the
    /// client is gone or takes nothing. Past the handshake no other timeout covers this write:
    /// a client that stopped reading must not hold the task.
    async fn flush(&mut self) -> bool {
        let write = handshake::flush(&mut self.stream, &mut self.conn, &mut self.out);
        matches!(timer::timeout(CLOSE_NOTIFY_WAIT, write).await, Ok(Ok(())))
    }

    /// The session's facts for the log and the PROXY header, read once; `verified` when the
    /// endpoint verified the client's chain.
    pub(super) fn facts(&self, verified: bool) -> SessionFacts {
        let leaf = self
            .conn
            .peer_certificates()
            .and_then(|chain| chain.first());
        SessionFacts::read(&self.conn, leaf.map(|der| der.as_ref()), verified)
    }

    /// Gives up the handshake's write buffer (record-sized; the relay starts small, see
    /// `buffers`) and hands over the rest.
    pub(super) fn into_parts(self) -> (TcpStream, Box<ServerConnection>, Early) {
        (self.stream, self.conn, self.early)
    }

    /// The client again, from `into_parts` (to send close_notify when the dial failed).
    pub(super) fn from_parts(
        stream: TcpStream,
        conn: Box<ServerConnection>,
        early: Early,
    ) -> Client {
        Client {
            stream,
            conn,
            early,
            out: Vec::new(),
        }
    }
}

/// Puts the PROXY v2 header (see `proxy_v2`) for this connection, from the facts already
/// read, before what the client sent, so it reaches the upstream first.
pub(super) fn prepend_proxy_header(
    conn: &ServerConnection,
    early: &mut Early,
    facts: &SessionFacts,
    peer: SocketAddr,
    local: SocketAddr,
) {
    let (version, cipher, cert) = facts.proxy_fields();
    let info = proxy_v2::ClientInfo {
        alpn: conn.alpn_protocol(),
        sni: conn.server_name(),
        version,
        cipher,
        cert,
        resumed: conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed),
        verified: facts.verified(),
        terminated: true,
    };
    prepend(&mut early.plain, peer, local, &info);
}

/// The same for a passed-through connection: its addresses and the SNI it was routed by
/// (AUTHORITY), before its ClientHello.
pub(super) fn prepend_passthrough_header(
    first: &mut Vec<u8>,
    facts: &SessionFacts,
    peer: SocketAddr,
    local: SocketAddr,
) {
    let info = proxy_v2::ClientInfo {
        sni: facts.sni(),
        ..proxy_v2::ClientInfo::default()
    };
    prepend(first, peer, local, &info);
}

fn prepend(
    bytes: &mut Vec<u8>,
    peer: SocketAddr,
    local: SocketAddr,
    info: &proxy_v2::ClientInfo<'_>,
) {
    let mut header = Vec::with_capacity(256 + bytes.len());
    proxy_v2::encode(peer, local, info, &mut header);
    header.extend_from_slice(bytes);
    *bytes = header;
}

fn refused(reason: Reject, alert: Sent, detail: String, presented: Option<SessionFacts>) -> Ended {
    Outcome::Refused {
        reason,
        alert,
        detail,
        presented,
    }
}

fn resumed_chain_verifies(
    conn: &ServerConnection,
    verifier: &dyn ClientCertVerifier,
) -> Result<(), rustls::Error> {
    if conn.handshake_kind() != Some(rustls::HandshakeKind::Resumed) {
        return Ok(());
    }
    let chain = conn.peer_certificates();
    if chain.is_none_or(|c| c.is_empty()) && verifier.client_auth_mandatory() {
        return Err(rustls::Error::NoCertificatesPresented);
    }
    guard::verify_chain(chain, verifier)
}
