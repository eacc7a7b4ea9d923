//! Fuzzes `--crl` loading: arbitrary bytes go through `Crls::add_file`, the same code `serve`
//! and `check` run on each file after reading it (PEM `X509 CRL` blocks, or the whole file as
//! DER, each parsed with x509-parser).
//!
//! Invariant: it never panics; a refusal is an error whose message names the flag and the file;
//! an accepted file yields at least one CRL, with one description per DER.

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use ringtls::tls::Crls;

const NAME: &str = "fuzz/revoked.crl";

fuzz_target!(|bytes: &[u8]| {
    let mut crls = Crls::default();
    match crls.add_file(Path::new(NAME), bytes) {
        Err(e) => {
            let message = e.to_string();
            assert!(
                message.contains("--crl") && message.contains(NAME),
                "the error names neither flag nor file: {message:?}"
            );
        }
        Ok(()) => {
            assert!(!crls.ders.is_empty(), "accepted a file with no CRL");
            assert_eq!(crls.ders.len(), crls.infos.len());
        }
    }
});
