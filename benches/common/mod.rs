//! What the in-memory benchmarks share: a dev PKI loaded through `ringtls::tls::load_tls` (the
//! exact `ServerConfig` `serve` would build), a matching rustls client config, and an in-memory
//! handshake driven through `ringtls::engine`.
#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use ringtls::engine;
use ringtls::proxy::alert::Written;
use ringtls::tls::capture;
use ringtls::tls::{TlsSettings, load_tls};
use ringtls::tools::pki::DevPki;
use rustls::client::Resumption;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection};

/// A dev PKI and the server configuration `serve` would build from it.
pub struct Fixture {
    pub pki: DevPki,
    pub server_config: Arc<ServerConfig>,
}

impl Fixture {
    pub fn new() -> Fixture {
        let pki = DevPki::generate().expect("dev pki");
        let dir = std::env::temp_dir().join(format!("ringtls-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let write = |name: &str, body: &str| {
            let p = dir.join(name);
            std::fs::write(&p, body).expect("write");
            p
        };
        let files = TlsSettings::new(
            write("server.pem", &pki.server_pem),
            write("server.key", &pki.server_key),
            vec![write("ca.pem", &pki.ca_pem)],
        );
        let material = load_tls(&files).expect("load tls");
        let _ = std::fs::remove_dir_all(&dir);
        Fixture {
            pki,
            server_config: material.server_config,
        }
    }

    /// A TLS 1.3 client with the dev client certificate.
    pub fn client_config(&self, resume: bool) -> Arc<ClientConfig> {
        let pki = &self.pki;
        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(pki.ca_pem.as_bytes()).expect("ca"))
            .expect("root");
        let chain =
            vec![CertificateDer::from_pem_slice(pki.client_pem.as_bytes()).expect("client cert")];
        let key = PrivateKeyDer::from_pem_slice(pki.client_key.as_bytes()).expect("client key");
        let mut config = ClientConfig::builder_with_provider(ringtls::tls::provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("versions")
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .expect("client auth");
        if !resume {
            config.resumption = Resumption::disabled();
        }
        Arc::new(config)
    }
}

/// Runs one in-memory handshake; returns both ends and the time spent in server-side calls.
pub fn handshake(
    server_config: &Arc<ServerConfig>,
    client_config: &Arc<ClientConfig>,
) -> (ClientConnection, ServerConnection, Duration) {
    let name = ServerName::try_from("localhost").expect("name");
    let mut client = ClientConnection::new(client_config.clone(), name).expect("client");
    let t0 = Instant::now();
    let mut server = ServerConnection::new(server_config.clone()).expect("server");
    let mut server_time = t0.elapsed();
    let mut to_server = Vec::new();
    let mut to_client = Vec::new();
    let mut plain = Vec::new();
    let mut secrets = capture::Secrets::default();
    let mut written = Written::default();
    // Until the client has read the server's post-handshake tickets.
    for _ in 0..10 {
        to_server.clear();
        engine::take_tls(&mut client, &mut to_server);
        let t = Instant::now();
        // As `proxy::handshake::accept_client` does: each step armed for what the verifier and
        // the key log reveal, the secrets kept, the written records counted.
        let (fed, captured) = capture::during(|| engine::feed(&mut server, &to_server, &mut plain));
        fed.expect("server accepts");
        secrets.merge(captured.secrets);
        to_client.clear();
        engine::take_tls(&mut server, &mut to_client);
        written.add(&to_client);
        server_time += t.elapsed();
        engine::feed(&mut client, &to_client, &mut plain).expect("client accepts");
        if !client.is_handshaking()
            && !server.is_handshaking()
            && !client.wants_write()
            && to_client.is_empty()
        {
            break;
        }
    }
    assert!(!server.is_handshaking(), "handshake did not complete");
    (client, server, server_time)
}

/// The median of `samples`.
pub fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}
