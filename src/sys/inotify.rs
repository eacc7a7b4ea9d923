//! inotify(7), just enough for `--watch`: watch directories, wait for events with a timeout,
//! and learn which directory entries they name.
//!
//! Directories rather than files: a file replaced by rename (editors, `cp` to a temporary then
//! `mv`, Kubernetes' `..data` symlink swap) is a new inode, which a watch on the old file would
//! never report.

use std::ffi::{CString, OsString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;
use std::time::Duration;

/// Every way an entry of a directory can come to hold different bytes.
const MASK: u32 = libc::IN_CREATE
    | libc::IN_MOVED_TO
    | libc::IN_MOVED_FROM
    | libc::IN_CLOSE_WRITE
    | libc::IN_DELETE
    | libc::IN_ATTRIB
    | libc::IN_ONLYDIR;

/// The size of `struct inotify_event` before its name.
const HEADER: usize = 16;

pub(crate) struct Inotify {
    fd: OwnedFd,
}

impl Inotify {
    pub(crate) fn new() -> io::Result<Inotify> {
        // SAFETY: no pointers; the returned descriptor is checked and then owned exactly once.
        let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC | libc::IN_NONBLOCK) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Inotify { fd })
    }

    /// Adds a watch on the entries of directory `dir`.
    pub(crate) fn watch_dir(&self, dir: &Path) -> io::Result<()> {
        let path = CString::new(dir.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))?;
        // SAFETY: `path` is a NUL-terminated string that outlives the call.
        let wd = unsafe { libc::inotify_add_watch(self.fd.as_raw_fd(), path.as_ptr(), MASK) };
        if wd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Waits up to `timeout` (`None`: without limit) for events and returns the entry names
    /// they concern; empty when the time passed with none.
    pub(crate) fn read(&self, timeout: Option<Duration>) -> io::Result<Vec<OsString>> {
        let mut pfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = timeout.map_or(-1, |t| t.as_millis().min(i32::MAX as u128) as libc::c_int);
        // SAFETY: `pfd` is one valid pollfd that lives across the call.
        let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::Interrupted {
                Ok(Vec::new())
            } else {
                Err(e)
            };
        }
        if rc == 0 {
            return Ok(Vec::new());
        }
        let mut buf = vec![0u8; 64 * 1024];
        // SAFETY: `buf` is writable for its whole length.
        let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::WouldBlock {
                Ok(Vec::new())
            } else {
                Err(e)
            };
        }
        buf.truncate(n as usize);
        Ok(names(&buf))
    }
}

/// The names carried by a buffer of `struct inotify_event`s (events on the watched directory
/// itself carry none and are skipped).
fn names(mut buf: &[u8]) -> Vec<OsString> {
    let mut out = Vec::new();
    while buf.len() >= HEADER {
        let len = u32::from_ne_bytes([buf[12], buf[13], buf[14], buf[15]]) as usize;
        let Some(name) = buf.get(HEADER..HEADER + len) else {
            break;
        };
        let name = name.split(|&b| b == 0).next().unwrap_or_default();
        if !name.is_empty() {
            out.push(OsString::from_vec(name.to_vec()));
        }
        buf = &buf[HEADER + len..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_a_rename_into_a_watched_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ino = Inotify::new().expect("inotify");
        ino.watch_dir(dir.path()).expect("watch");
        std::fs::write(dir.path().join("tmp"), b"x").expect("write");
        std::fs::rename(dir.path().join("tmp"), dir.path().join("ca.pem")).expect("rename");
        let mut seen = Vec::new();
        for _ in 0..10 {
            let names = ino.read(Some(Duration::from_secs(2))).expect("read");
            if names.is_empty() {
                break;
            }
            seen.extend(names);
            if seen.iter().any(|n| n == "ca.pem") {
                break;
            }
        }
        assert!(seen.iter().any(|n| n == "ca.pem"), "saw {seen:?}");
    }
}
