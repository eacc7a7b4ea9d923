//! The kernel-TLS path: after rustls has done the handshake and verified the client, its
//! traffic secrets go to the kernel (`TCP_ULP "tls"`, `TLS_TX` + `TLS_RX`), and the relay moves
//! plaintext with plain reads and writes: the kernel decrypts what the client socket delivers
//! and encrypts what is written to it. One copy fewer than user-space TLS, and no rustls state
//! kept per connection.
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

use std::cell::Cell;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

use monoio::io::{
    AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt, OwnedReadHalf, OwnedWriteHalf, Split,
    Splitable,
};
use monoio::net::TcpStream;
use rustls::{CipherSuite, ConnectionTrafficSecrets, ServerConnection};

use super::budget;
use super::buffers::{self, ReadBuf};
use super::guard::{Guard, PeerChain};
use super::handshake::Early;
use super::relay::{Counters, RelayError};
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
/// ended, or an error, or the guard's verdict.
pub async fn relay<U>(
    client: TcpStream,
    upstream: U,
    chain: &dyn PeerChain,
    early: Early,
    guard: &Guard<'_>,
    counters: &Counters,
) -> Result<(), RelayError>
where
    U: Split + AsyncReadRent + AsyncWriteRent,
{
    let fd = client.as_raw_fd();
    let (mut cr, mut cw) = client.into_split();
    let (mut ur, mut uw) = upstream.into_split();
    let result = {
        let up = client_to_upstream(fd, &mut cr, &mut uw, early, counters);
        let down = upstream_to_client(fd, &mut ur, &mut cw, counters);
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
        let _ = close_notify(fd).await;
    }
    drop(cr.reunite(cw));
    drop(ur.reunite(uw));
    result
}

async fn client_to_upstream<U: Split + AsyncReadRent + AsyncWriteRent>(
    fd: RawFd,
    cr: &mut OwnedReadHalf<TcpStream>,
    uw: &mut OwnedWriteHalf<U>,
    early: Early,
    counters: &Counters,
) -> Result<(), RelayError> {
    if !early.plain.is_empty() {
        let n = early.plain.len() as u64;
        let (res, _) = uw.write_all(early.plain).await;
        res.map_err(RelayError::UpstreamWrite)?;
        counters.up.set(counters.up.get() + n);
    }
    let mut closed = early.closed;
    let mut read_buf = ReadBuf::small();
    let mut plain = Vec::new();
    loop {
        budget::next_turn().await;
        if closed {
            let _ = uw.shutdown().await;
            return Ok(());
        }
        let (res, buf) = cr.read(read_buf.take()).await;
        counters.touch();
        match res {
            Ok(0) => {
                closed = true;
                read_buf.put_back(buf, 0);
            }
            Ok(n) => {
                let (res, buf) = uw.write_all(buf).await;
                res.map_err(RelayError::UpstreamWrite)?;
                counters.up.set(counters.up.get() + n as u64);
                read_buf.put_back(buf, n);
            }
            Err(e) if e.raw_os_error() == Some(libc::EIO) => {
                read_buf.put_back(buf, 0);
                plain.resize(buffers::BIG, 0);
                closed = control_record(fd, &mut plain)?;
                if !plain.is_empty() {
                    let n = plain.len() as u64;
                    let (res, p) = uw.write_all(std::mem::take(&mut plain)).await;
                    plain = p;
                    res.map_err(RelayError::UpstreamWrite)?;
                    counters.up.set(counters.up.get() + n);
                }
            }
            Err(e) if e.raw_os_error() == Some(libc::EBADMSG) => {
                return Err(RelayError::Tls(rustls::Error::DecryptError));
            }
            Err(e) => return Err(RelayError::ClientRead(e)),
        }
    }
}

/// Reads the record that made a plain read fail. Returns whether the client is done sending
/// (close_notify); `buf` keeps application data, if that is what it was after all.
fn control_record(fd: RawFd, buf: &mut Vec<u8>) -> Result<bool, RelayError> {
    let (kind, n) = sys::recv_record(&fd, buf).map_err(RelayError::ClientRead)?;
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

async fn upstream_to_client<U: Split + AsyncReadRent + AsyncWriteRent>(
    fd: RawFd,
    ur: &mut OwnedReadHalf<U>,
    cw: &mut OwnedWriteHalf<TcpStream>,
    counters: &Counters,
) -> Result<(), RelayError> {
    let mut read_buf = ReadBuf::small();
    loop {
        budget::next_turn().await;
        let (res, buf) = ur.read(read_buf.take()).await;
        let n = res.map_err(RelayError::UpstreamRead)?;
        counters.touch();
        if n == 0 {
            close_notify(fd).await.map_err(RelayError::ClientWrite)?;
            let _ = cw.shutdown().await;
            return Ok(());
        }
        let (res, buf) = cw.write_all(buf).await;
        res.map_err(RelayError::ClientWrite)?;
        counters.down.set(counters.down.get() + n as u64);
        read_buf.put_back(buf, n);
    }
}

/// Sends close_notify through the kernel, retrying briefly while the send buffer is full.
async fn close_notify(fd: RawFd) -> io::Result<()> {
    let tries = Cell::new(0);
    loop {
        match sys::send_close_notify(&fd) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && tries.get() < 100 => {
                tries.set(tries.get() + 1);
                monoio::time::sleep(Duration::from_millis(10)).await;
            }
            other => return other,
        }
    }
}
