//! Broken upstreams and clients that vanish: each ends cleanly for the other side with the
//! right event and reason, and none stalls the other connections of its worker (every test
//! runs one worker, so "another client is served meanwhile" means "the same event loop").

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::client;
use common::upstream::echo_loop;
use common::{Failure, Pattern, Setup, Upstream, connect, probe, sha256};

/// An upstream whose first connection gets `first`, and every later one an echo.
fn first_then_echo(first: impl Fn(TcpStream) + Send + Sync + 'static) -> Upstream {
    let seen = AtomicUsize::new(0);
    Upstream::custom(move |sock| {
        if seen.fetch_add(1, Ordering::SeqCst) == 0 {
            first(sock)
        } else {
            echo_loop(sock)
        }
    })
}

/// A port on 127.0.0.1 that completes no TCP handshake: a listener with a backlog of 0 whose
/// one queue slot is taken and never accepted, so the kernel drops further SYNs. A blackhole
/// without leaving loopback.
fn blackhole() -> (SocketAddr, TcpListener, TcpStream) {
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket
        .bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .expect("bind");
    socket.listen(0).expect("listen");
    let listener: TcpListener = socket.into();
    let addr = listener.local_addr().expect("addr");
    let filler = TcpStream::connect(addr).expect("fill the one queue slot");
    (addr, listener, filler)
}

#[test]
fn a_blackholed_upstream_times_out_at_connect_timeout_without_stalling_the_worker() {
    let (addr, _listener, _filler) = blackhole();
    let setup = Setup::new();
    let server = setup
        .serve(addr)
        .args(["--threads", "1", "--connect-timeout", "2s"])
        .start();
    let alice = setup.ca.client("Alice");
    // The first client's connection now waits in the upstream connect...
    let mut waiting = client::handshake(server.addr(), &setup.client(&alice)).expect("handshake");
    // ...while the worker completes another handshake.
    client::handshake(server.addr(), &setup.client(&alice)).expect("a second handshake meanwhile");
    match probe(&mut waiting) {
        Err(Failure::Closed { clean: true }) => {}
        other => panic!("expected close_notify after the connect timeout, got {other:?}"),
    }
    let line = server.wait_for_line(&["conn.closed", "reason=upstream_unreachable"]);
    assert!(line.contains("timed out"), "{line}");
}

#[test]
fn an_upstream_reset_mid_stream_ends_the_client_without_close_notify() {
    let setup = Setup::new();
    let upstream = first_then_echo(|mut sock| {
        let mut buf = [0u8; 1024];
        let _ = sock.read_exact(&mut buf);
        socket2::SockRef::from(&sock)
            .set_linger(Some(Duration::ZERO))
            .expect("SO_LINGER 0");
        // Dropped with linger 0: a reset.
    });
    let server = setup.serve(upstream.addr).args(["--threads", "1"]).start();
    let alice = setup.ca.client("Alice");
    let mut stream = client::handshake(server.addr(), &setup.client(&alice)).expect("handshake");
    let _ = stream.write_all(&[7u8; 64 * 1024]);
    // No close_notify: the client must be able to tell a cut-off stream from a finished one.
    let mut rest = Vec::new();
    match stream.read_to_end(&mut rest) {
        Err(e) if e.kind() == ErrorKind::UnexpectedEof => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        other => panic!("expected an unclean end, got {other:?}"),
    }
    server.wait_for_line(&["conn.closed", "reason=upstream_reset"]);
    probe(&mut connect(server.addr(), &setup.client(&alice)).expect("next client"))
        .expect("the worker still serves");
}

#[test]
fn an_upstream_that_never_reads_pushes_back_on_the_client() {
    const BOUND: usize = 48 << 20;
    let setup = Setup::new();
    let upstream = first_then_echo(|sock| {
        // Holds the connection open without reading, until the terminator closes it.
        let _ = sock.set_read_timeout(Some(Duration::from_secs(60)));
        let mut one = [0u8; 1];
        let _ = sock.peek(&mut one);
        std::thread::park_timeout(Duration::from_secs(60));
    });
    let server = setup.serve(upstream.addr).args(["--threads", "1"]).start();
    let alice = setup.ca.client("Alice");
    let mut stuck = client::handshake(server.addr(), &setup.client(&alice)).expect("handshake");
    // As fast as it can for 5 s (loopback TLS would move gigabytes): only backpressure keeps
    // the total small. A watchdog ends the attempt, since a write blocked on a full window
    // can wait a long time while kernel buffers autotune.
    let started = std::time::Instant::now();
    let watchdog = stuck.sock.try_clone().expect("clone");
    let stop = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(5)); // readiness-ok: the length of the attempt
        let _ = watchdog.shutdown(std::net::Shutdown::Write);
    });
    let chunk = vec![0x33u8; 64 * 1024];
    let mut sent = 0;
    while sent < 4 * BOUND {
        match stuck.write_all(&chunk) {
            Ok(()) => sent += chunk.len(),
            Err(_) => break,
        }
    }
    stop.join().expect("watchdog");
    eprintln!(
        "upstream that never reads: the client got {sent} bytes out in {:?}",
        started.elapsed()
    );
    assert!(
        sent < BOUND,
        "{sent} bytes accepted for an upstream that reads nothing"
    );
    probe(&mut connect(server.addr(), &setup.client(&alice)).expect("another client"))
        .expect("the worker still serves while one connection is stalled");
}

#[test]
fn a_very_slow_upstream_reader_gets_every_byte_and_stalls_no_one() {
    const SIZE: usize = 4 << 20;
    let setup = Setup::new();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<Vec<u8>>();
    let done_tx = std::sync::Mutex::new(done_tx);
    // The connection carrying the big transfer gets the slow reader, the probes an echo: told
    // apart by their first bytes, not by which connection the upstream accepted first (under
    // load a probe's dial can overtake the transfer's).
    let upstream = Upstream::custom(move |mut sock| {
        let mut buf = vec![0u8; 16 * 1024];
        let mut got = Vec::new();
        match sock.read(&mut buf) {
            Ok(n) if buf[..n].starts_with(&common::PROBE[..n.min(common::PROBE.len())]) => {
                if sock.write_all(&buf[..n]).is_ok() {
                    echo_loop(sock);
                }
                return;
            }
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(_) => return,
        }
        // 16 KiB every 10 ms: about 1.6 MB/s.
        loop {
            match sock.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
            std::thread::sleep(Duration::from_millis(10)); // readiness-ok: being slow is the point
        }
        let _ = done_tx.lock().unwrap().send(got);
    });
    let server = setup.serve(upstream.addr).args(["--threads", "1"]).start();
    let alice = setup.ca.client("Alice");
    let opts = setup.client(&alice);
    let stream = client::handshake(server.addr(), &opts).expect("handshake");
    let (_reader, mut writer) = client::split(stream);
    let sender = std::thread::spawn(move || {
        let mut data = vec![0u8; SIZE];
        Pattern::new(5).fill(&mut data);
        writer.write_all(&data).expect("all bytes accepted, slowly");
        writer.close_notify().expect("close_notify");
        data
    });
    // Served meanwhile, on the same worker.
    for i in 0..5 {
        // The server's events say which side stalled, should this ever fail again (it did
        // twice in CI, with the probe's read timing out, and never alone).
        let mut other = connect(server.addr(), &opts).unwrap_or_else(|e| {
            panic!(
                "another client, #{i}: {e:?}\n--- server stderr ---\n{}",
                server.stderr()
            )
        });
        probe(&mut other).expect("echo");
    }
    let data = sender.join().expect("sender");
    // The upstream drains the buffered megabytes at its own pace; bounded generously for a
    // loaded machine.
    let got = done_rx
        .recv_timeout(Duration::from_secs(120))
        .expect("the slow upstream read to the end");
    server.wait_for_line(&["conn.closed", &format!("up={SIZE}")]);
    assert_eq!(got.len(), SIZE);
    assert_eq!(sha256(&got), sha256(&data));
}

#[test]
fn a_client_reset_mid_transfer_closes_the_upstream_and_is_logged() {
    let setup = Setup::new();
    let (ended_tx, ended_rx) = std::sync::mpsc::channel::<()>();
    let ended_tx = std::sync::Mutex::new(ended_tx);
    let upstream = first_then_echo(move |sock| {
        echo_loop(sock);
        let _ = ended_tx.lock().unwrap().send(());
    });
    let server = setup.serve(upstream.addr).args(["--threads", "1"]).start();
    let alice = setup.ca.client("Alice");
    let mut stream = connect(server.addr(), &setup.client(&alice)).expect("established");
    stream.write_all(&[1u8; 256 * 1024]).expect("send");
    stream.flush().expect("flush");
    socket2::SockRef::from(&stream.sock)
        .set_linger(Some(Duration::ZERO))
        .expect("SO_LINGER 0");
    drop(stream);
    ended_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the upstream connection ended with the client");
    server.wait_for_line(&["conn.closed", "reason=client_reset"]);
    probe(&mut connect(server.addr(), &setup.client(&alice)).expect("next client"))
        .expect("the worker still serves");
}
