//! Verification strategies (`--client-auth` / `client_auth`), after Go's `tls.ClientAuthType`
//! and the system we follow: require-and-verify (today's behaviour, rustls' WebPKI verifier),
//! require-any, request, none.
//!
//! The two strategies that do not verify the chain share `UnverifiedClient`: it takes whatever
//! certificate the client sends without looking at its issuer, dates or revocation, but still
//! checks the handshake signature made with its key (CertificateVerify), so a client admitted
//! by `require-any` has at least shown it holds the key of the certificate it presented. What
//! such a connection says about its client is marked unverified wherever it goes (the event's
//! `verified=false`, the PROXY v2 verify field, the handshake metrics).

use std::fmt;
use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

/// What is asked of a client's certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientAuth {
    /// A certificate is required and its chain must lead to a trusted CA (the default
    /// whenever CAs are given).
    #[default]
    RequireAndVerify,
    /// A certificate and proof of its key are required; its chain is not checked.
    RequireAny,
    /// A certificate is asked for but not required, and not checked.
    Request,
    /// None is asked for (the default without CAs).
    None,
}

impl ClientAuth {
    pub fn parse(s: &str) -> Option<ClientAuth> {
        Some(match s {
            "require-and-verify" => ClientAuth::RequireAndVerify,
            "require-any" => ClientAuth::RequireAny,
            "request" => ClientAuth::Request,
            "none" => ClientAuth::None,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ClientAuth::RequireAndVerify => "require-and-verify",
            ClientAuth::RequireAny => "require-any",
            ClientAuth::Request => "request",
            ClientAuth::None => "none",
        }
    }

    /// Whether a client's chain is checked against the trust store.
    pub fn verifies(self) -> bool {
        self == ClientAuth::RequireAndVerify
    }
}

impl fmt::Display for ClientAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `require-any` (mandatory) and `request` (optional): any certificate, its key proven.
#[derive(Debug)]
pub(crate) struct UnverifiedClient {
    provider: Arc<CryptoProvider>,
    hints: Vec<DistinguishedName>,
    mandatory: bool,
}

impl UnverifiedClient {
    /// `hints`: the CA names to put in CertificateRequest (the trust store's, when there is
    /// one and `--ca-names` sends them), so a client holding several certificates can choose.
    pub(crate) fn new(
        provider: Arc<CryptoProvider>,
        hints: Vec<DistinguishedName>,
        mandatory: bool,
    ) -> UnverifiedClient {
        UnverifiedClient {
            provider,
            hints,
            mandatory,
        }
    }
}

impl ClientCertVerifier for UnverifiedClient {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        // The strategy: the chain is not looked at. The key is, in the signature checks below.
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
