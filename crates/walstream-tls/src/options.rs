//! [`TlsOptions`]: libpq's SSL parameters and the rustls configuration they imply.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};

use crate::verify::{DangerNoVerification, DangerVerifyCaIgnoreHostname};
use crate::{SslMode, SslNegotiation, TlsError};

/// The ALPN protocol name PostgreSQL registers (sent by libpq 17+ on every TLS connection,
/// required by the server for direct TLS).
pub const ALPN_POSTGRESQL: &[u8] = b"postgresql";

/// Where trusted root certificates come from (libpq's `sslrootcert`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootCert {
    /// A PEM file with one or more CA certificates.
    File(PathBuf),
    /// The operating system's trust store (`sslrootcert=system`). Only allowed with
    /// `verify-full`, which it makes the default.
    System,
    /// The Mozilla root program bundled in the `webpki-roots` crate (a walstream extension
    /// for hosts without a system store). Like `System`, only allowed with `verify-full`.
    WebPkiRoots,
}

impl RootCert {
    /// Parses a libpq `sslrootcert` value: `system` or a path.
    #[must_use]
    pub fn from_param(value: &str) -> Self {
        if value == "system" {
            Self::System
        } else {
            Self::File(PathBuf::from(value))
        }
    }

    const fn is_public(&self) -> bool {
        matches!(self, Self::System | Self::WebPkiRoots)
    }
}

/// Where the default files (`root.crt`, `postgresql.crt`, `postgresql.key`) are looked up
/// when no explicit path is given.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum DefaultFiles {
    /// `$HOME/.postgresql`, as libpq does (the default).
    #[default]
    Home,
    /// Another directory.
    Dir(PathBuf),
    /// Never use default files.
    Disabled,
}

impl DefaultFiles {
    fn dir(&self) -> Option<PathBuf> {
        match self {
            Self::Home => std::env::var_os("HOME")
                .filter(|h| !h.is_empty())
                .map(|h| PathBuf::from(h).join(".postgresql")),
            Self::Dir(d) => Some(d.clone()),
            Self::Disabled => None,
        }
    }
}

/// How the server certificate will be checked, as decided by [`TlsOptions::verification`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verification {
    /// Not at all: encryption without authentication (`require` without roots).
    DangerNone,
    /// Chain to a trusted root, host name ignored (`verify-ca`, or weaker modes with a root
    /// certificate file present).
    DangerChainOnly,
    /// Chain and host name (`verify-full`).
    Full,
}

/// libpq's SSL connection parameters.
///
/// [`client_config`](Self::client_config) turns them into a rustls configuration following
/// libpq's rules; the connection layer decides *whether* to use TLS from
/// [`mode`](Self::effective_mode) and [`negotiation`](Self::negotiation).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TlsOptions {
    /// `sslmode`; `None` means libpq's default: `prefer`, or `verify-full` when
    /// `sslrootcert=system`.
    pub mode: Option<SslMode>,
    /// `sslrootcert`; `None` means `root.crt` in the default directory, if it exists.
    pub root_cert: Option<RootCert>,
    /// `sslcert`; `None` means `postgresql.crt` in the default directory, if it exists. A
    /// missing file means "no client certificate", as in libpq.
    pub client_cert: Option<PathBuf>,
    /// `sslkey`; `None` means `postgresql.key` in the default directory.
    pub client_key: Option<PathBuf>,
    /// `sslsni`: send the host name in the SNI extension (default `true`; never sent for IP
    /// addresses).
    pub sni: bool,
    /// `sslnegotiation`.
    pub negotiation: SslNegotiation,
    /// Where default files are looked up.
    pub default_files: DefaultFiles,
}

impl Default for TlsOptions {
    fn default() -> Self {
        Self {
            mode: None,
            root_cert: None,
            client_cert: None,
            client_key: None,
            sni: true,
            negotiation: SslNegotiation::Postgres,
            default_files: DefaultFiles::Home,
        }
    }
}

impl TlsOptions {
    /// Options with the given mode and libpq's defaults for everything else.
    #[must_use]
    pub fn new(mode: SslMode) -> Self {
        Self {
            mode: Some(mode),
            ..Self::default()
        }
    }

    /// Sets `sslrootcert`.
    #[must_use]
    pub fn with_root_cert(mut self, root: RootCert) -> Self {
        self.root_cert = Some(root);
        self
    }

    /// Sets `sslcert` and `sslkey`.
    #[must_use]
    pub fn with_client_cert(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.client_cert = Some(cert.into());
        self.client_key = Some(key.into());
        self
    }

    /// Sets `sslsni`.
    #[must_use]
    pub fn with_sni(mut self, sni: bool) -> Self {
        self.sni = sni;
        self
    }

    /// Sets `sslnegotiation`.
    #[must_use]
    pub fn with_negotiation(mut self, negotiation: SslNegotiation) -> Self {
        self.negotiation = negotiation;
        self
    }

    /// Sets where default files are looked up.
    #[must_use]
    pub fn with_default_files(mut self, default_files: DefaultFiles) -> Self {
        self.default_files = default_files;
        self
    }

    /// The mode in force: the explicit one, else `verify-full` with `sslrootcert=system`,
    /// else `prefer`.
    #[must_use]
    pub fn effective_mode(&self) -> SslMode {
        match (self.mode, &self.root_cert) {
            (Some(m), _) => m,
            (None, Some(r)) if r.is_public() => SslMode::VerifyFull,
            (None, _) => SslMode::Prefer,
        }
    }

    /// Checks the combinations libpq rejects.
    ///
    /// # Errors
    ///
    /// [`TlsError::InvalidOptions`] for `sslrootcert=system` with a mode weaker than
    /// `verify-full`, or `sslnegotiation=direct` with a mode weaker than `require`.
    pub fn validate(&self) -> Result<(), TlsError> {
        let mode = self.effective_mode();
        if self.root_cert.as_ref().is_some_and(RootCert::is_public) && mode != SslMode::VerifyFull {
            return Err(TlsError::InvalidOptions {
                reason: "weak sslmode may not be used with sslrootcert=system (use verify-full)",
            });
        }
        if self.negotiation == SslNegotiation::Direct && mode < SslMode::Require {
            return Err(TlsError::InvalidOptions {
                reason: "sslnegotiation=direct requires sslmode=require or stronger",
            });
        }
        Ok(())
    }

    /// Decides how the server certificate will be verified, without loading anything.
    ///
    /// # Errors
    ///
    /// As [`validate`](Self::validate); [`TlsError::Disabled`] for `disable`;
    /// [`TlsError::RootCertMissing`] for `verify-ca`/`verify-full` without a root file.
    pub fn verification(&self) -> Result<Verification, TlsError> {
        Ok(self.plan()?.0)
    }

    /// Builds the rustls client configuration (ring provider, TLS 1.2 and 1.3, ALPN
    /// `postgresql`, SNI per [`sni`](Self::sni), client certificate when present).
    ///
    /// Follows libpq: with a root certificate file (explicit or the default `root.crt`) the
    /// chain is verified even in `require`/`prefer`/`allow`; without one those modes encrypt
    /// without verifying. `verify-ca` ignores the host name, `verify-full` checks it.
    ///
    /// # Errors
    ///
    /// As [`verification`](Self::verification), plus file, key and rustls errors.
    pub fn client_config(&self) -> Result<Arc<ClientConfig>, TlsError> {
        let (verification, roots) = self.plan()?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()?;
        let builder = match (verification, roots) {
            (Verification::Full, Some(roots)) => {
                builder.with_root_certificates(load_roots(&roots)?)
            }
            (Verification::DangerChainOnly, Some(roots)) => {
                let inner = WebPkiServerVerifier::builder_with_provider(
                    Arc::new(load_roots(&roots)?),
                    Arc::clone(&provider),
                )
                .build()?;
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(DangerVerifyCaIgnoreHostname::new(
                        inner,
                    )))
            }
            _ => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(DangerNoVerification::new(&provider))),
        };
        let mut config = match self.client_identity()? {
            Some((certs, key)) => builder.with_client_auth_cert(certs, key)?,
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![ALPN_POSTGRESQL.to_vec()];
        config.enable_sni = self.sni;
        Ok(Arc::new(config))
    }

    fn plan(&self) -> Result<(Verification, Option<RootCert>), TlsError> {
        self.validate()?;
        let mode = self.effective_mode();
        if mode == SslMode::Disable {
            return Err(TlsError::Disabled);
        }
        let roots = match &self.root_cert {
            Some(RootCert::File(p)) => p.exists().then(|| RootCert::File(p.clone())),
            Some(public) => Some(public.clone()),
            None => self
                .default_files
                .dir()
                .map(|d| d.join("root.crt"))
                .filter(|p| p.exists())
                .map(RootCert::File),
        };
        match (mode, roots) {
            (SslMode::VerifyFull, Some(r)) => Ok((Verification::Full, Some(r))),
            (_, Some(r)) => Ok((Verification::DangerChainOnly, Some(r))),
            (m, None) if m.requires_verification() => Err(TlsError::RootCertMissing {
                path: match &self.root_cert {
                    Some(RootCert::File(p)) => Some(p.clone()),
                    _ => self.default_files.dir().map(|d| d.join("root.crt")),
                },
            }),
            (_, None) => Ok((Verification::DangerNone, None)),
        }
    }

    fn client_identity(
        &self,
    ) -> Result<Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>, TlsError> {
        let dir = self.default_files.dir();
        let cert_path = match (&self.client_cert, &dir) {
            (Some(p), _) => p.clone(),
            (None, Some(d)) => d.join("postgresql.crt"),
            (None, None) => return Ok(None),
        };
        if !cert_path.exists() {
            return Ok(None);
        }
        let certs = read_certs(&cert_path, "client certificate")?;
        let key_path = match (&self.client_key, &dir) {
            (Some(p), _) => p.clone(),
            (None, Some(d)) => d.join("postgresql.key"),
            (None, None) => {
                return Err(TlsError::ClientKeyMissing {
                    path: PathBuf::new(),
                });
            }
        };
        if !key_path.exists() {
            return Err(TlsError::ClientKeyMissing { path: key_path });
        }
        check_key_permissions(&key_path)?;
        let key = PrivateKeyDer::from_pem_file(&key_path).map_err(|e| TlsError::File {
            what: "private key (PKCS#8, PKCS#1 or SEC1 PEM)",
            path: key_path.clone(),
            reason: e.to_string(),
        })?;
        Ok(Some((certs, key)))
    }
}

fn read_certs(path: &Path, what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let file_err = |reason: String| TlsError::File {
        what,
        path: path.to_owned(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_err(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_err(e.to_string()))?;
    if certs.is_empty() {
        return Err(file_err("no PEM certificate found".into()));
    }
    Ok(certs)
}

fn load_roots(source: &RootCert) -> Result<RootCertStore, TlsError> {
    let mut store = RootCertStore::empty();
    match source {
        RootCert::File(path) => {
            for cert in read_certs(path, "root certificates")? {
                store.add(cert).map_err(|e| TlsError::File {
                    what: "root certificates",
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
            }
        }
        RootCert::System => {
            let loaded = rustls_native_certs::load_native_certs();
            let (added, _ignored) = store.add_parsable_certificates(loaded.certs);
            if added == 0 {
                let reason = loaded
                    .errors
                    .first()
                    .map_or_else(|| "no certificates found".to_owned(), ToString::to_string);
                return Err(TlsError::SystemRoots { reason });
            }
        }
        RootCert::WebPkiRoots => store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    Ok(store)
}

/// libpq refuses private keys readable by group or others: for a file owned by root,
/// group read is tolerated (mode 0640); otherwise at most 0600.
#[cfg(unix)]
fn check_key_permissions(path: &Path) -> Result<(), TlsError> {
    use std::os::unix::fs::MetadataExt as _;
    let meta = std::fs::metadata(path).map_err(|e| TlsError::File {
        what: "private key",
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    if !meta.is_file() {
        return Err(TlsError::File {
            what: "private key",
            path: path.to_owned(),
            reason: "not a regular file".into(),
        });
    }
    let mode = meta.mode() & 0o7777;
    let forbidden = if meta.uid() == 0 { 0o037 } else { 0o077 };
    if mode & forbidden != 0 {
        return Err(TlsError::KeyPermissions {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_key_permissions(_path: &Path) -> Result<(), TlsError> {
    Ok(())
}

/// The rustls crypto provider walstream uses (ring).
#[must_use]
pub fn crypto_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data");

    fn data(name: &str) -> PathBuf {
        Path::new(DATA).join(name)
    }

    fn empty_dir() -> tempfile::TempDir {
        tempfile::tempdir().unwrap()
    }

    fn opts(mode: SslMode, dir: &Path) -> TlsOptions {
        TlsOptions::new(mode).with_default_files(DefaultFiles::Dir(dir.to_owned()))
    }

    #[cfg(unix)]
    fn copy_key(from: &str, to: &Path, mode: u32) {
        use std::os::unix::fs::PermissionsExt as _;
        fs::copy(data(from), to).unwrap();
        fs::set_permissions(to, fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn disable_has_no_config() {
        let d = empty_dir();
        assert!(matches!(
            opts(SslMode::Disable, d.path()).client_config(),
            Err(TlsError::Disabled)
        ));
    }

    #[test]
    fn weak_modes_without_roots_do_not_verify() {
        let d = empty_dir();
        for mode in [SslMode::Allow, SslMode::Prefer, SslMode::Require] {
            let o = opts(mode, d.path());
            assert_eq!(
                o.verification().unwrap(),
                Verification::DangerNone,
                "{mode}"
            );
            let config = o.client_config().unwrap();
            assert_eq!(config.alpn_protocols, vec![b"postgresql".to_vec()]);
            assert!(config.enable_sni);
            assert!(!config.client_auth_cert_resolver.has_certs());
        }
    }

    #[test]
    fn require_with_root_file_verifies_chain() {
        let d = empty_dir();
        let o =
            opts(SslMode::Require, d.path()).with_root_cert(RootCert::File(data("rsa-sha256.pem")));
        assert_eq!(o.verification().unwrap(), Verification::DangerChainOnly);
        o.client_config().unwrap();
        // An explicit root file that does not exist is ignored in weak modes, like libpq.
        let o =
            opts(SslMode::Require, d.path()).with_root_cert(RootCert::File(d.path().join("nope")));
        assert_eq!(o.verification().unwrap(), Verification::DangerNone);
    }

    #[test]
    fn default_root_crt_is_used() {
        let d = empty_dir();
        fs::copy(data("ec-sha384.pem"), d.path().join("root.crt")).unwrap();
        assert_eq!(
            opts(SslMode::Prefer, d.path()).verification().unwrap(),
            Verification::DangerChainOnly
        );
        assert_eq!(
            opts(SslMode::VerifyCa, d.path()).verification().unwrap(),
            Verification::DangerChainOnly
        );
        assert_eq!(
            opts(SslMode::VerifyFull, d.path()).verification().unwrap(),
            Verification::Full
        );
        opts(SslMode::VerifyFull, d.path()).client_config().unwrap();
        // With default files disabled the same modes fail or stop verifying.
        let o = TlsOptions::new(SslMode::Prefer).with_default_files(DefaultFiles::Disabled);
        assert_eq!(o.verification().unwrap(), Verification::DangerNone);
    }

    #[test]
    fn verify_modes_need_roots() {
        let d = empty_dir();
        for mode in [SslMode::VerifyCa, SslMode::VerifyFull] {
            match opts(mode, d.path()).client_config() {
                Err(TlsError::RootCertMissing { path }) => {
                    assert_eq!(path, Some(d.path().join("root.crt")));
                }
                other => panic!("{mode}: {other:?}"),
            }
        }
    }

    #[test]
    fn garbage_root_file_is_an_error() {
        let d = empty_dir();
        let p = d.path().join("root.crt");
        fs::write(&p, "not a certificate").unwrap();
        assert!(matches!(
            opts(SslMode::VerifyFull, d.path()).client_config(),
            Err(TlsError::File { .. })
        ));
    }

    #[test]
    fn system_roots_force_verify_full() {
        let o = TlsOptions::default().with_root_cert(RootCert::from_param("system"));
        assert_eq!(o.effective_mode(), SslMode::VerifyFull);
        assert_eq!(o.verification().unwrap(), Verification::Full);
        for mode in [SslMode::Require, SslMode::VerifyCa, SslMode::Prefer] {
            let o = TlsOptions::new(mode).with_root_cert(RootCert::System);
            assert!(
                matches!(o.client_config(), Err(TlsError::InvalidOptions { .. })),
                "{mode}"
            );
        }
        // Bundled Mozilla roots build a verify-full config without touching the system.
        TlsOptions::new(SslMode::VerifyFull)
            .with_root_cert(RootCert::WebPkiRoots)
            .client_config()
            .unwrap();
        assert_eq!(
            RootCert::from_param("/x/root.crt"),
            RootCert::File("/x/root.crt".into())
        );
    }

    #[test]
    fn direct_negotiation_needs_require() {
        let d = empty_dir();
        let o = opts(SslMode::Prefer, d.path()).with_negotiation(SslNegotiation::Direct);
        assert!(matches!(o.validate(), Err(TlsError::InvalidOptions { .. })));
        let o = opts(SslMode::Require, d.path()).with_negotiation(SslNegotiation::Direct);
        let config = o.client_config().unwrap();
        assert_eq!(config.alpn_protocols, vec![ALPN_POSTGRESQL.to_vec()]);
    }

    #[test]
    fn sni_can_be_disabled() {
        let d = empty_dir();
        assert!(
            !opts(SslMode::Require, d.path())
                .with_sni(false)
                .client_config()
                .unwrap()
                .enable_sni
        );
    }

    #[cfg(unix)]
    #[test]
    fn client_key_formats() {
        let d = empty_dir();
        for (cert, key) in [
            ("rsa-sha256.pem", "rsa-sha256.key"), // PKCS#8
            ("rsa-sha256.pem", "rsa-pkcs1.key"),  // PKCS#1
            ("ec-sha384.pem", "ec-sec1.key"),     // SEC1
            ("ec-sha384.pem", "ec-sha384.key"),   // PKCS#8
        ] {
            let key_path = d.path().join(key);
            copy_key(key, &key_path, 0o600);
            let o = opts(SslMode::Require, d.path()).with_client_cert(data(cert), &key_path);
            let config = o.client_config().unwrap_or_else(|e| panic!("{key}: {e}"));
            assert!(config.client_auth_cert_resolver.has_certs(), "{key}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn default_client_cert_files() {
        let d = empty_dir();
        fs::copy(data("ec-sha384.pem"), d.path().join("postgresql.crt")).unwrap();
        // Certificate without key.
        assert!(matches!(
            opts(SslMode::Require, d.path()).client_config(),
            Err(TlsError::ClientKeyMissing { .. })
        ));
        // Key readable by others.
        copy_key("ec-sec1.key", &d.path().join("postgresql.key"), 0o644);
        match opts(SslMode::Require, d.path()).client_config() {
            Err(TlsError::KeyPermissions { mode, .. }) => assert_eq!(mode, 0o644),
            other => panic!("{other:?}"),
        }
        copy_key("ec-sec1.key", &d.path().join("postgresql.key"), 0o600);
        let config = opts(SslMode::Require, d.path()).client_config().unwrap();
        assert!(config.client_auth_cert_resolver.has_certs());
        // Mismatched key and certificate are rejected by rustls.
        copy_key("rsa-pkcs1.key", &d.path().join("postgresql.key"), 0o600);
        assert!(opts(SslMode::Require, d.path()).client_config().is_err());
    }

    #[test]
    fn missing_explicit_client_cert_is_ignored() {
        let d = empty_dir();
        let o = opts(SslMode::Require, d.path())
            .with_client_cert(d.path().join("a.crt"), d.path().join("a.key"));
        assert!(
            !o.client_config()
                .unwrap()
                .client_auth_cert_resolver
                .has_certs()
        );
    }
}
