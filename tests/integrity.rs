//! Integrity under load: 200 connections at once, each sending a random amount (log-uniform
//! from 1 byte to 64 MiB, one of them exactly 64 MiB) in random write sizes (1 byte to 1 MiB)
//! through an echo upstream, and reading it all back: the SHA-256 must match end to end, both
//! ways, under both drivers.

mod common;

use std::io::Write;
use std::thread;

use common::client::{self, split};
use common::{Digest, Driver, Pattern, Setup, Upstream, hex};

const CONNECTIONS: usize = 200;
const MAX: u64 = 64 << 20;

/// xorshift64*: deterministic per seed, so a failure names a reproducible connection.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Log-uniform in 1..=max: as many 1-10 byte values as 1-10 MiB ones.
    fn log_uniform(&mut self, max: u64) -> u64 {
        let bits = 64 - max.leading_zeros();
        let exp = self.next() % u64::from(bits);
        let lo = 1u64 << exp;
        (lo + self.next() % lo).min(max)
    }
}

fn integrity(driver: Driver) {
    let setup = Setup::new();
    let upstream = Upstream::echo();
    let server = setup.serve(upstream.addr).driver(driver).start();
    let alice = setup.ca.client("Alice");
    let opts = setup.client(&alice);
    let addr = server.addr();
    let mut total = 0u64;
    let workers: Vec<_> = (0..CONNECTIONS)
        .map(|i| {
            let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (i as u64 + 1));
            let len = if i == 0 { MAX } else { rng.log_uniform(MAX) } as usize;
            total += len as u64;
            let opts = opts.clone();
            thread::spawn(move || -> Result<(), String> {
                let seed = i as u64 + 1000;
                let stream = client::handshake(addr, &opts).map_err(|e| format!("#{i}: {e:?}"))?;
                let (mut reader, mut writer) = split(stream);
                let sending = thread::spawn(move || -> std::io::Result<()> {
                    let mut data = vec![0u8; len];
                    Pattern::new(seed).fill(&mut data);
                    let mut at = 0;
                    while at < len {
                        let n = (rng.log_uniform(1 << 20) as usize).min(len - at);
                        writer.write_all(&data[at..at + n])?;
                        at += n;
                    }
                    writer.close_notify()
                });
                let got = Digest::read_all(&mut reader).map_err(|e| format!("#{i} read: {e}"))?;
                sending
                    .join()
                    .map_err(|_| format!("#{i}: sender panicked"))?
                    .map_err(|e| format!("#{i} write: {e}"))?;
                let want = Pattern::digest(seed, len);
                if got != (len, want) {
                    return Err(format!(
                        "#{i}: sent {len} bytes (sha256 {}), got {} (sha256 {})",
                        hex(&want),
                        got.0,
                        hex(&got.1)
                    ));
                }
                Ok(())
            })
        })
        .collect();
    let failures: Vec<String> = workers
        .into_iter()
        .filter_map(|w| w.join().unwrap_or_else(|_| Err("panicked".into())).err())
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {CONNECTIONS} failed: {failures:#?}",
        failures.len()
    );
    eprintln!(
        "{driver:?}: {CONNECTIONS} connections, {} MiB each way, every SHA-256 equal",
        total >> 20
    );
    assert_eq!(upstream.accepted(), CONNECTIONS);
}

#[test]
fn two_hundred_concurrent_random_transfers_arrive_intact_with_io_uring() {
    integrity(Driver::IoUring);
}

#[test]
fn two_hundred_concurrent_random_transfers_arrive_intact_with_epoll() {
    integrity(Driver::Epoll);
}
