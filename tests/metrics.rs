//! `--metrics ADDR`: Prometheus text on /metrics and /healthz, on a listener of its own; counters
//! follow what the connections did. `promtool check metrics` lints the text in a test of its own,
//! so the counters are checked on a host without promtool too.

mod common;

use std::io::Write;

use common::client::{read_to_clean_eof, send_close_notify};
use common::{Setup, Upstream, connect, expect_alert, http_get};
use rustls::AlertDescription;

fn value(metrics: &str, series: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("no {series} in\n{metrics}"))
        .parse()
        .expect("integer value")
}

/// A server with metrics that has served Alice and rejected a stranger, with its /metrics text
/// once both connections are over.
struct Served {
    _setup: Setup,
    _upstream: Upstream,
    server: common::Server,
    metrics_addr: std::net::SocketAddr,
    body: String,
}

fn serve_alice_and_a_stranger() -> Served {
    let setup = Setup::new();
    let upstream = Upstream::echo();
    let server = setup
        .serve(upstream.addr)
        .args(["--metrics", "127.0.0.1:0", "--threads", "2"])
        .start();
    let metrics_addr = server
        .metrics
        .expect("metrics address in the listening line");

    let alice = setup.ca.client("Alice");
    let mut stream = connect(server.addr(), &setup.client(&alice)).expect("good client");
    send_close_notify(&mut stream).expect("close_notify");
    read_to_clean_eof(&mut stream).expect("clean close");
    let stranger = common::Ca::root("Stranger CA").client("Mallory");
    expect_alert(
        connect(server.addr(), &setup.client(&stranger)),
        AlertDescription::UnknownCA,
    );
    server.wait_for_stderr("both connection events", |s| {
        s.contains("conn.closed") && s.contains("conn.rejected")
    });

    let body = common::wait_metric(metrics_addr, "ringtls_connections_active", 0);
    Served {
        _setup: setup,
        _upstream: upstream,
        server,
        metrics_addr,
        body,
    }
}

#[test]
fn counts_handshakes_rejections_and_bytes_in_prometheus_format() {
    let Served {
        server,
        metrics_addr,
        body,
        ..
    } = serve_alice_and_a_stranger();
    let (status, _) = http_get(metrics_addr, "/metrics");
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(
        value(&body, "ringtls_handshakes_total{result=\"ok\",reason=\"\"}"),
        1
    );
    assert_eq!(
        value(
            &body,
            "ringtls_handshakes_total{result=\"rejected\",reason=\"unknown_ca\"}"
        ),
        1
    );
    assert_eq!(value(&body, "ringtls_connections_accepted_total"), 2);
    assert_eq!(value(&body, "ringtls_connections_active"), 0);
    let probe = common::PROBE.len() as u64;
    assert_eq!(value(&body, "ringtls_bytes_total{direction=\"up\"}"), probe);
    assert_eq!(
        value(&body, "ringtls_bytes_total{direction=\"down\"}"),
        probe
    );
    // The bytes down went through a pipe only if the connection took the kernel-TLS path.
    let closed = server.wait_for_line(&["conn.closed", "client=\"Alice\""]);
    let spliced = if closed.contains(" path=ktls ") {
        probe
    } else {
        0
    };
    assert_eq!(
        value(&body, "ringtls_bytes_spliced_total"),
        spliced,
        "{closed}"
    );
    assert_eq!(value(&body, "ringtls_handshake_duration_seconds_count"), 1);
    assert!(
        body.contains("ringtls_worker_info{worker=\"1\",driver="),
        "{body}"
    );

    let (status, body_health) = http_get(metrics_addr, "/healthz");
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(body_health, "ok\n");
    assert_eq!(http_get(metrics_addr, "/nope").0, "HTTP/1.1 404 Not Found");
}

#[test]
#[cfg_attr(
    not(has = "promtool"),
    ignore = "SKIPPED: promtool not found (apt-get install prometheus; .ci/run extracts promtool); format not linted"
)]
fn metrics_pass_promtool_check() {
    common::need("promtool");
    let body = serve_alice_and_a_stranger().body;
    let mut lint = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool");
    lint.stdin
        .take()
        .expect("stdin")
        .write_all(body.as_bytes())
        .expect("feed promtool");
    let out = lint.wait_with_output().expect("promtool result");
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn counts_an_unreachable_upstream_under_its_reason() {
    let setup = Setup::new();
    let server = setup
        .serve(common::upstream::refused_addr())
        .args(["--metrics", "127.0.0.1:0"])
        .start();
    let metrics_addr = server
        .metrics
        .expect("metrics address in the listening line");
    let alice = setup.ca.client("Alice");
    let mut stream = common::handshake(server.addr(), &setup.client(&alice)).expect("handshake");
    // The server says goodbye cleanly: close_notify, then EOF.
    read_to_clean_eof(&mut stream).expect("clean close from the server");
    server.wait_for_line(&["conn.closed", "reason=upstream_unreachable"]);
    let (_, body) = http_get(metrics_addr, "/metrics");
    assert_eq!(value(&body, "ringtls_upstream_connect_failures_total"), 1);
    assert_eq!(
        value(
            &body,
            "ringtls_handshakes_total{result=\"rejected\",reason=\"upstream_unreachable\"}"
        ),
        1
    );
}
