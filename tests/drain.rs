//! Drain and stop: SIGTERM/SIGINT close the listeners (at once, or after `--drain-delay`), let
//! established connections finish up to `--drain-timeout`, then exit 0; `/readyz` turns 503
//! while `/healthz` stays 200; a second signal exits at once.

mod common;

use std::io::{ErrorKind, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::client::{self, read_to_clean_eof, send_close_notify};
use common::{Driver, Pattern, Setup, Upstream, connect, probe, run, sha256};

/// Bound on how long a draining server may take to exit once it has nothing left to wait for.
const EXIT_TIMEOUT: Duration = Duration::from_secs(10);

fn assert_refused(server: &common::Server) {
    match TcpStream::connect_timeout(&server.addr(), Duration::from_secs(5)) {
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => {}
        other => panic!("a new connection during the drain must be refused, got {other:?}"),
    }
}

#[test]
fn drain_lets_a_long_transfer_finish_and_refuses_new_connections() {
    drain_finishes_transfer(Driver::IoUring);
}

#[test]
fn drain_lets_a_long_transfer_finish_and_refuses_new_connections_on_epoll() {
    drain_finishes_transfer(Driver::Epoll);
}

fn drain_finishes_transfer(driver: Driver) {
    let setup = Setup::new();
    let upstream = Upstream::record();
    let mut server = setup
        .serve(upstream.addr)
        .args(["--metrics", "127.0.0.1:0", "--drain-timeout", "60s"])
        .driver(driver)
        .start();
    let metrics = server.metrics.expect("metrics address");
    assert_eq!(common::http_get(metrics, "/readyz").0, "HTTP/1.1 200 OK");
    run([
        "healthcheck",
        "--metrics",
        &metrics.to_string(),
        "--path",
        "/readyz",
    ])
    .assert_code(0);
    let alice = setup.ca.client("Alice");
    // The record upstream never answers, so no echo probe: the bytes arriving prove the rest.
    let mut stream = client::handshake(server.addr(), &setup.client(&alice)).expect("good client");

    let mut data = vec![0u8; 16 << 20];
    Pattern::new(11).fill(&mut data);
    let (first, second) = data.split_at(data.len() / 2);
    stream.write_all(first).expect("first half before SIGTERM");
    server.signal(libc::SIGTERM);
    server.wait_for_line(&["drain.listeners_closed"]);

    assert_refused(&server);
    assert_eq!(
        common::http_get(metrics, "/readyz").0,
        "HTTP/1.1 503 Service Unavailable"
    );
    assert_eq!(common::http_get(metrics, "/healthz").0, "HTTP/1.1 200 OK");
    stream
        .write_all(second)
        .expect("second half during the drain");
    send_close_notify(&mut stream).expect("close_notify");
    let rest = read_to_clean_eof(&mut stream).expect("clean end after the upstream's EOF");
    assert!(rest.is_empty());

    let received = upstream.wait_received(1, Duration::from_secs(30));
    assert_eq!(received[0].len(), data.len(), "bytes lost in the drain");
    assert_eq!(
        sha256(&received[0]),
        sha256(&data),
        "bytes corrupted in the drain"
    );
    let status = server
        .wait_exit(EXIT_TIMEOUT)
        .expect("exits once the last connection ends");
    assert_eq!(status.code(), Some(0), "{}", server.stderr());
    server.wait_for_line(&["drain.done"]);
}

#[test]
fn drain_timeout_closes_what_is_left_and_exits_zero() {
    let setup = Setup::new();
    let upstream = Upstream::echo();
    let mut server = setup
        .serve(upstream.addr)
        .args(["--drain-timeout", "1s"])
        .start();
    let alice = setup.ca.client("Alice");
    let mut held = connect(server.addr(), &setup.client(&alice)).expect("good client");
    probe(&mut held).expect("established");
    server.signal(libc::SIGINT);
    let status = server
        .wait_exit(EXIT_TIMEOUT)
        .expect("exits after --drain-timeout");
    assert_eq!(status.code(), Some(0), "{}", server.stderr());
    server.wait_for_line(&["drain.timeout", "closing=1"]);
}

#[test]
fn a_second_signal_exits_at_once() {
    let setup = Setup::new();
    let upstream = Upstream::echo();
    let mut server = setup
        .serve(upstream.addr)
        .args(["--drain-timeout", "600s"])
        .start();
    let alice = setup.ca.client("Alice");
    let mut held = connect(server.addr(), &setup.client(&alice)).expect("good client");
    probe(&mut held).expect("established");
    server.signal(libc::SIGTERM);
    server.wait_for_line(&["drain.listeners_closed"]);
    probe(&mut held).expect("the held connection still works while draining");
    server.signal(libc::SIGTERM);
    // Far below the 600 s drain timeout: only the second signal can end it this soon.
    let status = server
        .wait_exit(EXIT_TIMEOUT)
        .expect("a second signal exits at once");
    assert_eq!(status.code(), Some(0), "{}", server.stderr());
    server.wait_for_line(&["drain.abandoned", "closing=1"]);
}

#[test]
fn healthcheck_fails_when_nothing_answers() {
    let nobody = common::upstream::refused_addr().to_string();
    let out = run(["healthcheck", "--metrics", &nobody]);
    out.assert_code(1);
    assert!(
        out.stderr.contains(&nobody),
        "names the address: {}",
        out.stderr
    );
}

#[test]
fn drain_delay_keeps_accepting_while_readyz_says_503() {
    let setup = Setup::new();
    let upstream = Upstream::echo();
    let mut server = setup
        .serve(upstream.addr)
        .args(["--metrics", "127.0.0.1:0", "--drain-delay", "600s"])
        .start();
    let metrics = server.metrics.expect("metrics address");
    let alice = setup.ca.client("Alice");
    let mut held = connect(server.addr(), &setup.client(&alice)).expect("good client");
    probe(&mut held).expect("established");
    server.signal(libc::SIGTERM);
    server.wait_for_line(&["drain.start", "delay_ms=600000"]);
    assert_eq!(
        common::http_get(metrics, "/readyz").0,
        "HTTP/1.1 503 Service Unavailable",
        "a balancer must see the drain before the listeners close"
    );
    // Still accepting: a connection the balancer sent before its health check noticed.
    let mut late = connect(server.addr(), &setup.client(&alice)).expect("accepted in the delay");
    probe(&mut late).expect("served in the delay");
    probe(&mut held).expect("the held connection still works");
    assert!(
        !server.stderr().contains("drain.listeners_closed"),
        "{}",
        server.stderr()
    );
    // A second signal ends the delay (and the drain) at once.
    server.signal(libc::SIGTERM);
    let status = server.wait_exit(EXIT_TIMEOUT).expect("exits at once");
    assert_eq!(status.code(), Some(0), "{}", server.stderr());
    server.wait_for_line(&["drain.abandoned", "closing=2"]);
}

#[test]
fn drain_delay_then_closes_the_listeners() {
    let setup = Setup::new();
    let upstream = Upstream::echo();
    let mut server = setup
        .serve(upstream.addr)
        .args(["--drain-delay", "1s"])
        .start();
    server.signal(libc::SIGTERM);
    server.wait_for_line(&["drain.listeners_closed"]);
    assert_refused(&server);
    let status = server
        .wait_exit(EXIT_TIMEOUT)
        .expect("exits after the delay");
    assert_eq!(status.code(), Some(0), "{}", server.stderr());
    let log = server.stderr();
    let start = log.find("drain.start").expect("drain.start");
    assert!(log[start..].contains("delay_ms=1000"), "{log}");
}
