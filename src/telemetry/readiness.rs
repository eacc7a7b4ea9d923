//! `--ready-requires-upstream`: `/readyz` is 503 while an endpoint's upstream cannot be dialled,
//! so a sidecar whose application is down is taken out of its Service. Checked from the metrics
//! thread, never from a worker: every `EVERY`, one TCP (or Unix-socket) connect per endpoint, to
//! each of its addresses in turn until one answers within `CONNECT`; the connection is closed
//! at once. The verdict, and why, is what `/readyz` says.

use std::sync::Arc;
use std::time::Duration;

use super::metrics::ControlStats;
use crate::proxy::connect::UpstreamAddr;

/// How often the upstreams are dialled.
const EVERY: Duration = Duration::from_secs(2);
/// How long one dial may take.
const CONNECT: Duration = Duration::from_secs(1);

/// Every endpoint's name and upstream addresses, as the configuration in force has them.
pub(crate) type Upstreams = Box<dyn Fn() -> Vec<(Arc<str>, Vec<UpstreamAddr>)> + Send>;

/// Dials every endpoint's upstream every `EVERY`, for as long as the process runs.
pub(crate) async fn watch(upstreams: Upstreams, control: &'static ControlStats) {
    loop {
        let mut unready = None;
        for (endpoint, addrs) in upstreams() {
            if let Err(why) = dial_any(&addrs).await {
                unready = Some(format!("endpoint {endpoint}: upstream unreachable: {why}"));
                break;
            }
        }
        control.set_upstream_unready(unready);
        tokio::time::sleep(EVERY).await;
    }
}

/// Connects to the first of `addrs` that takes a connection; the last error otherwise.
async fn dial_any(addrs: &[UpstreamAddr]) -> Result<(), String> {
    let mut last = "no address".to_owned();
    for addr in addrs {
        let dialled = match addr {
            UpstreamAddr::Tcp(a) => {
                tokio::time::timeout(CONNECT, tokio::net::TcpStream::connect(a))
                    .await
                    .map(|r| r.map(drop))
            }
            UpstreamAddr::Unix(p) => {
                tokio::time::timeout(CONNECT, tokio::net::UnixStream::connect(p))
                    .await
                    .map(|r| r.map(drop))
            }
        };
        match dialled {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) => last = format!("{addr}: {e}"),
            Err(_) => last = format!("{addr}: no connection within {CONNECT:?}"),
        }
    }
    Err(last)
}
