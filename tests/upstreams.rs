//! Upstream addresses: a Unix socket (`unix:/path`), and a name whose every resolved address is
//! tried in turn.

mod common;

use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::os::unix::net::UnixListener;

use common::upstream::echo_unix;
use common::{Serve, Setup, Upstream, connect, probe};

#[test]
fn forwards_to_a_unix_socket_upstream() {
    let setup = Setup::new();
    let path = setup.dir.join("app.sock");
    echo_unix(UnixListener::bind(&path).expect("bind unix upstream"));
    let spec = format!("unix:{}", path.display());
    let server = Serve::to(&spec, &setup.crt, &setup.key)
        .ca(&setup.ca_file)
        .start();
    let alice = setup.ca.client("Alice");
    let mut stream = connect(server.addr(), &setup.client(&alice)).expect("through unix:");
    probe(&mut stream).expect("second round trip");
}

#[test]
fn a_missing_unix_socket_is_an_unreachable_upstream() {
    let setup = Setup::new();
    let spec = format!("unix:{}", setup.dir.join("nobody.sock").display());
    let server = Serve::to(&spec, &setup.crt, &setup.key)
        .ca(&setup.ca_file)
        .start();
    let alice = setup.ca.client("Alice");
    assert!(connect(server.addr(), &setup.client(&alice)).is_err());
    let line = server.wait_for_line(&["conn.closed", "reason=upstream_unreachable"]);
    assert!(
        line.contains("nobody.sock"),
        "the detail names the socket: {line}"
    );
}

#[test]
fn tries_every_address_of_a_name_in_turn() {
    // `localhost` has an IPv4 and an IPv6 loopback address on a usual machine. The upstream
    // listens on the one the resolver returns last, so reaching it proves the first one was
    // tried, refused, and passed over.
    let resolved: Vec<SocketAddr> = ("localhost", 1)
        .to_socket_addrs()
        .map(|a| a.collect())
        .unwrap_or_default();
    let (Some(first), Some(last)) = (resolved.first(), resolved.last()) else {
        eprintln!("SKIPPED: localhost resolves to nothing here");
        return;
    };
    if first.ip() == last.ip() {
        eprintln!(
            "SKIPPED: localhost resolves to one address here ({resolved:?}); cannot test the fallback"
        );
        return;
    }
    let Ok(listener) = TcpListener::bind((last.ip(), 0)) else {
        eprintln!("SKIPPED: cannot bind {}", last.ip());
        return;
    };
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    // The port is free on both addresses now; bind the upstream on the last one only.
    let upstream = Upstream::echo_on(SocketAddr::new(last.ip(), port));
    let setup = Setup::new();
    let server = Serve::to(&format!("localhost:{port}"), &setup.crt, &setup.key)
        .ca(&setup.ca_file)
        .start();
    let alice = setup.ca.client("Alice");
    connect(server.addr(), &setup.client(&alice)).expect("reached through the second address");
    assert_eq!(upstream.accepted(), 1);
}
