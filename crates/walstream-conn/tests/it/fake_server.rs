//! Bad input and security checks against a fake server: a tokio task that plays a scripted
//! server, built from walstream-proto's backend encoders, and records every byte the client
//! sent so the test can prove no password (or password proof) left the client where it must
//! not.
//!
//! Every case must end in a typed error, promptly (asserted), without a panic.

use std::future::Future;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use walstream_conn::{Client, ErrorKind};
use walstream_proto::{
    Authentication, BackendMessage, ErrorFieldCode, ErrorFields, FrontendFramer, FrontendMessage,
    PasswordKind, StartupPacket, TransactionStatus,
};

use crate::{config, run};

/// The password every fake-server test uses; it must never appear in what the client sends
/// unless the test says so.
const PASSWORD: &str = "Fake-Secret-pw-42";

/// Every case must end within this bound.
const PROMPT: Duration = Duration::from_secs(2);

/// The server side of one fake connection.
struct Peer {
    stream: TcpStream,
    buf: BytesMut,
    /// Everything the client sent, for the "no secret sent" assertions.
    received: Vec<u8>,
    framer: FrontendFramer,
}

impl Peer {
    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 4096];
        match tokio::time::timeout(Duration::from_secs(5), self.stream.read(&mut chunk)).await {
            Ok(Ok(0) | Err(_)) | Err(_) => false,
            Ok(Ok(n)) => {
                self.buf.extend_from_slice(&chunk[..n]);
                self.received.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }

    /// The next untagged startup-phase packet (`None`: the client went away).
    async fn startup(&mut self) -> Option<StartupPacket> {
        loop {
            if let Some(p) = StartupPacket::decode(&mut self.buf).expect("client startup packet") {
                return Some(p);
            }
            if !self.fill().await {
                return None;
            }
        }
    }

    /// The next tagged message, reading `p` as `kind` (`None`: the client went away).
    async fn message(&mut self, kind: PasswordKind) -> Option<FrontendMessage> {
        self.framer.password_kind = kind;
        loop {
            if let Some(m) = self.framer.decode(&mut self.buf).expect("client message") {
                return Some(m);
            }
            if !self.fill().await {
                return None;
            }
        }
    }

    /// Reads until the client closes; returns everything received.
    async fn drain(mut self) -> Vec<u8> {
        while self.fill().await {}
        self.received
    }

    async fn send(&mut self, msgs: &[BackendMessage]) {
        let mut out = BytesMut::new();
        for m in msgs {
            m.encode(&mut out).expect("encodable test message");
        }
        self.raw(&out).await;
    }

    async fn raw(&mut self, bytes: &[u8]) {
        // The client may already have hung up; that is its right.
        let _ = self.stream.write_all(bytes).await;
        let _ = self.stream.flush().await;
    }

    /// Reads the startup message (answering an SSLRequest with `N` first).
    async fn accept_plaintext(&mut self) {
        match self.startup().await.expect("startup") {
            StartupPacket::SslRequest => {
                self.raw(b"N").await;
                assert!(matches!(
                    self.startup().await,
                    Some(StartupPacket::Startup(_))
                ));
            }
            StartupPacket::Startup(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }

    /// AuthenticationOk, parameters, key data and ReadyForQuery.
    async fn finish_startup(&mut self) {
        self.send(&[
            BackendMessage::Authentication(Authentication::Ok),
            BackendMessage::ParameterStatus {
                name: "server_version".into(),
                value: "15.0".into(),
            },
            BackendMessage::ParameterStatus {
                name: "standard_conforming_strings".into(),
                value: "on".into(),
            },
            BackendMessage::BackendKeyData {
                process_id: 4242,
                secret_key: Bytes::from_static(&[1, 2, 3, 4]),
            },
            BackendMessage::ReadyForQuery(TransactionStatus::IDLE),
        ])
        .await;
    }
}

/// Starts a fake server running `script` on its first connection; returns its port and
/// the script's result (everything the client sent, as the script returns it).
async fn fake_server<F, Fut>(script: F) -> (u16, tokio::task::JoinHandle<Vec<u8>>)
where
    F: FnOnce(Peer) -> Fut + Send + 'static,
    Fut: Future<Output = Vec<u8>> + Send,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let task = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.expect("accept");
        let peer = Peer {
            stream,
            buf: BytesMut::new(),
            received: Vec::new(),
            framer: FrontendFramer::default(),
        };
        script(peer).await
    });
    (port, task)
}

fn conninfo(port: u16, extra: &str) -> String {
    format!(
        "host=127.0.0.1 port={port} user=fake dbname=fake password={PASSWORD} \
         connect_timeout=10 {extra}"
    )
}

/// Connects with `extra` settings against `script`; returns the client's result, the time
/// it took and what the client sent.
fn connect_to<F, Fut>(
    extra: &str,
    script: F,
) -> (Result<Client, walstream_conn::Error>, Duration, Vec<u8>)
where
    F: FnOnce(Peer) -> Fut + Send + 'static,
    Fut: Future<Output = Vec<u8>> + Send,
{
    let extra = extra.to_owned();
    run(async move {
        let (port, server) = fake_server(script).await;
        let cfg = config(&conninfo(port, &extra));
        let start = Instant::now();
        let result = tokio::time::timeout(Duration::from_secs(20), Client::connect(&cfg))
            .await
            .expect("the client must not hang");
        let elapsed = start.elapsed();
        let sent = match &result {
            Ok(_) => Vec::new(),
            Err(_) => server.await.expect("fake server script"),
        };
        (result, elapsed, sent)
    })
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Asserts that nothing derived from the password was sent: no `p` message at all after
/// the startup packet(s), and the password text nowhere.
fn assert_no_secret(sent: &[u8]) {
    assert!(
        !contains(sent, PASSWORD.as_bytes()),
        "the password was sent in clear"
    );
    let mut buf = BytesMut::from(sent);
    // Skip the untagged packets: SSLRequests up to the StartupMessage.
    loop {
        match StartupPacket::decode(&mut buf) {
            Ok(Some(StartupPacket::Startup(_))) => break,
            Ok(Some(_)) => {}
            other => panic!("no StartupMessage in what the client sent: {other:?}"),
        }
    }
    // Walk the tagged frames: none may be a `p` (password, SASL) message.
    let mut rest: &[u8] = &buf;
    while let [tag, a, b, c, d, ..] = rest {
        assert_ne!(*tag, b'p', "an authentication message was sent");
        let len = usize::try_from(u32::from_be_bytes([*a, *b, *c, *d])).expect("u32 fits");
        rest = rest.get(1 + len..).unwrap_or_default();
    }
}

fn expect_err(
    result: Result<Client, walstream_conn::Error>,
    elapsed: Duration,
    kinds: &[ErrorKind],
) -> walstream_conn::Error {
    let Err(err) = result else {
        panic!("the connection must fail")
    };
    assert!(
        kinds.contains(&err.kind()),
        "expected one of {kinds:?}, got {:?}: {err:?}",
        err.kind()
    );
    assert!(elapsed < PROMPT, "took {elapsed:?}: {err}");
    assert!(
        !err.to_string().contains(PASSWORD),
        "error text leaks the password: {err}"
    );
    err
}

// --- malformed, oversized, truncated ---------------------------------------------------------

#[test]
fn malformed_authentication_code_is_a_protocol_error() {
    let (result, elapsed, sent) = connect_to("sslmode=disable", |mut p| async move {
        p.accept_plaintext().await;
        // 'R' with an authentication code nobody knows.
        p.raw(&[b'R', 0, 0, 0, 8, 0, 0, 0, 99]).await;
        p.drain().await
    });
    expect_err(
        result,
        elapsed,
        &[ErrorKind::Protocol, ErrorKind::Unsupported],
    );
    assert_no_secret(&sent);
}

#[test]
fn length_below_four_is_a_protocol_error() {
    let (result, elapsed, _) = connect_to("sslmode=disable", |mut p| async move {
        p.accept_plaintext().await;
        p.raw(&[b'R', 0, 0, 0, 2]).await;
        p.drain().await
    });
    expect_err(result, elapsed, &[ErrorKind::Protocol]);
}

#[test]
fn unknown_message_tag_is_a_protocol_error() {
    let (result, elapsed, _) = connect_to("sslmode=disable", |mut p| async move {
        p.accept_plaintext().await;
        p.raw(&[0xFF, 0, 0, 0, 4]).await;
        p.drain().await
    });
    expect_err(result, elapsed, &[ErrorKind::Protocol]);
}

#[test]
fn oversized_message_is_refused_without_waiting_for_it() {
    let (result, elapsed, _) = connect_to("sslmode=disable", |mut p| async move {
        p.accept_plaintext().await;
        // A 1 GiB ParameterStatus announced, a few bytes sent: the client must refuse on the
        // header instead of buffering (or waiting for) a gigabyte.
        p.raw(&[b'S', 0x40, 0, 0, 0, b'a', 0]).await;
        p.drain().await
    });
    expect_err(result, elapsed, &[ErrorKind::Protocol]);
}

#[test]
fn message_truncated_by_close_is_an_io_error() {
    let (result, elapsed, _) = connect_to("sslmode=disable", |mut p| async move {
        p.accept_plaintext().await;
        // Half of an AuthenticationOk, then the server goes away.
        p.raw(&[b'R', 0, 0, 0, 8, 0]).await;
        p.received
    });
    expect_err(
        result,
        elapsed,
        &[ErrorKind::Io, ErrorKind::Closed, ErrorKind::Protocol],
    );
}

#[test]
fn trailing_bytes_inside_a_message_are_a_protocol_error() {
    let (result, elapsed, _) = connect_to("sslmode=disable", |mut p| async move {
        p.accept_plaintext().await;
        // AuthenticationOk with four extra bytes inside its length.
        p.raw(&[b'R', 0, 0, 0, 12, 0, 0, 0, 0, 1, 2, 3, 4]).await;
        p.drain().await
    });
    expect_err(result, elapsed, &[ErrorKind::Protocol]);
}

#[test]
fn malformed_row_after_startup_fails_the_query_not_the_process() {
    run(async {
        let (port, server) = fake_server(|mut p| async move {
            p.accept_plaintext().await;
            p.finish_startup().await;
            let q = p.message(PasswordKind::Password).await;
            assert!(matches!(q, Some(FrontendMessage::Query(_))), "{q:?}");
            // RowDescription claiming 1000 columns with no bytes for them.
            p.raw(&[b'T', 0, 0, 0, 6, 0x03, 0xE8]).await;
            p.drain().await
        })
        .await;
        let mut client = Client::connect(&config(&conninfo(port, "sslmode=disable")))
            .await
            .expect("startup succeeds");
        let start = Instant::now();
        let err = client.simple_query("SELECT 1").await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Protocol, "{err}");
        assert!(start.elapsed() < PROMPT);
        // The broken connection is not reused.
        let again = client.simple_query("SELECT 1").await.unwrap_err();
        assert!(
            matches!(
                again.kind(),
                ErrorKind::Closed | ErrorKind::InvalidState | ErrorKind::Protocol
            ),
            "{again}"
        );
        drop(client);
        let _ = server.await;
    });
}

#[test]
fn server_error_during_startup_is_a_db_error_with_fields() {
    let (result, elapsed, sent) = connect_to("sslmode=disable", |mut p| async move {
        p.accept_plaintext().await;
        let fields = ErrorFields::new()
            .with(ErrorFieldCode::SEVERITY, "FATAL")
            .with(ErrorFieldCode::CODE, "53300")
            .with(ErrorFieldCode::MESSAGE, "sorry, too many clients already");
        p.send(&[BackendMessage::ErrorResponse(fields)]).await;
        p.drain().await
    });
    let err = expect_err(result, elapsed, &[ErrorKind::Db]);
    assert_eq!(
        err.code().map(|c| c.code().to_owned()).as_deref(),
        Some("53300")
    );
    assert_no_secret(&sent);
}

// --- SCRAM ------------------------------------------------------------------------------------

/// Plays SCRAM up to the server-first-message with `iterations`, then (if the client goes
/// on) the server-final-message `final_msg`. Returns what the client sent.
async fn scram(mut p: Peer, iterations: &str, final_msg: Option<&'static str>) -> Vec<u8> {
    p.accept_plaintext().await;
    p.send(&[BackendMessage::Authentication(Authentication::Sasl {
        mechanisms: vec!["SCRAM-SHA-256".into()],
    })])
    .await;
    let Some(FrontendMessage::SaslInitialResponse { mechanism, data }) =
        p.message(PasswordKind::SaslInitial).await
    else {
        return p.drain().await;
    };
    assert_eq!(mechanism, "SCRAM-SHA-256");
    let first = String::from_utf8(data.expect("client-first").to_vec()).expect("utf8");
    let nonce = first
        .split(',')
        .find_map(|kv| kv.strip_prefix("r="))
        .expect("client nonce")
        .to_owned();
    // base64("fake-salt-16byte")
    let salt = "ZmFrZS1zYWx0LTE2Ynl0ZQ==";
    let server_first = format!("r={nonce}srvnonce,s={salt},i={iterations}");
    p.send(&[BackendMessage::Authentication(
        Authentication::SaslContinue {
            data: Bytes::from(server_first),
        },
    )])
    .await;
    if let Some(final_msg) = final_msg {
        let m = p.message(PasswordKind::Sasl).await;
        assert!(matches!(m, Some(FrontendMessage::SaslResponse(_))), "{m:?}");
        p.send(&[BackendMessage::Authentication(Authentication::SaslFinal {
            data: Bytes::from_static(final_msg.as_bytes()),
        })])
        .await;
        // A well-behaved client stops here; a broken one would wait for AuthenticationOk.
        p.send(&[BackendMessage::Authentication(Authentication::Ok)])
            .await;
    }
    p.drain().await
}

#[test]
fn scram_with_huge_iteration_count_fails_promptly_without_a_proof() {
    for iterations in ["4294967295", "2000000000", "99999999999999999999"] {
        let (result, elapsed, sent) = connect_to("sslmode=disable", move |p| async move {
            scram(p, iterations, None).await
        });
        expect_err(result, elapsed, &[ErrorKind::Auth, ErrorKind::Protocol]);
        // The client-first-message went out; no client-final-message (proof) may follow.
        let mut buf = BytesMut::from(sent.as_slice());
        let _ = StartupPacket::decode(&mut buf);
        let mut framer = FrontendFramer {
            password_kind: PasswordKind::SaslInitial,
            ..FrontendFramer::default()
        };
        let first = framer.decode(&mut buf).expect("decodes");
        assert!(matches!(
            first,
            Some(FrontendMessage::SaslInitialResponse { .. })
        ));
        framer.password_kind = PasswordKind::Sasl;
        let next = framer.decode(&mut buf).expect("decodes");
        assert!(
            !matches!(next, Some(FrontendMessage::SaslResponse(_))),
            "a proof was sent for i={iterations}"
        );
        assert!(!contains(&sent, PASSWORD.as_bytes()));
    }
}

#[test]
fn scram_with_zero_or_garbage_iterations_is_rejected() {
    for iterations in ["0", "-5", "abc", ""] {
        let (result, elapsed, _) = connect_to("sslmode=disable", move |p| async move {
            scram(p, iterations, None).await
        });
        expect_err(result, elapsed, &[ErrorKind::Auth, ErrorKind::Protocol]);
    }
}

#[test]
fn scram_wrong_server_signature_is_an_auth_error() {
    // A syntactically valid v= with the wrong value: the server does not know the password.
    let (result, elapsed, sent) = connect_to("sslmode=disable", |p| async move {
        scram(
            p,
            "4096",
            Some("v=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="),
        )
        .await
    });
    let err = expect_err(result, elapsed, &[ErrorKind::Auth, ErrorKind::Protocol]);
    // walstream-conn currently reports this as Protocol (ErrorKind::Auth's documentation
    // names it); either way the cause must be the failed server proof.
    assert!(format!("{err:?}").contains("BadServerSignature"), "{err:?}");
    // The client never sent a query on the unauthenticated connection.
    assert!(!contains(&sent, b"Q\0"));
    assert!(!contains(&sent, PASSWORD.as_bytes()));
}

#[test]
fn scram_server_error_in_final_message_is_an_auth_error() {
    let (result, elapsed, _) = connect_to("sslmode=disable", |p| async move {
        scram(p, "4096", Some("e=invalid-proof")).await
    });
    let err = expect_err(result, elapsed, &[ErrorKind::Auth, ErrorKind::Protocol]);
    assert!(format!("{err:?}").contains("invalid-proof"), "{err:?}");
}

#[test]
fn authentication_ok_before_sasl_final_is_refused() {
    let (result, elapsed, _) = connect_to("sslmode=disable", |mut p| async move {
        p.accept_plaintext().await;
        p.send(&[BackendMessage::Authentication(Authentication::Sasl {
            mechanisms: vec!["SCRAM-SHA-256".into()],
        })])
        .await;
        let _ = p.message(PasswordKind::SaslInitial).await;
        // Skip the whole exchange: "you're in".
        p.finish_startup().await;
        p.drain().await
    });
    expect_err(result, elapsed, &[ErrorKind::Auth, ErrorKind::Protocol]);
}

// --- TLS downgrade ----------------------------------------------------------------------------

#[test]
fn tls_refused_under_sslmode_require_sends_nothing_else() {
    // (verify-ca/verify-full without a root certificate fail before connecting.)
    for extra in [
        "sslmode=require",
        "sslmode=require sslcompression=0 channel_binding=disable",
    ] {
        let (result, elapsed, sent) = connect_to(extra, |mut p| async move {
            let first = p.startup().await;
            assert!(
                matches!(first, Some(StartupPacket::SslRequest)),
                "{first:?}"
            );
            p.raw(b"N").await;
            p.drain().await
        });
        expect_err(result, elapsed, &[ErrorKind::Tls]);
        // Only the 8-byte SSLRequest: no StartupMessage (user name), no password.
        assert_eq!(sent.len(), 8, "{extra}: client sent {sent:?}");
    }
}

#[test]
fn channel_binding_require_refuses_a_downgraded_plaintext_server() {
    // The server declines TLS (sslmode=prefer goes on in plaintext) and then offers every
    // password method in turn: with channel_binding=require none may be answered.
    let offers: Vec<Authentication> = vec![
        Authentication::Sasl {
            mechanisms: vec!["SCRAM-SHA-256".into()],
        },
        // A server lying that it can bind a channel that does not exist.
        Authentication::Sasl {
            mechanisms: vec!["SCRAM-SHA-256-PLUS".into(), "SCRAM-SHA-256".into()],
        },
        Authentication::CleartextPassword,
        Authentication::Md5Password { salt: *b"salt" },
        // Authentication "succeeds" without any exchange.
        Authentication::Ok,
    ];
    for offer in offers {
        let label = format!("{offer:?}");
        let (result, elapsed, sent) = connect_to(
            "sslmode=prefer channel_binding=require",
            move |mut p| async move {
                p.accept_plaintext().await;
                p.send(&[BackendMessage::Authentication(offer)]).await;
                p.drain().await
            },
        );
        let err = expect_err(result, elapsed, &[ErrorKind::Auth]);
        assert_no_secret(&sent);
        eprintln!("{label}: {err}");
    }
}

#[test]
fn channel_binding_require_with_tls_refused_under_sslmode_require() {
    let (result, elapsed, sent) = connect_to(
        "sslmode=require channel_binding=require",
        |mut p| async move {
            let _ = p.startup().await;
            p.raw(b"N").await;
            p.drain().await
        },
    );
    expect_err(result, elapsed, &[ErrorKind::Tls, ErrorKind::Auth]);
    assert_eq!(sent.len(), 8, "only the SSLRequest: {sent:?}");
}

#[test]
fn garbage_answer_to_ssl_request_is_refused() {
    let (result, elapsed, sent) = connect_to("sslmode=prefer", |mut p| async move {
        let _ = p.startup().await;
        // Neither 'S' nor 'N' (nor an old server's 'E').
        p.raw(b"Z").await;
        p.drain().await
    });
    expect_err(
        result,
        elapsed,
        &[ErrorKind::Protocol, ErrorKind::Tls, ErrorKind::Closed],
    );
    assert_eq!(sent.len(), 8, "only the SSLRequest: {sent:?}");
}

#[test]
fn server_stalling_mid_message_hits_the_connect_timeout() {
    // Half an ErrorResponse after the SSLRequest, then silence with the socket open: the
    // client must give up at connect_timeout (2 s), not wait forever.
    let extra = "sslmode=prefer connect_timeout=2";
    let (result, elapsed, sent) = run(async move {
        let (port, server) = fake_server(|mut p| async move {
            let _ = p.startup().await;
            p.raw(b"E\0\0\0\x40SFATAL\0").await;
            tokio::time::sleep(Duration::from_secs(3)).await;
            p.received
        })
        .await;
        let cfg = config(&conninfo(port, extra));
        let start = Instant::now();
        let result = tokio::time::timeout(Duration::from_secs(20), Client::connect(&cfg))
            .await
            .expect("the client must not hang");
        let elapsed = start.elapsed();
        (result, elapsed, server.await.expect("script"))
    });
    let Err(err) = result else {
        panic!("must fail")
    };
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err:?}");
    assert!(
        elapsed >= Duration::from_millis(1500) && elapsed < Duration::from_secs(4),
        "{elapsed:?}"
    );
    assert_eq!(sent.len(), 8);
}
