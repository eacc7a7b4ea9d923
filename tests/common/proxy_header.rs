//! A PROXY protocol v2 header parser for the tests, written from HAProxy's
//! `doc/proxy-protocol.txt`, not from our encoder.

use std::net::{IpAddr, SocketAddr};

/// A parsed PROXY v2 header and the bytes that followed it.
#[derive(Debug)]
pub struct Parsed {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub tlvs: Vec<(u8, Vec<u8>)>,
    pub rest: Vec<u8>,
}

fn u16_at(b: &[u8], i: usize) -> usize {
    usize::from(u16::from_be_bytes([b[i], b[i + 1]]))
}

pub fn parse_tlvs(mut b: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    while !b.is_empty() {
        assert!(b.len() >= 3, "truncated TLV header: {b:?}");
        let (kind, len) = (b[0], u16_at(b, 1));
        assert!(b.len() >= 3 + len, "TLV 0x{kind:02x} overruns the header");
        out.push((kind, b[3..3 + len].to_vec()));
        b = &b[3 + len..];
    }
    out
}

pub fn parse(bytes: &[u8]) -> Parsed {
    assert!(
        bytes.len() >= 16,
        "too short for a PROXY v2 header: {bytes:?}"
    );
    assert_eq!(
        &bytes[..12],
        b"\x0D\x0A\x0D\x0A\x00\x0D\x0A\x51\x55\x49\x54\x0A",
        "signature"
    );
    assert_eq!(bytes[12], 0x21, "version 2, command PROXY");
    let len = u16_at(bytes, 14);
    let body = &bytes[16..16 + len];
    let (src, dst, tlvs) = match bytes[13] {
        0x11 => {
            let ip = |o: usize| IpAddr::from([body[o], body[o + 1], body[o + 2], body[o + 3]]);
            let (sp, dp) = (u16_at(body, 8) as u16, u16_at(body, 10) as u16);
            (
                SocketAddr::new(ip(0), sp),
                SocketAddr::new(ip(4), dp),
                &body[12..],
            )
        }
        0x21 => {
            let ip = |o: usize| {
                let mut a = [0u8; 16];
                a.copy_from_slice(&body[o..o + 16]);
                IpAddr::from(a)
            };
            let (sp, dp) = (u16_at(body, 32) as u16, u16_at(body, 34) as u16);
            (
                SocketAddr::new(ip(0), sp),
                SocketAddr::new(ip(16), dp),
                &body[36..],
            )
        }
        other => panic!("unexpected family/protocol byte 0x{other:02x}"),
    };
    Parsed {
        src,
        dst,
        tlvs: parse_tlvs(tlvs),
        rest: bytes[16 + len..].to_vec(),
    }
}

pub fn tlv(tlvs: &[(u8, Vec<u8>)], kind: u8) -> Option<&[u8]> {
    tlvs.iter()
        .find(|(k, _)| *k == kind)
        .map(|(_, v)| v.as_slice())
}

/// The SSL TLV's sub-TLVs (after its client byte and verify word).
pub fn ssl_sub_tlvs(p: &Parsed) -> Vec<(u8, Vec<u8>)> {
    let ssl = tlv(&p.tlvs, 0x20).expect("SSL TLV");
    parse_tlvs(&ssl[5..])
}
