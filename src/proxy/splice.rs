//! Moving plaintext between two sockets the relay has taken over from the runtime
//! (`take_over`): with splice(2), socket → pipe → socket, the bytes never entering user space
//! (`forward`), or with read(2)/write(2) through a buffer (`copy`). Both run non-blocking
//! system calls on readiness and stop the same way (`Stop`), so the kernel-TLS relay picks one
//! per direction (see `ktls`).
//!
//! Why readiness and our own `splice(2)` rather than io_uring's splice op: that op is punted to
//! io-wq kernel threads. `cargo bench --bench splice` (one monoio worker forwarding loopback
//! TCP) measured the forwarder's CPU per GiB against monoio read/write: io_uring's splice op
//! 1.4-1.6x, this `forward` 0.5x through 1 MiB pipes, `copy` 1.0x. The figures are in the
//! README.
//!
//! Pipes are lent, as buffers are: a direction holds a pipe only while bytes are in it, and
//! puts it back in its worker's pool when the pipe is empty, so an idle connection holds no
//! pipe (HAProxy pools its pipes the same way). If no pipe can be had (descriptors exhausted),
//! that round copies instead; nothing is dropped.

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::rc::Rc;

use monoio::net::{TcpStream, UnixStream};

use super::budget;
use super::buffers::ReadBuf;
use crate::sys::splice as sys;

/// What each pipe asks the kernel for. `cargo bench --bench splice`: the forwarder's CPU per
/// GiB against read/write was 0.5x through 1 MiB pipes, 0.8x through 256 KiB, 0.9-1.0x through
/// the default 64 KiB. 1 MiB is also the most an unprivileged process may ask
/// (`/proc/sys/fs/pipe-max-size`); past its user's `pipe-user-pages-soft` (64 MiB by
/// default) the kernel grants new pipes 8 KiB, which still works, just with more calls.
pub const PIPE_SIZE: usize = 1 << 20;
/// Empty pipes a worker keeps for the next busy direction; more are closed. Idle pipes count
/// against the user's pipe pages too, so few are kept.
const POOL_MAX: usize = 8;

/// A socket the relay moves bytes through with its own system calls, waiting on the runtime
/// for readiness (never relaxed: the relay's own calls consume readiness monoio cannot see).
pub trait Ready: AsRawFd {
    fn readable(&self) -> impl Future<Output = io::Result<()>>;
    fn writable(&self) -> impl Future<Output = io::Result<()>>;
}

impl Ready for TcpStream {
    fn readable(&self) -> impl Future<Output = io::Result<()>> {
        TcpStream::readable(self, false)
    }
    fn writable(&self) -> impl Future<Output = io::Result<()>> {
        TcpStream::writable(self, false)
    }
}

impl Ready for UnixStream {
    fn readable(&self) -> impl Future<Output = io::Result<()>> {
        UnixStream::readable(self, false)
    }
    fn writable(&self) -> impl Future<Output = io::Result<()>> {
        UnixStream::writable(self, false)
    }
}

/// Takes a socket out of the runtime's read/write operations: from here on only this module's
/// non-blocking calls touch it. (monoio's io_uring driver leaves sockets blocking.)
pub fn take_over(socket: &impl AsRawFd) -> io::Result<()> {
    sys::set_nonblocking(socket)
}

struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
    capacity: usize,
}

/// A worker's empty pipes. A pool of size 0 never makes one: every round copies.
pub struct Pipes {
    size: usize,
    idle: RefCell<Vec<Pipe>>,
}

thread_local! {
    static LOCAL: Rc<Pipes> = Rc::new(Pipes::new(PIPE_SIZE));
}

impl Pipes {
    pub fn new(size: usize) -> Pipes {
        Pipes {
            size,
            idle: RefCell::new(Vec::new()),
        }
    }

    /// This worker's pool.
    pub fn local() -> Rc<Pipes> {
        LOCAL.with(Rc::clone)
    }

    fn take(&self) -> io::Result<Pipe> {
        if let Some(pipe) = self.idle.borrow_mut().pop() {
            return Ok(pipe);
        }
        if self.size == 0 {
            return Err(io::ErrorKind::Unsupported.into());
        }
        let (read, write, capacity) = sys::pipe(self.size)?;
        Ok(Pipe {
            read,
            write,
            capacity,
        })
    }

    fn give_back(&self, pipe: Pipe) {
        let mut idle = self.idle.borrow_mut();
        if idle.len() < POOL_MAX {
            idle.push(pipe);
        }
    }

    /// Pipes waiting in the pool.
    #[cfg(test)]
    fn idle(&self) -> usize {
        self.idle.borrow().len()
    }
}

/// The pipe a direction holds while bytes are in it; an empty one goes back to the pool, one
/// with bytes in it (the connection ended mid-transfer) is closed.
struct Held<'a> {
    pool: &'a Pipes,
    pipe: Option<Pipe>,
    bytes: usize,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        if let Some(pipe) = self.pipe.take()
            && self.bytes == 0
        {
            self.pool.give_back(pipe);
        }
    }
}

/// Why a direction stopped.
#[derive(Debug, PartialEq, Eq)]
pub enum Stop {
    /// The source reached its end (FIN; a kernel-TLS socket gives it after close_notify is
    /// read by `ktls`, or on a bare FIN).
    End,
    /// The source refused to splice its next bytes: on a kernel-TLS socket, a record that is
    /// not application data waits at the head (EINVAL from splice, EIO from read). Nothing
    /// was lost; the caller reads the record with `recvmsg`.
    Control,
}

/// Which side failed.
#[derive(Debug)]
pub enum SpliceError {
    Read(io::Error),
    Write(io::Error),
}

/// Moves everything `src` delivers to `dst` through pipes, until `src` ends or holds a control
/// record. `moved(n, spliced)` is called for the bytes each write delivers (`spliced` false
/// for a round copied for want of a pipe), `read()` for each read.
pub async fn forward(
    src: &impl Ready,
    dst: &impl Ready,
    pool: &Pipes,
    mut moved: impl FnMut(usize, bool),
    mut read: impl FnMut(),
) -> Result<Stop, SpliceError> {
    let mut fallback = ReadBuf::new();
    loop {
        budget::own_turn().await;
        // Wait for the source without holding a pipe: an idle direction holds none.
        let held = loop {
            let Ok(pipe) = pool.take() else {
                break None;
            };
            match sys::splice(src, &pipe.write, pipe.capacity) {
                Ok(n) => {
                    break Some(Held {
                        pool,
                        pipe: Some(pipe),
                        bytes: n,
                    });
                }
                Err(e) => {
                    pool.give_back(pipe);
                    match e {
                        e if e.kind() == io::ErrorKind::WouldBlock => {
                            src.readable().await.map_err(SpliceError::Read)?
                        }
                        e if refused(&e) => return Ok(Stop::Control),
                        e => return Err(SpliceError::Read(e)),
                    }
                }
            }
        };
        let Some(mut held) = held else {
            // No pipe to be had (descriptors exhausted): copy this round.
            if let Some(stop) = copy_round(src, dst, &mut fallback, &mut moved, &mut read).await? {
                return Ok(stop);
            }
            continue;
        };
        read();
        if held.bytes == 0 {
            return Ok(Stop::End);
        }
        while held.bytes > 0 {
            let Some(pipe) = &held.pipe else { break };
            match sys::splice(&pipe.read, dst, held.bytes) {
                Ok(m) => {
                    held.bytes -= m;
                    moved(m, true);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    dst.writable().await.map_err(SpliceError::Write)?;
                }
                Err(e) => return Err(SpliceError::Write(e)),
            }
        }
    }
}

/// Moves everything `src` delivers to `dst` with read(2)/write(2) through a buffer that sizes
/// itself to the traffic (see `buffers`) and is not held while the source is quiet; stops as
/// `forward` does.
pub async fn copy(
    src: &impl Ready,
    dst: &impl Ready,
    mut moved: impl FnMut(usize, bool),
    mut read: impl FnMut(),
) -> Result<Stop, SpliceError> {
    let mut buf = ReadBuf::new();
    loop {
        budget::own_turn().await;
        if let Some(stop) = copy_round(src, dst, &mut buf, &mut moved, &mut read).await? {
            return Ok(stop);
        }
    }
}

/// EINVAL from splice or EIO from read: a kernel-TLS socket with a control record at the head.
fn refused(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EINVAL | libc::EIO))
}

/// One read and the writes that deliver it. `Some` when the source stopped.
async fn copy_round(
    src: &impl Ready,
    dst: &impl Ready,
    read_buf: &mut ReadBuf,
    moved: &mut impl FnMut(usize, bool),
    read: &mut impl FnMut(),
) -> Result<Option<Stop>, SpliceError> {
    let (buf, n) = match read_ready(src, read_buf, 0).await {
        Ok(got) => got,
        Err(e) if refused(&e) => return Ok(Some(Stop::Control)),
        Err(e) => return Err(SpliceError::Read(e)),
    };
    read();
    let written = write_all(dst, &buf).await;
    read_buf.put_back(buf, n);
    written.map_err(SpliceError::Write)?;
    if n == 0 {
        return Ok(Some(Stop::End));
    }
    moved(n, false);
    Ok(None)
}

/// One read of `n` bytes from a socket taken over by this module, once it has bytes (`n == 0`:
/// its end), into a buffer borrowed from `read_buf` only then, at `buf[at..at + n]`: while
/// `src` is quiet the direction holds none.
pub(super) async fn read_ready(
    src: &impl Ready,
    read_buf: &mut ReadBuf,
    at: usize,
) -> io::Result<(Vec<u8>, usize)> {
    loop {
        let mut buf = read_buf.take();
        buf.resize(at, 0);
        match sys::read_into(src, &mut buf) {
            Ok(n) => return Ok((buf, n)),
            Err(e) => {
                read_buf.park(buf);
                match e.kind() {
                    io::ErrorKind::WouldBlock => src.readable().await?,
                    io::ErrorKind::Interrupted => {}
                    _ => return Err(e),
                }
            }
        }
    }
}

/// Writes all of `buf` to a socket taken over by this module.
pub async fn write_all(dst: &impl Ready, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        match sys::write(dst, buf) {
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => dst.writable().await?,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Half-closes a socket taken over by this module.
pub fn shutdown_write(socket: &impl AsRawFd) -> io::Result<()> {
    sys::shutdown_write(socket)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};

    /// A connected pair: the std end for a helper thread, the other for the runtime.
    fn pair() -> (std::net::TcpStream, std::net::TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let a = std::net::TcpStream::connect(listener.local_addr().expect("addr")).expect("a");
        let (b, _) = listener.accept().expect("accept");
        (a, b)
    }

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 4093) as u8).collect()
    }

    /// Runs `f` on a runtime of each driver.
    fn on_each_driver(f: impl Fn() -> std::pin::Pin<Box<dyn Future<Output = ()>>>) {
        monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
            .enable_timer()
            .build()
            .expect("io_uring runtime")
            .block_on(f());
        monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .expect("epoll runtime")
            .block_on(f());
    }

    /// Sends `data` in uneven writes, half-closes, and returns what came out the other end,
    /// forwarded through `pool`'s pipes, or copied when there is none.
    async fn through(pool: Option<&Pipes>, data: &[u8]) -> Vec<u8> {
        let (mut feeder, src) = pair();
        let (dst, mut sink) = pair();
        let sent = data.to_vec();
        let feeding = std::thread::spawn(move || {
            let mut off = 0;
            for step in [1, 1000, 65536, 7, 300_000].iter().cycle() {
                if off == sent.len() {
                    break;
                }
                let end = (off + step).min(sent.len());
                feeder.write_all(&sent[off..end]).expect("feed");
                off = end;
            }
            feeder.shutdown(std::net::Shutdown::Write).expect("fin");
        });
        let draining = std::thread::spawn(move || {
            let mut got = Vec::new();
            sink.read_to_end(&mut got).expect("sink");
            got
        });
        let src = TcpStream::from_std(src).expect("src");
        let dst = TcpStream::from_std(dst).expect("dst");
        take_over(&src).expect("src nonblocking");
        take_over(&dst).expect("dst nonblocking");
        let moved = Cell::new(0);
        let count = |n, _| moved.set(moved.get() + n);
        let stop = match pool {
            Some(pool) => forward(&src, &dst, pool, count, || {}).await,
            None => copy(&src, &dst, count, || {}).await,
        }
        .expect("forward");
        assert_eq!(stop, Stop::End);
        assert_eq!(moved.get(), data.len());
        shutdown_write(&dst).expect("shutdown");
        feeding.join().expect("feeder");
        draining.join().expect("sink")
    }

    #[test]
    fn forwards_every_byte_and_the_end() {
        let data = pattern(8 << 20);
        on_each_driver(|| {
            let data = data.clone();
            Box::pin(async move {
                let pool = Pipes::new(64 * 1024);
                assert!(through(Some(&pool), &data).await == data, "bytes differ");
                // The pipe went back to the pool once empty.
                assert_eq!(pool.idle(), 1);
            })
        });
    }

    #[test]
    fn without_pipes_every_round_copies() {
        let data = pattern(3 << 20);
        on_each_driver(|| {
            let data = data.clone();
            Box::pin(async move {
                let pool = Pipes::new(0);
                assert!(through(Some(&pool), &data).await == data, "bytes differ");
                assert_eq!(pool.idle(), 0);
            })
        });
    }

    #[test]
    fn copies_every_byte_and_the_end() {
        let data = pattern(8 << 20);
        on_each_driver(|| {
            let data = data.clone();
            Box::pin(async move {
                assert!(through(None, &data).await == data, "bytes differ");
            })
        });
    }

    #[test]
    fn a_waiting_direction_holds_no_pipe() {
        on_each_driver(|| {
            Box::pin(async {
                let (mut feeder, src) = pair();
                let (dst, mut sink) = pair();
                let delivered = Arc::new(AtomicBool::new(false));
                let finish = Arc::new(AtomicBool::new(false));
                let (d, f) = (delivered.clone(), finish.clone());
                let helper = std::thread::spawn(move || {
                    feeder.write_all(b"hello").expect("feed");
                    let mut got = [0u8; 5];
                    sink.read_exact(&mut got).expect("sink");
                    d.store(true, Ordering::SeqCst);
                    let deadline = Instant::now() + Duration::from_secs(10);
                    while !f.load(Ordering::SeqCst) && Instant::now() < deadline {
                        std::thread::yield_now();
                    }
                    drop(feeder);
                    got
                });
                let src = TcpStream::from_std(src).expect("src");
                let dst = TcpStream::from_std(dst).expect("dst");
                take_over(&src).expect("src");
                take_over(&dst).expect("dst");
                let pool = Pipes::new(64 * 1024);
                let check = async {
                    let deadline = Instant::now() + Duration::from_secs(10);
                    while !delivered.load(Ordering::SeqCst) && Instant::now() < deadline {
                        monoio::time::sleep(Duration::from_millis(1)).await;
                    }
                    // Bytes delivered, source quiet: the forwarder waits, its pipe pooled.
                    let idle = pool.idle();
                    finish.store(true, Ordering::SeqCst);
                    idle
                };
                let (stop, idle) =
                    monoio::join!(forward(&src, &dst, &pool, |_, _| {}, || {}), check);
                assert_eq!(idle, 1, "the pipe was held while waiting");
                assert_eq!(stop.expect("forward"), Stop::End);
                assert_eq!(&helper.join().expect("helper"), b"hello");
            })
        });
    }
}
