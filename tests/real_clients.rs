//! The terminator as users will first try it: credentials from `ringtls pki DIR`, then curl and
//! `openssl s_client` against `serve`. Without the tool a test is ignored, `SKIPPED: ...` its reason
//! (tests/common/tools.rs), and fails under `RINGTLS_REQUIRE_TOOLS=1`.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::process::{Spawned, run_command};
use common::{Dir, Serve, Server, Upstream, run};

const BODY: &str = "hello from upstream\n";
const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);

/// A PKI from `ringtls pki` and a server using it.
struct Lab {
    dir: Dir,
    upstream: Upstream,
    server: Server,
}

impl Lab {
    fn start(upstream: Upstream) -> Lab {
        let dir = Dir::new();
        run(["pki".as_ref(), dir.path().as_os_str()]).assert_code(0);
        let p = |name: &str| dir.path().join(name);
        let server = Serve::new(upstream.addr, &p("server.pem"), &p("server.key"))
            .ca(&p("ca.pem"))
            .start();
        Lab {
            dir,
            upstream,
            server,
        }
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn port(&self) -> u16 {
        self.server.addr().port()
    }
}

/// curl against the lab, resolving localhost to the IPv4 address the server listens on.
fn curl(lab: &Lab, extra: &[&Path], args: &[&str]) -> common::Output {
    let port = lab.port();
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", "20", "--resolve"])
        .arg(format!("localhost:{port}:127.0.0.1"))
        .arg("--cacert")
        .arg(lab.file("ca.pem"))
        .args(extra)
        .args(args)
        .arg(format!("https://localhost:{port}/"));
    run_command(cmd, CLIENT_TIMEOUT)
}

#[test]
#[cfg_attr(
    not(has = "curl"),
    ignore = "SKIPPED: curl not found (apt-get install curl)"
)]
fn curl_with_client_certificate_gets_response() {
    common::need("curl");
    let lab = Lab::start(Upstream::http(BODY));
    let cert = lab.file("client-cert-and-key.pem");
    let out = curl(&lab, &[], &["--cert", cert.to_str().unwrap()]);
    assert_eq!(out.code, Some(0), "curl failed: {}", out.stderr);
    assert_eq!(out.stdout, BODY);
    assert_eq!(lab.upstream.accepted(), 1);
}

#[test]
#[cfg_attr(
    not(has = "curl"),
    ignore = "SKIPPED: curl not found (apt-get install curl)"
)]
fn curl_with_client_certificate_over_tls12_gets_response() {
    common::need("curl");
    let lab = Lab::start(Upstream::http(BODY));
    let cert = lab.file("client-cert-and-key.pem");
    let out = curl(
        &lab,
        &[],
        &["--cert", cert.to_str().unwrap(), "--tls-max", "1.2"],
    );
    assert_eq!(out.code, Some(0), "curl failed: {}", out.stderr);
    assert_eq!(out.stdout, BODY);
}

#[test]
#[cfg_attr(
    not(has = "curl"),
    ignore = "SKIPPED: curl not found (apt-get install curl)"
)]
fn curl_without_client_certificate_is_refused() {
    common::need("curl");
    let lab = Lab::start(Upstream::http(BODY));
    let refused = curl(&lab, &[], &[]);
    assert_ne!(
        refused.code,
        Some(0),
        "curl without a cert got through:\n{refused:?}"
    );
    assert_eq!(refused.stdout, "", "curl without a cert got a body");
    // A good curl afterwards is the only upstream connection.
    let cert = lab.file("client-cert-and-key.pem");
    let ok = curl(&lab, &[], &["--cert", cert.to_str().unwrap()]);
    assert_eq!(ok.code, Some(0), "curl failed: {}", ok.stderr);
    assert_eq!(
        lab.upstream.accepted(),
        1,
        "the refused curl reached the upstream"
    );
}

#[test]
#[cfg_attr(
    not(has = "curl"),
    ignore = "SKIPPED: curl not found (apt-get install curl)"
)]
fn curl_with_a_certificate_from_another_dev_pki_is_an_unknown_ca() {
    common::need("curl");
    let lab = Lab::start(Upstream::http(BODY));
    let other = Dir::new();
    run(["pki".as_ref(), other.path().as_os_str()]).assert_code(0);
    let cert = other.path().join("client-cert-and-key.pem");
    let refused = curl(&lab, &[], &["--cert", cert.to_str().unwrap()]);
    assert_ne!(refused.code, Some(0), "a foreign client got through");
    // Each dev PKI's CA has a name of its own, so this is an unknown CA, not a bad signature.
    assert!(
        refused.stderr.contains("unknown ca"),
        "curl: {}",
        refused.stderr
    );
    lab.server
        .wait_for_line(&["conn.rejected", "reason=unknown_ca", "alert=48"]);
    assert_eq!(lab.upstream.accepted(), 0);
}

fn s_client(lab: &Lab, with_cert: bool) -> Spawned {
    let mut cmd = Command::new("openssl");
    cmd.args(["s_client", "-connect"])
        .arg(format!("127.0.0.1:{}", lab.port()))
        .args(["-servername", "localhost", "-verify_hostname", "localhost"])
        .args(["-verify_return_error", "-CAfile"])
        .arg(lab.file("ca.pem"));
    if with_cert {
        cmd.arg("-cert")
            .arg(lab.file("client.pem"))
            .arg("-key")
            .arg(lab.file("client.key"));
    }
    Spawned::spawn(cmd)
}

#[test]
#[cfg_attr(
    not(has = "openssl"),
    ignore = "SKIPPED: openssl not found (apt-get install openssl)"
)]
fn openssl_s_client_with_certificate_sees_echo() {
    common::need("openssl");
    let lab = Lab::start(Upstream::echo());
    let mut client = s_client(&lab, true);
    let echoed = client.echoes("ringtls-s_client-marker-7d1f", CLIENT_TIMEOUT);
    // Closing stdin makes s_client send close_notify and exit.
    client.finish(CLIENT_TIMEOUT);
    assert!(
        echoed,
        "s_client never printed the echoed line\n{}",
        client.output()
    );
    assert_eq!(lab.upstream.accepted(), 1);
}

#[test]
#[cfg_attr(
    not(has = "openssl"),
    ignore = "SKIPPED: openssl not found (apt-get install openssl)"
)]
fn openssl_s_client_without_certificate_reports_alert() {
    common::need("openssl");
    let lab = Lab::start(Upstream::echo());
    let mut client = s_client(&lab, false);
    // Keep stdin open (and send a line) so only the server's alert can end the session.
    let _ = client.stdin.as_mut().unwrap().write_all(b"let me in\n");
    let alerted = client.stderr.wait_for(CLIENT_TIMEOUT, |err| {
        err.contains("alert certificate required") || err.contains("alert number 116")
    });
    client.finish(CLIENT_TIMEOUT);
    assert!(
        alerted,
        "s_client did not report certificate_required\n{}",
        client.output()
    );
    // Prove the refusal left the upstream untouched, with a good client after it.
    let mut good = s_client(&lab, true);
    let echoed = good.echoes("after-the-refusal", CLIENT_TIMEOUT);
    good.finish(CLIENT_TIMEOUT);
    assert!(echoed, "good s_client not echoed\n{}", good.output());
    assert_eq!(
        lab.upstream.accepted(),
        1,
        "the refused s_client reached the upstream"
    );
}
