//! One identity per client certificate: `--allow-cn`, the PROXY v2 header's SSL_CN and the event
//! log's `client` name the same CN, however hostile the subject (RFC 4514 specials, `CN=` inside
//! another attribute, two CNs, multi-valued RDNs, NUL, BMPString, a SAN that looks like a CN).

mod common;

use std::process::Command;
use std::time::Duration;

use common::process::run_command;
use common::proxy_header::{parse, ssl_sub_tlvs, tlv};
use common::{Leaf, Setup, Upstream, connect, expect_alert};
use rcgen::{DistinguishedName, DnType, DnValue, SanType};
use rustls::AlertDescription;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

const SSL_CN: u8 = 0x22;

fn dn(entries: &[(DnType, &str)]) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    for (ty, value) in entries {
        dn.push(ty.clone(), DnValue::Utf8String((*value).to_owned()));
    }
    dn
}

/// commonName under a type rcgen keeps apart from `DnType::CommonName`: a second CN attribute.
fn second_cn() -> DnType {
    DnType::CustomDnType(vec![2, 5, 4, 3])
}

/// What the upstream and the log said about one served connection.
struct Seen {
    ssl_cn: Option<Vec<u8>>,
    event: serde_json::Value,
}

fn closed_event(stderr: &str) -> serde_json::Value {
    stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|e| e["event"] == "conn.closed")
        .unwrap_or_else(|| panic!("no conn.closed in\n{stderr}"))
}

/// Serves `leaf` under `policy` with `--proxy-protocol`; returns the SSL_CN the upstream got
/// and the close event.
fn serve_one(setup: &Setup, policy: &[&str], opts: &common::ClientOpts) -> Seen {
    let upstream = Upstream::record();
    let server = setup
        .serve(upstream.addr)
        .args(["--proxy-protocol", "--log-format", "json", "--threads", "1"])
        .args(policy)
        .start();
    let mut stream = common::handshake(server.addr(), opts).expect("handshake");
    common::client::send_close_notify(&mut stream).expect("close_notify");
    let received = upstream.wait_received(1, Duration::from_secs(10));
    let header = parse(&received[0]);
    let ssl_cn = tlv(&ssl_sub_tlvs(&header), SSL_CN).map(<[u8]>::to_vec);
    let text = server.wait_for_stderr("the close event", |s| s.contains("conn.closed"));
    Seen {
        ssl_cn,
        event: closed_event(&text),
    }
}

fn refused(setup: &Setup, policy: &[&str], leaf: &Leaf) {
    let upstream = Upstream::echo();
    let server = setup.serve(upstream.addr).args(policy).start();
    expect_alert(
        connect(server.addr(), &setup.client(leaf)),
        AlertDescription::AccessDenied,
    );
    assert_eq!(
        upstream.accepted(),
        0,
        "a refused client reached the upstream"
    );
}

#[test]
fn cn_spelled_inside_another_attribute_is_not_the_cn() {
    let setup = Setup::new();
    let leaf = setup.ca.client_named(
        "spoof",
        dn(&[
            (DnType::OrganizationName, "x, CN=admin"),
            (DnType::OrganizationalUnitName, "CN=root"),
            (DnType::CommonName, "bob"),
        ]),
        vec![],
    );
    let seen = serve_one(&setup, &["--allow-cn", "bob"], &setup.client(&leaf));
    assert_eq!(seen.ssl_cn.as_deref(), Some(&b"bob"[..]), "SSL_CN");
    assert_eq!(seen.event["client"], "bob", "{}", seen.event);
    assert_eq!(
        seen.event["subject"], "O=x\\, CN=admin, OU=CN=root, CN=bob",
        "the subject is escaped, so it cannot pass for another"
    );
    refused(&setup, &["--allow-cn", "admin"], &leaf);
    refused(&setup, &["--allow-cn", "root"], &leaf);
}

#[test]
fn a_certificate_without_cn_sends_no_ssl_cn() {
    let setup = Setup::new();
    let leaf = setup.ca.client_named(
        "no cn",
        dn(&[(DnType::OrganizationName, "CN=admin")]),
        vec![],
    );
    let seen = serve_one(&setup, &["--allow-all"], &setup.client(&leaf));
    assert_eq!(seen.ssl_cn, None, "no CN, no SSL_CN TLV");
    assert_eq!(seen.event["client"], "", "{}", seen.event);
    assert_eq!(seen.event["subject"], "O=CN=admin");
    refused(&setup, &["--allow-cn", "admin"], &leaf);
    refused(&setup, &["--allow-cn", "O=CN=admin"], &leaf);
}

#[test]
fn two_cns_are_no_cn_for_the_allow_list_the_header_and_the_log() {
    let setup = Setup::new();
    let leaf = setup.ca.client_named(
        "two cns",
        dn(&[(DnType::CommonName, "admin"), (second_cn(), "bob")]),
        vec![],
    );
    refused(&setup, &["--allow-cn", "bob"], &leaf);
    refused(&setup, &["--allow-cn", "admin"], &leaf);
    let seen = serve_one(&setup, &["--allow-all"], &setup.client(&leaf));
    assert_eq!(seen.ssl_cn, None);
    assert_eq!(seen.event["client"], "");
    assert_eq!(seen.event["subject"], "CN=admin, CN=bob");
}

#[test]
fn a_cn_with_an_embedded_nul_is_no_cn() {
    let setup = Setup::new();
    let leaf = setup
        .ca
        .client_named("nul", dn(&[(DnType::CommonName, "bob\0admin")]), vec![]);
    refused(&setup, &["--allow-cn", "bob"], &leaf);
    let seen = serve_one(&setup, &["--allow-all"], &setup.client(&leaf));
    assert_eq!(seen.ssl_cn, None, "a C upstream would read SSL_CN as 'bob'");
    assert_eq!(seen.event["client"], "");
    assert_eq!(seen.event["subject"], "CN=bob\\00admin");
}

#[test]
fn bmpstring_and_utf8_cns_match_and_travel_as_utf8() {
    let setup = Setup::new();
    for (label, value) in [
        (
            "bmp",
            DnValue::BmpString("Jürgen Ω".try_into().expect("BMPString")),
        ),
        ("utf8", DnValue::Utf8String("Jürgen Ω".to_owned())),
    ] {
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, value);
        let leaf = setup.ca.client_named(label, name, vec![]);
        let seen = serve_one(&setup, &["--allow-cn", "Jürgen Ω"], &setup.client(&leaf));
        assert_eq!(
            seen.ssl_cn.as_deref(),
            Some("Jürgen Ω".as_bytes()),
            "{label}"
        );
        assert_eq!(seen.event["client"], "Jürgen Ω", "{label}");
    }
}

#[test]
fn a_san_that_looks_like_a_cn_is_not_the_cn() {
    let setup = Setup::new();
    let leaf = setup.ca.client_named(
        "san",
        dn(&[(DnType::CommonName, "bob")]),
        vec![
            SanType::DnsName("admin".try_into().expect("dns")),
            SanType::Rfc822Name("CN=admin".try_into().expect("email")),
        ],
    );
    refused(&setup, &["--allow-cn", "admin"], &leaf);
    let seen = serve_one(&setup, &["--allow-dns", "admin"], &setup.client(&leaf));
    assert_eq!(seen.ssl_cn.as_deref(), Some(&b"bob"[..]));
    assert_eq!(seen.event["client"], "bob");
}

/// Multi-valued RDNs, which rcgen cannot write: made by `openssl req -multivalue-rdn` and
/// signed by the test CA with `openssl x509 -req`.
#[test]
#[cfg_attr(
    not(has = "openssl"),
    ignore = "SKIPPED: openssl not found (apt-get install openssl)"
)]
fn multi_valued_rdns_follow_the_same_rule() {
    common::need("openssl");
    let setup = Setup::new();
    let ca_key = setup.dir.write("ca.key", setup.ca.key_pem());
    let ext = setup.dir.write(
        "client.ext",
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=clientAuth\n",
    );
    let issue = |name: &str, subject: &str| -> common::ClientOpts {
        let key = setup.dir.join(&format!("{name}.key"));
        let csr = setup.dir.join(&format!("{name}.csr"));
        let crt = setup.dir.join(&format!("{name}.pem"));
        let mut req = Command::new("openssl");
        req.args(["req", "-new", "-newkey", "ec", "-pkeyopt"])
            .args([
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-multivalue-rdn",
                "-subj",
            ])
            .arg(subject)
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&csr);
        run_command(req, Duration::from_secs(30)).assert_code(0);
        let mut sign = Command::new("openssl");
        sign.args(["x509", "-req", "-days", "2", "-in"])
            .arg(&csr)
            .arg("-CA")
            .arg(&setup.ca_file)
            .arg("-CAkey")
            .arg(&ca_key)
            .args(["-set_serial", "4242", "-extfile"])
            .arg(&ext)
            .arg("-out")
            .arg(&crt);
        run_command(sign, Duration::from_secs(30)).assert_code(0);
        let cert = CertificateDer::from_pem_file(&crt).expect("openssl's certificate");
        let key = PrivateKeyDer::from_pem_file(&key).expect("openssl's key");
        common::ClientOpts::new(&setup.ca).raw_identity(vec![cert], key)
    };

    // One RDN holding O and CN, then a CN of its own: two CNs, so none.
    let two = issue("two", "/O=x+CN=admin/CN=bob");
    let seen = serve_one(&setup, &["--allow-all"], &two);
    assert_eq!(seen.ssl_cn, None);
    assert_eq!(seen.event["client"], "");
    assert_eq!(seen.event["subject"], "O=x + CN=admin, CN=bob");
    {
        let upstream = Upstream::echo();
        let server = setup
            .serve(upstream.addr)
            .args(["--allow-cn", "admin", "--allow-cn", "bob"])
            .start();
        expect_alert(connect(server.addr(), &two), AlertDescription::AccessDenied);
    }

    // One multi-valued RDN with a single CN: that CN.
    let one = issue("one", "/CN=bob+OU=ops");
    let seen = serve_one(&setup, &["--allow-cn", "bob"], &one);
    assert_eq!(seen.ssl_cn.as_deref(), Some(&b"bob"[..]));
    assert_eq!(seen.event["client"], "bob");
}
