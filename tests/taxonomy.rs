//! One reject taxonomy: each way a client is turned away is one `conn.rejected` event with its
//! reason and one count under the same metric label. Every reason a client can cause against a
//! single server is triggered here; `max_conns` and `upstream_unreachable` need servers of their
//! own and are covered in limits.rs and metrics.rs.

mod common;

use std::io::{Read, Write};

use common::client::tcp_connect;
use common::{Ca, ClientFlaw, ClientOpts, Setup, Upstream, connect};

#[test]
fn every_rejection_is_one_event_and_one_metric_with_the_same_reason() {
    let setup = Setup::new();
    let upstream = Upstream::echo();
    let revoked = setup
        .ca
        .client_identity("Revoked", Some("engineering"), &[], &[]);
    let crl = setup.dir.write(
        "revoked.crl.pem",
        setup.ca.crl(&[&revoked]).pem().expect("CRL PEM"),
    );
    let server = setup
        .serve(upstream.addr)
        .crl(&crl)
        .args([
            "--log-format",
            "json",
            "--metrics",
            "127.0.0.1:0",
            "--allow-ou",
            "engineering",
            "--handshake-timeout",
            "1s",
        ])
        .start();
    let addr = server.addr();
    let other_ca = Ca::root("Other Root");
    let engineer = setup
        .ca
        .client_identity("Eve", Some("engineering"), &[], &[]);
    let flawed = |flaw| setup.ca.client_with("Flawed", flaw);
    // A certificate whose CA signature no longer matches: its last byte (inside the signature)
    // flipped. The key still matches, so only the chain check can fail.
    let forged = {
        let mut der = engineer.cert.to_vec();
        let last = der.len() - 1;
        der[last] ^= 0x01;
        ClientOpts::new(&setup.ca).raw_identity(
            vec![der.into()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(engineer.key.serialize_der().into()),
        )
    };

    // Certificate reasons: the client presents something the server refuses.
    let refused: Vec<(&str, ClientOpts)> = vec![
        ("no_certificate", ClientOpts::new(&setup.ca)),
        ("unknown_ca", setup.client(&other_ca.client("Stranger"))),
        ("expired", setup.client(&flawed(ClientFlaw::Expired))),
        (
            "not_yet_valid",
            setup.client(&flawed(ClientFlaw::NotYetValid)),
        ),
        ("revoked", setup.client(&revoked)),
        (
            "wrong_usage",
            setup.client(&flawed(ClientFlaw::ServerAuthOnly)),
        ),
        ("not_allowed", setup.client(&setup.ca.client("Marketing"))),
        ("bad_certificate", forged),
        // The client refuses us: it does not trust our certificate's issuer.
        (
            "client_alert",
            ClientOpts::new(&other_ca).identity(&engineer),
        ),
    ];
    // The alert each client received, by reason: the log must name the same one.
    let mut received: Vec<(&str, Option<u8>)> = Vec::new();
    for (reason, opts) in &refused {
        match connect(addr, opts) {
            Ok(_) => panic!("{reason}: the client got through"),
            Err(failure) => received.push((reason, failure.alert().map(u8::from))),
        }
    }
    // Plaintext HTTP instead of a ClientHello: the answer is one plaintext alert record.
    let mut garbage = tcp_connect(addr);
    garbage
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("write");
    let mut answer = Vec::new();
    let _ = garbage.read_to_end(&mut answer);
    let alert = match answer[..] {
        [21, _, _, 0, 2, _, description] => Some(description),
        _ => None,
    };
    received.push(("protocol_error", alert));
    // Connects and leaves.
    drop(tcp_connect(addr));
    // Connects and says nothing until the handshake timeout.
    let _ = tcp_connect(addr).read_to_end(&mut Vec::new());

    let mut reasons: Vec<&str> = refused.iter().map(|(r, _)| *r).collect();
    reasons.extend(["protocol_error", "client_closed", "handshake_timeout"]);
    let text = server.wait_for_stderr("one rejection per reason", |s| {
        s.lines()
            .filter(|l| l.contains("\"conn.rejected\""))
            .count()
            >= reasons.len()
    });
    let events: Vec<serde_json::Value> = text
        .lines()
        .filter(|l| l.contains("\"conn.rejected\""))
        .map(|l| serde_json::from_str(l).expect("JSON event"))
        .collect();
    let (_, metrics) = common::http_get(server.metrics.expect("metrics address"), "/metrics");
    for reason in &reasons {
        let logged = events.iter().filter(|e| e["reason"] == *reason).count();
        assert_eq!(logged, 1, "{reason}: {logged} events\n{text}");
        let series = format!(
            "ringtls_handshakes_total{{result=\"rejected\",reason=\"{reason}\",endpoint=\"default\"}} 1"
        );
        assert!(
            metrics.lines().any(|l| l == series),
            "no {series:?} in\n{metrics}"
        );
    }
    for (reason, alert) in &received {
        let event = events
            .iter()
            .find(|e| e["reason"] == *reason)
            .expect("event");
        let want = alert.map_or("none".to_owned(), |a| a.to_string());
        assert_eq!(
            event["alert"], want,
            "{reason}: the client received {want}, the log says {event}"
        );
    }
    // A refused certificate is named in its rejection, although rustls keeps none.
    let expired = events
        .iter()
        .find(|e| e["reason"] == "expired")
        .expect("expired event");
    assert_eq!(expired["client"], "Flawed");
    assert!(
        expired["issuer"]
            .as_str()
            .is_some_and(|i| i.contains("Test Root"))
    );
    assert_eq!(expired["sni"], "localhost");
    assert_eq!(
        upstream.accepted(),
        0,
        "a turned-away client reached the upstream"
    );
}
