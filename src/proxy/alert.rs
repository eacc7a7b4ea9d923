//! Which alert a refused client was sent, read back from the records that went out, never
//! predicted from the error: rustls picks the alert deep inside its state machine, sometimes
//! sends none, and the same error kind can go out as different alerts (a bad Finished is
//! `decrypt_error`, a bad CCS `unexpected_message`).
//!
//! A plaintext alert record (type 21, two bytes) names its description. A TLS 1.3 alert after
//! ServerHello is sealed (type 23) under the server handshake traffic secret, or the server
//! application secret once our Finished is out; the handshake keeps both (`tls::capture`) and
//! the record is opened here with the negotiated suite's AEAD. A TLS 1.2 alert is plaintext
//! until our ChangeCipherSpec (in a full handshake, every refusal comes before it); after it
//! (a resumed handshake) it is opened with the keys the master secret gives. A record no key
//! opens is logged as `sealed`, which says something went out without pretending to know what.
//!
//! Where rustls closes without any alert while nothing of ours is encrypted yet (RFC 8446 §6
//! requires one), `ours` picks the alert we then send ourselves, in plaintext.

use rustls::{Error, PeerMisbehaved, ServerConnection, SupportedCipherSuite};

use crate::outcome::Sent;
use crate::tls::capture::Secrets;
use crate::tls::secrets;

/// RFC 8446 §6.2's decode_error.
pub const DECODE_ERROR: u8 = 50;

/// TLS record content types (RFC 8446 §5.1).
const CHANGE_CIPHER_SPEC: u8 = 20;
const ALERT: u8 = 21;
const HANDSHAKE: u8 = 22;
const APPLICATION_DATA: u8 = 23;

/// The complete records in `out`, each with its header.
pub fn records(out: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = out;
    std::iter::from_fn(move || {
        let len = usize::from(u16::from_be_bytes([*rest.get(3)?, *rest.get(4)?]));
        let record = rest.get(..5 + len)?;
        rest = &rest[5 + len..];
        Some(record)
    })
}

/// What the records we wrote tell about the connection so far.
#[derive(Debug, Default, Clone, Copy)]
pub struct Written {
    /// Records we sealed (type 23): the sequence numbers a sealed alert may carry are below.
    pub sealed: u64,
    /// Whether the client must now expect encrypted records from us: we sent a
    /// ChangeCipherSpec (TLS 1.2, and TLS 1.3 middlebox compatibility) or a sealed record.
    pub encrypting: bool,
    /// Whether anything at all went out.
    pub any: bool,
    /// The random of our ServerHello (to derive TLS 1.2 keys).
    pub server_random: Option<[u8; 32]>,
    /// Records since our last ChangeCipherSpec (TLS 1.2 sequence numbers restart there).
    pub since_ccs: u64,
}

impl Written {
    /// Counts what `out` (just written) adds.
    pub fn add(&mut self, out: &[u8]) {
        for record in records(out) {
            self.any = true;
            self.since_ccs += 1;
            match record[0] {
                APPLICATION_DATA => {
                    self.sealed += 1;
                    self.encrypting = true;
                }
                CHANGE_CIPHER_SPEC => {
                    self.encrypting = true;
                    self.since_ccs = 0;
                }
                // The first ServerHello (RFC 8446 §4.1.3): type 2, length, version, random.
                HANDSHAKE if !self.encrypting && self.server_random.is_none() => {
                    if let Some(random) = record
                        .get(5..)
                        .filter(|m| m.first() == Some(&2))
                        .and_then(|m| m.get(6..38))
                    {
                        self.server_random = random.try_into().ok();
                    }
                }
                _ => {}
            }
        }
    }
}

/// The alert in the last record of `out` (what the failing step queued), if it holds one.
/// `upto`: what this handshake wrote, `out` included.
pub fn read(out: &[u8], conn: &ServerConnection, secrets: &Secrets, upto: &Written) -> Sent {
    let Some(last) = records(out).last() else {
        return Sent::None;
    };
    let opened = |opened| match opened {
        secrets::Opened::Alert(description) => Sent::Alert(description),
        secrets::Opened::NotAnAlert => Sent::None,
        // It authenticated under none of our keys: we cannot say what it was.
        secrets::Opened::Unreadable => Sent::Sealed,
    };
    match (last[0], last.len() - 5) {
        (ALERT, 2) => Sent::Alert(last[6]),
        // TLS 1.2 after our ChangeCipherSpec: sealed under keys from the master secret.
        (ALERT, _) => match (conn.negotiated_cipher_suite(), upto.server_random) {
            (Some(SupportedCipherSuite::Tls12(suite)), Some(random)) => opened(
                secrets::open_tls12_alert(suite, secrets, &random, last, upto.since_ccs),
            ),
            _ => Sent::Sealed,
        },
        (APPLICATION_DATA, _) => match conn.negotiated_cipher_suite() {
            Some(SupportedCipherSuite::Tls13(suite)) => {
                opened(secrets::open_alert(suite, secrets, last, upto.sealed))
            }
            _ => Sent::Sealed,
        },
        _ => Sent::None,
    }
}

/// The alert we send ourselves when rustls refused the client without one while the connection
/// is still plaintext, per RFC 8446 §6.2:
/// - decode_error (50) for a message that cannot be taken as sent: one over rustls' 64 KiB
///   handshake limit (`HandshakePayloadTooLarge`, or more record bytes than its buffer holds),
///   or a ClientHello cut short by the client's close ("the length of the message was
///   incorrect"); rustls itself answers every other `InvalidMessage` with decode_error;
/// - unexpected_message (10) for a record or message not allowed where it came;
/// - illegal_parameter (47) for other misbehaviour, handshake_failure (40) for an
///   incompatible peer, and internal_error (80) when the refusal is not the client's doing;
/// - none after the client's own fatal alert (§6.2: both sides then close at once).
pub fn ours(error: &Error) -> Option<u8> {
    Some(match error {
        Error::AlertReceived(_) => return None,
        Error::InvalidMessage(_) => DECODE_ERROR,
        Error::InappropriateMessage { .. }
        | Error::InappropriateHandshakeMessage { .. }
        | Error::PeerMisbehaved(PeerMisbehaved::IllegalMiddleboxChangeCipherSpec) => 10,
        Error::PeerMisbehaved(_) => 47,
        Error::PeerIncompatible(_) => 40,
        _ => 80,
    })
}

/// A fatal plaintext alert record (RFC 8446 §5.1, §6: level 2 = fatal).
pub fn plaintext_record(description: u8) -> [u8; 7] {
    [ALERT, 3, 3, 0, 2, 2, description]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_complete_records_and_counts_what_is_sealed() {
        let mut out = vec![22, 3, 3, 0, 1, 2];
        out.extend([20, 3, 3, 0, 1, 1]);
        out.extend([23, 3, 3, 0, 3, 9, 9, 9]);
        out.extend([21, 3, 3, 0, 2]); // incomplete: not a record yet
        assert_eq!(records(&out).count(), 3);
        let mut written = Written::default();
        written.add(&out);
        assert_eq!(written.sealed, 1);
        assert!(written.encrypting && written.any);
    }
}
