//! `ringtls demo`: mutual TLS end to end with nothing to set up. It writes a throw-away dev PKI,
//! starts an echo upstream and `serve` in-process on port 0, then shows a client with a
//! certificate getting its bytes echoed and a client without one refused with an alert. It
//! succeeds only if both happen, and prints the commands to try the same by hand.
//!
//! The throw-away PKI holds private keys, so its directory is removed when the demo ends,
//! however it ends. The printed commands therefore cannot use it: they start with `ringtls pki`
//! writing a PKI of their own into `./ringtls-demo`, name this very binary by its full path
//! (after `cargo run` no `ringtls` is on the PATH), and start the upstream they forward to.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

use crate::config::{EndpointConfig, Listen, Mode, ServeConfig, Timeouts};
use crate::error::Error;
use crate::tls::TlsSettings;

const MESSAGE: &[u8] = b"hello through mutual TLS\n";

/// The ports of the printed commands: fixed, so that a person can paste them as they are.
pub const HINT_UPSTREAM: &str = "127.0.0.1:8080";
pub const HINT_LISTEN: &str = "127.0.0.1:8443";
/// Where the printed commands write their PKI, under the current directory.
const HINT_PKI_DIR: &str = "ringtls-demo";

/// The demo's temporary directory, removed on drop: on success, on error and on a panic.
struct TempDir(PathBuf);

impl TempDir {
    /// A new directory only this user can enter; an existing one (another run's, or one made
    /// to catch our keys) is an error, never reused.
    fn create() -> Result<TempDir, Error> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir =
            std::env::temp_dir().join(format!("ringtls-demo-{}-{nanos:x}", std::process::id()));
        let mut builder = std::fs::DirBuilder::new();
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(&dir).map_err(|e| {
            Error::Runtime(format!(
                "demo: cannot create the temporary directory {}: {e}",
                dir.display()
            ))
        })?;
        Ok(TempDir(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.0) {
            eprintln!(
                "ringtls: warning: demo: cannot remove {}: {e}",
                self.0.display()
            );
        }
    }
}

/// Runs the demo; `Ok(true)` when both outcomes were as expected.
pub fn run_demo() -> Result<bool, Error> {
    let temp = TempDir::create()?;
    let dir = temp.0.as_path();
    crate::tools::pki::write_dev_pki(dir)?;
    let (upstream, accepted) = start_echo_upstream()?;

    let endpoint = EndpointConfig {
        name: "default".into(),
        listeners: vec![0],
        server_names: Vec::new(),
        default: true,
        mode: Mode::Terminate(Box::new(TlsSettings::new(
            dir.join("server.pem"),
            dir.join("server.key"),
            vec![dir.join("ca.pem")],
        ))),
        upstream: upstream.to_string(),
        upstream_addrs: vec![crate::proxy::connect::UpstreamAddr::Tcp(upstream)],
        proxy_protocol: false,
        accept_proxy: None,
        timeouts: Timeouts {
            idle: Duration::from_secs(30),
            ..Timeouts::default()
        },
    };
    let config = ServeConfig {
        listen: Listen::Bind(vec![SocketAddr::from(([127, 0, 0, 1], 0))]),
        endpoints: vec![endpoint],
        file: None,
        threads: 1,
        max_conns: None,
        log: Default::default(),
        metrics: None,
        watch: false,
        reauthorize: false,
        drain_timeout: Duration::from_secs(1),
        drain_delay: Duration::ZERO,
        ktls: Default::default(),
        keylog: None,
        accept_proxy: Default::default(),
        ticket_keys: None,
        ready_requires_upstream: false,
    };
    let server = crate::start(&config)?;
    let addr = server.local_addrs()[0];
    println!("ringtls is listening on {addr}, forwarding to an echo upstream on {upstream}");
    println!(
        "dev PKI written to {} (removed when the demo ends)",
        dir.display()
    );
    println!();

    let with_cert = client_config(dir, true)?;
    let good = match talk(addr, with_cert) {
        Ok(echo) if echo == MESSAGE => {
            println!(
                "client WITH a certificate:    sent and got back {:?}  -> accepted",
                String::from_utf8_lossy(&echo).trim_end()
            );
            true
        }
        Ok(echo) => {
            println!("client WITH a certificate:    got {echo:?}, not the echo  -> UNEXPECTED");
            false
        }
        Err(e) => {
            println!("client WITH a certificate:    failed: {e}  -> UNEXPECTED");
            false
        }
    };
    let without_cert = client_config(dir, false)?;
    let refused = match talk(addr, without_cert) {
        Err(rustls::Error::AlertReceived(alert)) => {
            println!(
                "client WITHOUT a certificate: refused by the server with alert {alert:?} ({})  -> rejected",
                u8::from(alert)
            );
            true
        }
        Err(e) => {
            println!("client WITHOUT a certificate: failed without an alert: {e}  -> UNEXPECTED");
            false
        }
        Ok(_) => {
            println!("client WITHOUT a certificate: got through  -> UNEXPECTED");
            false
        }
    };
    let upstream_conns = accepted.load(Ordering::SeqCst);
    println!(
        "upstream connections: {upstream_conns} (the refused client never reached the upstream)"
    );
    let isolated = upstream_conns == 1;

    println!();
    print!("{}", hint());
    println!();
    let ok = good && refused && isolated;
    println!("demo {}", if ok { "passed" } else { "FAILED" });
    Ok(ok)
}

/// The commands to do the same by hand, for pasting into a shell: a PKI of their own (the
/// demo's is gone by then), an upstream, `serve`, and a client with and one without a
/// certificate. Lines indented by two spaces are commands; the others say where to paste them.
fn hint() -> String {
    let bin = std::env::current_exe()
        .map(|p| shell_quote(&p.to_string_lossy()))
        .unwrap_or_else(|_| "cargo run --release --".to_owned());
    let pki = std::env::current_dir()
        .map(|d| d.join(HINT_PKI_DIR))
        .unwrap_or_else(|_| PathBuf::from(HINT_PKI_DIR));
    let file = |name: &str| shell_quote(&pki.join(name).to_string_lossy());
    let port = HINT_LISTEN.rsplit(':').next().unwrap_or_default();
    let mut out = String::new();
    out.push_str(
        "Try it by hand. The demo's files are gone once it ends, so these commands write their own\n\
         dev PKI first. In one terminal (serve stays in the foreground; Ctrl-C stops it, then\n\
         `kill %1` the upstream):\n",
    );
    out.push_str(&format!(
        "  {bin} pki {}\n",
        shell_quote(&pki.to_string_lossy())
    ));
    out.push_str(&format!("  {bin} upstream --listen {HINT_UPSTREAM} &\n"));
    out.push_str(&format!(
        "  {bin} serve --listen {HINT_LISTEN} --upstream {HINT_UPSTREAM} --crt {} --key {} --mutual-tls-cas {}\n",
        file("server.pem"),
        file("server.key"),
        file("ca.pem"),
    ));
    out.push_str(
        "In another, once serve printed its {\"listening\":[...]} line: a client with a certificate\n\
         (type a line and it comes back), then one without (refused: alert certificate required):\n",
    );
    out.push_str(&format!(
        "  openssl s_client -quiet -connect {HINT_LISTEN} -CAfile {} -cert {} -key {}\n",
        file("ca.pem"),
        file("client.pem"),
        file("client.key"),
    ));
    out.push_str(&format!(
        "  curl --cacert {} https://localhost:{port}/\n",
        file("ca.pem")
    ));
    out
}

/// `s` as one POSIX shell word: as it is when it is made of safe characters only, otherwise in
/// single quotes (a `'` inside becoming `'\''`).
fn shell_quote(s: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "/._-+:=,@%".contains(c);
    if !s.is_empty() && s.chars().all(safe) {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// An echo server on 127.0.0.1:0 counting the connections it accepted.
fn start_echo_upstream() -> Result<(SocketAddr, Arc<AtomicUsize>), Error> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .map_err(Error::io("demo: cannot start the echo upstream"))?;
    let addr = listener
        .local_addr()
        .map_err(Error::io("demo: echo upstream address"))?;
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            count.fetch_add(1, Ordering::SeqCst);
            std::thread::spawn(move || {
                let mut stream = stream;
                let mut buf = [0u8; 4096];
                while let Ok(n) = stream.read(&mut buf) {
                    if n == 0 || stream.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    Ok((addr, accepted))
}

fn client_config(dir: &Path, with_cert: bool) -> Result<Arc<ClientConfig>, Error> {
    let bad = |what: &str, e: &dyn std::fmt::Display| Error::Runtime(format!("demo: {what}: {e}"));
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(dir.join("ca.pem")).map_err(|e| bad("ca.pem", &e))? {
        roots
            .add(cert.map_err(|e| bad("ca.pem", &e))?)
            .map_err(|e| bad("ca.pem", &e))?;
    }
    let builder = ClientConfig::builder_with_provider(crate::tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| bad("client config", &e))?
        .with_root_certificates(roots);
    let config = if with_cert {
        let chain = CertificateDer::pem_file_iter(dir.join("client.pem"))
            .map_err(|e| bad("client.pem", &e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad("client.pem", &e))?;
        let key = PrivateKeyDer::from_pem_file(dir.join("client.key"))
            .map_err(|e| bad("client.key", &e))?;
        builder
            .with_client_auth_cert(chain, key)
            .map_err(|e| bad("client certificate", &e))?
    } else {
        builder.with_no_client_auth()
    };
    Ok(Arc::new(config))
}

/// Connects, sends `MESSAGE`, reads it back. TLS 1.3 reports a client-certificate rejection on
/// the first read after the handshake, so the read is part of the check.
fn talk(addr: SocketAddr, config: Arc<ClientConfig>) -> Result<Vec<u8>, rustls::Error> {
    let io_err = |e: std::io::Error| match e
        .into_inner()
        .and_then(|inner| inner.downcast::<rustls::Error>().ok())
    {
        Some(tls) => *tls,
        None => rustls::Error::General("connection failed".into()),
    };
    let name =
        ServerName::try_from("localhost").map_err(|e| rustls::Error::General(e.to_string()))?;
    let conn = ClientConnection::new(config, name)?;
    let sock = TcpStream::connect(addr).map_err(|e| rustls::Error::General(e.to_string()))?;
    let _ = sock.set_read_timeout(Some(Duration::from_secs(10)));
    let mut tls = StreamOwned::new(conn, sock);
    tls.write_all(MESSAGE).map_err(io_err)?;
    let mut echo = vec![0u8; MESSAGE.len()];
    tls.read_exact(&mut echo).map_err(io_err)?;
    Ok(echo)
}

#[cfg(test)]
mod tests {
    use super::shell_quote;

    #[test]
    fn quotes_what_the_shell_would_split_or_expand() {
        assert_eq!(shell_quote("/usr/bin/ringtls"), "/usr/bin/ringtls");
        assert_eq!(shell_quote("/a b/ringtls"), "'/a b/ringtls'");
        assert_eq!(shell_quote("/it's/$HOME"), r"'/it'\''s/$HOME'");
        assert_eq!(shell_quote(""), "''");
    }
}
