//! Closing a listener for real, from the worker that owns it.
//!
//! Dropping a monoio listener closes its descriptor, but while an io_uring accept is in flight
//! the ring holds its own reference to the socket, which keeps listening (and completing
//! handshakes into its backlog) until the cancellation is processed. `shutdown(2)` on a
//! listening socket moves it out of the listening state at once, whoever holds references:
//! new connections are refused by the kernel and a pending accept ends with EINVAL.

use std::io;
use std::os::fd::AsRawFd;

pub(crate) fn stop_listening(listener: &impl AsRawFd) -> io::Result<()> {
    // SAFETY: a plain system call on a descriptor `listener` owns for the whole call.
    let rc = unsafe { libc::shutdown(listener.as_raw_fd(), libc::SHUT_RDWR) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
