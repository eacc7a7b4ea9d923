//! `--metrics ADDR`: Prometheus text on /metrics and /healthz, on a listener of its own; counters
//! follow what the connections did. `promtool check metrics` lints the text in a test of its own,
//! so the counters are checked on a host without promtool too. And the listener under attack:
//! slow clients holding incomplete requests must not keep a probe from its answer, an oversized
//! request is refused, and a request that never completes is closed.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

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
        value(
            &body,
            "ringtls_handshakes_total{result=\"ok\",reason=\"\",endpoint=\"default\"}"
        ),
        1
    );
    assert_eq!(
        value(
            &body,
            "ringtls_handshakes_total{result=\"rejected\",reason=\"unknown_ca\",endpoint=\"default\"}"
        ),
        1
    );
    assert_eq!(value(&body, "ringtls_connections_accepted_total"), 2);
    assert_eq!(value(&body, "ringtls_connections_active"), 0);
    let probe = common::PROBE.len() as u64;
    assert_eq!(
        value(
            &body,
            "ringtls_bytes_total{direction=\"up\",endpoint=\"default\"}"
        ),
        probe
    );
    assert_eq!(
        value(
            &body,
            "ringtls_bytes_total{direction=\"down\",endpoint=\"default\"}"
        ),
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
        value(&body, "ringtls_bytes_spliced_total{endpoint=\"default\"}"),
        spliced,
        "{closed}"
    );
    assert_eq!(
        value(
            &body,
            "ringtls_handshake_duration_seconds_count{endpoint=\"default\"}"
        ),
        1
    );
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
    assert_eq!(
        value(
            &body,
            "ringtls_upstream_connect_failures_total{endpoint=\"default\"}"
        ),
        1
    );
    assert_eq!(
        value(
            &body,
            "ringtls_handshakes_total{result=\"rejected\",reason=\"upstream_unreachable\",endpoint=\"default\"}"
        ),
        1
    );
}

/// How long a probe may take, connect to last byte. A kubelet's default is 1 s; this is five
/// times that, so only a listener that never answers fails it (the old one-at-a-time listener
/// held by a trickling client never did), not a slow machine.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Slow clients attacking the metrics listener, as in the issue: each one connects, sends the start
/// of a request line and then one byte a second, never finishing it; when the server closes it,
/// it comes back a second later. They stop when this is finished or dropped (a failing test).
struct SlowClients {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    connects: Arc<AtomicU64>,
    closed_by_server: Arc<AtomicU64>,
}

impl SlowClients {
    /// Starts `count` slow clients and waits (bounded) until each has connected and sent its
    /// first bytes once; returns how many did, for the report.
    fn start(addr: SocketAddr, count: usize) -> (SlowClients, usize) {
        let stop = Arc::new(AtomicBool::new(false));
        let connects = Arc::new(AtomicU64::new(0));
        let closed_by_server = Arc::new(AtomicU64::new(0));
        let (ready_tx, ready_rx) = mpsc::channel();
        let threads = (0..count)
            .map(|_| {
                let (stop, connects, closed) = (
                    Arc::clone(&stop),
                    Arc::clone(&connects),
                    Arc::clone(&closed_by_server),
                );
                let ready = ready_tx.clone();
                std::thread::Builder::new()
                    .stack_size(64 * 1024)
                    .spawn(move || slow_client(addr, &stop, &connects, &closed, ready))
                    .expect("spawn a slow client")
            })
            .collect();
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut ready = 0;
        while ready < count {
            let left = deadline.saturating_duration_since(Instant::now());
            if ready_rx.recv_timeout(left).is_err() {
                break;
            }
            ready += 1;
        }
        let clients = SlowClients {
            stop,
            threads,
            connects,
            closed_by_server,
        };
        (clients, ready)
    }

    /// Stops the clients; returns (connects, connections the server closed).
    fn finish(mut self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
        (
            self.connects.load(Ordering::Relaxed),
            self.closed_by_server.load(Ordering::Relaxed),
        )
    }
}

impl Drop for SlowClients {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// One slow client's life: its pace is the read timeout (a second without news from the server
/// means: send the next byte), so it also notices at once when the server closes it.
fn slow_client(
    addr: SocketAddr,
    stop: &AtomicBool,
    connects: &AtomicU64,
    closed_by_server: &AtomicU64,
    ready: mpsc::Sender<()>,
) {
    let tick = Duration::from_secs(1);
    let mut ready = Some(ready);
    while !stop.load(Ordering::Relaxed) {
        let mut sock = match TcpStream::connect_timeout(&addr, tick) {
            Ok(sock) => sock,
            // A full accept queue drops the SYN (the timeout above is the pace then); a refusal
            // comes at once, and must not turn into a spin.
            Err(_) => {
                std::thread::sleep(Duration::from_millis(100)); // readiness-ok: retry pace
                continue;
            }
        };
        connects.fetch_add(1, Ordering::Relaxed);
        if sock.set_read_timeout(Some(tick)).is_err() || sock.write_all(b"GET /slow").is_err() {
            continue;
        }
        if let Some(ready) = ready.take() {
            let _ = ready.send(());
        }
        let mut buf = [0u8; 512];
        while !stop.load(Ordering::Relaxed) {
            match sock.read(&mut buf) {
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    if sock.write_all(b"w").is_err() {
                        closed_by_server.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                }
                // EOF, a reset, or an answer (a 4xx): the server is done with this one.
                _ => {
                    closed_by_server.fetch_add(1, Ordering::Relaxed);
                    // Come back at the attack's pace, not in a reconnect storm.
                    std::thread::sleep(tick); // readiness-ok: the slow client's pace is the attack
                    break;
                }
            }
        }
    }
}

/// What came back on one connection before the server closed it (or `timeout` passed).
#[derive(Debug)]
enum Reply {
    /// The server closed the connection (EOF or a reset) after sending these bytes.
    Closed(Vec<u8>),
    /// Still open at the deadline, with these bytes so far.
    TimedOut(Vec<u8>),
}

/// Reads until the server closes the connection or `deadline`.
fn read_reply(sock: &mut TcpStream, deadline: Instant) -> Reply {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || sock.set_read_timeout(Some(left)).is_err() {
            return Reply::TimedOut(got);
        }
        match sock.read(&mut buf) {
            Ok(0) => return Reply::Closed(got),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Reply::TimedOut(got);
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return Reply::Closed(got),
        }
    }
}

/// One probe as a kubelet sends it: connect, GET, read the whole response, within PROBE_TIMEOUT.
/// Returns the raw response and how long it took.
fn probe(addr: SocketAddr, path: &str) -> Result<(String, Duration), String> {
    let start = Instant::now();
    let deadline = start + PROBE_TIMEOUT;
    let mut sock =
        TcpStream::connect_timeout(&addr, PROBE_TIMEOUT).map_err(|e| format!("connect: {e}"))?;
    sock.set_write_timeout(Some(PROBE_TIMEOUT))
        .map_err(|e| format!("set_write_timeout: {e}"))?;
    write!(
        sock,
        "GET {path} HTTP/1.1\r\nHost: probe\r\nUser-Agent: kube-probe/1.31\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("request: {e}"))?;
    match read_reply(&mut sock, deadline) {
        Reply::Closed(bytes) => Ok((
            String::from_utf8_lossy(&bytes).into_owned(),
            start.elapsed(),
        )),
        Reply::TimedOut(bytes) => Err(format!(
            "no complete response within {PROBE_TIMEOUT:?}; got {:?}",
            String::from_utf8_lossy(&bytes)
        )),
    }
}

fn metrics_server(setup: &Setup, upstream: &Upstream) -> (common::Server, SocketAddr) {
    let server = setup
        .serve(upstream.addr)
        .args(["--metrics", "127.0.0.1:0"])
        .start();
    let addr = server
        .metrics
        .expect("metrics address in the listening line");
    (server, addr)
}

#[test]
fn answers_every_probe_while_200_slow_clients_hold_incomplete_requests() {
    let setup = Setup::new();
    let upstream = Upstream::echo();
    let (_server, addr) = metrics_server(&setup, &upstream);

    let (slow, connected) = SlowClients::start(addr, 200);
    println!("slow clients: {connected} of 200 connected and sending");
    let mut latencies = Vec::new();
    for i in 0..30 {
        let (path, body) = if i % 2 == 0 {
            ("/healthz", "ok\n")
        } else {
            ("/readyz", "ready\n")
        };
        let (response, took) = probe(addr, path).unwrap_or_else(|e| {
            panic!(
                "probe #{i} of {path} under 200 slow clients ({} answered before it): {e}",
                latencies.len()
            )
        });
        assert!(
            response.starts_with("HTTP/1.1 200 OK\r\n") && response.ends_with(body),
            "probe #{i} of {path}: {response:?}"
        );
        latencies.push(took);
        // A kubelet probes periodically; spread the probes over the slow clients' deadlines,
        // evictions and reconnects.
        std::thread::sleep(Duration::from_millis(100)); // readiness-ok: the probes' own period
    }
    let (connects, closed) = slow.finish();
    latencies.sort();
    println!(
        "probe latency under 200 slow clients: median {:.1} ms, max {:.1} ms over {} probes \
         (slow clients: {connects} connects, {closed} closed by the server)",
        latencies[latencies.len() / 2].as_secs_f64() * 1e3,
        latencies[latencies.len() - 1].as_secs_f64() * 1e3,
        latencies.len()
    );
}

#[test]
fn refuses_a_request_over_the_size_bound_with_431_or_a_close() {
    let setup = Setup::new();
    let upstream = Upstream::echo();
    let (_server, addr) = metrics_server(&setup, &upstream);

    let mut sock = TcpStream::connect_timeout(&addr, PROBE_TIMEOUT).expect("connect");
    sock.set_write_timeout(Some(PROBE_TIMEOUT))
        .expect("write timeout");
    // A whole, well-formed request, only too big: 64 KiB of one header.
    let request = format!(
        "GET /healthz HTTP/1.1\r\nHost: probe\r\nX-Pad: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    // The server may close before it has read everything: a failed write is one of the
    // outcomes this test accepts.
    let _ = sock.write_all(request.as_bytes());
    match read_reply(&mut sock, Instant::now() + PROBE_TIMEOUT) {
        Reply::Closed(bytes) => {
            let response = String::from_utf8_lossy(&bytes);
            assert!(
                bytes.is_empty() || response.starts_with("HTTP/1.1 431 "),
                "expected 431 or a close, got {response:?}"
            );
            println!(
                "oversized request: {}",
                response
                    .lines()
                    .next()
                    .unwrap_or("closed without a response")
            );
        }
        Reply::TimedOut(bytes) => panic!(
            "oversized request still open after {PROBE_TIMEOUT:?}: {:?}",
            String::from_utf8_lossy(&bytes)
        ),
    }
}

#[test]
fn closes_a_request_that_never_completes_after_the_deadline() {
    let setup = Setup::new();
    let upstream = Upstream::echo();
    let (_server, addr) = metrics_server(&setup, &upstream);

    // Five bytes a second: every read the server does gets news long before any per-read
    // timeout, so only a deadline on the whole request ends it.
    let start = Instant::now();
    let mut sock = TcpStream::connect_timeout(&addr, PROBE_TIMEOUT).expect("connect");
    sock.write_all(b"GET /healthz HTTP/1.1\r\nX-Slow: ")
        .expect("request start");
    let bound = Instant::now() + Duration::from_secs(15);
    let outcome = loop {
        match read_reply(&mut sock, Instant::now() + Duration::from_millis(200)) {
            Reply::TimedOut(bytes) if bytes.is_empty() => {}
            other => break other,
        }
        if Instant::now() >= bound {
            break Reply::TimedOut(Vec::new());
        }
        if sock.write_all(b"s").is_err() {
            break Reply::Closed(Vec::new());
        }
    };
    let took = start.elapsed();
    match outcome {
        Reply::Closed(bytes) => assert!(
            !String::from_utf8_lossy(&bytes).contains(" 200 "),
            "an incomplete request was answered: {:?}",
            String::from_utf8_lossy(&bytes)
        ),
        Reply::TimedOut(_) => panic!("a request trickling for {took:?} was never closed"),
    }
    println!("a never-completing request was closed after {took:?}");
}
