//! `--ca-names auto|all|none` (issue 12, finding 6): with 2,000 CAs in `--mutual-tls-cas` the CA
//! names no longer fit in a CertificateRequest that clients accept. `auto` omits them (and says
//! so at start and on reload) so that curl, `openssl s_client` and rustls clients with a
//! certificate still get in; `all` refuses a list no CertificateRequest can encode, and shows that
//! a list that does fit can still be more than a client buffers; `none` sends no names.
//!
//! The filler CAs share one key (see `pki::filler_cas`), so the 2,000-CA bundle takes well under
//! a second to make; its generation time is printed.

mod common;

use std::io::Write;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use common::pki::filler_cas;
use common::process::{Spawned, run, run_command};
use common::{Failure, Serve, Setup, Upstream, connect, expect_alert};
use rcgen::{DistinguishedName, DnType};
use rustls::client::ResolvesClientCert;
use rustls::sign::CertifiedKey;
use rustls::{AlertDescription, ClientConfig, RootCertStore, SignatureScheme};

/// The bundle size of the issue.
const FILLERS: usize = 2000;
/// `tls::ca_names::AUTO_LIMIT` and `wire_limit` for aws-lc-rs, as the binary reports them.
const AUTO_LIMIT: &str = "limit=16384";
const WIRE_LIMIT: &str = "65499";
const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);

/// 2,000 CAs with subjects the size of real ones (country, organisation, unit, CN: 130 bytes
/// each in the list, 260 KB of names), made once per test binary.
fn fillers() -> &'static str {
    static PEM: OnceLock<String> = OnceLock::new();
    PEM.get_or_init(|| {
        let started = Instant::now();
        let pem = filler_cas((0..FILLERS).map(|i| {
            let mut dn = DistinguishedName::new();
            dn.push(DnType::CountryName, "US");
            dn.push(
                DnType::OrganizationName,
                format!("Example Tenant {i:04} Inc"),
            );
            dn.push(
                DnType::OrganizationalUnitName,
                "Client Certificate Authority",
            );
            dn.push(
                DnType::CommonName,
                format!("Example Tenant {i:04} Client CA"),
            );
            dn
        }));
        eprintln!("generated {FILLERS} filler CAs in {:?}", started.elapsed());
        pem
    })
}

/// A setup whose trust store is the 2,000 fillers plus the setup's own CA, in the middle, which
/// issues the clients.
struct Lab {
    setup: Setup,
    bundle: PathBuf,
}

impl Lab {
    fn new() -> Lab {
        let setup = Setup::new();
        let fillers = fillers();
        let half = fillers
            .match_indices("-----BEGIN")
            .nth(FILLERS / 2)
            .unwrap()
            .0;
        let bundle = setup.dir.write(
            "big-bundle.pem",
            format!("{}{}{}", &fillers[..half], setup.ca.pem(), &fillers[half..]),
        );
        Lab { setup, bundle }
    }

    fn serve(&self, upstream: &Upstream, ca_names: Option<&str>) -> Serve {
        let serve = Serve::new(upstream.addr, &self.setup.crt, &self.setup.key).ca(&self.bundle);
        match ca_names {
            Some(mode) => serve.args(["--ca-names", mode]),
            None => serve,
        }
    }
}

/// A rustls client certificate resolver that remembers how many CA names the server's
/// CertificateRequest carried, then presents `key` (or nothing).
#[derive(Debug)]
struct HintRecorder {
    seen: Mutex<Option<usize>>,
    key: Option<Arc<CertifiedKey>>,
}

impl ResolvesClientCert for HintRecorder {
    fn resolve(
        &self,
        root_hint_subjects: &[&[u8]],
        _schemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        *self.seen.lock().unwrap() = Some(root_hint_subjects.len());
        self.key.clone()
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// Connects with a rustls client presenting `leaf` (or no certificate) and returns how many CA
/// names the server sent (`None`: no CertificateRequest got through) and how the connection
/// went (a probe through the echo upstream).
fn hints(
    server: &common::Server,
    setup: &Setup,
    leaf: Option<&common::Leaf>,
) -> (Option<usize>, Result<rustls::HandshakeKind, Failure>) {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let key = leaf.map(|leaf| {
        Arc::new(
            CertifiedKey::from_der(leaf.chain(), leaf.rustls_key(), &provider).expect("client key"),
        )
    });
    let recorder = Arc::new(HintRecorder {
        seen: Mutex::new(None),
        key,
    });
    let mut roots = RootCertStore::empty();
    roots.add(setup.ca.der().clone()).expect("root");
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_client_cert_resolver(recorder.clone());
    let result = common::client::try_connect_with(server.addr(), Arc::new(config));
    let seen = *recorder.seen.lock().unwrap();
    (seen, result)
}

fn s_client(server: &common::Server, setup: &Setup, leaf: Option<(&PathBuf, &PathBuf)>) -> Spawned {
    let mut cmd = Command::new("openssl");
    cmd.args(["s_client", "-connect"])
        .arg(server.addr().to_string())
        .args([
            "-servername",
            "localhost",
            "-verify_return_error",
            "-CAfile",
        ])
        .arg(setup.dir.write("root.pem", setup.ca.pem()));
    if let Some((crt, key)) = leaf {
        cmd.arg("-cert").arg(crt).arg("-key").arg(key);
    }
    Spawned::spawn(cmd)
}

/// The client certificate and key as files, for curl and openssl.
fn client_files(setup: &Setup) -> (PathBuf, PathBuf) {
    let leaf = setup.ca.client("big-bundle client");
    (
        setup.dir.write("client.pem", leaf.chain_pem()),
        setup
            .dir
            .write("client.key", leaf.key_pem(common::KeyFormat::Pkcs8)),
    )
}

#[test]
fn auto_omits_the_names_of_a_2000_ca_bundle_and_warns_at_start() {
    let lab = Lab::new();
    let upstream = Upstream::echo();
    let server = lab.serve(&upstream, None).start();
    let warn = server.wait_for_line(&["WARN", "tls.ca_names", "verdict=omitted"]);
    let names = format!("names={}", FILLERS + 1);
    for needle in ["mode=auto", &names, AUTO_LIMIT, "--ca-names all"] {
        assert!(warn.contains(needle), "{needle} missing from {warn}");
    }
    server.wait_for_line(&["serve.start", "ca_names=omitted"]);
    let leaf = lab.setup.ca.client("rustls client");
    let (seen, result) = hints(&server, &lab.setup, Some(&leaf));
    assert_eq!(seen, Some(0), "CA names were sent");
    result.expect("client of a CA in the bundle gets through");
    assert_eq!(upstream.accepted(), 1);
}

#[test]
#[cfg_attr(
    not(has = "openssl"),
    ignore = "SKIPPED: openssl not found (apt-get install openssl)"
)]
fn client_without_certificate_is_still_refused_with_certificate_required() {
    common::need("openssl");
    let lab = Lab::new();
    let upstream = Upstream::echo();
    let server = lab.serve(&upstream, None).start();
    expect_alert(
        connect(server.addr(), &lab.setup.anonymous()),
        AlertDescription::CertificateRequired,
    );
    {
        let mut client = s_client(&server, &lab.setup, None);
        // Keep stdin open (and send a line) so only the server's alert can end the session.
        let _ = client.stdin.as_mut().unwrap().write_all(b"let me in\n");
        let alerted = client.stderr.wait_for(CLIENT_TIMEOUT, |err| {
            err.contains("alert certificate required") || err.contains("alert number 116")
        });
        client.finish(CLIENT_TIMEOUT);
        assert!(alerted, "no certificate_required\n{}", client.output());
    }
    assert_eq!(
        upstream.accepted(),
        0,
        "a client without a certificate got in"
    );
}

#[test]
#[cfg_attr(
    not(has = "curl"),
    ignore = "SKIPPED: curl not found (apt-get install curl)"
)]
fn curl_with_certificate_of_a_ca_in_a_2000_ca_bundle_gets_the_response() {
    common::need("curl");
    let lab = Lab::new();
    let body = "hello through 2001 CAs\n";
    let upstream = Upstream::http(body);
    let server = lab.serve(&upstream, None).start();
    let (crt, key) = client_files(&lab.setup);
    let port = server.addr().port();
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", "20", "--resolve"])
        .arg(format!("localhost:{port}:127.0.0.1"))
        .arg("--cacert")
        .arg(lab.setup.dir.write("root.pem", lab.setup.ca.pem()))
        .arg("--cert")
        .arg(&crt)
        .arg("--key")
        .arg(&key)
        .arg(format!("https://localhost:{port}/"));
    let out = run_command(cmd, CLIENT_TIMEOUT);
    assert_eq!(out.code, Some(0), "curl failed: {}", out.stderr);
    assert_eq!(out.stdout, body);
    assert_eq!(upstream.accepted(), 1);
}

#[test]
#[cfg_attr(
    not(has = "openssl"),
    ignore = "SKIPPED: openssl not found (apt-get install openssl)"
)]
fn openssl_s_client_with_certificate_of_a_ca_in_a_2000_ca_bundle_sees_echo() {
    common::need("openssl");
    let lab = Lab::new();
    let upstream = Upstream::echo();
    let server = lab.serve(&upstream, None).start();
    let (crt, key) = client_files(&lab.setup);
    let mut client = s_client(&server, &lab.setup, Some((&crt, &key)));
    let echoed = client.echoes("ringtls-2000-cas-marker", CLIENT_TIMEOUT);
    client.finish(CLIENT_TIMEOUT);
    assert!(echoed, "s_client never saw the echo\n{}", client.output());
    assert!(
        client
            .output()
            .contains("No client certificate CA names sent"),
        "s_client saw CA names\n{}",
        client.output()
    );
    assert_eq!(upstream.accepted(), 1);
}

#[test]
fn all_refuses_to_start_with_more_names_than_a_certificate_request_can_carry() {
    let lab = Lab::new();
    let upstream = Upstream::echo();
    let exited = match lab.serve(&upstream, Some("all")).try_start() {
        Ok(_) => panic!("serve started with 260 KB of CA names"),
        Err(exited) => exited,
    };
    assert_eq!(exited.code, Some(78), "{}", exited.stderr);
    let names = format!("the {} CA names", FILLERS + 1);
    for needle in ["--ca-names all", &names, WIRE_LIMIT, "--ca-names auto"] {
        assert!(
            exited.stderr.contains(needle),
            "{needle} missing: {}",
            exited.stderr
        );
    }
}

/// A bundle whose names take about 65,100 bytes: under the 65,499 a CertificateRequest carries,
/// over the 64 KiB a rustls client buffers for one handshake message.
fn bundle_rustls_cannot_buffer(setup: &Setup) -> PathBuf {
    // Each CN-only name of 85 characters costs 85 + 13 (DER) + 2 (length) = 100 bytes.
    let fillers = filler_cas((0..651).map(|i| {
        let mut dn = DistinguishedName::new();
        dn.push(
            DnType::CommonName,
            format!("{i:04}").repeat(22)[..85].to_owned(),
        );
        dn
    }));
    setup
        .dir
        .write("65k-bundle.pem", format!("{}{fillers}", setup.ca.pem()))
}

#[test]
fn all_sends_names_a_rustls_client_cannot_buffer_and_auto_does_not() {
    let setup = Setup::new();
    let bundle = bundle_rustls_cannot_buffer(&setup);
    let upstream = Upstream::echo();
    let leaf = setup.ca.client("rustls client");
    let all = Serve::new(upstream.addr, &setup.crt, &setup.key)
        .ca(&bundle)
        .args(["--ca-names", "all"])
        .start();
    let warn = all.wait_for_line(&["WARN", "tls.ca_names", "verdict=sent"]);
    assert!(warn.contains("will refuse"), "{warn}");
    let (seen, result) = hints(&all, &setup, Some(&leaf));
    assert_eq!(seen, None, "the CertificateRequest reached the resolver");
    match result {
        Err(Failure::Io(e)) if e.to_string().contains("message buffer full") => {}
        other => panic!("expected rustls to refuse the CertificateRequest, got {other:?}"),
    }
    let auto = Serve::new(upstream.addr, &setup.crt, &setup.key)
        .ca(&bundle)
        .start();
    let (seen, result) = hints(&auto, &setup, Some(&leaf));
    assert_eq!(seen, Some(0));
    result.expect("with the names omitted the same client gets through");
    assert_eq!(upstream.accepted(), 1);
}

#[test]
#[cfg_attr(
    not(has = "openssl"),
    ignore = "SKIPPED: openssl not found (apt-get install openssl)"
)]
fn none_sends_no_names_and_auto_sends_a_small_bundles_names() {
    common::need("openssl");
    let setup = Setup::new();
    let upstream = Upstream::echo();
    let leaf = setup.ca.client("rustls client");
    let none = setup
        .serve(upstream.addr)
        .args(["--ca-names", "none"])
        .start();
    none.wait_for_line(&["INFO", "tls.ca_names", "mode=none", "verdict=omitted"]);
    let (seen, result) = hints(&none, &setup, Some(&leaf));
    assert_eq!(seen, Some(0), "--ca-names none sent names");
    result.expect("client gets through without hints");
    {
        let mut client = s_client(&none, &setup, None);
        let _ = client.stdin.as_mut().unwrap().write_all(b"hello\n");
        let said = client.stdout.wait_for(CLIENT_TIMEOUT, |out| {
            out.contains("No client certificate CA names sent")
        });
        client.finish(CLIENT_TIMEOUT);
        assert!(said, "s_client\n{}", client.output());
    }
    let auto = setup.serve(upstream.addr).start();
    auto.wait_for_line(&[
        "INFO",
        "tls.ca_names",
        "mode=auto",
        "verdict=sent",
        "names=1",
    ]);
    let (seen, result) = hints(&auto, &setup, Some(&leaf));
    assert_eq!(seen, Some(1), "auto left out a one-CA list");
    result.expect("client gets through");
}

#[test]
fn reload_decides_again_when_the_bundle_outgrows_the_limit() {
    let lab = Lab::new();
    let upstream = Upstream::echo();
    let live = lab.setup.dir.write("live-bundle.pem", lab.setup.ca.pem());
    let server = Serve::new(upstream.addr, &lab.setup.crt, &lab.setup.key)
        .ca(&live)
        .start();
    server.wait_for_line(&["tls.ca_names", "verdict=sent"]);
    let leaf = lab.setup.ca.client("rustls client");
    assert_eq!(hints(&server, &lab.setup, Some(&leaf)).0, Some(1));
    let tmp = live.with_extension("tmp");
    std::fs::copy(&lab.bundle, &tmp).expect("copy bundle");
    std::fs::rename(&tmp, &live).expect("swap bundle");
    server.signal(libc::SIGHUP);
    let names = format!("names={}", FILLERS + 1);
    server.wait_for_line(&["WARN", "tls.ca_names", "verdict=omitted", &names]);
    server.wait_for_line(&["reload.ok", "generation=2", "ca_names=omitted"]);
    let (seen, result) = hints(&server, &lab.setup, Some(&leaf));
    assert_eq!(seen, Some(0), "generation 2 still sends the names");
    result.expect("client gets through after the reload");
}

#[test]
fn check_reports_the_size_the_count_and_the_decision() {
    let lab = Lab::new();
    let s = &lab.setup;
    let check = |extra: &[&str]| {
        let mut args: Vec<std::ffi::OsString> = vec!["check".into(), "--crt".into()];
        args.extend([s.crt.clone().into(), "--key".into(), s.key.clone().into()]);
        args.extend(["--mutual-tls-cas".into(), lab.bundle.clone().into()]);
        args.extend(extra.iter().map(Into::into));
        run(args)
    };
    let out = check(&[]);
    out.assert_code(0);
    let line = out
        .stdout
        .lines()
        .find(|l| l.starts_with("CA names in CertificateRequest"))
        .unwrap_or_else(|| panic!("no CA names line:\n{}", out.stdout));
    let names = format!("{} names", FILLERS + 1);
    for needle in [
        "(--ca-names auto)",
        "omitted",
        &names,
        " bytes",
        "--ca-names all",
    ] {
        assert!(line.contains(needle), "{needle} missing from {line}");
    }
    let none = check(&["--ca-names", "none"]);
    none.assert_code(0);
    assert!(
        none.stdout.contains("omitted (--ca-names none)"),
        "{}",
        none.stdout
    );
    let all = check(&["--ca-names", "all"]);
    all.assert_code(78);
    assert!(all.stderr.contains(WIRE_LIMIT), "{}", all.stderr);
}

#[test]
fn ca_names_rejects_an_unknown_value_and_needs_a_trust_store() {
    let s = Setup::new();
    let base = |extra: &[&str]| {
        let mut args: Vec<std::ffi::OsString> = vec!["check".into(), "--crt".into()];
        args.extend([s.crt.clone().into(), "--key".into(), s.key.clone().into()]);
        args.extend(extra.iter().map(Into::into));
        run(args)
    };
    let bad = base(&[
        "--mutual-tls-cas",
        s.ca_file.to_str().unwrap(),
        "--ca-names",
        "some",
    ]);
    bad.assert_code(64);
    assert!(
        bad.stderr
            .contains("--ca-names some: expected auto, all or none"),
        "{}",
        bad.stderr
    );
    let lonely = base(&["--ca-names", "all"]);
    lonely.assert_code(64);
    assert!(
        lonely.stderr.contains("needs --mutual-tls-cas"),
        "{}",
        lonely.stderr
    );
}
