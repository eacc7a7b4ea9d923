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

// One value, parsed once at start: its size does not matter, and argh needs the variants
// unboxed.
#[allow(clippy::large_enum_variant)]
#[derive(FromArgs, Debug)]
#[argh(subcommand)]
pub enum Command {
    Serve(ServeArgs),
    Check(CheckArgs),
    Pki(PkiArgs),
    Demo(DemoArgs),
    Load(LoadArgs),
    Upstream(UpstreamArgs),
    Healthcheck(HealthcheckArgs),
}

/// accept TLS, require client certificates, forward plaintext to the upstream
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "serve")]
pub struct ServeArgs {
    /// many endpoints from a TOML file (one [[endpoint]] table each; see README "Many
    /// endpoints"); the endpoint flags below then stay unset
    #[argh(option)]
    pub config: Option<PathBuf>,
    /// address to accept TLS on, e.g. 0.0.0.0:8443 or 127.0.0.1:0 (repeatable; omit it when
    /// systemd passes the listening sockets: socket activation, LISTEN_FDS)
    #[argh(option)]
    pub listen: Vec<String>,
    /// plaintext service to forward to: HOST:PORT (a name is resolved at start and on reload;
    /// every address is tried in turn) or unix:/path/to/socket
    #[argh(option)]
    pub upstream: Option<String>,
    /// server certificate chain, PEM, leaf first (repeatable with --key: chosen by SNI, the
    /// first pair being the default)
    #[argh(option)]
    pub crt: Vec<PathBuf>,
    /// server private key, PEM (PKCS#8, SEC1 or PKCS#1), one per --crt, in the same order
    #[argh(option)]
    pub key: Vec<PathBuf>,
    /// CA bundle, PEM; client certificates must chain to one of its CAs (repeatable)
    #[argh(option)]
    pub mutual_tls_cas: Vec<PathBuf>,
    /// certificate revocation list, PEM or DER (repeatable)
    #[argh(option)]
    pub crl: Vec<PathBuf>,
    /// a CRL past its nextUpdate: warn (log a WARN once and keep using it) or refuse (refuse
    /// the clients of its CA with reason crl_stale) (default warn)
    #[argh(option)]
    pub stale_crl: Option<String>,
    /// also fetch CRLs from the HTTP distribution points of the CAs and of the client
    /// certificates seen, refreshed before their nextUpdate
    #[argh(switch)]
    pub crl_fetch: bool,
    /// how often a fetched CRL is fetched again at most (default 1h)
    #[argh(option)]
    pub crl_refresh: Option<String>,
    /// OCSP for verified client certificates: off, soft (only a valid "revoked" answer
    /// refuses) or hard (anything but a valid "good" answer refuses) (default off)
    #[argh(option)]
    pub ocsp: Option<String>,
    /// OCSP responder URL (http://) asked instead of the one the certificate names
    #[argh(option)]
    pub ocsp_responder: Option<String>,
    /// how long one OCSP request may take (default 3s)
    #[argh(option)]
    pub ocsp_timeout: Option<String>,
    /// the longest an OCSP answer is used, whatever its nextUpdate (default 1h)
    #[argh(option)]
    pub ocsp_max_age: Option<String>,
    /// CA names sent in CertificateRequest: auto (every CA's subject while the list stays
    /// small enough for every mainstream client, none above), all or none (default auto)
    #[argh(option)]
    pub ca_names: Option<String>,
    /// client certificates: require-and-verify (the default with --mutual-tls-cas),
    /// require-any (required, chain not checked), request (asked for, not required, not
    /// checked) or none (the default without CAs)
    #[argh(option)]
    pub client_auth: Option<String>,
    /// admit only clients whose subject CN is NAME (repeatable; allow-lists are ORed)
    #[argh(option)]
    pub allow_cn: Vec<String>,
    /// admit only clients with an OU of NAME in their subject (repeatable)
    #[argh(option)]
    pub allow_ou: Vec<String>,
    /// admit only clients with a DNS SAN matching NAME; `*` is one label (repeatable)
    #[argh(option)]
    pub allow_dns: Vec<String>,
    /// admit only clients with a URI SAN matching URI, e.g. a SPIFFE ID; `*` is one path segment
    #[argh(option)]
    pub allow_uri: Vec<String>,
    /// admit every client whose chain is valid (the explicit opposite of the --allow-* lists)
    #[argh(switch)]
    pub allow_all: bool,
    /// send a PROXY protocol v2 header (addresses, SNI, ALPN, TLS and client certificate) to
    /// the upstream before any client byte
    #[argh(switch)]
    pub proxy_protocol: bool,
    /// serve Prometheus metrics (/metrics) and a health check (/healthz) over plain HTTP on
    /// ADDR, e.g. 127.0.0.1:9090 (off by default)
    #[argh(option)]
    pub metrics: Option<String>,
    /// event log format on stderr: text or json (one object per line) (default text)
    #[argh(option, default = "String::from(\"text\")")]
    pub log_format: String,
    /// least severe event logged: error, warn, info or debug (default info)
    #[argh(option, default = "String::from(\"info\")")]
    pub log_level: String,
    /// which connections get an event line: all (closed and rejected), rejected (refusals and
    /// failed connections only) or none; the metrics count them all (default all)
    #[argh(option, default = "String::from(\"all\")")]
    pub log_connections: String,
    /// ALPN protocol to advertise, e.g. h2 or http/1.1 (repeatable, in preference order)
    #[argh(option)]
    pub alpn: Vec<String>,
    /// lowest TLS version accepted: 1.2 or 1.3 (default 1.2)
    #[argh(option)]
    pub tls_min: Option<String>,
    /// UNSAFE, for debugging: append TLS secrets to FILE (NSS key-log format, for Wireshark)
    #[argh(option)]
    pub unsafe_keylog: Option<PathBuf>,
    /// worker threads, each pinned to a core (default: the cores this process may use)
    #[argh(option)]
    pub threads: Option<usize>,
    /// time a client has to complete the handshake (default 10s)
    #[argh(option)]
    pub handshake_timeout: Option<String>,
    /// time to connect to the upstream (default 5s)
    #[argh(option)]
    pub connect_timeout: Option<String>,
    /// close a connection after this long with no bytes either way (default 300s)
    #[argh(option)]
    pub idle_timeout: Option<String>,
    /// most connections served at once, split evenly across workers (default: no limit)
    #[argh(option)]
    pub max_conns: Option<usize>,
    /// also reload (as on SIGHUP) when a certificate, key, CA bundle or CRL file changes,
    /// including a Kubernetes Secret's `..data` swap
    #[argh(switch)]
    pub watch: bool,
    /// after a reload that changes the CAs or CRLs, close live connections whose client chain
    /// would now be rejected
    #[argh(switch)]
    pub reauthorize_on_reload: bool,
    /// make /readyz answer 503 while an endpoint's upstream cannot be dialled (checked every 2 s
    /// from the metrics thread; needs --metrics)
    #[argh(switch)]
    pub ready_requires_upstream: bool,
    /// session-ticket keys shared by a fleet: base64 lines of 80 bytes (HAProxy's
    /// tls-ticket-keys format); the penultimate line encrypts, every line decrypts; re-read on
    /// reload
    #[argh(option)]
    pub ticket_keys: Option<PathBuf>,
    /// every connection starts with a PROXY protocol header (v1 or v2) from a load balancer:
    /// its source address is the client's (needs --accept-proxy-from); with --config, the
    /// default of endpoints without accept_proxy
    #[argh(switch)]
    pub accept_proxy: bool,
    /// network (CIDR, or one address) whose connections may carry the PROXY header; any other
    /// source is refused (repeatable); with --config, the default of endpoints without
    /// accept_proxy_from
    #[argh(option)]
    pub accept_proxy_from: Vec<String>,
    /// on SIGTERM/SIGINT, time established connections get to finish before they are closed
    /// (default 30s)
    #[argh(option, default = "String::from(\"30s\")")]
    pub drain_timeout: String,
    /// on SIGTERM/SIGINT, keep accepting this long while /readyz answers 503, so that a
    /// balancer's health check takes this instance out before its listeners close (default 0s)
    #[argh(option, default = "String::from(\"0s\")")]
    pub drain_delay: String,
    /// kernel TLS after the handshake: auto (when the kernel offers it for the negotiated
    /// suite), on (refuse to start without it) or off (default auto)
    #[argh(option, default = "String::from(\"auto\")")]
    pub ktls: String,
}

/// load and validate what `serve` would, print it, and open no socket
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "check")]
pub struct CheckArgs {
    /// check a TOML config file of endpoints instead of the flags below
    #[argh(option)]
    pub config: Option<PathBuf>,
    /// server certificate chain, PEM, leaf first (repeatable with --key: chosen by SNI, the
    /// first pair being the default)
    #[argh(option)]
    pub crt: Vec<PathBuf>,
    /// server private key, PEM (PKCS#8, SEC1 or PKCS#1), one per --crt, in the same order
    #[argh(option)]
    pub key: Vec<PathBuf>,
    /// CA bundle, PEM (repeatable)
    #[argh(option)]
    pub mutual_tls_cas: Vec<PathBuf>,
    /// certificate revocation list, PEM or DER (repeatable)
    #[argh(option)]
    pub crl: Vec<PathBuf>,
    /// a CRL past its nextUpdate: warn (log a WARN once and keep using it) or refuse (refuse
    /// the clients of its CA with reason crl_stale) (default warn)
    #[argh(option)]
    pub stale_crl: Option<String>,
    /// also fetch CRLs from the HTTP distribution points of the CAs and of the client
    /// certificates seen, refreshed before their nextUpdate
    #[argh(switch)]
    pub crl_fetch: bool,
    /// how often a fetched CRL is fetched again at most (default 1h)
    #[argh(option)]
    pub crl_refresh: Option<String>,
    /// OCSP for verified client certificates: off, soft (only a valid "revoked" answer
    /// refuses) or hard (anything but a valid "good" answer refuses) (default off)
    #[argh(option)]
    pub ocsp: Option<String>,
    /// OCSP responder URL (http://) asked instead of the one the certificate names
    #[argh(option)]
    pub ocsp_responder: Option<String>,
    /// how long one OCSP request may take (default 3s)
    #[argh(option)]
    pub ocsp_timeout: Option<String>,
    /// the longest an OCSP answer is used, whatever its nextUpdate (default 1h)
    #[argh(option)]
    pub ocsp_max_age: Option<String>,
    /// CA names sent in CertificateRequest: auto (every CA's subject while the list stays
    /// small enough for every mainstream client, none above), all or none (default auto)
    #[argh(option)]
    pub ca_names: Option<String>,
    /// client certificates: require-and-verify (the default with --mutual-tls-cas),
    /// require-any (required, chain not checked), request (asked for, not required, not
    /// checked) or none (the default without CAs)
    #[argh(option)]
    pub client_auth: Option<String>,
    /// admit only clients whose subject CN is NAME (repeatable; allow-lists are ORed)
    #[argh(option)]
    pub allow_cn: Vec<String>,
    /// admit only clients with an OU of NAME in their subject (repeatable)
    #[argh(option)]
    pub allow_ou: Vec<String>,
    /// admit only clients with a DNS SAN matching NAME; `*` is one label (repeatable)
    #[argh(option)]
    pub allow_dns: Vec<String>,
    /// admit only clients with a URI SAN matching URI, e.g. a SPIFFE ID; `*` is one path segment
    #[argh(option)]
    pub allow_uri: Vec<String>,
    /// admit every client whose chain is valid (the explicit opposite of the --allow-* lists)
    #[argh(switch)]
    pub allow_all: bool,
    /// ALPN protocol to advertise, e.g. h2 or http/1.1 (repeatable, in preference order)
    #[argh(option)]
    pub alpn: Vec<String>,
    /// lowest TLS version accepted: 1.2 or 1.3 (default 1.2)
    #[argh(option)]
    pub tls_min: Option<String>,
}

/// write a development PKI (CA, server and client certificates, ECDSA P-256) into DIR
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "pki")]
pub struct PkiArgs {
    /// directory to write into (created if missing; existing files are never overwritten)
    #[argh(positional)]
    pub dir: PathBuf,
    /// names of the files serve reads: pem (server.pem, server.key, ca.pem) or kubernetes
    /// (tls.crt, tls.key, ca.crt: a Kubernetes TLS Secret's keys, what packaging/ mounts at
    /// /etc/ringtls); ca.key and the client's files keep their names (default pem)
    #[argh(option, default = "String::from(\"pem\")")]
    pub names: String,
    /// numeric UID:GID to own the files serve reads (server certificate and key, CA
    /// certificate) and a directory pki creates, e.g. 65532:65532 for the container image; the
    /// server key is then mode 0640 (group-readable), certificates 0644. The CA key and the
    /// client's files stay the caller's, mode 0600. Needs root or CAP_CHOWN for another UID
    #[argh(option)]
    pub owner: Option<String>,
}

/// show mutual TLS end to end on a throw-away PKI, in-process
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "demo")]
pub struct DemoArgs {}

/// drive mTLS load at a TLS server and report rates, latency and throughput
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "load")]
pub struct LoadArgs {
    /// server to connect to, HOST:PORT
    #[argh(option)]
    pub connect: String,
    /// CA bundle that signed the server certificate, PEM
    #[argh(option)]
    pub ca: PathBuf,
    /// client certificate chain, PEM (omit to connect without a client certificate)
    #[argh(option)]
    pub crt: Option<PathBuf>,
    /// client private key, PEM
    #[argh(option)]
    pub key: Option<PathBuf>,
    /// name sent as SNI and checked against the server certificate (default localhost)
    #[argh(option, default = "String::from(\"localhost\")")]
    pub server_name: String,
    /// handshake, bulk-up, bulk-down, echo or idle
    #[argh(option)]
    pub mode: String,
    /// connections at once (default 1)
    #[argh(option, default = "1")]
    pub concurrency: usize,
    /// how long to run (default 10s)
    #[argh(option, default = "String::from(\"10s\")")]
    pub duration: String,
    /// bytes per connection in bulk modes (default 64MiB)
    #[argh(option, default = "String::from(\"64MiB\")")]
    pub bytes: String,
    /// message size in echo mode (default 64)
    #[argh(option, default = "String::from(\"64\")")]
    pub size: String,
    /// echo round trips per second across all connections (default: as fast as possible)
    #[argh(option)]
    pub rate: Option<u64>,
    /// resume sessions with tickets and report the resumed fraction
    #[argh(switch)]
    pub resume: bool,
    /// load threads (default 1)
    #[argh(option, default = "1")]
    pub threads: usize,
    /// pin the TLS version: 1.2 or 1.3 (default: 1.3, falling back to 1.2)
    #[argh(option)]
    pub tls: Option<String>,
    /// key-exchange group: X25519, secp256r1, secp384r1 or X25519MLKEM768 (default: rustls')
    #[argh(option)]
    pub group: Option<String>,
    /// print one JSON object on stdout instead of text
    #[argh(switch)]
    pub json: bool,
    /// exit 1 (after the report) when more than N operations failed, or more than P% of all
    /// of them, e.g. 0, 10 or 0.5%; 100% accepts any outcome (default: exit 1 only when every
    /// operation failed)
    #[argh(option)]
    pub max_failures: Option<String>,
}

/// plaintext TCP service for tests and benchmarks: echo, sink or source
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "upstream")]
pub struct UpstreamArgs {
    /// address to listen on (default 127.0.0.1:0)
    #[argh(option, default = "String::from(\"127.0.0.1:0\")")]
    pub listen: String,
    /// echo, sink or source (default echo)
    #[argh(option, default = "String::from(\"echo\")")]
    pub mode: String,
}

/// ask a running ringtls's metrics listener whether it is healthy: exit 0 on HTTP 200, else 1
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "healthcheck")]
pub struct HealthcheckArgs {
    /// the address given to `serve --metrics`, e.g. 127.0.0.1:9090
    #[argh(option)]
    pub metrics: String,
    /// the path to ask for: /healthz (up) or /readyz (up and not draining) (default /healthz)
    #[argh(option, default = "String::from(\"/healthz\")")]
    pub path: String,
}
