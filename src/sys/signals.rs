//! Signals as messages: SIGHUP, SIGTERM and SIGINT are blocked in every thread and taken one at
//! a time by `sigtimedwait(2)` on the control thread, so no handler runs at an arbitrary point of
//! a worker and nothing async-signal-safe has to be written.
//!
//! The mask must be set before any thread starts: threads inherit the mask of their creator, and
//! a signal delivered to a thread that does not block it would run the default action (exit).

use std::io;
use std::mem::MaybeUninit;
use std::time::Duration;

/// A signal `serve` acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGHUP: reload.
    Hangup,
    /// SIGTERM: drain and exit.
    Terminate,
    /// SIGINT (Ctrl-C): drain and exit.
    Interrupt,
}

impl Signal {
    pub fn name(self) -> &'static str {
        match self {
            Signal::Hangup => "SIGHUP",
            Signal::Terminate => "SIGTERM",
            Signal::Interrupt => "SIGINT",
        }
    }
}

/// The blocked set; only `Signals::block` makes one.
pub struct Signals {
    set: libc::sigset_t,
}

impl Signals {
    /// Blocks SIGHUP, SIGTERM and SIGINT in the calling thread, and so in every thread it starts
    /// afterwards. Call it before starting any thread.
    pub fn block() -> io::Result<Signals> {
        let mut set = MaybeUninit::<libc::sigset_t>::uninit();
        // SAFETY: sigemptyset initialises the set it is given; sigaddset and pthread_sigmask only
        // read and write that initialised set and the calling thread's mask.
        let set = unsafe {
            if libc::sigemptyset(set.as_mut_ptr()) != 0 {
                return Err(io::Error::last_os_error());
            }
            let mut set = set.assume_init();
            for sig in [libc::SIGHUP, libc::SIGTERM, libc::SIGINT] {
                if libc::sigaddset(&mut set, sig) != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            if rc != 0 {
                return Err(io::Error::from_raw_os_error(rc));
            }
            set
        };
        Ok(Signals { set })
    }

    /// Takes the next pending signal, waiting at most `timeout` (`None`: without limit).
    pub fn wait(&self, timeout: Option<Duration>) -> Option<Signal> {
        loop {
            let rc = match timeout {
                None => {
                    // SAFETY: `self.set` is an initialised set; a null info pointer is allowed.
                    unsafe { libc::sigwaitinfo(&self.set, std::ptr::null_mut()) }
                }
                Some(t) => {
                    let ts = libc::timespec {
                        tv_sec: t.as_secs().min(i32::MAX as u64) as libc::time_t,
                        tv_nsec: t.subsec_nanos() as libc::c_long,
                    };
                    // SAFETY: as above; `ts` lives across the call.
                    unsafe { libc::sigtimedwait(&self.set, std::ptr::null_mut(), &ts) }
                }
            };
            match rc {
                libc::SIGHUP => return Some(Signal::Hangup),
                libc::SIGTERM => return Some(Signal::Terminate),
                libc::SIGINT => return Some(Signal::Interrupt),
                _ if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted => continue,
                // EAGAIN: the timeout passed.
                _ => return None,
            }
        }
    }
}
