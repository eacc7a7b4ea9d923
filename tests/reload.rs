//! Reload without a restart: SIGHUP (and `--watch`) re-read the CA bundle; a valid new one is
//! swapped in for new handshakes while established connections go on, a broken one is refused
//! and the old one keeps serving. With `--reauthorize-on-reload`, live connections whose chain
//! no longer verifies are closed; a connection is also closed when its certificate expires.

mod common;

use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::client::{self, read_to_clean_eof};
use common::process::{RUN_TIMEOUT, bin, run_command};
use common::{
    Ca, ClientFlaw, Driver, KeyFormat, Leaf, Setup, Upstream, connect, expect_alert, probe,
};
use rustls::AlertDescription;

/// Replaces `path` atomically (write a sibling, rename over), as deploy tools do.
fn replace(path: &Path, contents: impl AsRef<[u8]>) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents).expect("write new file");
    std::fs::rename(&tmp, path).expect("rename over the old file");
}

/// Sends SIGHUP and waits for the reload event naming generation `generation`.
fn reload(server: &common::Server, generation: u64) -> String {
    server.signal(libc::SIGHUP);
    let line = server.wait_for_stderr(&format!("reload to generation {generation}"), |s| {
        s.lines().any(|l| {
            (l.contains("reload.ok") && l.contains(&format!("generation={generation}")))
                || l.contains("reload.failed")
        })
    });
    line.lines()
        .rev()
        .find(|l| l.contains("reload."))
        .unwrap_or_default()
        .to_owned()
}

fn metric(server: &common::Server, series: &str) -> String {
    let (_, body) = common::http_get(server.metrics.expect("--metrics given"), "/metrics");
    body.lines()
        .find(|l| l.starts_with(series))
        .map(|l| l[series.len()..].trim().to_owned())
        .unwrap_or_else(|| panic!("no {series} in\n{body}"))
}

#[test]
fn reload_swaps_the_ca_bundle_under_200_concurrent_handshakes_without_a_failure() {
    let setup = Setup::new();
    let second = Ca::root("Second Root");
    let upstream = Upstream::echo();
    let server = setup
        .serve(upstream.addr)
        .args(["--metrics", "127.0.0.1:0"])
        .start();
    let bob = second.client("Bob");
    expect_alert(
        connect(server.addr(), &setup.client(&bob)),
        AlertDescription::UnknownCA,
    );

    // 200 concurrent connections doing full mTLS handshakes with a client of the first CA,
    // while the bundle changes five times under them.
    let alice = setup.ca.client("Alice");
    let crt = setup.dir.write("alice.pem", alice.chain_pem());
    let key = setup
        .dir
        .write("alice.key", alice.key_pem(KeyFormat::Pkcs8));
    let mut load = Command::new(bin());
    load.arg("load")
        .args(["--connect", &server.addr().to_string()])
        .arg("--ca")
        .arg(&setup.ca_file)
        .arg("--crt")
        .arg(&crt)
        .arg("--key")
        .arg(&key)
        .args(["--mode", "handshake", "--concurrency", "200"])
        .args(["--duration", "6s", "--json"]);
    let load = std::thread::spawn(move || run_command(load, RUN_TIMEOUT));

    let both = format!("{}{}", setup.ca.pem(), second.pem());
    let reversed = format!("{}{}", second.pem(), setup.ca.pem());
    for generation in 2..=6 {
        let bundle = if generation % 2 == 0 {
            &both
        } else {
            &reversed
        };
        replace(&setup.ca_file, bundle);
        let line = reload(&server, generation);
        assert!(line.contains("reload.ok"), "reload failed: {line}");
    }
    let out = load.join().expect("load thread");
    out.assert_code(0);
    let report: serde_json::Value =
        serde_json::from_str(out.stdout.trim()).expect("load --json prints one object");
    eprintln!("load during reloads: {report}");
    assert_eq!(report["failed"], 0, "good handshakes failed: {report}");
    assert!(
        report["ok"].as_u64().unwrap_or(0) >= 200,
        "too few handshakes to mean anything: {report}"
    );
    // The new trust store is in force for new handshakes.
    connect(server.addr(), &setup.client(&bob)).expect("client of the added CA");
    assert_eq!(metric(&server, "ringtls_config_generation"), "6");
    assert_eq!(metric(&server, "ringtls_reloads_total{result=\"ok\"}"), "5");
}

#[test]
fn broken_bundle_is_refused_and_the_old_one_keeps_serving() {
    let setup = Setup::new();
    let upstream = Upstream::echo();
    let server = setup
        .serve(upstream.addr)
        .args(["--metrics", "127.0.0.1:0"])
        .start();
    let alice = setup.ca.client("Alice");
    let mut established = connect(server.addr(), &setup.client(&alice)).expect("good client");

    // A leaf is not a CA: exactly what a start with this bundle would refuse.
    let not_a_ca = setup.ca.client("Not A CA");
    replace(&setup.ca_file, not_a_ca.chain_pem());
    let line = reload(&server, 2);
    assert!(line.contains("reload.failed"), "{line}");
    assert!(
        line.contains("ca.pem") && line.contains("not a CA"),
        "the error must name the file and the problem: {line}"
    );
    assert_eq!(
        metric(&server, "ringtls_reloads_total{result=\"failed\"}"),
        "1"
    );
    assert_eq!(metric(&server, "ringtls_config_generation"), "1");
    // The expiries exported are still those of the configuration in force.
    for role in ["server", "ca"] {
        let series = format!("ringtls_certificate_expiry_seconds{{role=\"{role}\"");
        let seconds: i64 = metric(&server, &series)
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .expect("a number of seconds");
        assert!(seconds > 3600, "{role} expires in {seconds} s");
    }

    connect(server.addr(), &setup.client(&alice)).expect("old trust store still in force");
    probe(&mut established).expect("established connection unaffected");
    // Same bytes as in force: nothing to swap.
    replace(&setup.ca_file, setup.ca.pem());
    server.signal(libc::SIGHUP);
    server.wait_for_line(&["reload.unchanged", "generation=1"]);
}

#[test]
fn removing_a_ca_refuses_its_new_clients_and_voids_tickets_but_keeps_established_connections() {
    let setup = Setup::new();
    let second = Ca::root("Second Root");
    replace(
        &setup.ca_file,
        format!("{}{}", setup.ca.pem(), second.pem()),
    );
    let upstream = Upstream::echo();
    let server = setup.serve(upstream.addr).args(["--threads", "1"]).start();
    let alice = setup.ca.client("Alice");
    let bob = second.client("Bob");
    let mut established = connect(server.addr(), &setup.client(&alice)).expect("alice");
    let bob_config = setup.client(&bob).config();
    assert_eq!(
        client::connect_with(server.addr(), bob_config.clone()),
        rustls::HandshakeKind::Full
    );
    assert_eq!(
        client::connect_with(server.addr(), bob_config.clone()),
        rustls::HandshakeKind::Resumed,
        "tickets work before the reload"
    );

    replace(&setup.ca_file, second.pem());
    reload(&server, 2);
    expect_alert(
        connect(server.addr(), &setup.client(&alice)),
        AlertDescription::UnknownCA,
    );
    probe(&mut established).expect("a connection established before the reload goes on");
    assert_eq!(
        client::connect_with(server.addr(), bob_config),
        rustls::HandshakeKind::Full,
        "a ticket from before the trust change must not resume"
    );
}

/// The layout kubelet gives a mounted Secret: the visible name is a symlink through `..data`,
/// itself a symlink to a timestamped directory that an update replaces by one rename.
fn secret_dir(root: &Path, stamp: &str, ca_pem: &str) {
    let dir = root.join(stamp);
    std::fs::create_dir(&dir).expect("timestamped dir");
    std::fs::write(dir.join("ca.pem"), ca_pem).expect("ca.pem");
    let tmp = root.join("..data_tmp");
    symlink(stamp, &tmp).expect("..data_tmp");
    std::fs::rename(&tmp, root.join("..data")).expect("atomic ..data swap");
}

#[test]
fn watch_picks_up_a_kubernetes_secret_swap() {
    let setup = Setup::new();
    let second = Ca::root("Rotated Root");
    let secret = setup.dir.join("secret");
    std::fs::create_dir(&secret).expect("secret dir");
    secret_dir(&secret, "..2026_11_29_01", &setup.ca.pem());
    symlink("..data/ca.pem", secret.join("ca.pem")).expect("ca.pem link");

    let upstream = Upstream::echo();
    let server = common::Serve::new(upstream.addr, &setup.crt, &setup.key)
        .ca(&secret.join("ca.pem"))
        .args(["--watch"])
        .start();
    server.wait_for_line(&["watch.start"]);
    let alice = setup.ca.client("Alice");
    let bob = second.client("Bob");
    connect(server.addr(), &setup.client(&alice)).expect("alice before the rotation");

    secret_dir(&secret, "..2026_11_29_02", &second.pem());
    std::fs::remove_dir_all(secret.join("..2026_11_29_01")).expect("kubelet removes the old dir");
    server.wait_for_line(&["reload.ok", "cause=watch", "generation=2"]);
    connect(server.addr(), &setup.client(&bob)).expect("client of the rotated CA");
    expect_alert(
        connect(server.addr(), &setup.client(&alice)),
        AlertDescription::UnknownCA,
    );
}

#[test]
fn reauthorize_on_reload_closes_connections_whose_chain_no_longer_verifies() {
    reauthorize(Driver::IoUring);
}

#[test]
fn reauthorize_on_reload_closes_connections_whose_chain_no_longer_verifies_on_epoll() {
    reauthorize(Driver::Epoll);
}

fn reauthorize(driver: Driver) {
    let setup = Setup::new();
    let second = Ca::root("Second Root");
    replace(
        &setup.ca_file,
        format!("{}{}", setup.ca.pem(), second.pem()),
    );
    let upstream = Upstream::echo();
    let server = setup
        .serve(upstream.addr)
        .args(["--reauthorize-on-reload", "--metrics", "127.0.0.1:0"])
        .driver(driver)
        .start();
    let alice = setup.ca.client("Alice");
    let bob = second.client("Bob");
    let mut alice_conn = connect(server.addr(), &setup.client(&alice)).expect("alice");
    let mut bob_conn = connect(server.addr(), &setup.client(&bob)).expect("bob");

    replace(&setup.ca_file, second.pem());
    reload(&server, 2);
    alice_conn
        .sock
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let rest = read_to_clean_eof(&mut alice_conn).expect("close_notify then EOF for alice");
    assert!(rest.is_empty(), "unexpected bytes {rest:?}");
    let line = server.wait_for_line(&["conn.closed", "reason=reauthorization_failed"]);
    assert!(line.contains("Alice"), "the close names the client: {line}");
    probe(&mut bob_conn).expect("bob's chain still verifies: his connection stays");
    assert_eq!(
        metric(
            &server,
            "ringtls_connections_closed_total{reason=\"reauthorization_failed\",endpoint=\"default\"}"
        ),
        "1"
    );
}

#[test]
fn closes_a_connection_when_its_client_certificate_expires() {
    let setup = Setup::new();
    let upstream = Upstream::echo();
    let server = setup.serve(upstream.addr).start();
    let leaf: Leaf = setup
        .ca
        .client_with("Short Lived", ClientFlaw::ExpiresIn(3));
    let mut stream = connect(server.addr(), &setup.client(&leaf)).expect("valid for 3 s more");
    stream
        .sock
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let rest = read_to_clean_eof(&mut stream).expect("close_notify then EOF at notAfter");
    assert!(rest.is_empty(), "unexpected bytes {rest:?}");
    server.wait_for_line(&["conn.closed", "reason=client_cert_expired"]);
}
