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
