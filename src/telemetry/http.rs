//! The metrics and health listener (`--metrics ADDR`): `/metrics`, `/healthz` and `/readyz`
//! served by hyper's HTTP/1 server on a current-thread tokio runtime that owns one thread, so
//! nothing it does, nor anything a client does to it, reaches the workers' event loops.
//!
//! A kubelet restarts the pod when `/healthz` goes unanswered, so no client may starve a probe:
//! - every connection is its own task: a slow one holds up nobody else;
//! - the whole request head must arrive within [`REQUEST_DEADLINE`] of the accept. hyper's
//!   `header_read_timeout` is a deadline, not an idle timer: it is armed once when the head
//!   starts being read and only reset once a whole head has been parsed (hyper 1.x,
//!   `proto/h1/conn.rs`, `poll_read_head`), so a byte a second does not keep a request alive;
//! - the whole exchange, answer included, ends within [`CONNECTION_DEADLINE`] (a client that
//!   sends a body forever, or never reads the answer, is dropped then);
//! - a request head over [`MAX_REQUEST_BYTES`] gets hyper's 431 and a close;
//! - at most [`MAX_CONNECTIONS`] are open; at the cap the oldest is closed to admit the new one.
//!   A refusal at the cap would let whoever holds the slots lock the probes out; closing the
//!   oldest means an attacker must open that many connections within a probe's lifetime (a
//!   millisecond or so) to push it out.
//!
//! One request per connection (`Connection: close`), as before: probes and scrapers connect
//! each time, and a kept-alive idle connection would only hold a slot.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use super::metrics::{ControlStats, WorkerStats, render};
use super::readiness::Upstreams;

/// The request head must be in within this of the accept. A probe or a scrape sends its few
/// hundred bytes at once; two seconds is a lost packet's retransmission with room to spare.
pub(crate) const REQUEST_DEADLINE: Duration = Duration::from_secs(2);

/// The whole connection, request and answer, ends within this of the accept.
pub(crate) const CONNECTION_DEADLINE: Duration = Duration::from_secs(5);

/// The largest request head accepted: hyper's minimum read buffer, far more than any probe or
/// scraper sends (they send a few hundred bytes).
pub(crate) const MAX_REQUEST_BYTES: usize = 8192;

/// Connections served at once; a handful of scrapers and probes is the normal load.
pub(crate) const MAX_CONNECTIONS: usize = 128;

/// How long to wait after a failed accept (out of file descriptors, say) before the next, so
/// an error that persists does not spin the thread.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Binds the metrics listener (before the workers start, so a bad address fails the start).
pub(crate) fn bind(addr: SocketAddr) -> std::io::Result<StdListener> {
    StdListener::bind(addr)
}

/// Serves `/metrics`, `/healthz` (200 while the process runs) and `/readyz` (503 once draining)
/// on `listener` from a thread of its own. The runtime is built and the listener registered
/// with it here, so a failure to do either fails the start rather than the thread.
pub(crate) fn serve(
    listener: StdListener,
    workers: Vec<&'static WorkerStats>,
    control: &'static ControlStats,
    upstreams: Option<Upstreams>,
) -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()?;
    listener.set_nonblocking(true)?;
    let listener = {
        let _context = runtime.enter();
        TcpListener::from_std(listener)?
    };
    let site = Arc::new(Site {
        workers,
        control,
        http: http1_builder(),
    });
    std::thread::Builder::new()
        .name("ringtls-metrics".into())
        .spawn(move || {
            runtime.block_on(async move {
                if let Some(upstreams) = upstreams {
                    tokio::spawn(super::readiness::watch(upstreams, control));
                }
                accept_loop(listener, site).await
            })
        })
        .map(|_| ())
}

/// hyper's HTTP/1 server with this listener's limits.
fn http1_builder() -> http1::Builder {
    let mut http = http1::Builder::new();
    // hyper panics in serve_connection if a header_read_timeout has no timer to run on; both
    // are set here, together. And max_buf_size asserts at least its minimum (8192), which
    // MAX_REQUEST_BYTES is: neither depends on what a client sends.
    http.timer(TokioTimer::new())
        .header_read_timeout(REQUEST_DEADLINE)
        .max_buf_size(MAX_REQUEST_BYTES)
        .keep_alive(false)
        // The response head as the hand-written listener wrote it: Title-Case, no Date.
        .title_case_headers(true)
        .auto_date_header(false);
    http
}

/// What every connection task shares: the counters to render and the server settings.
struct Site {
    workers: Vec<&'static WorkerStats>,
    control: &'static ControlStats,
    http: http1::Builder,
}

impl Site {
    /// The answer to a request for `path` (any method; a HEAD gets the head only, from hyper).
    fn answer(&self, path: &str) -> Response<String> {
        let (status, kind, body) = match path {
            "/metrics" => (
                StatusCode::OK,
                "text/plain; version=0.0.4",
                render(&self.workers, self.control),
            ),
            "/healthz" => (StatusCode::OK, "text/plain", "ok\n".to_owned()),
            "/readyz" if self.control.draining() => (
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                "draining\n".to_owned(),
            ),
            "/readyz" => match self.control.upstream_unready() {
                Some(why) => (StatusCode::SERVICE_UNAVAILABLE, "text/plain", why + "\n"),
                None => (StatusCode::OK, "text/plain", "ready\n".to_owned()),
            },
            _ => (
                StatusCode::NOT_FOUND,
                "text/plain",
                "not found\n".to_owned(),
            ),
        };
        let mut response = Response::new(body);
        *response.status_mut() = status;
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(kind));
        response
    }
}

async fn accept_loop(listener: TcpListener, site: Arc<Site>) {
    let mut open = Admission::new(MAX_CONNECTIONS);
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let site = Arc::clone(&site);
                open.admit(tokio::spawn(serve_connection(stream, site)));
            }
            // EMFILE, ENFILE, ENOBUFS, ECONNABORTED: about that one attempt or the moment,
            // never a reason to stop serving probes.
            Err(_) => tokio::time::sleep(ACCEPT_BACKOFF).await,
        }
    }
}

/// One connection: one request, one answer. Whatever the client does wrong (a malformed or
/// oversized head, a reset, running out the clock) only ends this connection; hyper has already
/// answered 400 or 431 where one applies, so there is nothing to add.
async fn serve_connection(stream: TcpStream, site: Arc<Site>) {
    let routes = Arc::clone(&site);
    let service = service_fn(move |request: Request<Incoming>| {
        std::future::ready(Ok::<_, Infallible>(routes.answer(request.uri().path())))
    });
    let connection = site.http.serve_connection(TokioIo::new(stream), service);
    let _ = tokio::time::timeout(CONNECTION_DEADLINE, connection).await;
}

/// The open connections, oldest first, never more than `cap`.
struct Admission {
    cap: usize,
    open: VecDeque<JoinHandle<()>>,
}

impl Admission {
    fn new(cap: usize) -> Admission {
        Admission {
            cap,
            open: VecDeque::with_capacity(cap),
        }
    }

    /// Takes in a new connection's task, first forgetting the finished ones and, at the cap,
    /// closing the oldest (aborting its task drops its socket). Returns how many were closed.
    fn admit(&mut self, task: JoinHandle<()>) -> usize {
        self.open.retain(|t| !t.is_finished());
        let mut closed = 0;
        while self.open.len() >= self.cap.max(1) {
            let Some(oldest) = self.open.pop_front() else {
                break;
            };
            oldest.abort();
            closed += 1;
        }
        self.open.push_back(task);
        closed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lets the other tasks run (a finished or aborted task is reaped when the scheduler gets
    /// to it), a bounded number of times.
    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a current-thread runtime")
    }

    #[test]
    fn admits_a_connection_at_the_cap_by_closing_the_oldest() {
        runtime().block_on(async {
            let mut open = Admission::new(3);
            let first = tokio::spawn(std::future::pending::<()>());
            let first_abort = first.abort_handle();
            assert_eq!(open.admit(first), 0);
            for _ in 0..2 {
                assert_eq!(open.admit(tokio::spawn(std::future::pending())), 0);
            }
            assert_eq!(open.admit(tokio::spawn(std::future::pending())), 1);
            assert_eq!(open.open.len(), 3);
            settle().await;
            assert!(first_abort.is_finished(), "the oldest was not closed");
            assert!(open.open.iter().all(|t| !t.is_finished()));
        });
    }

    #[test]
    fn counts_only_unfinished_connections_against_the_cap() {
        runtime().block_on(async {
            let mut open = Admission::new(2);
            open.admit(tokio::spawn(async {}));
            open.admit(tokio::spawn(async {}));
            // Let both finish: they no longer take a slot.
            settle().await;
            assert_eq!(open.admit(tokio::spawn(std::future::pending())), 0);
            assert_eq!(open.admit(tokio::spawn(std::future::pending())), 0);
            assert_eq!(open.admit(tokio::spawn(std::future::pending())), 1);
        });
    }
}
