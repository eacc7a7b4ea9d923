//! In-memory mutual-TLS handshakes: the rustls client against ringtls' own `ServerConfig`
//! (built by `ringtls::tls::load_tls` from a dev PKI), no sockets. Reports the server side's
//! CPU time per full and per resumed TLS 1.3 handshake, to compare with `crypto_floor` (what the
//! public-key operations alone cost) and with the socket figures of `scripts/bench.sh` (what
//! the kernel and our I/O add).
//!
//! `cargo bench --bench handshake` prints a table; `-- --json` prints one JSON line.

mod common;

use std::time::Duration;

use common::{Fixture, handshake, median};

fn main() {
    let json = std::env::args().any(|a| a == "--json");
    let fixture = Fixture::new();
    let server_config = &fixture.server_config;
    let (rounds, per_round) = (11, 100);

    let full_client = fixture.client_config(false);
    let full = median(
        (0..rounds)
            .map(|_| {
                (0..per_round)
                    .map(|_| handshake(server_config, &full_client).2)
                    .sum::<Duration>()
                    / per_round
            })
            .collect(),
    );
    let resume_client = fixture.client_config(true);
    let mut resumed_count = 0u32;
    let resumed = median(
        (0..rounds)
            .map(|_| {
                (0..per_round)
                    .map(|_| {
                        let (client, _, t) = handshake(server_config, &resume_client);
                        resumed_count += u32::from(
                            client.handshake_kind() == Some(rustls::HandshakeKind::Resumed),
                        );
                        t
                    })
                    .sum::<Duration>()
                    / per_round
            })
            .collect(),
    );
    // What reading back a refusal's alert adds to every handshake: the slot armed and disarmed
    // for each step (three for a full handshake), the server's two TLS 1.3 secrets copied out
    // of the key log and kept, our flight's records counted.
    let keylog = ringtls::tls::secrets::KeyLogs {
        file: None,
        kernel: false,
    };
    let flight = {
        let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
        let mut client = rustls::ClientConnection::new(full_client.clone(), name).expect("client");
        let mut server = rustls::ServerConnection::new(server_config.clone()).expect("server");
        let (mut hello, mut flight) = (Vec::new(), Vec::new());
        ringtls::engine::take_tls(&mut client, &mut hello);
        ringtls::engine::feed(&mut server, &hello, &mut Vec::new()).expect("ClientHello");
        ringtls::engine::take_tls(&mut server, &mut flight);
        flight
    };
    let capture_per_handshake = median(
        (0..rounds)
            .map(|_| {
                let t0 = std::time::Instant::now();
                for _ in 0..per_round * 100 {
                    let mut secrets = ringtls::tls::capture::Secrets::default();
                    let mut written = ringtls::proxy::alert::Written::default();
                    for step in 0..3 {
                        let ((), captured) = ringtls::tls::capture::during(|| {
                            if step == 0 {
                                rustls::KeyLog::log(
                                    &keylog,
                                    "SERVER_HANDSHAKE_TRAFFIC_SECRET",
                                    &[0; 32],
                                    &[7; 32],
                                );
                                rustls::KeyLog::log(
                                    &keylog,
                                    "SERVER_TRAFFIC_SECRET_0",
                                    &[0; 32],
                                    &[8; 32],
                                );
                            }
                        });
                        secrets.merge(captured.secrets);
                    }
                    written.add(std::hint::black_box(&flight));
                    std::hint::black_box((&secrets, written));
                }
                t0.elapsed() / (per_round * 100)
            })
            .collect(),
    );
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let fraction = f64::from(resumed_count) / f64::from(rounds * per_round);
    if json {
        println!(
            "{{\"bench\":\"handshake\",\"server_full_us\":{:.1},\"server_resumed_us\":{:.1},\"resumed_fraction\":{:.3},\"capture_ns\":{:.0}}}",
            us(full),
            us(resumed),
            fraction,
            capture_per_handshake.as_secs_f64() * 1e9
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
        println!(
            "  capturing its secrets {:>6.0} ns  (arming, copying, counting records)",
            capture_per_handshake.as_secs_f64() * 1e9
        );
    }
}
