//! `--ticket-keys FILE`: replicas that share a key file (HAProxy's `tls-ticket-keys` format)
//! resume each other's sessions; replicas that do not, do not; a rotation (a key appended on
//! every replica, reloaded with SIGHUP) keeps resumption working, and a dropped key ends it.
//! The keys are never logged; a file readable by others gets a WARN.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use common::client::connect_with;
use common::{Setup, Upstream};
use rustls::HandshakeKind;

/// `n` random 80-byte keys, base64, one per line.
fn keys(n: usize) -> Vec<String> {
    (0..n)
        .map(|_| {
            let mut key = [0u8; 80];
            getrandom(&mut key);
            base64(&key)
        })
        .collect()
}

fn getrandom(buf: &mut [u8]) {
    use std::io::Read;
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(buf))
        .expect("random bytes");
}

/// Standard base64 with padding.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn write_keys(path: &Path, lines: &[String]) {
    std::fs::write(path, lines.join("\n") + "\n").expect("write keys");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
}

fn replica(setup: &Setup, upstream: &Upstream, keys: &Path) -> common::Server {
    setup
        .serve(upstream.addr)
        .args(["--ticket-keys".as_ref(), keys.as_os_str()])
        .start()
}

/// A fresh client session store: a ticket from `from`, then a handshake with `to`.
fn resumes_across(setup: &Setup, from: &common::Server, to: &common::Server) -> bool {
    let alice = setup.ca.client("Alice");
    let config: Arc<rustls::ClientConfig> = setup.client(&alice).config();
    assert_eq!(
        connect_with(from.addr(), config.clone()),
        HandshakeKind::Full
    );
    connect_with(to.addr(), config) == HandshakeKind::Resumed
}

#[test]
fn replicas_sharing_a_key_file_resume_each_others_sessions() {
    let setup = Setup::new();
    let upstream = Upstream::echo();
    let lines = keys(2);
    let shared = setup.dir.join("shared.keys");
    write_keys(&shared, &lines);
    // Group-readable, as a pod's fsGroup or a service's group reads it: not warned about.
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o640)).expect("chmod");
    let (a, b) = (
        replica(&setup, &upstream, &shared),
        replica(&setup, &upstream, &shared),
    );
    assert!(
        resumes_across(&setup, &a, &b),
        "a ticket from A resumes on B"
    );
    assert!(resumes_across(&setup, &b, &a), "and the other way");
    let line = a.wait_for_line(&["ticket_keys.loaded"]);
    assert!(
        line.contains("keys=2") && line.contains("encrypting=1"),
        "{line}"
    );
    for l in &lines {
        assert!(!a.stderr().contains(l.as_str()), "a key was logged");
    }
    assert!(
        !a.stderr().contains("ticket_keys.readable"),
        "0640 is not readable by others"
    );

    let own = setup.dir.join("own.keys");
    write_keys(&own, &keys(1));
    let c = replica(&setup, &upstream, &own);
    assert!(
        !resumes_across(&setup, &a, &c),
        "another file's tickets do not open"
    );
}

#[test]
fn a_rotation_keeps_resumption_and_a_dropped_key_ends_it() {
    let setup = Setup::new();
    let upstream = Upstream::echo();
    let [k1, k2, k3]: [String; 3] = keys(3).try_into().expect("three");
    let (pa, pb) = (setup.dir.join("a.keys"), setup.dir.join("b.keys"));
    for p in [&pa, &pb] {
        write_keys(p, &[k1.clone(), k2.clone()]);
    }
    let (a, b) = (
        replica(&setup, &upstream, &pa),
        replica(&setup, &upstream, &pb),
    );
    // A ticket sealed with k1 (the penultimate of two), kept by this client.
    let alice = setup.ca.client("Alice");
    let config = setup.client(&alice).config();
    assert_eq!(connect_with(a.addr(), config.clone()), HandshakeKind::Full);

    // k3 appended everywhere: k2 encrypts now, k1 still decrypts.
    for (p, server) in [(&pa, &a), (&pb, &b)] {
        write_keys(p, &[k1.clone(), k2.clone(), k3.clone()]);
        server.signal(libc::SIGHUP);
        server.wait_for_line(&["reload.ok", "generation=2"]);
    }
    assert_eq!(
        connect_with(b.addr(), config),
        HandshakeKind::Resumed,
        "the k1 ticket resumes on B after the rotation"
    );
    assert!(
        resumes_across(&setup, &a, &b),
        "new tickets (k2) resume too"
    );

    // A ticket sealed with k2, then k1 and k2 dropped: it no longer opens.
    let config = setup.client(&alice).config();
    assert_eq!(connect_with(a.addr(), config.clone()), HandshakeKind::Full);
    write_keys(&pb, std::slice::from_ref(&k3));
    b.signal(libc::SIGHUP);
    b.wait_for_line(&["reload.ok", "generation=3"]);
    assert_eq!(connect_with(b.addr(), config), HandshakeKind::Full);
}

#[test]
fn a_key_file_readable_by_others_is_warned_about_and_bad_lines_refused() {
    let setup = Setup::new();
    let upstream = Upstream::echo();
    let open = setup.dir.join("open.keys");
    write_keys(&open, &keys(1));
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let server = replica(&setup, &upstream, &open);
    let line = server.wait_for_line(&["ticket_keys.readable"]);
    assert!(line.contains("mode=644"), "{line}");

    let bad = setup.dir.join("bad.keys");
    write_keys(&bad, &[keys(1)[0].clone(), base64(&[7u8; 48])]);
    let Err(out) = setup
        .serve(upstream.addr)
        .args(["--ticket-keys".as_ref(), bad.as_os_str()])
        .try_start()
    else {
        panic!("a 48-byte key was accepted");
    };
    assert_ne!(out.code, Some(0));
    assert!(
        out.stderr.contains("line 2: 48 bytes; a key is 80"),
        "{}",
        out.stderr
    );
}
