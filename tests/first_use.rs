//! What a new user trips over on a first try (issue 13), each through the real binary: the
//! `demo` hint pasted into a shell, `load` exiting 0 when nothing got through, `healthcheck`
//! pointed at the TLS port, `check` naming a flag that was not given, and start-up lines
//! printed before a busy port's error.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::process::{Spawned, bin, run_command};
use common::{KeyFormat, Setup, Upstream, run};
// The fixed ports the hint names for a person to paste; the test swaps in ports of its own.
use ringtls::tools::demo::{HINT_LISTEN, HINT_UPSTREAM};

// `check` names the flags that were given, and only those.

fn check_policy(extra: &[&str]) -> String {
    let out = Setup::new().check(extra);
    out.assert_code(0);
    out.stdout
        .lines()
        .find(|l| l.starts_with("client identity policy:"))
        .unwrap_or_else(|| panic!("no policy line:\n{}", out.stdout))
        .to_owned()
}

#[test]
fn check_does_not_claim_allow_all_when_no_allow_flag_was_given() {
    assert_eq!(
        check_policy(&[]),
        "client identity policy: any client with a valid chain (no --allow-* flag given)"
    );
}

#[test]
fn check_names_allow_all_when_it_was_given() {
    assert_eq!(
        check_policy(&["--allow-all"]),
        "client identity policy: any client with a valid chain (--allow-all)"
    );
}

// A refused start is its error line and nothing else.

#[test]
fn busy_listen_port_prints_only_the_error_line() {
    let setup = Setup::new();
    let upstream = Upstream::echo();
    let holder = TcpListener::bind("127.0.0.1:0").expect("hold a port");
    let taken = holder.local_addr().expect("held address").to_string();
    let exited = match setup.serve(upstream.addr).listen(&taken).try_start() {
        Ok(server) => panic!("started on {taken}, which is held\n{}", server.stderr()),
        Err(exited) => exited,
    };
    assert_eq!(exited.code, Some(1), "{}", exited.stderr);
    let lines: Vec<&str> = exited.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line, the error:\n{}", exited.stderr);
    assert!(
        lines[0].starts_with(&format!("ringtls: error: --listen {taken}:")),
        "{}",
        exited.stderr
    );
}

#[test]
fn busy_metrics_port_prints_only_the_error_line() {
    let setup = Setup::new();
    let upstream = Upstream::echo();
    let holder = TcpListener::bind("127.0.0.1:0").expect("hold a port");
    let taken = holder.local_addr().expect("held address").to_string();
    let exited = match setup
        .serve(upstream.addr)
        .args(["--metrics", &taken])
        .try_start()
    {
        Ok(server) => panic!("started with --metrics {taken} held\n{}", server.stderr()),
        Err(exited) => exited,
    };
    assert_eq!(exited.code, Some(1), "{}", exited.stderr);
    let lines: Vec<&str> = exited.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line, the error:\n{}", exited.stderr);
    assert!(
        lines[0].starts_with(&format!("ringtls: error: --metrics {taken}:")),
        "{}",
        exited.stderr
    );
}

// `healthcheck` says what it reached, and never echoes a peer's raw bytes.

/// Asserts that `text` carries nothing a terminal would act on: no control byte but newlines,
/// and no invalid UTF-8 (the harness turns that into U+FFFD).
fn assert_printable(text: &str) {
    assert!(
        !text
            .chars()
            .any(|c| (c.is_control() && c != '\n') || c == '\u{fffd}'),
        "raw bytes from the peer reached the output: {text:?}"
    );
}

#[test]
fn healthcheck_names_a_tls_listener_instead_of_printing_its_bytes() {
    let setup = Setup::new();
    let upstream = Upstream::echo();
    let server = setup.serve(upstream.addr).start();
    let addr = server.addr();
    let out = run(["healthcheck", "--metrics", &addr.to_string()]);
    out.assert_code(1);
    assert_printable(&out.stderr);
    assert_eq!(
        out.stderr_lines(),
        [format!(
            "ringtls: error: --metrics {addr}/healthz: that is a TLS listener, not the --metrics one"
        )]
    );
}

#[test]
fn healthcheck_escapes_an_answer_that_is_not_http() {
    let peer = Upstream::custom(|mut sock| {
        let mut request = [0u8; 512];
        let _ = sock.read(&mut request);
        let _ = sock.write_all(b"\x1b]0;owned\x07\x1b[2J\xff\xfe not http\r\n");
    });
    let out = run(["healthcheck", "--metrics", &peer.addr.to_string()]);
    out.assert_code(1);
    assert_printable(&out.stderr);
    assert!(
        out.stderr
            .contains(r"\x1b]0;owned\x07\x1b[2J\xff\xfe not http"),
        "shown escaped: {}",
        out.stderr
    );
}

#[test]
fn healthcheck_reports_an_unhealthy_answer_as_every_subcommand_reports_errors() {
    let setup = Setup::new();
    let upstream = Upstream::echo();
    let server = setup
        .serve(upstream.addr)
        .args(["--metrics", "127.0.0.1:0"])
        .start();
    let metrics = server.metrics.expect("metrics address");
    let out = run([
        "healthcheck",
        "--metrics",
        &metrics.to_string(),
        "--path",
        "/no-such-path",
    ]);
    out.assert_code(1);
    assert_eq!(
        out.stderr_lines(),
        [format!(
            "ringtls: error: --metrics {metrics}/no-such-path: HTTP/1.1 404 Not Found"
        )]
    );
}

// `load` fails a run that got nothing through, or more failures than --max-failures.

/// A server with client authentication, and the files a `load` client needs.
struct LoadSetup {
    setup: Setup,
    _upstream: Upstream,
    server: common::Server,
    crt: String,
    key: String,
}

impl LoadSetup {
    fn new() -> LoadSetup {
        let setup = Setup::new();
        let upstream = Upstream::echo();
        let server = setup.serve(upstream.addr).start();
        let leaf = setup.ca.client("loader");
        let crt = setup.dir.write("client.pem", leaf.chain_pem());
        let key = setup
            .dir
            .write("client.key", leaf.key_pem(KeyFormat::Pkcs8));
        LoadSetup {
            crt: crt.to_str().expect("path").to_owned(),
            key: key.to_str().expect("path").to_owned(),
            setup,
            _upstream: upstream,
            server,
        }
    }

    /// `load --mode handshake` for 1s, with the client certificate or without, plus `extra`.
    fn load(&self, with_cert: bool, extra: &[&str]) -> common::Output {
        let addr = self.server.addr().to_string();
        let ca = self.setup.ca_file.to_str().expect("path");
        let mut args = vec![
            "load",
            "--connect",
            &addr,
            "--ca",
            ca,
            "--mode",
            "handshake",
            "--duration",
            "1s",
        ];
        if with_cert {
            args.extend(["--crt", &self.crt, "--key", &self.key]);
        }
        args.extend(extra);
        run(args)
    }
}

#[test]
fn load_exits_1_when_every_operation_failed() {
    let s = LoadSetup::new();
    let out = s.load(false, &[]);
    out.assert_code(1);
    assert!(
        out.stdout.contains("ok 0"),
        "the report still comes: {}",
        out.stdout
    );
    assert!(
        out.stderr
            .contains("ringtls: error: load: every operation failed"),
        "{}",
        out.stderr
    );
}

#[test]
fn load_max_failures_100_percent_accepts_a_run_where_all_failed() {
    let s = LoadSetup::new();
    s.load(false, &["--max-failures", "100%"]).assert_code(0);
}

#[test]
fn load_max_failures_fails_a_run_past_the_threshold() {
    let s = LoadSetup::new();
    for limit in ["0", "5", "50%", "0%"] {
        let out = s.load(false, &["--max-failures", limit]);
        out.assert_code(1);
        assert!(
            out.stderr
                .contains(&format!("more than --max-failures {limit}")),
            "{limit}: {}",
            out.stderr
        );
    }
}

#[test]
fn load_max_failures_zero_passes_a_clean_run() {
    let s = LoadSetup::new();
    let out = s.load(true, &["--max-failures", "0", "--json"]);
    out.assert_code(0);
    assert!(out.stdout.contains("\"failed\":0"), "{}", out.stdout);
}

#[test]
fn load_refuses_a_bad_max_failures_value() {
    for bad in ["150%", "many", "-1", "%"] {
        let out = run([
            "load",
            "--connect",
            "127.0.0.1:9",
            "--ca",
            "ca.pem",
            "--mode",
            "handshake",
            "--max-failures",
            bad,
        ]);
        out.assert_code(64);
        assert!(
            out.stderr
                .contains(&format!("ringtls: error: --max-failures {bad}: expected")),
            "{bad}: {}",
            out.stderr
        );
    }
}

// The `demo` hint, pasted as printed, and the keys the demo leaves behind: none.

const DEMO_TIMEOUT: Duration = Duration::from_secs(90);
const STEP_TIMEOUT: Duration = Duration::from_secs(20);

/// Runs `demo` with its temporary directory under `tmp` and `cwd` as the current directory.
fn run_demo(tmp: &Path, cwd: &Path) -> common::Output {
    let mut cmd = Command::new(bin());
    cmd.arg("demo").env("TMPDIR", tmp).current_dir(cwd);
    let out = run_command(cmd, DEMO_TIMEOUT);
    out.assert_code(0);
    out
}

/// The hint's command lines: the ones indented by two spaces after "Try it by hand".
fn hint_commands(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .skip_while(|l| !l.starts_with("Try it by hand"))
        .filter_map(|l| l.strip_prefix("  "))
        .map(str::to_owned)
        .collect()
}

/// `line` run by `sh`, as a paste would, with `exec` so that killing it kills the program.
fn shell(line: &str, cwd: &Path) -> Command {
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(format!("exec {line}")).current_dir(cwd);
    cmd
}

/// Waits for the `{"listening":["ADDR"]}` line of a pasted `upstream` or `serve`.
fn listening(spawned: &Spawned, what: &str) -> SocketAddr {
    let ready = spawned
        .stdout
        .wait_for(STEP_TIMEOUT, |out| out.contains("\"]"));
    assert!(
        ready,
        "{what} printed no listening line\n{}",
        spawned.output()
    );
    let text = spawned.stdout.text();
    let start = text.find("[\"").expect("listening line") + 2;
    let end = start + text[start..].find('"').expect("end of address");
    text[start..end].parse().expect("listening address")
}

#[test]
#[cfg_attr(
    not(has = "openssl"),
    ignore = "SKIPPED: openssl not found (apt-get install openssl)"
)]
#[cfg_attr(
    not(has = "curl"),
    ignore = "SKIPPED: curl not found (apt-get install curl)"
)]
fn demo_hint_works_when_pasted_into_a_shell() {
    common::need("openssl");
    common::need("curl");
    let tmp = tempfile::tempdir().expect("temp dir");
    let cwd = tempfile::tempdir().expect("work dir");
    let out = run_demo(tmp.path(), cwd.path());
    let lines = hint_commands(&out.stdout);
    let find = |needle: &str| {
        lines
            .iter()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no hint line with {needle:?}:\n{}", out.stdout))
            .clone()
    };
    let pki = find(" pki ");
    let upstream = find(" upstream ");
    let serve = find(" serve ");
    let openssl = find("openssl s_client");
    let curl = find("curl ");
    assert_eq!(lines.len(), 5, "five commands:\n{}", out.stdout);
    assert!(upstream.contains(HINT_UPSTREAM) && serve.contains(HINT_LISTEN));

    // First the PKI the demo no longer has, exactly as printed.
    let made = run_command(shell(&pki, cwd.path()), STEP_TIMEOUT);
    made.assert_code(0);

    // The upstream and serve lines end in `&` or stay in the foreground: either way they run
    // until killed. Their fixed ports become ports of this test's own.
    let upstream_line = upstream
        .trim_end_matches('&')
        .replace(HINT_UPSTREAM, "127.0.0.1:0");
    let up = Spawned::spawn(shell(&upstream_line, cwd.path()));
    let up_addr = listening(&up, "the pasted upstream");
    let serve_line = serve
        .replace(HINT_UPSTREAM, &up_addr.to_string())
        .replace(HINT_LISTEN, "127.0.0.1:0");
    let server = Spawned::spawn(shell(&serve_line, cwd.path()));
    let addr = listening(&server, "the pasted serve");
    let hint_port = HINT_LISTEN.rsplit(':').next().unwrap();
    let to_server = |line: &str| {
        line.replace(HINT_LISTEN, &addr.to_string())
            .replace(&format!(":{hint_port}/"), &format!(":{}/", addr.port()))
    };

    // With the certificate: a typed line comes back through the echo upstream.
    let mut with_cert = Spawned::spawn(shell(&to_server(&openssl), cwd.path()));
    assert!(
        with_cert.echoes("typed by hand", STEP_TIMEOUT),
        "the client with a certificate got no echo\n{}\n--- serve ---\n{}",
        with_cert.output(),
        server.output()
    );
    with_cert.finish(STEP_TIMEOUT);

    // Without one: refused with the certificate_required alert (116).
    let refused = run_command(shell(&to_server(&curl), cwd.path()), STEP_TIMEOUT);
    assert_ne!(
        refused.code,
        Some(0),
        "curl without a certificate got through"
    );
    assert!(
        refused.stderr.contains("alert certificate required"),
        "curl without a certificate: {}",
        refused.stderr
    );
}

#[test]
fn demo_removes_its_temporary_directory() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let cwd = tempfile::tempdir().expect("work dir");
    let out = run_demo(tmp.path(), cwd.path());
    let left: Vec<_> = std::fs::read_dir(tmp.path())
        .expect("read temp dir")
        .map(|e| e.expect("entry").path())
        .collect();
    assert!(left.is_empty(), "demo left {left:?} behind\n{}", out.stdout);
    // The hint wrote nothing either: only pasting its first line does.
    assert_eq!(std::fs::read_dir(cwd.path()).expect("read cwd").count(), 0);
}
