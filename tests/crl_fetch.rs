//! `--crl-fetch`: CRLs from the HTTP distribution points of the trust store's CAs and of the
//! client certificates seen, served here by an HTTP server the test starts on 127.0.0.1 and
//! changes while ringtls runs. A certificate revoked in a refreshed CRL is refused with no
//! reload by hand; the server going down keeps the last good CRL; a stale fetched CRL follows
//! `--stale-crl`; a CRL not signed by its issuer is refused; and under
//! `--reauthorize-on-reload` a live connection whose certificate the new CRL lists ends.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};

use common::{Ca, Setup, Upstream, expect_alert, http_get};

/// What the CRL server answers: a body, or nothing (the connection closed unanswered).
#[derive(Clone)]
enum Serving {
    Crl(Vec<u8>),
    Down,
}

/// An HTTP server on 127.0.0.1 answering every GET with what it is set to serve.
struct CrlServer {
    serving: Arc<Mutex<Serving>>,
    _server: Upstream,
}

impl CrlServer {
    fn start(body: Vec<u8>) -> CrlServer {
        let serving = Arc::new(Mutex::new(Serving::Crl(body)));
        let shared = Arc::clone(&serving);
        let server = Upstream::custom(move |sock| answer(sock, &shared));
        CrlServer {
            serving,
            _server: server,
        }
    }

    fn url(&self) -> String {
        format!("http://{}/ca.crl", self._server.addr)
    }

    fn set(&self, serving: Serving) {
        *self.serving.lock().expect("lock") = serving;
    }
}

/// Reads one request head, then answers it as `serving` says.
fn answer(mut sock: TcpStream, serving: &Mutex<Serving>) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
        match sock.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let now = serving.lock().expect("lock").clone();
    if let Serving::Crl(body) = now {
        let header = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/pkix-crl\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        let _ = sock.write_all(header.as_bytes());
        let _ = sock.write_all(&body);
    }
}

fn der(crl: &rcgen::CertificateRevocationList) -> Vec<u8> {
    crl.der().to_vec()
}

/// ringtls with `--crl-fetch --crl-refresh 1s` and `extra`.
fn serve(setup: &Setup, upstream: &Upstream, extra: &[&str]) -> common::Server {
    setup
        .serve(upstream.addr)
        .args([
            "--crl-fetch",
            "--crl-refresh",
            "1s",
            "--metrics",
            "127.0.0.1:0",
        ])
        .args(extra)
        .start()
}

#[test]
fn a_certificate_revoked_in_a_refreshed_crl_is_refused_without_a_reload() {
    let setup = Setup::new();
    let crls = CrlServer::start(der(&setup.ca.crl(&[])));
    let alice = setup.ca.client_with_crl_dp("Alice", &crls.url());
    let upstream = Upstream::echo();
    let server = serve(&setup, &upstream, &[]);
    // Alice's first handshake makes her distribution point known.
    common::connect(server.addr(), &setup.client(&alice)).expect("no CRL yet");
    let line = server.wait_for_line(&["crl.fetched", "revoked=0"]);
    assert!(line.contains(&crls.url()), "{line}");
    server.wait_for_line(&["reload.ok", "cause=crl_fetch", "generation=2"]);
    common::connect(server.addr(), &setup.client(&alice)).expect("an empty CRL");

    crls.set(Serving::Crl(der(&setup.ca.crl(&[&alice]))));
    server.wait_for_line(&["crl.fetched", "revoked=1"]);
    server.wait_for_line(&["reload.ok", "cause=crl_fetch", "generation=3"]);
    expect_alert(
        common::connect(server.addr(), &setup.client(&alice)),
        rustls::AlertDescription::CertificateRevoked,
    );
    let line = server.wait_for_line(&["conn.rejected", "reason=revoked"]);
    assert!(line.contains("revocation=crl_fetched"), "{line}");
    assert_eq!(upstream.accepted(), 2);
    let metrics = server.metrics.expect("metrics");
    let (_, body) = http_get(metrics, "/metrics");
    assert!(
        body.lines().any(
            |l| l.starts_with("ringtls_crl_fetches_total{result=\"ok\"}") && !l.ends_with(" 0")
        ),
        "{body}"
    );
    let series = body
        .lines()
        .find(|l| l.starts_with("ringtls_crl_next_update_seconds{"))
        .unwrap_or_else(|| panic!("no CRL series:\n{body}"));
    assert!(series.contains("source=\"fetched\""), "{series}");
    assert!(series.contains(&crls.url()), "{series}");
}

#[test]
fn a_crl_server_that_goes_down_leaves_the_last_good_crl_in_force() {
    let setup = Setup::new();
    let bob = setup.ca.client("Bob");
    let crls = CrlServer::start(der(&setup.ca.crl(&[&bob])));
    let alice = setup.ca.client_with_crl_dp("Alice", &crls.url());
    let upstream = Upstream::echo();
    let server = serve(&setup, &upstream, &[]);
    common::connect(server.addr(), &setup.client(&alice)).expect("alice");
    server.wait_for_line(&["reload.ok", "cause=crl_fetch", "generation=2"]);
    expect_alert(
        common::connect(server.addr(), &setup.client(&bob)),
        rustls::AlertDescription::CertificateRevoked,
    );
    crls.set(Serving::Down);
    let line = server.wait_for_line(&["crl.fetch_failed", "keeping=last_good"]);
    assert!(line.contains("result=unreachable"), "{line}");
    expect_alert(
        common::connect(server.addr(), &setup.client(&bob)),
        rustls::AlertDescription::CertificateRevoked,
    );
    common::connect(server.addr(), &setup.client(&alice)).expect("alice still");
    common::wait_metric(
        server.metrics.expect("metrics"),
        "ringtls_crl_fetches_total{result=\"unreachable\"}",
        1,
    );
}

#[test]
fn a_stale_fetched_crl_follows_the_stale_crl_policy() {
    for policy in ["warn", "refuse"] {
        let setup = Setup::new();
        let crls = CrlServer::start(der(&setup.ca.stale_crl(&[])));
        let alice = setup.ca.client_with_crl_dp("Alice", &crls.url());
        let upstream = Upstream::echo();
        let server = serve(&setup, &upstream, &["--stale-crl", policy]);
        common::connect(server.addr(), &setup.client(&alice)).expect("no CRL yet");
        server.wait_for_line(&["reload.ok", "cause=crl_fetch", "generation=2"]);
        let line = server.wait_for_line(&["crl.stale", &format!("policy={policy}")]);
        assert!(line.contains(&crls.url()), "{line}");
        let again = common::connect(server.addr(), &setup.client(&alice));
        match policy {
            "warn" => {
                again.expect("warn: still used");
            }
            _ => {
                expect_alert(again, rustls::AlertDescription::UnknownCA);
                let line = server.wait_for_line(&["conn.rejected", "reason=crl_stale"]);
                assert!(line.contains("revocation=crl_fetched"), "{line}");
            }
        }
    }
}

#[test]
fn a_crl_not_signed_by_its_issuer_is_refused() {
    let setup = Setup::new();
    let stranger = Ca::root("Stranger");
    let crls = CrlServer::start(der(&stranger.crl(&[])));
    let alice = setup.ca.client_with_crl_dp("Alice", &crls.url());
    let upstream = Upstream::echo();
    let server = serve(&setup, &upstream, &[]);
    common::connect(server.addr(), &setup.client(&alice)).expect("alice");
    let line = server.wait_for_line(&["crl.fetch_failed", "result=invalid"]);
    assert!(
        line.contains("not signed by a CA known as its issuer"),
        "{line}"
    );
    assert!(line.contains("keeping=none"), "{line}");
    common::connect(server.addr(), &setup.client(&alice)).expect("still admitted");
}

#[test]
fn the_trust_stores_cas_distribution_points_are_fetched_at_start() {
    let setup = Setup::new();
    let crls = CrlServer::start(der(&setup.ca.crl(&[])));
    let intermediate = setup.ca.intermediate_with_crl_dp("Issuing CA", &crls.url());
    let bundle = format!("{}{}", setup.ca.pem(), intermediate.pem());
    let cas = setup.dir.write("bundle.pem", bundle);
    let upstream = Upstream::echo();
    let server = common::Serve::new(upstream.addr, &setup.crt, &setup.key)
        .ca(&cas)
        .args(["--crl-fetch", "--crl-refresh", "1s"])
        .start();
    let line = server.wait_for_line(&["crl.fetched", "issuer=\"CN=Test Root\""]);
    assert!(line.contains(&crls.url()), "{line}");
    server.wait_for_line(&["reload.ok", "cause=crl_fetch"]);
}

#[test]
fn a_live_connection_ends_when_a_fetched_crl_lists_its_certificate() {
    let setup = Setup::new();
    let crls = CrlServer::start(der(&setup.ca.crl(&[])));
    let alice = setup.ca.client_with_crl_dp("Alice", &crls.url());
    let bob = setup.ca.client_with_crl_dp("Bob", &crls.url());
    let upstream = Upstream::echo();
    let server = serve(&setup, &upstream, &["--reauthorize-on-reload"]);
    let mut alice_conn = common::connect(server.addr(), &setup.client(&alice)).expect("alice");
    let mut bob_conn = common::connect(server.addr(), &setup.client(&bob)).expect("bob");
    server.wait_for_line(&["reload.ok", "cause=crl_fetch", "generation=2"]);
    crls.set(Serving::Crl(der(&setup.ca.crl(&[&alice]))));
    alice_conn
        .sock
        .set_read_timeout(Some(std::time::Duration::from_secs(15)))
        .expect("timeout");
    let rest = common::client::read_to_clean_eof(&mut alice_conn).expect("close_notify, EOF");
    assert!(rest.is_empty(), "unexpected bytes {rest:?}");
    let line = server.wait_for_line(&["conn.closed", "reason=revoked"]);
    assert!(line.contains("client=\"Alice\""), "{line}");
    common::probe(&mut bob_conn).expect("bob is not listed: his connection stays");
}
