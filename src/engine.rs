//! The synchronous half of our adapter over rustls connections (the server side in `proxy`, the
//! client side in `load`): moving bytes between owned buffers and rustls, with no I/O of its own.
//!
//! Two traps shape it. `read_tls` takes at most one chunk per call (about 4 KiB in rustls 0.23),
//! so a socket read is fed in a loop until it is consumed; and each `process_new_packets` must be
//! followed by draining the plaintext it produced (else rustls' plaintext buffer fills and
//! `read_tls` refuses) and by flushing `write_tls` (that is how alerts, handshake messages and
//! key updates go out).

use std::io::BufRead;

use rustls::ConnectionCommon;

/// What one call to [`feed`] left behind.
#[derive(Debug, Default, Clone, Copy)]
pub struct Fed {
    /// The client sent close_notify; no more plaintext will come.
    pub peer_closed: bool,
}

/// Feeds `input` (ciphertext from the client) to rustls and appends every byte of plaintext it
/// yields to `plain`. On a TLS error the alert rustls chose is queued for `write_tls`.
pub fn feed<D>(
    conn: &mut ConnectionCommon<D>,
    mut input: &[u8],
    plain: &mut Vec<u8>,
) -> Result<Fed, rustls::Error> {
    let mut fed = Fed::default();
    loop {
        if !input.is_empty() {
            // `read_tls` from a slice only fails when rustls' buffers are full; the plaintext is
            // drained below after every round, so a full buffer means rustls is joining a
            // handshake message whose records (headers included) pass its 64 KiB deframer
            // buffer: the same refusal as a message announcing more than 64 KiB, named alike.
            conn.read_tls(&mut input).map_err(|_| {
                rustls::Error::InvalidMessage(rustls::InvalidMessage::HandshakePayloadTooLarge)
            })?;
        }
        let state = conn.process_new_packets()?;
        drain_plaintext(conn, state.plaintext_bytes_to_read(), plain)?;
        if state.peer_has_closed() {
            fed.peer_closed = true;
        }
        if input.is_empty() {
            return Ok(fed);
        }
    }
}

/// Tells rustls the client's TCP stream ended (FIN without, or after, close_notify).
pub fn feed_eof<D>(
    conn: &mut ConnectionCommon<D>,
    plain: &mut Vec<u8>,
) -> Result<(), rustls::Error> {
    let mut empty: &[u8] = &[];
    // Reading from an empty slice records EOF; it cannot fail.
    let _ = conn.read_tls(&mut empty);
    let state = conn.process_new_packets()?;
    drain_plaintext(conn, state.plaintext_bytes_to_read(), plain)
}

fn drain_plaintext<D>(
    conn: &mut ConnectionCommon<D>,
    mut n: usize,
    plain: &mut Vec<u8>,
) -> Result<(), rustls::Error> {
    // Chunk by chunk from rustls' own buffer: one copy, and nothing zeroed first.
    plain.reserve(n);
    let mut reader = conn.reader();
    while n > 0 {
        let chunk = reader.fill_buf().map_err(|e| {
            rustls::Error::General(format!("plaintext reported but not readable: {e}"))
        })?;
        if chunk.is_empty() {
            return Err(rustls::Error::General(
                "plaintext reported but not readable: no bytes".into(),
            ));
        }
        let take = chunk.len().min(n);
        plain.extend_from_slice(&chunk[..take]);
        reader.consume(take);
        n -= take;
    }
    Ok(())
}

/// Appends every pending TLS record to `out`.
pub fn take_tls<D>(conn: &mut ConnectionCommon<D>, out: &mut Vec<u8>) {
    while conn.wants_write() {
        // Writing into a Vec cannot fail.
        if conn.write_tls(out).is_err() {
            break;
        }
    }
}
