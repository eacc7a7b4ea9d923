//! Loading many endpoints: `ringtls check --config` and `ringtls serve --config` (until its
//! listening line) on a file of 1,000 endpoints with 10,000 server names, each endpoint with
//! its own server certificate, key and CA, against the same on a file of 10 endpoints. The
//! figures that matter are the 1,000-endpoint start time (the bar: under a second) and
//! its ratio to the 10-endpoint one.
//!
//! `cargo bench --bench endpoints_scale` prints a table; `-- --json` prints one JSON line.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

const NAMES_PER_ENDPOINT: usize = 10;
const ROUNDS: usize = 5;

/// Writes `n` endpoints (and their PKI) into `dir`; returns the config file.
fn write_endpoints(dir: &Path, n: usize) -> PathBuf {
    let mut text = String::new();
    for i in 0..n {
        let mut ca_params = CertificateParams::default();
        ca_params
            .distinguished_name
            .push(DnType::CommonName, format!("tenant {i} Root"));
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_key = KeyPair::generate().expect("CA key");
        let ca = ca_params.self_signed(&ca_key).expect("CA");
        let issuer = Issuer::new(ca_params, ca_key);
        let names: Vec<String> = (0..NAMES_PER_ENDPOINT)
            .map(|j| format!("svc-{j}.tenant-{i}.example.com"))
            .collect();
        let leaf_params = CertificateParams::new(names.clone()).expect("leaf params");
        let leaf_key = KeyPair::generate().expect("leaf key");
        let leaf = leaf_params.signed_by(&leaf_key, &issuer).expect("leaf");
        let write = |name: String, text: String| {
            let path = dir.join(name);
            std::fs::write(&path, text).expect("write");
            path
        };
        let crt = write(format!("t{i}.pem"), leaf.pem());
        let key = write(format!("t{i}.key"), leaf_key.serialize_pem());
        let cas = write(format!("t{i}-cas.pem"), ca.pem());
        let quoted: Vec<String> = names.iter().map(|n| format!("\"{n}\"")).collect();
        text += &format!(
            "[[endpoint]]\nname = \"tenant-{i}\"\nlisten = \"127.0.0.1:0\"\nserver_names = [{}]\ncrt = \"{}\"\nkey = \"{}\"\nmutual_tls_cas = \"{}\"\nupstream = \"127.0.0.1:9\"\n\n",
            quoted.join(", "),
            crt.display(),
            key.display(),
            cas.display()
        );
    }
    let config = dir.join(format!("endpoints-{n}.toml"));
    std::fs::write(&config, text).expect("write config");
    config
}

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_ringtls")
}

/// `ringtls check --config`, to its exit.
fn check(config: &Path) -> Duration {
    let t = Instant::now();
    let out = Command::new(bin())
        .args(["check", "--config"])
        .arg(config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run check");
    let took = t.elapsed();
    assert!(out.success(), "check failed on {}", config.display());
    took
}

/// `ringtls serve --config` until it prints its listening line; then it is killed.
fn serve(config: &Path) -> Duration {
    let t = Instant::now();
    let mut child = Command::new(bin())
        .args([
            "serve",
            "--threads",
            "1",
            "--log-level",
            "error",
            "--config",
        ])
        .arg(config)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn serve");
    let mut line = String::new();
    let stdout = child.stdout.take().expect("stdout");
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("listening line");
    let took = t.elapsed();
    let _ = child.kill();
    let _ = child.wait();
    assert!(line.contains("listening"), "no listening line: {line:?}");
    took
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn main() {
    let json = std::env::args().any(|a| a == "--json");
    let dir = std::env::temp_dir().join(format!("ringtls-endpoints-scale-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let small = write_endpoints(&dir, 10);
    let large = write_endpoints(&dir, 1000);
    let mut rows = Vec::new();
    for (what, f) in [("check", check as fn(&Path) -> Duration), ("serve", serve)] {
        // Interleaved, so noise on the machine falls on both sizes alike.
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            a.push(f(&small));
            b.push(f(&large));
        }
        rows.push((what, median(a), median(b)));
    }
    let _ = std::fs::remove_dir_all(&dir);
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    if json {
        let fields: Vec<String> = rows
            .iter()
            .map(|(what, a, b)| {
                format!(
                    "\"{what}_10_ms\":{:.1},\"{what}_1000_ms\":{:.1},\"{what}_ratio\":{:.2}",
                    ms(*a),
                    ms(*b),
                    ms(*b) / ms(*a)
                )
            })
            .collect();
        println!(
            "{{\"endpoints\":1000,\"server_names\":{},{}}}",
            1000 * NAMES_PER_ENDPOINT,
            fields.join(",")
        );
        return;
    }
    println!(
        "endpoints_scale: median of {ROUNDS}, 10 endpoints vs 1,000 ({} server names)",
        1000 * NAMES_PER_ENDPOINT
    );
    println!(
        "{:<8} {:>12} {:>14} {:>8}",
        "", "10 (ms)", "1,000 (ms)", "ratio"
    );
    for (what, a, b) in rows {
        println!(
            "{what:<8} {:>12.1} {:>14.1} {:>8.2}",
            ms(a),
            ms(b),
            ms(b) / ms(a)
        );
    }
}
