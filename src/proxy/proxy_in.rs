//! The PROXY protocol header a load balancer puts before the client's bytes (HAProxy's
//! `doc/proxy-protocol.txt`, versions 1 and 2), when `--accept-proxy` takes it: where it ends,
//! and the client's and the original destination's addresses. Pure and incremental: `parse`
//! says `Incomplete` until the bytes it was given hold a whole header, so a header cut into any
//! number of TCP segments reads the same as one.
//!
//! The framing is ours, the fields are the `ppp` crate's:
//! - version 2: the 12-byte signature, then version/command, family, and a big-endian length of
//!   what follows; the header is 16 + that length bytes;
//! - version 1: `PROXY ` ... CRLF, at most 107 bytes (the specification's limit): a line that
//!   has not ended within 107 bytes is refused, not waited for.
//!
//! A LOCAL command (v2) or `UNKNOWN` protocol (v1), which a balancer's own health checks send,
//! carries no addresses: the connection's own ones stand. Unix-socket and datagram addresses
//! are refused: nothing here serves them.

use std::net::{IpAddr, SocketAddr};

use ppp::v2;

/// The version 2 signature (§2.2).
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// The start of a version 1 header (§2.1).
const V1_PREFIX: &[u8] = b"PROXY ";
/// The longest version 1 header, CRLF included (§2.1).
pub const V1_MAX: usize = 107;
/// The longest version 2 header: 16 bytes and a length that is a u16.
pub const V2_MAX: usize = 16 + u16::MAX as usize;

/// What the bytes read so far hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// Not a whole header yet: read more.
    Incomplete,
    /// A header of `len` bytes (what follows it is the client's).
    Header {
        len: usize,
        /// `None` for LOCAL / UNKNOWN: the connection's own addresses stand.
        addresses: Option<Addresses>,
    },
    /// Not a header we take: why.
    Invalid(String),
}

/// The client's address and the one it connected to, as the balancer saw them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Addresses {
    pub source: SocketAddr,
    pub destination: SocketAddr,
}

/// Looks for a whole header at the start of `bytes`.
pub fn parse(bytes: &[u8]) -> Parsed {
    if bytes.is_empty() {
        return Parsed::Incomplete;
    }
    if starts_like(bytes, V2_SIGNATURE) {
        return parse_v2(bytes);
    }
    if starts_like(bytes, V1_PREFIX) {
        return parse_v1(bytes);
    }
    Parsed::Invalid(
        "not a PROXY protocol header (neither the version 2 signature nor \"PROXY \")".into(),
    )
}

/// Whether `bytes` and `prefix` agree over the shorter of the two.
fn starts_like(bytes: &[u8], prefix: &[u8]) -> bool {
    let n = bytes.len().min(prefix.len());
    bytes[..n] == prefix[..n]
}

fn parse_v2(bytes: &[u8]) -> Parsed {
    if bytes.len() < 16 {
        return Parsed::Incomplete;
    }
    let len = 16 + usize::from(u16::from_be_bytes([bytes[14], bytes[15]]));
    if bytes.len() < len {
        return Parsed::Incomplete;
    }
    let header = match v2::Header::try_from(&bytes[..len]) {
        Ok(header) => header,
        Err(e) => return Parsed::Invalid(format!("PROXY v2: {e}")),
    };
    if header.command == v2::Command::Local {
        return Parsed::Header {
            len,
            addresses: None,
        };
    }
    if header.protocol != v2::Protocol::Stream && header.protocol != v2::Protocol::Unspecified {
        return Parsed::Invalid("PROXY v2: not a stream (TCP) connection".into());
    }
    let addresses = match header.addresses {
        v2::Addresses::IPv4(a) => Addresses {
            source: SocketAddr::new(IpAddr::V4(a.source_address), a.source_port),
            destination: SocketAddr::new(IpAddr::V4(a.destination_address), a.destination_port),
        },
        v2::Addresses::IPv6(a) => Addresses {
            source: SocketAddr::new(IpAddr::V6(a.source_address), a.source_port),
            destination: SocketAddr::new(IpAddr::V6(a.destination_address), a.destination_port),
        },
        v2::Addresses::Unspecified => {
            return Parsed::Header {
                len,
                addresses: None,
            };
        }
        v2::Addresses::Unix(_) => {
            return Parsed::Invalid("PROXY v2: Unix-socket addresses are not served".into());
        }
    };
    Parsed::Header {
        len,
        addresses: Some(addresses),
    }
}

fn parse_v1(bytes: &[u8]) -> Parsed {
    let window = &bytes[..bytes.len().min(V1_MAX)];
    let Some(end) = window.windows(2).position(|w| w == b"\r\n").map(|i| i + 2) else {
        if bytes.len() >= V1_MAX {
            return Parsed::Invalid(format!("PROXY v1: no CRLF within {V1_MAX} bytes"));
        }
        return Parsed::Incomplete;
    };
    let header = match ppp::v1::Header::try_from(&bytes[..end]) {
        Ok(header) => header,
        Err(e) => return Parsed::Invalid(format!("PROXY v1: {e}")),
    };
    let addresses = match header.addresses {
        ppp::v1::Addresses::Tcp4(a) => Addresses {
            source: SocketAddr::new(IpAddr::V4(a.source_address), a.source_port),
            destination: SocketAddr::new(IpAddr::V4(a.destination_address), a.destination_port),
        },
        ppp::v1::Addresses::Tcp6(a) => Addresses {
            source: SocketAddr::new(IpAddr::V6(a.source_address), a.source_port),
            destination: SocketAddr::new(IpAddr::V6(a.destination_address), a.destination_port),
        },
        ppp::v1::Addresses::Unknown => {
            return Parsed::Header {
                len: end,
                addresses: None,
            };
        }
    };
    Parsed::Header {
        len: end,
        addresses: Some(addresses),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2(command: u8, family: u8, body: &[u8]) -> Vec<u8> {
        let mut out = V2_SIGNATURE.to_vec();
        out.push(0x20 | command);
        out.push(family);
        out.extend_from_slice(&(body.len() as u16).to_be_bytes());
        out.extend_from_slice(body);
        out
    }

    /// 192.0.2.7:5555 -> 198.51.100.1:443, TCP over IPv4.
    fn v2_tcp4() -> Vec<u8> {
        let mut body = vec![192, 0, 2, 7, 198, 51, 100, 1];
        body.extend_from_slice(&5555u16.to_be_bytes());
        body.extend_from_slice(&443u16.to_be_bytes());
        v2(1, 0x11, &body)
    }

    fn addresses(src: &str, dst: &str) -> Option<Addresses> {
        Some(Addresses {
            source: src.parse().expect("addr"),
            destination: dst.parse().expect("addr"),
        })
    }

    #[test]
    fn reads_both_versions_whatever_the_segments() {
        let hello = [0x16, 0x03, 0x01, 0x00, 0x05];
        let cases: [(Vec<u8>, Option<Addresses>); 3] = [
            (v2_tcp4(), addresses("192.0.2.7:5555", "198.51.100.1:443")),
            (
                b"PROXY TCP4 192.0.2.7 198.51.100.1 5555 443\r\n".to_vec(),
                addresses("192.0.2.7:5555", "198.51.100.1:443"),
            ),
            (
                b"PROXY TCP6 2001:db8::7 2001:db8::1 5555 443\r\n".to_vec(),
                addresses("[2001:db8::7]:5555", "[2001:db8::1]:443"),
            ),
        ];
        for (header, want) in cases {
            let mut bytes = header.clone();
            bytes.extend_from_slice(&hello);
            for cut in 0..header.len() {
                assert_eq!(parse(&bytes[..cut]), Parsed::Incomplete, "cut at {cut}");
            }
            for end in header.len()..=bytes.len() {
                assert_eq!(
                    parse(&bytes[..end]),
                    Parsed::Header {
                        len: header.len(),
                        addresses: want
                    }
                );
            }
        }
    }

    #[test]
    fn health_checks_carry_no_addresses() {
        assert_eq!(
            parse(&v2(0, 0x00, &[])),
            Parsed::Header {
                len: 16,
                addresses: None
            }
        );
        assert_eq!(
            parse(b"PROXY UNKNOWN\r\n"),
            Parsed::Header {
                len: 15,
                addresses: None
            }
        );
    }

    #[test]
    fn refuses_what_a_hostile_sender_makes() {
        let invalid = |bytes: &[u8]| matches!(parse(bytes), Parsed::Invalid(_));
        // A TLS ClientHello where the header should be.
        assert!(invalid(&[0x16, 0x03, 0x01, 0x02, 0x00]));
        // A bad signature, one byte off.
        let mut bad = v2_tcp4();
        bad[5] ^= 1;
        assert!(invalid(&bad));
        // Version 1 with no CRLF within 107 bytes, or a lone LF.
        let mut long = b"PROXY TCP4 ".to_vec();
        long.resize(V1_MAX, b'1');
        assert!(invalid(&long));
        assert!(invalid(b"PROXY TCP4 192.0.2.7 198.51.100.1 5555 443\n\r\n"));
        // Addresses that are not addresses, ports out of range.
        assert!(invalid(b"PROXY TCP4 192.0.2.777 198.51.100.1 5555 443\r\n"));
        assert!(invalid(b"PROXY TCP4 192.0.2.7 198.51.100.1 70000 443\r\n"));
        // A version 2 length too short for its family's addresses.
        assert!(invalid(&v2(1, 0x21, &[0; 12])));
        // A version nibble other than 2, a command other than LOCAL and PROXY.
        let mut v3 = v2_tcp4();
        v3[12] = 0x31;
        assert!(invalid(&v3));
        let mut command = v2_tcp4();
        command[12] = 0x2f;
        assert!(invalid(&command));
    }

    #[test]
    fn a_length_past_what_came_waits_and_never_overreads() {
        // 65,535 bytes announced, 20 sent: more is needed (the caller's limit and timeout end
        // it), and nothing past the bytes given is looked at.
        let mut header = V2_SIGNATURE.to_vec();
        header.extend_from_slice(&[0x21, 0x11, 0xff, 0xff, 1, 2, 3, 4]);
        assert_eq!(parse(&header), Parsed::Incomplete);
    }
}
