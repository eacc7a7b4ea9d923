//! The PROXY protocol version 2 header (HAProxy's `doc/proxy-protocol.txt`) that tells the
//! upstream who the client is, sent before any client byte when `--proxy-protocol` is on.
//!
//! Layout: the 12-byte signature, `0x21` (version 2, PROXY), the family (`0x11` TCP/IPv4 or
//! `0x21` TCP/IPv6), the length of what follows (big-endian u16), the addresses (source then
//! destination address, then source and destination port), then TLVs (type u8, length u16 BE,
//! value): ALPN (0x01) and AUTHORITY (0x02, the SNI) when present, SSL (0x20: a client flags byte
//! and a verify result u32, followed by the sub-TLVs VERSION 0x21, CN 0x22, CIPHER 0x23, SIG_ALG
//! 0x24, KEY_ALG 0x25), and UNIQUE_ID (0x05): the SHA-256 of the client's leaf certificate.

use std::net::SocketAddr;

pub const SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

pub const TYPE_ALPN: u8 = 0x01;
pub const TYPE_AUTHORITY: u8 = 0x02;
pub const TYPE_UNIQUE_ID: u8 = 0x05;
pub const TYPE_SSL: u8 = 0x20;
pub const SUBTYPE_SSL_VERSION: u8 = 0x21;
pub const SUBTYPE_SSL_CN: u8 = 0x22;
pub const SUBTYPE_SSL_CIPHER: u8 = 0x23;
pub const SUBTYPE_SSL_SIG_ALG: u8 = 0x24;
pub const SUBTYPE_SSL_KEY_ALG: u8 = 0x25;

/// `client` flags of the SSL TLV.
pub const CLIENT_SSL: u8 = 0x01;
pub const CLIENT_CERT_CONN: u8 = 0x02;
pub const CLIENT_CERT_SESS: u8 = 0x04;

/// What the header says about one connection.
#[derive(Debug, Default)]
pub struct ClientInfo<'a> {
    pub alpn: Option<&'a [u8]>,
    pub sni: Option<&'a str>,
    /// e.g. `TLSv1.3`
    pub version: &'a str,
    /// IANA name, e.g. `TLS_AES_128_GCM_SHA256`
    pub cipher: &'a str,
    /// Client certificate facts, when one was presented (and verified: we never forward
    /// a connection whose certificate failed).
    pub cert: Option<CertFacts<'a>>,
    /// The certificate came from a resumed session rather than this connection's handshake.
    pub resumed: bool,
}

#[derive(Debug)]
pub struct CertFacts<'a> {
    pub cn: &'a str,
    pub sig_alg: &'a str,
    pub key_alg: &'a str,
    /// SHA-256 of the leaf certificate's DER.
    pub fingerprint: [u8; 32],
}

/// Appends the header for a connection from `src` to `dst` to `out`.
pub fn encode(src: SocketAddr, dst: SocketAddr, info: &ClientInfo<'_>, out: &mut Vec<u8>) {
    out.extend_from_slice(&SIGNATURE);
    out.push(0x21);
    // Both ends are of the same family on one socket; a v4-mapped mix is sent as IPv6.
    let (family, addrs): (u8, Vec<u8>) = match (src, dst) {
        (SocketAddr::V4(s), SocketAddr::V4(d)) => {
            let mut a = Vec::with_capacity(12);
            a.extend_from_slice(&s.ip().octets());
            a.extend_from_slice(&d.ip().octets());
            a.extend_from_slice(&s.port().to_be_bytes());
            a.extend_from_slice(&d.port().to_be_bytes());
            (0x11, a)
        }
        _ => {
            let v6 = |a: SocketAddr| match a {
                SocketAddr::V4(v4) => v4.ip().to_ipv6_mapped().octets(),
                SocketAddr::V6(v6) => v6.ip().octets(),
            };
            let mut a = Vec::with_capacity(36);
            a.extend_from_slice(&v6(src));
            a.extend_from_slice(&v6(dst));
            a.extend_from_slice(&src.port().to_be_bytes());
            a.extend_from_slice(&dst.port().to_be_bytes());
            (0x21, a)
        }
    };
    out.push(family);
    let len_at = out.len();
    out.extend_from_slice(&[0, 0]);
    let body_start = out.len();
    out.extend_from_slice(&addrs);

    if let Some(alpn) = info.alpn {
        tlv(out, TYPE_ALPN, alpn);
    }
    if let Some(sni) = info.sni {
        tlv(out, TYPE_AUTHORITY, sni.as_bytes());
    }
    let mut ssl = Vec::with_capacity(96);
    let mut client = CLIENT_SSL;
    if info.cert.is_some() {
        client |= if info.resumed {
            CLIENT_CERT_SESS
        } else {
            CLIENT_CERT_CONN
        };
    }
    ssl.push(client);
    // verify: 0 means the client presented a certificate and it was verified.
    let verify: u32 = if info.cert.is_some() { 0 } else { 1 };
    ssl.extend_from_slice(&verify.to_be_bytes());
    tlv(&mut ssl, SUBTYPE_SSL_VERSION, info.version.as_bytes());
    if let Some(cert) = &info.cert {
        tlv(&mut ssl, SUBTYPE_SSL_CN, cert.cn.as_bytes());
    }
    tlv(&mut ssl, SUBTYPE_SSL_CIPHER, info.cipher.as_bytes());
    if let Some(cert) = &info.cert {
        tlv(&mut ssl, SUBTYPE_SSL_SIG_ALG, cert.sig_alg.as_bytes());
        tlv(&mut ssl, SUBTYPE_SSL_KEY_ALG, cert.key_alg.as_bytes());
    }
    tlv(out, TYPE_SSL, &ssl);
    if let Some(cert) = &info.cert {
        tlv(out, TYPE_UNIQUE_ID, &cert.fingerprint);
    }

    let body_len = u16::try_from(out.len() - body_start).unwrap_or(u16::MAX);
    out[len_at..len_at + 2].copy_from_slice(&body_len.to_be_bytes());
}

/// One TLV; values longer than 65535 bytes are cut (nothing we send comes close).
fn tlv(out: &mut Vec<u8>, kind: u8, value: &[u8]) {
    let value = &value[..value.len().min(usize::from(u16::MAX))];
    out.push(kind);
    out.extend_from_slice(&(value.len() as u16).to_be_bytes());
    out.extend_from_slice(value);
}
