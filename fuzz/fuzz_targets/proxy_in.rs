//! Fuzzes the inbound PROXY protocol header (`proxy::proxy_in::parse`, `--accept-proxy`) on
//! arbitrary bytes, whole and at every cut.
//!
//! Invariants: nothing panics; a `Header { len }` never points past the input nor past the
//! longest header of its version; every prefix shorter than `len` is `Incomplete` (a header
//! cut into segments reads the same), and every longer input that starts with it gives the same
//! header (what follows is the client's, not the header's); no input longer than the longest
//! header is `Incomplete` (the read always ends).

#![no_main]

use libfuzzer_sys::fuzz_target;
use ringtls::proxy::proxy_in::{self, Parsed, V2_MAX};

fuzz_target!(|input: &[u8]| {
    let whole = proxy_in::parse(input);
    if input.len() > V2_MAX {
        assert_ne!(whole, Parsed::Incomplete, "a read past the longest header goes on");
    }
    if let Parsed::Header { len, .. } = &whole {
        let len = *len;
        assert!(len <= input.len() && len <= V2_MAX, "len {len} of {}", input.len());
        for cut in 0..len {
            assert_eq!(proxy_in::parse(&input[..cut]), Parsed::Incomplete, "cut {cut}");
        }
        assert_eq!(proxy_in::parse(&input[..len]), whole);
    }
});
