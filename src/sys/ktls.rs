//! Kernel TLS (linux/tls.h, Documentation/networking/tls.rst): attaching the `tls` upper-layer
//! protocol to a connected TCP socket, installing the traffic keys for each direction, and the
//! two calls that carry TLS control records once the kernel owns the record layer: `recvmsg`
//! with a `TLS_GET_RECORD_TYPE` control message to read one, `sendmsg` with
//! `TLS_SET_RECORD_TYPE` to send one (our close_notify, our KeyUpdate).
//!
//! Which suites the kernel can take is learnt once, at start, by trying each one with a zero
//! key on a throw-away loopback connection: the traffic secrets cannot be given back to rustls,
//! so a connection may only be handed over when its suite is known to work.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};

const SOL_TCP: libc::c_int = 6;
const TCP_ULP: libc::c_int = 31;
const SOL_TLS: libc::c_int = 282;
const TLS_TX: libc::c_int = 1;
const TLS_RX: libc::c_int = 2;
const TLS_SET_RECORD_TYPE: libc::c_int = 1;
const TLS_GET_RECORD_TYPE: libc::c_int = 2;

/// `tls_crypto_info.version`.
pub(crate) const TLS_1_2: u16 = 0x0303;
pub(crate) const TLS_1_3: u16 = 0x0304;
/// `tls_crypto_info.cipher_type`.
pub(crate) const AES_GCM_128: u16 = 51;
pub(crate) const AES_GCM_256: u16 = 52;
pub(crate) const CHACHA20_POLY1305: u16 = 54;

/// The record content types that matter after the hand-off (RFC 8446 §5.1).
pub(crate) const ALERT: u8 = 21;
pub(crate) const HANDSHAKE: u8 = 22;
pub(crate) const APPLICATION_DATA: u8 = 23;

/// One direction's key material, laid out as the kernel's `tls12_crypto_info_*` structs: the
/// 4-byte header, then iv, key, salt and record sequence number, each at its C offset.
pub(crate) struct CryptoInfo {
    bytes: Vec<u8>,
}

impl CryptoInfo {
    /// `iv` is the 12-byte nonce rustls derives: for the GCM suites the kernel takes its first
    /// 4 bytes as `salt` and the last 8 as `iv`; for ChaCha20-Poly1305 all 12 are `iv`.
    pub(crate) fn new(
        version: u16,
        cipher: u16,
        key: &[u8],
        iv: &[u8; 12],
        seq: u64,
    ) -> Option<Self> {
        let mut bytes = Vec::with_capacity(56);
        bytes.extend(version.to_ne_bytes());
        bytes.extend(cipher.to_ne_bytes());
        match (cipher, key.len()) {
            (AES_GCM_128, 16) | (AES_GCM_256, 32) => {
                bytes.extend(&iv[4..]);
                bytes.extend(key);
                bytes.extend(&iv[..4]);
            }
            (CHACHA20_POLY1305, 32) => {
                bytes.extend(iv);
                bytes.extend(key);
            }
            _ => return None,
        }
        bytes.extend(seq.to_be_bytes());
        Some(CryptoInfo { bytes })
    }
}

impl Drop for CryptoInfo {
    fn drop(&mut self) {
        // Key material does not outlive its use (best effort: no volatile writes in std).
        self.bytes.iter_mut().for_each(|b| *b = 0);
    }
}

fn setsockopt(fd: RawFd, level: libc::c_int, name: libc::c_int, value: &[u8]) -> io::Result<()> {
    // SAFETY: `value` is valid for `value.len()` bytes for the whole call; the kernel copies it.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            value.as_ptr().cast(),
            value.len() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Attaches the `tls` ULP to a connected TCP socket. Without keys the socket still behaves as
/// plain TCP.
pub(crate) fn attach(socket: &impl AsRawFd) -> io::Result<()> {
    setsockopt(socket.as_raw_fd(), SOL_TCP, TCP_ULP, b"tls")
}

/// Installs the keys for both directions; from here on the kernel encrypts what is written and
/// decrypts what is read.
pub(crate) fn install(socket: &impl AsRawFd, tx: &CryptoInfo, rx: &CryptoInfo) -> io::Result<()> {
    install_tx(socket, tx)?;
    install_rx(socket, rx)
}

/// Installs (or, after a TLS 1.3 KeyUpdate, replaces) the sending key. Replacing needs a
/// kernel with TLS 1.3 rekey support; older ones refuse.
pub(crate) fn install_tx(socket: &impl AsRawFd, tx: &CryptoInfo) -> io::Result<()> {
    setsockopt(socket.as_raw_fd(), SOL_TLS, TLS_TX, &tx.bytes)
}

/// Installs (or replaces, as `install_tx`) the receiving key.
pub(crate) fn install_rx(socket: &impl AsRawFd, rx: &CryptoInfo) -> io::Result<()> {
    setsockopt(socket.as_raw_fd(), SOL_TLS, TLS_RX, &rx.bytes)
}

/// What the kernel offers: the (version, cipher) pairs that took a key on a test connection.
/// `Err` when the `tls` ULP itself is missing (no CONFIG_TLS, or the module cannot load).
pub(crate) fn probe() -> io::Result<Vec<(u16, u16)>> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    let addr: SocketAddr = listener.local_addr()?;
    let mut supported = Vec::new();
    let mut first = true;
    for version in [TLS_1_3, TLS_1_2] {
        for (cipher, key_len) in [
            (AES_GCM_128, 16),
            (AES_GCM_256, 32),
            (CHACHA20_POLY1305, 32),
        ] {
            let client = TcpStream::connect(addr)?;
            let (_server, _) = listener.accept()?;
            match attach(&client) {
                Ok(()) => {}
                // The ULP is the kernel's answer for every suite: report it once.
                Err(e) if first => return Err(e),
                Err(_) => continue,
            }
            first = false;
            let key = [0u8; 32];
            let Some(info) = CryptoInfo::new(version, cipher, &key[..key_len], &[0; 12], 0) else {
                continue;
            };
            if install(&client, &info, &info).is_ok() {
                supported.push((version, cipher));
            }
        }
    }
    Ok(supported)
}

/// Reads the next record the kernel holds when a plain read failed with EIO (a record that is
/// not application data is at the head of the queue). Returns its content type and length.
pub(crate) fn recv_record(socket: &impl AsRawFd, buf: &mut [u8]) -> io::Result<(u8, usize)> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // Room for one cmsghdr carrying one byte, u64-aligned.
    let mut control = [0u64; 8];
    // SAFETY: msghdr is plain data; every pointer set below outlives the recvmsg call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control);
    // SAFETY: `msg` points at `iov` (into `buf`) and `control`, both live and writable.
    let n = unsafe { libc::recvmsg(socket.as_raw_fd(), &mut msg, libc::MSG_DONTWAIT) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the CMSG_* macros walk the control buffer the kernel just filled, bounded by
    // msg_controllen; the data byte read is inside the cmsg they return.
    let kind = unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        let mut kind = APPLICATION_DATA;
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == SOL_TLS && (*cmsg).cmsg_type == TLS_GET_RECORD_TYPE {
                kind = *libc::CMSG_DATA(cmsg);
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
        kind
    };
    Ok((kind, n as usize))
}

/// Sends a close_notify alert through the kernel's record layer (non-blocking).
pub(crate) fn send_close_notify(socket: &impl AsRawFd) -> io::Result<()> {
    send_record(socket, ALERT, &[1, 0]) // warning, close_notify
}

/// Sends `body` as one record of type `kind` (an alert, a handshake message) through the
/// kernel's record layer, non-blocking. Control records are small and the caller has nothing
/// else of its own queued, so a short send does not happen: the kernel takes all or nothing.
pub(crate) fn send_record(socket: &impl AsRawFd, kind: u8, body: &[u8]) -> io::Result<()> {
    let mut iov = libc::iovec {
        iov_base: body.as_ptr() as *mut libc::c_void,
        iov_len: body.len(),
    };
    let mut control = [0u64; 8];
    // SAFETY: as in recv_record; the cmsg written lies inside `control` (CMSG_SPACE(1) bytes),
    // and the kernel only reads `body` through `iov`.
    let n = unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = libc::CMSG_SPACE(1) as usize;
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = SOL_TLS;
        (*cmsg).cmsg_type = TLS_SET_RECORD_TYPE;
        (*cmsg).cmsg_len = libc::CMSG_LEN(1) as usize;
        *libc::CMSG_DATA(cmsg) = kind;
        libc::sendmsg(socket.as_raw_fd(), &msg, libc::MSG_DONTWAIT)
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crypto_info_has_the_kernel_layout() {
        let key = [7u8; 16];
        let iv: [u8; 12] = std::array::from_fn(|i| i as u8);
        let info = CryptoInfo::new(TLS_1_3, AES_GCM_128, &key, &iv, 5).expect("aes-128");
        // struct tls12_crypto_info_aes_gcm_128: info(4) iv(8) key(16) salt(4) rec_seq(8).
        assert_eq!(info.bytes.len(), 40);
        assert_eq!(&info.bytes[4..12], &iv[4..]);
        assert_eq!(&info.bytes[12..28], &key);
        assert_eq!(&info.bytes[28..32], &iv[..4]);
        assert_eq!(&info.bytes[32..], &5u64.to_be_bytes());
        let chacha = CryptoInfo::new(TLS_1_2, CHACHA20_POLY1305, &[1; 32], &iv, 0).expect("chacha");
        // struct tls12_crypto_info_chacha20_poly1305: info(4) iv(12) key(32) salt(0) rec_seq(8).
        assert_eq!(chacha.bytes.len(), 56);
        assert!(CryptoInfo::new(TLS_1_3, AES_GCM_256, &[0; 16], &iv, 0).is_none());
    }

    #[test]
    fn probe_finds_suites_or_reports_the_missing_ulp() {
        // On a kernel without CONFIG_TLS the ULP is missing (ENOENT); with it, at least
        // AES-128-GCM for TLS 1.3 takes a key.
        match probe() {
            Ok(suites) => assert!(suites.contains(&(TLS_1_3, AES_GCM_128)), "{suites:?}"),
            Err(e) => assert_eq!(e.raw_os_error(), Some(libc::ENOENT), "{e}"),
        }
    }
}
