//! Workers: one OS thread per core, pinned with core_affinity, each running its own monoio
//! runtime (io_uring, or epoll where io_uring is unavailable or `MONOIO_FORCE_LEGACY_DRIVER=1`)
//! over its own SO_REUSEPORT listeners (or its duplicates of the sockets passed by socket
//! activation). The kernel spreads connections across the workers; a
//! connection lives and dies on the worker that accepted it, so nothing on the per-connection
//! path is shared mutably between threads.

use std::any::Any;
use std::future::Future;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::os::unix::net::UnixStream;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::mpsc;
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use monoio::io::AsyncReadRent;
use monoio::{FusionDriver, FusionRuntime, RuntimeBuilder};

use crate::listen::{self, BindError, ShareError};
use crate::outcome::Reject;
use crate::proxy::{self, Settings, notify::Broadcast};
use crate::revocation::fetcher;
use crate::sys;
use crate::telemetry::log::Event;
use crate::telemetry::metrics::WorkerStats;

/// How the serving part is shaped, beyond the TLS material.
pub(crate) struct WorkerPlan {
    /// One set per worker: as many workers as `bind` was asked for.
    pub listeners: Listeners,
    /// Total connection limit, split evenly across workers.
    pub max_conns: Option<usize>,
    /// The shortest idle timeout of any endpoint: the guards' clock runs at a quarter of it
    /// (`guard::ticker`).
    pub idle_tick: Option<Duration>,
}

/// Where the workers accept.
pub(crate) enum Sockets {
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
            StartError::Worker { worker, .. } => write!(f, "worker {worker} could not start"),
        }
    }
}

impl std::error::Error for StartError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            // Said by the Display above already: the chain goes on with their causes.
            StartError::Bind(e) => e.source(),
            StartError::Share(e) => e.source(),
            StartError::Worker { source, .. } => Some(source),
        }
    }
}

/// Set, monoio uses its epoll driver without trying io_uring.
const LEGACY_DRIVER_ENV: &str = "MONOIO_FORCE_LEGACY_DRIVER";

/// A message to every worker, one byte on its control socket.
#[derive(Clone, Copy)]
enum Command {
    /// A new configuration generation is in force: re-check live connections if asked to.
    Reload = b'g' as isize,
    /// Close the listeners; keep serving established connections. Acked with `STOPPED`.
    StopAccepting = b's' as isize,
}

/// A worker's reply once its listeners are closed.
const STOPPED: u8 = b'S';

/// The running workers.
pub struct Server {
    addrs: Vec<SocketAddr>,
    workers: Vec<JoinHandle<()>>,
    stats: Vec<&'static WorkerStats>,
    metrics: Option<SocketAddr>,
    /// Our end of each worker's control socket (a Unix socketpair: it wakes a worker's event
    /// loop from another thread with either driver, and carries its acknowledgement back).
    links: Vec<UnixStream>,
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

    /// A worker whose thread has ended. Workers run until the process exits, so this is a bug
    /// (a panic outside any connection) and the process must not go on half-alive.
    pub fn stopped_worker(&self) -> Option<usize> {
        self.workers.iter().position(|w| w.is_finished())
    }

    /// Connections being served now, over all workers.
    pub fn active_connections(&self) -> u64 {
        self.stats.iter().map(|s| s.active.get()).sum()
    }

    /// Tells every worker a new configuration generation is in force.
    pub fn announce_reload(&self) {
        self.send(Command::Reload);
    }

    /// Closes every listener (new connections are refused by the kernel from then on) and
    /// returns once every worker confirms, or after `timeout`. Established connections go on.
    pub fn stop_accepting(&self, timeout: Duration) -> io::Result<()> {
        self.send(Command::StopAccepting);
        let deadline = Instant::now() + timeout;
        for (worker, mut link) in self.links.iter().enumerate() {
            let left = deadline.saturating_duration_since(Instant::now());
            link.set_read_timeout(Some(left.max(Duration::from_millis(1))))?;
            let mut ack = [0u8; 1];
            loop {
                match link.read(&mut ack) {
                    Ok(1) if ack[0] == STOPPED => break,
                    Ok(1) => continue,
                    Ok(_) => {
                        return Err(io::Error::other(format!("worker {worker} has exited")));
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        return Err(io::Error::new(
                            e.kind(),
                            format!("worker {worker} did not confirm: {e}"),
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    fn send(&self, command: Command) {
        for (worker, mut link) in self.links.iter().enumerate() {
            if let Err(e) = link.write_all(&[command as u8]) {
                Event::error("worker.unreachable")
                    .num("worker", worker as u64)
                    .text("detail", &e.to_string())
                    .emit();
            }
        }
    }
}

/// What a worker reports once it accepts connections.
struct Ready {
    worker: usize,
    cpu: Option<usize>,
    driver: &'static str,
}

/// Every worker's listeners, bound (or shared) and not yet accepting.
pub(crate) struct Listeners {
    bound: listen::Bound,
    /// Whether we bound them; see `bind`.
    owned: bool,
}

/// Binds (or shares) every listener, one per worker and address. Separate from `start` so
/// that a port that is taken fails the start before anything says it started.
pub(crate) fn bind(sockets: Sockets, threads: usize) -> Result<Listeners, StartError> {
    let threads = threads.max(1);
    // Passed sockets belong to the service manager, which keeps them listening across our
    // restarts; only the ones we bound are shut down when we stop accepting.
    let owned = matches!(sockets, Sockets::Bind(_));
    let bound = match sockets {
        Sockets::Bind(addrs) => {
            listen::bind_listeners(&addrs, threads).map_err(StartError::Bind)?
        }
        Sockets::Passed(listeners) => {
            listen::share_listeners(listeners, threads).map_err(StartError::Share)?
        }
    };
    Ok(Listeners { bound, owned })
}

/// Starts one worker per listener set from `bind` and returns once all of them accept
/// connections.
pub(crate) fn start(plan: WorkerPlan, settings: Arc<Settings>) -> Result<Server, StartError> {
    let Listeners { bound, owned } = plan.listeners;
    let threads = bound.per_worker.len();
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    let max_per_worker = plan.max_conns.map(|total| total.div_ceil(threads).max(1));
    let idle_tick = plan
        .idle_tick
        .unwrap_or(crate::proxy::Timeouts::default().idle);

    let (tx, rx) = mpsc::channel();
    let mut workers = Vec::with_capacity(threads);
    let mut stats = Vec::with_capacity(threads);
    let mut links = Vec::with_capacity(threads);
    for (worker, listeners) in bound.per_worker.into_iter().enumerate() {
        let core = (!cores.is_empty()).then(|| cores[worker % cores.len()]);
        let worker_stats = WorkerStats::leak(worker);
        stats.push(worker_stats);
        let (ours, theirs) =
            UnixStream::pair().map_err(|source| StartError::Worker { worker, source })?;
        // The OCSP fetcher writes to the same socket (a byte per answer).
        match ours.try_clone() {
            Ok(link) => fetcher::service().register_worker(link),
            Err(source) => return Err(StartError::Worker { worker, source }),
        }
        links.push(ours);
        let shape = Shape {
            core,
            idle_tick,
            max_conns: max_per_worker,
            owned,
            control: theirs,
        };
        let settings = settings.clone();
        let tx = tx.clone();
        let handle = std::thread::Builder::new()
            .name(format!("ringtls-w{worker}"))
            .spawn(move || run_worker(worker_stats, listeners, settings, shape, tx))
            .map_err(|source| StartError::Worker { worker, source })?;
        workers.push(handle);
    }
    drop(tx);
    let mut on_epoll = 0;
    for _ in 0..threads {
        match rx.recv() {
            Ok(Ok(ready)) => {
                on_epoll += usize::from(ready.driver == "epoll");
                let cpu = ready
                    .cpu
                    .map(|c| c.to_string())
                    .unwrap_or_else(|| "unpinned".into());
                Event::info("worker.started")
                    .num("worker", ready.worker as u64)
                    .word("cpu", cpu)
                    .word("driver", ready.driver)
                    .word("ktls", if settings.ktls.is_some() { "on" } else { "off" })
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
    if on_epoll > 0 && std::env::var_os(LEGACY_DRIVER_ENV).is_none() {
        Event::warn("io_uring.unavailable")
            .num("workers", on_epoll as u64)
            .text(
                "message",
                "io_uring could not be set up (a kernel without it, or a seccomp profile that blocks it, such as Docker's default); serving with epoll. See packaging/README.md to allow it",
            )
            .emit();
    }
    Ok(Server {
        addrs: bound.addrs,
        workers,
        stats,
        metrics: None,
        links,
    })
}

/// A worker's place and limits.
struct Shape {
    core: Option<core_affinity::CoreId>,
    /// See `WorkerPlan::idle_tick`.
    idle_tick: Duration,
    /// This worker's share of `--max-conns`.
    max_conns: Option<usize>,
    /// The worker's end of its control socket.
    control: UnixStream,
    /// Whether the listeners are ours to shut down (not socket-activated).
    owned: bool,
}

fn run_worker(
    stats: &'static WorkerStats,
    listeners: Vec<std::net::TcpListener>,
    settings: Arc<Settings>,
    shape: Shape,
    tx: mpsc::Sender<Result<Ready, StartError>>,
) {
    let Shape {
        core,
        idle_tick,
        max_conns,
        control,
        owned,
    } = shape;
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
    proxy::budget::set_cooperative(driver == "epoll");
    // Worker-local signals, living as long as the worker (which is as long as the process).
    let trust_changed: &'static Broadcast = Box::leak(Box::default());
    let stop: &'static Broadcast = Box::leak(Box::default());
    let ocsp: &'static Broadcast = Box::leak(Box::default());
    let signals = proxy::WorkerSignals {
        trust_changed,
        tick: Box::leak(Box::default()),
        ocsp,
    };
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
        // monoio's from_std leaves blocking mode alone, and a blocking read under the epoll
        // driver would stall the whole worker.
        let control = control
            .set_nonblocking(true)
            .and_then(|()| control.try_clone())
            .and_then(|ack| Ok((ack, monoio::net::UnixStream::from_std(control)?)));
        let (mut ack, control) = match control {
            Ok(pair) => pair,
            Err(e) => {
                let _ = tx.send(Err(fail(e)));
                return;
            }
        };
        let _ = tx.send(Ok(Ready {
            worker,
            cpu,
            driver,
        }));
        drop(tx);
        monoio::spawn(obey(control, (trust_changed, ocsp), stop));
        monoio::spawn(proxy::budget::pump());
        monoio::spawn(proxy::guard::ticker(signals.tick, idle_tick));
        let mut loops = Vec::new();
        for (index, listener) in monoio_listeners.into_iter().enumerate() {
            loops.push(monoio::spawn(accept_loop(
                (listener, index),
                stats,
                settings.clone(),
                max_conns,
                (signals, stop),
                owned,
            )));
        }
        for l in loops {
            l.await;
        }
        // Every listener is closed. The control socket is non-blocking, and one byte always
        // fits in its empty send buffer.
        let _ = ack.write_all(&[STOPPED]);
        // Keep serving the established connections until the process exits.
        std::future::pending::<()>().await
    });
}

/// Carries out the controller's commands, and the OCSP fetcher's news, until it hangs up.
async fn obey(
    mut control: monoio::net::UnixStream,
    (trust_changed, ocsp): (&'static Broadcast, &'static Broadcast),
    stop: &'static Broadcast,
) {
    let mut buf = vec![0u8; 16];
    loop {
        let (res, b) = control.read(buf).await;
        buf = b;
        let n = match res {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        for &command in &buf[..n] {
            if command == Command::Reload as u8 || command == fetcher::WAKE_REVOKED {
                trust_changed.advance();
            } else if command == Command::StopAccepting as u8 {
                stop.advance();
            } else if command == fetcher::WAKE_ANSWERED {
                ocsp.advance();
            }
        }
    }
}

/// Accepts until told to stop, then closes the listener.
async fn accept_loop(
    (listener, index): (monoio::net::TcpListener, usize),
    stats: &'static WorkerStats,
    settings: Arc<Settings>,
    max_conns: Option<usize>,
    (signals, stop): (proxy::WorkerSignals, &'static Broadcast),
    owned: bool,
) {
    let worker = stats.id;
    let mut accept_errors = AcceptErrors::default();
    let stopped = stop.changed();
    let mut stopped = std::pin::pin!(stopped);
    // A flood keeps the listener always ready: let the accepted connections run too.
    loop {
        proxy::budget::next_turn().await;
        let accepted = monoio::select! {
            accepted = listener.accept() => accepted,
            _ = &mut stopped => {
                // A passed socket is only closed (our copy): it keeps listening in the service
                // manager, and connections queue there for the next instance.
                if !owned {
                    return;
                }
                if let Err(e) = sys::listener::stop_listening(&listener) {
                    Event::error("listener.close_failed")
                        .num("worker", worker as u64)
                        .text("detail", &e.to_string())
                        .emit();
                }
                return;
            }
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors (EMFILE/ENFILE) or memory: back off instead of spinning,
                // and keep serving the connections we have. The waiting connection stays in the
                // kernel's backlog and is taken on a later try.
                accept_errors.record(worker, &e);
                monoio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        stats.accepted.add(1);
        if max_conns.is_some_and(|max| stats.active.get() >= max as u64) {
            drop(stream);
            proxy::refuse_at_accept(
                stats,
                peer,
                Reject::MaxConns,
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
                stream, peer, index, stats, settings, signals,
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

/// How long a worker waits after a failed accept (EMFILE and the like) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
/// At most one `accept.error` event per worker this often; the ones in between are counted.
const ACCEPT_ERROR_LOG_EVERY: Duration = Duration::from_secs(1);

/// Rate-limits the log of failed accepts: out of descriptors, every retry would fail the same
/// way, and 20 lines a second per worker would bury everything else.
#[derive(Default)]
struct AcceptErrors {
    last_logged: Option<Instant>,
    suppressed: u64,
}

impl AcceptErrors {
    fn record(&mut self, worker: usize, e: &io::Error) {
        let now = Instant::now();
        if self
            .last_logged
            .is_some_and(|t| now.duration_since(t) < ACCEPT_ERROR_LOG_EVERY)
        {
            self.suppressed += 1;
            return;
        }
        Event::error("accept.error")
            .num("worker", worker as u64)
            .text("detail", &e.to_string())
            .num("repeats", self.suppressed)
            .num("backoff_ms", ACCEPT_BACKOFF.as_millis())
            .emit();
        self.last_logged = Some(now);
        self.suppressed = 0;
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
