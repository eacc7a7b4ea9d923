//! `ringtls load`: an mTLS load generator. No Debian tool offers one (h2load, wrk and hey have no
//! client-certificate option; `openssl s_time` runs one connection at a time), and the benchmark
//! needs the same client against every terminator.
//!
//! Each load thread runs its own monoio runtime with its share of the connections; the threads'
//! statistics are merged at the end. Modes: `handshake` (new connection and full handshake,
//! confirmed by one read), `bulk-up` / `bulk-down` (stream bytes to / from the upstream), `echo`
//! (request/response round trips, optionally paced at a fixed rate), `idle` (hold connections).

mod client;
mod plan;
pub mod stats;

pub use plan::load_plan;

use std::cell::RefCell;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use monoio::{FusionDriver, RuntimeBuilder};
use rustls::client::Resumption;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};

use crate::error::Error;
use crate::tls::verify_cache::CachingServerVerifier;
use client::{Failure, TlsClient};
use stats::{FailureLimit, RunInfo, Stats};

/// Load modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Handshake,
    BulkUp,
    BulkDown,
    Echo,
    Idle,
}

impl Mode {
    pub fn parse(s: &str) -> Result<Mode, Error> {
        Ok(match s {
            "handshake" => Mode::Handshake,
            "bulk-up" => Mode::BulkUp,
            "bulk-down" => Mode::BulkDown,
            "echo" => Mode::Echo,
            "idle" => Mode::Idle,
            _ => {
                return Err(Error::Usage(format!(
                    "--mode {s}: expected handshake, bulk-up, bulk-down, echo or idle"
                )));
            }
        })
    }

    fn name(self) -> &'static str {
        match self {
            Mode::Handshake => "handshake",
            Mode::BulkUp => "bulk-up",
            Mode::BulkDown => "bulk-down",
            Mode::Echo => "echo",
            Mode::Idle => "idle",
        }
    }
}

/// Client credentials and TLS choices.
pub struct ClientTls {
    pub ca: PathBuf,
    pub crt: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub resume: bool,
    /// `Some(13)` or `Some(12)` pins a version.
    pub version: Option<u8>,
    /// Key-exchange group name as rustls spells it (`X25519`, `secp256r1`, `X25519MLKEM768`).
    pub group: Option<String>,
}

/// A validated load run.
pub struct LoadPlan {
    pub connect: SocketAddr,
    pub server_name: ServerName<'static>,
    pub tls: ClientTls,
    pub mode: Mode,
    pub concurrency: usize,
    pub duration: Duration,
    pub bytes: u64,
    pub size: usize,
    /// Total round trips per second for `echo`, across all connections.
    pub rate: Option<u64>,
    pub threads: usize,
    pub json: bool,
    /// `--max-failures`: past it the run is an error, after the report is printed.
    pub max_failures: FailureLimit,
}

/// Builds the rustls client configuration from the plan's files.
pub fn client_config(tls: &ClientTls) -> Result<Arc<ClientConfig>, Error> {
    let bad = |flag: &str, path: &PathBuf, e: &dyn std::fmt::Display| {
        Error::Config(format!("{flag} {}: {e}", path.display()))
    };
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&tls.ca).map_err(|e| bad("--ca", &tls.ca, &e))? {
        let cert = cert.map_err(|e| bad("--ca", &tls.ca, &e))?;
        roots.add(cert).map_err(|e| bad("--ca", &tls.ca, &e))?;
    }
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    if let Some(group) = &tls.group {
        provider
            .kx_groups
            .retain(|g| format!("{:?}", g.name()).eq_ignore_ascii_case(group));
        if provider.kx_groups.is_empty() {
            return Err(Error::Usage(format!(
                "--group {group}: expected X25519, secp256r1, secp384r1 or X25519MLKEM768"
            )));
        }
    }
    let versions: &[&rustls::SupportedProtocolVersion] = match tls.version {
        Some(12) => &[&rustls::version::TLS12],
        Some(13) => &[&rustls::version::TLS13],
        _ => &[&rustls::version::TLS13, &rustls::version::TLS12],
    };
    let provider = Arc::new(provider);
    let server_verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .map_err(|e| bad("--ca", &tls.ca, &e))?;
    let builder = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .map_err(|e| Error::Config(format!("client TLS: {e}")))?
        .dangerous()
        // The same verification, remembered per load thread: see `CachingServerVerifier`.
        .with_custom_certificate_verifier(CachingServerVerifier::new(server_verifier));
    let mut config = match (&tls.crt, &tls.key) {
        (Some(crt), Some(key)) => {
            let chain = CertificateDer::pem_file_iter(crt)
                .map_err(|e| bad("--crt", crt, &e))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| bad("--crt", crt, &e))?;
            let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| bad("--key", key, &e))?;
            builder
                .with_client_auth_cert(chain, key_der)
                .map_err(|e| bad("--key", key, &e))?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => return Err(Error::Usage("--crt and --key go together".into())),
    };
    if !tls.resume {
        config.resumption = Resumption::disabled();
    }
    Ok(Arc::new(config))
}

/// Progress shared with the main thread's progress line.
#[derive(Default)]
struct Progress {
    ok: AtomicU64,
    failed: AtomicU64,
    bytes: AtomicU64,
}

/// Runs the load and prints its report; returns the merged statistics, or an error (after the
/// report) when the failures exceed `--max-failures`.
pub fn run_load(plan: LoadPlan) -> Result<Stats, Error> {
    let config = client_config(&plan.tls)?;
    let plan = Arc::new(plan);
    let progress = Arc::new(Progress::default());
    let started = Instant::now();
    let deadline = started + plan.duration;
    let threads = plan.threads.clamp(1, plan.concurrency.max(1));
    let mut handles = Vec::new();
    for t in 0..threads {
        let share = plan.concurrency / threads + usize::from(t < plan.concurrency % threads);
        let plan = plan.clone();
        let config = config.clone();
        let progress = progress.clone();
        let handle = std::thread::Builder::new()
            .name(format!("ringtls-load{t}"))
            .spawn(move || load_thread(plan, config, share, deadline, progress))
            .map_err(Error::io("cannot start a load thread"))?;
        handles.push(handle);
    }
    let show_progress = plan.duration >= Duration::from_secs(3);
    let mut last = Instant::now();
    while handles.iter().any(|h| !h.is_finished()) {
        std::thread::park_timeout(Duration::from_millis(100));
        if show_progress && last.elapsed() >= Duration::from_secs(1) {
            last = Instant::now();
            eprintln!(
                "load: {:>5.1}s ok {} failed {} bytes {}",
                started.elapsed().as_secs_f64(),
                progress.ok.load(Ordering::Relaxed),
                progress.failed.load(Ordering::Relaxed),
                progress.bytes.load(Ordering::Relaxed)
            );
        }
    }
    let mut total = Stats::default();
    for handle in handles {
        match handle.join() {
            Ok(Ok(stats)) => total.merge(&stats),
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(Error::Runtime("a load thread panicked".into())),
        }
    }
    let info = RunInfo {
        mode: plan.mode.name(),
        concurrency: plan.concurrency,
        threads,
        elapsed: started.elapsed(),
    };
    if plan.json {
        println!("{}", stats::to_json(&info, &total));
    } else {
        print!("{}", stats::to_text(&info, &total));
    }
    match plan.max_failures.exceeded(&total) {
        Some(why) => Err(Error::Runtime(format!("load: {why}"))),
        None => Ok(total),
    }
}

fn load_thread(
    plan: Arc<LoadPlan>,
    config: Arc<ClientConfig>,
    connections: usize,
    deadline: Instant,
    progress: Arc<Progress>,
) -> Result<Stats, Error> {
    let mut runtime = RuntimeBuilder::<FusionDriver>::new()
        .enable_timer()
        .build()
        .map_err(Error::io("cannot build a load runtime"))?;
    // Each thread gets its own session cache (no cross-thread lock on the resumption store).
    let config = Arc::new((*config).clone());
    let stats = Rc::new(RefCell::new(Stats::default()));
    runtime.block_on(async {
        let mut tasks = Vec::with_capacity(connections);
        for i in 0..connections {
            let ctx = TaskCtx {
                plan: plan.clone(),
                config: config.clone(),
                stats: stats.clone(),
                progress: progress.clone(),
                deadline,
                index: i,
                per_thread: connections,
            };
            tasks.push(monoio::spawn(run_task(ctx)));
        }
        for t in tasks {
            t.await;
        }
    });
    Ok(stats.take())
}

struct TaskCtx {
    plan: Arc<LoadPlan>,
    config: Arc<ClientConfig>,
    stats: Rc<RefCell<Stats>>,
    progress: Arc<Progress>,
    deadline: Instant,
    index: usize,
    per_thread: usize,
}

impl TaskCtx {
    fn ok(&self, latency: Duration, resumed: bool) {
        let mut s = self.stats.borrow_mut();
        s.record_ok(latency);
        s.resumed += u64::from(resumed);
        self.progress.ok.fetch_add(1, Ordering::Relaxed);
    }

    fn fail(&self, f: &Failure) {
        self.stats.borrow_mut().record_failure(f.label());
        self.progress.failed.fetch_add(1, Ordering::Relaxed);
    }

    fn bytes(&self, n: u64) {
        self.stats.borrow_mut().bytes += n;
        self.progress.bytes.fetch_add(n, Ordering::Relaxed);
    }

    async fn connect(&self) -> Result<TlsClient, Failure> {
        let connect = async {
            let mut c = TlsClient::connect(
                self.plan.connect,
                self.config.clone(),
                self.plan.server_name.clone(),
            )
            .await?;
            c.confirm(Duration::from_secs(5)).await?;
            Ok(c)
        };
        match monoio::time::timeout(Duration::from_secs(10), connect).await {
            Ok(res) => res,
            Err(_) => Err(Failure::Timeout),
        }
    }

    fn time_left(&self) -> bool {
        Instant::now() < self.deadline
    }
}

const CLOSE_WAIT: Duration = Duration::from_millis(200);

async fn run_task(ctx: TaskCtx) {
    match ctx.plan.mode {
        Mode::Handshake => handshakes(&ctx).await,
        Mode::BulkUp => bulk(&ctx, true).await,
        Mode::BulkDown => bulk(&ctx, false).await,
        Mode::Echo => echo(&ctx).await,
        Mode::Idle => idle(&ctx).await,
    }
}

async fn handshakes(ctx: &TaskCtx) {
    while ctx.time_left() {
        let t0 = Instant::now();
        match ctx.connect().await {
            Ok(c) => {
                ctx.ok(t0.elapsed(), c.resumed());
                c.close(CLOSE_WAIT).await;
            }
            Err(f) => ctx.fail(&f),
        }
    }
}

/// `bulk-up` (`upload`) or `bulk-down`: per connection, move `--bytes` one way, then reconnect.
async fn bulk(ctx: &TaskCtx, upload: bool) {
    let chunk = vec![0x5au8; 64 * 1024];
    while ctx.time_left() {
        let t0 = Instant::now();
        let mut c = match ctx.connect().await {
            Ok(c) => c,
            Err(f) => {
                ctx.fail(&f);
                continue;
            }
        };
        let mut moved = 0u64;
        let result = loop {
            if moved >= ctx.plan.bytes || !ctx.time_left() {
                break Ok(());
            }
            let step = if upload {
                let n = (ctx.plan.bytes - moved).min(chunk.len() as u64) as usize;
                c.send(&chunk[..n]).await.map(|()| n as u64)
            } else {
                c.fill(1).await.map(|()| {
                    let n = c.plain.len() as u64;
                    c.plain.clear();
                    n
                })
            };
            match step {
                Ok(n) => {
                    moved += n;
                    ctx.bytes(n);
                }
                Err(f) => break Err(f),
            }
        };
        match result {
            Err(f) => ctx.fail(&f),
            Ok(()) => {
                ctx.ok(t0.elapsed(), c.resumed());
                c.close(CLOSE_WAIT).await;
            }
        }
    }
}

async fn echo(ctx: &TaskCtx) {
    let mut c = match ctx.connect().await {
        Ok(c) => c,
        Err(f) => return ctx.fail(&f),
    };
    let message = vec![0x42u8; ctx.plan.size.max(1)];
    // Pacing: each connection sends at rate / concurrency per second, staggered so that the
    // connections do not fire together.
    let interval = ctx
        .plan
        .rate
        .map(|r| Duration::from_secs_f64(ctx.plan.concurrency as f64 / r.max(1) as f64));
    let start = Instant::now()
        + interval.map_or(Duration::ZERO, |i| {
            i.mul_f64(ctx.index as f64 / ctx.per_thread.max(1) as f64)
        });
    let mut k: u32 = 0;
    while ctx.time_left() {
        let scheduled = match interval {
            Some(i) => {
                let at = start + i * k;
                k = k.saturating_add(1);
                let now = Instant::now();
                if at > now {
                    // On time: the previous reply came before this send was due. Our own timer
                    // wakes up to a millisecond late (monoio's wheel ticks in ms); that delay is
                    // the load generator's, so the clock starts at the actual send.
                    monoio::time::sleep(at - now).await;
                    Instant::now()
                } else {
                    // Behind schedule because the server was slow: the wait counts, so a stall
                    // is not hidden by sending fewer requests (no coordinated omission).
                    at
                }
            }
            None => Instant::now(),
        };
        let round_trip = async {
            c.send(&message).await?;
            c.fill(message.len()).await?;
            c.plain.drain(..message.len());
            Ok::<(), Failure>(())
        };
        match round_trip.await {
            Ok(()) => {
                ctx.ok(scheduled.elapsed(), false);
                ctx.bytes(message.len() as u64);
            }
            Err(f) => return ctx.fail(&f),
        }
    }
    c.close(CLOSE_WAIT).await;
}

async fn idle(ctx: &TaskCtx) {
    let t0 = Instant::now();
    let c = match ctx.connect().await {
        Ok(c) => c,
        Err(f) => return ctx.fail(&f),
    };
    ctx.ok(t0.elapsed(), c.resumed());
    let left = ctx.deadline.saturating_duration_since(Instant::now());
    monoio::time::sleep(left).await;
    c.close(CLOSE_WAIT).await;
}
