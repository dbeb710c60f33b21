//! A scripted PostgreSQL server on a loopback socket for unit tests of the tokio driver.

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use walstream_proto::{Authentication, BackendMessage, TransactionStatus};

use crate::client::Client;
use crate::config::Config;

pub(crate) fn encode(msgs: &[BackendMessage]) -> Vec<u8> {
    let mut b = BytesMut::new();
    for m in msgs {
        m.encode(&mut b).unwrap();
    }
    b.to_vec()
}

pub(crate) fn ready() -> BackendMessage {
    BackendMessage::ReadyForQuery(TransactionStatus::IDLE)
}

/// Authentication without a password, a server version and a 4-byte cancel key.
pub(crate) fn hello(server_version: &str, secret_key: Bytes) -> Vec<BackendMessage> {
    vec![
        BackendMessage::Authentication(Authentication::Ok),
        BackendMessage::ParameterStatus {
            name: "server_version".into(),
            value: server_version.into(),
        },
        BackendMessage::BackendKeyData {
            process_id: 7,
            secret_key,
        },
        ready(),
    ]
}

/// Reads one length-prefixed message (after `tag_len` tag bytes), header included.
pub(crate) async fn read_message(s: &mut TcpStream, tag_len: usize) -> Vec<u8> {
    let mut head = vec![0u8; tag_len + 4];
    s.read_exact(&mut head).await.unwrap();
    let len_bytes: [u8; 4] = head[tag_len..].try_into().unwrap();
    let len = usize::try_from(u32::from_be_bytes(len_bytes)).unwrap();
    let mut body = vec![0u8; len - 4];
    s.read_exact(&mut body).await.unwrap();
    head.extend_from_slice(&body);
    head
}

/// A running scripted server.
pub(crate) struct Scripted {
    pub(crate) config: Config,
    /// The first connection's startup packet.
    pub(crate) startup: oneshot::Receiver<Vec<u8>>,
    /// The first packet of every later connection (cancel requests).
    pub(crate) later: mpsc::UnboundedReceiver<Vec<u8>>,
}

/// Serves one connection: reads the startup packet, sends `greeting`, answers each query
/// with the next script, then keeps the socket open without sending. Later connections
/// have their first packet recorded and are closed.
pub(crate) async fn serve(
    greeting: Vec<BackendMessage>,
    scripts: Vec<Vec<BackendMessage>>,
) -> Scripted {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (startup_tx, startup) = oneshot::channel();
    let (later_tx, later) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        tokio::spawn(async move {
            let _ = startup_tx.send(read_message(&mut s, 0).await);
            s.write_all(&encode(&greeting)).await.unwrap();
            for script in scripts {
                let q = read_message(&mut s, 1).await;
                assert_eq!(q[0], b'Q');
                s.write_all(&encode(&script)).await.unwrap();
            }
            let mut sink = [0u8; 64];
            while s.read(&mut sink).await.is_ok_and(|n| n > 0) {}
        });
        while let Ok((mut s, _)) = listener.accept().await {
            let _ = later_tx.send(read_message(&mut s, 0).await);
        }
    });
    let config =
        format!("host=127.0.0.1 port={port} user=u dbname=d sslmode=disable passfile=/nonexistent")
            .parse()
            .unwrap();
    Scripted {
        config,
        startup,
        later,
    }
}

/// [`serve`] with a PostgreSQL 14 greeting, returning the connected client.
pub(crate) async fn scripted(scripts: Vec<Vec<BackendMessage>>) -> Client {
    let server = serve(hello("14.11", Bytes::from_static(&[1, 2, 3, 4])), scripts).await;
    Client::connect(&server.config).await.unwrap()
}
