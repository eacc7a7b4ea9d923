//! Kernel TLS (`--ktls`): on a kernel that offers it, established connections are handed to
//! the kernel after the rustls handshake; elsewhere, and for a suite the kernel does not take,
//! they stay in user space. These tests run on any kernel and assert the path each connection
//! took from the server's own close event, so the same file proves the fallback on this host
//! (no CONFIG_TLS) and the kernel path inside the kTLS VM (`scripts/ktls-vm.sh`), where
//! `RINGTLS_EXPECT_KTLS=1` makes a missing kernel path a failure.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixListener;
use std::thread;

use common::client::{self, split};
use common::{Digest, Pattern, Serve, Setup, Upstream, Version, hex, run};
use rustls::CipherSuite;

/// What the server said about kernel TLS at start: the suites it takes, or `None`.
fn offered(server: &common::Server) -> Option<String> {
    let text = server.wait_for_stderr("the kTLS decision", |s| {
        s.contains("ktls.available") || s.contains("ktls.unavailable")
    });
    let line = text.lines().find(|l| l.contains("ktls.available"))?;
    let suites = line.split("suites=").nth(1)?.split_whitespace().next()?;
    Some(suites.to_owned())
}

fn expect_ktls() -> bool {
    std::env::var_os("RINGTLS_EXPECT_KTLS").is_some_and(|v| v == "1")
}

/// Starts `serve` with `--ktls auto` and metrics; returns the server and the suites the
/// kernel offers.
fn start(serve: Serve) -> (common::Server, Option<String>) {
    let server = serve
        .args(["--ktls", "auto", "--metrics", "127.0.0.1:0"])
        .start();
    let suites = offered(&server);
    if expect_ktls() {
        assert!(
            suites.is_some(),
            "kernel TLS expected here:\n{}",
            server.stderr()
        );
    }
    (server, suites)
}

/// The close event of the connection whose client CN is `cn`.
fn closed(server: &common::Server, cn: &str) -> String {
    server.wait_for_line(&["conn.closed", &format!("client=\"{cn}\"")])
}

/// A word field of an event line.
fn field(line: &str, name: &str) -> String {
    line.split(&format!(" {name}="))
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or("")
        .to_owned()
}

/// The path the server's close event names for the connection whose client CN is `cn`.
fn path_of(server: &common::Server, cn: &str) -> String {
    field(&closed(server, cn), "path")
}

/// Where the upstream listens.
enum Via {
    Tcp,
    Unix,
}

#[test]
fn ktls_on_refuses_to_start_without_kernel_tls() {
    let setup = Setup::new();
    let upstream = Upstream::echo();
    match setup
        .serve(upstream.addr)
        .args(["--ktls", "on"])
        .try_start()
    {
        Ok(server) => {
            assert!(!expect_ktls() || server.stderr().contains("ktls.available"));
            server.wait_for_line(&["worker.started", "ktls=on"]);
        }
        Err(exited) => {
            assert!(!expect_ktls(), "refused in the kTLS VM: {}", exited.stderr);
            assert_eq!(exited.code, Some(78), "{}", exited.stderr);
            assert!(
                exited
                    .stderr
                    .contains("--ktls on: this kernel offers no kernel TLS"),
                "{}",
                exited.stderr
            );
        }
    }
    run(["serve", "--ktls", "maybe", "--listen", "127.0.0.1:0"]).assert_code(64);
}

/// 64 MiB each way, checksummed, through the path the kernel allows; the close event says
/// which path it was, and on the kernel path that every byte down went through a pipe.
fn transfer(version: Version, suite: Option<CipherSuite>, via: Via) {
    const LEN: usize = 64 << 20;
    let setup = Setup::new();
    let upstream = Upstream::echo();
    let socket = setup.dir.join("echo.sock");
    let server = match via {
        Via::Tcp => setup.serve(upstream.addr),
        Via::Unix => {
            common::upstream::echo_unix(UnixListener::bind(&socket).expect("bind unix upstream"));
            Serve::to(
                &format!("unix:{}", socket.display()),
                &setup.crt,
                &setup.key,
            )
            .ca(&setup.ca_file)
        }
    };
    let (server, suites) = start(server);
    let cn = format!("Bulk {version:?} {suite:?}");
    let mut opts = setup.client(&setup.ca.client(&cn)).version(version);
    if let Some(suite) = suite {
        opts = opts.suite(suite);
    }
    let stream = client::handshake(server.addr(), &opts).expect("handshake");
    let (mut reader, mut writer) = split(stream);
    let sending = thread::spawn(move || {
        Pattern::write_to(7, LEN, &mut writer)?;
        writer.close_notify()
    });
    let got = Digest::read_all(&mut reader).expect("64 MiB back, then close_notify");
    sending.join().expect("sender").expect("64 MiB up");
    assert_eq!(got.0, LEN);
    assert_eq!(hex(&got.1), hex(&Pattern::digest(7, LEN)));
    let line = closed(&server, &cn);
    let path = field(&line, "path");
    let spliced = field(&line, "spliced");
    eprintln!("{cn}: path={path} spliced={spliced}; the kernel offers {suites:?}");
    let chacha = suite == Some(CipherSuite::TLS13_CHACHA20_POLY1305_SHA256);
    let kernel_takes_it = suites.as_deref().is_some_and(|s| {
        if chacha {
            s.contains("TLS1.3/CHACHA20-POLY1305")
        } else {
            true
        }
    });
    assert_eq!(
        path,
        if kernel_takes_it { "ktls" } else { "userspace" },
        "offered: {suites:?}\n{}",
        server.stderr()
    );
    // Upstream → client goes through pipes on the kernel path (a round copies only when no
    // pipe can be had, which nothing here provokes); user space splices nothing.
    let expected = if path == "ktls" { LEN } else { 0 };
    assert_eq!(spliced, expected.to_string(), "{line}");
    let (_, metrics) = common::http_get(server.metrics.expect("metrics"), "/metrics");
    assert!(
        metrics.lines().any(|l| l
            == format!(
                "ringtls_connections_by_path_total{{path=\"{path}\",endpoint=\"default\"}} 1"
            )),
        "{metrics}"
    );
    assert!(
        metrics
            .lines()
            .any(|l| l == format!("ringtls_bytes_spliced_total{{endpoint=\"default\"}} {expected}")),
        "{metrics}"
    );
}

#[test]
fn moves_64_mib_each_way_intact_over_tls13() {
    transfer(Version::Tls13, None, Via::Tcp);
}

#[test]
fn moves_64_mib_each_way_intact_over_tls12() {
    transfer(Version::Tls12, None, Via::Tcp);
}

#[test]
fn moves_64_mib_each_way_intact_to_a_unix_socket_upstream() {
    transfer(
        Version::Tls13,
        Some(CipherSuite::TLS13_AES_256_GCM_SHA384),
        Via::Unix,
    );
}

#[test]
fn a_suite_the_kernel_does_not_take_stays_in_user_space() {
    // The VM loads the AES-GCM modules only: ChaCha20-Poly1305 is not offloadable there.
    transfer(
        Version::Tls13,
        Some(CipherSuite::TLS13_CHACHA20_POLY1305_SHA256),
        Via::Tcp,
    );
}

#[test]
fn half_closes_and_close_notify_cross_the_kernel_path() {
    let setup = Setup::new();
    // Answers only after the client's half-close reached it: a response proves both the
    // client's close_notify → upstream FIN and that the other direction stayed open.
    let upstream = Upstream::custom(|mut sock| {
        let mut request = Vec::new();
        let _ = sock.read_to_end(&mut request);
        let _ = sock.write_all(&request);
        let _ = sock.write_all(b" -- answered after EOF");
    });
    let (server, _) = start(setup.serve(upstream.addr));
    let stream =
        client::handshake(server.addr(), &setup.client(&setup.ca.client("Half"))).expect("tls");
    let (mut reader, mut writer) = split(stream);
    writer.write_all(b"request").expect("request");
    writer.close_notify().expect("close_notify");
    let mut answer = Vec::new();
    reader
        .read_to_end(&mut answer)
        .expect("the answer, then the server's close_notify (a clean end)");
    assert_eq!(answer, b"request -- answered after EOF");
    let path = path_of(&server, "Half");
    eprintln!("half-close: path={path}");
    assert!(path == "ktls" || !expect_ktls(), "{path}");
}

/// Whether the kernel is known to take new keys on a live socket (TLS 1.3 rekey, Linux 6.14
/// and later): the VM run with a newer kernel sets it, so following a KeyUpdate is required.
fn expect_rekey() -> bool {
    std::env::var_os("RINGTLS_EXPECT_REKEY").is_some_and(|v| v == "1")
}

#[test]
fn a_client_key_update_is_followed_or_ends_cleanly() {
    let setup = Setup::new();
    let upstream = Upstream::echo();
    let (server, _) = start(setup.serve(upstream.addr));
    let mut stream = client::connect(
        server.addr(),
        &setup
            .client(&setup.ca.client("Rekey"))
            .version(Version::Tls13),
    )
    .expect("established");
    // Twice, each asking for our KeyUpdate too: both directions move to new keys, twice.
    let mut probes = Vec::new();
    for _ in 0..2 {
        stream
            .conn
            .refresh_traffic_keys()
            .expect("queue a KeyUpdate");
        probes.push(client::probe(&mut stream));
        if probes.last().is_some_and(|p| p.is_err()) {
            break;
        }
    }
    drop(stream);
    let line = server.wait_for_line(&["conn.closed", "client=\"Rekey\""]);
    eprintln!(
        "after client KeyUpdates: {:?}; {}",
        probes,
        &line[line.find("path=").unwrap_or(0)..]
    );
    let followed = probes.iter().all(|p| p.is_ok());
    if line.contains("path=ktls") && !followed {
        // A kernel without TLS 1.3 rekey cannot take new receive keys: the connection ends,
        // deliberately and with close_notify, never with garbage.
        assert!(!expect_rekey(), "this kernel should have followed: {line}");
        assert!(line.contains("reason=key_update_unsupported"), "{line}");
        assert!(
            matches!(
                probes.last(),
                Some(Err(common::Failure::Closed { clean: true }))
            ),
            "{probes:?}"
        );
    } else {
        // rustls in user space, or the kernel with new keys both ways: the echo goes on.
        assert!(followed, "{probes:?}\n{line}");
        assert!(line.contains("reason=closed"), "{line}");
        assert!(
            line.contains("path=ktls") || !expect_ktls(),
            "kernel TLS expected: {line}"
        );
    }
}

#[test]
fn ktls_off_never_hands_off() {
    let setup = Setup::new();
    let upstream = Upstream::echo();
    let server = Serve::new(upstream.addr, &setup.crt, &setup.key)
        .ca(&setup.ca_file)
        .args(["--ktls", "off"])
        .start();
    client::connect(server.addr(), &setup.client(&setup.ca.client("Off"))).expect("echo");
    assert_eq!(path_of(&server, "Off"), "userspace");
    assert!(!server.stderr().contains("ktls.available"));
}
