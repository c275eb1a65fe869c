//! TLS client configuration for `wss://` (built once per shard at start-up, then shared
//! read-only with its connector thread): rustls on ring with the bundled webpki roots, plus any
//! extra CA certificates the operator adds (e.g. a simulator's self-signed CA).

use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// Why the TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    #[error("CA certificate PEM is invalid: {0}")]
    Pem(String),
    #[error("CA certificate PEM holds no certificate")]
    NoCertificate,
    #[error("CA certificate refused: {0}")]
    Certificate(rustls::Error),
    #[error("TLS configuration refused: {0}")]
    Config(rustls::Error),
}

/// A rustls client configuration trusting the webpki roots and every certificate in
/// `extra_ca_pem` (PEM text, possibly several certificates).
///
/// # Errors
/// The PEM text is malformed, holds no certificate, or a certificate is not usable as a root.
pub fn client_config(
    extra_ca_pem: Option<&str>,
) -> Result<Arc<rustls::ClientConfig>, TlsConfigError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(pem) = extra_ca_pem {
        let mut added = 0usize;
        for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            let cert = cert.map_err(|error| TlsConfigError::Pem(error.to_string()))?;
            roots.add(cert).map_err(TlsConfigError::Certificate)?;
            added += 1;
        }
        if added == 0 {
            return Err(TlsConfigError::NoCertificate);
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsConfigError::Config)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_with_and_without_an_extra_ca() {
        assert!(client_config(None).is_ok());
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(vec!["localhost".into()]).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).expect("cert");
        assert!(client_config(Some(&cert.pem())).is_ok());
        assert!(matches!(
            client_config(Some("no pem here")),
            Err(TlsConfigError::NoCertificate)
        ));
    }
}
