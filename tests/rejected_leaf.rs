//! A rejection names only what its own handshake presented. rustls keeps no peer certificate
//! after a failed check, so the refused leaf is caught on its way through the verifier; the
//! verifier is also run outside handshakes (the re-check of a resumed session, the re-check of
//! live connections after a reload), and a leaf those refuse must not be blamed on the next
//! client of the same worker.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::client::{self, read_to_clean_eof, tcp_connect};
use common::{Ca, ClientFlaw, Setup, Upstream, connect};

/// The JSON `conn.rejected` events in `stderr`.
fn rejections(stderr: &str) -> Vec<serde_json::Value> {
    stderr
        .lines()
        .filter(|l| l.contains("\"conn.rejected\""))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// A plain-HTTP probe and a client without a certificate, on the (single) worker: both are
/// rejected, and neither rejection names a client certificate.
#[track_caller]
fn assert_next_rejections_name_no_certificate(server: &common::Server, setup: &Setup) {
    let before = rejections(&server.stderr()).len();
    let mut http = tcp_connect(server.addr());
    http.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("write");
    let _ = http.read_to_end(&mut Vec::new());
    assert!(
        connect(server.addr(), &setup.anonymous()).is_err(),
        "a client without a certificate got through"
    );
    let text = server.wait_for_stderr("two more rejections", |s| rejections(s).len() >= before + 2);
    for event in &rejections(&text)[before..] {
        // `client` is always there (empty without a certificate); the others only with one.
        for field in [
            "client",
            "subject",
            "sha256",
            "issuer",
            "serial",
            "not_after",
        ] {
            assert!(
                event.get(field).is_none_or(|v| v == ""),
                "a rejection names a certificate it was not shown ({field}): {event}"
            );
        }
    }
}

#[test]
fn rejections_after_a_reauthorization_failure_name_no_certificate() {
    let setup = Setup::new();
    let second = Ca::root("Second Root");
    let upstream = Upstream::echo();
    let server = setup
        .serve(upstream.addr)
        .args(["--threads", "1", "--log-format", "json"])
        .args(["--reauthorize-on-reload"])
        .start();
    let alice = setup.ca.client("Alice");
    let mut alice_conn = connect(server.addr(), &setup.client(&alice)).expect("alice");
    // Alice's CA leaves the trust store: the reload's re-check refuses her chain.
    let tmp = setup.ca_file.with_extension("tmp");
    std::fs::write(&tmp, second.pem()).expect("write bundle");
    std::fs::rename(&tmp, &setup.ca_file).expect("replace bundle");
    server.signal(libc::SIGHUP);
    alice_conn
        .sock
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    read_to_clean_eof(&mut alice_conn).expect("close_notify then EOF for alice");
    server.wait_for_line(&["conn.closed", "reauthorization_failed"]);
    assert_next_rejections_name_no_certificate(&server, &setup);
}

#[test]
fn rejections_after_a_refused_resumed_session_name_no_certificate() {
    let setup = Setup::new();
    let upstream = Upstream::echo();
    let server = setup
        .serve(upstream.addr)
        .args(["--threads", "1", "--log-format", "json"])
        .start();
    let leaf = setup
        .ca
        .client_with("Short Lived", ClientFlaw::ExpiresIn(2));
    let config = setup.client(&leaf).config();
    assert_eq!(
        client::connect_with(server.addr(), config.clone()),
        rustls::HandshakeKind::Full
    );
    // The certificate's expiry is the subject of the test: let it pass.
    std::thread::sleep(Duration::from_secs(4)); // readiness-ok: waiting out notAfter
    assert!(
        client::try_connect_with(server.addr(), config).is_err(),
        "resumed with an expired client certificate"
    );
    server.wait_for_line(&["conn.rejected", "expired", "resumed session"]);
    assert_next_rejections_name_no_certificate(&server, &setup);
}
