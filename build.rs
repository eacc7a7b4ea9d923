//! Probes this host for the tools the integration tests drive (curl, openssl, haproxy, ...: the
//! table is tests/common/tools.rs) and turns each one found into `cfg(has = "NAME")`. A test that
//! needs a tool is marked `#[cfg_attr(not(has = "NAME"), ignore = "SKIPPED: ...")]`, so on a host
//! without it cargo shows the test as ignored, with the reason, and counts it in `test result:`;
//! a test that returned early would pass, and cargo hides a passing test's stderr.
//!
//! `RINGTLS_REQUIRE_TOOLS=1` turns every `has` on: nothing is ignored, and the test's own
//! `common::need` fails it if the tool is missing. .ci/run sets it, having installed everything.
//!
//! A probe is only as fresh as the last run of this script, so it reruns when what it read can
//! change: PATH and the variables it reads, the directories on PATH (installing a program there
//! changes the directory's mtime, which cargo sees even when dpkg keeps the file's old mtime),
//! /etc/hosts, the dynamic linker's cache (libseccomp) and, while tlslite is missing, Python's
//! site directories. Only paths that exist are watched: cargo reruns a script whose watched path
//! is missing on every build, which would rebuild the crate each time.

use std::path::{Path, PathBuf};

#[path = "tests/common/tools.rs"]
#[allow(unreachable_pub)] // shared with the tests, where they are `pub`
mod tools;

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-changed=tests/common/tools.rs");
    for var in ["PATH", tools::REQUIRE, "RINGTLS_KTLS_VM"] {
        println!("cargo::rerun-if-env-changed={var}");
    }
    let names: Vec<String> = tools::TOOLS
        .iter()
        .map(|t| format!("\"{}\"", t.name))
        .collect();
    println!(
        "cargo::rustc-check-cfg=cfg(has, values({}))",
        names.join(", ")
    );

    let mut watched = Vec::new();
    if let Some(path) = std::env::var_os("PATH") {
        watched.extend(std::env::split_paths(&path));
    }
    watched.push("/etc/hosts".into());
    watched.push("/etc/ld.so.cache".into());

    let required = tools::required();
    let mut found = Vec::new();
    for tool in tools::TOOLS {
        let probe = tool.probe();
        if probe.is_ok() {
            found.push(tool.name);
        } else if tool.name == "tlslite" {
            watched.extend(python_site_dirs());
        }
        if required || probe.is_ok() {
            println!("cargo::rustc-cfg=has=\"{}\"", tool.name);
        }
    }
    // What the probes saw, for tests/tools.rs to compare with what it sees at run time.
    println!("cargo::rustc-env=RINGTLS_TOOLS_FOUND={}", found.join(","));

    let mut seen = Vec::new();
    for path in watched {
        if path.exists() && !seen.contains(&path) {
            println!("cargo::rerun-if-changed={}", path.display());
            seen.push(path);
        }
    }
}

/// Where `python3 -m pip install` puts a module (the interpreter's and the user's site
/// directories).
fn python_site_dirs() -> Vec<PathBuf> {
    let Ok(out) = std::process::Command::new("python3")
        .args([
            "-c",
            "import site, sysconfig; print(sysconfig.get_path('purelib')); print(site.getusersitepackages())",
        ])
        .output()
    else {
        return Vec::new();
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| Path::new(l.trim()).to_path_buf())
        .collect()
}
