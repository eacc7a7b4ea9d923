//! `--accept-proxy`: the PROXY protocol header a load balancer sends before the client's bytes,
//! read first thing on every connection, and taken only from `--accept-proxy-from` sources.
//!
//! - From any other address the connection is closed at once, nothing read
//!   (`reason=proxy_untrusted`): a client must not be able to claim any address it likes.
//! - From a trusted source, a header that is malformed, cut short by a close, longer than the
//!   protocol allows, or not whole within the handshake timeout closes the connection
//!   (`reason=proxy_header_invalid`) before any TLS: nothing reaches the upstream.
//! - A good header's source address is the client's from then on: in the events, in the
//!   metrics' per-connection fields and in the PROXY v2 header sent upstream (whose destination
//!   is the header's too). A LOCAL / UNKNOWN header (the balancer's health check) keeps the
//!   connection's own addresses.
//!
//! What followed the header in the same reads is the start of the client's ClientHello, and is
//! handed on to routing and the handshake.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use ipnet::IpNet;
use monoio::buf::IoBufMut;
use monoio::io::AsyncReadRent;
use monoio::net::TcpStream;

use super::client::Refusal;
use super::proxy_in::{self, Parsed};
use super::timer;
use crate::outcome::{Outcome, Reject, Sent};

/// `--accept-proxy` with its `--accept-proxy-from` networks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcceptProxy {
    pub from: Vec<IpNet>,
}

/// What the header said.
pub(super) struct Taken {
    /// The client, as the balancer saw it.
    pub peer: SocketAddr,
    /// The address the client connected to, when the header says.
    pub local: Option<SocketAddr>,
    /// The bytes after the header.
    pub rest: Vec<u8>,
}

/// The first read's reservation: a v1 header and a ClientHello's start, usually all of it.
const FIRST_READ: usize = 4 * 1024;

impl AcceptProxy {
    /// Reads the header of the connection from `peer`, within `timeout`.
    pub(super) async fn take(
        &self,
        stream: &mut TcpStream,
        peer: SocketAddr,
        timeout: Duration,
    ) -> Result<Taken, Box<Refusal>> {
        if !self.from.iter().any(|net| net.contains(&peer.ip())) {
            let detail = format!("{} is not an --accept-proxy-from source", peer.ip());
            return Err(refused(Reject::ProxyUntrusted, detail));
        }
        let read = timer::timeout(timeout, read_header(stream)).await;
        let (parsed, mut bytes) = match read {
            Ok(Ok(read)) => read,
            Ok(Err(e)) => {
                return Err(refused(Reject::ProxyHeader, format!("PROXY header: {e}")));
            }
            Err(_) => {
                let detail = "no complete PROXY header in time".to_owned();
                return Err(refused(Reject::ProxyHeader, detail));
            }
        };
        match parsed {
            Parsed::Header { len, addresses } => {
                let rest = bytes.split_off(len);
                Ok(Taken {
                    peer: addresses.map_or(peer, |a| a.source),
                    local: addresses.map(|a| a.destination),
                    rest,
                })
            }
            Parsed::Invalid(why) => Err(refused(Reject::ProxyHeader, why)),
            Parsed::Incomplete => Err(refused(
                Reject::ProxyHeader,
                "the sender closed in the middle of the PROXY header".into(),
            )),
        }
    }
}

/// Reads until the bytes hold a whole header or something that cannot become one, or the
/// sender closes (then `Incomplete`). Never more than the longest header allows.
async fn read_header(stream: &mut TcpStream) -> io::Result<(Parsed, Vec<u8>)> {
    let mut buf = Vec::with_capacity(FIRST_READ);
    loop {
        let parsed = proxy_in::parse(&buf);
        if parsed != Parsed::Incomplete {
            return Ok((parsed, buf));
        }
        if buf.len() == buf.capacity() {
            // Only a v2 header grows past the first read, to at most its 16 + 65,535 bytes.
            buf.reserve((proxy_in::V2_MAX + 1 - buf.len()).min(FIRST_READ));
        }
        let have = buf.len();
        let cap = buf.capacity().min(proxy_in::V2_MAX + 1);
        let (res, slice) = stream.read(buf.slice_mut(have..cap)).await;
        buf = slice.into_inner();
        if res? == 0 {
            return Ok((Parsed::Incomplete, buf));
        }
    }
}

fn refused(reason: Reject, detail: String) -> Box<Refusal> {
    Box::new(Refusal::ended(Outcome::Refused {
        reason,
        alert: Sent::None,
        detail,
        presented: None,
    }))
}
