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
//!
//! `--ticket-keys FILE` replaces the generated keys with a fleet's shared ones, in HAProxy's
//! `tls-ticket-keys` format: one base64 line per 80-byte key (16 bytes of name, 32 of AES key,
//! 32 of HMAC key; the HMAC key is unused, AES-256-GCM authenticates). As in HAProxy, the
//! penultimate line encrypts (the only one, when there is one) and every line decrypts: a
//! rotation appends a new key on every replica first (it decrypts only), and the next one makes
//! it the encrypting key once every replica has it, so no replica ever sees a ticket it cannot
//! open. File keys do not rotate by themselves; the key name's first 4 bytes are the ticket's
//! key id. A reload re-reads the file, so tickets survive a reload that keeps their key (the
//! resumed session's chain is verified again all the same, `proxy::client::recheck_resumed`).

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
    /// Keys that only open tickets: the previous generated key, or the file's other lines.
    others: Vec<Arc<TicketKey>>,
    /// Unix seconds after which `current` is retired; `None` for file keys (never).
    rotate_at: Option<i64>,
}

/// The length of one `--ticket-keys` key (HAProxy's AES-256 form).
const FILE_KEY_LEN: usize = 80;
/// The most lines a `--ticket-keys` file may hold.
const FILE_KEYS_MAX: usize = 64;

/// The keys of a `--ticket-keys` file, checked.
pub(crate) fn read_file_keys(path: &std::path::Path) -> Result<Vec<[u8; 80]>, super::LoadError> {
    let bad = |line: usize, problem: String| super::LoadError::TicketKeys {
        path: path.to_owned(),
        line,
        problem,
    };
    let text = std::fs::read_to_string(path).map_err(|source| super::LoadError::Read {
        flag: "--ticket-keys",
        path: path.to_owned(),
        source,
    })?;
    let mut keys = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        // Never echo the line: it is key material.
        let bytes = <base64ct::Base64 as base64ct::Encoding>::decode_vec(line)
            .map_err(|_| bad(i + 1, "not base64".into()))?;
        let key: [u8; FILE_KEY_LEN] = bytes.try_into().map_err(|b: Vec<u8>| {
            bad(
                i + 1,
                format!(
                    "{} bytes; a key is {FILE_KEY_LEN} (openssl rand 80 | base64 -w0)",
                    b.len()
                ),
            )
        })?;
        keys.push(key);
    }
    if keys.is_empty() {
        return Err(bad(0, "no key in it".into()));
    }
    if keys.len() > FILE_KEYS_MAX {
        return Err(bad(
            0,
            format!("{} keys; at most {FILE_KEYS_MAX}", keys.len()),
        ));
    }
    Ok(keys)
}

/// Which line of `count` encrypts: the penultimate, or the only one (0-based).
pub(crate) fn encrypting_line(count: usize) -> usize {
    count.saturating_sub(2)
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
            others: Vec::new(),
            rotate_at: Some(now_unix() + i64::from(lifetime_secs)),
        };
        Some(Arc::new(Tickets {
            keys: ArcSwap::from_pointee(keys),
            lifetime: lifetime_secs,
        }))
    }

    /// The keys of a `--ticket-keys` file (`read_file_keys`): the penultimate encrypts, all
    /// decrypt; `None` only if a key is unusable (it is not, at 32 bytes).
    pub(crate) fn from_file(keys: &[[u8; 80]], lifetime_secs: u32) -> Option<Arc<Tickets>> {
        let made = keys
            .iter()
            .map(|k| {
                let mut id = [0u8; ID_LEN];
                id.copy_from_slice(&k[..ID_LEN]);
                let key = RandomizedNonceKey::new(&AES_256_GCM, &k[16..48]).ok()?;
                Some(Arc::new(TicketKey { id, key }))
            })
            .collect::<Option<Vec<_>>>()?;
        let current = Arc::clone(made.get(encrypting_line(made.len()))?);
        Some(Arc::new(Tickets {
            keys: ArcSwap::from_pointee(KeySet {
                current,
                others: made,
                rotate_at: None,
            }),
            lifetime: lifetime_secs,
        }))
    }

    /// Retires the current key if its period is over. Several workers may notice at once; the
    /// compare-and-swap lets exactly one new set win and the others' attempts are dropped.
    fn rotate_if_due(&self, now: i64) {
        let keys = self.keys.load();
        if keys.rotate_at.is_none_or(|at| now < at) {
            return;
        }
        let Some(fresh) = TicketKey::generate() else {
            return;
        };
        let rotated = Arc::new(KeySet {
            current: Arc::new(fresh),
            others: vec![keys.current.clone()],
            rotate_at: Some(now + i64::from(self.lifetime)),
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
        let key = std::iter::once(&keys.current)
            .chain(&keys.others)
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
    fn file_keys_encrypt_with_the_penultimate_and_decrypt_with_all() {
        let key = |b: u8| [b; 80];
        let two = Tickets::from_file(&[key(1), key(2)], 3600).expect("keys");
        let ticket = two.encrypt(b"s").expect("sealed");
        assert_eq!(
            ticket[..ID_LEN],
            [1; ID_LEN],
            "the penultimate line encrypts"
        );
        // The next rotation appends key 3: key 2 encrypts, key 1's tickets still open.
        let three = Tickets::from_file(&[key(1), key(2), key(3)], 3600).expect("keys");
        assert!(
            three.decrypt(&ticket).is_some(),
            "an old key still decrypts"
        );
        assert_eq!(three.encrypt(b"s").expect("sealed")[..ID_LEN], [2; ID_LEN]);
        // Key 1 dropped: its tickets are done.
        let dropped = Tickets::from_file(&[key(2), key(3)], 3600).expect("keys");
        assert_eq!(dropped.decrypt(&ticket), None);
        let one = Tickets::from_file(&[key(9)], 3600).expect("keys");
        assert_eq!(one.encrypt(b"s").expect("sealed")[..ID_LEN], [9; ID_LEN]);
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
