//! `ringtls healthcheck`: asks a running ringtls's metrics listener for `/healthz` (or
//! `--path /readyz`) and exits 0 on HTTP 200, 1 otherwise. For container health checks in an
//! image that has no shell and no curl.
//!
//! The peer may be anything at all (most often, by mistake, the TLS port), so its answer is
//! never printed as it came: a TLS record is named as such, and anything else is shown escaped
//! and cut short.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use crate::error::Error;

/// One request, bounded by this on connect, write and read.
const TIMEOUT: Duration = Duration::from_secs(3);

/// How much of a peer's answer an error shows, escaped.
const SHOWN: usize = 80;

/// `Ok(())` when the endpoint answered 200; otherwise an error naming the address, the path and
/// what came back.
pub fn run_healthcheck(metrics: &str, path: &str) -> Result<(), Error> {
    if !path.starts_with('/') || path.contains(char::is_whitespace) {
        return Err(Error::Usage(format!(
            "--path {path:?}: expected an absolute path such as /healthz"
        )));
    }
    let addr: SocketAddr = metrics
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| Error::Usage(format!("--metrics {metrics}: expected HOST:PORT")))?;
    let failed = |what: String| Error::Runtime(format!("--metrics {addr}{path}: {what}"));
    let head = fetch_head(addr, path).map_err(|e| failed(e.to_string()))?;
    match Answer::classify(&head) {
        Answer::Http(status) if status.split_whitespace().nth(1) == Some("200") => Ok(()),
        answer => Err(failed(answer.to_string())),
    }
}

/// Sends the request and reads until the end of the status line (or 4 KiB, or the close).
fn fetch_head(addr: SocketAddr, path: &str) -> std::io::Result<Vec<u8>> {
    let mut sock = TcpStream::connect_timeout(&addr, TIMEOUT)?;
    sock.set_read_timeout(Some(TIMEOUT))?;
    sock.set_write_timeout(Some(TIMEOUT))?;
    // One write: `write!` would send each piece of the format on its own, and a peer that
    // answers the first piece and closes (a TLS server does) would fail the next with EPIPE.
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    // Even if the write fails, the peer may have answered before closing: that answer says more
    // than the write error, which is reported only when nothing came.
    let written = match sock.write_all(request.as_bytes()) {
        Err(e) if !matches!(e.kind(), ErrorKind::BrokenPipe | ErrorKind::ConnectionReset) => {
            return Err(e);
        }
        written => written,
    };
    let mut head = Vec::with_capacity(256);
    let mut buf = [0u8; 256];
    while !head.contains(&b'\n') && head.len() < 4096 {
        match sock.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
            // A TLS server may reset the connection right after its alert; what it sent counts.
            Err(e) if !head.is_empty() && e.kind() == ErrorKind::ConnectionReset => {
                break;
            }
            Err(e) => return Err(written.err().unwrap_or(e)),
        }
    }
    match written {
        Err(e) if head.is_empty() => Err(e),
        _ => Ok(head),
    }
}

/// What the peer answered, as far as a health check cares.
#[derive(Debug, PartialEq, Eq)]
enum Answer {
    /// An HTTP status line, escaped.
    Http(String),
    /// A TLS record: the peer is a TLS listener, such as `serve --listen`.
    Tls,
    /// Nothing: the peer closed the connection without a byte.
    Closed,
    /// Something else, escaped and cut short.
    Other(String),
}

impl Answer {
    fn classify(head: &[u8]) -> Answer {
        // RFC 8446 §5.1: a record starts with its content type (21 alert, 22 handshake) and the
        // legacy version 3.x; a TLS server answers plaintext HTTP with an alert, or a
        // handshake-layer record from a server that reads it as a (broken) hello.
        if let [21 | 22, 3, ..] = head {
            return Answer::Tls;
        }
        if head.is_empty() {
            return Answer::Closed;
        }
        let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.starts_with(b"HTTP/") {
            Answer::Http(escape(line))
        } else {
            Answer::Other(escape(head))
        }
    }
}

impl std::fmt::Display for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Answer::Http(status) => f.write_str(status),
            Answer::Tls => f.write_str("that is a TLS listener, not the --metrics one"),
            Answer::Closed => f.write_str("the connection was closed without an answer"),
            Answer::Other(text) => write!(f, "not an HTTP answer: \"{text}\""),
        }
    }
}

/// At most `SHOWN` bytes, printable ASCII as it is and everything else as `\n`, `\xNN`, so
/// that a peer can put neither control sequences nor invalid UTF-8 on the operator's terminal.
fn escape(bytes: &[u8]) -> String {
    let mut out = bytes[..bytes.len().min(SHOWN)].escape_ascii().to_string();
    if bytes.len() > SHOWN {
        out.push_str("...");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_a_tls_alert_as_a_tls_listener() {
        assert_eq!(
            Answer::classify(b"\x15\x03\x03\x00\x02\x02\x32"),
            Answer::Tls
        );
        assert_eq!(Answer::classify(b"\x16\x03\x01\x00\x10"), Answer::Tls);
    }

    #[test]
    fn keeps_an_http_status_line() {
        assert_eq!(
            Answer::classify(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n"),
            Answer::Http("HTTP/1.1 503 Service Unavailable".into())
        );
    }

    #[test]
    fn escapes_what_is_not_text() {
        let answer = Answer::classify(b"\x1b[2J\xff\xfe hi\n");
        assert_eq!(answer, Answer::Other("\\x1b[2J\\xff\\xfe hi\\n".into()));
        let long = Answer::classify(&[b'a'; 200]).to_string();
        assert!(long.ends_with("...\""), "{long}");
        assert!(long.len() < 120, "{long}");
    }

    #[test]
    fn escapes_a_hostile_status_line() {
        assert_eq!(
            Answer::classify(b"HTTP/1.1 200 \x1b]0;owned\x07\r\n"),
            Answer::Http("HTTP/1.1 200 \\x1b]0;owned\\x07".into())
        );
    }
}
