//! TLS material made by the suite for each cluster.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};

use crate::Error;
use crate::os;

/// Paths of a cluster's TLS files (all PEM; keys are PKCS#8).
///
/// The server presents `server_cert` (SANs `localhost` and `127.0.0.1`, signed by `ca_cert`)
/// and verifies client certificates against `ca_cert`. `other_ca` is an unrelated CA with its
/// own server and client certificates, for negative tests: a client that trusts only
/// `other_ca` must reject the server, and the server must reject `other_client_cert`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The suite CA's certificate: the root a client must trust to verify the server.
    pub ca_cert: PathBuf,
    /// The server's certificate (`localhost`, `127.0.0.1`), signed by `ca_cert`.
    pub server_cert: PathBuf,
    /// The server's private key (mode 0600, owned by the server's OS user).
    pub server_key: PathBuf,
    /// A client certificate with CN `ws_cert` signed by `ca_cert`: logs in as `ws_cert`.
    pub client_cert: PathBuf,
    /// The key of `client_cert` (mode 0600).
    pub client_key: PathBuf,
    /// A client certificate signed by `ca_cert` whose CN is `ws_someone_else`: valid, but the
    /// `cert` method must refuse it for `ws_cert`.
    pub wrong_cn_client_cert: PathBuf,
    /// The key of `wrong_cn_client_cert` (mode 0600).
    pub wrong_cn_client_key: PathBuf,
    /// An unrelated CA's certificate.
    pub other_ca: PathBuf,
    /// A certificate for `localhost` and `127.0.0.1` signed by `other_ca`.
    pub other_server_cert: PathBuf,
    /// The key of `other_server_cert` (mode 0600).
    pub other_server_key: PathBuf,
    /// A client certificate with CN `ws_cert` signed by `other_ca`: the server must refuse it.
    pub other_client_cert: PathBuf,
    /// The key of `other_client_cert` (mode 0600).
    pub other_client_key: PathBuf,
}

struct Ca {
    cert: Certificate,
    key: KeyPair,
}

impl Ca {
    fn new(name: &str) -> Result<Self, Error> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name = dn(name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        Ok(Self { cert, key })
    }

    fn server(&self) -> Result<(Certificate, KeyPair), Error> {
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?;
        params.distinguished_name = dn("localhost");
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.cert, &self.key)?;
        Ok((cert, key))
    }

    fn client(&self, common_name: &str) -> Result<(Certificate, KeyPair), Error> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name = dn(common_name);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.cert, &self.key)?;
        Ok((cert, key))
    }
}

fn dn(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn.push(DnType::OrganizationName, "walstream test suite");
    dn
}

impl TlsFiles {
    /// Generates fresh material into `dir/server` (handed to the server's OS user) and
    /// `dir/client` (owned by the test process).
    pub(crate) fn generate(dir: &Path) -> Result<Self, Error> {
        let server_dir = dir.join("server");
        let client_dir = dir.join("client");
        for d in [dir, &server_dir, &client_dir] {
            std::fs::create_dir_all(d)
                .map_err(|e| Error::io(format!("creating {}", d.display()), e))?;
            os::chmod(d, 0o755)?;
        }

        let ca = Ca::new("walstream test CA")?;
        let other = Ca::new("walstream unrelated CA")?;
        let (server, server_key) = ca.server()?;
        let (client, client_key) = ca.client("ws_cert")?;
        let (wrong_cn, wrong_cn_key) = ca.client("ws_someone_else")?;
        let (other_server, other_server_key) = other.server()?;
        let (other_client, other_client_key) = other.client("ws_cert")?;

        let files = Self {
            ca_cert: write(&client_dir.join("ca.crt"), &ca.cert.pem(), 0o644)?,
            server_cert: write(&server_dir.join("server.crt"), &server.pem(), 0o644)?,
            server_key: write(
                &server_dir.join("server.key"),
                &server_key.serialize_pem(),
                0o600,
            )?,
            client_cert: write(&client_dir.join("client.crt"), &client.pem(), 0o644)?,
            client_key: write(
                &client_dir.join("client.key"),
                &client_key.serialize_pem(),
                0o600,
            )?,
            wrong_cn_client_cert: write(&client_dir.join("wrong-cn.crt"), &wrong_cn.pem(), 0o644)?,
            wrong_cn_client_key: write(
                &client_dir.join("wrong-cn.key"),
                &wrong_cn_key.serialize_pem(),
                0o600,
            )?,
            other_ca: write(&client_dir.join("other-ca.crt"), &other.cert.pem(), 0o644)?,
            other_server_cert: write(
                &client_dir.join("other-server.crt"),
                &other_server.pem(),
                0o644,
            )?,
            other_server_key: write(
                &client_dir.join("other-server.key"),
                &other_server_key.serialize_pem(),
                0o600,
            )?,
            other_client_cert: write(
                &client_dir.join("other-client.crt"),
                &other_client.pem(),
                0o644,
            )?,
            other_client_key: write(
                &client_dir.join("other-client.key"),
                &other_client_key.serialize_pem(),
                0o600,
            )?,
        };
        // The server verifies client certificates against its own copy of the CA.
        write(&server_dir.join("ca.crt"), &ca.cert.pem(), 0o644)?;
        os::chown_to_server(&server_dir)?;
        Ok(files)
    }

    /// The CA file the server uses to verify client certificates.
    pub(crate) fn server_ca_file(&self) -> PathBuf {
        self.server_key.with_file_name("ca.crt")
    }
}

fn write(path: &Path, contents: &str, mode: u32) -> Result<PathBuf, Error> {
    std::fs::write(path, contents)
        .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
    os::chmod(path, mode)?;
    Ok(path.to_path_buf())
}
