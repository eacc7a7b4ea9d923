//! The record path, in memory: what ringtls' adapter (`ringtls::engine`) adds over rustls itself
//! when turning client ciphertext into plaintext (the upload direction) and plaintext into
//! records (the download direction). Both sides use the same connection type, suite
//! (AES-128-GCM) and 16 KiB chunks; only the buffer handling differs.
//!
//! `cargo bench --bench record` prints a table; `-- --json` prints one JSON line.

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::{Fixture, handshake, median};
use ringtls::engine;
use rustls::ServerConnection;

const TOTAL: usize = 256 << 20;
const CHUNK: usize = 16 * 1024;

/// Ciphertext of `TOTAL` bytes of application data from the client, cut the way a socket read
/// of `CHUNK` bytes would cut it.
fn upload(fixture: &Fixture) -> (ServerConnection, Vec<Vec<u8>>) {
    let (mut client, server, _) = handshake(&fixture.server_config, &fixture.client_config(false));
    let data = vec![0x5au8; CHUNK];
    let mut wire = Vec::with_capacity(TOTAL + TOTAL / 50);
    let mut sent = 0;
    while sent < TOTAL {
        client.writer().write_all(&data).expect("client write");
        engine::take_tls(&mut client, &mut wire);
        sent += CHUNK;
    }
    (server, wire.chunks(CHUNK).map(<[u8]>::to_vec).collect())
}

fn rustls_alone(server: &mut ServerConnection, chunks: &[Vec<u8>]) -> Duration {
    let mut out = vec![0u8; CHUNK * 2];
    let t = Instant::now();
    for chunk in chunks {
        let mut rd = &chunk[..];
        while !rd.is_empty() {
            server.read_tls(&mut rd).expect("read_tls");
            server.process_new_packets().expect("process");
            while let Ok(n) = server.reader().read(&mut out) {
                if n == 0 {
                    break;
                }
                std::hint::black_box(&out[..n]);
            }
        }
    }
    t.elapsed()
}

fn through_engine(server: &mut ServerConnection, chunks: &[Vec<u8>]) -> Duration {
    let mut plain = Vec::with_capacity(CHUNK * 2);
    let t = Instant::now();
    for chunk in chunks {
        engine::feed(server, chunk, &mut plain).expect("feed");
        std::hint::black_box(&plain);
        plain.clear();
    }
    t.elapsed()
}

fn download(server: &mut ServerConnection, engine_path: bool) -> Duration {
    let data = vec![0x5au8; CHUNK];
    let mut out = Vec::with_capacity(CHUNK * 4);
    let t = Instant::now();
    for _ in 0..TOTAL / CHUNK {
        server.writer().write_all(&data).expect("server write");
        if engine_path {
            engine::take_tls(server, &mut out);
        } else {
            while server.wants_write() {
                server.write_tls(&mut out).expect("write_tls");
            }
        }
        std::hint::black_box(&out);
        out.clear();
    }
    t.elapsed()
}

fn main() {
    let json = std::env::args().any(|a| a == "--json");
    let fixture = Fixture::new();
    let rounds = 5;
    let gib_per_s = |d: Duration| TOTAL as f64 / d.as_secs_f64() / f64::from(1u32 << 30);
    let up_rustls = median(
        (0..rounds)
            .map(|_| {
                let (mut s, c) = upload(&fixture);
                rustls_alone(&mut s, &c)
            })
            .collect(),
    );
    let up_engine = median(
        (0..rounds)
            .map(|_| {
                let (mut s, c) = upload(&fixture);
                through_engine(&mut s, &c)
            })
            .collect(),
    );
    let down = |engine_path| {
        median(
            (0..rounds)
                .map(|_| {
                    let (_, mut s, _) =
                        handshake(&fixture.server_config, &fixture.client_config(false));
                    download(&mut s, engine_path)
                })
                .collect(),
        )
    };
    let down_rustls = down(false);
    let down_engine = down(true);
    if json {
        println!(
            "{{\"bench\":\"record\",\"upload_rustls_gib_s\":{:.3},\"upload_engine_gib_s\":{:.3},\"download_rustls_gib_s\":{:.3},\"download_engine_gib_s\":{:.3}}}",
            gib_per_s(up_rustls),
            gib_per_s(up_engine),
            gib_per_s(down_rustls),
            gib_per_s(down_engine)
        );
    } else {
        println!(
            "record path in memory, AES-128-GCM, 16 KiB chunks, {} MiB (median of {rounds}):",
            TOTAL >> 20
        );
        println!(
            "  upload   (ciphertext -> plaintext)  rustls alone {:>6.2} GiB/s   through engine {:>6.2} GiB/s",
            gib_per_s(up_rustls),
            gib_per_s(up_engine)
        );
        println!(
            "  download (plaintext -> records)     rustls alone {:>6.2} GiB/s   through engine {:>6.2} GiB/s",
            gib_per_s(down_rustls),
            gib_per_s(down_engine)
        );
    }
}
