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
use std::sync::{Arc, Mutex, OnceLock};
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

/// One worker's counters of the connections it accepted, before any endpoint is chosen.
#[derive(Debug)]
pub struct WorkerStats {
    pub id: usize,
    driver: OnceLock<&'static str>,
    pub accepted: Counter,
    pub active: Counter,
    /// Connections turned away before an endpoint was chosen (`--max-conns`, an unknown
    /// server name, a ClientHello that never came): `endpoint=""`.
    pub unrouted: ConnStats,
}

impl WorkerStats {
    /// Counters for worker `id`, living as long as the process (workers never end).
    pub fn leak(id: usize) -> &'static WorkerStats {
        Box::leak(Box::new(WorkerStats {
            id,
            driver: OnceLock::new(),
            accepted: Counter::default(),
            active: Counter::default(),
            unrouted: ConnStats::default(),
        }))
    }

    pub fn set_driver(&self, driver: &'static str) {
        let _ = self.driver.set(driver);
    }
}

/// How one endpoint's connections on one worker went (or, `WorkerStats::unrouted`, those of
/// no endpoint yet).
#[derive(Debug, Default)]
pub struct ConnStats {
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
    /// Of the bytes, those spliced (kernel TLS, passthrough): never in user space.
    pub bytes_spliced: Counter,
    pub upstream_failures: Counter,
    closed: [Counter; Close::ALL.len()],
    paths: [Counter; Path::RELAYED.len()],
}

impl ConnStats {
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

/// One endpoint's counters: a `ConnStats` per worker, each written by its worker only. Kept
/// by name for the life of the process, so an endpoint's counters go on across reloads (and
/// a removed endpoint's stay, as Prometheus expects of a counter).
#[derive(Debug)]
pub(crate) struct EndpointStats {
    pub name: Arc<str>,
    workers: Box<[ConnStats]>,
}

impl EndpointStats {
    /// Worker `id`'s counters.
    pub(crate) fn worker(&self, id: usize) -> &ConnStats {
        // Every worker id is below the count the stats were made for (`ControlStats::
        // endpoint`); were one not, sharing the last slot loses updates, never memory safety.
        let last = self.workers.len().saturating_sub(1);
        &self.workers[id.min(last)]
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
pub(crate) struct Expiry {
    /// `server` (a `--crt` chain's soonest) or `ca` (a trust anchor).
    pub role: &'static str,
    pub file: String,
    /// The certificate's place: `#N` in its CA bundle, or the `--crt` pair's number.
    pub index: usize,
    pub subject: String,
    /// Unix seconds.
    pub not_after: i64,
}

/// Counters by a `result` label, written by one thread (the revocation fetcher).
#[derive(Debug)]
pub(crate) struct ByResult<const N: usize> {
    results: [&'static str; N],
    counters: [Counter; N],
}

impl<const N: usize> ByResult<N> {
    const fn new(results: [&'static str; N]) -> ByResult<N> {
        ByResult {
            results,
            counters: [const { Counter(AtomicU64::new(0)) }; N],
        }
    }

    /// Counts one event that ended as `result` (one of the labels given).
    pub(crate) fn count(&self, result: &str) {
        if let Some(i) = self.results.iter().position(|r| *r == result) {
            self.counters[i].add(1);
        }
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        header(out, name, "counter", help);
        for (result, counter) in self.results.iter().zip(&self.counters) {
            let _ = writeln!(out, "{name}{{result=\"{result}\"}} {}", counter.get());
        }
    }
}

/// OCSP requests for client certificates (`revocation::fetcher`).
pub(crate) static OCSP_REQUESTS: ByResult<6> = ByResult::new([
    "good",
    "revoked",
    "unknown",
    "unreachable",
    "timeout",
    "invalid",
]);
/// Client certificates the OCSP answer cache holds.
pub(crate) static OCSP_CACHE_ENTRIES: Gauge = Gauge(AtomicU64::new(0));
/// CRL fetches from distribution points (`--crl-fetch`).
pub(crate) static CRL_FETCHES: ByResult<4> =
    ByResult::new(["ok", "unreachable", "timeout", "invalid"]);

/// A value set by any thread.
#[derive(Debug, Default)]
pub(crate) struct Gauge(AtomicU64);

impl Gauge {
    pub(crate) fn set(&self, value: u64) {
        self.0.store(value, Ordering::Relaxed);
    }

    fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A CRL's nextUpdate, for `ringtls_crl_next_update_seconds`.
#[derive(Debug, Clone)]
pub(crate) struct CrlExpiry {
    pub endpoint: String,
    pub issuer: String,
    /// `file` (`--crl`); fetched CRLs will say `fetched`.
    pub source: &'static str,
    pub file: String,
    pub index: usize,
    /// Unix seconds.
    pub next_update: i64,
}

/// The control plane's state, written by the control thread, read by the scraper.
#[derive(Debug, Default)]
pub(crate) struct ControlStats {
    reloads: [AtomicU64; ReloadResult::ALL.len()],
    generation: AtomicU64,
    draining: AtomicBool,
    expiries: Mutex<Vec<Expiry>>,
    crls: Mutex<Vec<CrlExpiry>>,
    /// Every endpoint there has been, in order of first appearance.
    endpoints: Mutex<Vec<Arc<EndpointStats>>>,
    /// `--ready-requires-upstream`: why the upstreams are not ready.
    upstream_unready: Mutex<Option<String>>,
}

impl ControlStats {
    /// The control plane lives as long as the process.
    pub(crate) fn leak() -> &'static ControlStats {
        Box::leak(Box::default())
    }

    pub(crate) fn count_reload(&self, result: ReloadResult) {
        self.reloads[result as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Records the generation now in force and the expiries of its certificates.
    pub(crate) fn set_generation(&self, id: u64, expiries: Vec<Expiry>, crls: Vec<CrlExpiry>) {
        self.generation.store(id, Ordering::Relaxed);
        if let Ok(mut e) = self.expiries.lock() {
            *e = expiries;
        }
        if let Ok(mut c) = self.crls.lock() {
            *c = crls;
        }
    }

    /// The counters of the endpoint `name`, made for `workers` workers on its first use.
    pub(crate) fn endpoint(&self, name: &Arc<str>, workers: usize) -> Arc<EndpointStats> {
        let mut all = self.endpoints.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(found) = all.iter().find(|e| e.name == *name) {
            return Arc::clone(found);
        }
        let made = Arc::new(EndpointStats {
            name: Arc::clone(name),
            workers: (0..workers.max(1)).map(|_| ConnStats::default()).collect(),
        });
        all.push(Arc::clone(&made));
        made
    }

    /// `--ready-requires-upstream`: why `/readyz` is 503, or `None` when the upstreams answer.
    pub(crate) fn set_upstream_unready(&self, why: Option<String>) {
        if let Ok(mut slot) = self.upstream_unready.lock() {
            *slot = why;
        }
    }

    pub(crate) fn upstream_unready(&self) -> Option<String> {
        self.upstream_unready.lock().ok().and_then(|s| s.clone())
    }

    pub(crate) fn set_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    pub(crate) fn draining(&self) -> bool {
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
    OCSP_REQUESTS.render(
        out,
        "ringtls_ocsp_requests_total",
        "OCSP requests for client certificates by result: the status a valid answer gave, or why there was none.",
    );
    single(
        out,
        "ringtls_ocsp_cache_entries",
        "gauge",
        "Client certificates the OCSP answer cache holds.",
        OCSP_CACHE_ENTRIES.get(),
    );
    CRL_FETCHES.render(
        out,
        "ringtls_crl_fetches_total",
        "CRL fetches from distribution points (--crl-fetch) by result.",
    );
    header(
        out,
        "ringtls_crl_next_update_seconds",
        "gauge",
        "Seconds until each CRL's nextUpdate (negative once stale: --stale-crl says what that means).",
    );
    if let Ok(crls) = control.crls.lock() {
        for c in crls.iter() {
            let _ = writeln!(
                out,
                "ringtls_crl_next_update_seconds{{endpoint=\"{}\",issuer=\"{}\",source=\"{}\",file=\"{}\",index=\"{}\"}} {}",
                label(&c.endpoint),
                label(&c.issuer),
                c.source,
                label(&c.file),
                c.index,
                c.next_update.saturating_sub(now)
            );
        }
    }
}

/// Renders every worker's counters, summed, and the control plane's state, in the Prometheus
/// text exposition format 0.0.4. The connection series carry `endpoint` (last, so a prefix
/// of the labels still selects them): `""` for clients turned away before one was chosen.
pub(crate) fn render(workers: &[&'static WorkerStats], control: &ControlStats) -> String {
    let sum = |f: &dyn Fn(&WorkerStats) -> u64| workers.iter().map(|w| f(w)).sum::<u64>();
    let endpoints: Vec<Arc<EndpointStats>> = control
        .endpoints
        .lock()
        .map(|e| e.clone())
        .unwrap_or_default();
    // Each group: an endpoint's label value and its counters on every worker.
    let mut groups: Vec<(String, Vec<&ConnStats>)> =
        vec![(String::new(), workers.iter().map(|w| &w.unrouted).collect())];
    groups.extend(
        endpoints
            .iter()
            .map(|e| (label(&e.name), e.workers.iter().collect())),
    );
    let per = |conns: &[&ConnStats], f: &dyn Fn(&ConnStats) -> u64| -> u64 {
        conns.iter().map(|c| f(c)).sum()
    };
    let mut buf = String::with_capacity(4096 + 2048 * groups.len());
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
    header(
        out,
        "ringtls_upstream_connect_failures_total",
        "counter",
        "Handshakes that succeeded but whose upstream could not be reached.",
    );
    for (endpoint, conns) in &groups {
        let _ = writeln!(
            out,
            "ringtls_upstream_connect_failures_total{{endpoint=\"{endpoint}\"}} {}",
            per(conns, &|c| c.upstream_failures.get())
        );
    }
    header(
        out,
        "ringtls_handshakes_total",
        "counter",
        "Handshakes by result (ok, unverified: completed without checking the client's chain, rejected) and, for rejections, reason (upstream_unreachable counts clients turned away after a good handshake).",
    );
    for (endpoint, conns) in &groups {
        let _ = writeln!(
            out,
            "ringtls_handshakes_total{{result=\"ok\",reason=\"\",endpoint=\"{endpoint}\"}} {}\nringtls_handshakes_total{{result=\"unverified\",reason=\"\",endpoint=\"{endpoint}\"}} {}",
            per(conns, &|c| c.handshakes_ok.get()),
            per(conns, &|c| c.handshakes_unverified.get())
        );
        for reason in Reject::ALL {
            let _ = writeln!(
                out,
                "ringtls_handshakes_total{{result=\"rejected\",reason=\"{}\",endpoint=\"{endpoint}\"}} {}",
                reason.as_str(),
                per(conns, &|c| c.rejected[reason as usize].get())
            );
        }
    }
    header(
        out,
        "ringtls_handshake_duration_seconds",
        "histogram",
        "Time from accept to a completed handshake.",
    );
    for (endpoint, conns) in &groups {
        let mut cumulative = 0;
        for (i, le) in BUCKETS.iter().enumerate() {
            cumulative += per(conns, &|c| c.handshake_buckets[i].get());
            let _ = writeln!(
                out,
                "ringtls_handshake_duration_seconds_bucket{{le=\"{le}\",endpoint=\"{endpoint}\"}} {cumulative}"
            );
        }
        let count = per(conns, &|c| c.handshake_count.get());
        let _ = writeln!(
            out,
            "ringtls_handshake_duration_seconds_bucket{{le=\"+Inf\",endpoint=\"{endpoint}\"}} {count}\nringtls_handshake_duration_seconds_sum{{endpoint=\"{endpoint}\"}} {}\nringtls_handshake_duration_seconds_count{{endpoint=\"{endpoint}\"}} {count}",
            per(conns, &|c| c.handshake_micros.get()) as f64 / 1e6
        );
    }
    header(
        out,
        "ringtls_bytes_total",
        "counter",
        "Bytes relayed, by direction (plaintext; TLS records on a passthrough endpoint).",
    );
    for (endpoint, conns) in &groups {
        let _ = writeln!(
            out,
            "ringtls_bytes_total{{direction=\"up\",endpoint=\"{endpoint}\"}} {}\nringtls_bytes_total{{direction=\"down\",endpoint=\"{endpoint}\"}} {}",
            per(conns, &|c| c.bytes_up.get()),
            per(conns, &|c| c.bytes_down.get())
        );
    }
    header(
        out,
        "ringtls_bytes_spliced_total",
        "counter",
        "Bytes moved by splice(2), never in user space (part of ringtls_bytes_total): upstream to client on the kernel-TLS path, both ways on a passthrough endpoint.",
    );
    for (endpoint, conns) in &groups {
        let _ = writeln!(
            out,
            "ringtls_bytes_spliced_total{{endpoint=\"{endpoint}\"}} {}",
            per(conns, &|c| c.bytes_spliced.get())
        );
    }
    header(
        out,
        "ringtls_connections_closed_total",
        "counter",
        "Established connections that ended, by reason (closed = both sides finished cleanly).",
    );
    for (endpoint, conns) in &groups {
        for reason in Close::ALL {
            let _ = writeln!(
                out,
                "ringtls_connections_closed_total{{reason=\"{}\",endpoint=\"{endpoint}\"}} {}",
                reason.as_str(),
                per(conns, &|c| c.closed[reason as usize].get())
            );
        }
    }
    header(
        out,
        "ringtls_connections_by_path_total",
        "counter",
        "Established connections by data path: rustls in user space, kernel TLS (--ktls), or passed through.",
    );
    for (endpoint, conns) in &groups {
        for path in Path::RELAYED {
            let _ = writeln!(
                out,
                "ringtls_connections_by_path_total{{path=\"{}\",endpoint=\"{endpoint}\"}} {}",
                path.as_str(),
                per(conns, &|c| c.paths[path as usize].get())
            );
        }
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
