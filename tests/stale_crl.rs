//! `--stale-crl warn|refuse`: a CRL past its nextUpdate is a policy, not a surprise. Under warn
//! (the default) it is logged once and still used; under refuse the clients of its CA are
//! refused with `reason=crl_stale`, and clients of other CAs in the bundle are not. The metric
//! `ringtls_crl_next_update_seconds` is negative for it, and `check` says so.

mod common;

use common::{Ca, Setup, Upstream, expect_alert, http_get};

/// A setup whose trust store holds its CA and a second one, with a stale CRL of the first
/// (revoking nobody) and the server started with `extra`.
fn stale(extra: &[&str]) -> (Setup, Ca, Upstream, common::Server) {
    let setup = Setup::new();
    let other = Ca::root("Other Root");
    let bundle = format!("{}{}", setup.ca.pem(), other.pem());
    let cas = setup.dir.write("both.pem", bundle);
    let crl = setup.ca.stale_crl(&[]);
    let crl_file = setup
        .dir
        .write("stale.crl.pem", crl.pem().expect("CRL PEM"));
    let upstream = Upstream::echo();
    let server = common::Serve::new(upstream.addr, &setup.crt, &setup.key)
        .ca(&cas)
        .crl(&crl_file)
        .args(["--metrics", "127.0.0.1:0"])
        .args(extra)
        .start();
    (setup, other, upstream, server)
}

#[test]
fn a_stale_crl_under_warn_is_logged_once_and_still_used() {
    let (setup, _other, upstream, server) = stale(&[]);
    let alice = setup.ca.client("Alice");
    common::connect(server.addr(), &setup.client(&alice)).expect("warn keeps admitting");
    common::connect(server.addr(), &setup.client(&alice)).expect("and again");
    assert_eq!(upstream.accepted(), 2);
    let line = server.wait_for_line(&["crl.stale", "policy=warn"]);
    assert!(line.contains("next_update=2021-01-01T00:00:00Z"), "{line}");
    assert!(line.contains("issuer=\"CN=Test Root\""), "{line}");
    assert_eq!(
        server.stderr().matches("crl.stale").count(),
        1,
        "logged once"
    );
    let (_, body) = http_get(server.metrics.expect("metrics"), "/metrics");
    let series = body
        .lines()
        .find(|l| l.starts_with("ringtls_crl_next_update_seconds{"))
        .unwrap_or_else(|| panic!("no CRL series:\n{body}"));
    assert!(
        series.contains("issuer=\"CN=Test Root\",source=\"file\""),
        "{series}"
    );
    let value: i64 = series
        .rsplit(' ')
        .next()
        .and_then(|v| v.parse().ok())
        .expect("value");
    assert!(value < 0, "a stale CRL's seconds are negative: {series}");
}

#[test]
fn a_stale_crl_under_refuse_refuses_its_cas_clients_only() {
    let (setup, other, upstream, server) = stale(&["--stale-crl", "refuse"]);
    let alice = setup.ca.client("Alice");
    // rustls sends unknown_ca for a revocation status it cannot know.
    expect_alert(
        common::connect(server.addr(), &setup.client(&alice)),
        rustls::AlertDescription::UnknownCA,
    );
    let line = server.wait_for_line(&["conn.rejected", "reason=crl_stale"]);
    assert!(line.contains("client=\"Alice\""), "{line}");
    // The other CA has no CRL: its clients are not affected.
    let bob = other.client("Bob");
    common::connect(server.addr(), &setup.client(&bob)).expect("another CA's client");
    assert_eq!(upstream.accepted(), 1);
    server.wait_for_line(&["crl.stale", "policy=refuse"]);
    let metrics = server.metrics.expect("metrics");
    common::wait_metric(
        metrics,
        "ringtls_handshakes_total{result=\"rejected\",reason=\"crl_stale\",endpoint=\"default\"}",
        1,
    );
}

#[test]
fn check_names_a_stale_crl_and_stale_crl_needs_a_crl() {
    let setup = Setup::new();
    let crl = setup.ca.stale_crl(&[]);
    let crl_file = setup
        .dir
        .write("stale.crl.pem", crl.pem().expect("CRL PEM"));
    let out = setup.check(&[
        "--crl",
        crl_file.to_str().expect("path"),
        "--stale-crl",
        "refuse",
    ]);
    out.assert_code(0);
    assert!(out.stdout.contains("STALE"), "{}", out.stdout);
    assert!(out.stdout.contains("--stale-crl refuse"), "{}", out.stdout);
    let out = setup.check(&["--stale-crl", "refuse"]);
    out.assert_code(64);
    assert!(
        out.stderr.contains("--stale-crl needs --crl"),
        "{}",
        out.stderr
    );
    let out = setup.check(&[
        "--crl",
        crl_file.to_str().expect("path"),
        "--stale-crl",
        "maybe",
    ]);
    out.assert_code(64);
    assert!(
        out.stderr
            .contains("--stale-crl maybe: expected warn or refuse"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_crl_that_goes_stale_while_serving_is_refused_from_then_on_even_for_a_cached_chain() {
    // A CRL whose nextUpdate is five seconds ahead (time enough to start in a debug build).
    let setup = Setup::new();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    let soon = time::OffsetDateTime::from_unix_timestamp(now + 5).expect("time");
    let crl = setup.ca.crl_next_update(&[], soon);
    let crl_file = setup.dir.write("soon.crl.pem", crl.pem().expect("CRL PEM"));
    let upstream = Upstream::echo();
    let server = setup
        .serve(upstream.addr)
        .crl(&crl_file)
        .args(["--stale-crl", "refuse", "--threads", "1"])
        .start();
    let alice = setup.ca.client("Alice");
    // Verified (and cached) while the CRL is fresh.
    common::connect(server.addr(), &setup.client(&alice)).expect("fresh CRL");
    // Logged when it goes stale, by the control thread, with no reload.
    server.wait_for_line(&["crl.stale", "policy=refuse"]);
    expect_alert(
        common::connect(server.addr(), &setup.client(&alice)),
        rustls::AlertDescription::UnknownCA,
    );
    server.wait_for_line(&["conn.rejected", "reason=crl_stale"]);
}
