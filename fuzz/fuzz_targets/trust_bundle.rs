//! Fuzzes `--mutual-tls-cas` bundle loading: arbitrary bytes go through
//! `trust_store::add_bundle`, the same code `serve` and `check` run on each file after reading it
//! (PEM blocks with prose between them, DER decoding, the RFC 5280 CA checks, duplicates).
//!
//! Invariant: it never panics; a refusal is an error whose message names the flag and the file;
//! an accepted bundle holds at least one anchor, each one a CA, and loading it a second time
//! marks every anchor a duplicate instead of adding it again.

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use ringtls::tls::TrustStore;
use ringtls::tls::trust_store::add_bundle;

const NAME: &str = "fuzz/cas.pem";

fuzz_target!(|bytes: &[u8]| {
    let path = Path::new(NAME);
    // A fixed clock keeps a crash reproducible; the validity warnings still see both sides.
    let now = 1_700_000_000;
    let mut store = TrustStore::empty();
    match add_bundle(&mut store, path, bytes, now) {
        Err(e) => {
            let message = e.to_string();
            assert!(
                message.contains("--mutual-tls-cas") && message.contains(NAME),
                "the error names neither flag nor file: {message:?}"
            );
        }
        Ok(()) => {
            assert!(!store.anchors.is_empty(), "accepted a bundle with no CA");
            assert!(store.anchors.iter().all(|a| a.info.ca.is_ok()));
            let roots = store.roots.len();
            let anchors = store.anchors.len();
            let again = add_bundle(&mut store, path, bytes, now);
            assert!(
                again.is_ok(),
                "the same bundle failed the second time: {again:?}"
            );
            assert_eq!(
                store.roots.len(),
                roots,
                "a duplicate was added to the roots"
            );
            assert!(
                store.anchors[anchors..]
                    .iter()
                    .all(|a| a.warnings.iter().any(|w| w.starts_with("duplicate of"))),
                "a repeated CA is not flagged as a duplicate"
            );
        }
    }
});
