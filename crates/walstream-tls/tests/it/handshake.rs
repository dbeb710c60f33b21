//! Handshakes for each sslmode against an in-process rustls server.

use std::sync::Arc;

use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use walstream_tls::{
    DefaultFiles, RootCert, SslMode, SslNegotiation, TlsError, TlsOptions, check_direct_alpn,
    connect_tls, peer_end_point_hash, server_name,
};

use crate::pki::{Ca, Leaf, server_config};

const HOST: &str = "db.walstream.test";

/// What the server side observed.
#[derive(Debug)]
struct ServerView {
    sni: Option<String>,
    client_cert: bool,
}

/// Outcome of one handshake as seen by the client.
struct ClientView {
    hash: Vec<u8>,
    alpn_ok: bool,
}

fn options(mode: SslMode) -> TlsOptions {
    TlsOptions::new(mode).with_default_files(DefaultFiles::Disabled)
}

/// Runs a handshake of `options` against a server presenting `leaf`, connecting to `host`,
/// and exchanges one byte each way.
async fn handshake(
    options: &TlsOptions,
    host: &str,
    server: Arc<rustls::ServerConfig>,
) -> (Result<ClientView, TlsError>, Option<ServerView>) {
    let config = options.client_config().expect("client config");
    let (client_io, server_io) = tokio::io::duplex(64 * 1024);
    let acceptor = tokio_rustls::TlsAcceptor::from(server);
    let server_task = tokio::spawn(async move {
        let mut tls = acceptor.accept(server_io).await.ok()?;
        let (_, conn) = tls.get_ref();
        let view = ServerView {
            sni: conn.server_name().map(str::to_owned),
            client_cert: conn.peer_certificates().is_some_and(|c| !c.is_empty()),
        };
        let mut b = [0u8; 1];
        tls.read_exact(&mut b).await.ok()?;
        tls.write_all(&[b[0] + 1]).await.ok()?;
        tls.flush().await.ok()?;
        Some(view)
    });
    let client = async {
        let mut tls = connect_tls(client_io, server_name(host)?, config).await?;
        tls.write_all(&[41]).await?;
        tls.flush().await?;
        let mut b = [0u8; 1];
        tls.read_exact(&mut b).await?;
        assert_eq!(b[0], 42);
        Ok(ClientView {
            hash: peer_end_point_hash(&tls)?,
            alpn_ok: check_direct_alpn(&tls).is_ok(),
        })
    }
    .await;
    let server = server_task.await.unwrap();
    (client, server)
}

fn assert_cert_error(result: Result<ClientView, TlsError>, needle: &str) {
    match result {
        Err(e) => assert!(format!("{e:?}").contains(needle), "{needle} not in {e:?}"),
        Ok(_) => panic!("handshake unexpectedly succeeded (wanted {needle})"),
    }
}

#[tokio::test]
async fn verify_full_right_host() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("walstream test CA");
    let leaf = ca.issue(&[HOST]);
    let opts =
        options(SslMode::VerifyFull).with_root_cert(RootCert::File(ca.write_pem(&dir, "ca.pem")));
    let (client, server) =
        handshake(&opts, HOST, server_config(&leaf, None, &[b"postgresql"])).await;
    let client = client.unwrap();
    // The leaf is ECDSA P-256 with SHA-256, so the end-point hash is SHA-256 of its DER.
    assert_eq!(client.hash, Sha256::digest(leaf.der()).to_vec());
    assert!(client.alpn_ok);
    let server = server.unwrap();
    assert_eq!(server.sni.as_deref(), Some(HOST));
    assert!(!server.client_cert);
}

#[tokio::test]
async fn verify_full_wrong_host() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("walstream test CA");
    let leaf = ca.issue(&["other.walstream.test"]);
    let opts =
        options(SslMode::VerifyFull).with_root_cert(RootCert::File(ca.write_pem(&dir, "ca.pem")));
    let (client, _) = handshake(&opts, HOST, server_config(&leaf, None, &[])).await;
    assert_cert_error(client, "NotValidForName");
}

#[tokio::test]
async fn verify_full_wrong_ca() {
    let dir = tempfile::tempdir().unwrap();
    let trusted = Ca::new("trusted CA");
    let rogue = Ca::new("rogue CA");
    let leaf = rogue.issue(&[HOST]);
    let opts = options(SslMode::VerifyFull)
        .with_root_cert(RootCert::File(trusted.write_pem(&dir, "ca.pem")));
    let (client, _) = handshake(&opts, HOST, server_config(&leaf, None, &[])).await;
    assert_cert_error(client, "UnknownIssuer");
}

#[tokio::test]
async fn verify_full_ip_address() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("walstream test CA");
    let leaf = ca.issue(&["127.0.0.1"]);
    let opts =
        options(SslMode::VerifyFull).with_root_cert(RootCert::File(ca.write_pem(&dir, "ca.pem")));
    let (client, server) = handshake(&opts, "127.0.0.1", server_config(&leaf, None, &[])).await;
    client.unwrap();
    // No SNI for IP addresses.
    assert_eq!(server.unwrap().sni, None);
}

#[tokio::test]
async fn verify_ca_wrong_host_passes() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("walstream test CA");
    let leaf = ca.issue(&["other.walstream.test"]);
    let opts =
        options(SslMode::VerifyCa).with_root_cert(RootCert::File(ca.write_pem(&dir, "ca.pem")));
    let (client, _) = handshake(&opts, HOST, server_config(&leaf, None, &[])).await;
    client.unwrap();
}

#[tokio::test]
async fn verify_ca_wrong_ca_fails() {
    let dir = tempfile::tempdir().unwrap();
    let trusted = Ca::new("trusted CA");
    let leaf = Ca::new("rogue CA").issue(&[HOST]);
    let opts = options(SslMode::VerifyCa)
        .with_root_cert(RootCert::File(trusted.write_pem(&dir, "ca.pem")));
    let (client, _) = handshake(&opts, HOST, server_config(&leaf, None, &[])).await;
    assert_cert_error(client, "UnknownIssuer");
}

#[tokio::test]
async fn require_without_roots_accepts_anything() {
    let leaf = Ca::new("unknown CA").issue(&["somewhere.else"]);
    let (client, _) = handshake(
        &options(SslMode::Require),
        HOST,
        server_config(&leaf, None, &[]),
    )
    .await;
    let client = client.unwrap();
    assert_eq!(client.hash, Sha256::digest(leaf.der()).to_vec());
    // No ALPN chosen by this server: fine for postgres negotiation, an error for direct.
    assert!(!client.alpn_ok);
}

#[tokio::test]
async fn require_with_root_file_behaves_like_verify_ca() {
    let dir = tempfile::tempdir().unwrap();
    let trusted = Ca::new("trusted CA");
    let opts =
        options(SslMode::Require).with_root_cert(RootCert::File(trusted.write_pem(&dir, "ca.pem")));
    // Wrong CA: rejected, as libpq does when root.crt exists.
    let rogue_leaf = Ca::new("rogue CA").issue(&[HOST]);
    let (client, _) = handshake(&opts, HOST, server_config(&rogue_leaf, None, &[])).await;
    assert_cert_error(client, "UnknownIssuer");
    // Right CA, wrong host: accepted.
    let leaf = trusted.issue(&["other.host"]);
    let (client, _) = handshake(&opts, HOST, server_config(&leaf, None, &[])).await;
    client.unwrap();
}

#[tokio::test]
async fn sni_disabled() {
    let leaf = Ca::new("ca").issue(&[HOST]);
    let opts = options(SslMode::Require).with_sni(false);
    let (client, server) = handshake(&opts, HOST, server_config(&leaf, None, &[])).await;
    client.unwrap();
    assert_eq!(server.unwrap().sni, None);
}

#[tokio::test]
async fn direct_negotiation_alpn() {
    let leaf = Ca::new("ca").issue(&[HOST]);
    let opts = options(SslMode::Require).with_negotiation(SslNegotiation::Direct);
    let (client, _) = handshake(&opts, HOST, server_config(&leaf, None, &[b"postgresql"])).await;
    assert!(client.unwrap().alpn_ok);
    // A server that only speaks another protocol refuses the handshake.
    let (client, _) = handshake(&opts, HOST, server_config(&leaf, None, &[b"h2"])).await;
    assert_cert_error(client, "NoApplicationProtocol");
}

#[tokio::test]
async fn client_certificate_authentication() {
    let dir = tempfile::tempdir().unwrap();
    let server_ca = Ca::new("server CA");
    let client_ca = Ca::new("client CA");
    let leaf = server_ca.issue(&[HOST]);
    let client_leaf: Leaf = client_ca.issue(&["replicator"]);
    let (cert, key) = client_leaf.write_pem(&dir, "client");
    let root = server_ca.write_pem(&dir, "root.pem");

    let opts = options(SslMode::VerifyFull)
        .with_root_cert(RootCert::File(root.clone()))
        .with_client_cert(&cert, &key);
    let (client, server) =
        handshake(&opts, HOST, server_config(&leaf, Some(&client_ca), &[])).await;
    client.unwrap();
    assert!(server.unwrap().client_cert);

    // Default files in the libpq layout are picked up too.
    let home = tempfile::tempdir().unwrap();
    std::fs::copy(&cert, home.path().join("postgresql.crt")).unwrap();
    std::fs::copy(&key, home.path().join("postgresql.key")).unwrap();
    std::fs::copy(&root, home.path().join("root.crt")).unwrap();
    let opts = TlsOptions::new(SslMode::VerifyFull)
        .with_default_files(DefaultFiles::Dir(home.path().to_owned()));
    let (client, server) =
        handshake(&opts, HOST, server_config(&leaf, Some(&client_ca), &[])).await;
    client.unwrap();
    assert!(server.unwrap().client_cert);

    // Without a client certificate the server refuses.
    let opts = options(SslMode::VerifyFull).with_root_cert(RootCert::File(root));
    let (client, server) =
        handshake(&opts, HOST, server_config(&leaf, Some(&client_ca), &[])).await;
    assert!(client.is_err() || server.is_none());
}
