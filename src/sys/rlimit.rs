//! Raising the soft limit on open files (RLIMIT_NOFILE) to the hard limit when `serve` starts.
//!
//! Every connection costs two descriptors (client and upstream). The usual soft limit of 1024
//! would cap a terminator at about 500 connections and turn the rest into EMFILE at accept,
//! while the hard limit (often 524288 or more) is what the administrator actually allows. This is
//! what `systemd` recommends for programs that do not use select(2), which ringtls does not.

use std::io;

/// The soft limit before and after `raise_nofile`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Raised {
    pub old: u64,
    pub new: u64,
}

/// Sets the soft RLIMIT_NOFILE to the hard limit (a no-op when they are already equal; an
/// unlimited hard limit means the kernel's `fs.nr_open`).
pub(crate) fn raise_nofile() -> io::Result<Raised> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid, writable `rlimit` that outlives the call; getrlimit writes
    // only into it.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let old = limit.rlim_cur;
    // Linux refuses a soft limit above fs.nr_open, which an unlimited hard limit would ask for.
    let target = if limit.rlim_max == libc::RLIM_INFINITY {
        nr_open().unwrap_or(limit.rlim_max)
    } else {
        limit.rlim_max
    };
    if old >= target {
        return Ok(Raised { old, new: old });
    }
    limit.rlim_cur = target;
    // SAFETY: `limit` is a valid `rlimit` that outlives the call; setrlimit only reads it.
    // Raising the soft limit up to the hard one needs no privilege.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(Raised {
        old,
        new: limit.rlim_cur,
    })
}

/// The kernel's ceiling on any process's open files (`/proc/sys/fs/nr_open`).
fn nr_open() -> Option<u64> {
    std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()?
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raises_the_soft_limit_to_the_hard_one() {
        let raised = raise_nofile().expect("raising up to the hard limit needs no privilege");
        assert!(raised.new >= raised.old);
        // Again: already at the hard limit, nothing changes.
        let again = raise_nofile().expect("second raise");
        assert_eq!(again.old, again.new);
        assert_eq!(again.new, raised.new);
    }
}
