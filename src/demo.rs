//! `ringtls demo`: mutual TLS end to end with nothing to set up. It writes a throw-away dev PKI,
//! starts an echo upstream and `serve` in-process on port 0, then shows a client with a
//! certificate getting its bytes echoed and a client without one refused with an alert. It
//! succeeds only if both happen, and prints the commands to try the same by hand.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

use crate::config::{Listen, ServeConfig};
use crate::error::Error;
use crate::tls::TlsSettings;

const MESSAGE: &[u8] = b"hello through mutual TLS\n";

/// Runs the demo; `Ok(true)` when both outcomes were as expected.
pub fn run_demo() -> Result<bool, Error> {
    let dir = std::env::temp_dir().join(format!("ringtls-demo-{}", std::process::id()));
    crate::pki::write_dev_pki(&dir)?;
    let (upstream, accepted) = start_echo_upstream()?;

    let config = ServeConfig {
        listen: Listen::Bind(vec![SocketAddr::from(([127, 0, 0, 1], 0))]),
        upstream: upstream.to_string(),
        upstream_addrs: vec![crate::proxy::connect::UpstreamAddr::Tcp(upstream)],
        tls: TlsSettings::new(
            dir.join("server.pem"),
            dir.join("server.key"),
            vec![dir.join("ca.pem")],
        ),
        threads: 1,
        handshake_timeout: Duration::from_secs(10),
        connect_timeout: Duration::from_secs(5),
        idle_timeout: Duration::from_secs(30),
        max_conns: None,
        proxy_protocol: false,
        log: Default::default(),
        metrics: None,
        watch: false,
        reauthorize: false,
        drain_timeout: Duration::from_secs(1),
        ktls: Default::default(),
    };
    let server = crate::start(&config)?;
    let addr = server.local_addrs()[0];
    println!("ringtls is listening on {addr}, forwarding to an echo upstream on {upstream}");
    println!("dev PKI written to {}", dir.display());
    println!();

    let with_cert = client_config(&dir, true)?;
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
    let without_cert = client_config(&dir, false)?;
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

    let d = dir.display();
    println!();
    println!("Try it by hand (in another terminal, with the same files):");
    println!("  ringtls serve --listen 127.0.0.1:8443 --upstream 127.0.0.1:8080 \\");
    println!("      --crt {d}/server.pem --key {d}/server.key --mutual-tls-cas {d}/ca.pem");
    println!(
        "  curl --cacert {d}/ca.pem --cert {d}/client-cert-and-key.pem https://localhost:8443/"
    );
    println!(
        "  openssl s_client -connect 127.0.0.1:8443 -CAfile {d}/ca.pem -cert {d}/client.pem -key {d}/client.key"
    );
    println!();
    let ok = good && refused && isolated;
    println!("demo {}", if ok { "passed" } else { "FAILED" });
    Ok(ok)
}

/// An echo server on 127.0.0.1:0 counting the connections it accepted.
fn start_echo_upstream() -> Result<(SocketAddr, Arc<AtomicUsize>), Error> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .map_err(|e| Error::Runtime(format!("demo: cannot start the echo upstream: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::Runtime(format!("demo: echo upstream address: {e}")))?;
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
