//! The data path once a client is accepted: bulk bytes both ways at once, half-close in each
//! direction (RFC 8446 §6.1: close_notify closes only the sender's write side), many concurrent
//! connections, and an upstream that refuses.
//!
//! Every test runs under both monoio drivers: `<test>::io_uring` and `<test>::epoll`, and each
//! asserts the binary's start lines name the driver it was asked for.

mod common;

use std::io::{Read, Write};
use std::net::Shutdown;
use std::sync::mpsc;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use common::client::{self, split};
use common::upstream::refused_addr;
use common::{Digest, Driver, Pattern, Serve, Setup, Upstream, hex};

/// How long a test waits for its upstream to report what it saw.
const UPSTREAM_REPORT: Duration = Duration::from_secs(60);

/// Runs each listed `fn name(Driver)` as `name::io_uring` and `name::epoll`.
macro_rules! under_both_drivers {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn io_uring() {
                super::$name(super::Driver::IoUring)
            }

            #[test]
            fn epoll() {
                super::$name(super::Driver::Epoll)
            }
        }
    )*};
}

under_both_drivers!(
    transfers_32_mib_each_way_concurrently,
    forwards_response_after_client_close_notify,
    forwards_response_after_client_tcp_fin,
    forwards_client_bytes_after_upstream_half_close,
    carries_64_concurrent_connections,
    closes_cleanly_when_upstream_refuses,
    a_4_kib_response_goes_out_in_one_record,
);

/// What an upstream handler saw, sent back to the test thread.
type Report = Result<(usize, [u8; 32]), String>;

#[track_caller]
fn assert_digest(what: &str, got: (usize, [u8; 32]), seed: u64, len: usize) {
    assert_eq!(got.0, len, "{what}: byte count");
    assert_eq!(
        hex(&got.1),
        hex(&Pattern::digest(seed, len)),
        "{what}: SHA-256 of the bytes"
    );
}

fn transfers_32_mib_each_way_concurrently(driver: Driver) {
    const LEN: usize = 32 << 20;
    let setup = Setup::new();
    let (tx, rx) = mpsc::channel::<(Report, Report)>();
    let upstream = Upstream::custom(move |sock| {
        let mut read_half = sock.try_clone().expect("clone");
        let reader = thread::spawn(move || {
            Digest::read_all(&mut read_half).map_err(|e| format!("upstream read: {e}"))
        });
        let wrote = Pattern::write_to(2, LEN, &mut &sock)
            .map(|()| (LEN, [0; 32]))
            .map_err(|e| format!("upstream write: {e}"));
        let _ = sock.shutdown(Shutdown::Write);
        let read = reader.join().expect("upstream reader");
        let _ = tx.send((wrote, read));
    });
    let server = setup.serve(upstream.addr).driver(driver).start();
    let stream = client::handshake(server.addr(), &setup.client(&setup.ca.client("Bulk")))
        .expect("handshake");
    let (mut reader, mut writer) = split(stream);
    let writing = thread::spawn(move || {
        Pattern::write_to(1, LEN, &mut writer)?;
        writer.close_notify()
    });
    let received = Digest::read_all(&mut reader).expect("32 MiB down, then a clean close");
    writing.join().unwrap().expect("32 MiB up");
    assert_digest("client received", received, 2, LEN);
    let (wrote, read) = rx.recv_timeout(UPSTREAM_REPORT).expect("upstream report");
    wrote.expect("upstream sent its 32 MiB");
    assert_digest("upstream received", read.expect("upstream read"), 1, LEN);
}

#[derive(Clone, Copy)]
enum ClientClose {
    CloseNotify,
    TcpFin,
}

/// The client sends a request and half-closes; the upstream answers only after it saw EOF, so
/// the response arriving proves both the FIN and that the other direction stayed open.
fn client_half_close(driver: Driver, how: ClientClose) {
    const REQUEST: usize = 100 * 1024;
    const RESPONSE: usize = 1 << 20;
    let setup = Setup::new();
    let (tx, rx) = mpsc::channel::<Report>();
    let upstream = Upstream::custom(move |mut sock| {
        let request = Digest::read_all(&mut sock).map_err(|e| format!("upstream read: {e}"));
        // Report first: the test reads the response only after this report.
        let ok = request.is_ok();
        let _ = tx.send(request);
        if ok {
            let _ = Pattern::write_to(4, RESPONSE, &mut sock);
        }
        let _ = sock.shutdown(Shutdown::Write);
    });
    let server = setup.serve(upstream.addr).driver(driver).start();
    let mut stream = client::handshake(server.addr(), &setup.client(&setup.ca.client("Asker")))
        .expect("handshake");
    Pattern::write_to(3, REQUEST, &mut stream).expect("send request");
    match how {
        ClientClose::CloseNotify => client::send_close_notify(&mut stream).expect("close_notify"),
        ClientClose::TcpFin => stream.sock.shutdown(Shutdown::Write).expect("FIN"),
    }
    let request = rx
        .recv_timeout(UPSTREAM_REPORT)
        .expect("upstream never saw EOF after the client's half-close");
    assert_digest(
        "upstream received",
        request.expect("upstream read"),
        3,
        REQUEST,
    );
    let response = Digest::read_all(&mut stream).expect("response after half-close, clean close");
    assert_digest("client received", response, 4, RESPONSE);
}

fn forwards_response_after_client_close_notify(driver: Driver) {
    client_half_close(driver, ClientClose::CloseNotify);
}

fn forwards_response_after_client_tcp_fin(driver: Driver) {
    client_half_close(driver, ClientClose::TcpFin);
}

fn forwards_client_bytes_after_upstream_half_close(driver: Driver) {
    const GREETING: usize = 256 * 1024;
    const LATER: usize = 1 << 20;
    let setup = Setup::new();
    let (tx, rx) = mpsc::channel::<Report>();
    let upstream = Upstream::custom(move |mut sock| {
        let _ = Pattern::write_to(5, GREETING, &mut sock);
        let _ = sock.shutdown(Shutdown::Write);
        let _ = tx.send(Digest::read_all(&mut sock).map_err(|e| format!("upstream read: {e}")));
    });
    let server = setup.serve(upstream.addr).driver(driver).start();
    let mut stream = client::handshake(server.addr(), &setup.client(&setup.ca.client("Talker")))
        .expect("handshake");
    // The upstream's FIN must reach the client as close_notify (Ok(0)), not a bare TCP close.
    let greeting = Digest::read_all(&mut stream).expect("greeting, then close_notify");
    assert_digest("client received", greeting, 5, GREETING);
    Pattern::write_to(6, LATER, &mut stream).expect("client keeps sending after upstream FIN");
    client::send_close_notify(&mut stream).expect("close_notify");
    let later = rx.recv_timeout(UPSTREAM_REPORT).expect("upstream report");
    assert_digest("upstream received", later.expect("upstream read"), 6, LATER);
}

fn carries_64_concurrent_connections(driver: Driver) {
    const CONNS: usize = 64;
    const LEN: usize = 256 * 1024;
    let setup = Arc::new(Setup::new());
    let upstream = Upstream::echo();
    let server = setup.serve(upstream.addr).driver(driver).start();
    let addr = server.addr();
    let leaf = Arc::new(setup.ca.client("Crowd"));
    // Every connection is established before any transfers, so all 64 are open at once.
    let barrier = Arc::new(Barrier::new(CONNS));
    let workers: Vec<_> = (0..CONNS)
        .map(|i| {
            let (setup, leaf, barrier) =
                (Arc::clone(&setup), Arc::clone(&leaf), Arc::clone(&barrier));
            thread::spawn(move || -> Result<(), String> {
                let stream = client::handshake(addr, &setup.client(&leaf));
                barrier.wait();
                let stream = stream.map_err(|e| format!("conn {i}: handshake: {e:?}"))?;
                let (mut reader, mut writer) = split(stream);
                let seed = 100 + i as u64;
                let writing = thread::spawn(move || {
                    Pattern::write_to(seed, LEN, &mut writer)?;
                    writer.close_notify()
                });
                let echoed =
                    Digest::read_all(&mut reader).map_err(|e| format!("conn {i}: read: {e}"))?;
                writing
                    .join()
                    .unwrap()
                    .map_err(|e| format!("conn {i}: write: {e}"))?;
                if echoed != (LEN, Pattern::digest(seed, LEN)) {
                    return Err(format!(
                        "conn {i}: echoed {} bytes, digest mismatch",
                        echoed.0
                    ));
                }
                Ok(())
            })
        })
        .collect();
    let failures: Vec<String> = workers
        .into_iter()
        .filter_map(|w| w.join().expect("worker thread").err())
        .collect();
    assert!(
        failures.is_empty(),
        "{failures:#?}\n--- stderr ---\n{}",
        server.stderr()
    );
    assert_eq!(upstream.accepted(), CONNS);
}

fn closes_cleanly_when_upstream_refuses(driver: Driver) {
    let setup = Setup::new();
    let server = Serve::new(refused_addr(), &setup.crt, &setup.key)
        .ca(&setup.ca_file)
        .driver(driver)
        .start();
    let mut stream = client::handshake(server.addr(), &setup.client(&setup.ca.client("Early")))
        .expect("handshake succeeds before the upstream is tried");
    let mut buf = [0u8; 64];
    // Ok(0) is rustls reporting close_notify; a bare TCP close would be Err(UnexpectedEof).
    match stream.read(&mut buf) {
        Ok(0) => {}
        Ok(n) => panic!("got {n} bytes from a refused upstream"),
        Err(e) => panic!(
            "expected close_notify, got {e}\n--- stderr ---\n{}",
            server.stderr()
        ),
    }
}

/// One worker saturated by eight connections streaming as fast as their clients can, and one
/// more client doing a round trip meanwhile: the round trip must come back while every stream
/// still runs. Under the epoll driver a socket that is always ready never sends a task back
/// to the scheduler by itself; without the relay's yield budget a busy worker served the
/// newcomer only when the streams ended.
fn bulk_streams_do_not_starve_their_worker(driver: Driver) {
    const STREAMS: usize = 8;
    const LEN: usize = 128 << 20;
    let setup = Setup::new();
    let upstream = Upstream::echo();
    let server = setup
        .serve(upstream.addr)
        .args(["--threads", "1"])
        .driver(driver)
        .start();
    let opts = setup.client(&setup.ca.client("Bulk"));
    let ended = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (flowing_tx, flowing) = mpsc::channel();
    let streams: Vec<_> = (0..STREAMS)
        .map(|i| {
            let stream = client::handshake(server.addr(), &opts).expect("handshake");
            let (mut reader, mut writer) = split(stream);
            let sender = thread::spawn(move || {
                let _ = Pattern::write_to(i as u64, LEN, &mut writer);
                let _ = writer.close_notify();
            });
            let (ended, flowing_tx) = (ended.clone(), flowing_tx.clone());
            thread::spawn(move || {
                let mut digest = Digest::default();
                let mut buf = vec![0u8; 64 * 1024];
                let mut told = false;
                let got = loop {
                    match reader.read(&mut buf) {
                        Ok(0) => break Ok(digest.finish()),
                        Ok(n) => {
                            digest.write_all(&buf[..n]).expect("hash");
                            if !told && digest.len() >= 1 << 20 {
                                told = flowing_tx.send(()).is_ok();
                            }
                        }
                        Err(e) => break Err(e),
                    }
                };
                ended.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                sender.join().expect("sender");
                got
            })
        })
        .collect();
    // Cut in once every stream is flowing (its first MiB came back).
    for _ in 0..STREAMS {
        flowing
            .recv_timeout(UPSTREAM_REPORT)
            .expect("the streams started");
    }
    let mut quick =
        client::connect(server.addr(), &setup.client(&setup.ca.client("Quick"))).expect("quick");
    common::probe(&mut quick).expect("a round trip during the streams");
    let ended_before = ended.load(std::sync::atomic::Ordering::SeqCst);
    drop(quick);
    for stream in streams {
        let got = stream
            .join()
            .expect("stream")
            .expect("a stream came back whole");
        assert_eq!(got.0, LEN);
    }
    assert_eq!(
        ended_before, 0,
        "the newcomer was served only after {ended_before} of {STREAMS} streams had ended"
    );
}

under_both_drivers!(bulk_streams_do_not_starve_their_worker);

/// The plaintext each TLS record from the server carried, until `want` bytes have come: the
/// records are read off the socket one at a time and fed to rustls whole, so that the split
/// the server chose shows (records that carry no data, session tickets, are left out).
fn plaintext_per_record(stream: &mut client::TlsStream, want: usize) -> Vec<usize> {
    let mut per_record = Vec::new();
    let mut got = 0;
    while got < want {
        let mut header = [0u8; 5];
        if let Err(e) = stream.sock.read_exact(&mut header) {
            panic!("record header after records of {per_record:?} bytes: {e}");
        }
        let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
        let mut record = header.to_vec();
        record.resize(5 + len, 0);
        stream
            .sock
            .read_exact(&mut record[5..])
            .expect("record body");
        // read_tls takes at most what its buffer has room for per call: feed it all.
        let mut rest = record.as_slice();
        while !rest.is_empty() {
            stream.conn.read_tls(&mut rest).expect("read_tls");
        }
        stream.conn.process_new_packets().expect("a valid record");
        let mut plain = 0;
        let mut chunk = [0u8; 8192];
        loop {
            match stream.conn.reader().read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => plain += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("plaintext: {e}"),
            }
        }
        if plain > 0 {
            per_record.push(plain);
            got += plain;
        }
    }
    per_record
}

/// A response written in one piece reaches the client in one TLS record, though the direction
/// waited with a small buffer (an idle connection's): the first read's 512 bytes are topped up
/// with the rest before rustls sees them, not sent as a record of their own.
fn a_4_kib_response_goes_out_in_one_record(driver: Driver) {
    const RESPONSE: usize = 4096;
    let setup = Setup::new();
    let upstream = Upstream::custom(|mut sock| {
        let mut request = [0u8; 64];
        if sock.read(&mut request).is_ok_and(|n| n > 0) {
            let _ = sock.write_all(&[0x42u8; RESPONSE]);
        }
        let _ = sock.read(&mut request); // until the client goes
    });
    let server = setup.serve(upstream.addr).driver(driver).start();
    server.wait_for_line(&["worker.started", driver.log_token().unwrap_or("driver=")]);
    let alice = setup.ca.client("Alice");
    let mut stream = client::handshake(server.addr(), &setup.client(&alice)).expect("handshake");
    stream.conn.writer().write_all(b"GET\n").expect("request");
    while stream.conn.wants_write() {
        stream.conn.write_tls(&mut stream.sock).expect("send");
    }
    let records = plaintext_per_record(&mut stream, RESPONSE);
    assert_eq!(
        records,
        [RESPONSE],
        "the 4 KiB response's records ({driver:?})"
    );
}
