//! The files under `packaging/` agree with the binary and with each other: the systemd units pass
//! `systemd-analyze verify`, every supervisor waits longer than ringtls drains, probes point at
//! the endpoints that mean what they need, and the image's health check names a real subcommand.
//!
//! No YAML or Dockerfile parser is a dependency, so the manifests are read as text by the small
//! checkers below. Each checker returns the problems it found, and a test feeds it a broken copy
//! to prove it can fail. Without `systemd-analyze` the verify test is ignored (`SKIPPED: ...`).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::process::run_command;

/// Where the units' ExecStart expects the binary; the verify test points it at the built one.
const INSTALLED_BIN: &str = "/usr/local/bin/ringtls";
/// `docker stop` sends SIGKILL this long after SIGTERM unless `--stop-timeout`/`-t` says more.
const DOCKER_STOP_TIMEOUT: Duration = Duration::from_secs(10);
const VERIFY_TIMEOUT: Duration = Duration::from_secs(60);

fn packaging(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("packaging")
        .join(rel)
}

fn read(rel: &str) -> String {
    let path = packaging(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A duration as ringtls' flags and systemd's simple settings write it: `30s`, `500ms`, `2m`,
/// `1min`, or bare seconds (systemd's default unit).
fn duration(text: &str) -> Option<Duration> {
    let text = text.trim().trim_matches('"');
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().ok()?;
    match unit {
        "" | "s" | "sec" => Some(Duration::from_secs(n)),
        "ms" | "msec" => Some(Duration::from_millis(n)),
        "m" | "min" => Some(Duration::from_secs(n * 60)),
        _ => None,
    }
}

/// The value after `flag` in an argument list, also in the `--flag=value` spelling.
fn flag_value<'a>(args: &[&'a str], flag: &str) -> Option<&'a str> {
    let prefix = format!("{flag}=");
    args.iter().enumerate().find_map(|(i, arg)| {
        if *arg == flag {
            args.get(i + 1).copied()
        } else {
            arg.strip_prefix(prefix.as_str())
        }
    })
}

// ---------------------------------------------------------------------------------------------
// systemd
// ---------------------------------------------------------------------------------------------

/// `Key=value` of a unit file, continuation lines joined, comments dropped.
fn unit_settings(text: &str) -> Vec<(String, String)> {
    let mut logical = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if current.is_empty() && (trimmed.starts_with('#') || trimmed.starts_with(';')) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(head) => {
                current.push_str(head);
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                logical.push(std::mem::take(&mut current));
            }
        }
    }
    logical
        .iter()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

fn setting<'a>(settings: &'a [(String, String)], key: &str) -> Option<&'a str> {
    settings
        .iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// What is wrong with the service unit, as sentences; empty when nothing is.
fn service_problems(text: &str) -> Vec<String> {
    let settings = unit_settings(text);
    let mut problems = Vec::new();
    let Some(exec) = setting(&settings, "ExecStart") else {
        return vec!["no ExecStart=".into()];
    };
    let args: Vec<&str> = exec.split_whitespace().collect();
    if args.first() != Some(&INSTALLED_BIN) {
        problems.push(format!("ExecStart= does not start {INSTALLED_BIN}: {exec}"));
    }
    if args.contains(&"--listen") {
        problems.push("ExecStart= has --listen, but the socket comes from ringtls.socket".into());
    }
    let drain = flag_value(&args, "--drain-timeout").and_then(duration);
    let stop = setting(&settings, "TimeoutStopSec").and_then(duration);
    match (drain, stop) {
        (Some(drain), Some(stop)) if stop > drain => {}
        (Some(drain), Some(stop)) => problems.push(format!(
            "TimeoutStopSec={stop:?} does not exceed --drain-timeout {drain:?}: systemd would \
             SIGKILL the drain"
        )),
        _ => problems.push("need both --drain-timeout in ExecStart= and TimeoutStopSec=".into()),
    }
    if setting(&settings, "ExecReload") != Some("/bin/kill -HUP $MAINPID") {
        problems.push("ExecReload= does not send SIGHUP to the main process".into());
    }
    if setting(&settings, "KillSignal") != Some("SIGTERM") {
        problems.push("KillSignal= is not SIGTERM (the drain signal)".into());
    }
    problems
}

#[test]
fn service_unit_waits_longer_than_the_drain() {
    let problems = service_problems(&read("systemd/ringtls.service"));
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn service_checker_reports_a_stop_timeout_shorter_than_the_drain() {
    let broken = read("systemd/ringtls.service").replace("TimeoutStopSec=45s", "TimeoutStopSec=20");
    let problems = service_problems(&broken);
    assert!(
        problems.iter().any(|p| p.contains("does not exceed")),
        "{problems:#?}"
    );
}

#[test]
#[cfg_attr(
    not(has = "systemd-analyze"),
    ignore = "SKIPPED: systemd-analyze not found (apt-get install systemd); packaging/systemd units not verified"
)]
fn systemd_units_pass_systemd_analyze_verify() {
    common::need("systemd-analyze");
    let analyze = "systemd-analyze";
    // verify insists ExecStart= names an executable, so the copy runs the binary under test.
    let dir = tempfile::tempdir().expect("temp dir");
    let service = read("systemd/ringtls.service");
    let exec_start = format!("ExecStart={INSTALLED_BIN} ");
    assert_eq!(
        service.matches(&exec_start).count(),
        1,
        "ringtls.service must start {INSTALLED_BIN} exactly once"
    );
    let service = service.replace(
        &exec_start,
        &format!("ExecStart={} ", env!("CARGO_BIN_EXE_ringtls")),
    );
    std::fs::write(dir.path().join("ringtls.service"), service).expect("write service");
    std::fs::copy(
        packaging("systemd/ringtls.socket"),
        dir.path().join("ringtls.socket"),
    )
    .expect("copy socket");

    let mut cmd = Command::new(analyze);
    cmd.current_dir(dir.path())
        .args(["verify", "--man=no"])
        .arg(dir.path().join("ringtls.socket"))
        .arg(dir.path().join("ringtls.service"));
    let out = run_command(cmd, VERIFY_TIMEOUT);
    let report = format!(
        "systemd-analyze verify exit {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.code, out.stdout, out.stderr
    );
    assert_eq!(out.code, Some(0), "{report}");
    // verify also loads the host's units and may grumble about those; ours must be silent.
    let ours: Vec<&str> = out
        .stderr
        .lines()
        .chain(out.stdout.lines())
        .filter(|l| l.contains("ringtls"))
        .collect();
    assert!(ours.is_empty(), "{report}");
}

// ---------------------------------------------------------------------------------------------
// Kubernetes
// ---------------------------------------------------------------------------------------------

fn indent(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

/// The `key:` values found inside every block opened by a `block:` line (indentation-scoped).
fn values_in_block<'a>(text: &'a str, block: &str, key: &str) -> Vec<&'a str> {
    let opener = format!("{block}:");
    let key = format!("{key}:");
    let lines: Vec<&str> = text.lines().collect();
    let mut found = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if line.trim() != opener {
            continue;
        }
        let depth = indent(line);
        for inner in &lines[i + 1..] {
            if inner.trim().is_empty() || inner.trim_start().starts_with('#') {
                continue;
            }
            if indent(inner) <= depth {
                break;
            }
            if let Some(value) = inner.trim().strip_prefix(key.as_str()) {
                found.push(value.trim());
            }
        }
    }
    found
}

/// Every `- item` of the sequence under the first `key:` line, quotes removed.
fn sequence_after<'a>(text: &'a str, key: &str) -> Vec<&'a str> {
    let opener = format!("{key}:");
    let mut lines = text.lines().skip_while(|l| l.trim() != opener);
    let Some(head) = lines.next() else {
        return Vec::new();
    };
    let depth = indent(head);
    lines
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .take_while(|l| indent(l) >= depth && l.trim_start().starts_with("- "))
        .map(|l| l.trim_start()[2..].trim().trim_matches('"'))
        .collect()
}

/// The ringtls container's args: the `args:` sequence that starts with `serve`.
fn sidecar_serve_args(text: &str) -> Vec<&str> {
    text.match_indices("args:")
        .map(|(at, _)| sequence_after(&text[at..], "args"))
        .find(|args| args.first() == Some(&"serve"))
        .unwrap_or_default()
}

/// What is wrong with the sidecar manifest, as sentences; empty when nothing is.
fn sidecar_problems(text: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let readiness = values_in_block(text, "readinessProbe", "path");
    if readiness != ["/readyz"] {
        problems.push(format!(
            "readinessProbe paths are {readiness:?}, want one: /readyz (503 while draining)"
        ));
    }
    let liveness = values_in_block(text, "livenessProbe", "path");
    if liveness != ["/healthz"] {
        problems.push(format!(
            "livenessProbe paths are {liveness:?}, want one: /healthz (200 until exit)"
        ));
    }
    let args = sidecar_serve_args(text);
    let drain = flag_value(&args, "--drain-timeout").and_then(duration);
    let grace = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("terminationGracePeriodSeconds:"))
        .and_then(duration);
    match (drain, grace) {
        (Some(drain), Some(grace)) if grace > drain => {}
        (Some(drain), Some(grace)) => problems.push(format!(
            "terminationGracePeriodSeconds {grace:?} does not exceed --drain-timeout {drain:?}: \
             the kubelet would SIGKILL the drain"
        )),
        _ => problems.push(format!(
            "need --drain-timeout in the serve args ({args:?}) and terminationGracePeriodSeconds"
        )),
    }
    for flag in ["--watch", "--metrics"] {
        if !args.contains(&flag) {
            problems.push(format!("serve args lack {flag}"));
        }
    }
    problems
}

#[test]
fn sidecar_probes_readiness_and_outwaits_the_drain() {
    let problems = sidecar_problems(&read("kubernetes/sidecar.yaml"));
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn sidecar_checker_reports_short_grace_and_wrong_readiness_path() {
    let text = read("kubernetes/sidecar.yaml");
    let broken = text
        .replace(
            "terminationGracePeriodSeconds: 45",
            "terminationGracePeriodSeconds: 20",
        )
        .replacen("path: /readyz", "path: /healthz", 1);
    assert_ne!(broken, text, "the mutation must change the manifest");
    let problems = sidecar_problems(&broken);
    assert!(
        problems.iter().any(|p| p.contains("does not exceed")),
        "{problems:#?}"
    );
    assert!(
        problems.iter().any(|p| p.starts_with("readinessProbe")),
        "{problems:#?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Dockerfile
// ---------------------------------------------------------------------------------------------

/// Dockerfile instructions with continuation lines joined and comments dropped.
fn instructions(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (current.is_empty() && trimmed.is_empty()) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(head) => {
                current.push_str(head);
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                out.push(std::mem::take(&mut current));
            }
        }
    }
    out
}

/// The exec-form (JSON array) command of the last `keyword` instruction, after any options.
fn exec_form(instructions: &[String], keyword: &str) -> Option<Vec<String>> {
    let line = instructions
        .iter()
        .rev()
        .find(|l| l.split_whitespace().next() == Some(keyword))?;
    let json = &line[line.find('[')?..];
    serde_json::from_str(json).ok()
}

fn dockerfile_problems(text: &str) -> Vec<String> {
    let ins = instructions(text);
    let mut problems = Vec::new();
    let health = exec_form(&ins, "HEALTHCHECK").unwrap_or_default();
    if health.first().map(String::as_str) != Some(INSTALLED_BIN) || health.get(1).is_none() {
        problems.push(format!(
            "HEALTHCHECK does not run {INSTALLED_BIN} SUBCOMMAND: {health:?}"
        ));
    }
    let copied = ins
        .iter()
        .any(|l| l.starts_with("COPY --from=") && l.ends_with(&format!(" {INSTALLED_BIN}")));
    if !copied {
        problems.push(format!("no stage COPYs the binary to {INSTALLED_BIN}"));
    }
    let cmd = exec_form(&ins, "CMD").unwrap_or_default();
    let cmd: Vec<&str> = cmd.iter().map(String::as_str).collect();
    match flag_value(&cmd, "--drain-timeout").and_then(duration) {
        Some(drain) if drain < DOCKER_STOP_TIMEOUT => {}
        other => problems.push(format!(
            "CMD --drain-timeout {other:?} must be below docker stop's default \
             {DOCKER_STOP_TIMEOUT:?}"
        )),
    }
    problems
}

#[test]
fn dockerfile_health_check_runs_the_installed_binary_and_drain_fits_docker_stop() {
    let problems = dockerfile_problems(&read("Dockerfile"));
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn dockerfile_checker_reports_a_drain_longer_than_docker_stop() {
    let text = read("Dockerfile");
    let broken = text.replace(
        "\"--drain-timeout\", \"8s\"",
        "\"--drain-timeout\", \"30s\"",
    );
    assert_ne!(broken, text, "the mutation must change the Dockerfile");
    let problems = dockerfile_problems(&broken);
    assert!(
        problems.iter().any(|p| p.contains("docker stop")),
        "{problems:#?}"
    );
}

#[test]
fn dockerfile_health_check_names_a_subcommand_the_binary_has() {
    let ins = instructions(&read("Dockerfile"));
    let health = exec_form(&ins, "HEALTHCHECK").expect("HEALTHCHECK in exec form");
    let subcommand = health.get(1).expect("a subcommand after the binary");
    let out = common::run(["--help"]);
    out.assert_code(0);
    let help = format!("{}{}", out.stdout, out.stderr);
    assert!(
        help.lines()
            .any(|l| l.split_whitespace().next() == Some(subcommand.as_str())),
        "`ringtls --help` lists no `{subcommand}` subcommand:\n{help}"
    );
}

/// The `serve` arguments each packaged invocation passes: the Dockerfile's CMD, the unit's
/// ExecStart and the sidecar container's args.
fn packaged_serve_args() -> Vec<(&'static str, Vec<String>)> {
    let docker = exec_form(&instructions(&read("Dockerfile")), "CMD").unwrap_or_default();
    let service = unit_settings(&read("systemd/ringtls.service"));
    let exec: Vec<String> = setting(&service, "ExecStart")
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .map(str::to_owned)
        .collect();
    let sidecar_text = read("kubernetes/sidecar.yaml");
    let sidecar: Vec<String> = sidecar_serve_args(&sidecar_text)
        .into_iter()
        .map(str::to_owned)
        .collect();
    vec![
        ("Dockerfile", docker),
        ("ringtls.service", exec),
        ("sidecar.yaml", sidecar),
    ]
}

#[test]
fn packaged_invocations_use_only_flags_serve_has() {
    let out = common::run(["serve", "--help"]);
    out.assert_code(0);
    let help = format!("{}{}", out.stdout, out.stderr);
    let known: Vec<&str> = help
        .split_whitespace()
        .filter(|w| w.starts_with("--"))
        .collect();
    for (file, args) in packaged_serve_args() {
        assert_eq!(
            args.first().map(String::as_str),
            Some("serve"),
            "{file}: {args:?}"
        );
        for flag in args.iter().filter(|a| a.starts_with("--")) {
            assert!(
                known.contains(&flag.as_str()),
                "{file} passes {flag}, which `ringtls serve --help` does not list"
            );
        }
    }
}
