//! The command line as a user meets it: usage errors (exit 64), `pki` (its names, owners and
//! modes on real files), `demo`, the listening line, and refusing a port that is already taken.

mod common;

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::Path;
use std::time::Duration;

use common::process::run_with_timeout;
use common::{ClientOpts, Serve, Setup, Upstream, connect, run};
use x509_parser::prelude::*;

const PKI_FILES: [&str; 7] = [
    "ca.pem",
    "ca.key",
    "server.pem",
    "server.key",
    "client.pem",
    "client.key",
    "client-cert-and-key.pem",
];

#[test]
fn exits_64_on_unknown_flag() {
    run(["serve", "--no-such-flag"]).assert_code(64);
    run(["check", "--no-such-flag"]).assert_code(64);
}

#[test]
fn exits_64_on_unknown_subcommand() {
    run(["frobnicate"]).assert_code(64);
}

#[test]
fn exits_64_without_subcommand() {
    run(Vec::<&str>::new()).assert_code(64);
}

#[test]
fn exits_64_when_required_flag_is_missing() {
    // Files exist, so only the missing flag can be the problem.
    let setup = Setup::new();
    let (crt, key) = (setup.crt.to_str().unwrap(), setup.key.to_str().unwrap());
    // serve without --upstream
    run([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--crt",
        crt,
        "--key",
        key,
    ])
    .assert_code(64);
    // serve without --listen
    run([
        "serve",
        "--upstream",
        "127.0.0.1:9",
        "--crt",
        crt,
        "--key",
        key,
    ])
    .assert_code(64);
    // check without --key
    run(["check", "--crt", crt]).assert_code(64);
    // pki without DIR
    run(["pki"]).assert_code(64);
}

#[test]
fn prints_serve_help_with_exit_0() {
    let out = run(["serve", "--help"]);
    out.assert_code(0);
    let text = format!("{}{}", out.stdout, out.stderr);
    for flag in [
        "--listen",
        "--upstream",
        "--crt",
        "--key",
        "--mutual-tls-cas",
        "--crl",
    ] {
        assert!(text.contains(flag), "help does not mention {flag}:\n{text}");
    }
}

fn read_all(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

fn only_cert(pem_text: &[u8]) -> Vec<u8> {
    let blocks = ::pem::parse_many(pem_text).expect("PEM");
    let certs: Vec<_> = blocks.iter().filter(|b| b.tag() == "CERTIFICATE").collect();
    assert_eq!(certs.len(), 1, "expected exactly one certificate");
    certs[0].contents().to_vec()
}

#[test]
fn pki_writes_working_credentials() {
    let dir = common::Dir::new();
    run(["pki".as_ref(), dir.path().as_os_str()]).assert_code(0);
    let files = read_all(dir.path());
    for name in PKI_FILES {
        assert!(
            files.contains_key(name),
            "pki did not write {name}; wrote {:?}",
            files.keys()
        );
    }

    let server_der = only_cert(&files["server.pem"]);
    let (_, server) = X509Certificate::from_der(&server_der).expect("server.pem parses");
    let sans = server
        .subject_alternative_name()
        .expect("SAN ext")
        .expect("server has SANs");
    let names: Vec<String> = sans
        .value
        .general_names
        .iter()
        .map(|n| match n {
            GeneralName::DNSName(d) => d.to_string(),
            GeneralName::IPAddress(ip) => {
                ip.iter().map(u8::to_string).collect::<Vec<_>>().join(".")
            }
            other => format!("{other:?}"),
        })
        .collect();
    assert!(
        names.contains(&"localhost".to_owned()),
        "server SANs {names:?}"
    );
    assert!(
        names.contains(&"127.0.0.1".to_owned()),
        "server SANs {names:?}"
    );
    let spki = server.public_key();
    assert_eq!(
        spki.algorithm.algorithm,
        x509_parser::oid_registry::OID_KEY_TYPE_EC_PUBLIC_KEY,
        "server key is not EC"
    );
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.as_oid().ok())
        .expect("named curve");
    assert_eq!(
        curve,
        x509_parser::oid_registry::OID_EC_P256,
        "server key is not P-256"
    );

    let client_der = only_cert(&files["client.pem"]);
    let combined = ::pem::parse_many(&files["client-cert-and-key.pem"]).expect("PEM");
    assert!(
        combined
            .iter()
            .any(|b| b.tag() == "CERTIFICATE" && b.contents() == client_der),
        "client-cert-and-key.pem lacks client.pem's certificate"
    );
    assert!(
        combined.iter().any(|b| b.tag().ends_with("PRIVATE KEY")),
        "client-cert-and-key.pem lacks a private key"
    );

    // The files work as they are: check passes and a Rust client using them gets through.
    let p = |name: &str| dir.path().join(name);
    run([
        "check".as_ref(),
        "--crt".as_ref(),
        p("server.pem").as_os_str(),
        "--key".as_ref(),
        p("server.key").as_os_str(),
        "--mutual-tls-cas".as_ref(),
        p("ca.pem").as_os_str(),
    ])
    .assert_code(0);
    let upstream = Upstream::echo();
    let server = Serve::new(upstream.addr, &p("server.pem"), &p("server.key"))
        .ca(&p("ca.pem"))
        .start();
    let ca_der = only_cert(&files["ca.pem"]);
    let key = rustls_pki_types::PrivateKeyDer::try_from(
        ::pem::parse_many(&files["client.key"])
            .unwrap()
            .into_iter()
            .find(|b| b.tag().ends_with("PRIVATE KEY"))
            .expect("client.key holds a key")
            .into_contents(),
    )
    .expect("client.key is a private key");
    let opts =
        ClientOpts::with_roots(vec![ca_der.into()]).raw_identity(vec![client_der.into()], key);
    connect(server.addr(), &opts).expect("client from `ringtls pki` accepted");
}

#[test]
fn pki_refuses_to_overwrite_existing_files() {
    let dir = common::Dir::new();
    run(["pki".as_ref(), dir.path().as_os_str()]).assert_code(0);
    let before = read_all(dir.path());
    let again = run(["pki".as_ref(), dir.path().as_os_str()]);
    assert_ne!(
        again.code,
        Some(0),
        "pki overwrote an existing PKI:\n{again:?}"
    );
    assert_eq!(
        read_all(dir.path()),
        before,
        "pki changed files although it refused"
    );
}

#[test]
fn pki_refuses_when_any_one_file_exists() {
    let dir = common::Dir::new();
    dir.write("client.key", "keep me\n");
    let out = run(["pki".as_ref(), dir.path().as_os_str()]);
    assert_ne!(
        out.code,
        Some(0),
        "pki ran over an existing client.key:\n{out:?}"
    );
    let after = read_all(dir.path());
    assert_eq!(
        after.keys().collect::<Vec<_>>(),
        ["client.key"],
        "pki wrote files although it refused"
    );
    assert_eq!(after["client.key"], b"keep me\n");
}

/// Mode bits and owner of `path`.
fn mode_and_owner(path: &Path) -> (u32, u32, u32) {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (meta.mode() & 0o7777, meta.uid(), meta.gid())
}

/// The UID and GID this test runs as: those of a file it creates.
fn own_ids(dir: &Path) -> (u32, u32) {
    let probe = dir.join(".ids");
    std::fs::write(&probe, "").expect("write probe file");
    let (_, uid, gid) = mode_and_owner(&probe);
    std::fs::remove_file(&probe).expect("remove probe file");
    (uid, gid)
}

#[test]
fn pki_kubernetes_names_hand_what_serve_reads_to_the_owner() {
    let dir = common::Dir::new();
    let (uid, gid) = own_ids(dir.path());
    // As root, a UID and GID that are neither ours nor each other's; otherwise the only owner
    // a non-root user may give: itself (and its own group).
    let (to_uid, to_gid) = if uid == 0 { (65532, 65533) } else { (uid, gid) };
    let owner = format!("{to_uid}:{to_gid}");
    let certs = dir.join("certs");
    let out = run([
        "pki".as_ref(),
        certs.as_os_str(),
        "--names".as_ref(),
        "kubernetes".as_ref(),
        "--owner".as_ref(),
        owner.as_ref(),
    ]);
    out.assert_code(0);
    let files = read_all(&certs);
    assert_eq!(
        files.keys().map(String::as_str).collect::<Vec<_>>(),
        [
            "ca.crt",
            "ca.key",
            "client-cert-and-key.pem",
            "client.key",
            "client.pem",
            "tls.crt",
            "tls.key"
        ],
        "{out:?}"
    );
    let want = [
        // What serve reads: the owner's, the key readable by its group (fsGroup, a service
        // group) and no one else.
        ("tls.crt", 0o644, to_uid, to_gid),
        ("tls.key", 0o640, to_uid, to_gid),
        ("ca.crt", 0o644, to_uid, to_gid),
        // Not the server's to read: stays the caller's, keys private.
        ("ca.key", 0o600, uid, gid),
        ("client.key", 0o600, uid, gid),
        ("client-cert-and-key.pem", 0o600, uid, gid),
        ("client.pem", 0o644, uid, gid),
    ];
    for (name, mode, file_uid, file_gid) in want {
        assert_eq!(
            mode_and_owner(&certs.join(name)),
            (mode, file_uid, file_gid),
            "{name}: (mode, uid, gid)"
        );
    }
    assert_eq!(
        mode_and_owner(&certs),
        (0o750, to_uid, to_gid),
        "the directory pki created: (mode, uid, gid)"
    );
    // The names are the ones serve is given in packaging/: the set works as it is.
    run([
        "check".as_ref(),
        "--crt".as_ref(),
        certs.join("tls.crt").as_os_str(),
        "--key".as_ref(),
        certs.join("tls.key").as_os_str(),
        "--mutual-tls-cas".as_ref(),
        certs.join("ca.crt").as_os_str(),
    ])
    .assert_code(0);
}

#[test]
fn pki_sets_modes_exactly_whatever_the_umask() {
    let dir = common::Dir::new();
    let (uid, gid) = own_ids(dir.path());
    for (umask, sub) in [("000", "open"), ("077", "closed")] {
        let certs = dir.join(sub);
        let mut cmd = std::process::Command::new("sh");
        cmd.arg("-c")
            .arg(format!("umask {umask} && exec \"$0\" pki \"$1\""))
            .arg(common::process::bin())
            .arg(&certs);
        let out = common::process::run_command(cmd, Duration::from_secs(30));
        out.assert_code(0);
        for (name, mode) in [
            ("ca.pem", 0o644),
            ("server.pem", 0o644),
            ("client.pem", 0o644),
            ("server.key", 0o600),
            ("ca.key", 0o600),
            ("client.key", 0o600),
            ("client-cert-and-key.pem", 0o600),
        ] {
            assert_eq!(
                mode_and_owner(&certs.join(name)),
                (mode, uid, gid),
                "umask {umask}: {name}: (mode, uid, gid)"
            );
        }
    }
}

#[test]
fn pki_refuses_unknown_names_and_non_numeric_owner_naming_the_flag() {
    let dir = common::Dir::new();
    let certs = dir.join("certs");
    for (flag, value) in [
        ("--names", "k8s"),
        ("--owner", "nonroot"),
        ("--owner", "65532"),
        ("--owner", "65532:-1"),
    ] {
        let out = run([
            "pki".as_ref(),
            certs.as_os_str(),
            flag.as_ref(),
            value.as_ref(),
        ]);
        out.assert_code(64);
        assert!(
            out.stderr.contains(&format!("{flag} {value}: expected")),
            "{flag} {value}: {out:?}"
        );
        assert!(!certs.exists(), "{flag} {value}: pki created {certs:?}");
    }
}

#[test]
#[cfg_attr(
    not(has = "setpriv"),
    ignore = "SKIPPED: setpriv not found (apt-get install util-linux); a refused --owner not tried"
)]
fn pki_owner_it_may_not_give_fails_naming_the_flag_and_leaves_nothing() {
    use std::os::unix::fs::PermissionsExt;
    let dir = common::Dir::new();
    let (uid, _) = own_ids(dir.path());
    // chown to another user needs root or CAP_CHOWN: as root, run pki as nobody (its temp dir
    // made writable for it); otherwise as ourselves.
    const NOBODY: u32 = 65534;
    // nobody runs a copy in the temp dir: the checkout's own path may not be open to it.
    let bin = dir.join("ringtls");
    if uid == 0 {
        common::need("setpriv");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777))
            .expect("chmod temp dir");
        std::fs::copy(common::process::bin(), &bin).expect("copy the binary");
    }
    // A directory pki creates fails at its chown; one that exists, at the first served file's.
    for existing in [false, true] {
        let certs = dir.join(if existing { "existing" } else { "new" });
        if existing {
            std::fs::create_dir(&certs).expect("mkdir");
            if uid == 0 {
                std::os::unix::fs::chown(&certs, Some(NOBODY), Some(NOBODY)).expect("chown");
            }
        }
        let mut cmd = if uid == 0 {
            let mut cmd = std::process::Command::new("setpriv");
            cmd.arg(format!("--reuid={NOBODY}"))
                .arg(format!("--regid={NOBODY}"))
                .args(["--clear-groups", "--"])
                .arg(&bin);
            cmd
        } else {
            std::process::Command::new(common::process::bin())
        };
        cmd.arg("pki")
            .arg(&certs)
            .args(["--names", "kubernetes", "--owner", "0:0"]);
        let out = common::process::run_command(cmd, Duration::from_secs(30));
        out.assert_code(1);
        assert!(
            out.stderr.contains("--owner 0:0: cannot chown"),
            "existing dir {existing}: {out:?}"
        );
        if existing {
            assert_eq!(
                read_all(&certs).keys().collect::<Vec<_>>(),
                Vec::<&String>::new(),
                "pki left files behind"
            );
        } else {
            assert!(!certs.exists(), "pki left {certs:?} behind");
        }
    }
}

#[test]
fn demo_exits_0() {
    let out = run_with_timeout(["demo"], Duration::from_secs(90));
    out.assert_code(0);
}

#[test]
fn prints_listening_line_with_every_address_in_order() {
    let setup = Setup::new();
    let upstream = Upstream::echo();
    let server = setup
        .serve(upstream.addr)
        .listen("127.0.0.2:0")
        .listen("127.0.0.1:0")
        .start();
    assert_eq!(server.addrs.len(), 2, "{:?}", server.listening_line);
    assert_eq!(server.addrs[0].ip().to_string(), "127.0.0.2");
    assert_eq!(server.addrs[1].ip().to_string(), "127.0.0.1");
    assert!(server.addrs.iter().all(|a| a.port() != 0));
    let expected = format!(
        "{{\"listening\":[\"{}\",\"{}\"]}}\n",
        server.addrs[0], server.addrs[1]
    );
    assert_eq!(server.listening_line, expected);
    let alice = setup.ca.client("Alice");
    for addr in &server.addrs {
        connect(*addr, &setup.client(&alice))
            .unwrap_or_else(|e| panic!("no service on {addr}: {e:?}"));
    }
    assert_eq!(
        server.stdout_after_listening(),
        "",
        "stdout carries more than one line"
    );
}

#[test]
fn refuses_port_taken_by_another_ringtls() {
    let setup = Setup::new();
    let upstream = Upstream::echo();
    let first = setup.serve(upstream.addr).start();
    let taken = first.addr().to_string();
    match setup.serve(upstream.addr).listen(&taken).try_start() {
        Ok(second) => panic!(
            "second ringtls started on {taken} taken by the first\n--- stderr ---\n{}",
            second.stderr()
        ),
        Err(exited) => {
            assert_eq!(exited.code, Some(1), "stderr:\n{}", exited.stderr);
            assert!(
                exited.stderr.contains(&taken),
                "error does not name {taken}:\n{}",
                exited.stderr
            );
        }
    }
    // The first one is unharmed.
    connect(first.addr(), &setup.client(&setup.ca.client("Alice"))).expect("first still serves");
}

#[test]
fn refuses_port_taken_by_another_process() {
    let setup = Setup::new();
    let upstream = Upstream::echo();
    let holder = TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = holder.local_addr().unwrap().to_string();
    match setup.serve(upstream.addr).listen(&taken).try_start() {
        Ok(server) => panic!(
            "ringtls started on {taken} held by another process\n--- stderr ---\n{}",
            server.stderr()
        ),
        Err(exited) => {
            assert_eq!(exited.code, Some(1), "stderr:\n{}", exited.stderr);
            assert!(
                exited.stderr.contains(&taken),
                "error does not name {taken}:\n{}",
                exited.stderr
            );
        }
    }
}
