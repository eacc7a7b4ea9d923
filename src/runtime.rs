//! Workers: one OS thread per core, pinned with core_affinity, each running its own monoio
//! runtime (io_uring, or epoll where io_uring is unavailable or `MONOIO_FORCE_LEGACY_DRIVER=1`)
//! over its own SO_REUSEPORT listeners (or its duplicates of the sockets passed by socket
//! activation). The kernel spreads connections across the workers; a
//! connection lives and dies on the worker that accepted it, so nothing on the per-connection
//! path is shared mutably between threads.

use std::any::Any;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::mpsc;
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use monoio::{FusionDriver, FusionRuntime, RuntimeBuilder};

use crate::listen::{self, BindError, ShareError};
use crate::proxy::{self, Settings, reason::Reject};
use crate::telemetry::log::Event;
use crate::telemetry::metrics::WorkerStats;

/// How the serving part is shaped, beyond the TLS material.
pub struct WorkerPlan {
    pub sockets: Sockets,
    pub threads: usize,
    /// Total connection limit, split evenly across workers.
    pub max_conns: Option<usize>,
}

/// Where the workers accept.
pub enum Sockets {
    /// Bind these addresses (`--listen`), one socket per worker each.
    Bind(Vec<SocketAddr>),
    /// Share these already-listening sockets (socket activation) among all workers.
    Passed(Vec<(SocketAddr, std::net::TcpListener)>),
}

/// A failure to start serving.
#[derive(Debug)]
pub enum StartError {
    Bind(BindError),
    Share(ShareError),
    Worker { worker: usize, source: io::Error },
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Bind(e) => e.fmt(f),
            StartError::Share(e) => e.fmt(f),
            StartError::Worker { worker, source } => {
                write!(f, "worker {worker} could not start: {source}")
            }
        }
    }
}

impl std::error::Error for StartError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StartError::Bind(e) => Some(e),
            StartError::Share(e) => Some(e),
            StartError::Worker { source, .. } => Some(source),
        }
    }
}

/// The running workers.
pub struct Server {
    addrs: Vec<SocketAddr>,
    workers: Vec<JoinHandle<()>>,
    stats: Vec<&'static WorkerStats>,
    metrics: Option<SocketAddr>,
}

impl Server {
    /// Where `/metrics` is served, if it is.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics
    }

    /// Records where `/metrics` is served.
    pub fn set_metrics_addr(&mut self, addr: SocketAddr) {
        self.metrics = Some(addr);
    }

    /// Each worker's counters, for the metrics endpoint.
    pub fn stats(&self) -> Vec<&'static WorkerStats> {
        self.stats.clone()
    }

    /// Every bound address, in `--listen` order (port 0 replaced by the kernel's choice), or
    /// the passed sockets' addresses in fd order under socket activation.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// Blocks until every worker has stopped (today: never, unless a worker fails).
    pub fn wait(self) {
        for worker in self.workers {
            let _ = worker.join();
        }
    }
}

/// What a worker reports once it accepts connections.
struct Ready {
    worker: usize,
    cpu: Option<usize>,
    driver: &'static str,
}

/// Binds (or shares) every listener, starts the workers and returns once all of them accept
/// connections.
pub fn start(plan: WorkerPlan, settings: Arc<Settings>) -> Result<Server, StartError> {
    let threads = plan.threads.max(1);
    let bound = match plan.sockets {
        Sockets::Bind(addrs) => {
            listen::bind_listeners(&addrs, threads).map_err(StartError::Bind)?
        }
        Sockets::Passed(listeners) => {
            listen::share_listeners(listeners, threads).map_err(StartError::Share)?
        }
    };
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    let max_per_worker = plan.max_conns.map(|total| total.div_ceil(threads).max(1));

    let (tx, rx) = mpsc::channel();
    let mut workers = Vec::with_capacity(threads);
    let mut stats = Vec::with_capacity(threads);
    for (worker, listeners) in bound.per_worker.into_iter().enumerate() {
        let core = (!cores.is_empty()).then(|| cores[worker % cores.len()]);
        let worker_stats = WorkerStats::leak(worker);
        stats.push(worker_stats);
        let settings = settings.clone();
        let tx = tx.clone();
        let handle = std::thread::Builder::new()
            .name(format!("ringtls-w{worker}"))
            .spawn(move || run_worker(worker_stats, core, listeners, settings, max_per_worker, tx))
            .map_err(|source| StartError::Worker { worker, source })?;
        workers.push(handle);
    }
    drop(tx);
    for _ in 0..threads {
        match rx.recv() {
            Ok(Ok(ready)) => {
                let cpu = ready
                    .cpu
                    .map(|c| c.to_string())
                    .unwrap_or_else(|| "unpinned".into());
                Event::info("worker.started")
                    .num("worker", ready.worker as u64)
                    .word("cpu", cpu)
                    .word("driver", ready.driver)
                    .emit();
            }
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                return Err(StartError::Worker {
                    worker: usize::MAX,
                    source: io::Error::other("a worker exited before it was ready"),
                });
            }
        }
    }
    Ok(Server {
        addrs: bound.addrs,
        workers,
        stats,
        metrics: None,
    })
}

fn run_worker(
    stats: &'static WorkerStats,
    core: Option<core_affinity::CoreId>,
    listeners: Vec<std::net::TcpListener>,
    settings: Arc<Settings>,
    max_conns: Option<usize>,
    tx: mpsc::Sender<Result<Ready, StartError>>,
) {
    let cpu = core
        .filter(|c| core_affinity::set_for_current(*c))
        .map(|c| c.id);
    let worker = stats.id;
    let fail = |source| StartError::Worker { worker, source };
    let runtime = RuntimeBuilder::<FusionDriver>::new().enable_timer().build();
    let mut runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            let _ = tx.send(Err(fail(e)));
            return;
        }
    };
    let driver = match &runtime {
        FusionRuntime::Uring(_) => "io_uring",
        FusionRuntime::Legacy(_) => "epoll",
    };
    stats.set_driver(driver);
    runtime.block_on(async move {
        let mut monoio_listeners = Vec::with_capacity(listeners.len());
        for listener in listeners {
            match monoio::net::TcpListener::from_std(listener) {
                Ok(l) => monoio_listeners.push(l),
                Err(e) => {
                    let _ = tx.send(Err(fail(e)));
                    return;
                }
            }
        }
        let _ = tx.send(Ok(Ready {
            worker,
            cpu,
            driver,
        }));
        drop(tx);
        let mut loops = Vec::new();
        for listener in monoio_listeners {
            loops.push(monoio::spawn(accept_loop(
                listener,
                stats,
                settings.clone(),
                max_conns,
            )));
        }
        for l in loops {
            l.await;
        }
    });
}

async fn accept_loop(
    listener: monoio::net::TcpListener,
    stats: &'static WorkerStats,
    settings: Arc<Settings>,
    max_conns: Option<usize>,
) {
    let worker = stats.id;
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors (EMFILE/ENFILE) or memory: back off instead of spinning,
                // and keep serving the connections we have.
                Event::error("accept.error")
                    .num("worker", worker as u64)
                    .text("detail", &e.to_string())
                    .emit();
                monoio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        stats.accepted.add(1);
        if max_conns.is_some_and(|max| stats.active.get() >= max as u64) {
            drop(stream);
            proxy::log_reject(
                stats,
                peer,
                Instant::now(),
                Reject::MaxConns,
                None,
                "worker at its share of --max-conns",
            );
            continue;
        }
        stats.active.add(1);
        let guard = ActiveGuard(stats);
        let settings = settings.clone();
        monoio::spawn(async move {
            let _guard = guard;
            let served = CatchUnwind(Box::pin(proxy::serve_connection(
                stream, peer, stats, settings,
            )))
            .await;
            if let Err(panic) = served {
                Event::error("conn.panic")
                    .num("worker", worker as u64)
                    .word("peer", peer)
                    .text("detail", panic_message(&panic))
                    .emit();
            }
        });
    }
}

/// Decrements the worker's active-connection count when a connection task ends, however it ends.
struct ActiveGuard(&'static WorkerStats);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.active.sub(1);
    }
}

/// Turns a panic inside one connection's future into an error, so the worker (and every other
/// connection on it) survives a bug triggered by one client.
struct CatchUnwind<F>(Pin<Box<F>>);

impl<F: Future> Future for CatchUnwind<F> {
    type Output = Result<F::Output, Box<dyn Any + Send>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = self.0.as_mut();
        match std::panic::catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Err(panic) => Poll::Ready(Err(panic)),
        }
    }
}

fn panic_message(panic: &Box<dyn Any + Send>) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("panic")
}
