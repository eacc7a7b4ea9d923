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
//! connection adds over plain extraction is re-deriving secrets after a KeyUpdate. A kernel
//! without TLS 1.3 rekey (before Linux 6.13, including the 6.1 this is tested on) cannot use
//! new receive keys anyway, so a client KeyUpdate closes the connection cleanly; the session
//! tickets rustls queues after the handshake are flushed before the hand-off, so none is lost.
//!
//! The hand-off must not lose bytes: the handshake reads one whole record at a time on this
//! path (see `handshake`), so rustls holds no partial record the kernel would never see; any
//! plaintext rustls already decrypted is forwarded first.
//!
//! After the hand-off the kernel reports a record that is not application data as EIO on a
//! plain read; it is then read with `recvmsg` and its type: close_notify is the client's
//! half-close, any other alert ends the connection, a KeyUpdate ends it cleanly.

use std::io;
use std::time::Duration;

use monoio::net::TcpStream;
use rustls::{CipherSuite, ConnectionTrafficSecrets, ServerConnection};

use super::buffers;
use super::guard::{Guard, PeerChain};
use super::handshake::Early;
use super::relay::{Counters, RelayError};
use super::splice::{self, Pipes, Ready, SpliceError, Stop};
use crate::sys::ktls::{self as sys, CryptoInfo};

/// The (version, cipher) pairs the kernel took at start (`sys::ktls::probe`).
#[derive(Debug, Clone)]
pub struct Offer(pub Vec<(u16, u16)>);

impl Offer {
    /// The kernel's name for the connection's suite, if the kernel takes it.
    pub fn takes(&self, conn: &ServerConnection) -> Option<(u16, u16)> {
        let suite = conn.negotiated_cipher_suite()?.suite();
        let pair = kernel_suite(suite)?;
        self.0.contains(&pair).then_some(pair)
    }
}

/// `TLS1.3/AES-128-GCM`, for the log.
pub fn suite_name(version: u16, cipher: u16) -> String {
    let v = if version == sys::TLS_1_3 {
        "TLS1.3"
    } else {
        "TLS1.2"
    };
    let c = match cipher {
        sys::AES_GCM_128 => "AES-128-GCM",
        sys::AES_GCM_256 => "AES-256-GCM",
        _ => "CHACHA20-POLY1305",
    };
    format!("{v}/{c}")
}

fn kernel_suite(suite: CipherSuite) -> Option<(u16, u16)> {
    use CipherSuite::*;
    Some(match suite {
        TLS13_AES_128_GCM_SHA256 => (sys::TLS_1_3, sys::AES_GCM_128),
        TLS13_AES_256_GCM_SHA384 => (sys::TLS_1_3, sys::AES_GCM_256),
        TLS13_CHACHA20_POLY1305_SHA256 => (sys::TLS_1_3, sys::CHACHA20_POLY1305),
        TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 | TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 => {
            (sys::TLS_1_2, sys::AES_GCM_128)
        }
        TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384 | TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 => {
            (sys::TLS_1_2, sys::AES_GCM_256)
        }
        TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
        | TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256 => (sys::TLS_1_2, sys::CHACHA20_POLY1305),
        _ => return None,
    })
}

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

/// Gives the connection's record layer to the kernel. Consumes the rustls connection: on error
/// the connection cannot go on (its secrets are spent) and must be closed.
pub fn hand_off(
    conn: Box<ServerConnection>,
    socket: &TcpStream,
    (version, _): (u16, u16),
) -> Result<(), String> {
    let secrets = (*conn)
        .dangerous_extract_secrets()
        .map_err(|e| format!("extracting the traffic secrets: {e}"))?;
    let tx = crypto_info(version, secrets.tx.0, &secrets.tx.1);
    let rx = crypto_info(version, secrets.rx.0, &secrets.rx.1);
    let (Some(tx), Some(rx)) = (tx, rx) else {
        return Err("the negotiated suite has no kernel form".into());
    };
    sys::attach(socket).map_err(|e| format!("TCP_ULP tls: {e}"))?;
    sys::install(socket, &tx, &rx).map_err(|e| format!("TLS_TX/TLS_RX: {e}"))
}

/// Relays plaintext between a kernel-TLS client socket and the upstream until both directions
/// ended, or an error, or the guard's verdict. The bytes go socket → pipe → socket (`splice`).
pub async fn relay<U: Ready>(
    client: TcpStream,
    upstream: U,
    chain: &dyn PeerChain,
    early: Early,
    guard: &Guard<'_>,
    counters: &Counters,
) -> Result<(), RelayError> {
    splice::take_over(&client).map_err(RelayError::ClientRead)?;
    splice::take_over(&upstream).map_err(RelayError::UpstreamWrite)?;
    let pool = Pipes::local();
    let result = {
        let up = client_to_upstream(&client, &upstream, early, counters);
        let down = upstream_to_client(&upstream, &client, &pool, counters);
        monoio::select! {
            r = async { monoio::try_join!(up, down) } => r.map(|_| ()),
            e = guard.watch(chain, counters) => Err(e),
        }
    };
    if matches!(
        result,
        Err(RelayError::Idle
            | RelayError::CertExpired
            | RelayError::Reauthorization(_)
            | RelayError::KeyUpdate)
    ) {
        // We end it: tell the client it is deliberate, best effort. (After a client KeyUpdate
        // our sending keys are unchanged, so the client can still read this.)
        let _ = monoio::time::timeout(CLOSE_NOTIFY_WAIT, close_notify(&client)).await;
    }
    result
}

/// How long a close_notify we send on our own initiative may wait for room.
const CLOSE_NOTIFY_WAIT: Duration = Duration::from_secs(1);

async fn client_to_upstream(
    client: &TcpStream,
    upstream: &impl Ready,
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
                closed = control_record(client, &mut record)?;
                if !record.is_empty() {
                    splice::write_all(upstream, &record)
                        .await
                        .map_err(RelayError::UpstreamWrite)?;
                    up(record.len(), false);
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

/// Reads the record that stopped the splice. Returns whether the client is done sending
/// (close_notify); `buf` keeps application data, if that is what it was after all.
fn control_record(client: &TcpStream, buf: &mut Vec<u8>) -> Result<bool, RelayError> {
    let (kind, n) = sys::recv_record(client, buf).map_err(RelayError::ClientRead)?;
    buf.truncate(n);
    match (kind, buf.first().copied(), buf.get(1).copied()) {
        (sys::APPLICATION_DATA, _, _) => Ok(false),
        (sys::ALERT, _, Some(0)) => {
            buf.clear();
            Ok(true)
        }
        (sys::ALERT, _, Some(desc)) => Err(RelayError::Tls(rustls::Error::AlertReceived(
            rustls::AlertDescription::from(desc),
        ))),
        // KeyUpdate (RFC 8446 §4.6.3): new receive keys the kernel cannot take before 6.13.
        (sys::HANDSHAKE, Some(24), _) => Err(RelayError::KeyUpdate),
        _ => Err(RelayError::Tls(rustls::Error::General(format!(
            "unexpected record type {kind} after the hand-off"
        )))),
    }
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
