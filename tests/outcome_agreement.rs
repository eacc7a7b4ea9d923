//! The log and the metrics tell one story: after a mixed workload (good clients, each kind of
//! refusal, idle closes, an unreachable upstream, the max-conns refusal of the accept loop), the
//! count of each reason in the events equals the metric of that reason.
//!
//! The mapping: `conn.rejected reason=R` is `ringtls_handshakes_total{result="rejected",
//! reason="R"}`; `conn.closed reason=R` is `ringtls_connections_closed_total{reason="R"}`, except
//! `upstream_unreachable`, a close event for a client turned away after a good handshake, which
//! the metrics count as a rejection.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::client::{send_close_notify, tcp_connect};
use common::upstream::refused_addr;
use common::{Setup, Upstream, connect, expect_alert, handshake, http_get};
use rustls::AlertDescription;

/// Reason counts of the `conn.*` events in a JSON log: ("rejected" | "closed", reason) -> n.
fn event_counts(stderr: &str) -> BTreeMap<(String, String), u64> {
    let mut counts = BTreeMap::new();
    for line in stderr.lines() {
        let Ok(event) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let kind = match event["event"].as_str() {
            Some("conn.rejected") => "rejected",
            Some("conn.closed") if event["reason"] == "upstream_unreachable" => "rejected",
            Some("conn.closed") => "closed",
            _ => continue,
        };
        let reason = event["reason"].as_str().unwrap_or("").to_owned();
        *counts.entry((kind.to_owned(), reason)).or_default() += 1;
    }
    counts
}

/// The same counts from `/metrics`, leaving out zeros and the handshake successes.
fn metric_counts(metrics: SocketAddr) -> BTreeMap<(String, String), u64> {
    let (_, body) = http_get(metrics, "/metrics");
    let mut counts = BTreeMap::new();
    for line in body.lines() {
        let (kind, rest) = if let Some(rest) =
            line.strip_prefix("ringtls_handshakes_total{result=\"rejected\",reason=\"")
        {
            ("rejected", rest)
        } else if let Some(rest) = line.strip_prefix("ringtls_connections_closed_total{reason=\"") {
            ("closed", rest)
        } else {
            continue;
        };
        // `R",endpoint="E"} N`: summed over the endpoints.
        let (reason, rest) = rest.split_once('"').expect("a series line");
        let (_, value) = rest.split_once("} ").expect("a series line");
        let value: u64 = value.trim().parse().expect("a count");
        if value > 0 {
            *counts
                .entry((kind.to_owned(), reason.to_owned()))
                .or_default() += value;
        }
    }
    counts
}

/// Waits (bounded) until the log holds `n` connection events; returns their counts.
fn wait_events(server: &common::Server, n: u64) -> BTreeMap<(String, String), u64> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let counts = event_counts(&server.stderr());
        if counts.values().sum::<u64>() >= n {
            return counts;
        }
        assert!(
            Instant::now() < deadline,
            "only {counts:?} of {n} events\n{}",
            server.stderr()
        );
        server.wait_for_stderr("another event", |s| {
            event_counts(s).values().sum::<u64>() > counts.values().sum::<u64>()
        });
    }
}

#[test]
fn metrics_reason_counts_equal_the_events_after_a_mixed_workload() {
    let setup = Setup::new();
    let upstream = Upstream::echo();
    let server = setup
        .serve(upstream.addr)
        .args(["--metrics", "127.0.0.1:0", "--log-format", "json"])
        .args(["--threads", "2", "--idle-timeout", "300ms"])
        .args(["--handshake-timeout", "2s"])
        .start();
    let addr = server.addr();
    let alice = setup.ca.client("Alice Agreement");
    let stranger = common::Ca::root("Stranger CA").client("Mallory");
    let mut expected = 0;
    for _ in 0..12 {
        let mut stream = connect(addr, &setup.client(&alice)).expect("good client");
        send_close_notify(&mut stream).expect("close_notify");
        expected += 1;
    }
    for _ in 0..4 {
        expect_alert(
            connect(addr, &setup.anonymous()),
            AlertDescription::CertificateRequired,
        );
        expect_alert(
            connect(addr, &setup.client(&stranger)),
            AlertDescription::UnknownCA,
        );
        // Plaintext HTTP: a protocol error.
        let mut sock = tcp_connect(addr);
        sock.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .expect("write");
        let _ = sock.read_to_end(&mut Vec::new());
        // Half a record header, then gone: a truncated ClientHello, a protocol error too.
        let mut sock = tcp_connect(addr);
        sock.write_all(&[22, 3]).expect("write");
        drop(sock);
        // Gone before a byte: closed mid-handshake.
        drop(tcp_connect(addr));
        expected += 5;
    }
    // Held without a byte until --idle-timeout closes them.
    let idle: Vec<_> = (0..3)
        .map(|_| handshake(addr, &setup.client(&alice)).expect("good client"))
        .collect();
    expected += 3;
    let events = wait_events(&server, expected);
    drop(idle);
    let metrics = metric_counts(server.metrics.expect("--metrics given"));
    assert_eq!(metrics, events, "metrics vs events");
    for reason in [
        "closed",
        "no_certificate",
        "unknown_ca",
        "protocol_error",
        "client_closed",
        "idle_timeout",
    ] {
        assert!(
            events.keys().any(|(_, r)| r == reason),
            "the workload produced no {reason}: {events:?}"
        );
    }

    // Clients turned away after a good handshake, and by the accept loop at --max-conns.
    let unreachable = setup
        .serve(refused_addr())
        .args(["--metrics", "127.0.0.1:0", "--log-format", "json"])
        .args(["--threads", "1", "--max-conns", "1"])
        .start();
    let held = handshake(unreachable.addr(), &setup.client(&alice));
    let mut expected = 1;
    drop(held);
    wait_events(&unreachable, expected);
    let hold = tcp_connect(unreachable.addr());
    for _ in 0..3 {
        let mut sock = tcp_connect(unreachable.addr());
        let _ = sock.read_to_end(&mut Vec::new());
        expected += 1;
    }
    wait_events(&unreachable, expected);
    // The one that held the slot leaves mid-handshake.
    drop(hold);
    let events = wait_events(&unreachable, expected + 1);
    let metrics = metric_counts(unreachable.metrics.expect("--metrics given"));
    assert_eq!(metrics, events, "metrics vs events");
    for reason in ["upstream_unreachable", "max_conns"] {
        assert!(
            events.keys().any(|(_, r)| r == reason),
            "no {reason}: {events:?}"
        );
    }
}
