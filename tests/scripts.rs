//! The self-tests of the Python scripts under scripts/: each checks its parsing, arithmetic and
//! rendering on canned inputs, starts no server and takes well under a second, so a change that
//! breaks the benchmark's records or the scan's verdicts fails here, not in a 10-minute run.
//! `scripts/bench/bench.py --self-test` also renders a canned run through report.py (raw.json,
//! results.md, chart.svg) and checks that stopping the run's children reaches their children.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::process::run_command;

/// Runs `python3 SCRIPT --self-test` from the repository root; fails unless it exits 0.
fn self_test(script: &str) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut cmd = Command::new("python3");
    cmd.arg(root.join(script))
        .arg("--self-test")
        .current_dir(root);
    let out = run_command(cmd, Duration::from_secs(60));
    assert_eq!(
        out.code,
        Some(0),
        "{script} --self-test failed\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.stdout,
        out.stderr
    );
    assert!(
        out.stdout.contains("self-test: ") && out.stdout.contains(" ok"),
        "{script} --self-test printed no summary\n{}",
        out.stdout
    );
}

#[test]
#[cfg_attr(
    not(has = "python3"),
    ignore = "SKIPPED: python3 not found (apt-get install python3)"
)]
fn bench_script_passes_its_self_test() {
    common::need("python3");
    self_test("scripts/bench/bench.py");
}

#[test]
#[cfg_attr(
    not(has = "python3"),
    ignore = "SKIPPED: python3 not found (apt-get install python3)"
)]
fn scan_checker_passes_its_self_test() {
    common::need("python3");
    self_test("scripts/scan/check.py");
}
