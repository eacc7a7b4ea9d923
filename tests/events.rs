//! `--log-format json`: every event is one JSON object per line on stderr, and a connection's
//! close carries the session and the client certificate's identity.

mod common;

use common::client::{read_to_clean_eof, send_close_notify};
use common::{Setup, Upstream, connect, expect_alert};
use rustls::AlertDescription;

fn events(stderr: &str) -> Vec<serde_json::Value> {
    stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

#[test]
fn json_log_has_one_object_per_event_with_the_client_identity() {
    let setup = Setup::new();
    let upstream = Upstream::echo();
    let server = setup
        .serve(upstream.addr)
        .args(["--log-format", "json"])
        .start();
    let alice = setup.ca.client("Alice Json");
    let mut stream = connect(server.addr(), &setup.client(&alice)).expect("good client");
    send_close_notify(&mut stream).expect("close_notify");
    read_to_clean_eof(&mut stream).expect("clean close");
    let stranger = common::Ca::root("Stranger CA").client("Mallory");
    expect_alert(
        connect(server.addr(), &setup.client(&stranger)),
        AlertDescription::UnknownCA,
    );
    let text = server.wait_for_stderr("both connection events", |s| {
        s.contains("conn.closed") && s.contains("conn.rejected")
    });

    let all = events(&text);
    assert!(all.iter().any(|e| e["event"] == "worker.started"), "{text}");
    let closed = all
        .iter()
        .find(|e| e["event"] == "conn.closed")
        .expect("close event");
    assert_eq!(closed["client"], "Alice Json");
    assert_eq!(closed["reason"], "closed");
    assert_eq!(closed["tls"], "TLSv1.3");
    assert_eq!(closed["sni"], "localhost");
    assert_eq!(closed["cipher"], "TLS_AES_128_GCM_SHA256");
    assert_eq!(closed["up"], common::PROBE.len() as u64);
    assert_eq!(closed["down"], common::PROBE.len() as u64);
    assert!(closed["ms"].is_u64(), "{closed}");
    assert!(
        closed["subject"]
            .as_str()
            .is_some_and(|s| s.contains("CN=Alice Json"))
    );
    assert!(
        closed["issuer"]
            .as_str()
            .is_some_and(|s| s.contains("Test Root"))
    );
    assert!(closed["serial"].as_str().is_some_and(|s| !s.is_empty()));
    let fingerprint: String = common::sha256(&alice.cert)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(closed["sha256"], fingerprint.as_str());
    assert!(
        closed["not_after"]
            .as_str()
            .is_some_and(|s| s.ends_with('Z'))
    );

    let rejected = all
        .iter()
        .find(|e| e["event"] == "conn.rejected")
        .expect("reject event");
    assert_eq!(rejected["reason"], "unknown_ca");
    assert_eq!(rejected["alert"], "48");
}

#[test]
fn refuses_unknown_log_format() {
    let setup = Setup::new();
    let upstream = Upstream::echo();
    let err = setup
        .serve(upstream.addr)
        .args(["--log-format", "xml"])
        .try_start()
        .err()
        .expect("serve must refuse --log-format xml");
    assert_eq!(err.code, Some(64), "{err:?}");
}
