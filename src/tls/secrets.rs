//! TLS 1.3 secrets from rustls' key log: the application traffic secrets of connections that
//! may go to kernel TLS, kept so that a KeyUpdate can be followed there (RFC 8446 §4.6.3,
//! §7.2), and the server's handshake and traffic secrets of every handshake, so that the alert
//! rustls sealed when it refused a client can be read back for the log (`open_alert`).
//!
//! rustls' buffered connection hands over keys and IVs (`dangerous_extract_secrets`), and only
//! after a successful handshake; the one place it gives out traffic secrets is the key log.
//! `KeyLogs` records them into the per-handshake slot of `capture`, armed around each
//! `process_new_packets` of one connection, so what it holds is surely that connection's. It
//! also writes `--unsafe-keylog`'s file when that is on. The handshake drops them when it ends
//! (kernel TLS keeps the application secrets); they are never logged.
//!
//! Cost: rustls derives these secrets whether or not they are logged; capturing is a copy of
//! two or three 32-48 byte blocks per handshake (measured in the report of this change with
//! `scripts/handshake-cpu.sh`).
//!
//! `Rekey` then derives each next secret and its key and IV with the suite's own HKDF.

use rustls::KeyLog;
use rustls::crypto::tls13::{Hkdf, HkdfExpander, OkmBlock};
use rustls::{CipherSuite, SupportedCipherSuite, Tls12CipherSuite, Tls13CipherSuite};

use super::capture::{self, Secrets};
use super::keylog::KeyLogFile;

const CLIENT: &str = "CLIENT_TRAFFIC_SECRET_0";
const SERVER: &str = "SERVER_TRAFFIC_SECRET_0";
const SERVER_HANDSHAKE: &str = "SERVER_HANDSHAKE_TRAFFIC_SECRET";
const TLS12_MASTER: &str = "CLIENT_RANDOM";

/// The server config's key log: the `--unsafe-keylog` file, the server's secrets of every
/// handshake (to read back a sealed alert), and the client's for kernel TLS.
#[derive(Debug)]
pub struct KeyLogs {
    pub file: Option<KeyLogFile>,
    /// Also keep `CLIENT_TRAFFIC_SECRET_0`, for following key updates on kernel TLS.
    pub kernel: bool,
}

impl KeyLog for KeyLogs {
    fn log(&self, label: &str, client_random: &[u8], secret: &[u8]) {
        if let Some(file) = &self.file {
            file.log(label, client_random, secret);
        }
        capture::record(|captured| {
            let slot = &mut captured.secrets;
            match label {
                SERVER_HANDSHAKE => slot.server_handshake = Some(OkmBlock::new(secret)),
                SERVER => slot.server_traffic = Some(OkmBlock::new(secret)),
                CLIENT if self.kernel => slot.client_traffic = Some(OkmBlock::new(secret)),
                TLS12_MASTER => {
                    if let Ok(random) = <[u8; 32]>::try_from(client_random) {
                        slot.tls12_master = Some((random, OkmBlock::new(secret)));
                    }
                }
                _ => {}
            }
        });
    }

    fn will_log(&self, label: &str) -> bool {
        self.file.is_some()
            || label == SERVER_HANDSHAKE
            || label == SERVER
            || label == TLS12_MASTER
            || (self.kernel && label == CLIENT)
    }
}

/// A connection's current application traffic secrets.
pub struct TrafficSecrets {
    client: OkmBlock,
    server: OkmBlock,
}

impl std::fmt::Debug for TrafficSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TrafficSecrets(..)")
    }
}

impl TrafficSecrets {
    /// Both application secrets, if the handshake logged both (kernel TLS only).
    pub fn take(secrets: &mut Secrets) -> Option<TrafficSecrets> {
        match (secrets.client_traffic.take(), secrets.server_traffic.take()) {
            (Some(client), Some(server)) => Some(TrafficSecrets { client, server }),
            _ => None,
        }
    }
}

/// What a sealed record of ours held.
#[derive(Debug, PartialEq, Eq)]
pub enum Opened {
    /// An alert with this description.
    Alert(u8),
    /// Something else (a handshake message).
    NotAnAlert,
    /// No secret and sequence number authenticated it.
    Unreadable,
}

/// Reads the alert in a TLS 1.3 record we sealed (`record`: header and body) with one of the
/// server's secrets: tries each secret and each sequence number up to `max_seq` (AEAD
/// authentication tells the right one). Only on a refusal, so the few tries cost nothing
/// that matters.
pub fn open_alert(
    suite: &Tls13CipherSuite,
    secrets: &Secrets,
    record: &[u8],
    max_seq: u64,
) -> Opened {
    use aws_lc_rs::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
    let algorithm = match suite.common.suite {
        CipherSuite::TLS13_AES_128_GCM_SHA256 => &aead::AES_128_GCM,
        CipherSuite::TLS13_AES_256_GCM_SHA384 => &aead::AES_256_GCM,
        CipherSuite::TLS13_CHACHA20_POLY1305_SHA256 => &aead::CHACHA20_POLY1305,
        _ => return Opened::Unreadable,
    };
    let (Some(Ok(header)), Some(body)) =
        (record.get(..5).map(<[u8; 5]>::try_from), record.get(5..))
    else {
        return Opened::Unreadable;
    };
    for secret in [&secrets.server_handshake, &secrets.server_traffic]
        .into_iter()
        .flatten()
    {
        let expander = suite.hkdf_provider.expander_for_okm(secret);
        let mut key = vec![0u8; algorithm.key_len()];
        expand_label(expander.as_ref(), b"key", &mut key);
        let mut iv = [0u8; 12];
        expand_label(expander.as_ref(), b"iv", &mut iv);
        let key = UnboundKey::new(algorithm, &key).map(LessSafeKey::new);
        let Ok(key) = key else { continue };
        for seq in 0..=max_seq {
            // RFC 8446 §5.3: the per-record nonce is the IV xor the sequence number.
            let mut nonce = iv;
            for (n, s) in nonce[4..].iter_mut().zip(seq.to_be_bytes()) {
                *n ^= s;
            }
            let mut buf = body.to_vec();
            let Ok(plain) = key.open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(header),
                &mut buf,
            ) else {
                continue;
            };
            // TLSInnerPlaintext (RFC 8446 §5.2): content, the real type, then zero padding.
            return match plain.iter().rposition(|&b| b != 0) {
                Some(end) => match (plain[end], &plain[..end]) {
                    (21, [_level, description]) => Opened::Alert(*description),
                    _ => Opened::NotAnAlert,
                },
                None => Opened::NotAnAlert,
            };
        }
    }
    Opened::Unreadable
}

/// Reads the alert in a TLS 1.2 record we sealed after our ChangeCipherSpec (`record`: header
/// and body), with the keys the master secret gives (RFC 5246 §6.3: key_block = PRF(master,
/// "key expansion", server_random + client_random)), trying each sequence number up to
/// `max_seq`. AEAD suites only, as rustls offers no others.
pub fn open_tls12_alert(
    suite: &Tls12CipherSuite,
    secrets: &Secrets,
    server_random: &[u8; 32],
    record: &[u8],
    max_seq: u64,
) -> Opened {
    use aws_lc_rs::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
    let Some((client_random, master)) = &secrets.tls12_master else {
        return Opened::Unreadable;
    };
    // (algorithm, fixed IV length, explicit nonce in the record): RFC 5288 §3 for AES-GCM,
    // RFC 7905 §2 for ChaCha20-Poly1305.
    let (algorithm, fixed_iv, explicit) = match suite.common.suite {
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
        | CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 => (&aead::AES_128_GCM, 4, 8),
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
        | CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 => (&aead::AES_256_GCM, 4, 8),
        CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
        | CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256 => {
            (&aead::CHACHA20_POLY1305, 12, 0)
        }
        _ => return Opened::Unreadable,
    };
    let key_len = algorithm.key_len();
    let mut seed = [0u8; 64];
    seed[..32].copy_from_slice(server_random);
    seed[32..].copy_from_slice(client_random);
    // client key, server key, client IV, server IV.
    let mut block = vec![0u8; 2 * key_len + 2 * fixed_iv];
    suite
        .prf_provider
        .for_secret(&mut block, master.as_ref(), b"key expansion", &seed);
    let server_key = &block[key_len..2 * key_len];
    let mut server_iv = [0u8; 12];
    server_iv[..fixed_iv].copy_from_slice(&block[2 * key_len + fixed_iv..]);
    let key = UnboundKey::new(algorithm, server_key).map(LessSafeKey::new);
    block.iter_mut().for_each(|b| *b = 0);
    let (Ok(key), Some(body)) = (key, record.get(5..)) else {
        return Opened::Unreadable;
    };
    let Some(sealed_len) = body.len().checked_sub(explicit + algorithm.tag_len()) else {
        return Opened::Unreadable;
    };
    for seq in 0..=max_seq {
        let mut nonce = [0u8; 12];
        if explicit == 0 {
            nonce = server_iv;
            for (n, s) in nonce[4..].iter_mut().zip(seq.to_be_bytes()) {
                *n ^= s;
            }
        } else {
            nonce[..4].copy_from_slice(&server_iv[..4]);
            nonce[4..].copy_from_slice(&body[..8]);
        }
        // RFC 5246 §6.2.3.3: seq_num + type + version + length.
        let mut aad = [0u8; 13];
        aad[..8].copy_from_slice(&seq.to_be_bytes());
        aad[8..11].copy_from_slice(&record[..3]);
        aad[11..].copy_from_slice(&(sealed_len as u16).to_be_bytes());
        let mut buf = body[explicit..].to_vec();
        if let Ok(plain) = key.open_in_place(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad),
            &mut buf,
        ) {
            return match (record[0], &plain[..]) {
                (21, [_level, description]) => Opened::Alert(*description),
                _ => Opened::NotAnAlert,
            };
        }
    }
    Opened::Unreadable
}

/// A key and IV for one direction, for the kernel (zeroed when dropped, best effort).
pub struct KeyIv {
    pub key: Vec<u8>,
    pub iv: [u8; 12],
}

impl Drop for KeyIv {
    fn drop(&mut self) {
        self.key.iter_mut().for_each(|b| *b = 0);
        self.iv = [0; 12];
    }
}

/// Follows a TLS 1.3 connection's key updates: each call steps one direction's secret.
pub struct Rekey {
    hkdf: &'static dyn Hkdf,
    key_len: usize,
    secrets: TrafficSecrets,
}

impl Rekey {
    /// `None` for a TLS 1.2 suite, which has no key updates.
    pub fn new(suite: SupportedCipherSuite, secrets: TrafficSecrets) -> Option<Rekey> {
        let SupportedCipherSuite::Tls13(suite) = suite else {
            return None;
        };
        let suite: &'static Tls13CipherSuite = suite;
        Some(Rekey {
            hkdf: suite.hkdf_provider,
            key_len: suite.aead_alg.key_len(),
            secrets,
        })
    }

    /// The client's next secret (after it sent a KeyUpdate), as key and IV.
    pub fn next_client(&mut self) -> KeyIv {
        step(self.hkdf, self.key_len, &mut self.secrets.client)
    }

    /// Our next secret (after we sent a KeyUpdate), as key and IV.
    pub fn next_server(&mut self) -> KeyIv {
        step(self.hkdf, self.key_len, &mut self.secrets.server)
    }
}

/// application_traffic_secret_N+1 = HKDF-Expand-Label(secret_N, "traffic upd", "", Hash.length)
/// (RFC 8446 §7.2); then its key and IV (§7.3).
fn step(hkdf: &dyn Hkdf, key_len: usize, secret: &mut OkmBlock) -> KeyIv {
    let next = {
        let expander = hkdf.expander_for_okm(secret);
        let len = expander.hash_len();
        let mut out = vec![0u8; len];
        expand_label(expander.as_ref(), b"traffic upd", &mut out);
        let block = OkmBlock::new(&out);
        out.iter_mut().for_each(|b| *b = 0);
        block
    };
    *secret = next;
    let expander = hkdf.expander_for_okm(secret);
    let mut key = vec![0u8; key_len];
    expand_label(expander.as_ref(), b"key", &mut key);
    let mut iv = [0u8; 12];
    expand_label(expander.as_ref(), b"iv", &mut iv);
    KeyIv { key, iv }
}

/// HKDF-Expand-Label(secret, label, "", out.len()) (RFC 8446 §7.1).
fn expand_label(expander: &dyn HkdfExpander, label: &[u8], out: &mut [u8]) {
    let len = (out.len() as u16).to_be_bytes();
    let label_len = [(b"tls13 ".len() + label.len()) as u8];
    let context_len = [0u8];
    let info: [&[u8]; 5] = [&len, &label_len, b"tls13 ", label, &context_len];
    // Our lengths (12, 16, 32, 48 bytes) are far below HKDF's 255 blocks.
    let _ = expander.expand_slice(&info, out);
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
    use rustls::{ClientConfig, ClientConnection, ConnectionTrafficSecrets, ServerConfig};

    use super::*;

    /// Moves every pending record from one side to the other.
    fn pump(
        from: &mut impl std::ops::DerefMut<Target = rustls::ConnectionCommon<impl Sized>>,
        to: &mut impl std::ops::DerefMut<Target = rustls::ConnectionCommon<impl Sized>>,
    ) {
        let mut buf = Vec::new();
        while from.wants_write() {
            from.write_tls(&mut buf).expect("write_tls");
        }
        let mut input = &buf[..];
        while !input.is_empty() {
            to.read_tls(&mut input).expect("read_tls");
            to.process_new_packets().expect("process");
        }
    }

    fn key_iv(secrets: &ConnectionTrafficSecrets) -> (Vec<u8>, Vec<u8>) {
        match secrets {
            ConnectionTrafficSecrets::Aes128Gcm { key, iv }
            | ConnectionTrafficSecrets::Aes256Gcm { key, iv }
            | ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => {
                (key.as_ref().to_vec(), iv.as_ref().to_vec())
            }
            _ => panic!("unexpected suite"),
        }
    }

    const TLS13_SUITES: [rustls::SupportedCipherSuite; 3] = [
        rustls::crypto::aws_lc_rs::cipher_suite::TLS13_AES_128_GCM_SHA256,
        rustls::crypto::aws_lc_rs::cipher_suite::TLS13_AES_256_GCM_SHA384,
        rustls::crypto::aws_lc_rs::cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
    ];

    /// A self-signed certificate for localhost and its key.
    fn self_signed() -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("cert");
        let der = CertificateDer::from(cert.cert.der().to_vec());
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der()));
        (der, key)
    }

    /// After a client KeyUpdate (update_requested) and our answer, both sides' new keys are
    /// what `Rekey` derives from the captured secrets, for each TLS 1.3 suite.
    #[test]
    fn derives_the_keys_rustls_moves_to_after_a_key_update() {
        let provider = rustls::crypto::aws_lc_rs::default_provider();
        for suite in TLS13_SUITES {
            let (der, key) = self_signed();
            let mut server_config =
                ServerConfig::builder_with_provider(Arc::new(rustls::crypto::CryptoProvider {
                    cipher_suites: vec![suite],
                    ..provider.clone()
                }))
                .with_protocol_versions(&[&rustls::version::TLS13])
                .expect("versions")
                .with_no_client_auth()
                .with_single_cert(vec![der.clone()], key)
                .expect("server config");
            server_config.enable_secret_extraction = true;
            server_config.key_log = Arc::new(KeyLogs {
                file: None,
                kernel: true,
            });
            let mut roots = rustls::RootCertStore::empty();
            roots.add(der).expect("root");
            let mut client_config = ClientConfig::builder_with_provider(Arc::new(provider.clone()))
                .with_safe_default_protocol_versions()
                .expect("versions")
                .with_root_certificates(roots)
                .with_no_client_auth();
            client_config.enable_secret_extraction = true;
            let mut client = ClientConnection::new(
                Arc::new(client_config),
                ServerName::try_from("localhost").expect("name"),
            )
            .expect("client");
            let mut server =
                rustls::ServerConnection::new(Arc::new(server_config)).expect("server");
            let mut captured = Secrets::default();
            while client.is_handshaking() || server.is_handshaking() {
                let ((), step) = capture::during(|| pump(&mut client, &mut server));
                captured.merge(step.secrets);
                pump(&mut server, &mut client);
            }
            let negotiated = server.negotiated_cipher_suite().expect("suite");
            let mut rekey = Rekey::new(
                negotiated,
                TrafficSecrets::take(&mut captured).expect("secrets"),
            )
            .expect("TLS 1.3");

            client.refresh_traffic_keys().expect("key update");
            pump(&mut client, &mut server); // the client's KeyUpdate(update_requested)
            // rustls sends its answering KeyUpdate (sealed under the old key, its sending key
            // already moved on) before its next data.
            std::io::Write::write_all(&mut server.writer(), b"after").expect("write");
            pump(&mut server, &mut client);
            let client_secrets = client.dangerous_extract_secrets().expect("client secrets");
            let server_secrets = server.dangerous_extract_secrets().expect("server secrets");

            let ours = |k: KeyIv| (k.key.clone(), k.iv.to_vec());
            let (next_client, next_server) = (ours(rekey.next_client()), ours(rekey.next_server()));
            // What each side sends with now is what the other receives with, and what we derive.
            let sent = [key_iv(&client_secrets.tx.1), key_iv(&server_secrets.tx.1)];
            let received = [key_iv(&server_secrets.rx.1), key_iv(&client_secrets.rx.1)];
            let derived = [next_client, next_server];
            assert_eq!(sent, derived, "{suite:?}");
            assert_eq!(received, derived, "{suite:?}");
            assert_eq!(
                server_secrets.rx.0, 0,
                "the client's new key has sealed nothing yet"
            );
        }
    }

    /// A client without a certificate is refused with certificate_required, which rustls seals
    /// under its application secret (its Finished is out); `open_alert` reads it from the
    /// secrets the key log gave, for each TLS 1.3 suite.
    #[test]
    fn opens_the_alert_rustls_sealed_for_each_tls13_suite() {
        let provider = rustls::crypto::aws_lc_rs::default_provider();
        for suite in TLS13_SUITES {
            let (der, key) = self_signed();
            let mut roots = rustls::RootCertStore::empty();
            roots.add(der.clone()).expect("root");
            let roots = Arc::new(roots);
            let only = Arc::new(rustls::crypto::CryptoProvider {
                cipher_suites: vec![suite],
                ..provider.clone()
            });
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                roots.clone(),
                only.clone(),
            )
            .build()
            .expect("verifier");
            let mut server_config = ServerConfig::builder_with_provider(only)
                .with_protocol_versions(&[&rustls::version::TLS13])
                .expect("versions")
                .with_client_cert_verifier(verifier)
                .with_single_cert(vec![der], key)
                .expect("server config");
            server_config.key_log = Arc::new(KeyLogs {
                file: None,
                kernel: false,
            });
            let client_config = ClientConfig::builder_with_provider(Arc::new(provider.clone()))
                .with_safe_default_protocol_versions()
                .expect("versions")
                .with_root_certificates(roots)
                .with_no_client_auth();
            let mut client = ClientConnection::new(
                Arc::new(client_config),
                ServerName::try_from("localhost").expect("name"),
            )
            .expect("client");
            let mut server =
                rustls::ServerConnection::new(Arc::new(server_config)).expect("server");
            let mut secrets = Secrets::default();
            let mut sent = Vec::new();
            let refused = loop {
                let mut hello = Vec::new();
                while client.wants_write() {
                    client.write_tls(&mut hello).expect("client records");
                }
                let mut input = &hello[..];
                server.read_tls(&mut input).expect("read_tls");
                let (result, step) = capture::during(|| server.process_new_packets());
                secrets.merge(step.secrets);
                let mut out = Vec::new();
                while server.wants_write() {
                    server.write_tls(&mut out).expect("server records");
                }
                if result.is_err() {
                    break out;
                }
                sent.extend_from_slice(&out);
                let mut input = &out[..];
                client.read_tls(&mut input).expect("client read_tls");
                client.process_new_packets().expect("client accepts");
            };
            let sealed_before = crate::proxy::alert::records(&sent)
                .filter(|r| r[0] == 23)
                .count() as u64;
            let last = crate::proxy::alert::records(&refused)
                .last()
                .expect("a record");
            assert_eq!(last[0], 23, "{suite:?}: the alert is sealed");
            let Some(SupportedCipherSuite::Tls13(negotiated)) = server.negotiated_cipher_suite()
            else {
                panic!("TLS 1.3");
            };
            assert_eq!(
                open_alert(negotiated, &secrets, last, sealed_before + 1),
                Opened::Alert(116),
                "{suite:?}"
            );
            // Without the secrets, nothing is guessed.
            assert_eq!(
                open_alert(negotiated, &Secrets::default(), last, sealed_before + 1),
                Opened::Unreadable
            );
        }
    }
}
