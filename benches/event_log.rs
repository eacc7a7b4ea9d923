//! The event log's budget: what one connection's close event costs the worker that emits it,
//! how many bytes it is, and how fast the writer thread empties the queue, against the floor
//! of the old way (one locked `write(2)` of the same line per event, on the worker).
//!
//! Run with stderr going somewhere cheap, as a collector that keeps up would:
//! `cargo bench --bench event_log 2>/dev/null` (stdout gets the table; `-- --json` one JSON
//! line). With stderr on a terminal the writer's figure measures the terminal.

use std::io::Write;
use std::time::{Duration, Instant};

use ringtls::telemetry::log::{self, Event, Level};

// The binary's allocator: a line is allocated on the worker and freed on the writer thread,
// which is what allocators differ on.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const EVENTS: u32 = 200_000;
const ROUNDS: usize = 5;

/// A close event shaped like the real one (`proxy::serve_connection`): the same fields, with
/// values of typical length.
fn close_event(i: u32) -> Event {
    Event::connection(Level::Info, "conn.closed")
        .num("worker", 0u64)
        .word("peer", "127.0.0.1:48274")
        .text("client", "ringtls dev client")
        .word("tls", "TLSv1.3")
        .word("cipher", "TLS_AES_128_GCM_SHA256")
        .text("sni", "localhost")
        .text("alpn", "")
        .text("subject", "CN=ringtls dev client")
        .text("issuer", "CN=ringtls dev CA 5d0c1e7a, O=ringtls")
        .word(
            "serial",
            "46:33:ee:03:9a:1b:2c:3d:4e:5f:60:71:82:93:a4:b5:c6:d7:e8:f9",
        )
        .text("sans", "")
        .word(
            "sha256",
            "bf5a7803b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8",
        )
        .word("not_after", "2028-11-28T16:10:59Z")
        .word("path", "userspace")
        .num("up", 25u64)
        .num("down", 25u64)
        .num("spliced", 0u64)
        .num("ms", u64::from(i % 1000))
        .word("reason", "closed")
        .text("detail", "")
}

fn best(mut f: impl FnMut() -> Duration) -> Duration {
    (0..ROUNDS).map(|_| f()).min().unwrap_or_default()
}

fn main() {
    let json = std::env::args().any(|a| a == "--json");
    log::configure(Default::default());

    // The floor: the line built the same way, then one locked write per event on this thread
    // (what every worker did before the queue).
    let mut line_bytes = 0;
    let direct = best(|| {
        let started = Instant::now();
        for i in 0..EVENTS {
            let line = close_event(i).into_line();
            line_bytes = line.len();
            let _ = std::io::stderr().lock().write_all(line.as_bytes());
        }
        started.elapsed()
    });

    // Formatting alone, the part both ways share.
    let format_only = best(|| {
        let started = Instant::now();
        for i in 0..EVENTS {
            std::hint::black_box(close_event(i).into_line());
        }
        started.elapsed()
    });

    // Through the queue: what the worker pays (format + try_send), then how long the writer
    // takes to empty what was queued. The queue holds 4,096 lines, so events are emitted in
    // bursts that fit, and the drain is waited out between them: nothing is dropped.
    const BURST: u32 = 4_000;
    let mut writer_time = Duration::ZERO;
    let queued = best(|| {
        let mut emitting = Duration::ZERO;
        let mut draining = Duration::ZERO;
        let mut i = 0;
        while i < EVENTS {
            let started = Instant::now();
            for _ in 0..BURST {
                close_event(i).emit();
                i += 1;
            }
            let emitted = Instant::now();
            emitting += emitted - started;
            log::flush(Duration::from_secs(10));
            draining += emitted.elapsed();
        }
        writer_time = draining;
        emitting
    });
    let dropped = log::dropped_total();

    // A filtered event (`--log-connections none`, or below `--log-level`): built and thrown
    // away without formatting.
    let filtered = best(|| {
        let started = Instant::now();
        for i in 0..EVENTS {
            std::hint::black_box(Event::debug("conn.closed").num("ms", u64::from(i))).emit();
        }
        started.elapsed()
    });

    let per = |d: Duration| d.as_secs_f64() * 1e6 / f64::from(EVENTS);
    let (direct_us, format_us, queued_us, writer_us, filtered_us) = (
        per(direct),
        per(format_only),
        per(queued),
        per(writer_time),
        per(filtered),
    );
    if json {
        println!(
            "{{\"events\":{EVENTS},\"line_bytes\":{line_bytes},\"direct_write_us\":{direct_us:.3},\
             \"format_us\":{format_us:.3},\"queued_emit_us\":{queued_us:.3},\"writer_us\":{writer_us:.3},\
             \"filtered_us\":{filtered_us:.4},\"dropped\":{dropped}}}"
        );
        return;
    }
    println!("event log budget, one close event ({line_bytes} bytes), best of {ROUNDS} x {EVENTS}");
    println!("  worker, formatted + one write(2) each (old)   {direct_us:8.3} us  1.00x");
    println!(
        "  worker, formatting alone                      {format_us:8.3} us  {:.2}x",
        format_us / direct_us
    );
    println!(
        "  worker, formatted + queued (now)              {queued_us:8.3} us  {:.2}x",
        queued_us / direct_us
    );
    println!(
        "  writer thread, per event, batched             {writer_us:8.3} us  {:.2}x",
        writer_us / direct_us
    );
    println!(
        "  worker, filtered out (--log-connections none) {filtered_us:8.4} us  {:.3}x",
        filtered_us / direct_us
    );
    println!(
        "  at 10,000 connections/s: {:.1} MB/s of log, {:.1}% of one core on the workers",
        f64::from(line_bytes as u32) * 10_000.0 / 1e6,
        queued_us * 10_000.0 / 1e4
    );
    println!("  dropped: {dropped}");
}
