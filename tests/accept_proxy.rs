//! `--accept-proxy`: a load balancer's PROXY protocol header (v1 or v2) before the client's
//! bytes, taken only from `--accept-proxy-from` sources. The header's source address is the
//! client's in the events and in the PROXY v2 header sent upstream; a hostile or broken sender
//! is closed before any TLS, and nothing reaches the upstream; an untrusted source is refused
//! and counted. HAProxy's own `send-proxy` and `send-proxy-v2` are the real senders.

mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use common::client::{handshake_over, probe, tcp_connect};
use common::{Setup, Upstream};

/// 192.0.2.7:5555 -> 198.51.100.1:443, as a v1 line and as a v2 header.
const V1: &[u8] = b"PROXY TCP4 192.0.2.7 198.51.100.1 5555 443\r\n";

fn v2() -> Vec<u8> {
    let mut out = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    out.extend_from_slice(&[0x21, 0x11, 0, 12, 192, 0, 2, 7, 198, 51, 100, 1]);
    out.extend_from_slice(&5555u16.to_be_bytes());
    out.extend_from_slice(&443u16.to_be_bytes());
    out
}

fn serve(setup: &Setup, upstream: SocketAddr, from: &str, extra: &[&str]) -> common::Server {
    setup
        .serve(upstream)
        .args([
            "--accept-proxy",
            "--accept-proxy-from",
            from,
            "--metrics",
            "127.0.0.1:0",
        ])
        .args(extra)
        .start()
}

/// Sends `header`, then runs the handshake and a probe over the same connection.
fn through(server: &common::Server, setup: &Setup, header: &[u8]) -> Result<(), common::Failure> {
    let mut sock = tcp_connect(server.addr());
    sock.write_all(header).expect("header");
    let alice = setup.ca.client("Alice");
    let mut stream = handshake_over(sock, &setup.client(&alice))?;
    probe(&mut stream)
}

#[test]
fn the_headers_source_is_the_client_in_events_and_upstream() {
    let setup = Setup::new();
    let echo = Upstream::echo();
    let server = serve(&setup, echo.addr, "127.0.0.0/8", &[]);
    for header in [V1.to_vec(), v2()] {
        through(&server, &setup, &header).expect("through");
    }
    let closed = server.wait_for_line(&["conn.closed", "peer=192.0.2.7:5555"]);
    assert!(closed.contains("client=\"Alice\""), "{closed}");
    let both = |s: &str| {
        s.lines()
            .filter(|l| l.contains("conn.closed") && l.contains("peer=192.0.2.7:5555"))
            .count()
            == 2
    };
    server.wait_for_stderr(
        "two conn.closed lines naming 192.0.2.7:5555 (v1 and v2)",
        both,
    );

    // Upstream, the PROXY v2 header we send names the same addresses.
    let recorder = Upstream::record();
    let server = serve(&setup, recorder.addr, "127.0.0.1", &["--proxy-protocol"]);
    let mut sock = tcp_connect(server.addr());
    sock.write_all(V1).expect("header");
    let alice = setup.ca.client("Alice");
    let mut stream = handshake_over(sock, &setup.client(&alice)).expect("handshake");
    stream.conn.writer().write_all(b"hello").expect("write");
    stream.conn.send_close_notify();
    while stream.conn.wants_write() {
        stream.conn.write_tls(&mut stream.sock).expect("flush");
    }
    let got = recorder.wait_received(1, Duration::from_secs(10));
    let header = common::proxy_header::parse(&got[0]);
    assert_eq!(header.src, "192.0.2.7:5555".parse().expect("addr"));
    assert_eq!(header.dst, "198.51.100.1:443".parse().expect("addr"));
    assert_eq!(header.rest, b"hello");
}

#[test]
fn a_broken_or_hostile_sender_is_closed_before_any_tls() {
    let setup = Setup::new();
    let echo = Upstream::echo();
    let server = serve(
        &setup,
        echo.addr,
        "127.0.0.1/32",
        &["--handshake-timeout", "1s"],
    );
    let mut long_v1 = b"PROXY TCP4 ".to_vec();
    long_v1.resize(200, b'7');
    let mut bad_signature = v2();
    bad_signature[3] = b'X';
    let mut past_the_buffer = v2();
    past_the_buffer[14..16].copy_from_slice(&u16::MAX.to_be_bytes());
    let cases: [(&str, Vec<u8>, &str); 5] = [
        (
            "bad signature",
            bad_signature,
            "not a PROXY protocol header",
        ),
        ("v1 without CRLF", long_v1, "no CRLF within 107 bytes"),
        (
            "v1 with LF only",
            b"PROXY TCP4 192.0.2.7 198.51.100.1 5555 443\n".to_vec(),
            "",
        ),
        (
            "a length past what is sent, then a close",
            past_the_buffer,
            "closed in the middle of the PROXY header",
        ),
        (
            "a ClientHello without a header",
            vec![0x16, 0x03, 0x01, 0x00, 0x30, 0x01],
            "not a PROXY protocol header",
        ),
    ];
    for (case, bytes, why) in cases {
        let mut sock = tcp_connect(server.addr());
        sock.write_all(&bytes).expect("write");
        let _ = sock.shutdown(std::net::Shutdown::Write);
        let line = server.wait_for_line(&["conn.rejected", "reason=proxy_header_invalid", why]);
        assert!(
            !line.contains("192.0.2.7"),
            "{case}: no address taken: {line}"
        );
        assert_eq!(echo.accepted(), 0, "{case}: nothing reached the upstream");
    }
    // Nothing at all within the handshake timeout.
    let _silent = tcp_connect(server.addr());
    server.wait_for_line(&["conn.rejected", "no complete PROXY header in time"]);
    common::wait_metric(
        server.metrics.expect("metrics"),
        "ringtls_handshakes_total{result=\"rejected\",reason=\"proxy_header_invalid\",endpoint=\"\"}",
        6,
    );
}

#[test]
fn an_untrusted_source_is_refused_and_counted() {
    let setup = Setup::new();
    let echo = Upstream::echo();
    let server = serve(&setup, echo.addr, "10.0.0.0/8", &[]);
    let result = through(&server, &setup, V1);
    assert!(result.is_err(), "refused");
    let line = server.wait_for_line(&["conn.rejected", "reason=proxy_untrusted"]);
    assert!(
        line.contains("127.0.0.1 is not an --accept-proxy-from source"),
        "{line}"
    );
    assert_eq!(echo.accepted(), 0);
    common::wait_metric(
        server.metrics.expect("metrics"),
        "ringtls_handshakes_total{result=\"rejected\",reason=\"proxy_untrusted\",endpoint=\"\"}",
        1,
    );
}

#[test]
fn accept_proxy_flags_are_checked() {
    let setup = Setup::new();
    let cases: [(&[&str], &str); 3] = [
        (
            &["--accept-proxy"],
            "--accept-proxy needs --accept-proxy-from",
        ),
        (
            &["--accept-proxy-from", "10.0.0.0/8"],
            "--accept-proxy-from needs --accept-proxy",
        ),
        (
            &["--accept-proxy", "--accept-proxy-from", "10.0.0.0/33"],
            "--accept-proxy-from 10.0.0.0/33: expected a network",
        ),
    ];
    for (args, message) in cases {
        let echo = Upstream::echo();
        let Err(out) = setup.serve(echo.addr).args(args).try_start() else {
            panic!("{args:?}: started");
        };
        assert_eq!(out.code, Some(64), "{args:?}: {}", out.stderr);
        assert!(out.stderr.contains(message), "{args:?}: {}", out.stderr);
    }
}

#[test]
#[cfg_attr(
    not(has = "haproxy"),
    ignore = "SKIPPED: haproxy not found (apt-get install haproxy)"
)]
fn haproxys_send_proxy_and_send_proxy_v2_name_the_client() {
    common::need("haproxy");
    let setup = Setup::new();
    let echo = Upstream::echo();
    let server = serve(&setup, echo.addr, "127.0.0.1", &[]);
    for option in ["send-proxy", "send-proxy-v2"] {
        let name = format!("haproxy-{option}.cfg");
        let (haproxy, haproxy_addr) = common::process::spawn_haproxy(&setup.dir, &name, |port| {
            format!(
                "defaults\n    mode tcp\n    timeout connect 2s\n    timeout client 10s\n    timeout server 10s\n\
                 frontend fe\n    bind 127.0.0.1:{port}\n    default_backend be\n\
                 backend be\n    server ringtls {} {option}\n",
                server.addr()
            )
        });
        let alice = setup.ca.client("Alice");
        let mut stream = common::connect(haproxy_addr, &setup.client(&alice))
            .unwrap_or_else(|e| panic!("{option}: through haproxy: {e:?}\n{}", haproxy.output()));
        let client = stream.sock.local_addr().expect("client addr");
        common::client::send_close_notify(&mut stream).expect("close_notify");
        drop(stream);
        // The client's own port, not HAProxy's outgoing one.
        server.wait_for_line(&["conn.closed", &format!("peer={client}")]);
    }
}

/// A `--config` endpoint table on `listen`, with `extra` keys.
fn table(setup: &Setup, name: &str, listen: &str, upstream: SocketAddr, extra: &str) -> String {
    format!(
        "[[endpoint]]\nname = \"{name}\"\nlisten = \"{listen}\"\ncrt = \"{}\"\nkey = \"{}\"\nmutual_tls_cas = \"{}\"\nupstream = \"{upstream}\"\n{extra}\n",
        setup.crt.display(),
        setup.key.display(),
        setup.ca_file.display()
    )
}

#[test]
fn a_config_file_takes_the_header_on_the_listeners_whose_endpoints_ask() {
    let setup = Setup::new();
    let echo = Upstream::echo();
    let text = table(
        &setup,
        "behind-lb",
        "127.0.0.1:0",
        echo.addr,
        "accept_proxy = true\naccept_proxy_from = [\"127.0.0.0/8\"]",
    ) + &table(&setup, "direct", "127.0.0.2:0", echo.addr, "");
    let config = setup.dir.write("lb.toml", text);
    let server = common::Serve::config(&config).start();
    assert_eq!(server.addrs.len(), 2, "two listeners");
    // The first listener takes the balancer's header...
    through(&server, &setup, V1).expect("through the header listener");
    server.wait_for_line(&["conn.closed", "endpoint=behind-lb", "peer=192.0.2.7:5555"]);
    // ...and the second is plain TLS: a ClientHello first, the client's own address.
    let alice = setup.ca.client("Alice");
    let mut direct = common::handshake(server.addrs[1], &setup.client(&alice)).expect("direct");
    probe(&mut direct).expect("echo");
    drop(direct);
    server.wait_for_line(&["conn.closed", "endpoint=direct", "peer=127.0.0.1:"]);
    // A ClientHello on the header listener is not a header.
    let mut sock = tcp_connect(server.addrs[0]);
    sock.write_all(&[0x16, 0x03, 0x01, 0x00, 0x30, 0x01])
        .expect("write");
    let _ = sock.shutdown(std::net::Shutdown::Write);
    server.wait_for_line(&["conn.rejected", "reason=proxy_header_invalid"]);
}

#[test]
fn a_config_file_whose_endpoints_disagree_on_a_listener_is_refused_naming_both() {
    let setup = Setup::new();
    let echo = Upstream::echo();
    // Two names on one listener, one behind the balancer and one not.
    let text = table(
        &setup,
        "alpha",
        "127.0.0.1:0",
        echo.addr,
        "server_names = [\"alpha.test\"]\naccept_proxy = true\naccept_proxy_from = \"10.0.0.0/8\"",
    ) + &table(
        &setup,
        "beta",
        "127.0.0.1:0",
        echo.addr,
        "server_names = [\"beta.test\"]",
    );
    let config = setup.dir.write("disagree.toml", text);
    let refused = match common::Serve::config(&config).try_start() {
        Ok(_) => panic!("served a listener whose endpoints disagree"),
        Err(exited) => exited,
    };
    assert_eq!(refused.code, Some(78), "{}", refused.stderr);
    for needle in [
        "disagree.toml:12",
        "endpoint \"beta\"",
        "endpoint \"alpha\" (line 1)",
        "takes a PROXY header from 10.0.0.0/8 there, this one none",
        "must agree",
    ] {
        assert!(
            refused.stderr.contains(needle),
            "{needle}: {}",
            refused.stderr
        );
    }

    // accept_proxy without a source anywhere, and a source that is not a network.
    let cases = [
        ("accept_proxy = true", "needs accept_proxy_from"),
        (
            "accept_proxy = true\naccept_proxy_from = \"10.0.0.300/8\"",
            "accept_proxy_from 10.0.0.300/8: expected a network",
        ),
        (
            "accept_proxy_from = \"10.0.0.0/8\"",
            "accept_proxy is not true",
        ),
    ];
    for (extra, why) in cases {
        let text = table(&setup, "solo", "127.0.0.1:0", echo.addr, extra);
        let config = setup.dir.write("bad.toml", text);
        match common::Serve::config(&config).try_start() {
            Ok(_) => panic!("started with {extra:?}"),
            Err(exited) => {
                assert_eq!(exited.code, Some(78), "{extra}: {}", exited.stderr);
                assert!(
                    exited.stderr.contains(why) && exited.stderr.contains("endpoint \"solo\""),
                    "{extra}: {}",
                    exited.stderr
                );
            }
        }
    }
    // With --accept-proxy-from as the default, `accept_proxy = true` alone is enough.
    let text = table(
        &setup,
        "solo",
        "127.0.0.1:0",
        echo.addr,
        "accept_proxy = true",
    );
    let config = setup.dir.write("default.toml", text);
    let server = common::Serve::config(&config)
        .args(["--accept-proxy-from", "127.0.0.1"])
        .start();
    through(&server, &setup, &v2()).expect("through with the flag's sources");
}
