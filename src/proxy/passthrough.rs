//! The passthrough data plane: a TLS endpoint's bytes go to its upstream untouched, both ways
//! through pipes (`splice`), so they never enter user space. No kernel TLS is needed: nothing
//! is decrypted. The ClientHello read to choose the endpoint goes first, then everything
//! else as it comes; each direction's end (FIN) is passed on as a half-close.

use std::cell::Cell;

use monoio::net::TcpStream;
use rustls::pki_types::CertificateDer;

use super::guard::Guard;
use super::relay_error::RelayError;
use super::splice::{self, Pipes, Ready, SpliceError, Stop};
use crate::outcome::Counters;

/// Relays between the client and its upstream until both directions end, an error, or the
/// guard's verdict (idle). `first`: what was read of the client to route it.
pub(crate) async fn relay<U: Ready>(
    client: TcpStream,
    upstream: U,
    first: Vec<u8>,
    guard: &Guard<'_>,
    counters: &Counters,
) -> Result<(), RelayError> {
    splice::take_over(&client).map_err(RelayError::ClientRead)?;
    splice::take_over(&upstream).map_err(RelayError::UpstreamWrite)?;
    let pool = Pipes::local();
    let up = async {
        if !first.is_empty() {
            splice::write_all(&upstream, &first)
                .await
                .map_err(RelayError::UpstreamWrite)?;
            counters.up.set(counters.up.get() + first.len() as u64);
        }
        drop(first);
        let moved = |n, spliced| count(&counters.up, &counters.spliced, n, spliced);
        let result = splice::forward(&client, &upstream, &pool, moved, || counters.touch()).await;
        match result {
            Ok(_) => {
                // ENOTCONN: the upstream is gone already; the other direction says so.
                let _ = splice::shutdown_write(&upstream);
                Ok(())
            }
            Err(SpliceError::Read(e)) => Err(RelayError::ClientRead(e)),
            Err(SpliceError::Write(e)) => Err(RelayError::UpstreamWrite(e)),
        }
    };
    let down = async {
        let moved = |n, spliced| count(&counters.down, &counters.spliced, n, spliced);
        let result = splice::forward(&upstream, &client, &pool, moved, || counters.touch()).await;
        match result {
            Ok(Stop::End | Stop::Control) => {
                let _ = splice::shutdown_write(&client);
                Ok(())
            }
            Err(SpliceError::Read(e)) => Err(RelayError::UpstreamRead(e)),
            Err(SpliceError::Write(e)) => Err(RelayError::ClientWrite(e)),
        }
    };
    // No chain to re-check: nothing was verified here.
    let no_chain: Vec<CertificateDer<'static>> = Vec::new();
    monoio::select! {
        r = async { monoio::try_join!(up, down) } => r.map(|_| ()),
        stop = guard.watch(&no_chain, counters) => Err(RelayError::Stopped(stop)),
    }
}

/// Adds `n` bytes moved one way to `direction`, and to `spliced` when they went through a pipe.
fn count(direction: &Cell<u64>, spliced: &Cell<u64>, n: usize, through_pipe: bool) {
    direction.set(direction.get() + n as u64);
    if through_pipe {
        spliced.set(spliced.get() + n as u64);
    }
}
