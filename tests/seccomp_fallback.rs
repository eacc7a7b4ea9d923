//! io_uring blocked the way Docker's default seccomp profile blocks it (the three io_uring
//! system calls fail with EPERM): `serve` falls back to epoll, says so in a warning, and serves.
//!
//! The filter is installed by python3 through libseccomp's C API (ctypes), right before it
//! execs ringtls; both are on every machine of this kind, and the test is ignored otherwise
//! (`SKIPPED: ...`, tests/common/tools.rs's `libseccomp`).

mod common;

use common::process::launched_by;
use common::{Setup, Upstream, connect};

/// Denies io_uring_setup, io_uring_enter and io_uring_register (x86_64 numbers 425-427) with
/// EPERM, then execs argv[1:].
const DENY_IO_URING: &str = r#"
import ctypes, os, sys
lib = ctypes.CDLL("libseccomp.so.2")
lib.seccomp_init.restype = ctypes.c_void_p
ctx = ctypes.c_void_p(lib.seccomp_init(ctypes.c_uint32(0x7fff0000)))  # SCMP_ACT_ALLOW
for nr in (425, 426, 427):
    assert lib.seccomp_rule_add(ctx, ctypes.c_uint32(0x00050000 | 1), nr, 0) == 0  # ERRNO(EPERM)
assert lib.seccomp_load(ctx) == 0
os.execv(sys.argv[1], sys.argv[1:])
"#;

#[test]
#[cfg_attr(
    not(has = "libseccomp"),
    ignore = "SKIPPED: needs python3 and libseccomp.so.2 on x86_64 to install the filter (apt-get install python3 libseccomp2)"
)]
fn falls_back_to_epoll_and_says_so_when_seccomp_blocks_io_uring() {
    common::need("libseccomp");
    let setup = Setup::new();
    let upstream = Upstream::echo();
    let server = setup
        .serve(upstream.addr)
        .args(["--threads", "2"])
        .wrap(|inner| launched_by(inner, "python3", &["-c", DENY_IO_URING]))
        .start();
    server.wait_for_line(&["io_uring.unavailable", "workers=2", "seccomp"]);
    assert!(
        !server.stderr().contains("driver=io_uring"),
        "{}",
        server.stderr()
    );
    let alice = setup.ca.client("Alice");
    connect(server.addr(), &setup.client(&alice)).expect("served on epoll");
}

#[test]
fn says_nothing_when_epoll_was_asked_for() {
    let setup = Setup::new();
    let upstream = Upstream::echo();
    let server = setup
        .serve(upstream.addr)
        .driver(common::Driver::Epoll)
        .start();
    let alice = setup.ca.client("Alice");
    connect(server.addr(), &setup.client(&alice)).expect("served on epoll");
    assert!(
        !server.stderr().contains("io_uring.unavailable"),
        "{}",
        server.stderr()
    );
}
