//! The plaintext side of the kernel-TLS data path, measured on the runtime it runs on: one
//! monoio worker forwards `SIZE` bytes from one loopback TCP connection to another (a feeder
//! thread writes, a sink thread reads), under each driver, by each candidate method:
//!
//! - `splice N` — ringtls' forwarder (`proxy::splice::forward`): non-blocking splice(2) on
//!   readiness through a pooled pipe of N bytes. `splice 16K` stands for a kernel-TLS source,
//!   which gives at most one record (16 KiB) per splice call;
//! - `read/write` — monoio reads into a reused 128 KiB buffer and writes it out (the copy a
//!   kernel-TLS relay without splice would make);
//! - `monoio splice` — monoio's own splice op (io_uring's IORING_OP_SPLICE under io_uring,
//!   splice on readiness under epoll) through a default 64 KiB pipe;
//! - `copy (ringtls)` — `proxy::splice::copy`: non-blocking read/write on readiness through a
//!   buffer that sizes itself to the traffic;
//! - `splice, no pipe left` — the forwarder when no pipe can be had (the same copy, round by
//!   round).
//!
//! Reported: the process's CPU per GiB minus the feeder's and the sink's own (so io_uring's
//! io-wq kernel threads, which run inside the process, are counted), and wall time; best of
//! `RUNS`, the methods interleaved run by run. `cargo bench --bench splice [-- --json]`.

use std::cell::Cell;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::thread;
use std::time::{Duration, Instant};

use monoio::io::splice::{SpliceDestination, SpliceSource};
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::TcpStream;
use ringtls::proxy::splice::{self, Pipes};

const SIZE: usize = 512 << 20;
const RUNS: usize = 5;
const CHUNK: usize = 128 * 1024;

fn cpu(who: libc::c_int) -> Duration {
    // SAFETY: rusage is plain data; getrusage fills the one we own.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe { libc::getrusage(who, &mut usage) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// Pins this thread to core `i` (of those present): the forwarder on one core, the feeder and
/// the sink on another, as `scripts/bench.sh` places the server and its load.
fn pin(i: usize) {
    if let Some(ids) = core_affinity::get_core_ids()
        && let Some(id) = ids.get(i % ids.len())
    {
        core_affinity::set_for_current(*id);
    }
}

fn pair() -> (std::net::TcpStream, std::net::TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let a = std::net::TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
    let (b, _) = listener.accept().expect("accept");
    (a, b)
}

#[derive(Clone, Copy)]
enum Method {
    Splice(usize),
    ReadWrite,
    MonoioSplice,
    Copy,
    NoPipe,
}

impl Method {
    fn name(self) -> String {
        match self {
            Method::Splice(n) => format!("splice {}K", n >> 10),
            Method::ReadWrite => "read/write 128K".into(),
            Method::MonoioSplice => "monoio splice op".into(),
            Method::Copy => "copy (ringtls)".into(),
            Method::NoPipe => "splice, no pipe left".into(),
        }
    }
}

async fn forward(method: Method, src: TcpStream, mut dst: TcpStream) {
    match method {
        Method::Splice(_) | Method::Copy | Method::NoPipe => {
            splice::take_over(&src).expect("nonblocking");
            splice::take_over(&dst).expect("nonblocking");
            let moved = Cell::new(0);
            let count = |n, _| moved.set(moved.get() + n);
            match method {
                Method::Splice(size) => {
                    splice::forward(&src, &dst, &Pipes::new(size), count, || {}).await
                }
                Method::NoPipe => splice::forward(&src, &dst, &Pipes::new(0), count, || {}).await,
                _ => splice::copy(&src, &dst, count, || {}).await,
            }
            .expect("forward");
            assert_eq!(moved.get(), SIZE);
        }
        Method::ReadWrite => {
            let mut src = src;
            let mut buf = Vec::with_capacity(CHUNK);
            loop {
                let (res, b) = src.read(buf).await;
                let n = res.expect("read");
                if n == 0 {
                    break;
                }
                let (res, b) = dst.write_all(b).await;
                res.expect("write");
                buf = b;
                buf.clear();
            }
        }
        Method::MonoioSplice => {
            let mut src = src;
            let (mut r, mut w) = monoio::net::unix::new_pipe().expect("pipe");
            // monoio does not expose the pipe's descriptor for F_SETPIPE_SZ: the default
            // 64 KiB pipe (16 pages).
            loop {
                let n = src.splice_to_pipe(&mut w, 1 << 20).await.expect("in");
                if n == 0 {
                    break;
                }
                let mut inside = n;
                while inside > 0 {
                    inside -= dst.splice_from_pipe(&mut r, inside).await.expect("out");
                }
            }
        }
    }
}

/// One run under `uring` or epoll: (forwarder CPU, wall, feeder + sink CPU).
fn run(method: Method, uring: bool) -> (Duration, Duration, Duration) {
    let (mut feeder, src) = pair();
    let (dst, mut sink) = pair();
    let feeding = thread::spawn(move || {
        pin(1);
        let chunk = vec![0x5au8; CHUNK];
        let mut left = SIZE;
        while left > 0 {
            let n = left.min(CHUNK);
            feeder.write_all(&chunk[..n]).expect("feed");
            left -= n;
        }
        drop(feeder);
        cpu(libc::RUSAGE_THREAD)
    });
    let draining = thread::spawn(move || {
        pin(1);
        let mut buf = vec![0u8; CHUNK];
        let mut got = 0;
        loop {
            let n = sink.read(&mut buf).expect("sink");
            if n == 0 {
                break;
            }
            got += n;
        }
        assert_eq!(got, SIZE);
        cpu(libc::RUSAGE_THREAD)
    });
    let before = cpu(libc::RUSAGE_SELF);
    let t0 = Instant::now();
    let job = async move {
        let src = TcpStream::from_std(src).expect("src");
        let dst = TcpStream::from_std(dst).expect("dst");
        forward(method, src, dst).await;
    };
    if uring {
        monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
            .build()
            .expect("io_uring")
            .block_on(job);
    } else {
        monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .build()
            .expect("epoll")
            .block_on(job);
    }
    let fed = feeding.join().expect("feeder");
    let drained = draining.join().expect("sink");
    let wall = t0.elapsed();
    let total = cpu(libc::RUSAGE_SELF) - before;
    (total.saturating_sub(fed + drained), wall, fed + drained)
}

fn main() {
    pin(0);
    let json = std::env::args().any(|a| a == "--json");
    let methods = [
        Method::ReadWrite,
        Method::Splice(64 << 10),
        Method::Splice(256 << 10),
        Method::Splice(1 << 20),
        Method::Splice(16 << 10),
        Method::Copy,
        Method::NoPipe,
        Method::MonoioSplice,
    ];
    let gib = SIZE as f64 / (1u64 << 30) as f64;
    let mut rows = Vec::new();
    for uring in [true, false] {
        let mut best = vec![(Duration::MAX, Duration::MAX, Duration::MAX); methods.len()];
        for _ in 0..RUNS {
            for (i, m) in methods.iter().enumerate() {
                let r = run(*m, uring);
                if r.0 < best[i].0 {
                    best[i] = r;
                }
            }
        }
        let base = best[0].0.as_secs_f64();
        for (m, (c, w, peers)) in methods.iter().zip(best) {
            rows.push((
                if uring { "io_uring" } else { "epoll" },
                m.name(),
                c.as_secs_f64() / gib,
                SIZE as f64 / (1 << 20) as f64 / w.as_secs_f64(),
                c.as_secs_f64() / base,
                peers.as_secs_f64() / gib,
            ));
        }
    }
    if json {
        let items: Vec<String> = rows
            .iter()
            .map(|(d, m, c, mbs, ratio, peers)| {
                format!(
                    "{{\"driver\":\"{d}\",\"method\":\"{m}\",\"cpu_s_per_gib\":{c:.3},\"mib_s\":{mbs:.0},\"vs_read_write\":{ratio:.2},\"feeder_sink_cpu_s_per_gib\":{peers:.3}}}"
                )
            })
            .collect();
        println!(
            "{{\"bytes\":{SIZE},\"runs\":{RUNS},\"rows\":[{}]}}",
            items.join(",")
        );
        return;
    }
    println!(
        "forwarding {} MiB over loopback, one monoio worker, best of {RUNS}",
        SIZE >> 20
    );
    println!(
        "{:<9} {:<20} {:>10} {:>14} {:>9} {:>16}",
        "driver", "method", "CPU s/GiB", "vs read/write", "MiB/s", "feeder+sink s/GiB"
    );
    for (d, m, c, mbs, ratio, peers) in rows {
        println!("{d:<9} {m:<20} {c:>10.3} {ratio:>13.2}x {mbs:>9.0} {peers:>16.3}");
    }
}
