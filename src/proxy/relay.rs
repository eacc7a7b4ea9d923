//! The data plane of one established connection: plaintext both ways, concurrently.
//!
//! Three futures share the connection's `ServerConnection` through a `RefCell` (one worker
//! thread, one task: no locks), and never hold the borrow across an await:
//! - client → upstream: read ciphertext, feed rustls, write the plaintext to the upstream;
//! - upstream → client: read plaintext, hand it to rustls' writer (bounded: rustls' send buffer
//!   limit is the backpressure), wake the client writer;
//! - client writer: the only writer of the client socket, so records never interleave; it
//!   flushes whatever rustls queued (data, alerts, key-update replies, close_notify).
//!
//! Half-close is forwarded both ways: the client's close_notify (or FIN) becomes
//! `shutdown(SHUT_WR)` on the upstream, the upstream's FIN becomes close_notify then
//! `shutdown(SHUT_WR)` on the client; the other direction keeps flowing until it ends too.

use std::cell::{Cell, RefCell};
use std::io::Write;
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

use monoio::io::{
    AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt, OwnedReadHalf, OwnedWriteHalf, Split,
    Splitable,
};
use monoio::net::TcpStream;
use rustls::ServerConnection;

use super::budget;
use super::buffers::{self, ReadBuf};
use super::guard::Guard;
use super::handshake::Early;
use super::notify::Notify;
use super::relay_error::RelayError;
use super::timer;
use crate::engine;
use crate::outcome::Counters;
use crate::sys;

/// Relays until both directions have ended, or until the first error or the guard's verdict
/// (raced against the relay). `early` is what the client sent with the end of its handshake,
/// forwarded first.
pub(crate) async fn relay<U>(
    client: TcpStream,
    upstream: U,
    conn: Box<ServerConnection>,
    early: Early,
    guard: &Guard<'_>,
    counters: &Counters,
) -> Result<(), RelayError>
where
    U: Split + AsyncReadRent + AsyncWriteRent + AsRawFd,
{
    let conn = &RefCell::new(conn);
    let stop = guard.watch(conn, counters);
    // For reads that top up a full small read without waiting; the halves own the sockets.
    let (cfd, ufd) = (client.as_raw_fd(), upstream.as_raw_fd());
    let (mut cr, mut cw) = client.into_split();
    let (mut ur, mut uw) = upstream.into_split();
    let to_writer = Notify::default();
    let space = Notify::default();
    let upstream_done = Cell::new(false);

    let result = {
        let up = client_to_upstream(conn, (&mut cr, cfd), &mut uw, early, &to_writer, counters);
        let down = upstream_to_client(
            conn,
            (&mut ur, ufd),
            &to_writer,
            &space,
            &upstream_done,
            counters,
        );
        let write = write_client(conn, &mut cw, &to_writer, &space, &upstream_done);
        monoio::select! {
            r = async { monoio::try_join!(up, down, write) } => r.map(|_| ()),
            stop = stop => Err(RelayError::Stopped(stop)),
        }
    };
    if let Err(e @ (RelayError::Tls(_) | RelayError::Stopped(_))) = &result {
        // Tell the client why, best effort: rustls queued an alert for a TLS error; a
        // connection we end gets a close_notify (rustls sends no alert after the handshake).
        // The writer future is gone, so send it here.
        if !matches!(e, RelayError::Tls(_)) {
            conn.borrow_mut().send_close_notify();
        }
        let mut out = Vec::new();
        engine::take_tls(&mut conn.borrow_mut(), &mut out);
        if !out.is_empty() {
            let _ = timer::timeout(Duration::from_secs(1), cw.write_all(out)).await;
        }
    }
    // Dropping a monoio write half calls shutdown(2) again, a wasted (and failing) syscall per
    // socket: reunite the halves and let the sockets simply close.
    drop(cr.reunite(cw));
    drop(ur.reunite(uw));
    result
}

async fn client_to_upstream<U: Split + AsyncReadRent + AsyncWriteRent>(
    conn: &RefCell<Box<ServerConnection>>,
    (cr, cfd): (&mut OwnedReadHalf<TcpStream>, RawFd),
    uw: &mut OwnedWriteHalf<U>,
    early: Early,
    to_writer: &Notify,
    counters: &Counters,
) -> Result<(), RelayError> {
    let Early {
        mut plain,
        mut closed,
        ..
    } = early;
    let mut read_buf = ReadBuf::small();
    let mut idle = false;
    loop {
        budget::next_turn().await;
        if !plain.is_empty() {
            let n = plain.len() as u64;
            let (res, p) = uw.write_all(plain).await;
            plain = p;
            res.map_err(RelayError::UpstreamWrite)?;
            counters.up.set(counters.up.get() + n);
            plain.clear();
        }
        if idle {
            buffers::relax(&mut plain);
        }
        if closed {
            // ENOTCONN here means the upstream is gone already; the other direction reports it.
            let _ = uw.shutdown().await;
            return Ok(());
        }
        let (res, buf) = cr.read(read_buf.take()).await;
        let n = res.map_err(RelayError::ClientRead)?;
        // A record bigger than the small buffer: the rest of it, if it is here, in one go.
        let (buf, n) = buffers::top_up(buf, n, |b| sys::splice::recv_now(cfd, b));
        counters.touch();
        let mut c = conn.borrow_mut();
        if n == 0 {
            engine::feed_eof(&mut c, &mut plain).map_err(RelayError::Tls)?;
            closed = true;
        } else {
            closed = engine::feed(&mut c, &buf[..n], &mut plain)
                .map_err(RelayError::Tls)?
                .peer_closed;
        }
        idle = read_buf.put_back(buf, n);
        if c.wants_write() {
            to_writer.notify();
        }
    }
}

async fn upstream_to_client<U: Split + AsyncReadRent + AsyncWriteRent>(
    conn: &RefCell<Box<ServerConnection>>,
    (ur, ufd): (&mut OwnedReadHalf<U>, RawFd),
    to_writer: &Notify,
    space: &Notify,
    upstream_done: &Cell<bool>,
    counters: &Counters,
) -> Result<(), RelayError> {
    let mut read_buf = ReadBuf::small();
    loop {
        budget::next_turn().await;
        let (res, buf) = ur.read(read_buf.take()).await;
        let n = res.map_err(RelayError::UpstreamRead)?;
        // A response bigger than the small buffer goes out as one record, not 512 bytes first.
        let (buf, n) = buffers::top_up(buf, n, |b| sys::splice::recv_now(ufd, b));
        counters.touch();
        if n == 0 {
            conn.borrow_mut().send_close_notify();
            upstream_done.set(true);
            to_writer.notify();
            return Ok(());
        }
        let mut off = 0;
        loop {
            let written = conn
                .borrow_mut()
                .writer()
                .write(&buf[off..n])
                .map_err(RelayError::ClientWrite)?;
            off += written;
            if written > 0 {
                to_writer.notify();
            }
            if off == n {
                break;
            }
            // rustls' send buffer is full: wait for the client writer to drain it.
            space.notified().await;
        }
        counters.down.set(counters.down.get() + n as u64);
        read_buf.put_back(buf, n);
    }
}

async fn write_client(
    conn: &RefCell<Box<ServerConnection>>,
    cw: &mut OwnedWriteHalf<TcpStream>,
    to_writer: &Notify,
    space: &Notify,
    upstream_done: &Cell<bool>,
) -> Result<(), RelayError> {
    let mut out = Vec::new();
    loop {
        out.clear();
        engine::take_tls(&mut conn.borrow_mut(), &mut out);
        if !out.is_empty() {
            let (res, b) = cw.write_all(out).await;
            out = b;
            res.map_err(RelayError::ClientWrite)?;
            space.notify();
            budget::next_turn().await;
            continue;
        }
        if upstream_done.get() {
            let _ = cw.shutdown().await;
            return Ok(());
        }
        // Nothing to send: do not hold a record-sized buffer while waiting.
        buffers::relax(&mut out);
        to_writer.notified().await;
    }
}
