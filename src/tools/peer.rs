//! `ringtls upstream`: a plaintext TCP service for tests and benchmarks — `echo` (send back what
//! arrives), `sink` (read and discard) or `source` (send zeros until the peer closes). One monoio
//! thread; it prints the same `{"listening":[...]}` line as `serve`.

use std::io;
use std::net::SocketAddr;

use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use monoio::net::{TcpListener, TcpStream};
use monoio::{FusionDriver, RuntimeBuilder};

use crate::error::Error;

/// What the peer does with a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerMode {
    Echo,
    Sink,
    Source,
}

impl PeerMode {
    pub fn parse(s: &str) -> Result<PeerMode, Error> {
        match s {
            "echo" => Ok(PeerMode::Echo),
            "sink" => Ok(PeerMode::Sink),
            "source" => Ok(PeerMode::Source),
            _ => Err(Error::Usage(format!(
                "--mode {s}: expected echo, sink or source"
            ))),
        }
    }
}

/// Binds `addr`, calls `ready` with the bound address, then serves forever.
pub fn run_peer(
    addr: SocketAddr,
    mode: PeerMode,
    ready: impl FnOnce(SocketAddr),
) -> Result<(), Error> {
    let listener = std::net::TcpListener::bind(addr)
        .map_err(Error::io(format!("--listen {addr}: cannot bind")))?;
    let bound = listener
        .local_addr()
        .map_err(Error::io(format!("--listen {addr}")))?;
    listener
        .set_nonblocking(true)
        .map_err(Error::io(format!("--listen {addr}")))?;
    let mut runtime = RuntimeBuilder::<FusionDriver>::new()
        .enable_timer()
        .build()
        .map_err(Error::io("cannot build the runtime"))?;
    ready(bound);
    runtime.block_on(async move {
        let listener =
            TcpListener::from_std(listener).map_err(Error::io(format!("--listen {addr}")))?;
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    monoio::spawn(async move {
                        let _ = serve(stream, mode).await;
                    });
                }
                Err(_) => monoio::time::sleep(std::time::Duration::from_millis(20)).await,
            }
        }
    })
}

async fn serve(mut stream: TcpStream, mode: PeerMode) -> io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    match mode {
        PeerMode::Source => loop {
            let (res, b) = stream.write_all(buf).await;
            buf = b;
            res?;
        },
        PeerMode::Echo | PeerMode::Sink => loop {
            buf.clear();
            let (res, b) = stream.read(buf).await;
            buf = b;
            if res? == 0 {
                return stream.shutdown().await;
            }
            if mode == PeerMode::Echo {
                let (res, b) = stream.write_all(buf).await;
                buf = b;
                res?;
            }
        },
    }
}
