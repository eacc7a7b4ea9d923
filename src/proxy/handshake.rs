//! Accepting a client: drive the rustls handshake over the socket until it completes or fails.
//!
//! Every failure flushes the alert rustls queued before returning (RFC 8446 §6), then lingers
//! briefly so the alert is not lost to a reset: a rejected client learns why instead of seeing
//! a bare close. Where rustls queues none while the connection is still plaintext (a ClientHello
//! over its 64 KiB limit, or cut short by the client's close), we send the RFC's alert
//! ourselves (`alert::ours`). What went out is read back from the bytes written (`alert::read`),
//! so the log names the alert the client got. Plaintext the client sent with (or right
//! after) its Finished is kept and handed to the relay, never lost.

use std::io;
use std::time::Duration;

use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use monoio::net::TcpStream;
use rustls::ServerConnection;

use super::alert::{self, Written};
use crate::engine;
use crate::outcome::Sent;
use crate::tls::capture::{self, Secrets};
use crate::tls::secrets::TrafficSecrets;

/// A failed handshake.
#[derive(Debug)]
pub(crate) enum HandshakeError {
    /// rustls refused the client, or we did (a ClientHello cut short by its close). `leaf` is
    /// the certificate this handshake presented, when the refusal was about it. `alert`: what
    /// the client was sent, read back from the bytes written.
    Tls {
        error: rustls::Error,
        leaf: Option<Vec<u8>>,
        alert: Sent,
        /// What refused it on revocation grounds (`capture::Captured::revocation`).
        revocation: Option<&'static str>,
    },
    /// The client closed before the handshake finished.
    Eof,
    /// The socket failed (reset by the client, ...).
    Io(io::Error),
}

/// What the handshake leaves for the data path: what the client sent along with the end of
/// its handshake, and (on the kernel-TLS path) the traffic secrets.
#[derive(Debug, Default)]
pub(crate) struct Early {
    /// Plaintext to forward before anything else.
    pub plain: Vec<u8>,
    /// The client's close_notify came in the same reads: nothing more will come from it.
    pub closed: bool,
    /// TLS 1.3 traffic secrets, captured when the config asks for them (`tls::secrets`);
    /// boxed, as few connections have them and every one holds this.
    pub secrets: Option<Box<TrafficSecrets>>,
}

/// How the handshake reads the socket.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reads {
    /// As much as is there: fewest system calls.
    Greedy,
    /// One whole TLS record at a time, never past the end of the handshake: for a connection
    /// that may be handed to kernel TLS, which must find every later record in the socket,
    /// not half of one inside rustls.
    RecordByRecord,
}

/// Runs the server side of the handshake on what was read already (`first`: the ClientHello
/// read to route the connection, or nothing), then reading into `buf`. On success returns
/// what the client already sent after its Finished.
pub(crate) async fn accept_client(
    stream: &mut TcpStream,
    conn: &mut ServerConnection,
    (mut first, mut buf): (Vec<u8>, Vec<u8>),
    out: &mut Vec<u8>,
    reads: Reads,
) -> Result<Early, HandshakeError> {
    let mut early = Early::default();
    // The server's secrets of this handshake, to read back an alert rustls sealed; dropped
    // when it ends (kernel TLS keeps the application secrets).
    let mut secrets = Secrets::default();
    let mut written = Written::default();
    let mut fed_any = false;
    loop {
        flush(stream, conn, out).await?;
        written.add(out);
        if !conn.is_handshaking() {
            early.secrets = TrafficSecrets::take(&mut secrets).map(Box::new);
            return Ok(early);
        }
        // What routing read goes first, in the read buffer's place for this round (and the
        // buffer back in its own after it).
        let from_route = !first.is_empty();
        let n = if from_route {
            std::mem::swap(&mut buf, &mut first);
            buf.len()
        } else {
            buf.clear();
            let (res, b) = match reads {
                Reads::Greedy => stream.read(buf).await,
                Reads::RecordByRecord => read_record(stream, buf).await,
            };
            buf = b;
            res.map_err(HandshakeError::Io)?
        };
        if n == 0 {
            if !fed_any || written.any {
                return Err(HandshakeError::Eof);
            }
            // Bytes came but rustls never answered: the ClientHello is incomplete, and the
            // client closed in the middle of it. RFC 8446 §6.2: decode_error, "the length of the
            // message was incorrect". The client may still read after its half-close.
            let error =
                rustls::Error::General("the client closed in the middle of its ClientHello".into());
            out.clear();
            out.extend_from_slice(&alert::plaintext_record(alert::DECODE_ERROR));
            let alert = match write_out(stream, out).await {
                Ok(()) => Sent::Alert(alert::DECODE_ERROR),
                Err(_) => Sent::None,
            };
            return Err(HandshakeError::Tls {
                error,
                leaf: None,
                alert,
                revocation: None,
            });
        }
        fed_any = true;
        // One synchronous step of this connection alone: what the verifier and the key log
        // reveal during it is this connection's (`capture`).
        let (fed, captured) =
            capture::during(|| engine::feed(&mut **conn, &buf[..n], &mut early.plain));
        if from_route {
            std::mem::swap(&mut buf, &mut first);
            first = Vec::new();
        }
        secrets.merge(captured.secrets);
        match fed {
            Ok(fed) => early.closed |= fed.peer_closed,
            Err(error) => {
                // Everything earlier was flushed before this read: what is queued now is what
                // this step produced, the alert (if any) last.
                out.clear();
                engine::take_tls(&mut **conn, out);
                let mut after = written;
                after.add(out);
                let mut alert = alert::read(out, conn, &secrets, &after);
                if alert == Sent::None && !after.encrypting {
                    if let Some(description) = alert::ours(&error) {
                        out.extend_from_slice(&alert::plaintext_record(description));
                        alert = Sent::Alert(description);
                    }
                }
                // Best effort: the alert goes out unless the client is already gone (then it
                // did not, and the log says so). The caller then lingers (`linger`), outside
                // the handshake's time limit.
                if write_out(stream, out).await.is_err() {
                    alert = Sent::None;
                }
                return Err(HandshakeError::Tls {
                    error,
                    leaf: captured.rejected_leaf,
                    alert,
                    revocation: captured.revocation,
                });
            }
        }
    }
}

/// The largest record TLS allows on the wire (RFC 8446 §5.2: 2^14 + 256; TLS 1.2 allows
/// 2^14 + 2048).
const MAX_RECORD: usize = 5 + (1 << 14) + 2048;

/// Reads exactly one record (header and body) into `buf`; `Ok(0)` at EOF before it. A header
/// that cannot start a record is returned alone, for rustls to refuse.
async fn read_record(stream: &mut TcpStream, mut buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
    buf.clear();
    buf.reserve(MAX_RECORD);
    let (res, b) = read_up_to(stream, buf, 5).await;
    buf = b;
    match res {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof && buf.is_empty() => {
            return (Ok(0), buf);
        }
        Err(e) => return (Err(e), buf),
    }
    let len = usize::from(u16::from_be_bytes([buf[3], buf[4]]));
    if !(20..=24).contains(&buf[0]) || 5 + len > MAX_RECORD {
        return (Ok(5), buf);
    }
    let (res, buf) = read_up_to(stream, buf, 5 + len).await;
    let n = buf.len();
    (res.map(|()| n), buf)
}

/// Reads until `buf` holds `want` bytes; UnexpectedEof if the peer closes first.
async fn read_up_to(
    stream: &mut TcpStream,
    mut buf: Vec<u8>,
    want: usize,
) -> (io::Result<()>, Vec<u8>) {
    while buf.len() < want {
        let have = buf.len();
        let (res, slice) = stream.read(buf.slice_mut(have..want)).await;
        buf = slice.into_inner();
        match res {
            Ok(0) => return (Err(io::ErrorKind::UnexpectedEof.into()), buf),
            Ok(_) => {}
            Err(e) => return (Err(e), buf),
        }
    }
    (Ok(()), buf)
}

/// How long, and how many bytes, a refused client's remaining input is read and dropped.
const LINGER_TIME: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 256 * 1024;

/// After an alert: half-close, then read and drop what the client is still sending (bounded),
/// until it closes. Closing a socket with unread input sends a reset, and a reset can destroy
/// the alert before the client reads it: a client in the middle of a large Certificate
/// message would see "connection reset" instead of why it was refused. This is the lingering
/// close nginx and HAProxy do.
pub(crate) async fn linger(stream: &mut TcpStream) {
    let mut buf = Vec::with_capacity(16 * 1024);
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
    let _ = super::timer::timeout(LINGER_TIME, drain).await;
}

/// Writes every queued TLS record to the client.
pub(crate) async fn flush(
    stream: &mut TcpStream,
    conn: &mut ServerConnection,
    out: &mut Vec<u8>,
) -> Result<(), HandshakeError> {
    out.clear();
    engine::take_tls(&mut **conn, out);
    write_out(stream, out).await.map_err(HandshakeError::Io)
}

/// Writes `out` whole (it is left holding what was written, for `alert::Written`).
async fn write_out(stream: &mut TcpStream, out: &mut Vec<u8>) -> io::Result<()> {
    if out.is_empty() {
        return Ok(());
    }
    let (res, b) = stream.write_all(std::mem::take(out)).await;
    *out = b;
    res.map(|_| ())
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    /// Two records and the start of a third arrive in awkward pieces; each read takes exactly
    /// one record and leaves the rest in the socket. A header that cannot start a record comes
    /// back alone.
    #[test]
    fn record_by_record_reads_take_exactly_one_record() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let first = [22, 3, 3, 0, 3, 1, 2, 3];
        let second = [23, 3, 3, 0, 2, 9, 9];
        let writer = std::thread::spawn(move || {
            let mut sock = std::net::TcpStream::connect(addr).expect("connect");
            sock.set_nodelay(true).expect("nodelay");
            let mut all = first.to_vec();
            all.extend(second);
            all.extend([21, 3]);
            for piece in all.chunks(3) {
                sock.write_all(piece).expect("piece");
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            sock.write_all(&[3, 0, 2, 1, 0]).expect("rest of the third");
            sock.write_all(b"GET / HTTP/1.1\r\n").expect("not a record");
        });
        let (std_stream, _) = listener.accept().expect("accept");
        std_stream.set_nonblocking(true).expect("nonblocking");
        let mut rt = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let mut stream = TcpStream::from_std(std_stream).expect("monoio stream");
            let mut buf = Vec::new();
            for want in [
                &first[..],
                &second[..],
                &[21, 3, 3, 0, 2, 1, 0][..],
                b"GET /",
            ] {
                let (res, b) = read_record(&mut stream, buf).await;
                buf = b;
                assert_eq!(res.expect("read"), want.len());
                assert_eq!(&buf[..], want);
            }
        });
        writer.join().expect("writer");
    }
}
