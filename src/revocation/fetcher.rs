//! The fetcher: one thread (`ringtls-fetch`) running a current-thread tokio runtime, started by
//! the first request, that asks OCSP responders on the workers' behalf. A worker hands it a
//! certificate's `Query` (`Service::ask`, a channel send that never blocks) and goes on; the
//! answer lands in the shared `Cache`, and each worker is told with one byte on its control
//! socket (`WAKE_ANSWERED`: the handshakes waiting on an answer look again). A verdict that turns
//! to revoked also sends `WAKE_REVOKED`, which the worker treats as a reload: with
//! `--reauthorize-on-reload` its live connections re-check their chains, and a revoked one ends.
//!
//! Requests run concurrently (at most `PARALLEL`), each inside its own `--ocsp-timeout`, so a
//! slow responder delays only the certificates it answers for. Once a second the fetcher
//! refreshes the answers in use that are about to end (`Cache::due`).

use std::os::unix::net::UnixStream;
use std::sync::{Arc, LazyLock, Mutex, OnceLock};
use std::time::Duration;

use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use rustls::pki_types::CertificateDer;

use super::cache::{Cache, FailedAs, Failure, Limits, Verdict};
use super::crl_fetch::{self, CrlStore};
use super::http::{self, FetchError};
use super::ocsp::{self, Query, Status};
use crate::telemetry::log::{Event, Level};
use crate::telemetry::metrics::{CRL_FETCHES, OCSP_CACHE_ENTRIES, OCSP_REQUESTS};
use crate::tls::x509::now_unix;

/// The byte that tells a worker an answer arrived.
pub(crate) const WAKE_ANSWERED: u8 = b'o';
/// The byte that tells a worker a certificate was found revoked: re-check live connections.
pub(crate) const WAKE_REVOKED: u8 = b'r';

/// Requests out at once.
const PARALLEL: usize = 64;
/// The largest OCSP response taken.
const MAX_RESPONSE: usize = 64 * 1024;
/// How long one CRL fetch may take.
const CRL_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest CRL taken.
const MAX_CRL: usize = 32 << 20;
/// How often answers in use are looked at for refreshing.
const REFRESH_EVERY: Duration = Duration::from_secs(1);

/// A certificate to ask about.
struct Job {
    query: Arc<Query>,
    limits: Limits,
}

/// The process's one fetcher, its OCSP answer cache and its fetched CRLs, shared by every
/// endpoint and generation.
pub(crate) struct Service {
    pub cache: Arc<Cache>,
    pub crls: CrlStore,
    jobs: OnceLock<Option<UnboundedSender<Job>>>,
    /// A duplicate of each worker's control socket, written with `MSG_DONTWAIT`.
    workers: Mutex<Vec<UnixStream>>,
}

static SERVICE: LazyLock<Service> = LazyLock::new(|| Service {
    cache: Arc::default(),
    crls: CrlStore::default(),
    jobs: OnceLock::new(),
    workers: Mutex::new(Vec::new()),
});

/// The fetcher and its cache.
pub(crate) fn service() -> &'static Service {
    &SERVICE
}

impl Service {
    /// Lets the fetcher wake this worker (its end of the controller's socket, duplicated).
    pub(crate) fn register_worker(&self, link: UnixStream) {
        if let Ok(mut workers) = self.workers.lock() {
            workers.push(link);
        }
    }

    /// Asks about `query`'s certificate unless an answer is current or a request is out.
    pub(crate) fn ask(&self, query: &Arc<Query>, limits: Limits) {
        if !self.cache.want(query, limits, now_unix()) {
            return;
        }
        self.submit(Job {
            query: Arc::clone(query),
            limits,
        });
    }

    /// `serve` with `--crl-fetch`: the fetcher starts, and fetches the distribution points
    /// registered and to come.
    pub(crate) fn fetch_crls(&self) {
        self.crls.start();
        self.jobs.get_or_init(start);
    }

    /// Hands `job` to the fetcher. When the thread could not start (logged then), the job is
    /// dropped and its certificate stays in flight: the handshakes waiting on it time out, and
    /// `--ocsp hard` refuses them.
    fn submit(&self, job: Job) {
        if let Some(tx) = self.jobs.get_or_init(start) {
            let _ = tx.send(job);
        }
    }

    /// One byte to every worker; a worker whose socket is full already has one to read.
    fn wake(&self, byte: u8) {
        let Ok(mut workers) = self.workers.lock() else {
            return;
        };
        workers.retain(|link| {
            let sent = socket2::SockRef::from(link)
                .send_with_flags(&[byte], libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL);
            match sent {
                Ok(_) => true,
                Err(e) => e.kind() == std::io::ErrorKind::WouldBlock,
            }
        });
    }
}

/// Starts the thread; `None` (logged) if it cannot start.
fn start() -> Option<UnboundedSender<Job>> {
    let (tx, rx) = unbounded_channel();
    let started = std::thread::Builder::new()
        .name("ringtls-fetch".into())
        .spawn(move || run(rx));
    match started {
        Ok(_) => Some(tx),
        Err(e) => {
            Event::error("ocsp.fetcher_failed")
                .text("detail", &e.to_string())
                .emit();
            None
        }
    }
}

fn run(mut rx: UnboundedReceiver<Job>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            Event::error("ocsp.fetcher_failed")
                .text("detail", &e.to_string())
                .emit();
            return;
        }
    };
    let limit = Arc::new(tokio::sync::Semaphore::new(PARALLEL));
    runtime.block_on(async move {
        let refresher = Arc::clone(&limit);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(REFRESH_EVERY).await;
                let now = now_unix();
                for (query, limits) in service().cache.due(now) {
                    tokio::spawn(fetch(Job { query, limits }, Arc::clone(&refresher)));
                }
                for (url, issuers) in service().crls.due(now) {
                    tokio::spawn(fetch_crl(url, issuers, Arc::clone(&refresher)));
                }
            }
        });
        while let Some(job) = rx.recv().await {
            tokio::spawn(fetch(job, Arc::clone(&limit)));
        }
    });
}

/// Asks the responder about one certificate and stores what came of it.
async fn fetch(job: Job, limit: Arc<tokio::sync::Semaphore>) {
    let Job { query, limits } = job;
    let _permit = limit.acquire().await;
    let body = Some(("application/ocsp-request", query.request.clone()));
    let fetched = http::exchange(&query.url, body, limits.timeout, MAX_RESPONSE).await;
    let now = now_unix();
    let (verdict, next_update) = match fetched {
        Ok(body) => match ocsp::check(&query, &body, now, webpki::ALL_VERIFICATION_ALGS) {
            Ok(answer) => (Verdict::Answered(answer.status), answer.next_update),
            Err(invalid) => (failed(FailedAs::Invalid, invalid.to_string()), None),
        },
        Err(FetchError::Timeout) => {
            let detail = format!("no answer within --ocsp-timeout {:?}", limits.timeout);
            (failed(FailedAs::Timeout, detail), None)
        }
        Err(FetchError::Failed(why)) => (failed(FailedAs::Unreachable, why), None),
    };
    OCSP_REQUESTS.count(match &verdict {
        Verdict::Answered(status) => status.as_str(),
        Verdict::Failed(f) => f.result.as_str(),
    });
    log(&query, &verdict, next_update);
    let service = service();
    let previous = service
        .cache
        .store(&query.key, verdict.clone(), next_update, now);
    service.wake(WAKE_ANSWERED);
    let revoked = |v: &Verdict| matches!(v, Verdict::Answered(Status::Revoked { .. }));
    if revoked(&verdict) && !previous.as_ref().is_some_and(revoked) {
        service.wake(WAKE_REVOKED);
    }
    OCSP_CACHE_ENTRIES.set(service.cache.len() as u64);
}

/// Fetches one distribution point and keeps what it gave if it is a good CRL.
async fn fetch_crl(
    url: Arc<str>,
    issuers: Vec<CertificateDer<'static>>,
    limit: Arc<tokio::sync::Semaphore>,
) {
    let _permit = limit.acquire().await;
    let fetched = http::exchange(&url, None, CRL_TIMEOUT, MAX_CRL).await;
    let now = now_unix();
    let result = match fetched {
        Ok(body) => {
            crl_fetch::validate(&url, &body, &issuers).map_err(|why| (FailedAs::Invalid, why))
        }
        Err(FetchError::Timeout) => Err((
            FailedAs::Timeout,
            format!("no answer within {CRL_TIMEOUT:?}"),
        )),
        Err(FetchError::Failed(why)) => Err((FailedAs::Unreachable, why)),
    };
    let service = service();
    match result {
        Ok(crl) => {
            CRL_FETCHES.count("ok");
            let (issuer, revoked, next_update) =
                (crl.issuer.clone(), crl.revoked_count(), crl.next_update);
            let changed = service.crls.store(&url, Ok(crl), now);
            // An unchanged CRL is news only at debug level.
            let level = if changed { Level::Info } else { Level::Debug };
            let event = Event::new(level, "crl.fetched")
                .text("url", &url)
                .text("issuer", &issuer)
                .num("revoked", revoked as u64)
                .word("changed", changed);
            match next_update {
                Some(n) => event.word("next_update", crate::time_format::spelled(n)),
                None => event,
            }
            .emit();
        }
        Err((result, detail)) => {
            CRL_FETCHES.count(result.as_str());
            let kept = service.crls.current().iter().any(|c| *c.url == *url);
            Event::warn("crl.fetch_failed")
                .text("url", &url)
                .word("result", result.as_str())
                .text("detail", &detail)
                .word("keeping", if kept { "last_good" } else { "none" })
                .emit();
            service.crls.store(&url, Err(result), now);
        }
    }
}

fn failed(result: FailedAs, detail: String) -> Verdict {
    Verdict::Failed(Failure {
        result,
        detail: detail.into(),
    })
}

/// One line per fetch: DEBUG for a good answer, INFO for revoked or unknown, WARN for none.
fn log(query: &Query, verdict: &Verdict, next_update: Option<i64>) {
    let event = match verdict {
        Verdict::Answered(Status::Good) => Event::debug("ocsp.answer"),
        Verdict::Answered(_) => Event::info("ocsp.answer"),
        Verdict::Failed(_) => Event::warn("ocsp.failed"),
    };
    let event = event
        .word("serial", query.key.serial_hex())
        .text("issuer", &query.issuer.subject)
        .text("responder", &query.url);
    match verdict {
        Verdict::Answered(status) => {
            let event = event.word("status", status.as_str());
            match next_update {
                Some(n) => event.word("next_update", crate::time_format::spelled(n)),
                None => event,
            }
        }
        Verdict::Failed(f) => event
            .word("result", f.result.as_str())
            .text("detail", &f.detail),
    }
    .emit();
}
