//! Client authentication at the handshake: every trust decision has an accept and a reject test.
//!
//! A reject test asserts the alert rustls picked (RFC 8446 §6.2) and that the upstream never saw
//! a connection: after the rejection one good client goes through, and the upstream must have
//! accepted exactly that one.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;

use common::client::{self, tcp_connect};
use common::{Ca, ClientFlaw, Leaf, Serve, Setup, Upstream, Version, connect, expect_alert};
use rustls::AlertDescription;

/// Asserts the rejection left the upstream untouched: one good client still gets through and
/// is the only connection the upstream ever accepted.
#[track_caller]
fn assert_only_good_client_reached_upstream(
    setup: &Setup,
    server: &common::Server,
    upstream: &Upstream,
) {
    let good = setup.ca.client("Good Client");
    connect(server.addr(), &setup.client(&good)).expect("a good client after the rejected one");
    assert_eq!(
        upstream.accepted(),
        1,
        "the rejected client caused an upstream connection"
    );
}

fn start(setup: &Setup, upstream: &Upstream) -> common::Server {
    setup.serve(upstream.addr).start()
}

#[test]
fn accepts_client_over_tls13() {
    let setup = Setup::new();
    let upstream = Upstream::echo();
    let server = start(&setup, &upstream);
    let alice = setup.ca.client("Alice");
    let stream = connect(server.addr(), &setup.client(&alice).version(Version::Tls13))
        .expect("client with a cert from the trusted CA");
    assert_eq!(
        stream.conn.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    assert_eq!(upstream.accepted(), 1);
}

#[test]
fn accepts_client_over_tls12() {
    let setup = Setup::new();
    let upstream = Upstream::echo();
    let server = start(&setup, &upstream);
    let alice = setup.ca.client("Alice");
    let stream = connect(server.addr(), &setup.client(&alice).version(Version::Tls12))
        .expect("client with a cert from the trusted CA");
    assert_eq!(
        stream.conn.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
    assert_eq!(upstream.accepted(), 1);
}

#[test]
fn accepts_client_presenting_intermediate_chain() {
    let setup = Setup::new();
    let upstream = Upstream::echo();
    let server = start(&setup, &upstream);
    let intermediate = setup.ca.intermediate("Issuing CA");
    let leaf = intermediate.client("Chained Client");
    assert_eq!(leaf.chain().len(), 2, "leaf + intermediate");
    connect(server.addr(), &setup.client(&leaf)).expect("leaf + intermediate to trusted root");
    assert_eq!(upstream.accepted(), 1);
}

#[test]
fn rejects_client_leaf_without_its_intermediate() {
    let setup = Setup::new();
    let upstream = Upstream::echo();
    let server = start(&setup, &upstream);
    let leaf = setup
        .ca
        .intermediate("Issuing CA")
        .client("Forgetful Client");
    let opts = setup
        .anonymous()
        .raw_identity(leaf.leaf_only(), leaf.rustls_key());
    expect_alert(connect(server.addr(), &opts), AlertDescription::UnknownCA);
    assert_only_good_client_reached_upstream(&setup, &server, &upstream);
}

#[test]
fn rejects_client_without_certificate() {
    let setup = Setup::new();
    let upstream = Upstream::echo();
    let server = start(&setup, &upstream);
    expect_alert(
        connect(server.addr(), &setup.anonymous().version(Version::Tls13)),
        AlertDescription::CertificateRequired,
    );
    assert_only_good_client_reached_upstream(&setup, &server, &upstream);
}

#[test]
fn rejects_client_without_certificate_over_tls12() {
    let setup = Setup::new();
    let upstream = Upstream::echo();
    let server = start(&setup, &upstream);
    expect_alert(
        client::handshake(server.addr(), &setup.anonymous().version(Version::Tls12)),
        AlertDescription::CertificateRequired,
    );
    assert_only_good_client_reached_upstream(&setup, &server, &upstream);
}

#[test]
fn rejects_client_signed_by_unknown_ca() {
    let setup = Setup::new();
    let upstream = Upstream::echo();
    let server = start(&setup, &upstream);
    let stranger = Ca::root("Other Root").client("Mallory");
    expect_alert(
        connect(server.addr(), &setup.client(&stranger)),
        AlertDescription::UnknownCA,
    );
    assert_only_good_client_reached_upstream(&setup, &server, &upstream);
}

#[test]
fn rejects_client_signed_by_unknown_ca_during_tls12_handshake() {
    let setup = Setup::new();
    let upstream = Upstream::echo();
    let server = start(&setup, &upstream);
    let stranger = Ca::root("Other Root").client("Mallory");
    // In TLS 1.2 the alert ends the handshake itself, before any application data.
    expect_alert(
        client::handshake(
            server.addr(),
            &setup.client(&stranger).version(Version::Tls12),
        ),
        AlertDescription::UnknownCA,
    );
    assert_only_good_client_reached_upstream(&setup, &server, &upstream);
}

#[test]
fn rejects_self_signed_client() {
    let setup = Setup::new();
    let upstream = Upstream::echo();
    let server = start(&setup, &upstream);
    let selfie = Leaf::self_signed_client("Selfie");
    expect_alert(
        connect(server.addr(), &setup.client(&selfie)),
        AlertDescription::UnknownCA,
    );
    assert_only_good_client_reached_upstream(&setup, &server, &upstream);
}

#[test]
fn rejects_expired_client() {
    let setup = Setup::new();
    let upstream = Upstream::echo();
    let server = start(&setup, &upstream);
    let old = setup.ca.client_with("Expired Client", ClientFlaw::Expired);
    expect_alert(
        connect(server.addr(), &setup.client(&old)),
        AlertDescription::CertificateExpired,
    );
    assert_only_good_client_reached_upstream(&setup, &server, &upstream);
}

#[test]
fn rejects_not_yet_valid_client() {
    let setup = Setup::new();
    let upstream = Upstream::echo();
    let server = start(&setup, &upstream);
    let early = setup
        .ca
        .client_with("Future Client", ClientFlaw::NotYetValid);
    expect_alert(
        connect(server.addr(), &setup.client(&early)),
        AlertDescription::CertificateExpired,
    );
    assert_only_good_client_reached_upstream(&setup, &server, &upstream);
}

#[test]
fn rejects_client_with_server_auth_only_eku() {
    let setup = Setup::new();
    let upstream = Upstream::echo();
    let server = start(&setup, &upstream);
    let wrong = setup
        .ca
        .client_with("Server Pretending", ClientFlaw::ServerAuthOnly);
    expect_alert(
        connect(server.addr(), &setup.client(&wrong)),
        AlertDescription::UnsupportedCertificate,
    );
    assert_only_good_client_reached_upstream(&setup, &server, &upstream);
}

fn crl_setup(der: bool) -> (Setup, Leaf, Upstream, common::Server) {
    let setup = Setup::new();
    let revoked = setup.ca.client("Revoked Client");
    let crl = setup.ca.crl(&[&revoked]);
    let crl_file = if der {
        setup.dir.write("revoked.crl", crl.der())
    } else {
        setup
            .dir
            .write("revoked.crl.pem", crl.pem().expect("CRL PEM"))
    };
    let upstream = Upstream::echo();
    let server = setup.serve(upstream.addr).crl(&crl_file).start();
    (setup, revoked, upstream, server)
}

#[test]
fn rejects_revoked_client_with_pem_crl() {
    let (setup, revoked, upstream, server) = crl_setup(false);
    expect_alert(
        connect(server.addr(), &setup.client(&revoked)),
        AlertDescription::CertificateRevoked,
    );
    assert_only_good_client_reached_upstream(&setup, &server, &upstream);
}

#[test]
fn rejects_revoked_client_with_der_crl() {
    let (setup, revoked, upstream, server) = crl_setup(true);
    expect_alert(
        connect(server.addr(), &setup.client(&revoked)),
        AlertDescription::CertificateRevoked,
    );
    assert_only_good_client_reached_upstream(&setup, &server, &upstream);
}

#[test]
fn accepts_non_revoked_client_with_crl() {
    let (setup, _revoked, upstream, server) = crl_setup(false);
    let fine = setup.ca.client("Fine Client");
    connect(server.addr(), &setup.client(&fine)).expect("client not on the CRL");
    assert_eq!(upstream.accepted(), 1);
}

#[test]
fn serves_without_client_auth_when_no_cas_given() {
    let setup = Setup::new();
    let upstream = Upstream::echo();
    let server = Serve::new(upstream.addr, &setup.crt, &setup.key).start();
    server.wait_for_line(&["WARNING", "without client authentication"]);
    connect(server.addr(), &setup.anonymous()).expect("no client auth configured");
    assert_eq!(upstream.accepted(), 1);
}

#[test]
fn does_not_warn_about_client_authentication_when_cas_given() {
    let setup = Setup::new();
    let upstream = Upstream::echo();
    let server = start(&setup, &upstream);
    // The good client's connection proves start-up is over, so the warning would be there.
    connect(server.addr(), &setup.client(&setup.ca.client("Alice"))).expect("good client");
    let stderr = server.stderr();
    assert!(
        !stderr.contains("without client authentication"),
        "warned although --mutual-tls-cas was given:\n{stderr}"
    );
}

#[test]
fn logs_rejection_with_alert_number() {
    let setup = Setup::new();
    let upstream = Upstream::echo();
    let server = start(&setup, &upstream);
    let stranger = Ca::root("Other Root").client("Mallory");
    expect_alert(
        connect(server.addr(), &setup.client(&stranger)),
        AlertDescription::UnknownCA,
    );
    // Read back from the record that went out: sealed under the server's application secret.
    server.wait_for_line(&["conn.rejected", "TLSv1.3", "alert=48"]);
    // In TLS 1.2 the same alert goes out in plaintext, before our ChangeCipherSpec.
    expect_alert(
        connect(
            server.addr(),
            &setup.client(&stranger).version(Version::Tls12),
        ),
        AlertDescription::UnknownCA,
    );
    server.wait_for_line(&["conn.rejected", "TLSv1.2", "alert=48"]);
}

#[test]
fn logs_client_subject_when_connection_closes() {
    let setup = Setup::new();
    let upstream = Upstream::echo();
    let server = start(&setup, &upstream);
    let alice = setup.ca.client("Alice Logged");
    let mut stream = connect(server.addr(), &setup.client(&alice)).expect("good client");
    client::send_close_notify(&mut stream).expect("close_notify");
    client::read_to_clean_eof(&mut stream).expect("clean close after echo upstream closes");
    let line = server.wait_for_line(&["conn.closed", "client=\"Alice Logged\""]);
    // The probe went up and came back: both directions carried PROBE.len() bytes.
    let probe_len = common::PROBE.len();
    assert!(
        line.contains(&format!("up={probe_len}")) && line.contains(&format!("down={probe_len}")),
        "byte counts missing from {line:?}"
    );
}

#[test]
fn survives_garbage_bytes_instead_of_client_hello() {
    let setup = Setup::new();
    let upstream = Upstream::echo();
    let server = start(&setup, &upstream);
    let mut sock = tcp_connect(server.addr());
    let mut garbage = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec();
    garbage.extend((0..4096u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8));
    // The server may close as soon as it sees the first bytes, so the tail may hit a reset.
    let _ = sock.write_all(&garbage);
    let mut sink = Vec::new();
    // Whatever it answers (an alert, nothing), it must close the connection, bounded by the
    // socket timeout.
    match sock.read_to_end(&mut sink) {
        Ok(_) => {}
        Err(e) => assert!(
            matches!(
                e.kind(),
                std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
            ),
            "server did not close the garbage connection: {e}"
        ),
    }
    assert_only_good_client_reached_upstream(&setup, &server, &upstream);
}

#[test]
fn survives_reset_mid_handshake() {
    let setup = Setup::new();
    let upstream = Upstream::echo();
    let server = start(&setup, &upstream);
    let sock = tcp_connect(server.addr());
    let mut conn = setup.client(&setup.ca.client("Quitter")).connection();
    let mut hello = Vec::new();
    conn.write_tls(&mut hello).expect("ClientHello");
    let mut sock_w = &sock;
    sock_w.write_all(&hello).expect("send ClientHello");
    // Wait for the server's first flight, then abort with RST (SO_LINGER 0) while it waits for
    // our Finished.
    let mut first = [0u8; 1];
    let mut sock_r = &sock;
    sock_r.read_exact(&mut first).expect("server flight");
    socket2::SockRef::from(&sock)
        .set_linger(Some(std::time::Duration::ZERO))
        .expect("SO_LINGER 0");
    drop(sock);
    assert_only_good_client_reached_upstream(&setup, &server, &upstream);
}

/// A `TcpStream` that writes one byte per `write` call, with TCP_NODELAY so each byte is a
/// segment of its own: the server must reassemble records from fragments.
struct OneByteWrites(TcpStream);

impl Read for OneByteWrites {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf)
    }
}

impl Write for OneByteWrites {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match buf.first() {
            Some(byte) => self.0.write(std::slice::from_ref(byte)),
            None => Ok(0),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

#[test]
fn accepts_client_hello_sent_in_one_byte_writes() {
    let setup = Setup::new();
    let upstream = Upstream::echo();
    let server = start(&setup, &upstream);
    let alice = setup.ca.client("Slow Alice");
    let mut conn = setup.client(&alice).connection();
    let mut sock = OneByteWrites(tcp_connect(server.addr()));
    while conn.is_handshaking() {
        conn.complete_io(&mut sock)
            .expect("handshake in 1-byte writes");
    }
    conn.writer()
        .write_all(common::PROBE)
        .expect("buffer probe");
    while conn.wants_write() {
        conn.write_tls(&mut sock).expect("send probe");
    }
    let mut echoed = vec![0u8; common::PROBE.len()];
    rustls::Stream::new(&mut conn, &mut sock)
        .read_exact(&mut echoed)
        .expect("probe echoed");
    assert_eq!(echoed, common::PROBE);
    assert_eq!(upstream.accepted(), 1);
    // And the server still serves others normally.
    connect(server.addr(), &setup.client(&alice)).expect("a good client afterwards");
    assert_eq!(upstream.accepted(), 2);
}

#[test]
fn closes_silent_connection_after_handshake_timeout() {
    let setup = Setup::new();
    let upstream = Upstream::echo();
    let server = setup
        .serve(upstream.addr)
        .args(["--handshake-timeout", "1s"])
        .start();
    let mut silent = tcp_connect(server.addr());
    let mut sink = Vec::new();
    // Bounded by the client's 20 s read timeout: a server without the handshake timeout would
    // leave this read blocked and fail it with WouldBlock/TimedOut.
    match silent.read_to_end(&mut sink) {
        Ok(_) => {}
        Err(e) => assert_eq!(
            e.kind(),
            std::io::ErrorKind::ConnectionReset,
            "silent connection not closed by the handshake timeout: {e}"
        ),
    }
    assert_only_good_client_reached_upstream(&setup, &server, &upstream);
}

#[test]
fn resumes_sessions_on_every_worker_but_not_after_restart() {
    let setup = Setup::new();
    let upstream = Upstream::echo();
    let alice = setup.ca.client("Alice");
    let config = setup.client(&alice).config();
    let server = setup.serve(upstream.addr).args(["--threads", "2"]).start();
    let kinds: Vec<_> = (0..8)
        .map(|_| client::connect_with(server.addr(), config.clone()))
        .collect();
    assert_eq!(kinds[0], rustls::HandshakeKind::Full);
    // SO_REUSEPORT spreads the reconnects over both workers; tickets must open on either.
    assert!(
        kinds[1..]
            .iter()
            .all(|k| *k == rustls::HandshakeKind::Resumed),
        "not every reconnect resumed: {kinds:?}"
    );
    drop(server);

    // A new process has new ticket keys: the old ticket must buy no shortcut.
    let restarted = setup.serve(upstream.addr).start();
    assert_eq!(
        client::connect_with(restarted.addr(), config.clone()),
        rustls::HandshakeKind::Full
    );
}

#[test]
fn forwards_bytes_sent_with_the_client_finished() {
    const EARLY: &[u8] = b"sent in the same flight as Finished\n";
    for version in [Version::Tls13, Version::Tls12] {
        let setup = Setup::new();
        let upstream = Upstream::echo();
        let server = start(&setup, &upstream);
        let alice = setup.ca.client("Alice");
        let mut conn = setup.client(&alice).version(version).connection();
        // Written before the handshake: rustls queues it and sends it right behind the client's
        // Finished, in the same write, so the server reads both in one go.
        conn.writer().write_all(EARLY).expect("queue early bytes");
        let mut stream = rustls::StreamOwned::new(conn, tcp_connect(server.addr()));
        while stream.conn.is_handshaking() {
            stream
                .conn
                .complete_io(&mut stream.sock)
                .expect("handshake");
        }
        let mut echo = vec![0u8; EARLY.len()];
        stream
            .read_exact(&mut echo)
            .expect("echo of the early bytes");
        assert_eq!(echo, EARLY, "{version:?}");
    }
}

#[test]
fn refuses_resumed_session_after_client_certificate_expired() {
    let setup = Setup::new();
    let upstream = Upstream::echo();
    let server = setup.serve(upstream.addr).args(["--threads", "1"]).start();
    let leaf = setup
        .ca
        .client_with("Short Lived", ClientFlaw::ExpiresIn(2));
    let config = setup.client(&leaf).config();
    assert_eq!(
        client::connect_with(server.addr(), config.clone()),
        rustls::HandshakeKind::Full
    );
    // The certificate's expiry is the subject of the test: let it pass.
    std::thread::sleep(std::time::Duration::from_secs(4)); // readiness-ok: waiting out notAfter
    let resumed = client::try_connect_with(server.addr(), config);
    assert!(
        resumed.is_err(),
        "resumed with an expired client certificate"
    );
    // The session was refused after the handshake: rustls can only close it, with close_notify.
    server.wait_for_line(&[
        "conn.rejected",
        "reason=expired",
        "alert=0",
        "resumed session",
    ]);
    assert_eq!(
        upstream.accepted(),
        1,
        "the expired session reached the upstream"
    );
}

#[test]
fn forwards_close_notify_sent_in_the_same_flight_as_finished() {
    use std::io::Write as _;
    let setup = Setup::new();
    let upstream = Upstream::record();
    let server = start(&setup, &upstream);
    let alice = setup.ca.client("Alice");
    let mut conn = setup.client(&alice).version(Version::Tls13).connection();
    let mut sock = tcp_connect(server.addr());
    // Drive the handshake by hand until the client has read the server's flight and holds its
    // own Finished, unsent.
    while conn.wants_write() {
        conn.write_tls(&mut sock).expect("ClientHello");
    }
    while conn.is_handshaking() {
        conn.read_tls(&mut sock).expect("server flight");
        conn.process_new_packets().expect("server flight is valid");
    }
    // Finished, data and close_notify leave in one write, so the server reads them together.
    conn.writer().write_all(b"last words").expect("queue data");
    conn.send_close_notify();
    let mut flight = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut flight).expect("serialize");
    }
    sock.write_all(&flight).expect("send flight");
    let received = upstream.wait_received(1, std::time::Duration::from_secs(10));
    assert_eq!(
        received[0], b"last words",
        "data lost or upstream never saw EOF"
    );
}

/// A resumed TLS 1.2 handshake: our ChangeCipherSpec and Finished go out first, so an alert
/// after them is sealed. The client answers our flight with an application-data record instead
/// of its ChangeCipherSpec; the server refuses it (unexpected_message), and the log names the
/// alert the client decrypts, for each AEAD the suites use.
#[test]
fn logs_the_sealed_alert_of_a_resumed_tls12_handshake() {
    let setup = Setup::new();
    let upstream = Upstream::echo();
    let server = setup
        .serve(upstream.addr)
        .args(["--threads", "1", "--log-format", "json"])
        .start();
    let alice = setup.ca.client("Alice");
    let suites = [
        rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    ];
    for (i, suite) in suites.into_iter().enumerate() {
        let config = setup
            .client(&alice)
            .version(Version::Tls12)
            .suite(suite)
            .config();
        assert_eq!(
            client::connect_with(server.addr(), config.clone()),
            rustls::HandshakeKind::Full
        );
        let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
        let mut conn = rustls::ClientConnection::new(config, name).expect("client connection");
        let mut sock = tcp_connect(server.addr());
        conn.write_tls(&mut sock).expect("ClientHello");
        // Our flight (ServerHello, ChangeCipherSpec, Finished); the client's answer is not sent.
        while conn.is_handshaking() {
            conn.read_tls(&mut sock).expect("server flight");
            conn.process_new_packets().expect("server flight accepted");
        }
        assert_eq!(conn.handshake_kind(), Some(rustls::HandshakeKind::Resumed));
        sock.write_all(&[23, 3, 3, 0, 1, 0])
            .expect("a record out of place");
        let received = loop {
            match conn.read_tls(&mut sock) {
                Ok(0) => break None,
                Ok(_) => {}
                Err(e) => panic!("reading the answer: {e}"),
            }
            if let Err(rustls::Error::AlertReceived(alert)) = conn.process_new_packets() {
                break Some(alert);
            }
        };
        assert_eq!(
            received,
            Some(AlertDescription::UnexpectedMessage),
            "{suite:?}"
        );
        let text = server.wait_for_stderr("the rejection", |s| {
            s.lines().filter(|l| l.contains("conn.rejected")).count() > i
        });
        let line = text
            .lines()
            .filter(|l| l.contains("conn.rejected"))
            .nth(i)
            .unwrap_or_default();
        let event: serde_json::Value = serde_json::from_str(line).expect("JSON event");
        assert_eq!(event["tls"], "TLSv1.2", "{event}");
        assert_eq!(
            event["alert"], "10",
            "{suite:?}: received unexpected_message: {event}"
        );
    }
}
