//! The Rust TLS client the tests talk to the terminator with (rustls over std `TcpStream`).
//!
//! A rejection shows up differently per version (RFC 8446 §4.4.2.4 vs RFC 5246 §7.4.6): in
//! TLS 1.2 the server's alert ends the handshake, in TLS 1.3 the client's handshake completes
//! first and the alert arrives with the first read. `connect` therefore writes a probe and reads
//! it back through an echo upstream, so both versions report the alert the same way.
//!
//! `split` turns a stream into a reader and a writer usable from two threads, for the tests that
//! move bytes both ways at once.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{AlertDescription, ClientConfig, ClientConnection, RootCertStore, StreamOwned};

use super::PROBE;
use super::pki::{Ca, Leaf};

/// Upper bound for any single read or write of the client.
pub const IO_TIMEOUT: Duration = Duration::from_secs(20);

pub type TlsStream = StreamOwned<ClientConnection, TcpStream>;

/// Protocol version the client offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    Any,
    Tls12,
    Tls13,
}

/// What the client trusts and presents.
#[derive(Clone)]
pub struct ClientOpts {
    roots: Vec<CertificateDer<'static>>,
    identity: Option<(Vec<CertificateDer<'static>>, Arc<PrivateKeyDer<'static>>)>,
    version: Version,
    server_name: String,
    /// Offer only this cipher suite (default: all of the provider's).
    suite: Option<rustls::CipherSuite>,
}

impl ClientOpts {
    /// Trusts `ca`, presents no certificate, any version, SNI `localhost`.
    pub fn new(ca: &Ca) -> ClientOpts {
        ClientOpts {
            roots: vec![ca.der().clone()],
            identity: None,
            version: Version::Any,
            server_name: "localhost".to_owned(),
            suite: None,
        }
    }

    /// Trusts these DER roots instead.
    pub fn with_roots(roots: Vec<CertificateDer<'static>>) -> ClientOpts {
        ClientOpts {
            roots,
            identity: None,
            version: Version::Any,
            server_name: "localhost".to_owned(),
            suite: None,
        }
    }

    /// Presents `leaf` with its intermediates.
    pub fn identity(self, leaf: &Leaf) -> ClientOpts {
        self.raw_identity(leaf.chain(), leaf.rustls_key())
    }

    /// Presents exactly `chain` with `key`.
    pub fn raw_identity(
        mut self,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> ClientOpts {
        self.identity = Some((chain, Arc::new(key)));
        self
    }

    pub fn version(mut self, version: Version) -> ClientOpts {
        self.version = version;
        self
    }

    /// Offers only `suite`.
    pub fn suite(mut self, suite: rustls::CipherSuite) -> ClientOpts {
        self.suite = Some(suite);
        self
    }

    pub fn server_name(mut self, name: &str) -> ClientOpts {
        self.server_name = name.to_owned();
        self
    }

    pub fn config(&self) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        for root in &self.roots {
            roots.add(root.clone()).expect("add root");
        }
        let versions: &[&'static rustls::SupportedProtocolVersion] = match self.version {
            Version::Any => rustls::ALL_VERSIONS,
            Version::Tls12 => &[&rustls::version::TLS12],
            Version::Tls13 => &[&rustls::version::TLS13],
        };
        let mut provider = rustls::crypto::aws_lc_rs::default_provider();
        if let Some(only) = self.suite {
            provider.cipher_suites.retain(|s| s.suite() == only);
        }
        let builder = ClientConfig::builder_with_provider(Arc::new(provider))
            .with_protocol_versions(versions)
            .expect("protocol versions")
            .with_root_certificates(roots);
        let config = match &self.identity {
            None => builder.with_no_client_auth(),
            Some((chain, key)) => builder
                .with_client_auth_cert(chain.clone(), key.clone_key())
                .expect("client identity"),
        };
        Arc::new(config)
    }

    pub fn connection(&self) -> ClientConnection {
        let name = ServerName::try_from(self.server_name.clone()).expect("server name");
        ClientConnection::new(self.config(), name).expect("client connection")
    }
}

/// Why a client connection did not work.
#[derive(Debug)]
pub enum Failure {
    /// rustls failed, e.g. `AlertReceived(UnknownCA)`.
    Tls(rustls::Error),
    /// The socket failed (connect refused, reset, timeout).
    Io(io::Error),
    /// The server closed (cleanly or not) before the probe came back.
    Closed { clean: bool },
}

impl Failure {
    /// The alert the server sent, if that is how it failed.
    pub fn alert(&self) -> Option<AlertDescription> {
        match self {
            Failure::Tls(rustls::Error::AlertReceived(alert)) => Some(*alert),
            _ => None,
        }
    }

    fn from_io(e: io::Error) -> Failure {
        match e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            Some(tls) => Failure::Tls(tls.clone()),
            None => Failure::Io(e),
        }
    }
}

/// TCP connect with bounded timeouts on every socket operation.
pub fn tcp_connect(addr: SocketAddr) -> TcpStream {
    let sock = TcpStream::connect_timeout(&addr, IO_TIMEOUT)
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    sock.set_read_timeout(Some(IO_TIMEOUT))
        .expect("read timeout");
    sock.set_write_timeout(Some(IO_TIMEOUT))
        .expect("write timeout");
    sock.set_nodelay(true).expect("nodelay");
    sock
}

/// Completes the TLS handshake only. In TLS 1.3 a rejected client usually gets `Ok` here and
/// sees the alert on its first read; use `connect` to observe rejections.
pub fn handshake(addr: SocketAddr, opts: &ClientOpts) -> Result<TlsStream, Failure> {
    handshake_over(tcp_connect(addr), opts)
}

pub fn handshake_over(sock: TcpStream, opts: &ClientOpts) -> Result<TlsStream, Failure> {
    let mut stream = StreamOwned::new(opts.connection(), sock);
    while stream.conn.is_handshaking() {
        stream
            .conn
            .complete_io(&mut stream.sock)
            .map_err(Failure::from_io)?;
    }
    Ok(stream)
}

/// Handshake, then `probe`: `Ok` means the server accepted the client and bytes flow through an
/// echo upstream; a rejection is `Err(Failure::Tls(AlertReceived(..)))` in both versions.
pub fn connect(addr: SocketAddr, opts: &ClientOpts) -> Result<TlsStream, Failure> {
    let mut stream = handshake(addr, opts)?;
    probe(&mut stream)?;
    Ok(stream)
}

/// Writes `PROBE` and reads it back (needs an echo upstream). Written against the raw connection
/// so that a write failing on an already-closed socket does not hide the alert waiting in the
/// receive buffer.
pub fn probe(stream: &mut TlsStream) -> Result<(), Failure> {
    let StreamOwned { conn, sock } = stream;
    conn.writer().write_all(PROBE).map_err(Failure::Io)?;
    let mut write_error = None;
    while conn.wants_write() {
        if let Err(e) = conn.write_tls(sock) {
            write_error = Some(e);
            break;
        }
    }
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while got.len() < PROBE.len() {
        match conn.reader().read(&mut buf) {
            Ok(0) => return Err(Failure::Closed { clean: true }),
            Ok(n) => {
                got.extend_from_slice(&buf[..n]);
                continue;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                return Err(Failure::Closed { clean: false });
            }
            Err(e) => return Err(Failure::from_io(e)),
        }
        match conn.read_tls(sock) {
            Ok(0) => {
                // EOF: let rustls see it, then report an alert if one came before it.
                conn.process_new_packets().map_err(Failure::Tls)?;
                if let Ok(0) = conn.reader().read(&mut buf) {
                    return Err(Failure::Closed { clean: true });
                }
                return Err(match write_error {
                    Some(e) => Failure::Io(e),
                    None => Failure::Closed { clean: false },
                });
            }
            Ok(_) => {}
            Err(e) => return Err(Failure::Io(e)),
        }
        conn.process_new_packets().map_err(Failure::Tls)?;
    }
    assert_eq!(got, PROBE, "echo upstream returned other bytes");
    Ok(())
}

/// Asserts `result` is a rejection with `alert`, with a readable message otherwise.
#[track_caller]
pub fn expect_alert<T>(result: Result<T, Failure>, alert: AlertDescription) {
    match result {
        Ok(_) => panic!("client was accepted; expected the server to send alert {alert:?}"),
        Err(failure) => assert_eq!(
            failure.alert(),
            Some(alert),
            "expected alert {alert:?} ({}), got {failure:?}",
            u8::from(alert)
        ),
    }
}

/// Reads until the server's close_notify; returns the bytes. A TCP EOF without close_notify
/// (truncation) is an `Err(UnexpectedEof)`.
pub fn read_to_clean_eof(stream: &mut impl Read) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    stream.read_to_end(&mut out)?;
    Ok(out)
}

/// Sends close_notify and flushes it.
pub fn send_close_notify(stream: &mut TlsStream) -> io::Result<()> {
    stream.conn.send_close_notify();
    while stream.conn.wants_write() {
        stream.conn.write_tls(&mut stream.sock)?;
    }
    Ok(())
}

struct Shared {
    conn: Mutex<ClientConnection>,
    /// Held while TLS records are taken out of `conn` and written, so records from the two
    /// halves reach the socket in the order rustls produced them.
    write_sock: Mutex<TcpStream>,
}

impl Shared {
    fn flush(&self) -> io::Result<()> {
        let mut sock = self.write_sock.lock().unwrap();
        let mut out = Vec::new();
        {
            let mut conn = self.conn.lock().unwrap();
            while conn.wants_write() {
                conn.write_tls(&mut out)?;
            }
        }
        sock.write_all(&out)
    }
}

/// The reading half of a split TLS stream.
pub struct TlsReader {
    shared: Arc<Shared>,
    sock: TcpStream,
    pending: Vec<u8>,
    pos: usize,
    eof: bool,
}

/// The writing half of a split TLS stream.
pub struct TlsWriter {
    shared: Arc<Shared>,
}

/// Splits an established stream so one thread can read while another writes.
pub fn split(stream: TlsStream) -> (TlsReader, TlsWriter) {
    let (conn, sock) = stream.into_parts();
    let read_sock = sock.try_clone().expect("clone socket");
    let shared = Arc::new(Shared {
        conn: Mutex::new(conn),
        write_sock: Mutex::new(sock),
    });
    (
        TlsReader {
            shared: Arc::clone(&shared),
            sock: read_sock,
            pending: Vec::new(),
            pos: 0,
            eof: false,
        },
        TlsWriter { shared },
    )
}

impl Read for TlsReader {
    /// `Ok(0)` only after close_notify; EOF without it is `Err(UnexpectedEof)`.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let wants_write = {
                let mut conn = self.shared.conn.lock().unwrap();
                match conn.reader().read(buf) {
                    Ok(n) => return Ok(n),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
                if self.pos < self.pending.len() {
                    // Feed buffered records one read_tls at a time: rustls caps the plaintext it
                    // holds, and the caller drains it before the next feed.
                    let mut rest = &self.pending[self.pos..];
                    self.pos += conn.read_tls(&mut rest)?;
                } else if self.eof {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                } else {
                    drop(conn);
                    self.pending.resize(64 * 1024, 0);
                    let n = self.sock.read(&mut self.pending)?;
                    self.pending.truncate(n);
                    self.pos = 0;
                    conn = self.shared.conn.lock().unwrap();
                    if n == 0 {
                        self.eof = true;
                        let mut empty: &[u8] = &[];
                        conn.read_tls(&mut empty)?;
                    }
                }
                conn.process_new_packets()
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                conn.wants_write()
            };
            if wants_write {
                self.shared.flush()?;
            }
        }
    }
}

impl TlsWriter {
    /// Sends close_notify: the TLS-level half-close.
    pub fn close_notify(&mut self) -> io::Result<()> {
        self.shared.conn.lock().unwrap().send_close_notify();
        self.shared.flush()
    }

    /// Shuts the TCP write side (FIN) without close_notify.
    pub fn shutdown_tcp(&mut self) -> io::Result<()> {
        self.shared
            .write_sock
            .lock()
            .unwrap()
            .shutdown(Shutdown::Write)
    }
}

impl Write for TlsWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut sock = self.shared.write_sock.lock().unwrap();
        let mut out = Vec::new();
        let n = {
            let mut conn = self.shared.conn.lock().unwrap();
            let n = conn.writer().write(buf)?;
            while conn.wants_write() {
                conn.write_tls(&mut out)?;
            }
            n
        };
        sock.write_all(&out)?;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.shared.flush()
    }
}

/// One handshake through a shared client config (one session store, so tickets from earlier
/// connections are offered), then the probe so the TLS 1.3 tickets that follow the handshake
/// are read. Returns whether the session was resumed.
pub fn connect_with(addr: SocketAddr, config: Arc<ClientConfig>) -> rustls::HandshakeKind {
    try_connect_with(addr, config).expect("handshake and probe through the echo upstream")
}

/// `connect_with`, reporting a failure instead of panicking.
pub fn try_connect_with(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
) -> Result<rustls::HandshakeKind, Failure> {
    let name = ServerName::try_from("localhost").expect("name");
    let conn = ClientConnection::new(config, name).expect("client connection");
    let mut stream = rustls::StreamOwned::new(conn, tcp_connect(addr));
    while stream.conn.is_handshaking() {
        stream
            .conn
            .complete_io(&mut stream.sock)
            .map_err(Failure::Io)?;
    }
    probe(&mut stream)?;
    Ok(stream.conn.handshake_kind().expect("handshake finished"))
}
