//! Fuzzes the PROXY protocol v2 encoder (`proxy::proxy_v2::encode`) by round trip: structured
//! connection facts (IPv4/IPv6 addresses and ports, ALPN, SNI, TLS version and cipher, client
//! certificate CN, algorithms and SHA-256, resumption) are encoded, then decoded by the parser
//! below, written from HAProxy's `doc/proxy-protocol.txt` (§2.2 binary header, §2.2.5 TLVs,
//! §2.2.5.x PP2_TYPE_SSL) and not from the encoder.
//!
//! Invariant: the header is well-formed (signature, version/command 0x21, family 0x11 or 0x21,
//! a length field equal to the bytes that follow it, TLVs that tile the rest exactly) and every
//! decoded field equals the input it came from, except that a value longer than
//! `proxy_v2::MAX_VALUE_LEN` is absent (never cut); bytes already in the output buffer are kept.

#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use ringtls::proxy::proxy_v2::{self, CertFacts, ClientInfo};

#[derive(Arbitrary, Debug)]
enum Addr {
    V4([u8; 4], u16),
    V6([u8; 16], u16),
}

impl Addr {
    fn socket(&self) -> SocketAddr {
        match *self {
            Addr::V4(ip, port) => SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port),
            Addr::V6(ip, port) => SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), port),
        }
    }
}

#[derive(Arbitrary, Debug)]
struct Cert {
    /// None: a certificate without one CN, which sends no SSL_CN.
    cn: Option<String>,
    sig_alg: String,
    key_alg: String,
    fingerprint: [u8; 32],
}

/// Which string a `Stretch` grows.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Field {
    Alpn,
    Sni,
    Version,
    Cipher,
    Cn,
    SigAlg,
    KeyAlg,
}

/// Grows one field to `len % 2^17` bytes: libFuzzer's inputs are a few KiB, while the header's
/// limits (a u16 length per TLV and for the whole header) are at 64 KiB.
#[derive(Arbitrary, Debug)]
struct Stretch {
    field: Field,
    len: u32,
}

#[derive(Arbitrary, Debug)]
struct Input {
    /// Bytes already in the output buffer, which `encode` appends to.
    prefix: Vec<u8>,
    src: Addr,
    dst: Addr,
    alpn: Option<Vec<u8>>,
    sni: Option<String>,
    version: String,
    cipher: String,
    cert: Option<Cert>,
    resumed: bool,
    /// The chain was verified (`--client-auth require-and-verify`).
    verified: bool,
    /// Terminated here; false for a passthrough endpoint (no SSL TLV, no UNIQUE_ID).
    terminated: bool,
    stretch: Vec<Stretch>,
}

fn grow(s: &mut String, len: usize) {
    let more = len.saturating_sub(s.len());
    s.extend(std::iter::repeat_n('a', more));
}

impl Input {
    fn apply_stretches(&mut self) {
        // A few suffice to push any mix of fields past the bounds; more only slow each run.
        for Stretch { field, len } in self.stretch.iter().take(4) {
            let len = (*len % (1 << 17)) as usize;
            match field {
                Field::Alpn => {
                    if let Some(a) = &mut self.alpn {
                        a.resize(len.max(a.len()), b'p');
                    }
                }
                Field::Sni => self.sni.iter_mut().for_each(|s| grow(s, len)),
                Field::Version => grow(&mut self.version, len),
                Field::Cipher => grow(&mut self.cipher, len),
                Field::Cn => self
                    .cert
                    .iter_mut()
                    .filter_map(|c| c.cn.as_mut())
                    .for_each(|cn| grow(cn, len)),
                Field::SigAlg => self.cert.iter_mut().for_each(|c| grow(&mut c.sig_alg, len)),
                Field::KeyAlg => self.cert.iter_mut().for_each(|c| grow(&mut c.key_alg, len)),
            }
        }
    }
}

/// A decoded header.
#[derive(Debug)]
struct Header {
    src: SocketAddr,
    dst: SocketAddr,
    tlvs: Vec<(u8, Vec<u8>)>,
}

fn u16_at(b: &[u8], i: usize) -> Result<u16, String> {
    match b.get(i..i + 2) {
        Some(&[hi, lo]) => Ok(u16::from_be_bytes([hi, lo])),
        _ => Err(format!("no u16 at {i} of {} bytes", b.len())),
    }
}

/// §2.2.5: type (1 byte), length (2 bytes, big-endian), value; they fill the space exactly.
fn parse_tlvs(mut b: &[u8]) -> Result<Vec<(u8, Vec<u8>)>, String> {
    let mut out = Vec::new();
    while !b.is_empty() {
        if b.len() < 3 {
            return Err(format!("truncated TLV header: {b:?}"));
        }
        let (kind, len) = (b[0], usize::from(u16_at(b, 1)?));
        let value = b
            .get(3..3 + len)
            .ok_or_else(|| format!("TLV 0x{kind:02x} of {len} bytes overruns its space"))?;
        out.push((kind, value.to_vec()));
        b = &b[3 + len..];
    }
    Ok(out)
}

/// §2.2: the whole of `bytes` must be one header.
fn parse(bytes: &[u8]) -> Result<Header, String> {
    if bytes.len() < 16 {
        return Err(format!(
            "{} bytes: shorter than the fixed part",
            bytes.len()
        ));
    }
    if bytes[..12] != *b"\x0D\x0A\x0D\x0A\x00\x0D\x0A\x51\x55\x49\x54\x0A" {
        return Err("bad signature".into());
    }
    if bytes[12] != 0x21 {
        return Err(format!("version/command 0x{:02x}, not 0x21", bytes[12]));
    }
    let len = usize::from(u16_at(bytes, 14)?);
    if bytes.len() != 16 + len {
        return Err(format!(
            "length field says {len}, but {} bytes follow",
            bytes.len() - 16
        ));
    }
    let body = &bytes[16..];
    let need = |n: usize| {
        if body.len() < n {
            Err(format!("{} bytes of addresses, need {n}", body.len()))
        } else {
            Ok(())
        }
    };
    let (src, dst, rest) = match bytes[13] {
        0x11 => {
            need(12)?;
            let ip = |o: usize| IpAddr::from([body[o], body[o + 1], body[o + 2], body[o + 3]]);
            (
                SocketAddr::new(ip(0), u16_at(body, 8)?),
                SocketAddr::new(ip(4), u16_at(body, 10)?),
                &body[12..],
            )
        }
        0x21 => {
            need(36)?;
            let ip = |o: usize| {
                let mut a = [0u8; 16];
                a.copy_from_slice(&body[o..o + 16]);
                IpAddr::from(a)
            };
            (
                SocketAddr::new(ip(0), u16_at(body, 32)?),
                SocketAddr::new(ip(16), u16_at(body, 34)?),
                &body[36..],
            )
        }
        other => return Err(format!("family/protocol 0x{other:02x}")),
    };
    Ok(Header {
        src,
        dst,
        tlvs: parse_tlvs(rest)?,
    })
}

/// The one TLV of `kind`; two of a kind is a malformed header for our purposes.
fn only(tlvs: &[(u8, Vec<u8>)], kind: u8) -> Option<&[u8]> {
    let mut found = tlvs.iter().filter(|(k, _)| *k == kind);
    let first = found.next().map(|(_, v)| v.as_slice());
    assert!(found.next().is_none(), "TLV 0x{kind:02x} twice");
    first
}

/// What the header must carry for a value: all of it, or nothing when it is too long.
fn sent(value: &[u8]) -> Option<&[u8]> {
    (value.len() <= proxy_v2::MAX_VALUE_LEN).then_some(value)
}

fn want(s: &str) -> Option<&[u8]> {
    sent(s.as_bytes())
}

/// How the encoder sends an address: IPv6 (v4-mapped) unless both ends are IPv4.
fn as_sent(a: SocketAddr, both_v4: bool) -> SocketAddr {
    match a {
        SocketAddr::V4(v4) if !both_v4 => {
            SocketAddr::new(IpAddr::V6(v4.ip().to_ipv6_mapped()), v4.port())
        }
        other => other,
    }
}

fuzz_target!(|input: Input| {
    let mut input = input;
    input.apply_stretches();
    let (src, dst) = (input.src.socket(), input.dst.socket());
    let info = ClientInfo {
        alpn: input.alpn.as_deref(),
        sni: input.sni.as_deref(),
        version: &input.version,
        cipher: &input.cipher,
        cert: input.cert.as_ref().map(|c| CertFacts {
            cn: c.cn.as_deref(),
            sig_alg: &c.sig_alg,
            key_alg: &c.key_alg,
            fingerprint: c.fingerprint,
        }),
        resumed: input.resumed,
        verified: input.verified,
        terminated: input.terminated,
    };
    let mut out = input.prefix.clone();
    proxy_v2::encode(src, dst, &info, &mut out);
    assert_eq!(
        out[..input.prefix.len()],
        input.prefix[..],
        "prefix changed"
    );
    let header = match parse(&out[input.prefix.len()..]) {
        Ok(h) => h,
        Err(e) => panic!("malformed header: {e}"),
    };

    let both_v4 = src.is_ipv4() && dst.is_ipv4();
    assert_eq!(header.src, as_sent(src, both_v4), "source address");
    assert_eq!(header.dst, as_sent(dst, both_v4), "destination address");
    let t = &header.tlvs;
    assert_eq!(
        only(t, proxy_v2::TYPE_ALPN),
        input.alpn.as_deref().and_then(sent),
        "ALPN"
    );
    assert_eq!(
        only(t, proxy_v2::TYPE_AUTHORITY),
        input.sni.as_deref().map(str::as_bytes).and_then(sent),
        "AUTHORITY"
    );
    let cert = input.cert.as_ref();
    assert_eq!(
        only(t, proxy_v2::TYPE_UNIQUE_ID),
        cert.filter(|_| input.terminated)
            .map(|c| &c.fingerprint[..]),
        "UNIQUE_ID"
    );
    let known = [
        proxy_v2::TYPE_ALPN,
        proxy_v2::TYPE_AUTHORITY,
        proxy_v2::TYPE_UNIQUE_ID,
        proxy_v2::TYPE_SSL,
    ];
    assert!(
        t.iter().all(|(k, _)| known.contains(k)),
        "unknown TLV: {t:?}"
    );

    // §2.2.6 PP2_TYPE_SSL: client (1 byte), verify (4 bytes), then sub-TLVs; none for a
    // connection passed through, whose TLS was not ours.
    if !input.terminated {
        assert_eq!(
            only(t, proxy_v2::TYPE_SSL),
            None,
            "SSL TLV on a passed-through connection"
        );
        return;
    }
    let ssl = only(t, proxy_v2::TYPE_SSL).expect("no SSL TLV");
    assert!(ssl.len() >= 5, "SSL TLV of {} bytes", ssl.len());
    let client = proxy_v2::CLIENT_SSL
        | match (cert.is_some(), input.resumed) {
            (false, _) => 0,
            (true, false) => proxy_v2::CLIENT_CERT_CONN,
            (true, true) => proxy_v2::CLIENT_CERT_SESS,
        };
    assert_eq!(ssl[0], client, "client flags");
    let verify = u32::from_be_bytes([ssl[1], ssl[2], ssl[3], ssl[4]]);
    assert_eq!(
        verify == 0,
        cert.is_some() && input.verified,
        "verify is 0 exactly when a certificate was verified"
    );
    let sub = match parse_tlvs(&ssl[5..]) {
        Ok(sub) => sub,
        Err(e) => panic!("SSL sub-TLVs: {e}"),
    };
    let text = |kind: u8| only(&sub, kind);
    let expected = [
        (proxy_v2::SUBTYPE_SSL_VERSION, want(&input.version)),
        (proxy_v2::SUBTYPE_SSL_CIPHER, want(&input.cipher)),
        (
            proxy_v2::SUBTYPE_SSL_CN,
            cert.and_then(|c| c.cn.as_deref()).and_then(want),
        ),
        (
            proxy_v2::SUBTYPE_SSL_SIG_ALG,
            cert.and_then(|c| want(&c.sig_alg)),
        ),
        (
            proxy_v2::SUBTYPE_SSL_KEY_ALG,
            cert.and_then(|c| want(&c.key_alg)),
        ),
    ];
    for (kind, value) in expected {
        assert_eq!(text(kind), value, "SSL sub-TLV 0x{kind:02x}");
    }
    let present = expected.iter().filter(|(_, v)| v.is_some()).count();
    assert_eq!(sub.len(), present, "unexpected sub-TLV: {sub:?}");
});
