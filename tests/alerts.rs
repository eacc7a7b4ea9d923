//! The alert logged is the alert sent: a misbehaving client built on tlslite-ng (an
//! implementation independent of rustls, `tests/misbehaving_client.py`) runs each case against
//! the real binary and reports the alert it received; the `conn.rejected` event must name the
//! same one. Where rustls sends none while the connection is still plaintext (a ClientHello over
//! its 64 KiB buffer, or cut short), the client must get the RFC's alert (RFC 8446 §6.2).

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::process::run_command;
use common::{KeyFormat, Setup, Upstream};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/misbehaving_client.py");

/// Whether tlslite-ng can be imported; says why not where the summary is read.
/// What the tlslite client saw in one case.
#[derive(Debug)]
struct Seen {
    outcome: String,
    received: Option<u64>,
}

fn run_case(case: &str, addr: std::net::SocketAddr, cert: &Path, key: &Path) -> Seen {
    let mut cmd = Command::new("python3");
    cmd.arg(SCRIPT)
        .arg(case)
        .arg(addr.to_string())
        .arg(cert)
        .arg(key);
    let out = run_command(cmd, Duration::from_secs(30));
    out.assert_code(0);
    let line: serde_json::Value = serde_json::from_str(out.stdout.trim())
        .unwrap_or_else(|e| panic!("{case}: not one JSON line ({e}): {}", out.stdout));
    Seen {
        outcome: line["outcome"].as_str().unwrap_or_default().to_owned(),
        received: line["received"].as_u64(),
    }
}

/// The JSON events that end a connection (`conn.rejected`, `conn.closed`).
fn endings(stderr: &str) -> Vec<serde_json::Value> {
    stderr
        .lines()
        .filter(|l| l.contains("\"conn.rejected\"") || l.contains("\"conn.closed\""))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// What the client must see in a case.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Want {
    /// This alert (RFC 8446 §6.2).
    Alert(u64),
    /// A refusal without an alert.
    NoAlert,
    /// A full handshake and an echo round trip.
    Established,
}

#[test]
#[cfg_attr(
    not(has = "tlslite"),
    ignore = "SKIPPED: python3 cannot import tlslite (python3 -m pip install tlslite-ng==0.8.2)"
)]
fn logs_the_alert_a_misbehaving_tlslite_client_received() {
    common::need("tlslite");
    let setup = Setup::new();
    let upstream = Upstream::echo();
    let server = setup
        .serve(upstream.addr)
        .args(["--threads", "1", "--log-format", "json"])
        .start();
    let alice = setup.ca.client("Alice");
    let cert = setup.dir.write("alice.pem", alice.chain_pem());
    let key = setup
        .dir
        .write("alice.key", alice.key_pem(KeyFormat::Pkcs8));

    // Each case and what the client must see. The received alert is compared with the logged
    // one in every refusal.
    use Want::{Alert, Established, NoAlert};
    let cases: &[(&str, Want)] = &[
        // Sealed under the server application secret (our Finished is out).
        ("bad_finished", Alert(51)),
        ("ccs_after_client_hello", Alert(10)),
        ("no_certificate", Alert(116)),
        // TLS 1.2, plaintext: before our ChangeCipherSpec.
        ("bad_finished_tls12", Alert(51)),
        ("no_certificate_tls12", Alert(116)),
        ("application_data_first", Alert(10)),
        ("alert_first", NoAlert),
        ("heartbeat_first", Alert(50)),
        ("plaintext_http", Alert(50)),
        ("malformed_client_hello", Alert(50)),
        // rustls refuses these without an alert; we send decode_error ourselves.
        ("client_hello_announcing_over_64k", Alert(50)),
        ("truncated_client_hello", Alert(50)),
        ("client_hello_just_over_64k", Alert(50)),
        // 65,515 bytes in four 16 KiB records: exactly rustls' 64 KiB deframer buffer.
        ("client_hello_just_under_64k", Established),
        // And a good client still gets through afterwards.
        ("client_hello_just_under_64k", Established),
        ("no_certificate", Alert(116)),
    ];
    let mut problems = Vec::new();
    for (i, (case, want)) in cases.iter().enumerate() {
        let seen = run_case(case, server.addr(), &cert, &key);
        let text =
            server.wait_for_stderr(&format!("the end of case {case}"), |s| endings(s).len() > i);
        let event = &endings(&text)[i];
        let logged = event["alert"].as_str().unwrap_or("(absent)").to_owned();
        let received = seen.received.map_or("none".to_owned(), |a| a.to_string());
        // Every problem is collected, so one run shows the whole table.
        if *want == Established {
            if (seen.outcome.as_str(), event["event"].as_str())
                != ("established", Some("conn.closed"))
            {
                problems.push(format!("{case}: not established: {seen:?}, {event}"));
            }
            continue;
        }
        let expected = match want {
            Alert(a) => a.to_string(),
            _ => "none".to_owned(),
        };
        if received != expected || event["event"] != "conn.rejected" {
            problems.push(format!(
                "{case}: received {received}, want {expected}: {event}"
            ));
        }
        if logged != received {
            problems.push(format!("{case}: received {received}, logged {logged}"));
        }
    }
    assert!(
        problems.is_empty(),
        "the client did not get the alert it should, or the log names another:\n{}",
        problems.join("\n")
    );
    assert_eq!(upstream.accepted(), 2, "only the good handshakes reach it");
}
