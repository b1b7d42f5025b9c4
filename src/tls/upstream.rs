//! Owns: the rustls client configuration a shard uses to speak TLS to a backend's servers
//! (`[backend.tls]`): trusted CAs, optional no-verify mode, and the name each server is checked
//! against. Each shard builds its own (and so keeps its own client session cache, resuming
//! sessions to backends without cross-core locks).
//! Must not: touch sockets (shard/tls.rs drives the connections).

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use super::server::TlsSetupError;
use crate::config::UpstreamTls;

/// Debian's (and most distributions') CA bundle, used when `ca` is not given.
pub use crate::config::SYSTEM_CA_BUNDLE;

/// Reads every certificate of a PEM file into a root store.
pub fn load_roots(path: &Path) -> Result<RootCertStore, TlsSetupError> {
    let err = |reason: String| TlsSetupError::Cert {
        path: path.to_path_buf(),
        reason,
    };
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| err(e.to_string()))? {
        let cert = cert.map_err(|e| err(e.to_string()))?;
        roots
            .add(cert)
            .map_err(|e| err(format!("not a usable CA certificate: {e}")))?;
    }
    if roots.is_empty() {
        return Err(err("holds no CA certificate".into()));
    }
    Ok(roots)
}

/// `verify = false`: accepts any certificate, still checks the handshake signatures.
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// One shard's client configuration for a backend.
pub fn shard_client_config(t: &UpstreamTls) -> Result<Arc<ClientConfig>, TlsSetupError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsSetupError::Rustls(e.to_string()))?;
    let mut config = if t.verify {
        builder
            .with_root_certificates(load_roots(&t.ca)?)
            .with_no_client_auth()
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
            .with_no_client_auth()
    };
    config.alpn_protocols = Vec::new();
    Ok(Arc::new(config))
}

/// The name a server is verified against: `sni` when set, else its IP address.
pub fn server_name(t: &UpstreamTls, ip: IpAddr) -> ServerName<'static> {
    match t
        .sni
        .as_deref()
        .map(|s| ServerName::try_from(s.to_string()))
    {
        Some(Ok(name)) => name,
        _ => ServerName::IpAddress(ip.into()),
    }
}
