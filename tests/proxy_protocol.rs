//! `--proxy-protocol`: the upstream receives a PROXY protocol v2 header before any client byte.
//! The parser (`common::proxy_header`) is written from HAProxy's `doc/proxy-protocol.txt`, not
//! from our encoder.

mod common;

use std::io::Write;
use std::time::Duration;

use common::client::{handshake, send_close_notify};
use common::proxy_header::{parse, parse_tlvs, tlv};
use common::{Setup, Upstream, Version};

#[test]
fn sends_proxy_v2_header_with_client_identity_before_client_bytes() {
    let setup = Setup::new();
    let upstream = Upstream::record();
    let server = setup
        .serve(upstream.addr)
        .args(["--proxy-protocol"])
        .start();
    let alice = setup.ca.client("Alice Proxy");
    let mut stream =
        handshake(server.addr(), &setup.client(&alice).version(Version::Tls13)).expect("handshake");
    let client_addr = stream.sock.local_addr().expect("client addr");
    stream.write_all(b"first client bytes").expect("write");
    stream.flush().expect("flush");
    send_close_notify(&mut stream).expect("close_notify");
    let received = upstream.wait_received(1, Duration::from_secs(10));
    let p = parse(&received[0]);

    assert_eq!(p.src, client_addr, "source is the client");
    assert_eq!(p.dst, server.addr(), "destination is our listener");
    assert_eq!(
        p.rest, b"first client bytes",
        "client bytes follow the header, intact"
    );
    assert_eq!(
        tlv(&p.tlvs, 0x02),
        Some(&b"localhost"[..]),
        "AUTHORITY carries the SNI"
    );
    assert_eq!(tlv(&p.tlvs, 0x01), None, "no ALPN was negotiated");

    let unique = tlv(&p.tlvs, 0x05).expect("UNIQUE_ID");
    assert_eq!(
        unique,
        &common::sha256(&alice.cert)[..],
        "UNIQUE_ID is the leaf's SHA-256"
    );

    let ssl = tlv(&p.tlvs, 0x20).expect("SSL TLV");
    assert_eq!(ssl[0] & 0x01, 0x01, "PP2_CLIENT_SSL");
    assert_eq!(ssl[0] & 0x02, 0x02, "PP2_CLIENT_CERT_CONN");
    assert_eq!(
        &ssl[1..5],
        &[0, 0, 0, 0],
        "verify = 0: certificate verified"
    );
    let sub = parse_tlvs(&ssl[5..]);
    assert_eq!(tlv(&sub, 0x21), Some(&b"TLSv1.3"[..]));
    assert_eq!(tlv(&sub, 0x22), Some(&b"Alice Proxy"[..]));
    assert_eq!(tlv(&sub, 0x23), Some(&b"TLS_AES_128_GCM_SHA256"[..]));
    assert_eq!(tlv(&sub, 0x24), Some(&b"ecdsa-with-SHA256"[..]));
    assert_eq!(tlv(&sub, 0x25), Some(&b"id-ecPublicKey"[..]));
}

#[test]
fn sends_no_header_without_the_flag() {
    let setup = Setup::new();
    let upstream = Upstream::record();
    let server = setup.serve(upstream.addr).start();
    let alice = setup.ca.client("Alice");
    let mut stream = handshake(server.addr(), &setup.client(&alice)).expect("handshake");
    stream.write_all(b"plain").expect("write");
    stream.flush().expect("flush");
    send_close_notify(&mut stream).expect("close_notify");
    let received = upstream.wait_received(1, Duration::from_secs(10));
    assert_eq!(received[0], b"plain");
}

/// HAProxy as the upstream (`accept-proxy`): a real peer proves the encoding. HAProxy 2.6 logs
/// the addresses it took from the header and the AUTHORITY and UNIQUE_ID TLVs.
#[test]
#[cfg_attr(
    not(has = "haproxy"),
    ignore = "SKIPPED: haproxy not found (apt-get install haproxy); PROXY v2 not checked against a real peer"
)]
fn haproxy_accepts_our_proxy_header() {
    common::need("haproxy");
    let setup = Setup::new();
    let echo = Upstream::echo();
    let (haproxy, haproxy_addr) = common::process::spawn_haproxy(
        &setup.dir,
        "haproxy.cfg",
        |port| {
            format!(
                "global\n    log stderr format raw local0\n\
             defaults\n    mode tcp\n    log global\n    timeout connect 2s\n    timeout client 10s\n    timeout server 10s\n\
             frontend fe\n    bind 127.0.0.1:{port} accept-proxy\n\
             \x20   log-format \"PP src=%ci:%cp dst=%fi:%fp authority=%[fc_pp_authority] uid=%[fc_pp_unique_id,hex]\"\n\
             \x20   default_backend be\n\
             backend be\n    server echo {}\n",
                echo.addr
            )
        },
    );

    let server = setup.serve(haproxy_addr).args(["--proxy-protocol"]).start();
    let alice = setup.ca.client("Alice Proxy");
    let mut stream = common::connect(server.addr(), &setup.client(&alice))
        .expect("echo through ringtls and haproxy");
    let client_addr = stream.sock.local_addr().expect("client addr");
    send_close_notify(&mut stream).expect("close_notify");
    drop(stream);

    let want = format!("PP src={client_addr} dst={}", server.addr());
    let logged = haproxy
        .stderr
        .wait_for(Duration::from_secs(10), |text| text.contains(&want));
    assert!(
        logged,
        "haproxy never logged {want:?}\n{}",
        haproxy.output()
    );
    let text = haproxy.stderr.text();
    let line = text.lines().find(|l| l.contains(&want)).expect("line");
    assert!(line.contains("authority=localhost"), "{line}");
    let uid: String = common::sha256(&alice.cert)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect();
    assert!(line.contains(&format!("uid={uid}")), "{line}");
}

#[test]
fn advertises_alpn_and_forwards_the_choice_in_the_header() {
    let setup = Setup::new();
    let upstream = Upstream::record();
    let server = setup
        .serve(upstream.addr)
        .args(["--proxy-protocol", "--alpn", "h2", "--alpn", "http/1.1"])
        .start();
    let alice = setup.ca.client("Alice");
    let mut config = (*setup.client(&alice).config()).clone();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let conn = rustls::ClientConnection::new(std::sync::Arc::new(config), name).expect("client");
    let mut stream = rustls::StreamOwned::new(conn, common::client::tcp_connect(server.addr()));
    while stream.conn.is_handshaking() {
        stream
            .conn
            .complete_io(&mut stream.sock)
            .expect("handshake");
    }
    assert_eq!(stream.conn.alpn_protocol(), Some(&b"http/1.1"[..]));
    stream.write_all(b"GET / HTTP/1.1\r\n\r\n").expect("write");
    stream.flush().expect("flush");
    send_close_notify(&mut stream).expect("close_notify");
    let received = upstream.wait_received(1, Duration::from_secs(10));
    let p = parse(&received[0]);
    assert_eq!(tlv(&p.tlvs, 0x01), Some(&b"http/1.1"[..]), "ALPN TLV");
    assert_eq!(p.rest, b"GET / HTTP/1.1\r\n\r\n");
}
