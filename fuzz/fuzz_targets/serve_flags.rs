//! Fuzzes `serve`'s command line: an argv built from `serve`'s flag names and arbitrary strings
//! goes through argh (`Cli::from_args`, as `main` calls it) and, when that parses, through
//! `ServeConfig::from_args_and_activation` (every cross-flag check; no socket-activation
//! environment). `parse_duration` and `parse_size` also get the raw strings directly.
//!
//! Invariant: nothing panics; argh's refusals and `--help` have output, and a config refusal is
//! a usage or configuration error (exit 64 or 78) with a non-empty message.
//!
//! No DNS: `--upstream` and `--listen` resolve names with getaddrinfo, which could query a
//! resolver over the network. A value that would reach it is replaced by an IP:PORT built from
//! its bytes; values that `parse_listen`/`connect::resolve` refuse or handle without a lookup
//! (an IP:PORT, `unix:/path`, no `:PORT` suffix) are kept as they are.

#![no_main]

use std::net::SocketAddr;

use arbitrary::Arbitrary;
use argh::FromArgs;
use libfuzzer_sys::fuzz_target;
use ringtls::Error;
use ringtls::ServeConfig;
use ringtls::cli::{Cli, Command};
use ringtls::config::{parse_duration, parse_size};

const FLAGS: &[&str] = &[
    "--config",
    "--client-auth",
    "--listen",
    "--upstream",
    "--crt",
    "--key",
    "--mutual-tls-cas",
    "--crl",
    "--allow-cn",
    "--allow-ou",
    "--allow-dns",
    "--allow-uri",
    "--allow-all",
    "--proxy-protocol",
    "--metrics",
    "--log-format",
    "--alpn",
    "--tls-min",
    "--unsafe-keylog",
    "--threads",
    "--handshake-timeout",
    "--connect-timeout",
    "--idle-timeout",
    "--max-conns",
    "--watch",
    "--reauthorize-on-reload",
    "--drain-timeout",
    "--help",
    "--",
];

#[derive(Arbitrary, Debug)]
enum Arg {
    /// One of `serve`'s flags (index into `FLAGS`, wrapped).
    Flag(u8),
    Raw(String),
}

/// Whether resolving `s` as `HOST:PORT` could call getaddrinfo: std parses an IP:PORT itself,
/// and refuses before any lookup what has no `:` or whose port is not a u16 (the same check
/// `connect::resolve` makes first).
fn needs_lookup(s: &str) -> bool {
    s.parse::<SocketAddr>().is_err()
        && s.rsplit_once(':')
            .is_some_and(|(_, port)| port.parse::<u16>().is_ok())
}

/// An IP:PORT standing for a name, so the lookup path's neighbours stay covered.
fn offline(s: &str) -> String {
    let h = s.bytes().fold(0u32, |h, b| h.rotate_left(5) ^ u32::from(b));
    let port = s.rsplit_once(':').map_or("0", |(_, p)| p);
    format!(
        "127.{}.{}.{}:{port}",
        h >> 16 & 0xff,
        h >> 8 & 0xff,
        h & 0xff
    )
}

fuzz_target!(|args: Vec<Arg>| {
    let argv: Vec<String> = std::iter::once("serve".to_owned())
        .chain(args.into_iter().map(|a| match a {
            Arg::Flag(i) => FLAGS[usize::from(i) % FLAGS.len()].to_owned(),
            Arg::Raw(s) => s,
        }))
        .collect();

    for s in &argv[1..] {
        if let Err(e) = parse_duration("--idle-timeout", s) {
            assert!(
                matches!(e, Error::Usage(ref m) if m.contains("--idle-timeout")),
                "{e:?}"
            );
        }
        if let Err(e) = parse_size("--bytes", s) {
            assert!(
                matches!(e, Error::Usage(ref m) if m.contains("--bytes")),
                "{e:?}"
            );
        }
    }

    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let mut args = match Cli::from_args(&["ringtls"], &argv) {
        Ok(Cli {
            command: Command::Serve(args),
        }) => args,
        Ok(other) => panic!("`serve ...` parsed as another command: {other:?}"),
        Err(early) => {
            assert!(
                !early.output.trim().is_empty(),
                "argh exited with no output"
            );
            return;
        }
    };
    if let Some(upstream) = &mut args.upstream {
        if !upstream.starts_with("unix:") && needs_lookup(upstream) {
            *upstream = offline(upstream);
        }
    }
    for listen in &mut args.listen {
        if needs_lookup(listen) {
            *listen = offline(listen);
        }
    }
    if let Err(e) = ServeConfig::from_args_and_activation(args, None) {
        // A `--config` file that cannot be read or used is an error naming it.
        assert!(
            matches!(e, Error::Usage(_) | Error::Config(_) | Error::File(_)),
            "{e:?}"
        );
        assert!(!e.to_string().trim().is_empty(), "empty message: {e:?}");
    }
});
