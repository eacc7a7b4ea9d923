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

/// Handshake with `server_name`; the leaf certificate the server presented.
fn served_leaf(
    addr: std::net::SocketAddr,
    opts: &common::ClientOpts,
) -> Result<Vec<u8>, common::Failure> {
    let stream = common::handshake(addr, opts)?;
    Ok(stream
        .conn
        .peer_certificates()
        .and_then(|c| c.first())
        .expect("server certificate")
        .to_vec())
}

#[test]
fn chooses_the_certificate_by_sni_with_one_label_wildcards() {
    let setup = Setup::new();
    let upstream = Upstream::echo();
    let wildcard = setup.ca.server_for(&["*.example.test"]);
    let crt2 = setup.dir.write("wild.pem", wildcard.chain_pem());
    let key2 = setup
        .dir
        .write("wild.key", wildcard.key_pem(common::KeyFormat::Pkcs8));
    let server = setup
        .serve(upstream.addr)
        .args([
            "--crt",
            crt2.to_str().expect("path"),
            "--key",
            key2.to_str().expect("path"),
        ])
        .start();
    let alice = setup.ca.client("Alice");

    let leaf = served_leaf(
        server.addr(),
        &setup.client(&alice).server_name("api.example.test"),
    )
    .expect("the wildcard certificate, valid for api.example.test");
    assert_eq!(leaf, wildcard.cert.to_vec());

    let leaf = served_leaf(
        server.addr(),
        &setup.client(&alice).server_name("localhost"),
    )
    .expect("the default certificate for localhost");
    assert_eq!(leaf, setup.server.cert.to_vec());

    // Two labels where the wildcard covers one: the default certificate, which the client
    // (rightly) refuses for that name.
    assert!(
        served_leaf(
            server.addr(),
            &setup.client(&alice).server_name("a.b.example.test")
        )
        .is_err(),
        "a.b.example.test must not get the *.example.test certificate"
    );
}

#[test]
fn refuses_unpaired_crt_and_key() {
    let setup = Setup::new();
    let upstream = Upstream::echo();
    let err = setup
        .serve(upstream.addr)
        .args(["--crt", setup.crt.to_str().expect("path")])
        .try_start()
        .err()
        .expect("serve must refuse 2 --crt with 1 --key");
    assert_eq!(err.code, Some(64), "{err:?}");
    assert!(err.stderr.contains("pairs"), "{}", err.stderr);
}
