//! Choosing a connection's endpoint from its ClientHello, before any TLS state is built.
//!
//! A listener whose endpoints answer no server name (the flags' one endpoint, or a lone
//! default) reads nothing here: the handshake starts on the socket as before. Otherwise the
//! ClientHello is read whole, within the listener's shortest handshake timeout and
//! `client_hello::MAX_HELLO` bytes, its server name looked up (`sni_route`, constant time at
//! any number of names), and what was read is handed on: to rustls for a terminating
//! endpoint, to the upstream for a passthrough one. A server name no endpoint answers, with no
//! default endpoint, gets alert unrecognized_name (112; RFC 6066 §3 lets a server send it as
//! fatal) and nothing more; a ClientHello that cannot be parsed goes to the default endpoint
//! as it is (rustls then refuses it with the alert it chooses, or the passthrough upstream
//! does), or without one gets decode_error.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::TcpStream;

use super::alert;
use super::client::Refusal;
use super::settings::{Endpoint, Serve};
use super::timer;
use crate::outcome::{Outcome, Reject, Sent};
use crate::tls::client_hello::{self, Hello};
use crate::tls::sni_route::Routes;

/// RFC 6066 §3: unrecognized_name.
pub(crate) const UNRECOGNIZED_NAME: u8 = 112;

/// What the first read of a ClientHello reserves; a post-quantum key share (X25519MLKEM768)
/// makes a ClientHello of about 1.8 KiB, and a larger one grows the buffer.
const FIRST_READ: usize = 4 * 1024;

/// The endpoint chosen, and what was read of the client to choose it.
pub(crate) struct Routed {
    pub endpoint: Arc<Endpoint>,
    /// The ClientHello (and anything after it in the same reads): where the handshake, or the
    /// passthrough, starts. Empty when nothing had to be read.
    pub read: Vec<u8>,
    /// The ClientHello's server name, when an endpoint was chosen by it.
    pub sni: Option<Box<str>>,
}

/// The most bytes read while looking for the end of a ClientHello: twice the largest one, room
/// for the record headers of a message cut into small records.
const READ_LIMIT: usize = 2 * client_hello::MAX_HELLO;

/// Picks the endpoint of `routes` for the client on `stream`, of which `first` was read
/// already (what followed an inbound PROXY header; usually nothing).
pub(crate) async fn choose(
    mut stream: TcpStream,
    routes: &Routes<Arc<Endpoint>>,
    timeout: Duration,
    first: Vec<u8>,
) -> Result<(TcpStream, Routed), Box<Refusal>> {
    if !routes.has_names() {
        if let Some(endpoint) = routes.route(None) {
            let routed = Routed {
                endpoint: Arc::clone(endpoint),
                read: first,
                sni: None,
            };
            return Ok((stream, routed));
        }
    }
    let read = match timer::timeout(timeout, read_hello(&mut stream, first)).await {
        Ok(Ok(read)) => read,
        Ok(Err(e)) => {
            let detail = e.to_string();
            return Err(refused(Reject::ClientClosed, Sent::None, detail, None));
        }
        Err(_) => {
            let detail = "no complete ClientHello in time".to_owned();
            return Err(refused(Reject::HandshakeTimeout, Sent::None, detail, None));
        }
    };
    let hello = client_hello::parse(&read);
    let sni = match &hello {
        Hello::Complete { sni, .. } => sni.as_deref(),
        // Unparsable: the default endpoint (if any) gets the bytes as they are.
        Hello::Incomplete { .. } | Hello::Malformed(_) => None,
    };
    if let Some(endpoint) = routes.route(sni) {
        // Only a passed-through connection needs the name again (its event, its PROXY
        // header); rustls reads it for a terminated one, so nothing is copied for those.
        let sni = match endpoint.serve {
            Serve::Passthrough => sni.map(Box::from),
            Serve::Terminate { .. } => None,
        };
        let endpoint = Arc::clone(endpoint);
        return Ok((
            stream,
            Routed {
                endpoint,
                read,
                sni,
            },
        ));
    }
    // Turned away: the words are written only now, never for a connection that is served.
    let (description, detail) = match hello {
        Hello::Complete {
            sni: Some(name), ..
        } => (
            UNRECOGNIZED_NAME,
            format!("no endpoint for server name {name:?}"),
        ),
        Hello::Complete { sni: None, .. } => (
            UNRECOGNIZED_NAME,
            "no server name, and no default endpoint".to_owned(),
        ),
        Hello::Incomplete { .. } if read.len() >= READ_LIMIT => (
            alert::DECODE_ERROR,
            format!("no end of the ClientHello in {READ_LIMIT} bytes"),
        ),
        Hello::Incomplete { .. } => (
            alert::DECODE_ERROR,
            "the client closed in the middle of its ClientHello".to_owned(),
        ),
        Hello::Malformed(why) => (
            alert::DECODE_ERROR,
            format!("unroutable ClientHello: {why}"),
        ),
    };
    let reason = match description {
        UNRECOGNIZED_NAME => Reject::UnknownServerName,
        _ => Reject::ProtocolError,
    };
    let alert = send_alert(&mut stream, description).await;
    Err(refused(reason, alert, detail, Some(stream)))
}

/// Reads until the buffer (starting with `first`) holds a whole ClientHello, or something
/// that cannot become one, or the client closes (then what came is returned, for `parse` to
/// call incomplete).
async fn read_hello(stream: &mut TcpStream, first: Vec<u8>) -> io::Result<Vec<u8>> {
    let mut buf = first;
    buf.reserve(FIRST_READ.saturating_sub(buf.len()));
    loop {
        match client_hello::parse(&buf) {
            Hello::Incomplete { need } if buf.len() < READ_LIMIT => {
                buf.reserve(need.max(FIRST_READ - buf.len().min(FIRST_READ)));
            }
            _ => return Ok(buf),
        }
        let have = buf.len();
        let cap = buf.capacity();
        let (res, slice) = stream.read(buf.slice_mut(have..cap)).await;
        buf = slice.into_inner();
        if res? == 0 {
            return Ok(buf);
        }
    }
}

/// Sends a fatal alert in plaintext (nothing is encrypted yet), best effort.
async fn send_alert(stream: &mut TcpStream, description: u8) -> Sent {
    let record = alert::plaintext_record(description).to_vec();
    let write = stream.write_all(record);
    match timer::timeout(Duration::from_secs(1), write).await {
        Ok((Ok(_), _)) => Sent::Alert(description),
        _ => Sent::None,
    }
}

/// A client turned away before its handshake; `linger` when an alert went out.
fn refused(reason: Reject, alert: Sent, detail: String, linger: Option<TcpStream>) -> Box<Refusal> {
    let outcome = Outcome::Refused {
        reason,
        alert,
        detail,
        presented: None,
    };
    Box::new(Refusal {
        outcome,
        linger,
        endpoint: None,
    })
}
