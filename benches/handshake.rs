//! In-memory mutual-TLS handshakes: the rustls client against ringtls' own `ServerConfig`
//! (built by `ringtls::tls::load_tls` from a dev PKI), no sockets. Reports the server side's
//! CPU time per full and per resumed TLS 1.3 handshake, to compare with `crypto_floor` (what the
//! public-key operations alone cost) and with the socket figures of `scripts/bench.sh` (what
//! the kernel and our I/O add).
//!
//! `cargo bench --bench handshake` prints a table; `-- --json` prints one JSON line.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ringtls::engine;
use ringtls::pki::DevPki;
use ringtls::tls::{TlsFiles, load_tls};
use rustls::client::Resumption;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection};

/// Runs one handshake and returns the time spent inside server-side calls.
fn handshake(
    server_config: &Arc<ServerConfig>,
    client_config: &Arc<ClientConfig>,
) -> (Duration, bool) {
    let name = ServerName::try_from("localhost").expect("name");
    let mut client = ClientConnection::new(client_config.clone(), name).expect("client");
    let mut server_time = Duration::ZERO;
    let t0 = Instant::now();
    let mut server = ServerConnection::new(server_config.clone()).expect("server");
    server_time += t0.elapsed();
    let mut to_server = Vec::new();
    let mut to_client = Vec::new();
    let mut plain = Vec::new();
    // Until the client has read the server's post-handshake tickets.
    for _ in 0..10 {
        to_server.clear();
        engine::take_tls(&mut client, &mut to_server);
        let t = Instant::now();
        engine::feed(&mut server, &to_server, &mut plain).expect("server accepts");
        to_client.clear();
        engine::take_tls(&mut server, &mut to_client);
        server_time += t.elapsed();
        engine::feed(&mut client, &to_client, &mut plain).expect("client accepts");
        if !client.is_handshaking()
            && !server.is_handshaking()
            && !client.wants_write()
            && to_client.is_empty()
        {
            break;
        }
    }
    assert!(!server.is_handshaking(), "handshake did not complete");
    (
        server_time,
        client.handshake_kind() == Some(rustls::HandshakeKind::Resumed),
    )
}

fn client_config(pki: &DevPki, resume: bool) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(pki.ca_pem.as_bytes()).expect("ca"))
        .expect("root");
    let chain =
        vec![CertificateDer::from_pem_slice(pki.client_pem.as_bytes()).expect("client cert")];
    let key = PrivateKeyDer::from_pem_slice(pki.client_key.as_bytes()).expect("client key");
    let mut config = ClientConfig::builder_with_provider(ringtls::tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("versions")
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .expect("client auth");
    if !resume {
        config.resumption = Resumption::disabled();
    }
    Arc::new(config)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let json = std::env::args().any(|a| a == "--json");
    let pki = DevPki::generate().expect("dev pki");
    let dir = std::env::temp_dir().join(format!("ringtls-bench-hs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let write = |name: &str, body: &str| {
        let p = dir.join(name);
        std::fs::write(&p, body).expect("write");
        p
    };
    let files = TlsFiles {
        crt: write("server.pem", &pki.server_pem),
        key: write("server.key", &pki.server_key),
        cas: vec![write("ca.pem", &pki.ca_pem)],
        crls: Vec::new(),
    };
    let material = load_tls(&files).expect("load tls");
    let _ = std::fs::remove_dir_all(&dir);
    let server_config = material.server_config;

    let (rounds, per_round) = (11, 100);
    let full_client = client_config(&pki, false);
    let full = median(
        (0..rounds)
            .map(|_| {
                (0..per_round)
                    .map(|_| handshake(&server_config, &full_client).0)
                    .sum::<Duration>()
                    / per_round
            })
            .collect(),
    );
    let resume_client = client_config(&pki, true);
    let mut resumed_count = 0u32;
    let resumed = median(
        (0..rounds)
            .map(|_| {
                (0..per_round)
                    .map(|_| {
                        let (t, r) = handshake(&server_config, &resume_client);
                        resumed_count += u32::from(r);
                        t
                    })
                    .sum::<Duration>()
                    / per_round
            })
            .collect(),
    );
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let fraction = f64::from(resumed_count) / f64::from(rounds * per_round);
    if json {
        println!(
            "{{\"bench\":\"handshake\",\"server_full_us\":{:.1},\"server_resumed_us\":{:.1},\"resumed_fraction\":{:.3}}}",
            us(full),
            us(resumed),
            fraction
        );
    } else {
        println!(
            "in-memory TLS 1.3 mTLS handshakes, ECDSA P-256, server side only (median of {rounds} × {per_round}):"
        );
        println!("  full handshake       {:>7.1} µs", us(full));
        println!(
            "  resumed handshake    {:>7.1} µs  ({:.0}% resumed)",
            us(resumed),
            fraction * 100.0
        );
    }
}
