//! `--ready-requires-upstream`: `/readyz` is 503 (and says why) while the upstream cannot be
//! dialled, 200 once it can, and 503 again when it goes away; `/healthz` stays 200 throughout.

mod common;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use common::{Setup, http_get};

/// Polls `/readyz` (bounded) until its status line contains `want`; returns the body.
fn wait_readyz(metrics: std::net::SocketAddr, want: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (head, body) = http_get(metrics, "/readyz");
        if head.contains(want) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz never said {want}: {head} {body}"
        );
        std::thread::sleep(Duration::from_millis(100)); // readiness-ok: bounded poll of /readyz
    }
}

#[test]
fn readyz_follows_the_upstream() {
    let setup = Setup::new();
    // The upstream's port, held by a listener this test opens and closes.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let upstream = listener.local_addr().expect("addr");
    drop(listener);
    let server = setup
        .serve(upstream)
        .args(["--metrics", "127.0.0.1:0", "--ready-requires-upstream"])
        .start();
    let metrics = server.metrics.expect("metrics");
    let why = wait_readyz(metrics, "503");
    assert!(why.contains("upstream unreachable"), "{why}");
    assert!(why.contains(&upstream.to_string()), "{why}");
    assert!(
        http_get(metrics, "/healthz").0.contains("200"),
        "live all the same"
    );

    let listener = TcpListener::bind(upstream).expect("rebind the upstream's port");
    assert_eq!(wait_readyz(metrics, "200"), "ready\n");
    drop(listener);
    wait_readyz(metrics, "503");
}

#[test]
fn ready_requires_upstream_needs_metrics() {
    let setup = Setup::new();
    let Err(out) = setup
        .serve("127.0.0.1:9".parse().expect("addr"))
        .args(["--ready-requires-upstream"])
        .try_start()
    else {
        panic!("started");
    };
    assert_eq!(out.code, Some(64));
    assert!(
        out.stderr
            .contains("--ready-requires-upstream needs --metrics"),
        "{}",
        out.stderr
    );
}
