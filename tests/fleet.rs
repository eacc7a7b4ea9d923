//! A fleet: three replicas of the binary under test, each in a network namespace of its own,
//! behind HAProxy (`mode tcp`, `send-proxy-v2`, health checks on `/readyz`), with `ringtls load`
//! in a namespace of its own. `scripts/fleet.sh` builds it, drives it and judges the five
//! figures (its header says how); this test runs it and holds it to its verdicts, and reads the
//! figures back so that a script that printed nothing, or judged nothing, cannot pass.
//!
//! About a minute. Needs root (network namespaces), haproxy, curl and python3.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The script takes about 15 × 4 s of load plus set-up, after waiting (up to 600 s) for any
/// other run to release the network; this is a backstop.
const FLEET_TIMEOUT: Duration = Duration::from_secs(900);
/// What the script gets after SIGTERM to remove its namespaces and stop its processes.
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs the script to its end, its output in files of `dir`: (exit code, stdout, stderr). Past
/// FLEET_TIMEOUT it gets SIGTERM, so that its trap removes the network, and SIGKILL only after
/// CLEANUP_TIMEOUT.
fn run_script(cmd: &mut Command, dir: &Path) -> (Option<i32>, String, String) {
    let out = std::fs::File::create(dir.join("stdout")).expect("stdout file");
    let err = std::fs::File::create(dir.join("stderr")).expect("stderr file");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("spawn scripts/fleet.sh");
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap_or_default();
    let started = Instant::now();
    let mut terminated: Option<Instant> = None;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the script") {
            break status;
        }
        match terminated {
            None if started.elapsed() > FLEET_TIMEOUT => {
                let pid = i32::try_from(child.id()).expect("pid fits in pid_t");
                // SAFETY: kill(2) on our own child, not yet reaped.
                unsafe { libc::kill(pid, libc::SIGTERM) };
                terminated = Some(Instant::now());
            }
            Some(at) if at.elapsed() > CLEANUP_TIMEOUT => {
                let _ = child.kill();
            }
            _ => {}
        }
        std::thread::sleep(Duration::from_millis(100)); // readiness-ok: bounded poll of the script's exit
    };
    assert!(
        terminated.is_none(),
        "scripts/fleet.sh did not finish within {FLEET_TIMEOUT:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        read("stdout"),
        read("stderr")
    );
    (status.code(), read("stdout"), read("stderr"))
}

/// The number after `"key":` in the script's one-line JSON summary.
fn figure(summary: &str, key: &str) -> f64 {
    let needle = format!("\"{key}\":");
    let at = summary
        .find(&needle)
        .unwrap_or_else(|| panic!("no {key} in the summary: {summary}"));
    let rest = &summary[at + needle.len()..];
    let end = rest.find([',', '}']).unwrap_or(rest.len());
    rest[..end]
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("{key} is not a number ({e}): {summary}"))
}

#[test]
#[cfg_attr(
    not(all(has = "netns", has = "haproxy", has = "curl", has = "python3")),
    ignore = "SKIPPED: needs root with ip (iproute2), haproxy, curl and python3; the fleet runs in network namespaces"
)]
fn a_fleet_behind_haproxy_resumes_rolls_rotates_and_survives_a_kill() {
    for tool in ["netns", "haproxy", "curl", "python3"] {
        common::need(tool);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut cmd = Command::new("bash");
    cmd.arg(root.join("scripts/fleet.sh"))
        .args(["--bin", env!("CARGO_BIN_EXE_ringtls")])
        .current_dir(root);
    let dir = tempfile::tempdir().expect("temp dir");
    let (code, stdout, stderr) = run_script(&mut cmd, dir.path());
    let report = format!(
        "scripts/fleet.sh exit {code:?}\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}"
    );
    // The figures, for the test log (`cargo test --test fleet -- --nocapture`), and for
    // .ci/run, which prints this file after the suite (cargo shows no passing test's output).
    eprintln!("{stderr}");
    let verdicts: String = stderr
        .lines()
        .filter(|l| l.starts_with("fleet: PASS ") || l.starts_with("fleet: FAIL "))
        .map(|l| format!("{l}\n"))
        .collect();
    let figures = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fleet-figures.txt");
    std::fs::write(&figures, verdicts).expect("write the figures for .ci/run");
    assert_eq!(code, Some(0), "{report}");
    let summary = stdout
        .lines()
        .rfind(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no summary line\n{report}"));
    let passes = stderr.matches("fleet: PASS ").count();
    assert_eq!(passes, 8, "eight verdicts, all PASS\n{report}");
    assert!(!stderr.contains("fleet: FAIL "), "{report}");
    // The same bars, read back from the numbers: the script cannot pass by saying so.
    assert!(figure(summary, "resumed_shared") >= 0.95, "{report}");
    let own = figure(summary, "resumed_own");
    assert!((0.15..=0.55).contains(&own), "{report}");
    assert_eq!(figure(summary, "roll_failed_handshakes"), 0.0, "{report}");
    assert_eq!(figure(summary, "roll_cut"), 0.0, "{report}");
    assert!(figure(summary, "rotation_resumed") >= 0.9, "{report}");
    assert!(
        figure(summary, "kill_failures") <= figure(summary, "kill_bound"),
        "{report}"
    );
    assert!(
        figure(summary, "kill_held") > 0.0,
        "the killed replica held connections\n{report}"
    );
    assert_eq!(figure(summary, "after_kill_failures"), 0.0, "{report}");
    assert!(figure(summary, "events_client") > 0.0, "{report}");
    assert_eq!(figure(summary, "events_balancer"), 0.0, "{report}");
}
