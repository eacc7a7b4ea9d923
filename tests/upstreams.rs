//! Upstream addresses: a Unix socket (`unix:/path`), and a name whose every resolved address is
//! tried in turn.

mod common;

use std::net::{SocketAddr, TcpListener};
use std::os::unix::net::UnixListener;

use common::process::launched_by;
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
#[cfg_attr(
    not(has = "two-localhost-addresses"),
    ignore = "SKIPPED: localhost has one address here, and ringtls cannot be given a private /etc/hosts (unshare -m and mount need root)"
)]
fn tries_every_address_of_a_name_in_turn() {
    // `localhost` has an IPv4 and an IPv6 loopback address on a usual machine. Where it has
    // one (a container's generated /etc/hosts), ringtls gets a private /etc/hosts that lists
    // both, in a mount namespace of its own. The upstream listens on one of the two, and then
    // on the other: whichever order the resolver returns them in, one of the runs reaches the
    // upstream only through the second address, after the first was refused.
    common::need("two-localhost-addresses");
    let setup = Setup::new();
    let (hosts, (a, b)) = match common::tools::localhost_pair() {
        Ok(pair) => (None, pair),
        Err(_) => {
            let hosts = setup
                .dir
                .write("hosts", "127.0.0.1 localhost\n::1 localhost\n");
            let v4 = SocketAddr::from(([127, 0, 0, 1], 0));
            let v6 = SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, 0));
            (Some(hosts), (v4, v6))
        }
    };
    for (listen, other) in [(a, b), (b, a)] {
        let port = free_port_on_both(listen, other);
        let upstream = Upstream::echo_on(SocketAddr::new(listen.ip(), port));
        let mut serve =
            Serve::to(&format!("localhost:{port}"), &setup.crt, &setup.key).ca(&setup.ca_file);
        if let Some(hosts) = hosts.clone() {
            serve = serve.wrap(move |inner| {
                let script = r#"mount --bind "$1" /etc/hosts && shift && exec "$@""#;
                let hosts = hosts.to_str().expect("utf-8 temp path").to_owned();
                launched_by(inner, "unshare", &["-m", "sh", "-c", script, "sh", &hosts])
            });
        }
        let server = serve.start();
        let alice = setup.ca.client("Alice");
        connect(server.addr(), &setup.client(&alice))
            .unwrap_or_else(|e| panic!("upstream on {} not reached: {e:?}", listen.ip()));
        assert_eq!(upstream.accepted(), 1, "upstream on {}", listen.ip());
    }
}

/// A port free on `a`'s address now, and not taken on `b`'s: bound on `a` and released, so the
/// upstream can take it there while `b`'s refuses (nothing else binds loopback ports here).
fn free_port_on_both(a: SocketAddr, b: SocketAddr) -> u16 {
    loop {
        let port = TcpListener::bind((a.ip(), 0))
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        if TcpListener::bind((b.ip(), port)).is_ok() {
            return port;
        }
    }
}
