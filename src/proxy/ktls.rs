//! The kernel-TLS path: after rustls has done the handshake and verified the client, its
//! traffic secrets go to the kernel (`TCP_ULP "tls"`, `TLS_TX` + `TLS_RX`), and no rustls state
//! is kept per connection. The kernel decrypts what the client socket delivers and encrypts
//! what is written to it; the relay moves plaintext (`splice`), one way per direction, chosen
//! by measurement (`cargo bench --bench splice`, figures in the README):
//! - upstream → client: splice, upstream socket → pipe → client socket. The kernel encrypts
//!   straight from the pipe's pages, so the plaintext is never copied; for the plaintext half
//!   the forwarder's CPU per GiB measured 0.5x that of read/write.
//! - client → upstream: read/write. A kernel-TLS socket gives at most one record (16 KiB) per
//!   splice call, and 16 KiB splices measured no better than read/write (1.0x); and on a
//!   loopback upstream (a sidecar's) spliced pages cost the upstream's reads 2-3x the CPU of
//!   written ones. A read from a kernel-TLS socket decrypts straight into our buffer.
//!
//! Why `ServerConnection::dangerous_extract_secrets` (rustls' buffered API) rather than
//! `UnbufferedServerConnection::dangerous_into_kernel_connection` or the `ktls-core` crate:
//! the whole handshake path here is built on the buffered connection, and what the kernel
//! connection adds over plain extraction is re-deriving secrets after a KeyUpdate. That is done
//! here from the traffic secrets the handshake captured (`tls::secrets`): a client KeyUpdate
//! puts the next receiving key into the kernel (`TLS_RX` again), and when the client asks for
//! ours, our KeyUpdate goes out under the old key before the next sending key goes in. That
//! needs a kernel with TLS 1.3 rekey (Linux 6.14 and later); an older one refuses the new key,
//! and the connection ends cleanly with close_notify under the unchanged sending key. The
//! session tickets rustls queues after the handshake are flushed before the hand-off, so none
//! is lost.
//!
//! The hand-off must not lose bytes: the handshake reads one whole record at a time on this
//! path (see `handshake`), so rustls holds no partial record the kernel would never see; any
//! plaintext rustls already decrypted is forwarded first.
//!
//! After the hand-off the kernel reports a record that is not application data as EIO on a
//! plain read; it is then read with `recvmsg` and its type: close_notify is the client's
//! half-close, any other alert ends the connection, a KeyUpdate is followed as above.

use std::io;
use std::time::Duration;

use monoio::net::TcpStream;
use rustls::pki_types::CertificateDer;
use rustls::{ConnectionTrafficSecrets, ServerConnection};

use super::buffers;
use super::guard::Guard;
use super::handshake::Early;
use super::relay_error::{HandOffError, KeyUpdateError, RelayError};
use super::splice::{self, Pipes, Ready, SpliceError, Stop};
use super::timer;
use crate::outcome::Counters;
use crate::sys::ktls::{self as sys, CryptoInfo};
use crate::tls::secrets::{KeyIv, Rekey, TrafficSecrets};

fn crypto_info(version: u16, seq: u64, secrets: &ConnectionTrafficSecrets) -> Option<CryptoInfo> {
    let (cipher, key, iv) = match secrets {
        ConnectionTrafficSecrets::Aes128Gcm { key, iv } => (sys::AES_GCM_128, key, iv),
        ConnectionTrafficSecrets::Aes256Gcm { key, iv } => (sys::AES_GCM_256, key, iv),
        ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => (sys::CHACHA20_POLY1305, key, iv),
        _ => return None,
    };
    let iv: &[u8; 12] = iv.as_ref().try_into().ok()?;
    CryptoInfo::new(version, cipher, key.as_ref(), iv, seq)
}

/// What the relay keeps of a connection handed to the kernel: its suite, and for TLS 1.3 the
/// traffic secrets that the next keys derive from.
pub(crate) struct Kernel {
    cipher: u16,
    rekey: Option<Rekey>,
}

/// Gives the connection's record layer to the kernel. Consumes the rustls connection: on error
/// the connection cannot go on (its secrets are spent) and must be closed. `traffic` is what
/// the handshake captured (`tls::secrets`), for following key updates.
pub(crate) fn hand_off(
    conn: Box<ServerConnection>,
    socket: &TcpStream,
    (version, cipher): (u16, u16),
    traffic: Option<Box<TrafficSecrets>>,
) -> Result<Kernel, HandOffError> {
    let rekey = match (conn.negotiated_cipher_suite(), traffic) {
        (Some(suite), Some(traffic)) => Rekey::new(suite, *traffic),
        _ => None,
    };
    let secrets = (*conn)
        .dangerous_extract_secrets()
        .map_err(HandOffError::Secrets)?;
    let tx = crypto_info(version, secrets.tx.0, &secrets.tx.1);
    let rx = crypto_info(version, secrets.rx.0, &secrets.rx.1);
    let (Some(tx), Some(rx)) = (tx, rx) else {
        return Err(HandOffError::NoKernelForm);
    };
    sys::attach(socket).map_err(HandOffError::Attach)?;
    sys::install(socket, &tx, &rx).map_err(HandOffError::Install)?;
    Ok(Kernel { cipher, rekey })
}

/// Relays plaintext between a kernel-TLS client socket and the upstream until both directions
/// ended, or an error, or the guard's verdict (on `chain`, the client's, kept for re-checks).
/// The bytes go socket → pipe → socket (`splice`).
pub(crate) async fn relay<U: Ready>(
    client: TcpStream,
    upstream: U,
    mut kernel: Kernel,
    chain: Vec<CertificateDer<'static>>,
    early: Early,
    guard: &Guard<'_>,
    counters: &Counters,
) -> Result<(), RelayError> {
    splice::take_over(&client).map_err(RelayError::ClientRead)?;
    splice::take_over(&upstream).map_err(RelayError::UpstreamWrite)?;
    let pool = Pipes::local();
    let result = {
        let up = client_to_upstream(&client, &upstream, &mut kernel, early, counters);
        let down = upstream_to_client(&upstream, &client, &pool, counters);
        monoio::select! {
            r = async { monoio::try_join!(up, down) } => r.map(|_| ()),
            stop = guard.watch(&chain, counters) => Err(RelayError::Stopped(stop)),
        }
    };
    if matches!(
        result,
        Err(RelayError::Stopped(_) | RelayError::KeyUpdate(_))
    ) {
        // We end it: tell the client it is deliberate, best effort. (After a client KeyUpdate
        // we could not follow, our sending keys are unchanged, so the client can still read
        // this.)
        let _ = timer::timeout(CLOSE_NOTIFY_WAIT, close_notify(&client)).await;
    }
    result
}

/// How long a close_notify we send on our own initiative may wait for room.
const CLOSE_NOTIFY_WAIT: Duration = Duration::from_secs(1);

async fn client_to_upstream(
    client: &TcpStream,
    upstream: &impl Ready,
    kernel: &mut Kernel,
    early: Early,
    counters: &Counters,
) -> Result<(), RelayError> {
    let up = |n: usize, _| counters.up.set(counters.up.get() + n as u64);
    if !early.plain.is_empty() {
        splice::write_all(upstream, &early.plain)
            .await
            .map_err(RelayError::UpstreamWrite)?;
        up(early.plain.len(), false);
    }
    let mut closed = early.closed;
    let mut record = Vec::new();
    while !closed {
        match splice::copy(client, upstream, up, || counters.touch()).await {
            Ok(Stop::End) => closed = true,
            Ok(Stop::Control) => {
                record.resize(buffers::BIG, 0);
                match control_record(client, &mut record)? {
                    Control::Data => {
                        splice::write_all(upstream, &record)
                            .await
                            .map_err(RelayError::UpstreamWrite)?;
                        up(record.len(), false);
                    }
                    Control::Closed => closed = true,
                    Control::KeyUpdate { requested } => {
                        follow_key_update(client, kernel, requested).await?
                    }
                }
            }
            Err(SpliceError::Read(e)) if e.raw_os_error() == Some(libc::EBADMSG) => {
                return Err(RelayError::Tls(rustls::Error::DecryptError));
            }
            Err(SpliceError::Read(e)) => return Err(RelayError::ClientRead(e)),
            Err(SpliceError::Write(e)) => return Err(RelayError::UpstreamWrite(e)),
        }
    }
    // ENOTCONN here means the upstream is gone already; the other direction reports it.
    let _ = splice::shutdown_write(upstream);
    Ok(())
}

/// A record that is not application data, as read by `control_record`.
enum Control {
    /// Application data after all (`buf` holds it).
    Data,
    /// close_notify: the client is done sending.
    Closed,
    /// A TLS 1.3 KeyUpdate; `requested`: the client wants ours too.
    KeyUpdate { requested: bool },
}

/// Reads the record that stopped the copy (`buf` keeps its body).
fn control_record(client: &TcpStream, buf: &mut Vec<u8>) -> Result<Control, RelayError> {
    let (kind, n) = sys::recv_record(client, buf).map_err(RelayError::ClientRead)?;
    buf.truncate(n);
    match (kind, &buf[..]) {
        (sys::APPLICATION_DATA, _) => Ok(Control::Data),
        (sys::ALERT, [_, 0]) => Ok(Control::Closed),
        (sys::ALERT, [_, desc]) => Err(RelayError::Tls(rustls::Error::AlertReceived(
            rustls::AlertDescription::from(*desc),
        ))),
        // KeyUpdate (RFC 8446 §4.6.3): type 24, length 1, update_not_requested(0) or
        // update_requested(1); alone in its record.
        (sys::HANDSHAKE, [24, 0, 0, 1, request @ (0 | 1)]) => Ok(Control::KeyUpdate {
            requested: *request == 1,
        }),
        _ => Err(RelayError::Tls(rustls::Error::General(format!(
            "unexpected record (type {kind}, {n} bytes) after the hand-off"
        )))),
    }
}

/// Follows a client's KeyUpdate: the next receiving key goes to the kernel and, when asked,
/// our own KeyUpdate goes out under the old sending key before the new one is installed.
/// Needs a kernel that takes new keys on a live socket (TLS 1.3 rekey); on one that does
/// not, the connection ends with `RelayError::KeyUpdate`, our sending key unchanged.
async fn follow_key_update(
    client: &TcpStream,
    kernel: &mut Kernel,
    requested: bool,
) -> Result<(), RelayError> {
    let cipher = kernel.cipher;
    let Some(rekey) = kernel.rekey.as_mut() else {
        return Err(RelayError::KeyUpdate(KeyUpdateError::NoSecrets));
    };
    let info = |next: KeyIv| {
        CryptoInfo::new(sys::TLS_1_3, cipher, &next.key, &next.iv, 0)
            .ok_or(RelayError::KeyUpdate(KeyUpdateError::NoKernelForm))
    };
    sys::install_rx(client, &info(rekey.next_client())?)
        .map_err(|e| RelayError::KeyUpdate(KeyUpdateError::Receive(e)))?;
    if requested {
        // Our KeyUpdate (update_not_requested), sealed under the key the client still expects;
        // nothing else may be sent between it and the switch, so no await follows it.
        loop {
            match sys::send_record(client, sys::HANDSHAKE, &[24, 0, 0, 1, 0]) {
                Ok(()) => break,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => client
                    .writable(false)
                    .await
                    .map_err(RelayError::ClientWrite)?,
                Err(e) => return Err(RelayError::ClientWrite(e)),
            }
        }
        sys::install_tx(client, &info(rekey.next_server())?)
            .map_err(|e| RelayError::KeyUpdate(KeyUpdateError::Send(e)))?;
    }
    Ok(())
}

async fn upstream_to_client(
    upstream: &impl Ready,
    client: &TcpStream,
    pool: &Pipes,
    counters: &Counters,
) -> Result<(), RelayError> {
    let down = |n: usize, spliced: bool| {
        counters.down.set(counters.down.get() + n as u64);
        if spliced {
            counters.spliced.set(counters.spliced.get() + n as u64);
        }
    };
    match splice::forward(upstream, client, pool, down, || counters.touch()).await {
        Ok(Stop::End) => {
            // Everything spliced is out of the pipe: the alert comes after the last byte.
            close_notify(client)
                .await
                .map_err(RelayError::ClientWrite)?;
            let _ = splice::shutdown_write(client);
            Ok(())
        }
        // A plain socket refusing splice (EINVAL) is an error like any other.
        Ok(Stop::Control) => Err(RelayError::UpstreamRead(io::Error::from_raw_os_error(
            libc::EINVAL,
        ))),
        Err(SpliceError::Read(e)) => Err(RelayError::UpstreamRead(e)),
        Err(SpliceError::Write(e)) => Err(RelayError::ClientWrite(e)),
    }
}

/// Sends close_notify through the kernel, waiting for room in the send buffer.
async fn close_notify(client: &TcpStream) -> io::Result<()> {
    loop {
        match sys::send_close_notify(client) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => client.writable(false).await?,
            other => return other,
        }
    }
}
