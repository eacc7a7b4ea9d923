//! splice(2) and the few plain socket calls the relays make themselves: pipes sized with
//! `F_SETPIPE_SZ`, non-blocking splice between a socket and a pipe, and non-blocking
//! read/write/writev/shutdown on sockets a relay has taken out of monoio's hands.
//!
//! Every call here is non-blocking: the pipes are made `O_NONBLOCK`, and the relay makes its
//! sockets `O_NONBLOCK` before its first call (`SPLICE_F_NONBLOCK` only covers the pipe side;
//! a blocking socket would still block the worker). Readiness comes from the runtime.

use std::io::{self, IoSlice};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// Makes a pipe, both ends non-blocking and close-on-exec, and asks for `size` bytes of
/// capacity. Returns (read end, write end, the capacity the kernel granted): an unprivileged
/// user past `/proc/sys/fs/pipe-user-pages-soft` gets less, and that is not an error.
pub(crate) fn pipe(size: usize) -> io::Result<(OwnedFd, OwnedFd, usize)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into the array we own.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded, so both are open descriptors that nothing else owns.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let size = libc::c_int::try_from(size).unwrap_or(libc::c_int::MAX);
    // SAFETY: fcntl on a descriptor we own; a refusal (EPERM, EBUSY) leaves the pipe as it was.
    unsafe { libc::fcntl(write.as_raw_fd(), libc::F_SETPIPE_SZ, size) };
    // SAFETY: as above; F_GETPIPE_SZ only reads.
    let granted = unsafe { libc::fcntl(write.as_raw_fd(), libc::F_GETPIPE_SZ) };
    if granted <= 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((read, write, granted as usize))
}

/// Moves up to `len` bytes from `from` to `to`, one of which must be a pipe, without blocking
/// (`WouldBlock` when nothing can move now). 0 means `from` reached its end.
pub(crate) fn splice(from: &impl AsRawFd, to: &impl AsRawFd, len: usize) -> io::Result<usize> {
    // SAFETY: both descriptors are borrowed for the call; null offsets, as pipes and sockets
    // require.
    let n = unsafe {
        libc::splice(
            from.as_raw_fd(),
            std::ptr::null_mut(),
            to.as_raw_fd(),
            std::ptr::null_mut(),
            len,
            libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Sets `O_NONBLOCK` on a descriptor: one `ioctl(FIONBIO)`, where reading and rewriting the
/// flags with fcntl(2) took two system calls per socket, four per connection.
pub(crate) fn set_nonblocking(fd: &impl AsRawFd) -> io::Result<()> {
    let mut on: libc::c_int = 1;
    // SAFETY: FIONBIO reads one int from the pointer, valid for the whole call.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::FIONBIO, &mut on) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// One read(2) into the spare capacity of `buf`, which grows by what was read (non-blocking
/// if the descriptor is). Nothing is zeroed first: the kernel writes the bytes it reports.
pub(crate) fn read_into(fd: &impl AsRawFd, buf: &mut Vec<u8>) -> io::Result<usize> {
    let spare = buf.spare_capacity_mut();
    // SAFETY: `spare` is valid and writable for `spare.len()` bytes for the whole call.
    let n = unsafe { libc::read(fd.as_raw_fd(), spare.as_mut_ptr().cast(), spare.len()) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let n = n as usize;
    // SAFETY: read(2) initialised the first `n` bytes of the spare capacity, n <= its length.
    unsafe { buf.set_len(buf.len() + n) };
    Ok(n)
}

/// One write(2) from `buf` (non-blocking if the descriptor is).
pub(crate) fn write(fd: &impl AsRawFd, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for `buf.len()` bytes for the whole call.
    let n = unsafe { libc::write(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len()) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// The most slices one writev(2) takes on Linux (`UIO_MAXIOV`; more is EINVAL).
const IOV_MAX: usize = 1024;

/// One writev(2) of `bufs`, in order (non-blocking if the descriptor is); past `IOV_MAX`
/// slices, the first `IOV_MAX` (a short write, as the caller must expect anyway).
pub(crate) fn writev(fd: &impl AsRawFd, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
    let count = bufs.len().min(IOV_MAX) as libc::c_int;
    // SAFETY: `IoSlice` is ABI-compatible with `iovec`, and every slice is valid for its length
    // for the whole call.
    let n = unsafe { libc::writev(fd.as_raw_fd(), bufs.as_ptr().cast(), count) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// `shutdown(SHUT_WR)`: the peer reads end-of-stream once what was sent is read.
pub(crate) fn shutdown_write(fd: &impl AsRawFd) -> io::Result<()> {
    // SAFETY: a plain system call on a borrowed descriptor.
    if unsafe { libc::shutdown(fd.as_raw_fd(), libc::SHUT_WR) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn bytes_go_socket_to_pipe_to_socket() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let mut a = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (b, _) = listener.accept().expect("accept");
        let (c, mut d) = {
            let c = TcpStream::connect(listener.local_addr().expect("addr")).expect("c");
            let (d, _) = listener.accept().expect("accept d");
            c.set_nodelay(true).expect("nodelay");
            (c, d)
        };
        set_nonblocking(&b).expect("nonblocking");
        let (r, w, capacity) = pipe(1 << 20).expect("pipe");
        assert!(capacity >= 4096, "{capacity}");
        // Nothing sent yet: the splice would block, and says so.
        let err = splice(&b, &w, capacity).expect_err("empty socket");
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock, "{err}");
        a.write_all(b"through the pipe").expect("send");
        a.shutdown(std::net::Shutdown::Write).expect("fin");
        let mut moved = 0;
        loop {
            match splice(&b, &w, capacity) {
                Ok(0) => break,
                Ok(n) => moved += splice(&r, &c, n).expect("out"),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::yield_now(),
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(moved, 16);
        shutdown_write(&c).expect("shutdown");
        let mut got = String::new();
        d.read_to_string(&mut got).expect("read");
        assert_eq!(got, "through the pipe");
    }
}
