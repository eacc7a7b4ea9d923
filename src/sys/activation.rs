//! systemd socket activation (`sd_listen_fds(3)`): when the service manager started us with
//! `LISTEN_PID` equal to our pid and `LISTEN_FDS=N`, fds 3..3+N are listening sockets it opened
//! for us, and `serve` accepts on them instead of binding `--listen`.
//!
//! Reading the environment is safe and happens while the configuration is checked; turning the
//! descriptors into owned sockets is the `unsafe` part and happens once, at start. Each passed
//! descriptor must be a listening TCP socket (SOCK_STREAM, SO_ACCEPTCONN, AF_INET or AF_INET6);
//! anything else stops the start naming the fd, since accepting on a UDP or Unix socket, or on
//! one that never listens, would fail on the first connection instead.
//!
//! The variables are left in the environment rather than unset as `sd_listen_fds(unset=1)`
//! would: `std::env::remove_var` is only sound while no other thread reads the environment, and
//! `ringtls::start` is a library function that also runs inside multi-threaded processes (the
//! demo, tests). Leaving them is harmless: ringtls starts no child processes, and a child would
//! have another pid than `LISTEN_PID`, so it would ignore them just as we ignore a stranger's.

use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};

use socket2::{Domain, SockRef, Socket, Type};

/// The first passed descriptor (`SD_LISTEN_FDS_START`); 0, 1 and 2 are stdio.
pub(crate) const FIRST_FD: RawFd = 3;

/// What the environment says the service manager passed: `count` descriptors from fd 3, named
/// by `LISTEN_FDNAMES` when it has one name per descriptor (`names` is empty otherwise).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Passed {
    pub count: usize,
    pub names: Vec<String>,
}

impl Passed {
    /// Each passed descriptor and its name, if it has one.
    pub fn fds(&self) -> impl Iterator<Item = (RawFd, Option<&str>)> + '_ {
        (0..self.count).map(|i| {
            // `parse` checked that FIRST_FD + count fits an fd number.
            (FIRST_FD + i as RawFd, self.names.get(i).map(String::as_str))
        })
    }
}

/// A passed socket, checked and ready for the workers.
#[derive(Debug)]
pub(crate) struct Activated {
    pub addr: SocketAddr,
    pub listener: TcpListener,
}

/// Why the passed sockets cannot be used.
#[derive(Debug)]
pub enum ActivationError {
    /// `LISTEN_FDS` is not a usable count.
    Count(String),
    /// A passed descriptor is not a listening TCP socket, or cannot be set up.
    Fd {
        fd: RawFd,
        name: Option<String>,
        problem: String,
        source: Option<io::Error>,
    },
    /// The descriptors were already turned into sockets once in this process.
    AlreadyTaken,
}

impl fmt::Display for ActivationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ActivationError::Count(value) => write!(
                f,
                "socket activation: LISTEN_FDS={value:?} is not a number of descriptors"
            ),
            ActivationError::Fd {
                fd, name, problem, ..
            } => {
                write!(f, "socket activation: fd {fd}")?;
                if let Some(name) = name {
                    write!(f, " ({name:?})")?;
                }
                write!(f, " {problem}")
            }
            ActivationError::AlreadyTaken => f.write_str(
                "socket activation: the passed sockets were already taken by an earlier start",
            ),
        }
    }
}

impl std::error::Error for ActivationError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ActivationError::Fd {
                source: Some(e), ..
            } => Some(e),
            _ => None,
        }
    }
}

/// Reads `LISTEN_PID`, `LISTEN_FDS` and `LISTEN_FDNAMES`; `None` when we were not activated.
pub(crate) fn passed_from_env() -> Result<Option<Passed>, ActivationError> {
    let var = |name| std::env::var(name).ok();
    parse(
        var("LISTEN_PID").as_deref(),
        var("LISTEN_FDS").as_deref(),
        var("LISTEN_FDNAMES").as_deref(),
        std::process::id(),
    )
}

/// The rules of `sd_listen_fds`: the variables are for us only if `LISTEN_PID` is our pid (an
/// inherited environment meant for a parent is ignored), and `LISTEN_FDS=0` means nothing passed.
pub(crate) fn parse(
    pid: Option<&str>,
    fds: Option<&str>,
    names: Option<&str>,
    our_pid: u32,
) -> Result<Option<Passed>, ActivationError> {
    if pid.and_then(|p| p.trim().parse::<u32>().ok()) != Some(our_pid) {
        return Ok(None);
    }
    let Some(fds) = fds else {
        return Ok(None);
    };
    let count: usize = fds
        .trim()
        .parse()
        .map_err(|_| ActivationError::Count(fds.to_owned()))?;
    // The last descriptor, 3 + count - 1, must be an fd number.
    if count > (RawFd::MAX - FIRST_FD) as usize {
        return Err(ActivationError::Count(fds.to_owned()));
    }
    if count == 0 {
        return Ok(None);
    }
    // Names only label log lines and errors; a list of the wrong length is ignored rather
    // than refusing sockets that are otherwise fine.
    let names: Vec<String> = names
        .map(|n| n.split(':').map(str::to_owned).collect())
        .filter(|n: &Vec<String>| n.len() == count)
        .unwrap_or_default();
    Ok(Some(Passed { count, names }))
}

/// Set once the passed descriptors have been given owners, so no second owner is ever made.
static TAKEN: AtomicBool = AtomicBool::new(false);

/// Checks every passed descriptor and takes ownership of them as listeners: close-on-exec,
/// non-blocking (the workers' event loops need it) and TCP_NODELAY (inherited by accepted
/// sockets, as for the sockets `--listen` binds). Call once, before anything else opens files.
pub(crate) fn take_listeners(passed: &Passed) -> Result<Vec<Activated>, ActivationError> {
    // First, so that not even `check` borrows a descriptor an earlier call already owns (and
    // may have closed, its number now reused).
    if TAKEN.swap(true, Ordering::SeqCst) {
        return Err(ActivationError::AlreadyTaken);
    }
    // Check all before owning any, so a bad fd leaves the others untouched.
    for (fd, name) in passed.fds() {
        check(fd).map_err(|(problem, source)| ActivationError::Fd {
            fd,
            name: name.map(str::to_owned),
            problem,
            source,
        })?;
    }
    let mut taken = Vec::with_capacity(passed.count);
    for (fd, name) in passed.fds() {
        let fail = |problem: &str, source| ActivationError::Fd {
            fd,
            name: name.map(str::to_owned),
            problem: problem.to_owned(),
            source: Some(source),
        };
        // SAFETY: `check` found `fd` open. The service manager handed fds 3..3+LISTEN_FDS to
        // this process (LISTEN_PID is our pid), so no other code in it owns them, and `TAKEN`
        // makes this the only place that ever gives them an owner. From here the `OwnedFd`
        // is the sole owner and closes it once.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        let socket = Socket::from(owned);
        socket
            .set_cloexec(true)
            .map_err(|e| fail("cannot set close-on-exec", e))?;
        socket
            .set_nonblocking(true)
            .map_err(|e| fail("cannot be made non-blocking", e))?;
        socket
            .set_nodelay(true)
            .map_err(|e| fail("cannot set TCP_NODELAY", e))?;
        let addr = socket
            .local_addr()
            .map_err(|e| fail("has no local address", e))?
            .as_socket()
            .ok_or_else(|| {
                fail(
                    "has no IP address",
                    io::Error::other("local address is not IP"),
                )
            })?;
        taken.push(Activated {
            addr,
            listener: socket.into(),
        });
    }
    Ok(taken)
}

/// Why `fd` is not a listening TCP socket, if it is not.
fn check(fd: RawFd) -> Result<(), (String, Option<io::Error>)> {
    const NOT: &str = "is not a listening TCP socket";
    // SAFETY: F_GETFD takes no pointer and only reads the descriptor table; any integer is a
    // valid argument (an unused one gives EBADF).
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1 {
        return Err(("is not open".to_owned(), Some(io::Error::last_os_error())));
    }
    // SAFETY: `fd` is open (just checked) and stays open while borrowed: no one else in the
    // process owns the passed descriptors (`take_listeners` set `TAKEN` before calling us),
    // and the borrow ends with this function, before any owner is made.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    let socket = SockRef::from(&borrowed);
    let ty = match socket.r#type() {
        Ok(ty) => ty,
        Err(e) if e.raw_os_error() == Some(libc::ENOTSOCK) => {
            return Err((format!("{NOT}: not a socket"), None));
        }
        Err(e) => return Err((format!("{NOT}: cannot read its type"), Some(e))),
    };
    if ty != Type::STREAM {
        return Err((format!("{NOT}: type is {ty:?}, not SOCK_STREAM"), None));
    }
    let domain = socket
        .domain()
        .map_err(|e| (format!("{NOT}: cannot read its family"), Some(e)))?;
    if domain != Domain::IPV4 && domain != Domain::IPV6 {
        return Err((
            format!("{NOT}: family is {domain:?}, not AF_INET or AF_INET6"),
            None,
        ));
    }
    match socket.is_listener() {
        Ok(true) => Ok(()),
        Ok(false) => Err((format!("{NOT}: it is not listening"), None)),
        Err(e) => Err((format!("{NOT}: cannot read SO_ACCEPTCONN"), Some(e))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ignores_variables_meant_for_another_process() {
        assert_eq!(parse(Some("41"), Some("1"), None, 42).ok(), Some(None));
        assert_eq!(parse(None, Some("1"), None, 42).ok(), Some(None));
        assert_eq!(parse(Some("x"), Some("1"), None, 42).ok(), Some(None));
    }

    #[test]
    fn reads_count_and_names_for_our_pid() {
        assert_eq!(
            parse(Some("42"), Some("2"), Some("https:admin"), 42).ok(),
            Some(Some(Passed {
                count: 2,
                names: vec!["https".into(), "admin".into()],
            }))
        );
        // A name list of the wrong length labels nothing.
        assert_eq!(
            parse(Some("42"), Some("2"), Some("https"), 42).ok(),
            Some(Some(Passed {
                count: 2,
                names: Vec::new(),
            }))
        );
        assert_eq!(parse(Some("42"), Some("0"), None, 42).ok(), Some(None));
        assert_eq!(parse(Some("42"), None, None, 42).ok(), Some(None));
    }

    #[test]
    fn rejects_a_count_that_is_not_one() {
        for bad in ["", "x", "-1", "1.5", "99999999999"] {
            let err = parse(Some("42"), Some(bad), None, 42).err();
            assert!(
                err.is_some_and(|e| e.to_string().contains("LISTEN_FDS")),
                "{bad:?} accepted"
            );
        }
    }
}
