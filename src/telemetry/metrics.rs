//! Metrics: per-worker counters, summed when scraped, and the control plane's state (reloads,
//! configuration generation, certificate expiry, draining), rendered in the Prometheus text
//! format for the listener in `telemetry::http` (`--metrics ADDR`: `/metrics`, `/healthz`,
//! `/readyz`), whose thread never touches the workers' event loops.
//!
//! Each counter has exactly one writer, its worker, so an update is a relaxed load and store on
//! a cache line no other worker writes: no lock and no contended atomic on the data path. The
//! scraping thread only reads, and may see a value a few updates old.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use crate::outcome::{Close, Path, Reject};

/// A counter written by one thread only.
#[derive(Default, Debug)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn add(&self, n: u64) {
        // Single writer: a plain read-modify-write, no lock prefix needed.
        self.0.store(
            self.0.load(Ordering::Relaxed).wrapping_add(n),
            Ordering::Relaxed,
        );
    }

    pub fn sub(&self, n: u64) {
        self.0.store(
            self.0.load(Ordering::Relaxed).wrapping_sub(n),
            Ordering::Relaxed,
        );
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Upper bounds of the handshake-duration histogram, in seconds.
const BUCKETS: [f64; 10] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 2.5,
];

/// One worker's counters.
#[derive(Debug)]
pub struct WorkerStats {
    pub id: usize,
    driver: OnceLock<&'static str>,
    pub accepted: Counter,
    pub active: Counter,
    pub handshakes_ok: Counter,
    /// Completed handshakes whose client certificate was not verified (`--client-auth
    /// require-any` or `request`).
    pub handshakes_unverified: Counter,
    rejected: [Counter; Reject::ALL.len()],
    handshake_buckets: [Counter; BUCKETS.len()],
    handshake_count: Counter,
    handshake_micros: Counter,
    pub bytes_up: Counter,
    pub bytes_down: Counter,
    /// Of `bytes_down`, those spliced (kernel TLS): never in user space.
    pub bytes_spliced: Counter,
    pub upstream_failures: Counter,
    closed: [Counter; Close::ALL.len()],
    paths: [Counter; Path::RELAYED.len()],
}

impl WorkerStats {
    /// Counters for worker `id`, living as long as the process (workers never end).
    pub fn leak(id: usize) -> &'static WorkerStats {
        Box::leak(Box::new(WorkerStats {
            id,
            driver: OnceLock::new(),
            accepted: Counter::default(),
            active: Counter::default(),
            handshakes_ok: Counter::default(),
            handshakes_unverified: Counter::default(),
            rejected: Default::default(),
            handshake_buckets: Default::default(),
            handshake_count: Counter::default(),
            handshake_micros: Counter::default(),
            bytes_up: Counter::default(),
            bytes_down: Counter::default(),
            bytes_spliced: Counter::default(),
            upstream_failures: Counter::default(),
            closed: Default::default(),
            paths: Default::default(),
        }))
    }

    pub fn set_driver(&self, driver: &'static str) {
        let _ = self.driver.set(driver);
    }

    /// Counts an established connection by the data path that carries it.
    pub fn count_path(&self, path: Path) {
        if let Some(counter) = self.paths.get(path as usize) {
            counter.add(1);
        }
    }

    /// Counts an established connection's end, by its close-event reason.
    pub fn count_close(&self, reason: Close) {
        self.closed[reason as usize].add(1);
    }

    pub fn reject(&self, reason: Reject) {
        self.rejected[reason as usize].add(1);
    }

    /// Records a completed handshake's duration; `verified` unless the endpoint's strategy
    /// leaves client certificates unchecked.
    pub fn handshake_done(&self, took: Duration, verified: bool) {
        match verified {
            true => self.handshakes_ok.add(1),
            false => self.handshakes_unverified.add(1),
        }
        self.handshake_count.add(1);
        self.handshake_micros.add(took.as_micros() as u64);
        let secs = took.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|&le| secs <= le) {
            self.handshake_buckets[i].add(1);
        }
    }
}

/// How a reload ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadResult {
    /// A new configuration generation is in force.
    Ok,
    /// The new files were refused; the old configuration goes on.
    Failed,
    /// Nothing changed; nothing was swapped.
    Unchanged,
}

impl ReloadResult {
    pub const ALL: [ReloadResult; 3] = [
        ReloadResult::Ok,
        ReloadResult::Failed,
        ReloadResult::Unchanged,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ReloadResult::Ok => "ok",
            ReloadResult::Failed => "failed",
            ReloadResult::Unchanged => "unchanged",
        }
    }
}

/// A certificate whose expiry is exported.
#[derive(Debug, Clone)]
pub struct Expiry {
    /// `server` (a `--crt` chain's soonest) or `ca` (a trust anchor).
    pub role: &'static str,
    pub file: String,
    /// The certificate's place: `#N` in its CA bundle, or the `--crt` pair's number.
    pub index: usize,
    pub subject: String,
    /// Unix seconds.
    pub not_after: i64,
}

/// The control plane's state, written by the control thread, read by the scraper.
#[derive(Debug, Default)]
pub struct ControlStats {
    reloads: [AtomicU64; ReloadResult::ALL.len()],
    generation: AtomicU64,
    draining: AtomicBool,
    expiries: Mutex<Vec<Expiry>>,
}

impl ControlStats {
    /// The control plane lives as long as the process.
    pub fn leak() -> &'static ControlStats {
        Box::leak(Box::default())
    }

    pub fn count_reload(&self, result: ReloadResult) {
        self.reloads[result as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Records the generation now in force and the expiries of its certificates.
    pub fn set_generation(&self, id: u64, expiries: Vec<Expiry>) {
        self.generation.store(id, Ordering::Relaxed);
        if let Ok(mut e) = self.expiries.lock() {
            *e = expiries;
        }
    }

    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }
}

/// A Prometheus label value, escaped (text format 0.0.4: backslash, quote, newline).
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The `# HELP` and `# TYPE` lines of a metric family. (Writing into a String cannot fail;
/// results are ignored throughout.)
fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// A metric family of one unlabelled sample.
fn single(out: &mut String, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
    header(out, name, kind, help);
    let _ = writeln!(out, "{name} {value}");
}

/// Renders the control plane's state.
fn render_control(control: &ControlStats, out: &mut String) {
    single(
        out,
        "ringtls_log_events_dropped_total",
        "counter",
        "Event lines dropped because stderr did not take them in time.",
        super::log::dropped_total(),
    );
    header(
        out,
        "ringtls_reloads_total",
        "counter",
        "Configuration reloads (SIGHUP or --watch) by result.",
    );
    for result in ReloadResult::ALL {
        let _ = writeln!(
            out,
            "ringtls_reloads_total{{result=\"{}\"}} {}",
            result.as_str(),
            control.reloads[result as usize].load(Ordering::Relaxed)
        );
    }
    single(
        out,
        "ringtls_config_generation",
        "gauge",
        "The configuration in force: 1 at start, +1 per successful reload.",
        control.generation.load(Ordering::Relaxed),
    );
    single(
        out,
        "ringtls_draining",
        "gauge",
        "1 once SIGTERM/SIGINT started the drain.",
        u8::from(control.draining()),
    );
    header(
        out,
        "ringtls_certificate_expiry_seconds",
        "gauge",
        "Seconds until notAfter (negative once past): each server chain's soonest, and each CA.",
    );
    let now = crate::tls::x509::now_unix();
    if let Ok(expiries) = control.expiries.lock() {
        for e in expiries.iter() {
            let _ = writeln!(
                out,
                "ringtls_certificate_expiry_seconds{{role=\"{}\",file=\"{}\",index=\"{}\",subject=\"{}\"}} {}",
                e.role,
                label(&e.file),
                e.index,
                label(&e.subject),
                e.not_after.saturating_sub(now)
            );
        }
    }
}

/// Renders every worker's counters, summed, and the control plane's state, in the Prometheus
/// text exposition format 0.0.4.
pub(crate) fn render(workers: &[&'static WorkerStats], control: &ControlStats) -> String {
    let sum = |f: &dyn Fn(&WorkerStats) -> u64| workers.iter().map(|w| f(w)).sum::<u64>();
    let mut buf = String::with_capacity(4096);
    let out = &mut buf;
    single(
        out,
        "ringtls_connections_accepted_total",
        "counter",
        "TCP connections accepted.",
        sum(&|w| w.accepted.get()),
    );
    single(
        out,
        "ringtls_connections_active",
        "gauge",
        "Connections being served now.",
        sum(&|w| w.active.get()),
    );
    single(
        out,
        "ringtls_upstream_connect_failures_total",
        "counter",
        "Handshakes that succeeded but whose upstream could not be reached.",
        sum(&|w| w.upstream_failures.get()),
    );
    header(
        out,
        "ringtls_handshakes_total",
        "counter",
        "Handshakes by result and, for rejections, reason (upstream_unreachable counts clients turned away after a good handshake).",
    );
    let _ = writeln!(
        out,
        "ringtls_handshakes_total{{result=\"ok\",reason=\"\"}} {}",
        sum(&|w| w.handshakes_ok.get())
    );
    let _ = writeln!(
        out,
        "ringtls_handshakes_total{{result=\"unverified\",reason=\"\"}} {}",
        sum(&|w| w.handshakes_unverified.get())
    );
    for reason in Reject::ALL {
        let _ = writeln!(
            out,
            "ringtls_handshakes_total{{result=\"rejected\",reason=\"{}\"}} {}",
            reason.as_str(),
            sum(&|w| w.rejected[reason as usize].get())
        );
    }
    header(
        out,
        "ringtls_handshake_duration_seconds",
        "histogram",
        "Time from accept to a completed handshake.",
    );
    let mut cumulative = 0;
    for (i, le) in BUCKETS.iter().enumerate() {
        cumulative += sum(&|w| w.handshake_buckets[i].get());
        let _ = writeln!(
            out,
            "ringtls_handshake_duration_seconds_bucket{{le=\"{le}\"}} {cumulative}"
        );
    }
    let count = sum(&|w| w.handshake_count.get());
    let _ = writeln!(
        out,
        "ringtls_handshake_duration_seconds_bucket{{le=\"+Inf\"}} {count}\nringtls_handshake_duration_seconds_sum {}\nringtls_handshake_duration_seconds_count {count}",
        sum(&|w| w.handshake_micros.get()) as f64 / 1e6
    );
    header(
        out,
        "ringtls_bytes_total",
        "counter",
        "Plaintext bytes relayed, by direction.",
    );
    let _ = writeln!(
        out,
        "ringtls_bytes_total{{direction=\"up\"}} {}\nringtls_bytes_total{{direction=\"down\"}} {}",
        sum(&|w| w.bytes_up.get()),
        sum(&|w| w.bytes_down.get())
    );
    single(
        out,
        "ringtls_bytes_spliced_total",
        "counter",
        "Plaintext bytes upstream to client moved by splice(2) on the kernel-TLS path, never in user space (part of ringtls_bytes_total down).",
        sum(&|w| w.bytes_spliced.get()),
    );
    header(
        out,
        "ringtls_connections_closed_total",
        "counter",
        "Established connections that ended, by reason (closed = both sides finished cleanly).",
    );
    for reason in Close::ALL {
        let _ = writeln!(
            out,
            "ringtls_connections_closed_total{{reason=\"{}\"}} {}",
            reason.as_str(),
            sum(&|w| w.closed[reason as usize].get())
        );
    }
    header(
        out,
        "ringtls_connections_by_path_total",
        "counter",
        "Established connections by data path: rustls in user space, or kernel TLS (--ktls).",
    );
    for path in Path::RELAYED {
        let _ = writeln!(
            out,
            "ringtls_connections_by_path_total{{path=\"{}\"}} {}",
            path.as_str(),
            sum(&|w| w.paths[path as usize].get())
        );
    }
    header(
        out,
        "ringtls_worker_info",
        "gauge",
        "Each worker and the I/O driver it runs.",
    );
    for w in workers {
        let _ = writeln!(
            out,
            "ringtls_worker_info{{worker=\"{}\",driver=\"{}\"}} 1",
            w.id,
            w.driver.get().copied().unwrap_or("starting")
        );
    }
    render_control(control, out);
    buf
}
