//! Shared harness for the integration tests.
//!
//! Every test file drives the real `ringtls` binary, so the harness owns what they all need:
//! - `pki`: an rcgen PKI generated per run (good and broken CAs, client and server leaves, CRLs,
//!   keys in PKCS#8, SEC1 and PKCS#1) written into a temp dir; no key is ever committed.
//! - `process`: spawning `ringtls serve` and waiting for its `{"listening":[...]}` readiness line,
//!   and running the other subcommands to completion, always with bounded timeouts.
//! - `upstream`: std-thread plaintext upstreams on 127.0.0.1:0 that count accepted connections.
//! - `client`: a rustls client that reports the alert a rejected handshake ended with, and a
//!   duplex split of a TLS stream for tests that move bytes both ways at once.
//! - `tools`: the external tools and host conditions tests need (curl, openssl, haproxy,
//!   gnutls-cli, tlslite, strace, ...), probed by build.rs and checked again by [`need`].
//!
//! ## A test that needs a tool
//! A test must not pass without testing, and cargo hides a passing test's stderr, so a missing
//! tool is never `eprintln!("SKIPPED: ...")` and `return`. Instead (one attribute, one call):
//!
//! ```text
//! #[test]
//! #[cfg_attr(not(has = "gnutls-cli"), ignore = "SKIPPED: gnutls-cli not found (apt-get install gnutls-bin)")]
//! fn gnutls_cli_with_client_certificate_sees_echo() {
//!     common::need("gnutls-cli");
//!     ...
//! }
//! ```
//!
//! Without the tool, cargo lists the test as `ignored, SKIPPED: ...` and counts it in its
//! `test result:` line; with `RINGTLS_REQUIRE_TOOLS=1` (.ci/run) it runs, and `need` fails it
//! with what is missing and how to get it. The names are [`tools::TOOLS`]'s (`curl`, `openssl`,
//! `haproxy`, `gnutls-cli`, `systemd-analyze`, `promtool`, `python3`, `qemu-system-x86_64`,
//! `setpriv`, `kubernetes-validate`, `hadolint`, `strace`, `tlslite`, `libseccomp`, `ktls-vm`, `two-localhost-addresses`); a new one is a row
//! there (cargo's check-cfg then accepts its `has` value) and a package in .ci/run. A test of
//! which only a part needs a tool is split, so the rest still runs everywhere.
//!
//! Each test binary uses a different subset, hence the `dead_code`/`unused_imports` allowance.
// Each test crate uses some of the harness; `pub` here is the harness's interface to them.
#![allow(unreachable_pub)]
#![allow(dead_code, unused_imports)]

pub mod client;
pub mod pki;
pub mod process;
pub mod proxy_header;
pub mod tools;
pub mod upstream;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;

pub use client::{
    ClientOpts, Failure, TlsStream, Version, connect, expect_alert, handshake, probe,
};
pub use pki::{Ca, CaFlaw, ClientFlaw, Dir, KeyFormat, Leaf};
pub use process::{Driver, Output, Serve, Server, StderrMode, run};
pub use tools::need;
pub use upstream::Upstream;

/// Bytes the probe writes and expects back through an echo upstream.
pub const PROBE: &[u8] = b"ringtls-probe\n";

/// The common setup of a test that needs a working mutual-TLS server: a root CA, a server leaf
/// for it, and the files `--crt`, `--key` and `--mutual-tls-cas` point at.
pub struct Setup {
    pub dir: Dir,
    pub ca: Ca,
    pub server: Leaf,
    pub crt: PathBuf,
    pub key: PathBuf,
    pub ca_file: PathBuf,
}

impl Setup {
    pub fn new() -> Setup {
        let dir = Dir::new();
        let ca = Ca::root("Test Root");
        let server = ca.server();
        let crt = dir.write("server.pem", server.chain_pem());
        let key = dir.write("server.key", server.key_pem(KeyFormat::Pkcs8));
        let ca_file = dir.write("ca.pem", ca.pem());
        Setup {
            dir,
            ca,
            server,
            crt,
            key,
            ca_file,
        }
    }

    /// `ringtls serve` forwarding to `upstream` with the setup's CA as the trust store.
    pub fn serve(&self, upstream: SocketAddr) -> Serve {
        Serve::new(upstream, &self.crt, &self.key).ca(&self.ca_file)
    }

    /// Runs `ringtls check` on this setup's certificate, key and CA bundle, then `extra`.
    pub fn check(&self, extra: &[&str]) -> Output {
        let mut args: Vec<&std::ffi::OsStr> = vec![
            "check".as_ref(),
            "--crt".as_ref(),
            self.crt.as_os_str(),
            "--key".as_ref(),
            self.key.as_os_str(),
            "--mutual-tls-cas".as_ref(),
            self.ca_file.as_os_str(),
        ];
        args.extend(extra.iter().map(std::ffi::OsStr::new));
        run(args)
    }

    /// Client options trusting this setup's CA and presenting `leaf`.
    pub fn client(&self, leaf: &Leaf) -> ClientOpts {
        ClientOpts::new(&self.ca).identity(leaf)
    }

    /// Client options trusting this setup's CA and presenting no certificate.
    pub fn anonymous(&self) -> ClientOpts {
        ClientOpts::new(&self.ca)
    }
}

impl Default for Setup {
    fn default() -> Self {
        Setup::new()
    }
}

/// Deterministic pseudo-random bytes (xorshift64*), so both ends of a transfer can compute the
/// expected checksum without shipping the data around.
pub struct Pattern {
    state: u64,
}

impl Pattern {
    pub fn new(seed: u64) -> Pattern {
        Pattern {
            state: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
        }
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            self.state ^= self.state >> 12;
            self.state ^= self.state << 25;
            self.state ^= self.state >> 27;
            let v = self.state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }

    /// Writes `len` bytes of pattern `seed` to `w` in 64 KiB chunks.
    pub fn write_to(seed: u64, len: usize, w: &mut impl Write) -> std::io::Result<()> {
        let mut pattern = Pattern::new(seed);
        let mut buf = vec![0u8; 64 * 1024];
        let mut left = len;
        while left > 0 {
            let n = left.min(buf.len());
            pattern.fill(&mut buf[..n]);
            w.write_all(&buf[..n])?;
            left -= n;
        }
        w.flush()
    }

    /// SHA-256 of the first `len` bytes of pattern `seed`.
    pub fn digest(seed: u64, len: usize) -> [u8; 32] {
        let mut hasher = Digest::default();
        Pattern::write_to(seed, len, &mut hasher).expect("hashing cannot fail");
        hasher.finish().1
    }
}

/// A `Write` sink that counts and hashes what goes through it.
#[derive(Default)]
pub struct Digest {
    len: usize,
    hasher: sha2::Sha256,
}

impl Digest {
    /// Bytes hashed so far.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn finish(self) -> (usize, [u8; 32]) {
        use sha2::Digest as _;
        (self.len, self.hasher.finalize().into())
    }

    /// Reads `r` to its end (`Ok(0)`), hashing everything; an error is returned as is, so a
    /// truncated stream (EOF without close_notify) fails the caller.
    pub fn read_all(r: &mut impl Read) -> std::io::Result<(usize, [u8; 32])> {
        let mut digest = Digest::default();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = r.read(&mut buf)?;
            if n == 0 {
                return Ok(digest.finish());
            }
            digest.write_all(&buf[..n])?;
        }
    }
}

impl Write for Digest {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        use sha2::Digest as _;
        self.hasher.update(buf);
        self.len += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Lowercase hex, for fingerprints and readable digest mismatches.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes).into()
}

/// A plain HTTP/1.1 GET (for the metrics listener); returns the status line and the body.
pub fn http_get(addr: SocketAddr, path: &str) -> (String, String) {
    let mut sock = std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(5))
        .expect("connect");
    sock.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .expect("timeout");
    write!(sock, "GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").expect("request");
    let mut response = String::new();
    sock.read_to_string(&mut response).expect("response");
    let (head, body) = response.split_once("\r\n\r\n").expect("HTTP response");
    (
        head.lines().next().unwrap_or("").to_owned(),
        body.to_owned(),
    )
}

/// Scrapes `/metrics` until the line `series value` appears (bounded by 10 s); returns the last
/// body. For gauges that settle just after the event a test waits on: a connection's task ends
/// (and leaves `ringtls_connections_active`) right after it logs its last line.
pub fn wait_metric(addr: SocketAddr, series: &str, value: u64) -> String {
    let want = format!("{series} {value}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (_, body) = http_get(addr, "/metrics");
        if body.lines().any(|l| l == want) {
            return body;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never saw {want:?}:\n{body}"
        );
        std::thread::sleep(std::time::Duration::from_millis(10)); // readiness-ok: bounded poll of a gauge with no event of its own
    }
}
