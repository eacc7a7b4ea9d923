//! The PROXY protocol version 2 header (HAProxy's `doc/proxy-protocol.txt`) that tells the
//! upstream who the client is, sent before any client byte when `--proxy-protocol` is on.
//!
//! Layout: the 12-byte signature, `0x21` (version 2, PROXY), the family (`0x11` TCP/IPv4 or
//! `0x21` TCP/IPv6), the length of what follows (big-endian u16), the addresses (source then
//! destination address, then source and destination port), then TLVs (type u8, length u16 BE,
//! value): ALPN (0x01) and AUTHORITY (0x02, the SNI) when present, SSL (0x20: a client flags byte
//! and a verify result u32, followed by the sub-TLVs VERSION 0x21, CN 0x22, CIPHER 0x23, SIG_ALG
//! 0x24, KEY_ALG 0x25), and UNIQUE_ID (0x05): the SHA-256 of the client's leaf certificate.
//! A value longer than `MAX_VALUE_LEN` is left out, so the header always fits its length field.

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

/// The longest value sent in one TLV or sub-TLV. A longer one is left out, never cut: a cut CN
/// or SNI is another name. Real values are far shorter (ALPN protocol names and DNS names at
/// most 255 bytes, RFC 7301 §3.1 and RFC 1035 §2.3.4; a CN at most 64, RFC 5280 Appendix A), but
/// a CA may sign a longer CN, and without a bound the header outgrows its u16 length field.
pub const MAX_VALUE_LEN: usize = 8192;

// The longest header body: IPv6 addresses, ALPN, AUTHORITY, the SSL TLV (client and verify, then
// five sub-TLVs) and UNIQUE_ID must fit the u16 length field.
const _: () = assert!(
    36 + 2 * (3 + MAX_VALUE_LEN) + 3 + 5 + 5 * (3 + MAX_VALUE_LEN) + 3 + 32 <= u16::MAX as usize
);

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
    /// Client certificate facts, when one was presented (verified, or taken unchecked: we
    /// never forward a connection whose certificate failed verification).
    pub cert: Option<CertFacts<'a>>,
    /// The certificate came from a resumed session rather than this connection's handshake.
    pub resumed: bool,
    /// The certificate's chain was verified (`--client-auth require-and-verify`).
    pub verified: bool,
    /// We terminated the TLS: false for a passthrough endpoint, whose header then carries
    /// the addresses and the SNI (AUTHORITY) but no SSL TLV.
    pub terminated: bool,
}

#[derive(Debug)]
pub struct CertFacts<'a> {
    /// The certificate's CN (`tls::identity`); without one, no SSL_CN TLV is sent.
    pub cn: Option<&'a str>,
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
        value_tlv(out, TYPE_ALPN, alpn);
    }
    if let Some(sni) = info.sni {
        value_tlv(out, TYPE_AUTHORITY, sni.as_bytes());
    }
    if info.terminated {
        ssl_tlvs(info, out);
    }

    // Cannot saturate: `MAX_VALUE_LEN` bounds the body below u16::MAX (asserted above).
    let body_len = u16::try_from(out.len() - body_start).unwrap_or(u16::MAX);
    out[len_at..len_at + 2].copy_from_slice(&body_len.to_be_bytes());
}

/// The SSL TLV and the UNIQUE_ID (the client certificate's SHA-256).
fn ssl_tlvs(info: &ClientInfo<'_>, out: &mut Vec<u8>) {
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
    // verify: 0 means the client presented a certificate and it was verified; a certificate
    // taken unchecked (`--client-auth require-any` or `request`) is sent with 1.
    let verify: u32 = if info.cert.is_some() && info.verified {
        0
    } else {
        1
    };
    ssl.extend_from_slice(&verify.to_be_bytes());
    value_tlv(&mut ssl, SUBTYPE_SSL_VERSION, info.version.as_bytes());
    if let Some(cert) = &info.cert {
        if let Some(cn) = cert.cn {
            value_tlv(&mut ssl, SUBTYPE_SSL_CN, cn.as_bytes());
        }
    }
    value_tlv(&mut ssl, SUBTYPE_SSL_CIPHER, info.cipher.as_bytes());
    if let Some(cert) = &info.cert {
        value_tlv(&mut ssl, SUBTYPE_SSL_SIG_ALG, cert.sig_alg.as_bytes());
        value_tlv(&mut ssl, SUBTYPE_SSL_KEY_ALG, cert.key_alg.as_bytes());
    }
    tlv(out, TYPE_SSL, &ssl);
    if let Some(cert) = &info.cert {
        tlv(out, TYPE_UNIQUE_ID, &cert.fingerprint);
    }
}

/// One TLV carrying a value we were handed, or nothing when it is longer than `MAX_VALUE_LEN`.
fn value_tlv(out: &mut Vec<u8>, kind: u8, value: &[u8]) {
    if value.len() <= MAX_VALUE_LEN {
        tlv(out, kind, value);
    }
}

/// One TLV. Every value is a bounded one or the SSL TLV built of them, so its length fits a u16
/// (asserted above with the whole body).
fn tlv(out: &mut Vec<u8>, kind: u8, value: &[u8]) {
    out.push(kind);
    out.extend_from_slice(&(value.len() as u16).to_be_bytes());
    out.extend_from_slice(value);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The length field, and the (type, value) TLVs after the IPv4 addresses.
    fn split(header: &[u8]) -> (usize, Vec<(u8, Vec<u8>)>) {
        let len = usize::from(u16::from_be_bytes([header[14], header[15]]));
        let mut tlvs = Vec::new();
        let mut rest = &header[16 + 12..];
        while rest.len() >= 3 {
            let n = usize::from(u16::from_be_bytes([rest[1], rest[2]]));
            tlvs.push((rest[0], rest[3..3 + n].to_vec()));
            rest = &rest[3 + n..];
        }
        assert!(rest.is_empty(), "TLVs do not tile the header");
        (len, tlvs)
    }

    fn encode_v4(info: &ClientInfo<'_>) -> Vec<u8> {
        let (src, dst) = ("10.0.0.1:40000", "10.0.0.2:8443");
        let mut out = Vec::new();
        encode(
            src.parse().expect("addr"),
            dst.parse().expect("addr"),
            info,
            &mut out,
        );
        out
    }

    // Found by fuzz/fuzz_targets/proxy_v2.rs: a 65536-byte ALPN was cut to 65535 bytes and the
    // length field saturated at 65535 while 65567 bytes followed, so the upstream misread the
    // header and everything after it.
    #[test]
    fn leaves_out_a_value_too_long_for_a_tlv_and_keeps_the_length_right() {
        let alpn = vec![b'p'; 65536];
        let cn = "c".repeat(MAX_VALUE_LEN + 1);
        let info = ClientInfo {
            alpn: Some(&alpn),
            version: "TLSv1.3",
            cipher: "TLS_AES_128_GCM_SHA256",
            cert: Some(CertFacts {
                cn: Some(&cn),
                sig_alg: "ecdsa-with-SHA256",
                key_alg: "id-ecPublicKey",
                fingerprint: [7; 32],
            }),
            verified: true,
            terminated: true,
            ..ClientInfo::default()
        };
        let header = encode_v4(&info);
        let (len, tlvs) = split(&header);
        assert_eq!(len, header.len() - 16, "length field");
        assert!(
            tlvs.iter().all(|(kind, _)| *kind != TYPE_ALPN),
            "ALPN left out"
        );
        let ssl = &tlvs
            .iter()
            .find(|(k, _)| *k == TYPE_SSL)
            .expect("SSL TLV")
            .1;
        assert!(
            !ssl.windows(MAX_VALUE_LEN)
                .any(|w| w.iter().all(|&b| b == b'c')),
            "CN left out, not cut"
        );
        assert!(
            tlvs.iter()
                .any(|(k, v)| *k == TYPE_UNIQUE_ID && v == &[7; 32])
        );
    }

    // Also found by the fuzz target, in the first version of the fix above: the SSL TLV, whose
    // sub-TLVs are each within the bound but together are not, was left out whole.
    #[test]
    fn sends_values_of_the_longest_allowed_length_whole() {
        let alpn = vec![b'p'; MAX_VALUE_LEN];
        let long = "s".repeat(MAX_VALUE_LEN);
        let info = ClientInfo {
            alpn: Some(&alpn),
            sni: Some(&long),
            version: &long,
            cipher: &long,
            cert: Some(CertFacts {
                cn: Some(&long),
                sig_alg: &long,
                key_alg: &long,
                fingerprint: [7; 32],
            }),
            verified: true,
            terminated: true,
            resumed: false,
        };
        let header = encode_v4(&info);
        let (len, tlvs) = split(&header);
        assert_eq!(len, header.len() - 16, "length field");
        assert!(tlvs.contains(&(TYPE_ALPN, alpn)));
        assert!(tlvs.contains(&(TYPE_AUTHORITY, long.clone().into_bytes())));
        let ssl = &tlvs
            .iter()
            .find(|(k, _)| *k == TYPE_SSL)
            .expect("SSL TLV")
            .1;
        assert_eq!(
            ssl.len(),
            5 + 5 * (3 + MAX_VALUE_LEN),
            "all five sub-TLVs, whole"
        );
    }
}
