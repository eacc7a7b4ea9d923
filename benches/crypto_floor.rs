//! The crypto floor of one full mutual-TLS 1.3 handshake on this machine: the public-key
//! operations the server cannot avoid, timed with aws-lc-rs exactly as rustls calls them —
//! one ECDSA P-256 sign (CertificateVerify), two ECDSA P-256 verifies (the client certificate's
//! signature by its CA, and the client's CertificateVerify) and one X25519 key exchange
//! (ephemeral key generation plus agreement). Every handshake figure of `scripts/bench.sh` can be
//! read as a multiple of this sum.
//!
//! Two smaller floors beside it:
//! - a full handshake whose client chain is already in the verified-chain cache: the CA's
//!   signature on the client certificate is not checked again, so one sign, one verify (the
//!   CertificateVerify) and one X25519 (`mtls_handshake_floor_cached_us`);
//! - a resumed handshake (PSK with DHE): one X25519, opening the ticket the client presents and
//!   sealing the one it gets back, AES-256-GCM as `--ticket-keys` and rustls' own ticketer use
//!   it, over 1 KiB (a TLS 1.3 session with the client's certificate in it; the exact size
//!   moves with the chain) (`resumed_handshake_floor_us`).
//!
//! `cargo bench --bench crypto_floor` prints a table; `-- --json` prints one JSON line.

use std::hint::black_box;
use std::time::{Duration, Instant};

use aws_lc_rs::aead::{AES_256_GCM, Aad, RandomizedNonceKey};
use aws_lc_rs::agreement::{self, EphemeralPrivateKey, UnparsedPublicKey, X25519};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    self, ECDSA_P256_SHA256_ASN1, ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair,
};

/// The plaintext of a session ticket, for its seal and open: a TLS 1.3 session that carries the
/// client's certificate (a P-256 leaf is about 500 bytes of DER) and the resumption secret.
const TICKET_PLAINTEXT: usize = 1024;

/// Median time per call of `f`, over `rounds` rounds of `per_round` calls.
fn median_per_call(rounds: usize, per_round: usize, mut f: impl FnMut()) -> Duration {
    let mut samples: Vec<Duration> = (0..rounds)
        .map(|_| {
            let t0 = Instant::now();
            for _ in 0..per_round {
                f();
            }
            t0.elapsed() / per_round as u32
        })
        .collect();
    samples.sort();
    samples[samples.len() / 2]
}

fn main() {
    let json = std::env::args().any(|a| a == "--json");
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng)
        .expect("generate a P-256 key");
    let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref())
        .expect("load the P-256 key");
    // A TLS 1.3 CertificateVerify signs 64 spaces, a context string, a zero byte and a hash.
    let message = [0x20u8; 130];
    let sig = key.sign(&rng, &message).expect("sign");
    let public = signature::UnparsedPublicKey::new(
        &ECDSA_P256_SHA256_ASN1,
        key.public_key().as_ref().to_vec(),
    );
    let peer = EphemeralPrivateKey::generate(&X25519, &rng).expect("x25519 key");
    let peer_public = peer
        .compute_public_key()
        .expect("x25519 public")
        .as_ref()
        .to_vec();

    let (rounds, per_round) = (15, 200);
    let sign = median_per_call(rounds, per_round, || {
        black_box(key.sign(&rng, black_box(&message)).expect("sign"));
    });
    let verify = median_per_call(rounds, per_round, || {
        public
            .verify(black_box(&message), black_box(sig.as_ref()))
            .expect("verify");
    });
    let x25519 = median_per_call(rounds, per_round, || {
        let ours = EphemeralPrivateKey::generate(&X25519, &rng).expect("x25519 key");
        black_box(ours.compute_public_key().expect("public"));
        let theirs = UnparsedPublicKey::new(&X25519, &peer_public);
        agreement::agree_ephemeral(ours, theirs, (), |secret| {
            black_box(secret);
            Ok(())
        })
        .expect("agree");
    });
    let ticket_key = RandomizedNonceKey::new(&AES_256_GCM, &[7u8; 32]).expect("AES-256-GCM key");
    let session = vec![0x5au8; TICKET_PLAINTEXT];
    let ticket = median_per_call(rounds, per_round, || {
        let mut sealed = session.clone();
        let nonce = ticket_key
            .seal_in_place_append_tag(Aad::empty(), &mut sealed)
            .expect("seal");
        let opened = ticket_key
            .open_in_place(nonce, Aad::empty(), &mut sealed)
            .expect("open");
        black_box(opened);
    });
    let floor = sign + verify * 2 + x25519;
    let cached = sign + verify + x25519;
    let resumed = x25519 + ticket;
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    if json {
        println!(
            "{{\"bench\":\"crypto_floor\",\"ecdsa_p256_sign_us\":{:.1},\"ecdsa_p256_verify_us\":{:.1},\"x25519_us\":{:.1},\"ticket_seal_open_us\":{:.2},\"full_mtls_handshake_floor_us\":{:.1},\"mtls_handshake_floor_cached_us\":{:.1},\"resumed_handshake_floor_us\":{:.1}}}",
            us(sign),
            us(verify),
            us(x25519),
            us(ticket),
            us(floor),
            us(cached),
            us(resumed)
        );
    } else {
        println!("aws-lc-rs on this machine (median of {rounds} rounds × {per_round}):");
        println!("  ECDSA P-256 sign            {:>7.1} µs", us(sign));
        println!("  ECDSA P-256 verify          {:>7.1} µs", us(verify));
        println!("  X25519 keygen + agree       {:>7.1} µs", us(x25519));
        println!(
            "  ticket seal + open, 1 KiB   {:>7.2} µs (AES-256-GCM)",
            us(ticket)
        );
        println!(
            "  floor: 1 sign + 2 verify + 1 X25519 = {:.1} µs per full mTLS handshake",
            us(floor)
        );
        println!(
            "  floor: 1 sign + 1 verify + 1 X25519 = {:.1} µs with the client chain cached",
            us(cached)
        );
        println!(
            "  floor: 1 X25519 + ticket open and seal = {:.1} µs per resumed handshake",
            us(resumed)
        );
    }
}
