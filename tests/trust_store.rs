//! Start-up validation of credentials: the CA bundle rules (RFC 5280 §4.2.1.9 basicConstraints,
//! §4.2.1.3 keyUsage), key formats, chains, missing files, and what `check` prints.
//!
//! Every refusal is asserted for both `check` and `serve`: exit 78 and one stderr line naming
//! the flag, the file and (for a certificate) its 1-based index and subject. Every rule also
//! has an accept test.

mod common;

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use common::pki::{CA_NOT_AFTER_YEAR, LEAF_NOT_AFTER_YEAR, pem_block};
use common::{Ca, CaFlaw, KeyFormat, Output, Serve, Setup, Upstream, connect, expect_alert, run};
use rustls::AlertDescription;

/// The credential flags shared by `check` and `serve`.
struct Creds {
    crt: PathBuf,
    key: PathBuf,
    cas: Vec<PathBuf>,
    crls: Vec<PathBuf>,
}

impl Creds {
    fn new(setup: &Setup) -> Creds {
        Creds {
            crt: setup.crt.clone(),
            key: setup.key.clone(),
            cas: Vec::new(),
            crls: Vec::new(),
        }
    }

    fn ca(mut self, path: &Path) -> Creds {
        self.cas.push(path.to_owned());
        self
    }

    fn tail_args(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec![
            "--crt".into(),
            self.crt.clone().into(),
            "--key".into(),
            self.key.clone().into(),
        ];
        for ca in &self.cas {
            args.push("--mutual-tls-cas".into());
            args.push(ca.clone().into());
        }
        for crl in &self.crls {
            args.push("--crl".into());
            args.push(crl.clone().into());
        }
        args
    }

    fn check(&self) -> Output {
        let mut args: Vec<OsString> = vec!["check".into()];
        args.extend(self.tail_args());
        run(args)
    }

    fn serve(&self, upstream: &Upstream) -> Serve {
        let mut serve = Serve::new(upstream.addr, &self.crt, &self.key);
        for ca in &self.cas {
            serve = serve.ca(ca);
        }
        for crl in &self.crls {
            serve = serve.crl(crl);
        }
        serve
    }
}

#[track_caller]
fn assert_one_error_line(what: &str, code: Option<i32>, stderr: &str, needles: &[&str]) {
    assert_eq!(
        code,
        Some(78),
        "{what}: expected exit 78 (bad config)\n--- stderr ---\n{stderr}"
    );
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(
        lines.len(),
        1,
        "{what}: expected exactly one error line\n--- stderr ---\n{stderr}"
    );
    for needle in needles {
        assert!(
            lines[0].contains(needle),
            "{what}: error line lacks {needle:?}: {:?}",
            lines[0]
        );
    }
}

/// Both `check` and `serve` must refuse `creds` with exit 78 and one line holding `needles`;
/// `serve` must not even bind (it never prints its listening line).
#[track_caller]
fn assert_refused(creds: &Creds, needles: &[&str]) {
    let check = creds.check();
    assert_one_error_line("check", check.code, &check.stderr, needles);
    assert_eq!(
        check.stdout, "",
        "check printed a table for refused credentials"
    );
    let upstream = Upstream::record();
    match creds.serve(&upstream).try_start() {
        Ok(server) => panic!(
            "serve started with credentials check refused\n--- stderr ---\n{}",
            server.stderr()
        ),
        Err(exited) => assert_one_error_line("serve", exited.code, &exited.stderr, needles),
    }
}

fn path_str(path: &Path) -> String {
    path.display().to_string()
}

/// A bundle of a good CA followed by a CA with `flaw` (so the bad one is certificate #2).
fn bundle_with_bad_second(setup: &Setup, flaw: CaFlaw, cn: &str) -> (Ca, PathBuf) {
    let bad = Ca::root_with(cn, flaw);
    let path = setup
        .dir
        .write("bundle.pem", format!("{}{}", setup.ca.pem(), bad.pem()));
    (bad, path)
}

#[test]
fn accepts_well_formed_ca() {
    let setup = Setup::new();
    let creds = Creds::new(&setup).ca(&setup.ca_file);
    let check = creds.check();
    check.assert_code(0);
    let upstream = Upstream::echo();
    let server = creds.serve(&upstream).start();
    connect(server.addr(), &setup.client(&setup.ca.client("Alice"))).expect("accepted");
}

#[test]
fn rejects_ca_without_basic_constraints() {
    let setup = Setup::new();
    let (bad, path) = bundle_with_bad_second(&setup, CaFlaw::NoBasicConstraints, "No BC Root");
    assert_refused(
        &Creds::new(&setup).ca(&path),
        &[
            "--mutual-tls-cas",
            &path_str(&path),
            "#2",
            &bad.subject(),
            "basicConstraints",
        ],
    );
}

#[test]
fn rejects_ca_with_ca_false() {
    let setup = Setup::new();
    let (bad, path) = bundle_with_bad_second(&setup, CaFlaw::NotCa, "Leafy Root");
    assert_refused(
        &Creds::new(&setup).ca(&path),
        &[
            "--mutual-tls-cas",
            &path_str(&path),
            "#2",
            &bad.subject(),
            "basicConstraints",
            "not a CA",
        ],
    );
}

#[test]
fn rejects_ca_whose_key_usage_lacks_key_cert_sign() {
    let setup = Setup::new();
    let (bad, path) = bundle_with_bad_second(&setup, CaFlaw::NoKeyCertSign, "No Sign Root");
    assert_refused(
        &Creds::new(&setup).ca(&path),
        &[
            "--mutual-tls-cas",
            &path_str(&path),
            "#2",
            &bad.subject(),
            "keyCertSign",
        ],
    );
}

#[test]
fn rejects_private_key_in_bundle() {
    let setup = Setup::new();
    let path = setup.dir.write(
        "bundle-with-key.pem",
        format!(
            "{}{}",
            setup.ca.pem(),
            setup.server.key_pem(KeyFormat::Pkcs8)
        ),
    );
    assert_refused(
        &Creds::new(&setup).ca(&path),
        &["--mutual-tls-cas", &path_str(&path), "private key"],
    );
}

#[test]
fn rejects_empty_bundle() {
    let setup = Setup::new();
    let path = setup.dir.write("empty.pem", "");
    assert_refused(
        &Creds::new(&setup).ca(&path),
        &["--mutual-tls-cas", &path_str(&path), "no certificate"],
    );
}

#[test]
fn rejects_bundle_without_certificate_block() {
    let setup = Setup::new();
    let path = setup.dir.write(
        "prose-only.pem",
        "These are the CAs we trust:\n  (none yet, ask the PKI team)\n",
    );
    assert_refused(
        &Creds::new(&setup).ca(&path),
        &["--mutual-tls-cas", &path_str(&path), "no certificate"],
    );
}

#[test]
fn rejects_certificate_block_with_invalid_base64() {
    let setup = Setup::new();
    let path = setup.dir.write(
        "garbage.pem",
        format!(
            "{}-----BEGIN CERTIFICATE-----\nMIIB!!not*base64@@\n-----END CERTIFICATE-----\n",
            setup.ca.pem()
        ),
    );
    assert_refused(
        &Creds::new(&setup).ca(&path),
        &["--mutual-tls-cas", &path_str(&path)],
    );
}

#[test]
fn rejects_certificate_block_that_is_not_a_certificate() {
    let setup = Setup::new();
    let path = setup.dir.write(
        "not-der.pem",
        format!(
            "{}{}",
            setup.ca.pem(),
            pem_block(
                "CERTIFICATE",
                b"this decodes as base64 but is no DER certificate"
            )
        ),
    );
    assert_refused(
        &Creds::new(&setup).ca(&path),
        &["--mutual-tls-cas", &path_str(&path), "#2"],
    );
}

#[test]
fn accepts_clients_of_every_ca_in_a_bundle() {
    let setup = Setup::new();
    let cas = [
        Ca::root("Bundle A"),
        Ca::root("Bundle B"),
        Ca::root("Bundle C"),
    ];
    let bundle: String = cas.iter().map(Ca::pem).collect();
    let path = setup.dir.write("bundle.pem", bundle);
    let creds = Creds::new(&setup).ca(&path);
    let check = creds.check();
    check.assert_code(0);
    let table = normalized(&check.stdout);
    for ca in &cas {
        assert!(
            table.contains(&ca.fingerprint()),
            "check does not list {}:\n{}",
            ca.subject(),
            check.stdout
        );
    }
    let upstream = Upstream::echo();
    let server = creds.serve(&upstream).start();
    for ca in &cas {
        connect(server.addr(), &setup.client(&ca.client("Member")))
            .unwrap_or_else(|e| panic!("client of {} rejected: {e:?}", ca.subject()));
    }
    // The server's own CA is not in this bundle.
    expect_alert(
        connect(server.addr(), &setup.client(&setup.ca.client("Outsider"))),
        AlertDescription::UnknownCA,
    );
    assert_eq!(upstream.accepted(), cas.len());
}

#[test]
fn accepts_clients_of_cas_in_several_files() {
    let setup = Setup::new();
    let (a, b, c, d) = (
        Ca::root("File1 A"),
        Ca::root("File1 B"),
        Ca::root("File2 C"),
        Ca::root("File2 D"),
    );
    let first = setup
        .dir
        .write("first.pem", format!("{}{}", a.pem(), b.pem()));
    let second = setup
        .dir
        .write("second.pem", format!("{}{}", c.pem(), d.pem()));
    let creds = Creds::new(&setup).ca(&first).ca(&second);
    creds.check().assert_code(0);
    let upstream = Upstream::echo();
    let server = creds.serve(&upstream).start();
    for ca in [&a, &b, &c, &d] {
        connect(server.addr(), &setup.client(&ca.client("Member")))
            .unwrap_or_else(|e| panic!("client of {} rejected: {e:?}", ca.subject()));
    }
    expect_alert(
        connect(
            server.addr(),
            &setup.client(&Ca::root("Stranger").client("X")),
        ),
        AlertDescription::UnknownCA,
    );
    assert_eq!(upstream.accepted(), 4);
}

/// Text the way `openssl x509 -text` puts it around the PEM block.
fn prose(ca: &Ca) -> String {
    format!(
        "Certificate:\n    Data:\n        Version: 3 (0x2)\n        Serial Number:\n            52:00:00:00:00:00:00:00:01\n        Signature Algorithm: ecdsa-with-SHA256\n        Issuer: CN = {cn}\n        Validity\n            Not Before: Jan  1 00:00:00 2020 GMT\n            Not After : Jan  1 00:00:00 {CA_NOT_AFTER_YEAR} GMT\n        Subject: CN = {cn}\n        X509v3 extensions:\n            X509v3 Basic Constraints: critical\n                CA:TRUE\n{pem}\n",
        cn = ca.cn,
        pem = ca.pem()
    )
}

#[test]
fn loads_pem_with_prose_between_blocks() {
    let setup = Setup::new();
    let (a, b) = (Ca::root("Prose A"), Ca::root("Prose B"));
    let path = setup.dir.write(
        "prose.pem",
        format!("# lab CAs, see wiki\n\n{}{}", prose(&a), prose(&b)),
    );
    let creds = Creds::new(&setup).ca(&path);
    let check = creds.check();
    check.assert_code(0);
    let table = normalized(&check.stdout);
    assert!(table.contains(&a.fingerprint()) && table.contains(&b.fingerprint()));
    let upstream = Upstream::echo();
    let server = creds.serve(&upstream).start();
    connect(server.addr(), &setup.client(&b.client("Prose Client"))).expect("accepted");
}

/// `check` must exit 0 but say WARNING on stderr.
#[track_caller]
fn assert_check_warns(creds: &Creds, what: &str) {
    let check = creds.check();
    check.assert_code(0);
    assert!(
        check.stderr.contains("WARNING"),
        "check printed no WARNING on stderr for {what}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        check.stdout,
        check.stderr
    );
}

/// `serve` must start, say WARNING on stderr, and accept clients of the good CA.
#[track_caller]
fn assert_serve_warns(setup: &Setup, creds: &Creds) {
    let upstream = Upstream::echo();
    let server = creds.serve(&upstream).start();
    server.wait_for_line(&["WARNING"]);
    connect(server.addr(), &setup.client(&setup.ca.client("Alice"))).expect("accepted");
}

fn expired_ca_creds(setup: &Setup) -> Creds {
    let (_, path) = bundle_with_bad_second(setup, CaFlaw::Expired, "Old Root");
    Creds::new(setup).ca(&path)
}

fn duplicate_ca_creds(setup: &Setup) -> Creds {
    let path = setup
        .dir
        .write("dup.pem", format!("{}{}", setup.ca.pem(), setup.ca.pem()));
    Creds::new(setup).ca(&path)
}

#[test]
fn check_warns_about_expired_ca_but_passes() {
    let setup = Setup::new();
    assert_check_warns(&expired_ca_creds(&setup), "an expired CA");
}

#[test]
fn serve_warns_about_expired_ca_but_starts() {
    let setup = Setup::new();
    assert_serve_warns(&setup, &expired_ca_creds(&setup));
}

#[test]
fn check_warns_about_duplicate_ca_but_passes() {
    let setup = Setup::new();
    assert_check_warns(&duplicate_ca_creds(&setup), "a duplicate CA");
}

#[test]
fn serve_warns_about_duplicate_ca_but_starts() {
    let setup = Setup::new();
    assert_serve_warns(&setup, &duplicate_ca_creds(&setup));
}

/// `check` then `serve` with the server key in `format`, then one accepted client.
fn assert_server_key_accepted(setup: &Setup, crt: &Path, key: &Path) -> Output {
    let mut creds = Creds::new(setup).ca(&setup.ca_file);
    creds.crt = crt.to_owned();
    creds.key = key.to_owned();
    let check = creds.check();
    check.assert_code(0);
    let upstream = Upstream::echo();
    let server = creds.serve(&upstream).start();
    connect(server.addr(), &setup.client(&setup.ca.client("Alice")))
        .expect("handshake with the server key");
    check
}

#[test]
fn accepts_pkcs8_server_key() {
    let setup = Setup::new();
    let key = setup
        .dir
        .write("pkcs8.key", setup.server.key_pem(KeyFormat::Pkcs8));
    assert_server_key_accepted(&setup, &setup.crt, &key);
}

#[test]
fn accepts_sec1_server_key() {
    let setup = Setup::new();
    let key = setup
        .dir
        .write("sec1.key", setup.server.key_pem(KeyFormat::Sec1));
    assert!(
        std::fs::read_to_string(&key)
            .unwrap()
            .contains("BEGIN EC PRIVATE KEY")
    );
    assert_server_key_accepted(&setup, &setup.crt, &key);
}

#[test]
fn accepts_pkcs1_server_key_with_rsa_certificate() {
    let setup = Setup::new();
    let rsa = setup.ca.server_rsa();
    let crt = setup.dir.write("rsa.pem", rsa.chain_pem());
    let key = setup.dir.write("rsa.key", rsa.key_pem(KeyFormat::Pkcs1));
    assert!(
        std::fs::read_to_string(&key)
            .unwrap()
            .contains("BEGIN RSA PRIVATE KEY")
    );
    let check = assert_server_key_accepted(&setup, &crt, &key);
    assert!(
        check.stdout.to_lowercase().contains("rsa"),
        "check does not name the RSA key type:\n{}",
        check.stdout
    );
}

#[test]
fn rejects_key_not_matching_certificate() {
    let setup = Setup::new();
    let other = setup.ca.server();
    let key = setup
        .dir
        .write("other.key", other.key_pem(KeyFormat::Pkcs8));
    let mut creds = Creds::new(&setup).ca(&setup.ca_file);
    creds.key = key.clone();
    assert_refused(&creds, &["--key", &path_str(&key)]);
}

#[test]
fn serves_certificate_chain_from_crt() {
    let setup = Setup::new();
    let intermediate = setup.ca.intermediate("Server Issuing CA");
    let leaf = intermediate.server();
    let crt = setup.dir.write("chain.pem", leaf.chain_pem());
    let key = setup.dir.write("chain.key", leaf.key_pem(KeyFormat::Pkcs8));
    // The client trusts only the root, so the handshake works only if the server sends the
    // intermediate from --crt.
    assert_server_key_accepted(&setup, &crt, &key);
}

#[test]
fn rejects_missing_crt_file() {
    let setup = Setup::new();
    let missing = setup.dir.join("no-such-server.pem");
    let mut creds = Creds::new(&setup).ca(&setup.ca_file);
    creds.crt = missing.clone();
    assert_refused(&creds, &[&path_str(&missing)]);
}

#[test]
fn rejects_missing_key_file() {
    let setup = Setup::new();
    let missing = setup.dir.join("no-such-server.key");
    let mut creds = Creds::new(&setup).ca(&setup.ca_file);
    creds.key = missing.clone();
    assert_refused(&creds, &[&path_str(&missing)]);
}

#[test]
fn rejects_missing_ca_file() {
    let setup = Setup::new();
    let missing = setup.dir.join("no-such-ca.pem");
    assert_refused(
        &Creds::new(&setup).ca(&missing),
        &["--mutual-tls-cas", &path_str(&missing)],
    );
}

#[test]
fn rejects_missing_crl_file() {
    let setup = Setup::new();
    let missing = setup.dir.join("no-such.crl");
    let mut creds = Creds::new(&setup).ca(&setup.ca_file);
    creds.crls.push(missing.clone());
    assert_refused(&creds, &[&path_str(&missing)]);
}

/// Lowercase, without the colons fingerprints are often printed with.
fn normalized(text: &str) -> String {
    text.to_lowercase().replace(':', "")
}

#[test]
fn check_prints_trust_store_and_server_certificate() {
    let setup = Setup::new();
    let (a, b) = (Ca::root("Table Root A"), Ca::root("Table Root B"));
    let path = setup
        .dir
        .write("table.pem", format!("{}{}", a.pem(), b.pem()));
    let check = Creds::new(&setup).ca(&path).check();
    check.assert_code(0);
    let out = &check.stdout;
    let table = normalized(out);
    for ca in [&a, &b] {
        assert!(
            out.contains(&ca.subject()),
            "no subject {}:\n{out}",
            ca.subject()
        );
        assert!(
            table.contains(&ca.fingerprint()),
            "no SHA-256 fingerprint of {}:\n{out}",
            ca.subject()
        );
    }
    assert!(
        out.find(&a.subject()) < out.find(&b.subject()),
        "trust store not listed in bundle order:\n{out}"
    );
    assert!(
        out.contains(&CA_NOT_AFTER_YEAR.to_string()),
        "no CA notAfter:\n{out}"
    );
    // Server certificate: subject, SANs, notAfter, key type.
    assert!(
        out.contains(&setup.server.subject()),
        "no server subject:\n{out}"
    );
    assert!(
        out.contains("localhost") && out.contains("127.0.0.1"),
        "no SANs:\n{out}"
    );
    assert!(
        out.contains(&LEAF_NOT_AFTER_YEAR.to_string()),
        "no server notAfter:\n{out}"
    );
    let lower = out.to_lowercase();
    assert!(
        ["ecdsa", "p-256", "p256", "prime256v1"]
            .iter()
            .any(|t| lower.contains(t)),
        "no server key type:\n{out}"
    );
}

#[test]
fn check_accepts_credentials_without_trust_store() {
    // serve would start (with its warning), so check says 0.
    let setup = Setup::new();
    Creds::new(&setup).check().assert_code(0);
}

#[test]
#[cfg_attr(
    not(has = "openssl"),
    ignore = "SKIPPED: openssl not found (apt-get install openssl)"
)]
fn generated_key_files_parse_with_openssl() {
    // Guards the harness itself: SEC1 and PKCS#1 are hand-derived from PKCS#8.
    common::need("openssl");
    let setup = Setup::new();
    let rsa = setup.ca.server_rsa();
    for (name, pem) in [
        ("p8.key", setup.server.key_pem(KeyFormat::Pkcs8)),
        ("sec1.key", setup.server.key_pem(KeyFormat::Sec1)),
        ("rsa-p8.key", rsa.key_pem(KeyFormat::Pkcs8)),
        ("pkcs1.key", rsa.key_pem(KeyFormat::Pkcs1)),
    ] {
        let path = setup.dir.write(name, pem);
        let mut cmd = std::process::Command::new("openssl");
        cmd.args(["pkey", "-noout", "-in"]).arg(&path);
        let out = common::process::run_command(cmd, std::time::Duration::from_secs(20));
        assert_eq!(out.code, Some(0), "openssl rejects {name}: {}", out.stderr);
    }
}

#[test]
#[cfg_attr(
    not(has = "strace"),
    ignore = "SKIPPED: strace not found or not permitted to trace (apt-get install strace)"
)]
fn check_opens_no_socket() {
    // `check` must be safe to run next to a live server: it validates files and nothing else.
    common::need("strace");
    let setup = Setup::new();
    let trace = setup.dir.join("check.strace");
    let mut cmd = std::process::Command::new("strace");
    cmd.args([
        "-f",
        "-qq",
        "-e",
        "trace=socket,bind,listen,connect,accept,accept4",
        "-o",
    ])
    .arg(&trace)
    .arg(common::process::bin())
    .arg("check")
    .args(Creds::new(&setup).ca(&setup.ca_file).tail_args());
    let out = common::process::run_command(cmd, std::time::Duration::from_secs(30));
    out.assert_code(0);
    let calls = std::fs::read_to_string(&trace).expect("strace output");
    assert!(
        calls.trim().is_empty(),
        "check made network syscalls:\n{calls}"
    );
}
