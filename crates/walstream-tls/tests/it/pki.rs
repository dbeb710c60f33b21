//! Throwaway certificate authorities and server/client certificates.

use std::fs;
use std::path::PathBuf;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tempfile::TempDir;

/// A CA able to issue certificates.
pub(crate) struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Ca {
    pub(crate) fn new(name: &str) -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).unwrap();
        Self { cert, key }
    }

    /// Issues a leaf certificate for the given subject alternative names.
    pub(crate) fn issue(&self, names: &[&str]) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|s| (*s).to_owned()).collect();
        let params = CertificateParams::new(names).unwrap();
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        Leaf { cert, key }
    }

    pub(crate) fn der(&self) -> CertificateDer<'static> {
        self.cert.der().clone()
    }

    /// Writes the CA certificate as PEM into `dir` and returns the path.
    pub(crate) fn write_pem(&self, dir: &TempDir, file: &str) -> PathBuf {
        let path = dir.path().join(file);
        fs::write(&path, self.cert.pem()).unwrap();
        path
    }
}

/// A leaf certificate and its key.
pub(crate) struct Leaf {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Leaf {
    pub(crate) fn der(&self) -> CertificateDer<'static> {
        self.cert.der().clone()
    }

    pub(crate) fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key.serialize_der()))
    }

    /// Writes certificate and key (mode 0600) as PEM files into `dir`.
    pub(crate) fn write_pem(&self, dir: &TempDir, stem: &str) -> (PathBuf, PathBuf) {
        let cert = dir.path().join(format!("{stem}.crt"));
        let key = dir.path().join(format!("{stem}.key"));
        fs::write(&cert, self.cert.pem()).unwrap();
        fs::write(&key, self.key.serialize_pem()).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).unwrap();
        }
        (cert, key)
    }
}

/// A rustls server configuration presenting `leaf`, optionally requiring client certificates
/// issued by `client_ca`, with the given ALPN protocols.
pub(crate) fn server_config(
    leaf: &Leaf,
    client_ca: Option<&Ca>,
    alpn: &[&[u8]],
) -> Arc<rustls::ServerConfig> {
    let provider = walstream_tls::crypto_provider();
    let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = match client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(ca.der()).unwrap();
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .unwrap();
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(vec![leaf.der()], leaf.key())
        .unwrap();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}
