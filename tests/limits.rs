//! Limits a connection lives under: the idle timeout, the per-worker share of `--max-conns`
//! (also under a flood of connections), and `--threads` starting that many pinned workers.

mod common;

use std::io::{ErrorKind, Read};
use std::net::TcpStream;
use std::time::Duration;

use common::client::{IO_TIMEOUT, read_to_clean_eof, tcp_connect};
use common::process::in_shell;
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
    let line = server.wait_for_line(&["conn.closed", "reason=idle_timeout"]);
    // Never before the timeout: the connection's own age, as the server logged it.
    let ms: u64 = line
        .split(" ms=")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no ms= in {line}"));
    assert!(
        ms >= 1000,
        "closed after {ms} ms of a 1 s idle timeout: {line}"
    );
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
            .any(|l| l == "ringtls_handshakes_total{result=\"rejected\",reason=\"max_conns\",endpoint=\"\"} 1"),
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
fn max_conns_holds_under_a_flood_and_recovers() {
    const LIMIT: usize = 8;
    const FLOOD: usize = 200;
    let setup = Setup::new();
    let upstream = Upstream::echo();
    let server = setup
        .serve(upstream.addr)
        .args([
            "--threads",
            "2",
            "--max-conns",
            "8",
            "--metrics",
            "127.0.0.1:0",
        ])
        .start();
    let alice = setup.ca.client("Alice");
    let opts = setup.client(&alice);

    // Fill both workers to their share of 4. SO_REUSEPORT picks the worker by a hash of the
    // client's address, so a fifth client can land on a full worker while the other has room:
    // such a client is refused like any over-limit one and tried again from a new port.
    let mut held = Vec::with_capacity(LIMIT);
    let mut refused_good = 0;
    while held.len() < LIMIT {
        assert!(
            refused_good < 100,
            "could not hold {LIMIT} clients: {refused_good} refused, {} held",
            held.len()
        );
        match connect(server.addr(), &opts) {
            Ok(stream) => held.push(stream),
            Err(_) => refused_good += 1,
        }
    }

    // The flood: plain TCP connects that never send a byte. Every one must be accepted and
    // closed at once, since both workers are full.
    let flood: Vec<TcpStream> = (0..FLOOD).map(|_| tcp_connect(server.addr())).collect();
    for (i, mut sock) in flood.into_iter().enumerate() {
        sock.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
        let mut buf = [0u8; 16];
        match sock.read(&mut buf) {
            Ok(0) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
            Ok(n) => panic!("flood connection {i} got {n} bytes instead of a close"),
            Err(e) => panic!("flood connection {i} was not closed by the server: {e}"),
        }
    }

    // The held clients were not disturbed.
    for (i, stream) in held.iter_mut().enumerate() {
        probe(stream).unwrap_or_else(|e| panic!("held client {i} after the flood: {e:?}"));
    }

    // Each refusal is counted before its line is written: once all lines are there, so is
    // every count.
    let refusals = refused_good + FLOOD;
    server.wait_for_stderr(&format!("{refusals} max_conns refusals"), |s| {
        s.lines()
            .filter(|l| l.contains("conn.rejected") && l.contains("reason=max_conns"))
            .count()
            >= refusals
    });
    let (_, metrics) = common::http_get(server.metrics.expect("metrics address"), "/metrics");
    let expected = format!(
        "ringtls_handshakes_total{{result=\"rejected\",reason=\"max_conns\",endpoint=\"\"}} {refusals}"
    );
    assert!(
        metrics.lines().any(|l| l == expected),
        "expected {expected:?}:\n{metrics}"
    );
    assert!(
        metrics
            .lines()
            .any(|l| l == format!("ringtls_connections_active {LIMIT}")),
        "held clients not active:\n{metrics}"
    );
    assert_eq!(
        upstream.accepted(),
        LIMIT,
        "a refused connection reached the upstream"
    );

    // Once the held clients leave, the limit frees up again.
    drop(held);
    server.wait_for_stderr(&format!("{LIMIT} conn.closed lines"), |s| {
        s.lines().filter(|l| l.contains("conn.closed")).count() >= LIMIT
    });
    connect(server.addr(), &opts).expect("a client after the held ones left");
    assert_eq!(upstream.accepted(), LIMIT + 1);
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

#[test]
fn keeps_serving_through_file_descriptor_exhaustion() {
    const FLOOD: usize = 60;
    let setup = Setup::new();
    let upstream = Upstream::echo();
    let server = setup
        .serve(upstream.addr)
        .args(["--threads", "1"])
        // Both the soft and the hard limit, so the raise to the hard limit at start changes
        // nothing.
        .wrap(|cmd| in_shell(cmd, "ulimit -n 40 &&"))
        .start();
    let alice = setup.ca.client("Alice");
    let opts = setup.client(&alice);
    connect(server.addr(), &opts).expect("served before the flood");

    // Silent connections, each holding a descriptor until its handshake times out or it
    // closes: past the limit, accept(2) fails with EMFILE.
    let flood: Vec<TcpStream> = (0..FLOOD).map(|_| tcp_connect(server.addr())).collect();
    let line = server.wait_for_line(&["accept.error", "Too many open files"]);
    assert!(line.contains("backoff_ms=50"), "{line}");
    drop(flood);

    // The freed descriptors are enough again: the worker neither exited nor stopped accepting.
    connect(server.addr(), &opts).expect("served after the flood");
    let errors = server
        .stderr()
        .lines()
        .filter(|l| l.contains("accept.error"))
        .count();
    // One line per second at most, however many retries: a spinning or unlimited log would
    // print hundreds here.
    assert!(
        errors <= 10,
        "{errors} accept.error lines:\n{}",
        server.stderr()
    );
}
