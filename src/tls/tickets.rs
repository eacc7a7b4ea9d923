//! Stateless session tickets shared by every worker, without a lock on the handshake path.
//!
//! rustls' defaults keep resumption state in a `Mutex`-guarded session cache (shared mutable
//! state touched on every handshake) or rotate ticket keys behind an `RwLock`. Here the key set
//! sits in an `ArcSwap`: issuing or opening a ticket is a lock-free load, and rotation is a
//! compare-and-swap done by whichever handshake first notices the period is over.
//!
//! A ticket is `key id (4) ‖ issued at (8, big-endian Unix seconds) ‖ nonce (12) ‖ AES-256-GCM
//! ciphertext and tag`, with the id and time authenticated as associated data. Tickets older than
//! the lifetime, or sealed by a key two rotations old, are refused, so a stolen ticket key stops
//! being useful after at most two periods. Every reload builds a new `ServerConfig` and so a new
//! key set: tickets issued under an old trust store are never honoured after a trust change.

use std::sync::Arc;

use arc_swap::ArcSwap;
use aws_lc_rs::aead::{AES_256_GCM, Aad, Nonce, RandomizedNonceKey};
use rustls::server::ProducesTickets;

use super::x509::now_unix;

const ID_LEN: usize = 4;
const HEADER_LEN: usize = ID_LEN + 8 + 12;

struct TicketKey {
    id: [u8; ID_LEN],
    key: RandomizedNonceKey,
}

impl TicketKey {
    fn generate() -> Option<TicketKey> {
        let mut id = [0u8; ID_LEN];
        let mut secret = [0u8; 32];
        aws_lc_rs::rand::fill(&mut id).ok()?;
        aws_lc_rs::rand::fill(&mut secret).ok()?;
        let key = RandomizedNonceKey::new(&AES_256_GCM, &secret).ok()?;
        Some(TicketKey { id, key })
    }
}

struct KeySet {
    current: Arc<TicketKey>,
    previous: Option<Arc<TicketKey>>,
    /// Unix seconds after which `current` is retired.
    rotate_at: i64,
}

/// The ticket producer installed in the shared `ServerConfig`.
pub(crate) struct Tickets {
    keys: ArcSwap<KeySet>,
    /// Seconds a ticket is valid, and the rotation period.
    lifetime: u32,
}

impl std::fmt::Debug for Tickets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("Tickets")
            .field("lifetime", &self.lifetime)
            .finish_non_exhaustive()
    }
}

impl Tickets {
    /// A fresh key set; `None` only if the system random generator fails.
    pub(crate) fn new(lifetime_secs: u32) -> Option<Arc<Tickets>> {
        let keys = KeySet {
            current: Arc::new(TicketKey::generate()?),
            previous: None,
            rotate_at: now_unix() + i64::from(lifetime_secs),
        };
        Some(Arc::new(Tickets {
            keys: ArcSwap::from_pointee(keys),
            lifetime: lifetime_secs,
        }))
    }

    /// Retires the current key if its period is over. Several workers may notice at once; the
    /// compare-and-swap lets exactly one new set win and the others' attempts are dropped.
    fn rotate_if_due(&self, now: i64) {
        let keys = self.keys.load();
        if now < keys.rotate_at {
            return;
        }
        let Some(fresh) = TicketKey::generate() else {
            return;
        };
        let rotated = Arc::new(KeySet {
            current: Arc::new(fresh),
            previous: Some(keys.current.clone()),
            rotate_at: now + i64::from(self.lifetime),
        });
        let _ = self.keys.compare_and_swap(&*keys, rotated);
    }
}

impl ProducesTickets for Tickets {
    fn enabled(&self) -> bool {
        true
    }

    fn lifetime(&self) -> u32 {
        self.lifetime
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        let now = now_unix();
        self.rotate_if_due(now);
        let keys = self.keys.load();
        let mut header = [0u8; ID_LEN + 8];
        header[..ID_LEN].copy_from_slice(&keys.current.id);
        header[ID_LEN..].copy_from_slice(&now.to_be_bytes());
        let mut sealed = plain.to_vec();
        let nonce = keys
            .current
            .key
            .seal_in_place_append_tag(Aad::from(&header), &mut sealed)
            .ok()?;
        let mut ticket = Vec::with_capacity(HEADER_LEN + sealed.len());
        ticket.extend_from_slice(&header);
        ticket.extend_from_slice(nonce.as_ref());
        ticket.extend_from_slice(&sealed);
        Some(ticket)
    }

    fn decrypt(&self, ticket: &[u8]) -> Option<Vec<u8>> {
        if ticket.len() < HEADER_LEN {
            return None;
        }
        let (header, rest) = ticket.split_at(ID_LEN + 8);
        let (nonce, sealed) = rest.split_at(12);
        let issued = i64::from_be_bytes(header[ID_LEN..].try_into().ok()?);
        let age = now_unix().checked_sub(issued)?;
        if !(0..=i64::from(self.lifetime)).contains(&age) {
            return None;
        }
        let keys = self.keys.load();
        let key = [Some(&keys.current), keys.previous.as_ref()]
            .into_iter()
            .flatten()
            .find(|k| k.id[..] == header[..ID_LEN])?;
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut buf = sealed.to_vec();
        let plain_len = key
            .key
            .open_in_place(nonce, Aad::from(header), &mut buf)
            .ok()?
            .len();
        buf.truncate(plain_len);
        Some(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_what_it_sealed() {
        let t = Tickets::new(3600).expect("keys");
        let ticket = t.encrypt(b"session state").expect("sealed");
        assert_eq!(t.decrypt(&ticket).as_deref(), Some(&b"session state"[..]));
    }

    #[test]
    fn refuses_tampered_and_foreign_tickets() {
        let t = Tickets::new(3600).expect("keys");
        let mut ticket = t.encrypt(b"session state").expect("sealed");
        let last = ticket.len() - 1;
        ticket[last] ^= 1;
        assert_eq!(t.decrypt(&ticket), None, "tampered tag accepted");
        let other = Tickets::new(3600).expect("keys");
        let foreign = other.encrypt(b"session state").expect("sealed");
        assert_eq!(
            t.decrypt(&foreign),
            None,
            "another key set's ticket accepted"
        );
        assert_eq!(t.decrypt(&foreign[..10]), None, "truncated ticket accepted");
    }

    #[test]
    fn refuses_tickets_older_than_lifetime_and_after_two_rotations() {
        let t = Tickets::new(60).expect("keys");
        let ticket = t.encrypt(b"s").expect("sealed");
        // One rotation: the previous key still opens it.
        t.rotate_if_due(now_unix() + 61);
        assert!(
            t.decrypt(&ticket).is_some(),
            "ticket lost after one rotation"
        );
        // Two rotations: its key is gone.
        t.rotate_if_due(now_unix() + 200);
        assert_eq!(t.decrypt(&ticket), None, "ticket outlived two rotations");
    }
}
