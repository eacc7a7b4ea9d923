//! What rustls' callbacks reveal during one `process_new_packets` of one handshake: the leaf of
//! a refused client chain (rustls keeps no peer certificate once verification fails) and the
//! server's TLS 1.3 traffic secrets from the key log (to read back the alert rustls sealed, and
//! for kernel TLS).
//!
//! Why a thread-local at all: the verifier and the key log belong to the `ServerConfig`, shared
//! by every connection of every worker, and rustls calls them with no handle on the connection
//! they serve. What they see can only leave them through the thread they run on. Why it cannot
//! be blamed on the wrong connection: the slot is written only while armed, and it is armed by
//! [`during`] for exactly one synchronous call (one `engine::feed` of one connection's
//! handshake), which takes what was written and disarms it before returning. Nothing can await
//! inside, so no other connection of the worker runs while it is armed; and the verifier's
//! other callers (the re-check of a resumed session, the re-check after a reload) run
//! disarmed, so their refusals are theirs alone.

use std::cell::RefCell;

use rustls::crypto::tls13::OkmBlock;

/// What one armed call collected.
#[derive(Default)]
pub struct Captured {
    /// The leaf of the client chain the verifier refused.
    pub rejected_leaf: Option<Vec<u8>>,
    /// What refused it on revocation grounds, when that did (`ocsp:revoked`, ...).
    pub revocation: Option<&'static str>,
    /// Secrets the key log was given (`SERVER_HANDSHAKE_TRAFFIC_SECRET`, ...).
    pub secrets: Secrets,
}

/// A handshake's secrets as rustls logs them. Never logged, never kept past the handshake
/// (except the application secrets that kernel TLS needs); `OkmBlock` zeroes itself on drop.
#[derive(Default)]
pub struct Secrets {
    /// `SERVER_HANDSHAKE_TRAFFIC_SECRET`: seals our TLS 1.3 flight after ServerHello.
    pub server_handshake: Option<OkmBlock>,
    /// `SERVER_TRAFFIC_SECRET_0`: seals what we send after our Finished.
    pub server_traffic: Option<OkmBlock>,
    /// `CLIENT_TRAFFIC_SECRET_0`, only kept for kernel TLS.
    pub client_traffic: Option<OkmBlock>,
    /// TLS 1.2's `CLIENT_RANDOM`: the client random and the master secret, which seals what
    /// we send after our ChangeCipherSpec.
    pub tls12_master: Option<([u8; 32], OkmBlock)>,
}

impl Secrets {
    /// Keeps what `newer` holds, and what `self` held that `newer` does not.
    pub fn merge(&mut self, newer: Secrets) {
        self.server_handshake = newer.server_handshake.or(self.server_handshake.take());
        self.server_traffic = newer.server_traffic.or(self.server_traffic.take());
        self.client_traffic = newer.client_traffic.or(self.client_traffic.take());
        self.tls12_master = newer.tls12_master.or(self.tls12_master.take());
    }
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secrets(..)")
    }
}

thread_local! {
    /// `Some` only inside [`during`].
    static ARMED: RefCell<Option<Captured>> = const { RefCell::new(None) };
}

/// Runs `f` (one synchronous step of one connection's handshake) with the slot armed, and
/// returns what the callbacks wrote meanwhile. The slot is disarmed on return, and on unwind.
pub fn during<R>(f: impl FnOnce() -> R) -> (R, Captured) {
    /// Disarms on drop, so an unwind out of `f` cannot leave the slot armed.
    struct Armed;
    impl Armed {
        fn disarm(&self) -> Option<Captured> {
            ARMED.with(|slot| slot.borrow_mut().take())
        }
    }
    impl Drop for Armed {
        fn drop(&mut self) {
            self.disarm();
        }
    }
    ARMED.with(|slot| *slot.borrow_mut() = Some(Captured::default()));
    let armed = Armed;
    let result = f();
    (result, armed.disarm().unwrap_or_default())
}

/// Lets a callback write into the slot; does nothing unless armed.
pub fn record(write: impl FnOnce(&mut Captured)) {
    ARMED.with(|slot| {
        if let Some(captured) = slot.borrow_mut().as_mut() {
            write(captured);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_only_while_armed() {
        record(|c| c.rejected_leaf = Some(vec![1]));
        let ((), inside) = during(|| record(|c| c.rejected_leaf = Some(vec![2])));
        assert_eq!(inside.rejected_leaf, Some(vec![2]));
        record(|c| c.rejected_leaf = Some(vec![3]));
        let ((), next) = during(|| {});
        assert_eq!(
            next.rejected_leaf, None,
            "a write outside a scope leaked in"
        );
    }
}
