//! The load generator's TLS client: rustls' `ClientConnection` over a monoio socket, driven with
//! the same engine as the server side, so both ends pay the same adapter costs.

use std::io::{self, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use monoio::net::TcpStream;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, HandshakeKind, ProtocolVersion};

use crate::engine;

const BUF_SIZE: usize = 16 * 1024 + 256;

/// Why one operation failed, as a stable label for the report.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Failure {
    Connect(String),
    Alert(String),
    Tls(String),
    Closed,
    Timeout,
    Io(String),
}

impl Failure {
    pub(super) fn label(&self) -> String {
        match self {
            Failure::Connect(e) => format!("connect: {e}"),
            Failure::Alert(a) => format!("alert {a}"),
            Failure::Tls(e) => format!("tls: {e}"),
            Failure::Closed => "closed by server".into(),
            Failure::Timeout => "timeout".into(),
            Failure::Io(e) => format!("io: {e}"),
        }
    }

    fn from_tls(e: rustls::Error) -> Failure {
        match e {
            rustls::Error::AlertReceived(a) => Failure::Alert(format!("{a:?}({})", u8::from(a))),
            other => Failure::Tls(other.to_string()),
        }
    }

    fn from_io(e: io::Error) -> Failure {
        Failure::Io(e.kind().to_string())
    }
}

/// An established TLS connection to the server under test.
pub(super) struct TlsClient {
    stream: TcpStream,
    conn: ClientConnection,
    read_buf: Vec<u8>,
    write_buf: Vec<u8>,
    /// Plaintext received and not yet consumed.
    pub plain: Vec<u8>,
}

impl TlsClient {
    /// Connects and completes the handshake.
    pub(super) async fn connect(
        addr: SocketAddr,
        config: Arc<ClientConfig>,
        name: ServerName<'static>,
    ) -> Result<TlsClient, Failure> {
        let stream = TcpStream::connect_addr(addr)
            .await
            .map_err(|e| Failure::Connect(e.kind().to_string()))?;
        let _ = stream.set_nodelay(true);
        let conn = ClientConnection::new(config, name).map_err(Failure::from_tls)?;
        let mut client = TlsClient {
            stream,
            conn,
            read_buf: Vec::with_capacity(BUF_SIZE),
            write_buf: Vec::with_capacity(BUF_SIZE),
            plain: Vec::new(),
        };
        loop {
            client.flush().await?;
            if !client.conn.is_handshaking() {
                return Ok(client);
            }
            client.read_some().await?;
        }
    }

    /// Whether the session was resumed.
    pub(super) fn resumed(&self) -> bool {
        self.conn.handshake_kind() == Some(HandshakeKind::Resumed)
    }

    /// In TLS 1.3 the server checks the client certificate after the client's Finished, so a
    /// rejection only shows on the next read. This waits for the first record the server sends
    /// after the handshake (a session ticket, or the alert), within `limit`.
    pub(super) async fn confirm(&mut self, limit: Duration) -> Result<(), Failure> {
        if self.conn.protocol_version() != Some(ProtocolVersion::TLSv1_3) {
            return Ok(());
        }
        match monoio::time::timeout(limit, self.read_some()).await {
            Ok(res) => res.map(|_| ()),
            Err(_) => Err(Failure::Timeout),
        }
    }

    /// Sends `data` as application data.
    pub(super) async fn send(&mut self, data: &[u8]) -> Result<(), Failure> {
        let mut off = 0;
        while off < data.len() {
            off += self
                .conn
                .writer()
                .write(&data[off..])
                .map_err(Failure::from_io)?;
            self.flush().await?;
        }
        Ok(())
    }

    /// Reads until at least `n` bytes of plaintext are buffered in `plain`.
    pub(super) async fn fill(&mut self, n: usize) -> Result<(), Failure> {
        while self.plain.len() < n {
            if self.read_some().await? == 0 {
                return Err(Failure::Closed);
            }
        }
        Ok(())
    }

    /// Sends close_notify and a FIN; drains the server's reply within `limit`.
    pub(super) async fn close(mut self, limit: Duration) {
        self.conn.send_close_notify();
        if self.flush().await.is_ok() {
            let _ = self.stream.shutdown().await;
            let _ = monoio::time::timeout(limit, async {
                while matches!(self.read_some().await, Ok(n) if n > 0) {}
            })
            .await;
        }
    }

    /// One socket read fed to rustls; returns the ciphertext bytes read (0 at EOF).
    async fn read_some(&mut self) -> Result<usize, Failure> {
        let mut buf = std::mem::take(&mut self.read_buf);
        buf.clear();
        let (res, buf) = self.stream.read(buf).await;
        self.read_buf = buf;
        let n = res.map_err(Failure::from_io)?;
        let fed = if n == 0 {
            engine::feed_eof(&mut self.conn, &mut self.plain)
        } else {
            engine::feed(&mut self.conn, &self.read_buf[..n], &mut self.plain).map(|_| ())
        };
        if let Err(e) = fed {
            let _ = self.flush().await;
            return Err(Failure::from_tls(e));
        }
        self.flush().await?;
        if n == 0 && self.conn.is_handshaking() {
            return Err(Failure::Closed);
        }
        Ok(n)
    }

    async fn flush(&mut self) -> Result<(), Failure> {
        let mut out = std::mem::take(&mut self.write_buf);
        out.clear();
        engine::take_tls(&mut self.conn, &mut out);
        if out.is_empty() {
            self.write_buf = out;
            return Ok(());
        }
        let (res, out) = self.stream.write_all(out).await;
        self.write_buf = out;
        res.map(|_| ()).map_err(Failure::from_io)
    }
}
