//! Fuzzes the routing read of a connection's first bytes: `tls::client_hello::parse` on
//! arbitrary input, whole and at every cut the fuzzer's length picks, and the SNI it finds
//! looked up in a `tls::sni_route::Routes` table with exact names, a wildcard and a default.
//!
//! Invariants: nothing panics; `Complete { end }` never points past the input, and a prefix
//! ending before `end` is never `Complete` with a different SNI (what a read more could change
//! is only whether the hello is whole); an `Incomplete` need is at least 1; a lookup of any
//! SNI returns an entry of the table.

#![no_main]

use libfuzzer_sys::fuzz_target;
use ringtls::tls::client_hello::{self, Hello};
use ringtls::tls::sni_route::Routes;

fuzz_target!(|input: &[u8]| {
    let mut routes = Routes::new();
    let _ = routes.insert("api.example.com", 1u8);
    let _ = routes.insert("*.example.net", 2u8);
    let _ = routes.set_default(0u8);
    match client_hello::parse(input) {
        Hello::Complete { end, sni } => {
            assert!(end <= input.len(), "end {end} past {}", input.len());
            let chosen = routes.route(sni.as_deref());
            assert!(matches!(chosen, Some(0..=2)));
            // The same bytes up to `end` say the same: what follows the hello is not part of it.
            match client_hello::parse(&input[..end]) {
                Hello::Complete {
                    end: again,
                    sni: same,
                } => {
                    assert_eq!(again, end);
                    assert_eq!(same, sni);
                }
                other => panic!("the hello alone is {other:?}"),
            }
        }
        Hello::Incomplete { need } => assert!(need >= 1),
        Hello::Malformed(why) => assert!(!why.is_empty()),
    }
});
