//! Hostile clients: slowloris, garbage and obsolete protocols, oversized and malformed records,
//! absurd ClientHellos and certificate chains, renegotiation and early data, resets and
//! clients that never read. Each must be turned away (an alert or a close, and one event)
//! without reaching the upstream, while a good client is still served.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::client::tcp_connect;
use common::process::Spawned;
use common::{Setup, Upstream, connect, expect_alert, probe};
use rustls::AlertDescription;

/// What came back on a raw connection before it closed.
#[derive(Debug)]
struct Answer {
    /// The description byte of the first alert record, if one came.
    alert: Option<u8>,
    /// Whether any handshake record (a ServerHello) came.
    handshake: bool,
}

/// Sends `bytes` on a fresh connection (then half-closes if `eof`), and reads until the server
/// closes (bounded by 10 s): the server must close, whatever it says first.
fn send_raw(addr: SocketAddr, bytes: &[u8], eof: bool) -> Answer {
    let mut sock = tcp_connect(addr);
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    // The server may close as soon as it has seen enough, so the tail may meet a reset.
    let _ = sock.write_all(bytes);
    if eof {
        let _ = sock.shutdown(std::net::Shutdown::Write);
    }
    let mut back = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match sock.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => back.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::ConnectionReset) => break,
            Err(e) => panic!("the server did not close the connection: {e}"),
        }
    }
    let mut answer = Answer {
        alert: None,
        handshake: false,
    };
    let mut rest = &back[..];
    while rest.len() >= 5 {
        let len = usize::from(u16::from_be_bytes([rest[3], rest[4]]));
        let body = &rest[5..(5 + len).min(rest.len())];
        match rest[0] {
            21 if answer.alert.is_none() => answer.alert = body.get(1).copied(),
            22 => answer.handshake = true,
            _ => {}
        }
        rest = &rest[(5 + len).min(rest.len())..];
    }
    answer
}

/// A minimal ClientHello record built by hand: `record` and `client` versions, a few suites,
/// no extensions (as SSL 3.0 to TLS 1.1 clients could send).
fn client_hello(record: u16, client: u16) -> Vec<u8> {
    let mut body = client.to_be_bytes().to_vec();
    body.extend([0x42; 32]);
    body.push(0);
    let suites: [u16; 5] = [0x1301, 0xc02b, 0xc02f, 0x002f, 0x0035];
    body.extend(((suites.len() * 2) as u16).to_be_bytes());
    for s in suites {
        body.extend(s.to_be_bytes());
    }
    body.extend([1, 0]);
    body.extend([0, 0]);
    let mut handshake = vec![1];
    handshake.extend(&(body.len() as u32).to_be_bytes()[1..]);
    handshake.extend(body);
    let mut rec = vec![22];
    rec.extend(record.to_be_bytes());
    rec.extend((handshake.len() as u16).to_be_bytes());
    rec.extend(handshake);
    rec
}

/// Appends `extra` unknown, empty extensions to a real ClientHello record, fixing the three
/// length fields.
fn with_extensions(hello: &[u8], extra: u16) -> Vec<u8> {
    let body = &hello[9..];
    let mut at = 2 + 32;
    at += 1 + usize::from(body[at]);
    at += 2 + usize::from(u16::from_be_bytes([body[at], body[at + 1]]));
    at += 1 + usize::from(body[at]);
    let ext_len = usize::from(u16::from_be_bytes([body[at], body[at + 1]]));
    let mut exts = body[at + 2..at + 2 + ext_len].to_vec();
    for i in 0..extra {
        exts.extend((0x4000 + i).to_be_bytes());
        exts.extend([0, 0]);
    }
    let mut new_body = body[..at].to_vec();
    new_body.extend((exts.len() as u16).to_be_bytes());
    new_body.extend(exts);
    let mut out = vec![22, hello[1], hello[2]];
    out.extend(((new_body.len() + 4) as u16).to_be_bytes());
    out.push(1);
    out.extend(&(new_body.len() as u32).to_be_bytes()[1..]);
    out.extend(new_body);
    out
}

/// rustls' answers: decode_error for what is not a TLS record at all, handshake_failure for
/// a ClientHello of SSL 3.0 to TLS 1.1 (it misses the signature_algorithms extension TLS 1.2
/// requires, which rustls checks before the version).
const DECODE_ERROR: u8 = 50;
const HANDSHAKE_FAILURE: u8 = 40;

#[test]
fn turns_away_garbage_obsolete_protocols_and_malformed_records() {
    let setup = Setup::new();
    let upstream = Upstream::echo();
    let server = setup.serve(upstream.addr).start();

    let random: Vec<u8> = (0..1024u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 11) as u8)
        .collect();
    // SSLv2-compatible CLIENT-HELLO (RFC 6101 appendix E.2): 2-byte header with the high bit.
    let sslv2 = [
        0x80, 0x2e, 0x01, 0x00, 0x02, 0x00, 0x15, 0x00, 0x00, 0x00, 0x10, 0x07, 0x00, 0xc0, 0x05,
        0x00, 0x80, 0x03, 0x00, 0x80, 0x01, 0x00, 0x80, 0x08, 0x00, 0x80, 0x06, 0x00, 0x40, 0x04,
        0x00, 0x80, 0x02, 0x00, 0x80, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa,
        0xbb, 0xcc, 0xdd, 0xee, 0xff, 0x00,
    ];
    let mut truncated = client_hello(0x0301, 0x0303);
    truncated.truncate(truncated.len() / 2);
    // A record header announcing more than TLS allows (2^14 + 2048, RFC 8446 §5.2).
    let mut oversized = vec![22, 0x03, 0x03, 0x48, 0x01];
    oversized.extend(vec![0u8; 0x4801]);

    let cases: Vec<(&str, Vec<u8>, Option<u8>)> = vec![
        ("random bytes", random, Some(DECODE_ERROR)),
        (
            "plaintext HTTP",
            b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec(),
            Some(DECODE_ERROR),
        ),
        ("SSLv2 ClientHello", sslv2.to_vec(), Some(DECODE_ERROR)),
        (
            "SSLv3 ClientHello",
            client_hello(0x0300, 0x0300),
            Some(HANDSHAKE_FAILURE),
        ),
        (
            "TLS 1.0 ClientHello",
            client_hello(0x0301, 0x0301),
            Some(HANDSHAKE_FAILURE),
        ),
        (
            "TLS 1.1 ClientHello",
            client_hello(0x0301, 0x0302),
            Some(HANDSHAKE_FAILURE),
        ),
        // The client ended mid-ClientHello: rustls says nothing, we answer decode_error
        // (RFC 8446 §6.2: "the length of the message was incorrect").
        ("truncated record, then EOF", truncated, Some(DECODE_ERROR)),
        ("oversized record", oversized, Some(DECODE_ERROR)),
    ];
    for (i, (name, bytes, want)) in cases.into_iter().enumerate() {
        let answer = send_raw(server.addr(), &bytes, true);
        assert!(
            !answer.handshake,
            "{name}: the server went on with a handshake"
        );
        assert_eq!(answer.alert, want, "{name}: {answer:?}");
        // The log names the alert the client received.
        let text = server.wait_for_stderr(&format!("rejection {}", i + 1), |s| {
            s.lines().filter(|l| l.contains("conn.rejected")).count() > i
        });
        let line = text
            .lines()
            .filter(|l| l.contains("conn.rejected"))
            .nth(i)
            .unwrap_or_default();
        let logged = want.map_or("none".to_owned(), |a| a.to_string());
        assert!(
            line.contains(&format!(" alert={logged} ")),
            "{name}: received {want:?}, logged {line}"
        );
    }
    let alice = setup.ca.client("Alice");
    connect(server.addr(), &setup.client(&alice)).expect("a good client after the garbage");
    assert_eq!(upstream.accepted(), 1, "garbage reached the upstream");
}

#[test]
fn answers_a_client_hello_with_1000_unknown_extensions_and_stays_up() {
    let setup = Setup::new();
    let upstream = Upstream::echo();
    let server = setup.serve(upstream.addr).start();
    let alice = setup.ca.client("Alice");
    let mut hello = Vec::new();
    setup
        .client(&alice)
        .connection()
        .write_tls(&mut hello)
        .expect("a real ClientHello");
    let big = with_extensions(&hello, 1000);
    assert_eq!(big.len(), hello.len() + 4000);
    // Unknown extensions are ignored (RFC 8446 §4.2): the server answers with its flight, and
    // our EOF then ends the connection.
    let answer = send_raw(server.addr(), &big, true);
    assert!(answer.handshake, "{answer:?}");
    server.wait_for_line(&["conn.rejected", "reason=client_closed"]);
    connect(server.addr(), &setup.client(&alice)).expect("a good client afterwards");
    assert_eq!(upstream.accepted(), 1);
}

#[test]
fn refuses_an_overlong_client_chain_with_an_alert() {
    let setup = Setup::new();
    let upstream = Upstream::echo();
    let server = setup.serve(upstream.addr).start();
    // Twelve intermediates deep: far past any real PKI, and past the path length webpki
    // builds (six sub-CAs). Refused before any path building, saying why.
    let mut ca = setup.ca.intermediate("Depth 1");
    for depth in 2..=12 {
        ca = ca.intermediate(&format!("Depth {depth}"));
    }
    let deep = ca.client("Deep Client");
    assert!(deep.chain().len() >= 13);
    expect_alert(
        connect(server.addr(), &setup.client(&deep)),
        AlertDescription::CertificateUnknown,
    );
    let line = server.wait_for_line(&["conn.rejected", "Deep Client"]);
    assert!(
        line.contains("client chain has 13 certificates; at most 10"),
        "{line}"
    );
    assert!(
        line.contains(" alert=46 "),
        "the alert the client got: {line}"
    );
    assert_eq!(upstream.accepted(), 0);
}

#[test]
fn refuses_a_client_chain_over_32_kib_with_an_alert() {
    let setup = Setup::new();
    let upstream = Upstream::echo();
    let server = setup.serve(upstream.addr).start();
    // A leaf signed by our CA, valid in every way, but carrying 1,800 DNS names: about 40 KiB.
    let names: Vec<String> = (0..1800)
        .map(|i| format!("host-{i:04}.example.com"))
        .collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let fat = setup.ca.client_identity("Fat Client", None, &names, &[]);
    let size: usize = fat.chain().iter().map(|c| c.len()).sum();
    assert!((32 * 1024..64 * 1024).contains(&size), "{size} bytes");
    expect_alert(
        connect(server.addr(), &setup.client(&fat)),
        AlertDescription::CertificateUnknown,
    );
    let line = server.wait_for_line(&["conn.rejected", "Fat Client"]);
    assert!(
        line.contains(&format!("client chain is {size} bytes")),
        "{line}"
    );
    assert!(
        line.contains(" alert=46 "),
        "the alert the client got: {line}"
    );
    assert_eq!(upstream.accepted(), 0);
}

#[test]
fn refuses_a_client_certificate_message_over_64_kib() {
    let setup = Setup::new();
    let upstream = Upstream::echo();
    let server = setup.serve(upstream.addr).start();
    let alice = setup.ca.client("Alice");
    // The real chain padded with copies of the root: 80 KiB of certificates.
    let mut chain = alice.chain();
    while chain.iter().map(|c| c.len()).sum::<usize>() < 80 * 1024 {
        chain.push(setup.ca.der().clone());
    }
    let opts = common::ClientOpts::new(&setup.ca).raw_identity(chain, alice.rustls_key());
    // Past rustls' own limit: it refuses any handshake message over 64 KiB before parsing it,
    // and (rustls 0.23) without queueing an alert. In TLS 1.3 the Certificate comes after our
    // sealed flight, so no plaintext alert of ours may follow: the client gets a plain close (a
    // FIN, not a reset: the server drains its input first), and the log says no alert went out.
    match connect(server.addr(), &opts) {
        Err(common::Failure::Closed { .. }) => {}
        other => panic!("expected a close, got {:?}", other.err()),
    }
    let line = server.wait_for_line(&["conn.rejected"]);
    assert!(line.contains("HandshakePayloadTooLarge"), "{line}");
    assert!(line.contains("alert=none"), "no alert was sent: {line}");
    // In TLS 1.2 it comes before our ChangeCipherSpec, still in plaintext: we send the
    // decode_error rustls does not (RFC 8446 §6.2, as RFC 5246 §7.2.2), and log it.
    expect_alert(
        connect(server.addr(), &opts.version(common::Version::Tls12)),
        AlertDescription::DecodeError,
    );
    let text = server.wait_for_stderr("the TLS 1.2 rejection", |s| {
        s.lines().filter(|l| l.contains("conn.rejected")).count() >= 2
    });
    let line = text.lines().filter(|l| l.contains("conn.rejected")).nth(1);
    assert!(
        line.is_some_and(|l| l.contains("TLSv1.2") && l.contains(" alert=50 ")),
        "{line:?}"
    );
    assert_eq!(upstream.accepted(), 0);
    connect(server.addr(), &setup.client(&alice)).expect("a good client afterwards");
}

#[test]
fn offers_no_early_data() {
    let setup = Setup::new();
    let upstream = Upstream::echo();
    let server = setup.serve(upstream.addr).args(["--threads", "1"]).start();
    let alice = setup.ca.client("Alice");

    // 0-RTT: the client would send early data if our tickets allowed it. They must not: early
    // data can be replayed, and it would reach the upstream before the client is verified.
    let mut config = (*setup.client(&alice).config()).clone();
    config.enable_early_data = true;
    let config = std::sync::Arc::new(config);
    common::client::connect_with(server.addr(), config.clone());
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let mut conn = rustls::ClientConnection::new(config, name).expect("client");
    assert!(
        conn.early_data().is_none(),
        "the server's ticket allows early data"
    );
}

/// Renegotiation (TLS 1.2): openssl s_client's `R` command asks for it.
#[test]
#[cfg_attr(
    not(has = "openssl"),
    ignore = "SKIPPED: openssl not found (apt-get install openssl)"
)]
fn refuses_renegotiation() {
    common::need("openssl");
    let setup = Setup::new();
    let upstream = Upstream::echo();
    let server = setup.serve(upstream.addr).args(["--threads", "1"]).start();
    let alice = setup.ca.client("Alice");
    let dir = &setup.dir;
    let crt = dir.write("alice.pem", alice.chain_pem());
    let key = dir.write("alice.key", alice.key_pem(common::KeyFormat::Pkcs8));
    let mut cmd = std::process::Command::new("openssl");
    cmd.args([
        "s_client",
        "-tls1_2",
        "-connect",
        &server.addr().to_string(),
    ])
    .arg("-CAfile")
    .arg(&setup.ca_file)
    .arg("-cert")
    .arg(&crt)
    .arg("-key")
    .arg(&key);
    let mut client = Spawned::spawn(cmd);
    client.stdout.wait_for(Duration::from_secs(10), |s| {
        s.contains("Verify return code")
    });
    if let Some(stdin) = client.stdin.as_mut() {
        stdin.write_all(b"R\n").expect("ask for renegotiation");
    }
    // rustls answers a renegotiation request with a no_renegotiation alert (RFC 5746 §4.2
    // leaves the choice to the server) and never performs one; openssl reports it as an error.
    let refused = client
        .stderr
        .wait_for(Duration::from_secs(10), |s| s.contains("no renegotiation"));
    let output = client.output();
    drop(client);
    assert!(refused, "renegotiation was not refused:\n{output}");
    probe(&mut connect(server.addr(), &setup.client(&alice)).expect("good client"))
        .expect("the worker still serves");
}

/// Raises this process's open-files limit to the hard limit (for 1,000+ sockets).
fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write the struct we pass, nothing else.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        lim.rlim_cur = lim.rlim_max;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
    }
}

#[test]
fn slowloris_does_not_starve_a_good_client_and_every_bad_socket_is_closed_at_the_timeout() {
    const SILENT: usize = 500;
    const TRICKLING: usize = 500;
    const TIMEOUT: Duration = Duration::from_secs(2);
    raise_fd_limit();
    let setup = Setup::new();
    let upstream = Upstream::echo();
    let server = setup
        .serve(upstream.addr)
        .args(["--threads", "2", "--handshake-timeout", "2s"])
        .start();
    let alice = setup.ca.client("Alice");
    let mut hello = Vec::new();
    setup
        .client(&alice)
        .connection()
        .write_tls(&mut hello)
        .expect("a real ClientHello");

    let opened = Instant::now();
    let silent: Vec<TcpStream> = (0..SILENT).map(|_| tcp_connect(server.addr())).collect();
    let trickling: Vec<TcpStream> = (0..TRICKLING).map(|_| tcp_connect(server.addr())).collect();
    // One byte of the ClientHello per socket every 50 ms, never the last one.
    let trickler = std::thread::spawn(move || {
        let stop = Instant::now() + TIMEOUT + Duration::from_secs(5);
        let mut open = vec![true; trickling.len()];
        for byte in &hello[..hello.len() - 1] {
            if Instant::now() > stop || !open.contains(&true) {
                break;
            }
            for (i, mut sock) in trickling.iter().enumerate() {
                if open[i] && sock.write_all(&[*byte]).is_err() {
                    open[i] = false;
                }
            }
            std::thread::sleep(Duration::from_millis(50)); // readiness-ok: the trickle's pace is the attack
        }
        trickling
    });

    // A good client, twenty times, while a thousand sockets hold handshakes open.
    let mut latencies = Vec::new();
    for _ in 0..20 {
        let t0 = Instant::now();
        let mut stream = connect(server.addr(), &setup.client(&alice)).expect("good client");
        probe(&mut stream).expect("echo");
        latencies.push(t0.elapsed());
    }
    latencies.sort();
    let served_during = opened.elapsed() < TIMEOUT;

    let mut closed_after = Vec::new();
    let trickling = trickler.join().expect("trickler");
    for mut sock in silent.into_iter().chain(trickling) {
        sock.set_read_timeout(Some(TIMEOUT + Duration::from_secs(10)))
            .expect("timeout");
        let mut buf = [0u8; 64];
        match sock.read(&mut buf) {
            Ok(0) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
            other => panic!("a slowloris socket was not closed: {other:?}"),
        }
        closed_after.push(opened.elapsed());
    }
    eprintln!(
        "slowloris {} sockets: good client p50 {:?}, max {:?} (all 20 served {} the timeout); bad sockets all closed within {:?} of opening (timeout {TIMEOUT:?})",
        SILENT + TRICKLING,
        latencies[latencies.len() / 2],
        latencies[latencies.len() - 1],
        if served_during { "before" } else { "around" },
        closed_after.iter().max().copied().unwrap_or_default(),
    );
    server.wait_for_stderr("1,000 handshake timeouts", |s| {
        s.lines()
            .filter(|l| l.contains("reason=handshake_timeout"))
            .count()
            >= SILENT + TRICKLING
    });
    assert_eq!(
        upstream.accepted(),
        20,
        "only the good client reached the upstream"
    );
}

#[test]
fn a_client_that_never_reads_holds_bounded_memory_and_stalls_no_one_else() {
    const BOUND: usize = 48 << 20;
    let setup = Setup::new();
    // An upstream that sends as fast as it can until a write stalls for 2 s.
    let written = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let stalled = std::sync::Arc::new((std::sync::Mutex::new(false), std::sync::Condvar::new()));
    let (w, s) = (written.clone(), stalled.clone());
    let flood = Upstream::custom(move |mut sock| {
        sock.set_write_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        let chunk = vec![0x5a; 1 << 20];
        while w.load(std::sync::atomic::Ordering::SeqCst) < 4 * BOUND {
            match sock.write(&chunk) {
                Ok(n) => {
                    w.fetch_add(n, std::sync::atomic::Ordering::SeqCst);
                }
                Err(_) => break,
            }
        }
        *s.0.lock().unwrap() = true;
        s.1.notify_all();
        let _ = sock.read(&mut [0u8; 1]);
    });
    let server = setup.serve(flood.addr).args(["--threads", "1"]).start();
    let alice = setup.ca.client("Alice");
    // Connected, then never reads a byte.
    let stuck = common::client::handshake(server.addr(), &setup.client(&alice)).expect("stuck");
    let (lock, cond) = &*stalled;
    let guard = cond
        .wait_timeout_while(lock.lock().unwrap(), Duration::from_secs(60), |s| !*s)
        .unwrap()
        .0;
    assert!(*guard, "the upstream never stalled");
    let total = written.load(std::sync::atomic::Ordering::SeqCst);
    eprintln!("never-reading client: the upstream got {total} bytes out before it stalled");
    assert!(
        total < BOUND,
        "{total} bytes buffered for a client that reads nothing"
    );
    drop(stuck);
    drop(guard);

    // The same worker serves another client meanwhile (upstream: the flood, so just handshake
    // and read the first flood bytes).
    let mut other = common::client::handshake(server.addr(), &setup.client(&alice)).expect("other");
    let mut buf = [0u8; 1024];
    other
        .read_exact(&mut buf)
        .expect("bytes for a reading client");
}
