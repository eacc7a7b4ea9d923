//! Identity allow-lists: a client whose chain is valid but whose certificate matches none of the
//! `--allow-*` entries is refused inside the handshake with alert access_denied (49), and its
//! bytes never reach the upstream. Each kind has an accept and a reject test.

mod common;

use common::{Ca, Leaf, Setup, Upstream, connect, expect_alert, run};
use rustls::AlertDescription;

/// Starts serve with `args` and the CA of a fresh setup; `leaves` issues, from that CA, one
/// client that the policy must accept and one it must refuse.
fn check_policy(args: &[&str], leaves: impl Fn(&Ca) -> (Leaf, Leaf)) {
    let setup = Setup::new();
    let (accepted, refused) = leaves(&setup.ca);
    let upstream = Upstream::echo();
    let server = setup
        .serve(upstream.addr)
        .args(args.iter().copied())
        .start();
    expect_alert(
        connect(server.addr(), &setup.client(&refused)),
        AlertDescription::AccessDenied,
    );
    server.wait_for_line(&["conn.rejected", "reason=not_allowed", "alert=49"]);
    assert_eq!(
        upstream.accepted(),
        0,
        "a refused client reached the upstream"
    );
    connect(server.addr(), &setup.client(&accepted)).expect("allowed client");
    assert_eq!(upstream.accepted(), 1);
}

#[test]
fn admits_listed_cn_and_refuses_others_with_access_denied() {
    check_policy(&["--allow-cn", "alice", "--allow-cn", "bob"], |ca| {
        (ca.client("bob"), ca.client("mallory"))
    });
}

#[test]
fn admits_listed_ou_and_refuses_others() {
    check_policy(&["--allow-ou", "payments"], |ca| {
        (
            ca.client_identity("svc-a", Some("payments"), &[], &[]),
            ca.client_identity("svc-b", Some("marketing"), &[], &[]),
        )
    });
}

#[test]
fn admits_dns_san_matching_one_label_wildcard_only() {
    check_policy(&["--allow-dns", "*.svc.example.com"], |ca| {
        (
            ca.client_identity("x", None, &["web.svc.example.com"], &[]),
            // `*` stands for one label, not two.
            ca.client_identity("y", None, &["a.web.svc.example.com"], &[]),
        )
    });
}

#[test]
fn admits_spiffe_id_matching_one_segment_wildcard_only() {
    check_policy(&["--allow-uri", "spiffe://example.org/ns/*/sa/web"], |ca| {
        (
            ca.client_identity("x", None, &[], &["spiffe://example.org/ns/prod/sa/web"]),
            ca.client_identity("y", None, &[], &["spiffe://example.org/ns/prod/sa/db"]),
        )
    });
}

#[test]
fn lists_of_different_kinds_are_ored() {
    check_policy(
        &["--allow-cn", "alice", "--allow-dns", "api.example.com"],
        |ca| {
            (
                ca.client_identity("not-alice", None, &["api.example.com"], &[]),
                ca.client_identity("not-alice-either", None, &["www.example.com"], &[]),
            )
        },
    );
}

#[test]
fn allow_all_admits_any_valid_client() {
    let setup = Setup::new();
    let upstream = Upstream::echo();
    let server = setup.serve(upstream.addr).args(["--allow-all"]).start();
    connect(server.addr(), &setup.client(&setup.ca.client("anyone"))).expect("valid chain");
}

#[test]
fn refuses_allow_all_combined_with_a_list() {
    let setup = Setup::new();
    let out = setup.check(&["--allow-all", "--allow-cn", "alice"]);
    out.assert_code(64);
    assert!(out.stderr.contains("--allow-all"), "{}", out.stderr);
}

#[test]
fn refuses_allow_list_without_trust_store() {
    let setup = Setup::new();
    let out = run([
        "check",
        "--crt",
        setup.crt.to_str().expect("path"),
        "--key",
        setup.key.to_str().expect("path"),
        "--allow-cn",
        "alice",
    ]);
    out.assert_code(64);
    assert!(out.stderr.contains("--mutual-tls-cas"), "{}", out.stderr);
}

#[test]
fn check_prints_the_policy() {
    let setup = Setup::new();
    let out = setup.check(&[
        "--allow-cn",
        "alice",
        "--allow-uri",
        "spiffe://example.org/x",
    ]);
    out.assert_code(0);
    assert!(
        out.stdout
            .contains("CN=alice or URI=spiffe://example.org/x"),
        "{}",
        out.stdout
    );
}
