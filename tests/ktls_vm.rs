//! The kTLS tests (tests/ktls.rs) run inside a QEMU VM whose kernel has kernel TLS, because this
//! host's kernel may lack CONFIG_TLS: `scripts/ktls-vm.sh --build-test ktls` builds ringtls and
//! that test statically into target/ktls-vm and runs it in the VM, with `RINGTLS_EXPECT_KTLS=1` so
//! that a kernel without kTLS fails there instead of skipping. Twice: on Debian 12's cloud
//! kernel (6.1, no TLS 1.3 rekey: a client KeyUpdate must end the connection cleanly), and on
//! the newest cloud kernel of trixie-backports (7.x, with rekey: `RINGTLS_EXPECT_REKEY=1`
//! requires the connection to follow the client's key updates).
//!
//! Runs whenever QEMU is installed (.ci/run installs it), and is ignored otherwise (`SKIPPED: ...`,
//! tests/common/tools.rs's `ktls-vm`); `RINGTLS_KTLS_VM=0` skips it on purpose, the same way. The
//! first run builds everything a second time with static flags (minutes on 2 cores) and fetches a
//! kernel and busybox with `apt-get download`; later runs take seconds. Exit 77 from the script
//! (this host cannot run the VM: apt cannot fetch the kernel, say) is only known at run time, so
//! it fails the test like any other failure: a test that did not run must not pass, and
//! `RINGTLS_KTLS_VM=0` is the way to skip it on such a host.
//!
//! The nested cargo uses its own target dir, so it never waits on the outer build's lock.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::process::{Spawned, wait_exit};

/// Above the script's own bounds (build 1500 s, VM 300 s), so that they fire first and say
/// which step hung.
const BOUND: Duration = Duration::from_secs(31 * 60);

#[test]
#[cfg_attr(
    not(has = "ktls-vm"),
    ignore = "SKIPPED: qemu-system-x86_64 or depmod not found (apt-get install qemu-system-x86 kmod) or RINGTLS_KTLS_VM=0; tests/ktls.rs ran on this host's kernel only"
)]
fn ktls_tests_pass_inside_a_vm_with_kernel_tls() {
    common::need("ktls-vm");
    run_in_vm(&["--env", "RINGTLS_EXPECT_KTLS=1", "--build-test", "ktls"]);
}

#[test]
#[cfg_attr(
    not(has = "ktls-vm"),
    ignore = "SKIPPED: qemu-system-x86_64 or depmod not found (apt-get install qemu-system-x86 kmod) or RINGTLS_KTLS_VM=0; no rekey test on a kernel with TLS 1.3 rekey"
)]
fn ktls_tests_pass_inside_a_vm_whose_kernel_rekeys() {
    common::need("ktls-vm");
    run_in_vm(&[
        "--kernel-suite",
        "trixie-backports",
        "--env",
        "RINGTLS_EXPECT_KTLS=1",
        "--env",
        "RINGTLS_EXPECT_REKEY=1",
        "--build-test",
        "ktls",
    ]);
}

/// Runs `scripts/ktls-vm.sh ARGS`; fails when it fails, including when this host cannot.
fn run_in_vm(args: &[&str]) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut cmd = Command::new("bash");
    cmd.arg(root.join("scripts/ktls-vm.sh"))
        .args(args)
        .current_dir(root);
    let mut run = Spawned::spawn(cmd);
    run.stdin.take();
    let status = if run.stdout.wait_closed(BOUND) {
        wait_exit(&mut run.child, Duration::from_secs(30))
    } else {
        // SIGTERM, not kill(): the script's trap then stops the cargo or QEMU it started.
        let pid = i32::try_from(run.child.id()).expect("pid fits in pid_t");
        // SAFETY: kill(2) takes plain integers; the child is ours and not yet reaped.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        wait_exit(&mut run.child, Duration::from_secs(30));
        panic!(
            "scripts/ktls-vm.sh did not finish within {BOUND:?}\n{}",
            run.output()
        );
    };
    run.stderr.wait_closed(Duration::from_secs(5));
    let code = status.and_then(|s| s.code());
    assert_ne!(
        code,
        Some(77),
        "scripts/ktls-vm.sh: this host cannot run the VM (RINGTLS_KTLS_VM=0 skips this test on \
         purpose)\n{}",
        run.stderr.text()
    );
    // The VM's console (the test binary's output) and the script's log of boot times.
    println!("{}", run.output());
    assert_eq!(
        code,
        Some(0),
        "scripts/ktls-vm.sh {} failed\n{}",
        args.join(" "),
        run.output()
    );
    assert!(
        run.stdout.text().contains("test result: ok."),
        "no passing test summary from inside the VM\n{}",
        run.output()
    );
}
