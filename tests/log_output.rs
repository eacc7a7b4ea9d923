//! The event log never stalls serving, and says only what it was asked to: stderr a pipe nobody
//! reads, stderr closed, `--log-level` and `--log-connections`.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::client::try_connect_with;
use common::{Setup, StderrMode, Upstream, connect, expect_alert, http_get};
use rustls::AlertDescription;

/// Connections the stalled-stderr test serves: far past what a 64 KiB pipe holds in close
/// events (~500 bytes each), so a worker that waited on stderr would stop within the first few
/// hundred.
const CONNECTIONS: usize = 10_000;
const CLIENT_THREADS: usize = 4;

fn metric(metrics: std::net::SocketAddr, series: &str) -> u64 {
    let (_, body) = http_get(metrics, "/metrics");
    body.lines()
        .find_map(|l| l.strip_prefix(series))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {series} in\n{body}"))
}

#[test]
fn serves_10000_connections_while_nobody_reads_stderr_and_counts_the_dropped_lines() {
    let setup = Setup::new();
    let upstream = Upstream::echo();
    let mut server = setup
        .serve(upstream.addr)
        .args(["--threads", "1", "--metrics", "127.0.0.1:0"])
        .stderr(StderrMode::Unread)
        .start();
    let addr = server.addr();
    let metrics = server.metrics.expect("--metrics given");
    // One client config per thread: its session store lets most handshakes resume, which keeps
    // the 10,000 connections quick; each still logs one close event.
    let alice = setup.ca.client("Alice Stalled Log");
    let opts = Arc::new(setup.client(&alice));
    let threads: Vec<_> = (0..CLIENT_THREADS)
        .map(|t| {
            let opts = Arc::clone(&opts);
            std::thread::spawn(move || {
                let config = opts.config();
                for i in 0..CONNECTIONS / CLIENT_THREADS {
                    if let Err(e) = try_connect_with(addr, config.clone()) {
                        panic!("client thread {t}, connection {i}: {e:?}");
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("client thread");
    }
    let dropped = metric(metrics, "ringtls_log_events_dropped_total");
    assert!(
        dropped > 0,
        "{CONNECTIONS} close events cannot fit a pipe nobody reads"
    );
    // Still serving, and a rejection still gets its alert, with stderr stalled.
    connect(addr, &setup.client(&alice)).expect("served with stderr stalled");
    let stranger = common::Ca::root("Stranger CA").client("Mallory");
    expect_alert(
        connect(addr, &setup.client(&stranger)),
        AlertDescription::UnknownCA,
    );
    eprintln!("served {CONNECTIONS} connections; {dropped} event lines dropped");

    // The collector resumes: what was queued comes out, then one line counting the losses.
    server.read_stderr();
    let resumed = std::time::Instant::now();
    let line = server.wait_for_line(&["log.dropped", "count="]);
    eprintln!(
        "the queued lines and the count came out {:?} after resuming",
        resumed.elapsed()
    );
    let count: u64 = line
        .split(" count=")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in {line}"));
    // Close events of the last connections may still have been queued (and dropped) after the
    // first scrape: the line counts no more than the metric has now.
    let total = metric(metrics, "ringtls_log_events_dropped_total");
    assert!(count > 0 && count <= total, "{line} vs metric {total}");
    // Lines flow again after the gap.
    connect(addr, &setup.client(&alice)).expect("served after the stall");
    server.wait_for_line(&["conn.closed", "Alice Stalled Log"]);
}

#[test]
fn serves_with_stderr_closed() {
    let setup = Setup::new();
    let upstream = Upstream::echo();
    let server = setup
        .serve(upstream.addr)
        .args(["--threads", "1", "--metrics", "127.0.0.1:0"])
        .stderr(StderrMode::Closed)
        .start();
    let alice = setup.ca.client("Alice No Stderr");
    let config = setup.client(&alice).config();
    for _ in 0..200 {
        try_connect_with(server.addr(), config.clone()).expect("served with stderr closed");
    }
    let metrics = server.metrics.expect("--metrics given");
    assert!(metric(metrics, "ringtls_log_events_dropped_total") > 0);
    let (status, _) = http_get(metrics, "/healthz");
    assert!(status.contains("200"), "{status}");
}

#[test]
fn log_connections_rejected_logs_refusals_but_not_normal_closes() {
    let setup = Setup::new();
    let upstream = Upstream::echo();
    let server = setup
        .serve(upstream.addr)
        .args(["--threads", "1", "--log-connections", "rejected"])
        .start();
    let alice = setup.ca.client("Alice Quiet");
    connect(server.addr(), &setup.client(&alice)).expect("good client");
    drop(connect(server.addr(), &setup.client(&alice)).expect("good client"));
    let stranger = common::Ca::root("Stranger CA").client("Mallory");
    expect_alert(
        connect(server.addr(), &setup.client(&stranger)),
        AlertDescription::UnknownCA,
    );
    server.wait_for_line(&["conn.rejected", "reason=unknown_ca"]);
    // Events leave in order through one writer: the refusal came last, so any close line of
    // the good clients would already be there.
    let text = server.stderr();
    assert!(!text.contains("conn.closed"), "{text}");
}

#[test]
fn log_connections_none_and_log_level_warn_keep_connection_lines_out() {
    let setup = Setup::new();
    let upstream = Upstream::echo();
    for args in [
        ["--log-connections", "none"],
        ["--log-level", "warn"],
        ["--log-level", "error"],
    ] {
        let mut server = setup
            .serve(upstream.addr)
            .args(["--threads", "1"])
            .args(args)
            .start();
        let alice = setup.ca.client("Alice Silent");
        drop(connect(server.addr(), &setup.client(&alice)).expect("good client"));
        let stranger = common::Ca::root("Stranger CA").client("Mallory");
        expect_alert(
            connect(server.addr(), &setup.client(&stranger)),
            AlertDescription::UnknownCA,
        );
        // SIGTERM: the drain's own lines are the last thing written before exit.
        server.signal(libc::SIGTERM);
        let status = server.wait_exit(Duration::from_secs(20)).expect("exits");
        assert!(status.success(), "{args:?}: {status:?}");
        let text = server.stderr();
        assert!(!text.contains("conn."), "{args:?}:\n{text}");
        if args[1] == "error" {
            assert!(
                !text.contains(" INFO ") && !text.contains(" WARNING "),
                "{text}"
            );
        } else if args[0] == "--log-connections" {
            assert!(text.contains("serve.start"), "{args:?}:\n{text}");
        }
    }
}

#[test]
fn bad_log_flags_are_usage_errors_naming_the_flag() {
    for (flag, value) in [("--log-level", "loud"), ("--log-connections", "some")] {
        let out = common::run([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            "127.0.0.1:9",
            "--crt",
            "x.pem",
            "--key",
            "x.key",
            flag,
            value,
        ]);
        out.assert_code(64);
        assert!(
            out.stderr.contains(&format!("{flag} {value}")),
            "{}",
            out.stderr
        );
    }
}
