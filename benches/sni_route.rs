//! SNI routing's cost per connection: `tls::sni_route::Routes::route` in a table of 10 names
//! against one of 10,000 (an exact hit, a wildcard hit, a miss that falls to the default), and
//! `tls::client_hello::parse` of a real rustls ClientHello, in one record and cut into records
//! of 100 bytes. The figure that matters is lookup(10,000) / lookup(10): near 1, the table
//! costs the same however many endpoints a listener has.
//!
//! `cargo bench --bench sni_route` prints a table; `-- --json` prints one JSON line.

mod common;

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::median;
use ringtls::tls::client_hello::{self, Hello};
use ringtls::tls::sni_route::Routes;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, RootCertStore};

// The binary's allocator: the fragmented parse allocates its reassembly buffer.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const ROUNDS: usize = 21;
const LOOKUPS: u32 = 200_000;
const PARSES: u32 = 50_000;
/// Distinct names looked up in turn, spread over the table, so that the large table is not
/// measured with a few entries hot in the cache.
const QUERIES: usize = 1024;

/// A table of `n` names, half exact and half wildcards, with a default; and the names to look
/// up for an exact hit, a wildcard hit and a miss. Every name has the same length whatever `n`.
fn table(n: usize) -> (Routes<usize>, [Vec<String>; 3]) {
    let half = n / 2;
    let mut routes = Routes::new();
    for i in 0..half {
        routes
            .insert(&format!("svc-{i:05}.example.com"), i)
            .expect("exact");
        routes
            .insert(&format!("*.tenant-{i:05}.example.net"), half + i)
            .expect("wildcard");
    }
    routes.set_default(usize::MAX).expect("default");
    // A stride coprime with the table's halves visits every entry before repeating.
    let pick = |k: usize| k * 7919 % half;
    let names = |f: &dyn Fn(usize) -> String| (0..QUERIES).map(|k| f(pick(k))).collect();
    let queries = [
        names(&|i| format!("svc-{i:05}.example.com")),
        names(&|i| format!("www.tenant-{i:05}.example.net")),
        names(&|i| format!("svc-{i:05}.example.org")),
    ];
    (routes, queries)
}

/// One round: `LOOKUPS` lookups of `queries` in turn.
fn per_lookup(routes: &Routes<usize>, queries: &[String]) -> Duration {
    let t = Instant::now();
    for k in 0..LOOKUPS as usize {
        black_box(routes.route(Some(black_box(queries[k % QUERIES].as_str()))));
    }
    t.elapsed()
}

/// Nanoseconds per parse of `input`, median of `ROUNDS`.
fn per_parse(input: &[u8]) -> f64 {
    assert!(matches!(
        client_hello::parse(input),
        Hello::Complete { sni: Some(_), .. }
    ));
    let total = median(
        (0..ROUNDS)
            .map(|_| {
                let t = Instant::now();
                for _ in 0..PARSES {
                    black_box(client_hello::parse(black_box(input)));
                }
                t.elapsed()
            })
            .collect::<Vec<Duration>>(),
    );
    total.as_secs_f64() * 1e9 / f64::from(PARSES)
}

/// The first flight of a rustls client (TLS 1.3 and 1.2, the provider `serve` uses): one
/// ClientHello record with SNI.
fn rustls_hello() -> Vec<u8> {
    let config = ClientConfig::builder_with_provider(ringtls::tls::provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(RootCertStore::empty())
        .with_no_client_auth();
    let name = ServerName::try_from("api.example.com").expect("name");
    let mut client = ClientConnection::new(Arc::new(config), name).expect("client");
    let mut wire = Vec::new();
    while client.wants_write() {
        client.write_tls(&mut wire).expect("write_tls");
    }
    wire
}

/// `wire`'s one record cut into records of `size` bytes of payload.
fn refragment(wire: &[u8], size: usize) -> Vec<u8> {
    let (header, payload) = wire.split_at(5);
    let mut out = Vec::new();
    for chunk in payload.chunks(size) {
        out.extend(&header[..3]);
        out.extend((chunk.len() as u16).to_be_bytes());
        out.extend(chunk);
    }
    out
}

fn main() {
    let json = std::env::args().any(|a| a == "--json");
    let cases = ["exact hit", "wildcard hit", "miss -> default"];
    let (small, small_queries) = table(10);
    let (large, large_queries) = table(10_000);
    assert_eq!((small.len(), large.len()), (11, 10_001));
    // Rounds interleave the two tables, so that both see the same machine (a build on the
    // other core moved whole runs' figures by half), and the ratio is taken within each round.
    let mut samples = vec![[Vec::new(), Vec::new()]; cases.len()];
    let mut ratios = Vec::new();
    for _ in 0..ROUNDS {
        let (mut sum_small, mut sum_large) = (Duration::ZERO, Duration::ZERO);
        for (case, [of_small, of_large]) in samples.iter_mut().enumerate() {
            let s = per_lookup(&small, &small_queries[case]);
            let l = per_lookup(&large, &large_queries[case]);
            of_small.push(s);
            of_large.push(l);
            sum_small += s;
            sum_large += l;
        }
        ratios.push(sum_large.as_secs_f64() / sum_small.as_secs_f64());
    }
    let ns = |d: Duration| d.as_secs_f64() * 1e9 / f64::from(LOOKUPS);
    let figures: Vec<[f64; 2]> = samples
        .into_iter()
        .map(|[s, l]| [ns(median(s)), ns(median(l))])
        .collect();
    ratios.sort_by(f64::total_cmp);
    let ratio = ratios[ratios.len() / 2];
    let hello = rustls_hello();
    let fragmented = refragment(&hello, 100);
    let records = hello.len().saturating_sub(5).div_ceil(100);
    let parse_one = per_parse(&hello);
    let parse_fragmented = per_parse(&fragmented);
    if json {
        println!(
            "{{\"bench\":\"sni_route\",\"exact_10_ns\":{:.1},\"exact_10000_ns\":{:.1},\"wildcard_10_ns\":{:.1},\"wildcard_10000_ns\":{:.1},\"miss_10_ns\":{:.1},\"miss_10000_ns\":{:.1},\"ratio_10000_to_10\":{ratio:.3},\"hello_bytes\":{},\"parse_ns\":{parse_one:.1},\"parse_fragmented_ns\":{parse_fragmented:.1}}}",
            figures[0][0],
            figures[0][1],
            figures[1][0],
            figures[1][1],
            figures[2][0],
            figures[2][1],
            hello.len()
        );
        return;
    }
    println!("SNI routing, ns per call (median of {ROUNDS} rounds):");
    println!("  Routes::route          10 names  10,000 names   ratio");
    for (case, [s, l]) in cases.iter().zip(&figures) {
        println!("    {case:<18} {s:>10.1} {l:>13.1} {:>7.2}", l / s);
    }
    println!("  lookup(10,000) / lookup(10), all three, median of the rounds' ratios: {ratio:.2}");
    println!(
        "  client_hello::parse, rustls ClientHello of {} bytes: one record {parse_one:.0} ns, {records} records of 100 bytes {parse_fragmented:.0} ns",
        hello.len()
    );
}
