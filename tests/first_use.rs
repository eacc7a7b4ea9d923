//! What a new user trips over on a first try (issue 13), each through the real binary: the
//! `demo` hint pasted into a shell, `load` exiting 0 when nothing got through, `healthcheck`
//! pointed at the TLS port, `check` naming a flag that was not given, and start-up lines
//! printed before a busy port's error.

mod common;

use common::{Setup, run};

// `check` names the flags that were given, and only those.

fn check_policy(extra: &[&str]) -> String {
    let setup = Setup::new();
    let mut args = vec![
        "check",
        "--crt",
        setup.crt.to_str().expect("path"),
        "--key",
        setup.key.to_str().expect("path"),
        "--mutual-tls-cas",
        setup.ca_file.to_str().expect("path"),
    ];
    args.extend(extra);
    let out = run(args);
    out.assert_code(0);
    out.stdout
        .lines()
        .find(|l| l.starts_with("client identity policy:"))
        .unwrap_or_else(|| panic!("no policy line:\n{}", out.stdout))
        .to_owned()
}

#[test]
fn check_does_not_claim_allow_all_when_no_allow_flag_was_given() {
    assert_eq!(
        check_policy(&[]),
        "client identity policy: any client with a valid chain (no --allow-* flag given)"
    );
}

#[test]
fn check_names_allow_all_when_it_was_given() {
    assert_eq!(
        check_policy(&["--allow-all"]),
        "client identity policy: any client with a valid chain (--allow-all)"
    );
}
