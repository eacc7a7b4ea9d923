//! Accepting a client: drive the rustls handshake over the socket until it completes or fails.
//!
//! Every failure flushes the alert rustls queued before returning (RFC 8446 §6), then lingers
//! briefly so the alert is not lost to a reset: a rejected client learns why instead of seeing
//! a bare close. Plaintext the client sent with (or right
//! after) its Finished is kept and handed to the relay, never lost.

use std::io;
use std::time::Duration;

use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use monoio::net::TcpStream;
use rustls::ServerConnection;

use crate::engine;

/// A failed handshake.
#[derive(Debug)]
pub enum HandshakeError {
    /// rustls refused the client. `leaf` is the certificate it presented, when the refusal was
    /// about it. `alerted`: rustls queued an alert (and it was sent, best effort); for a few
    /// errors (a handshake message over 64 KiB) it queues none.
    Tls {
        error: rustls::Error,
        leaf: Option<Vec<u8>>,
        alerted: bool,
    },
    /// The client closed before the handshake finished.
    Eof,
    /// The socket failed (reset by the client, ...).
    Io(io::Error),
}

/// What the client sent along with the end of its handshake.
#[derive(Debug, Default)]
pub struct Early {
    /// Plaintext to forward before anything else.
    pub plain: Vec<u8>,
    /// The client's close_notify came in the same reads: nothing more will come from it.
    pub closed: bool,
}

/// Runs the server side of the handshake, reading into `buf`. On success returns what the
/// client already sent after its Finished.
pub async fn accept_client(
    stream: &mut TcpStream,
    conn: &mut ServerConnection,
    mut buf: Vec<u8>,
    out: &mut Vec<u8>,
) -> Result<Early, HandshakeError> {
    let mut early = Early::default();
    loop {
        flush(stream, conn, out).await?;
        if !conn.is_handshaking() {
            return Ok(early);
        }
        buf.clear();
        let (res, b) = stream.read(buf).await;
        buf = b;
        let n = res.map_err(HandshakeError::Io)?;
        if n == 0 {
            return Err(HandshakeError::Eof);
        }
        match engine::feed(&mut **conn, &buf[..n], &mut early.plain) {
            Ok(fed) => early.closed |= fed.peer_closed,
            Err(error) => {
                // Taken before the await below, while it is surely this connection's.
                let leaf = crate::tls::verify_cache::take_rejected_leaf();
                // Everything earlier was flushed before this read: what is queued is the alert.
                let alerted = conn.wants_write();
                // Best effort: the alert goes out unless the client is already gone.
                if flush(stream, conn, out).await.is_ok() {
                    linger(stream, buf).await;
                }
                return Err(HandshakeError::Tls {
                    error,
                    leaf,
                    alerted,
                });
            }
        }
    }
}

/// How long, and how many bytes, a refused client's remaining input is read and dropped.
const LINGER_TIME: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 256 * 1024;

/// After an alert: half-close, then read and drop what the client is still sending (bounded),
/// until it closes. Closing a socket with unread input sends a reset, and a reset can destroy
/// the alert before the client reads it: a client in the middle of a large Certificate
/// message would see "connection reset" instead of why it was refused. This is the lingering
/// close nginx and HAProxy do.
async fn linger(stream: &mut TcpStream, mut buf: Vec<u8>) {
    let _ = stream.shutdown().await;
    let drain = async {
        let mut dropped = 0;
        while dropped < LINGER_BYTES {
            buf.clear();
            let (res, b) = stream.read(buf).await;
            buf = b;
            match res {
                Ok(0) | Err(_) => return,
                Ok(n) => dropped += n,
            }
        }
    };
    let _ = monoio::time::timeout(LINGER_TIME, drain).await;
}

/// Writes every queued TLS record to the client.
pub async fn flush(
    stream: &mut TcpStream,
    conn: &mut ServerConnection,
    out: &mut Vec<u8>,
) -> Result<(), HandshakeError> {
    out.clear();
    engine::take_tls(&mut **conn, out);
    if out.is_empty() {
        return Ok(());
    }
    let (res, b) = stream.write_all(std::mem::take(out)).await;
    *out = b;
    res.map(|_| ()).map_err(HandshakeError::Io)
}
