//! The command line, as argh structs only: raw flags whose doc comments are the `--help` text.
//! Turning them into checked values is `config`'s job.

use std::path::PathBuf;

use argh::FromArgs;

/// ringtls: a mutual-TLS terminator. Clients must present a certificate signed by one of your
/// CAs; their decrypted bytes are forwarded to a plaintext TCP upstream.
#[derive(FromArgs, Debug)]
pub struct Cli {
    #[argh(subcommand)]
    pub command: Command,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
pub enum Command {
    Serve(ServeArgs),
    Check(CheckArgs),
    Pki(PkiArgs),
    Demo(DemoArgs),
}

/// accept TLS, require client certificates, forward plaintext to the upstream
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "serve")]
pub struct ServeArgs {
    /// address to accept TLS on, e.g. 0.0.0.0:8443 or 127.0.0.1:0 (repeatable)
    #[argh(option)]
    pub listen: Vec<String>,
    /// plaintext TCP service to forward to, HOST:PORT
    #[argh(option)]
    pub upstream: String,
    #[argh(option)]
    /// server certificate chain, PEM, leaf first
    pub crt: PathBuf,
    /// server private key, PEM (PKCS#8, SEC1 or PKCS#1)
    #[argh(option)]
    pub key: PathBuf,
    /// CA bundle, PEM; client certificates must chain to one of its CAs (repeatable)
    #[argh(option)]
    pub mutual_tls_cas: Vec<PathBuf>,
    /// certificate revocation list, PEM or DER (repeatable)
    #[argh(option)]
    pub crl: Vec<PathBuf>,
    /// worker threads, each pinned to a core (default: the cores this process may use)
    #[argh(option)]
    pub threads: Option<usize>,
    /// time a client has to complete the handshake (default 10s)
    #[argh(option, default = "String::from(\"10s\")")]
    pub handshake_timeout: String,
    /// time to connect to the upstream (default 5s)
    #[argh(option, default = "String::from(\"5s\")")]
    pub connect_timeout: String,
    /// close a connection after this long with no bytes either way (default 300s)
    #[argh(option, default = "String::from(\"300s\")")]
    pub idle_timeout: String,
    /// most connections served at once, split evenly across workers (default: no limit)
    #[argh(option)]
    pub max_conns: Option<usize>,
}

/// load and validate what `serve` would, print it, and open no socket
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "check")]
pub struct CheckArgs {
    /// server certificate chain, PEM, leaf first
    #[argh(option)]
    pub crt: PathBuf,
    /// server private key, PEM (PKCS#8, SEC1 or PKCS#1)
    #[argh(option)]
    pub key: PathBuf,
    /// CA bundle, PEM (repeatable)
    #[argh(option)]
    pub mutual_tls_cas: Vec<PathBuf>,
    /// certificate revocation list, PEM or DER (repeatable)
    #[argh(option)]
    pub crl: Vec<PathBuf>,
}

/// write a development PKI (CA, server and client certificates, ECDSA P-256) into DIR
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "pki")]
pub struct PkiArgs {
    /// directory to write into (created if missing; existing files are never overwritten)
    #[argh(positional)]
    pub dir: PathBuf,
}

/// show mutual TLS end to end on a throw-away PKI, in-process
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "demo")]
pub struct DemoArgs {}
