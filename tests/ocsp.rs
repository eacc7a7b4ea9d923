//! `--ocsp soft|hard` against OpenSSL's own OCSP responder (`openssl ocsp -index`), started by
//! each test with an index file the test writes: good, revoked and unknown certificates; the
//! responder down, slower than `--ocsp-timeout`, signing with an unrelated key, delegating to
//! a responder certificate with and without id-kp-OCSPSigning, answering from a clock two days
//! behind (an expired answer, through faketime); each under soft and hard. A revocation made at
//! the responder reaches new handshakes once the cached answer ends, and live connections under
//! `--reauthorize-on-reload`, with no reload or restart.
//!
//! OpenSSL 3.0's `ocsp -port` takes a port number only and binds the wildcard address; it is
//! given port 0 and its `ACCEPT` line read back. Every request goes to 127.0.0.1.

mod common;

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::{Ca, Dir, Failure, KeyFormat, Leaf, Setup, Upstream, expect_alert, http_get};

/// A certificate's line in the responder's index.
#[derive(Clone, Copy)]
enum Entry {
    Valid,
    Revoked,
}

/// `openssl ocsp` answering for `ca`, signing with `signer`.
struct Responder {
    child: Child,
    port: u16,
    index: PathBuf,
    dir: PathBuf,
}

impl Responder {
    /// Starts it with `entries` in its index; `clock` runs it under `faketime -f CLOCK`.
    fn start(
        dir: &Dir,
        ca: &Ca,
        signer: (&str, &str),
        entries: &[(&Leaf, Entry)],
        clock: Option<&str>,
    ) -> Responder {
        let ca_file = dir.write("responder-ca.pem", ca.pem());
        let signer_cert = dir.write("responder-signer.pem", signer.0);
        let signer_key = dir.write("responder-signer.key", signer.1);
        let index = dir.join("index.txt");
        write_index(&index, entries);
        let mut command = match clock {
            Some(clock) => {
                let mut c = Command::new("faketime");
                c.args(["-f", clock, "openssl"]);
                c
            }
            None => Command::new("openssl"),
        };
        command
            .arg("ocsp")
            .arg("-index")
            .arg(&index)
            .args(["-port", "0", "-ndays", "1", "-ignore_err"])
            .arg("-CA")
            .arg(&ca_file)
            .arg("-rsigner")
            .arg(&signer_cert)
            .arg("-rkey")
            .arg(&signer_key)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // A group of its own, killed whole: faketime forks openssl and waits for it, so
            // killing faketime alone would leave the responder running.
            .process_group(0);
        let mut child = command.spawn().expect("start openssl ocsp");
        // Its ACCEPT line is on stdout; what it says on stderr is shown with a failing
        // test's output.
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("openssl ocsp: {line}");
            }
        });
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                // "ACCEPT [::]:PORT PID=N"
                let port = line
                    .strip_prefix("ACCEPT ")
                    .and_then(|rest| rest.split_whitespace().next())
                    .and_then(|addr| addr.rsplit(':').next())
                    .and_then(|p| p.parse::<u16>().ok());
                if let Some(port) = port {
                    let _ = tx.send(port);
                }
            }
        });
        let port = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("openssl ocsp says where it listens");
        Responder {
            child,
            port,
            index,
            dir: dir.path().to_owned(),
        }
    }

    /// The responder signing as `ca` itself.
    fn by_ca(dir: &Dir, ca: &Ca, entries: &[(&Leaf, Entry)]) -> Responder {
        Responder::start(dir, ca, (&ca.pem(), &ca.key_pem()), entries, None)
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    /// Rewrites the index (a new file renamed over the old: the responder reloads an index
    /// whose inode changed, even within the second).
    fn set(&self, entries: &[(&Leaf, Entry)]) {
        let next = self.dir.join("index.next");
        write_index(&next, entries);
        std::fs::rename(&next, &self.index).expect("replace index");
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        if let Ok(group) = i32::try_from(self.child.id()) {
            // SAFETY: kill(2) on the process group this responder was started in.
            unsafe { libc::kill(-group, libc::SIGKILL) };
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn write_index(path: &std::path::Path, entries: &[(&Leaf, Entry)]) {
    let lines: String = entries
        .iter()
        .map(|(leaf, entry)| {
            let (flag, revoked) = match entry {
                Entry::Valid => ("V", ""),
                Entry::Revoked => ("R", "210101000000Z"),
            };
            format!(
                "{flag}\t491231235959Z\t{revoked}\t{}\tunknown\t/CN={}\n",
                leaf.serial_hex(),
                leaf.cn
            )
        })
        .collect();
    std::fs::write(path, lines).expect("write index");
    std::fs::write(path.with_extension("txt.attr"), "unique_subject = no\n").expect("attr");
}

/// A TCP listener that accepts and never answers: a responder slower than any timeout.
fn silent_responder() -> (String, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    listener.set_nonblocking(false).expect("blocking");
    let handle = std::thread::spawn(move || {
        let mut held = Vec::new();
        // Bounded: the tests ask a handful of times.
        for _ in 0..8 {
            match listener.accept() {
                Ok((sock, _)) => held.push(sock),
                Err(_) => return,
            }
        }
    });
    (format!("http://{addr}/"), handle)
}

/// ringtls with `--ocsp MODE --ocsp-responder URL` (when given) and `extra`.
fn serve(
    setup: &Setup,
    upstream: SocketAddr,
    mode: &str,
    responder: Option<&str>,
    extra: &[&str],
) -> common::Server {
    let mut serve = setup
        .serve(upstream)
        .args(["--ocsp", mode, "--metrics", "127.0.0.1:0"]);
    if let Some(url) = responder {
        serve = serve.args(["--ocsp-responder", url]);
    }
    serve.args(extra).start()
}

/// Connects and probes: accepted, or how the server ended it.
fn attempt(server: &common::Server, setup: &Setup, leaf: &Leaf) -> Result<(), Failure> {
    common::connect(server.addr(), &setup.client(leaf)).map(drop)
}

fn ocsp_counter(server: &common::Server, result: &str, value: u64) {
    let metrics = server.metrics.expect("metrics");
    common::wait_metric(
        metrics,
        &format!("ringtls_ocsp_requests_total{{result=\"{result}\"}}"),
        value,
    );
}

/// Alice (good), Bob (revoked) and Carol (not in the index: unknown), and a server under
/// `--ocsp MODE` asking the setup's CA's responder.
struct Trio {
    setup: Setup,
    alice: Leaf,
    bob: Leaf,
    carol: Leaf,
    upstream: Upstream,
    server: common::Server,
    _responder: Responder,
}

impl Trio {
    fn start(mode: &str) -> Trio {
        let setup = Setup::new();
        let alice = setup.ca.client("Alice");
        let bob = setup.ca.client("Bob");
        let carol = setup.ca.client("Carol");
        let responder = Responder::by_ca(
            &setup.dir,
            &setup.ca,
            &[(&alice, Entry::Valid), (&bob, Entry::Revoked)],
        );
        let upstream = Upstream::echo();
        let server = serve(&setup, upstream.addr, mode, Some(&responder.url()), &[]);
        Trio {
            setup,
            alice,
            bob,
            carol,
            upstream,
            server,
            _responder: responder,
        }
    }
}

#[test]
#[cfg_attr(not(has = "openssl"), ignore = "SKIPPED: openssl not found")]
fn hard_admits_good_and_refuses_revoked_and_unknown() {
    common::need("openssl");
    let trio = Trio::start("hard");
    let (setup, server) = (&trio.setup, &trio.server);
    let (alice, bob, carol) = (&trio.alice, &trio.bob, &trio.carol);

    attempt(server, setup, alice).expect("good: admitted");
    attempt(server, setup, alice).expect("good, from the cache");
    // Bob's first handshake finds no answer: it completes, waits, and is closed with
    // close_notify once the answer says revoked. The second finds it cached: alert 44.
    match attempt(server, setup, bob) {
        Err(Failure::Closed { clean: true }) => {}
        other => panic!("revoked, answered after the handshake: close_notify, got {other:?}"),
    }
    expect_alert(
        attempt(server, setup, bob),
        rustls::AlertDescription::CertificateRevoked,
    );
    // Carol is not in the index: "unknown", refused under hard with certificate_unknown
    // once cached.
    assert!(attempt(server, setup, carol).is_err(), "unknown under hard");
    expect_alert(
        attempt(server, setup, carol),
        rustls::AlertDescription::CertificateUnknown,
    );
    assert_eq!(
        trio.upstream.accepted(),
        2,
        "only Alice reached the upstream"
    );

    let line = server.wait_for_line(&["conn.closed", "client=\"Alice\""]);
    assert!(line.contains("revocation=ocsp:good"), "{line}");
    let line = server.wait_for_line(&["conn.rejected", "reason=revoked", "alert=44"]);
    assert!(line.contains("revocation=ocsp:revoked"), "{line}");
    assert!(line.contains("client=\"Bob\""), "{line}");
    let line = server.wait_for_line(&["conn.rejected", "reason=revoked", "alert=0"]);
    assert!(line.contains("client=\"Bob\""), "{line}");
    let line = server.wait_for_line(&["conn.rejected", "reason=ocsp_unavailable"]);
    assert!(line.contains("revocation=ocsp:unknown"), "{line}");
    server.wait_for_line(&["ocsp.answer", "status=revoked", &bob.serial_hex()]);
    ocsp_counter(server, "good", 1);
    ocsp_counter(server, "revoked", 1);
    ocsp_counter(server, "unknown", 1);
    let (_, body) = http_get(server.metrics.expect("metrics"), "/metrics");
    assert!(
        body.contains("ringtls_ocsp_cache_entries 3"),
        "three certificates cached:\n{body}"
    );
    assert!(
        body.contains("ringtls_handshakes_total{result=\"rejected\",reason=\"ocsp_unavailable\",endpoint=\"default\"} 2"),
        "{body}"
    );
}

#[test]
#[cfg_attr(not(has = "openssl"), ignore = "SKIPPED: openssl not found")]
fn soft_refuses_only_a_revoked_answer() {
    common::need("openssl");
    let trio = Trio::start("soft");
    let (setup, server) = (&trio.setup, &trio.server);
    let (alice, bob, carol) = (&trio.alice, &trio.bob, &trio.carol);
    attempt(server, setup, alice).expect("good");
    attempt(server, setup, carol).expect("unknown: soft lets it through");
    assert!(attempt(server, setup, bob).is_err(), "revoked");
    expect_alert(
        attempt(server, setup, bob),
        rustls::AlertDescription::CertificateRevoked,
    );
    let line = server.wait_for_line(&["conn.closed", "client=\"Carol\""]);
    assert!(line.contains("revocation=ocsp:unknown"), "{line}");
    assert_eq!(trio.upstream.accepted(), 2);
}

#[test]
fn a_responder_that_is_down_refuses_under_hard_only() {
    let setup = Setup::new();
    let alice = setup.ca.client("Alice");
    let down = format!("http://{}/", common::upstream::refused_addr());
    let upstream = Upstream::echo();
    let hard = serve(&setup, upstream.addr, "hard", Some(&down), &[]);
    assert!(
        attempt(&hard, &setup, &alice).is_err(),
        "hard, responder down"
    );
    let line = hard.wait_for_line(&["conn.rejected", "reason=ocsp_unavailable"]);
    assert!(line.contains("revocation=ocsp:unreachable"), "{line}");
    assert!(line.contains("cannot connect"), "{line}");
    hard.wait_for_line(&["ocsp.failed", "result=unreachable"]);
    ocsp_counter(&hard, "unreachable", 1);
    let soft = serve(&setup, upstream.addr, "soft", Some(&down), &[]);
    attempt(&soft, &setup, &alice).expect("soft, responder down: admitted");
    let line = soft.wait_for_line(&["conn.closed", "client=\"Alice\""]);
    assert!(line.contains("revocation=ocsp:unreachable"), "{line}");
    assert_eq!(upstream.accepted(), 1, "hard let nothing through");
}

#[test]
fn a_responder_slower_than_the_timeout_refuses_under_hard_only() {
    let setup = Setup::new();
    let alice = setup.ca.client("Alice");
    let (slow, _held) = silent_responder();
    let upstream = Upstream::echo();
    let timeout = ["--ocsp-timeout", "300ms"];
    let hard = serve(&setup, upstream.addr, "hard", Some(&slow), &timeout);
    assert!(attempt(&hard, &setup, &alice).is_err(), "hard, no answer");
    let line = hard.wait_for_line(&["conn.rejected", "reason=ocsp_unavailable"]);
    assert!(line.contains("revocation=ocsp:timeout"), "{line}");
    ocsp_counter(&hard, "timeout", 1);
    let soft = serve(&setup, upstream.addr, "soft", Some(&slow), &timeout);
    attempt(&soft, &setup, &alice).expect("soft, no answer: admitted");
    assert_eq!(upstream.accepted(), 1);
}

#[test]
#[cfg_attr(not(has = "openssl"), ignore = "SKIPPED: openssl not found")]
fn answers_signed_by_an_unrelated_key_or_an_unauthorised_delegate_do_not_count() {
    common::need("openssl");
    let setup = Setup::new();
    let alice = setup.ca.client("Alice");
    let stranger = Ca::root("Stranger");
    let delegate = setup.ca.ocsp_signer("Delegated Responder", true);
    let impostor = setup.ca.ocsp_signer("Unauthorised Responder", false);
    let upstream = Upstream::echo();
    let cases: [(&str, (String, String), &str); 3] = [
        (
            "unrelated key",
            (stranger.pem(), stranger.key_pem()),
            "which may not answer for the issuer",
        ),
        (
            "delegate without id-kp-OCSPSigning",
            (impostor.cert_pem(), impostor.key_pem(KeyFormat::Pkcs8)),
            "lacks extended key usage id-kp-OCSPSigning",
        ),
        (
            "authorised delegate",
            (delegate.cert_pem(), delegate.key_pem(KeyFormat::Pkcs8)),
            "",
        ),
    ];
    for (case, signer, why) in cases {
        let dir = Dir::new();
        let responder = Responder::start(
            &dir,
            &setup.ca,
            (&signer.0, &signer.1),
            &[(&alice, Entry::Valid)],
            None,
        );
        let hard = serve(&setup, upstream.addr, "hard", Some(&responder.url()), &[]);
        let before = upstream.accepted();
        let admitted = attempt(&hard, &setup, &alice);
        if why.is_empty() {
            admitted.unwrap_or_else(|e| panic!("{case}: admitted, got {e:?}"));
            let line = hard.wait_for_line(&["conn.closed", "client=\"Alice\""]);
            assert!(line.contains("revocation=ocsp:good"), "{case}: {line}");
            continue;
        }
        assert!(admitted.is_err(), "{case}: refused under hard");
        let line = hard.wait_for_line(&["conn.rejected", "reason=ocsp_unavailable"]);
        assert!(line.contains("revocation=ocsp:invalid"), "{case}: {line}");
        assert!(line.contains(why), "{case}: the detail says why: {line}");
        hard.wait_for_line(&["ocsp.failed", "result=invalid"]);
        assert_eq!(
            upstream.accepted(),
            before,
            "{case}: nothing reached the upstream"
        );
        let soft = serve(&setup, upstream.addr, "soft", Some(&responder.url()), &[]);
        attempt(&soft, &setup, &alice).unwrap_or_else(|e| panic!("{case}: soft admits: {e:?}"));
    }
}

#[test]
#[cfg_attr(not(has = "openssl"), ignore = "SKIPPED: openssl not found")]
#[cfg_attr(not(has = "faketime"), ignore = "SKIPPED: faketime not found")]
fn an_expired_answer_does_not_count() {
    common::need("openssl");
    common::need("faketime");
    let setup = Setup::new();
    let alice = setup.ca.client("Alice");
    // Two days behind with -ndays 1: nextUpdate was a day ago.
    let responder = Responder::start(
        &setup.dir,
        &setup.ca,
        (&setup.ca.pem(), &setup.ca.key_pem()),
        &[(&alice, Entry::Valid)],
        Some("-2d"),
    );
    let upstream = Upstream::echo();
    let hard = serve(&setup, upstream.addr, "hard", Some(&responder.url()), &[]);
    assert!(
        attempt(&hard, &setup, &alice).is_err(),
        "expired answer under hard"
    );
    let line = hard.wait_for_line(&["conn.rejected", "reason=ocsp_unavailable"]);
    assert!(line.contains("expired: nextUpdate"), "{line}");
    let soft = serve(&setup, upstream.addr, "soft", Some(&responder.url()), &[]);
    attempt(&soft, &setup, &alice).expect("soft admits");
    assert_eq!(upstream.accepted(), 1);
}

#[test]
#[cfg_attr(not(has = "openssl"), ignore = "SKIPPED: openssl not found")]
fn a_revocation_at_the_responder_refuses_once_the_cached_answer_ends() {
    common::need("openssl");
    let setup = Setup::new();
    let alice = setup.ca.client("Alice");
    let responder = Responder::by_ca(&setup.dir, &setup.ca, &[(&alice, Entry::Valid)]);
    let upstream = Upstream::echo();
    let server = serve(
        &setup,
        upstream.addr,
        "hard",
        Some(&responder.url()),
        &["--ocsp-max-age", "1s"],
    );
    // Held open: the answer stays in use, so the fetcher refreshes it ahead of its end.
    let _held = common::connect(server.addr(), &setup.client(&alice)).expect("good");
    responder.set(&[(&alice, Entry::Revoked)]);
    server.wait_for_line(&["ocsp.answer", "status=revoked"]);
    expect_alert(
        attempt(&server, &setup, &alice),
        rustls::AlertDescription::CertificateRevoked,
    );
    assert_eq!(upstream.accepted(), 1);
}

#[test]
#[cfg_attr(not(has = "openssl"), ignore = "SKIPPED: openssl not found")]
fn a_live_connection_ends_when_its_certificate_is_revoked() {
    common::need("openssl");
    let setup = Setup::new();
    let alice = setup.ca.client("Alice");
    let bob = setup.ca.client("Bob");
    let responder = Responder::by_ca(
        &setup.dir,
        &setup.ca,
        &[(&alice, Entry::Valid), (&bob, Entry::Valid)],
    );
    let upstream = Upstream::echo();
    let server = serve(
        &setup,
        upstream.addr,
        "hard",
        Some(&responder.url()),
        &["--ocsp-max-age", "1s", "--reauthorize-on-reload"],
    );
    let mut alice_conn = common::connect(server.addr(), &setup.client(&alice)).expect("alice");
    let mut bob_conn = common::connect(server.addr(), &setup.client(&bob)).expect("bob");
    responder.set(&[(&alice, Entry::Revoked), (&bob, Entry::Valid)]);
    alice_conn
        .sock
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let rest = common::client::read_to_clean_eof(&mut alice_conn).expect("close_notify then EOF");
    assert!(rest.is_empty(), "unexpected bytes {rest:?}");
    let line = server.wait_for_line(&["conn.closed", "reason=revoked"]);
    assert!(line.contains("client=\"Alice\""), "{line}");
    common::probe(&mut bob_conn).expect("bob is still good: his connection stays");
}

#[test]
#[cfg_attr(not(has = "openssl"), ignore = "SKIPPED: openssl not found")]
fn the_responder_the_certificate_names_is_asked() {
    common::need("openssl");
    let setup = Setup::new();
    let upstream = Upstream::echo();
    // The responder must exist before the certificate that names it: index it by a
    // placeholder first, then by the certificate.
    let placeholder = setup.ca.client("Placeholder");
    let responder = Responder::by_ca(&setup.dir, &setup.ca, &[(&placeholder, Entry::Valid)]);
    let alice = setup.ca.client_with_ocsp("Alice", &responder.url());
    responder.set(&[(&alice, Entry::Valid)]);
    let server = serve(&setup, upstream.addr, "hard", None, &[]);
    attempt(&server, &setup, &alice).expect("asked its own responder: good");
    let line = server.wait_for_line(&["conn.closed", "client=\"Alice\""]);
    assert!(line.contains("revocation=ocsp:good"), "{line}");
    ocsp_counter(&server, "good", 1);
    // A certificate that names none, with no --ocsp-responder: nothing to ask.
    let bob = setup.ca.client("Bob");
    assert!(
        attempt(&server, &setup, &bob).is_err(),
        "hard, no responder"
    );
    let line = server.wait_for_line(&["conn.rejected", "client=\"Bob\""]);
    assert!(line.contains("names no OCSP responder"), "{line}");
}

#[test]
fn ocsp_flags_are_checked() {
    let setup = Setup::new();
    let cases: [(&[&str], &str); 4] = [
        (
            &["--ocsp", "sometimes"],
            "--ocsp sometimes: expected off, soft or hard",
        ),
        (
            &["--ocsp-timeout", "1s"],
            "--ocsp-timeout needs --ocsp soft or hard",
        ),
        (
            &[
                "--ocsp",
                "hard",
                "--ocsp-responder",
                "https://ocsp.example/",
            ],
            "https is not supported",
        ),
        (
            &["--ocsp", "hard", "--ocsp-max-age", "soon"],
            "--ocsp-max-age soon: expected a duration",
        ),
    ];
    for (args, message) in cases {
        let out = setup.check(args);
        assert_ne!(out.code, Some(0), "{args:?} accepted");
        assert!(out.stderr.contains(message), "{args:?}: {}", out.stderr);
    }
    let out = common::run([
        "check",
        "--crt",
        setup.crt.to_str().expect("path"),
        "--key",
        setup.key.to_str().expect("path"),
        "--ocsp",
        "soft",
    ]);
    assert_ne!(out.code, Some(0));
    assert!(
        out.stderr
            .contains("--ocsp soft needs --client-auth require-and-verify"),
        "{}",
        out.stderr
    );
}

#[test]
#[cfg_attr(not(has = "openssl"), ignore = "SKIPPED: openssl not found")]
fn connections_waiting_on_a_silent_responder_hold_up_no_one_else() {
    common::need("openssl");
    let setup = Setup::new();
    let (silent, _held) = silent_responder();
    let placeholder = setup.ca.client("Placeholder");
    let responder = Responder::by_ca(&setup.dir, &setup.ca, &[(&placeholder, Entry::Valid)]);
    let answered = setup.ca.client_with_ocsp("Answered", &responder.url());
    responder.set(&[(&answered, Entry::Valid)]);
    let waiting = setup.ca.client_with_ocsp("Waiting", &silent);
    let upstream = Upstream::echo();
    // One worker: the waiting connections and the others share it.
    let server = serve(
        &setup,
        upstream.addr,
        "hard",
        None,
        &["--threads", "1", "--ocsp-timeout", "30s"],
    );
    let held: Vec<_> = (0..50)
        .map(|_| common::handshake(server.addr(), &setup.client(&waiting)).expect("handshake"))
        .collect();
    common::wait_metric(
        server.metrics.expect("metrics"),
        "ringtls_connections_active",
        50,
    );
    for _ in 0..3 {
        attempt(&server, &setup, &answered).expect("admitted while 50 others wait");
    }
    assert_eq!(
        upstream.accepted(),
        3,
        "none of the waiting reached the upstream"
    );
    drop(held);
}

#[test]
fn a_config_file_sets_ocsp_per_endpoint() {
    let setup = Setup::new();
    let alice = setup.ca.client("Alice");
    let down = format!("http://{}/", common::upstream::refused_addr());
    let upstream = Upstream::echo();
    let named = setup.ca.server_for(&["strict.test", "lenient.test"]);
    let crt = setup.dir.write("named.pem", named.chain_pem());
    let key = setup
        .dir
        .write("named.key", named.key_pem(KeyFormat::Pkcs8));
    // Two endpoints by name on one listener: only "strict" asks OCSP (of a responder that is
    // down, under hard).
    let table = |name: &str, extra: &str| {
        format!(
            "[[endpoint]]\nname = \"{name}\"\nlisten = \"127.0.0.1:0\"\nserver_names = [\"{name}.test\"]\ncrt = \"{}\"\nkey = \"{}\"\nmutual_tls_cas = \"{}\"\nupstream = \"{}\"\n{extra}\n",
            crt.display(),
            key.display(),
            setup.ca_file.display(),
            upstream.addr
        )
    };
    let strict = format!("ocsp = \"hard\"\nocsp_responder = \"{down}\"\nocsp_timeout = \"1s\"");
    let file = setup.dir.write(
        "endpoints.toml",
        table("strict", &strict) + &table("lenient", ""),
    );
    let server = common::Serve::config(&file).start();
    let opts = |name: &str| setup.client(&alice).server_name(&format!("{name}.test"));
    let strict_result = common::connect(server.addr(), &opts("strict"));
    let lenient_result = common::connect(server.addr(), &opts("lenient"));
    assert!(
        matches!(
            strict_result,
            Err(common::Failure::Tls(_) | common::Failure::Closed { .. })
        ),
        "strict: hard, responder down: {:?}",
        strict_result.as_ref().map(drop)
    );
    lenient_result.expect("lenient: no OCSP");
    let line = server.wait_for_line(&["conn.rejected", "endpoint=strict"]);
    assert!(line.contains("reason=ocsp_unavailable"), "{line}");
    // A key's value is checked and named with its endpoint.
    let bad = setup
        .dir
        .write("bad.toml", table("strict", "ocsp = \"always\""));
    let out = common::run(["check", "--config", bad.to_str().expect("path")]);
    assert_ne!(out.code, Some(0));
    assert!(
        out.stderr
            .contains("ocsp always: expected off, soft or hard"),
        "{}",
        out.stderr
    );
}
