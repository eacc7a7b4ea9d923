//! `ringtls healthcheck`: asks a running ringtls's metrics listener for `/healthz` (or
//! `--path /readyz`) and exits 0 on HTTP 200, 1 otherwise. For container health checks in an
//! image that has no shell and no curl.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use crate::error::Error;

/// One request, bounded by this on connect, write and read.
const TIMEOUT: Duration = Duration::from_secs(3);

/// `Ok(true)` when the endpoint answered 200; the status line otherwise goes to stderr.
pub fn run_healthcheck(metrics: &str, path: &str) -> Result<bool, Error> {
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
    let status = fetch_status(addr, path)
        .map_err(|e| Error::Runtime(format!("--metrics {addr}: {path}: {e}")))?;
    if status.split_whitespace().nth(1) == Some("200") {
        Ok(true)
    } else {
        eprintln!("ringtls healthcheck: {addr}{path}: {status}");
        Ok(false)
    }
}

fn fetch_status(addr: SocketAddr, path: &str) -> std::io::Result<String> {
    let mut sock = TcpStream::connect_timeout(&addr, TIMEOUT)?;
    sock.set_read_timeout(Some(TIMEOUT))?;
    sock.set_write_timeout(Some(TIMEOUT))?;
    write!(
        sock,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut head = Vec::with_capacity(256);
    let mut buf = [0u8; 256];
    // The status line is all we need.
    while !head.contains(&b'\n') && head.len() < 4096 {
        let n = sock.read(&mut buf)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    Ok(String::from_utf8_lossy(line).trim_end().to_owned())
}
