//! Limits a connection lives under: the idle timeout, the per-worker share of `--max-conns`,
//! and `--threads` starting that many pinned workers.

mod common;

use std::io::Read;
use std::time::Duration;

use common::client::{read_to_clean_eof, tcp_connect};
use common::{Setup, Upstream, connect, probe};

#[test]
fn closes_idle_connection_with_close_notify_after_idle_timeout() {
    let setup = Setup::new();
    let upstream = Upstream::echo();
    let server = setup
        .serve(upstream.addr)
        .args(["--idle-timeout", "1s"])
        .start();
    let alice = setup.ca.client("Idle Alice");
    let mut stream = connect(server.addr(), &setup.client(&alice)).expect("good client");
    // Nothing more is sent either way: the server must end the connection cleanly by itself.
    let rest = read_to_clean_eof(&mut stream).expect("close_notify then EOF from the server");
    assert!(rest.is_empty(), "unexpected bytes {rest:?}");
    server.wait_for_line(&["conn.closed", "reason=idle_timeout"]);
}

#[test]
fn keeps_busy_connection_open_past_idle_timeout() {
    let setup = Setup::new();
    let upstream = Upstream::echo();
    let server = setup
        .serve(upstream.addr)
        .args(["--idle-timeout", "1s"])
        .start();
    let alice = setup.ca.client("Busy Alice");
    let mut stream = connect(server.addr(), &setup.client(&alice)).expect("good client");
    // A round trip per 300 ms for ~2.4 s: activity keeps resetting the idle clock. The pacing
    // is the point of the test, not a wait for readiness.
    for _ in 0..8 {
        std::thread::sleep(Duration::from_millis(300)); // readiness-ok: pacing traffic below the idle timeout
        probe(&mut stream).expect("connection still open while busy");
    }
    assert!(!server.stderr().contains("reason=idle_timeout"));
}

#[test]
fn refuses_connections_beyond_max_conns_and_recovers() {
    let setup = Setup::new();
    let upstream = Upstream::echo();
    let server = setup
        .serve(upstream.addr)
        .args([
            "--threads",
            "1",
            "--max-conns",
            "1",
            "--metrics",
            "127.0.0.1:0",
        ])
        .start();
    let alice = setup.ca.client("Alice");
    let opts = setup.client(&alice);
    let first = connect(server.addr(), &opts).expect("first client within the limit");

    // The second is accepted by the kernel, then closed at once without a handshake.
    let mut sock = tcp_connect(server.addr());
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut buf = [0u8; 16];
    let n = sock.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "over-limit connection got bytes instead of a close");
    server.wait_for_line(&["conn.rejected", "reason=max_conns"]);
    let (_, metrics) = common::http_get(server.metrics.expect("metrics address"), "/metrics");
    assert!(
        metrics
            .lines()
            .any(|l| l == "ringtls_handshakes_total{result=\"rejected\",reason=\"max_conns\"} 1"),
        "max_conns not counted:\n{metrics}"
    );

    // Once the first one ends, the limit frees up again.
    drop(first);
    server.wait_for_line(&["conn.closed"]);
    connect(server.addr(), &opts).expect("a client after the first one left");
    assert_eq!(
        upstream.accepted(),
        2,
        "the refused connection reached the upstream"
    );
}

#[test]
fn starts_one_pinned_worker_per_thread() {
    let setup = Setup::new();
    let upstream = Upstream::echo();
    let server = setup.serve(upstream.addr).args(["--threads", "2"]).start();
    server.wait_for_line(&["worker.started", "worker=0"]);
    server.wait_for_line(&["worker.started", "worker=1"]);
    let alice = setup.ca.client("Alice");
    for _ in 0..8 {
        connect(server.addr(), &setup.client(&alice)).expect("client");
    }
    assert_eq!(upstream.accepted(), 8);
}
