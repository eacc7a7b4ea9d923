//! TLS knobs: `--tls-min` and the debugging key log.

mod common;

use common::{Setup, Upstream, Version, connect, expect_alert};
use rustls::AlertDescription;

#[test]
fn tls_min_13_refuses_tls12_clients_with_protocol_version_alert() {
    let setup = Setup::new();
    let upstream = Upstream::echo();
    let server = setup
        .serve(upstream.addr)
        .args(["--tls-min", "1.3"])
        .start();
    let alice = setup.ca.client("Alice");
    expect_alert(
        connect(server.addr(), &setup.client(&alice).version(Version::Tls12)),
        AlertDescription::ProtocolVersion,
    );
    server.wait_for_line(&["conn.rejected", "reason=protocol_error", "alert=70"]);
    connect(server.addr(), &setup.client(&alice).version(Version::Tls13)).expect("TLS 1.3");
    assert_eq!(
        upstream.accepted(),
        1,
        "the TLS 1.2 client reached the upstream"
    );
}

#[test]
fn tls_min_12_still_serves_tls12_clients() {
    let setup = Setup::new();
    let upstream = Upstream::echo();
    let server = setup
        .serve(upstream.addr)
        .args(["--tls-min", "1.2"])
        .start();
    let alice = setup.ca.client("Alice");
    connect(server.addr(), &setup.client(&alice).version(Version::Tls12)).expect("TLS 1.2");
}

#[test]
fn refuses_tls_min_below_12() {
    let setup = Setup::new();
    let upstream = Upstream::echo();
    let err = setup
        .serve(upstream.addr)
        .args(["--tls-min", "1.0"])
        .try_start()
        .err()
        .expect("serve must refuse --tls-min 1.0");
    assert_eq!(err.code, Some(64), "{err:?}");
}

#[test]
fn unsafe_keylog_writes_nss_lines_and_warns() {
    let setup = Setup::new();
    let upstream = Upstream::echo();
    let keylog = setup.dir.path().join("keys.log");
    let server = setup
        .serve(upstream.addr)
        .args(["--unsafe-keylog", keylog.to_str().expect("path")])
        .start();
    server.wait_for_line(&["WARNING", "tls.unsafe_keylog"]);
    let alice = setup.ca.client("Alice");
    connect(server.addr(), &setup.client(&alice).version(Version::Tls13)).expect("client");
    let text = std::fs::read_to_string(&keylog).expect("key log written");
    for label in [
        "CLIENT_HANDSHAKE_TRAFFIC_SECRET ",
        "SERVER_TRAFFIC_SECRET_0 ",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(label)),
            "no {label} in {text}"
        );
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&keylog)
        .expect("meta")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600, "key log readable by others");
}
