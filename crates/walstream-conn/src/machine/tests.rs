//! Scripted tests of the sans-IO core: server bytes in, client bytes and events out.

use std::time::{Duration, Instant};

use bytes::BytesMut;
use walstream_proto::{
    Authentication, BackendMessage, CopyResponse, DataRow, ErrorFieldCode as C, ErrorFields,
    FieldDescription, FormatCode, FrontendFramer, FrontendMessage, Oid, PasswordKind, SqlState,
    StartupPacket, TransactionStatus,
};

use super::*;

fn settings() -> StartupSettings {
    StartupSettings::new(vec![
        ("user".into(), "alice".into()),
        ("database".into(), "db".into()),
        ("replication".into(), "database".into()),
    ])
}

fn with_password(mut s: StartupSettings, pw: &str) -> StartupSettings {
    s.password = Some(Password::from(pw));
    s
}

fn server(msgs: &[BackendMessage]) -> Vec<u8> {
    let mut b = BytesMut::new();
    for m in msgs {
        m.encode(&mut b).unwrap();
    }
    b.to_vec()
}

fn transmit(c: &mut Connection) -> BytesMut {
    let mut b = BytesMut::new();
    let _ = c.poll_transmit(&mut b);
    b
}

fn events(c: &mut Connection) -> Vec<Event> {
    std::iter::from_fn(|| c.poll_event()).collect()
}

fn frontend(mut b: BytesMut, kind: PasswordKind) -> Vec<FrontendMessage> {
    let framer = FrontendFramer {
        password_kind: kind,
        ..FrontendFramer::default()
    };
    let mut out = Vec::new();
    while let Some(m) = framer.decode(&mut b).unwrap() {
        out.push(m);
    }
    assert!(b.is_empty());
    out
}

fn startup_params(c: &mut Connection) -> Vec<(String, String)> {
    let mut b = transmit(c);
    match StartupPacket::decode(&mut b).unwrap() {
        Some(StartupPacket::Startup(m)) => {
            assert_eq!(m.version, ProtocolVersion::V3_0);
            m.params
        }
        other => panic!("expected StartupMessage, got {other:?}"),
    }
}

fn ready_sequence() -> Vec<BackendMessage> {
    vec![
        BackendMessage::Authentication(Authentication::Ok),
        BackendMessage::ParameterStatus {
            name: "server_version".into(),
            value: "15.6".into(),
        },
        BackendMessage::ParameterStatus {
            name: "standard_conforming_strings".into(),
            value: "on".into(),
        },
        BackendMessage::BackendKeyData {
            process_id: 4242,
            secret_key: vec![1, 2, 3, 4].into(),
        },
        BackendMessage::ReadyForQuery(TransactionStatus::IDLE),
    ]
}

fn connected_trust() -> Connection {
    let mut c = Connection::new(settings()).unwrap();
    let _ = transmit(&mut c);
    c.handle_input(&server(&ready_sequence())).unwrap();
    let _ = events(&mut c);
    assert_eq!(c.phase(), Phase::Idle);
    c
}

fn error_fields(severity: &str, code: &str, msg: &str) -> ErrorFields {
    ErrorFields::new()
        .with(C::SEVERITY, severity.to_owned())
        .with(C::SEVERITY_NONLOCALIZED, severity.to_owned())
        .with(C::CODE, code.to_owned())
        .with(C::MESSAGE, msg.to_owned())
}

#[test]
fn trust_startup_sends_params_and_reaches_idle() {
    let mut c = Connection::new(settings()).unwrap();
    let params = startup_params(&mut c);
    assert_eq!(params, settings().params);
    assert_eq!(c.phase(), Phase::Authenticating);
    c.handle_input(&server(&ready_sequence())).unwrap();
    let ev = events(&mut c);
    assert!(
        matches!(ev.first(), Some(Event::Authenticated(CompletedAuth::None))),
        "{ev:?}"
    );
    assert!(matches!(ev.last(), Some(Event::Connected)), "{ev:?}");
    assert_eq!(c.phase(), Phase::Idle);
    assert_eq!(c.parameter("server_version"), Some("15.6"));
    let key = c.backend_key().unwrap();
    assert_eq!(key.process_id, 4242);
    assert!(!format!("{key:?}").contains("secret"));
    assert_eq!(c.auth_method(), Some(CompletedAuth::None));
}

#[test]
fn startup_split_at_every_byte_gives_same_result() {
    let bytes = server(&ready_sequence());
    for split in 0..=bytes.len() {
        let mut c = Connection::new(settings()).unwrap();
        let _ = transmit(&mut c);
        let (a, b) = bytes.split_at(split);
        c.handle_input(a).unwrap();
        c.handle_input(b).unwrap();
        assert_eq!(c.phase(), Phase::Idle, "split at {split}");
        assert_eq!(events(&mut c).len(), 4, "split at {split}");
    }
}

#[test]
fn cleartext_and_md5_passwords() {
    let mut c = Connection::new(with_password(settings(), "s3cret")).unwrap();
    let _ = transmit(&mut c);
    c.handle_input(&server(&[BackendMessage::Authentication(
        Authentication::CleartextPassword,
    )]))
    .unwrap();
    assert_eq!(
        frontend(transmit(&mut c), PasswordKind::Password),
        [FrontendMessage::Password("s3cret".into())]
    );
    c.handle_input(&server(&ready_sequence())).unwrap();
    assert_eq!(c.auth_method(), Some(CompletedAuth::Password));

    let mut c = Connection::new(with_password(settings(), "s3cret")).unwrap();
    let _ = transmit(&mut c);
    let salt = [0xde, 0xad, 0xbe, 0xef];
    c.handle_input(&server(&[BackendMessage::Authentication(
        Authentication::Md5Password { salt },
    )]))
    .unwrap();
    let want = walstream_auth::md5_response(b"alice", b"s3cret", salt);
    assert!(want.starts_with("md5") && want.len() == 35);
    assert_eq!(
        frontend(transmit(&mut c), PasswordKind::Password),
        [FrontendMessage::Password(want)]
    );
    c.handle_input(&server(&ready_sequence())).unwrap();
    assert_eq!(c.auth_method(), Some(CompletedAuth::Md5));
}

#[test]
fn missing_password_is_an_auth_error() {
    let mut c = Connection::new(settings()).unwrap();
    let _ = transmit(&mut c);
    let e = c
        .handle_input(&server(&[BackendMessage::Authentication(
            Authentication::CleartextPassword,
        )]))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Auth);
    assert!(transmit(&mut c).is_empty());
    assert_eq!(c.phase(), Phase::Failed);
    assert_eq!(c.handle_input(b"").unwrap_err().kind(), ErrorKind::Closed);
}

#[test]
fn scram_initial_response_and_bad_nonce() {
    let mut c = Connection::new(with_password(settings(), "pencil")).unwrap();
    let _ = transmit(&mut c);
    c.handle_input(&server(&[BackendMessage::Authentication(
        Authentication::Sasl {
            mechanisms: vec!["SCRAM-SHA-256".into()],
        },
    )]))
    .unwrap();
    let sent = frontend(transmit(&mut c), PasswordKind::SaslInitial);
    let [
        FrontendMessage::SaslInitialResponse {
            mechanism,
            data: Some(data),
        },
    ] = sent.as_slice()
    else {
        panic!("{sent:?}")
    };
    assert_eq!(mechanism, "SCRAM-SHA-256");
    assert!(data.starts_with(b"n,,n=,r="), "{data:?}");
    // A server nonce that does not extend the client's is server misbehaviour.
    let e = c
        .handle_input(&server(&[BackendMessage::Authentication(
            Authentication::SaslContinue {
                data: "r=someoneelse,s=QSXCR+Q6sek8bf92,i=4096".into(),
            },
        )]))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Protocol, "{e}");
    assert!(transmit(&mut c).is_empty());
}

#[test]
fn authentication_ok_before_scram_final_is_rejected() {
    let mut c = Connection::new(with_password(settings(), "pencil")).unwrap();
    let _ = transmit(&mut c);
    c.handle_input(&server(&[BackendMessage::Authentication(
        Authentication::Sasl {
            mechanisms: vec!["SCRAM-SHA-256".into()],
        },
    )]))
    .unwrap();
    let e = c
        .handle_input(&server(&[BackendMessage::Authentication(
            Authentication::Ok,
        )]))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Protocol);
}

#[test]
fn channel_binding_require_fails_before_any_password_without_tls() {
    let requests = [
        Authentication::CleartextPassword,
        Authentication::Md5Password { salt: [1, 2, 3, 4] },
        Authentication::Sasl {
            mechanisms: vec!["SCRAM-SHA-256".into()],
        },
        Authentication::Sasl {
            mechanisms: vec!["SCRAM-SHA-256-PLUS".into(), "SCRAM-SHA-256".into()],
        },
        Authentication::Ok,
    ];
    for req in requests {
        let mut s = with_password(settings(), "pw");
        s.channel_binding = ChannelBindingPolicy::Require;
        let mut c = Connection::new(s).unwrap();
        let _ = transmit(&mut c);
        let e = c
            .handle_input(&server(&[BackendMessage::Authentication(req.clone())]))
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Auth, "{req:?}: {e}");
        assert!(transmit(&mut c).is_empty(), "{req:?}: something was sent");
    }
}

#[test]
fn channel_binding_with_tls_uses_scram_plus() {
    let mut s = with_password(settings(), "pw");
    s.tls = TlsRequest::Negotiate { required: true };
    s.channel_binding = ChannelBindingPolicy::Require;
    let mut c = Connection::new(s).unwrap();
    let mut sent = transmit(&mut c);
    assert_eq!(
        StartupPacket::decode(&mut sent).unwrap(),
        Some(StartupPacket::SslRequest)
    );
    c.handle_input(b"S").unwrap();
    assert!(matches!(events(&mut c).as_slice(), [Event::StartTls]));
    assert!(transmit(&mut c).is_empty());
    c.tls_established(Some(vec![7; 32])).unwrap();
    assert!(c.is_tls());
    let _ = startup_params(&mut c);
    c.handle_input(&server(&[BackendMessage::Authentication(
        Authentication::Sasl {
            mechanisms: vec!["SCRAM-SHA-256-PLUS".into(), "SCRAM-SHA-256".into()],
        },
    )]))
    .unwrap();
    let sent = frontend(transmit(&mut c), PasswordKind::SaslInitial);
    let [
        FrontendMessage::SaslInitialResponse {
            mechanism,
            data: Some(data),
        },
    ] = sent.as_slice()
    else {
        panic!("{sent:?}")
    };
    assert_eq!(mechanism, "SCRAM-SHA-256-PLUS");
    assert!(
        data.starts_with(b"p=tls-server-end-point,,n=,r="),
        "{data:?}"
    );
}

#[test]
fn require_auth_is_enforced() {
    // scram only: an MD5 request is refused before sending anything.
    let mut s = with_password(settings(), "pw");
    s.require_auth = RequireAuth::parse("scram-sha-256").unwrap();
    let mut c = Connection::new(s.clone()).unwrap();
    let _ = transmit(&mut c);
    let e = c
        .handle_input(&server(&[BackendMessage::Authentication(
            Authentication::Md5Password { salt: [0; 4] },
        )]))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Auth);
    assert!(transmit(&mut c).is_empty());
    // ... and a server that skips authentication is refused too.
    let mut c = Connection::new(s).unwrap();
    let _ = transmit(&mut c);
    let e = c.handle_input(&server(&ready_sequence())).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Auth);
    // "!scram-sha-256" refuses SASL.
    let mut s = with_password(settings(), "pw");
    s.require_auth = RequireAuth::parse("!scram-sha-256").unwrap();
    let mut c = Connection::new(s).unwrap();
    let _ = transmit(&mut c);
    let e = c
        .handle_input(&server(&[BackendMessage::Authentication(
            Authentication::Sasl {
                mechanisms: vec!["SCRAM-SHA-256".into()],
            },
        )]))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Auth);
    // "none" accepts trust.
    let mut s = settings();
    s.require_auth = RequireAuth::parse("none").unwrap();
    let mut c = Connection::new(s).unwrap();
    let _ = transmit(&mut c);
    c.handle_input(&server(&ready_sequence())).unwrap();
    assert_eq!(c.phase(), Phase::Idle);
}

#[test]
fn gssapi_is_unsupported() {
    let mut c = Connection::new(settings()).unwrap();
    let _ = transmit(&mut c);
    let e = c
        .handle_input(&server(&[BackendMessage::Authentication(
            Authentication::Gss,
        )]))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported);
}

#[test]
fn startup_error_is_a_db_error() {
    let mut c = Connection::new(settings()).unwrap();
    let _ = transmit(&mut c);
    let f = error_fields(
        "FATAL",
        "28P01",
        "password authentication failed for user \"alice\"",
    );
    let e = c
        .handle_input(&server(&[BackendMessage::ErrorResponse(f)]))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Db);
    assert_eq!(e.code(), Some(SqlState::INVALID_PASSWORD));
    assert!(e.to_string().contains("28P01"), "{e}");
}

#[test]
fn ssl_answer_handling() {
    // 'S' followed by bytes before the handshake: buffered-injection attack.
    let mut s = settings();
    s.tls = TlsRequest::Negotiate { required: false };
    let mut c = Connection::new(s.clone()).unwrap();
    let _ = transmit(&mut c);
    let e = c.handle_input(b"SR\0\0\0\x08\0\0\0\0").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Protocol);
    // ... also when the extra bytes arrive in a later read before the handshake.
    let mut c = Connection::new(s.clone()).unwrap();
    let _ = transmit(&mut c);
    c.handle_input(b"S").unwrap();
    assert_eq!(
        c.handle_input(b"R").unwrap_err().kind(),
        ErrorKind::Protocol
    );
    // 'N' with TLS optional: plaintext startup follows.
    let mut c = Connection::new(s).unwrap();
    let _ = transmit(&mut c);
    c.handle_input(b"N").unwrap();
    assert!(matches!(events(&mut c).as_slice(), [Event::TlsDeclined]));
    assert_eq!(startup_params(&mut c), settings().params);
    assert!(!c.is_tls());
    // 'N' with TLS required.
    let mut s = settings();
    s.tls = TlsRequest::Negotiate { required: true };
    let mut c = Connection::new(s.clone()).unwrap();
    let _ = transmit(&mut c);
    assert_eq!(c.handle_input(b"N").unwrap_err().kind(), ErrorKind::Tls);
    // 'E': an error message follows in normal framing.
    let mut c = Connection::new(s.clone()).unwrap();
    let _ = transmit(&mut c);
    let mut bytes = b"E".to_vec();
    bytes.extend(
        server(&[BackendMessage::ErrorResponse(error_fields(
            "FATAL", "53300", "too many",
        ))])[1..]
            .iter(),
    );
    let e = c.handle_input(&bytes).unwrap_err();
    assert_eq!(
        e.code().map(|c| c.code().to_owned()).as_deref(),
        Some("53300")
    );
    // Garbage.
    let mut c = Connection::new(s).unwrap();
    let _ = transmit(&mut c);
    assert_eq!(
        c.handle_input(b"X").unwrap_err().kind(),
        ErrorKind::Protocol
    );
}

#[test]
fn direct_tls_starts_with_the_handshake() {
    let mut s = settings();
    s.tls = TlsRequest::Direct;
    let mut c = Connection::new(s).unwrap();
    assert!(transmit(&mut c).is_empty());
    assert!(matches!(events(&mut c).as_slice(), [Event::StartTls]));
    assert_eq!(c.phase(), Phase::TlsHandshake);
    c.tls_established(None).unwrap();
    assert_eq!(startup_params(&mut c), settings().params);
    assert_eq!(
        c.tls_established(None).unwrap_err().kind(),
        ErrorKind::InvalidState
    );
}

#[test]
fn simple_query_rows_and_errors() {
    let mut c = connected_trust();
    c.send_query("SELECT 1").unwrap();
    assert_eq!(
        frontend(transmit(&mut c), PasswordKind::Password),
        [FrontendMessage::Query("SELECT 1".into())]
    );
    assert_eq!(
        c.send_query("SELECT 2").unwrap_err().kind(),
        ErrorKind::InvalidState
    );
    let field = FieldDescription {
        name: "x".into(),
        table_oid: Oid(0),
        column_id: 0,
        type_oid: Oid(23),
        type_size: 4,
        type_modifier: -1,
        format: FormatCode::TEXT,
    };
    c.handle_input(&server(&[
        BackendMessage::RowDescription(vec![field]),
        BackendMessage::DataRow(DataRow::from_columns([Some("1")]).unwrap()),
        BackendMessage::NoticeResponse(error_fields("NOTICE", "00000", "hello")),
        BackendMessage::CommandComplete("SELECT 1".into()),
        BackendMessage::ReadyForQuery(TransactionStatus::IDLE),
    ]))
    .unwrap();
    let ev = events(&mut c);
    assert!(matches!(
        ev.as_slice(),
        [
            Event::RowDescription(_),
            Event::DataRow(_),
            Event::Notice(_),
            Event::CommandComplete(_),
            Event::ReadyForQuery(_)
        ]
    ));
    assert_eq!(c.phase(), Phase::Idle);

    c.send_query("SELEC").unwrap();
    let _ = transmit(&mut c);
    c.handle_input(&server(&[
        BackendMessage::ErrorResponse(
            error_fields("ERROR", "42601", "syntax error").with(C::POSITION, "1"),
        ),
        BackendMessage::ReadyForQuery(TransactionStatus::IDLE),
    ]))
    .unwrap();
    let ev = events(&mut c);
    let [Event::QueryError(db), Event::ReadyForQuery(_)] = ev.as_slice() else {
        panic!("{ev:?}")
    };
    assert_eq!(db.code(), SqlState::SYNTAX_ERROR);
    assert_eq!(db.position(), Some(1));

    // A FATAL error ends the connection.
    c.send_query("SELECT pg_sleep(10)").unwrap();
    let e = c.handle_input(&server(&[BackendMessage::ErrorResponse(error_fields(
        "FATAL",
        "57P01",
        "terminating",
    ))]));
    assert_eq!(e.unwrap_err().code(), Some(SqlState::ADMIN_SHUTDOWN));
}

#[test]
fn copy_both_cycle_and_error_mid_stream() {
    let mut c = connected_trust();
    assert_eq!(
        c.send_copy_data(b"x").unwrap_err().kind(),
        ErrorKind::InvalidState
    );
    c.send_query("START_REPLICATION SLOT s LOGICAL 0/0")
        .unwrap();
    let _ = transmit(&mut c);
    c.handle_input(&server(&[
        BackendMessage::CopyBothResponse(CopyResponse::default()),
        BackendMessage::CopyData(vec![b'k'; 18].into()),
    ]))
    .unwrap();
    let ev = events(&mut c);
    assert!(matches!(ev.as_slice(), [Event::CopyBoth(_), Event::CopyData(d)] if d.len() == 18));
    c.send_copy_data(b"r123").unwrap();
    assert_eq!(
        frontend(transmit(&mut c), PasswordKind::Password),
        [FrontendMessage::CopyData(b"r123".to_vec().into())]
    );
    let f = error_fields("ERROR", "55000", "replication slot is active")
        .with(C::DETAIL, "pid 1")
        .with(C::FILE, "slot.c")
        .with(C::LINE, "10")
        .with(C::ROUTINE, "ReplicationSlotAcquire");
    c.handle_input(&server(&[
        BackendMessage::ErrorResponse(f),
        BackendMessage::ReadyForQuery(TransactionStatus::IDLE),
    ]))
    .unwrap();
    let ev = events(&mut c);
    let [Event::QueryError(db), Event::ReadyForQuery(_)] = ev.as_slice() else {
        panic!("{ev:?}")
    };
    assert_eq!(db.code(), SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE);
    assert_eq!(db.detail(), Some("pid 1"));
    assert_eq!(db.routine(), Some("ReplicationSlotAcquire"));
    assert_eq!(db.line(), Some(10));
    assert_eq!(c.phase(), Phase::Idle);
}

#[test]
fn copy_done_both_ways_then_next_timeline_result() {
    let mut c = connected_trust();
    c.send_query("START_REPLICATION 0/0 TIMELINE 1").unwrap();
    let _ = transmit(&mut c);
    c.handle_input(&server(&[
        BackendMessage::CopyBothResponse(CopyResponse::default()),
        BackendMessage::CopyDone,
    ]))
    .unwrap();
    assert!(c.server_copy_done());
    c.send_copy_done().unwrap();
    assert_eq!(
        frontend(transmit(&mut c), PasswordKind::Password),
        [FrontendMessage::CopyDone]
    );
    assert_eq!(
        c.send_copy_done().unwrap_err().kind(),
        ErrorKind::InvalidState
    );
    c.handle_input(&server(&[
        BackendMessage::RowDescription(vec![]),
        BackendMessage::DataRow(DataRow::from_columns([Some("2"), Some("0/3000000")]).unwrap()),
        BackendMessage::CommandComplete("START_STREAMING".into()),
        BackendMessage::CommandComplete("START_REPLICATION".into()),
        BackendMessage::ReadyForQuery(TransactionStatus::IDLE),
    ]))
    .unwrap();
    let ev = events(&mut c);
    assert_eq!(ev.len(), 7, "{ev:?}");
    assert_eq!(c.phase(), Phase::Idle);
}

#[test]
fn unexpected_copy_data_after_copy_done_is_a_protocol_error() {
    let mut c = connected_trust();
    c.send_query("START_REPLICATION 0/0").unwrap();
    c.handle_input(&server(&[
        BackendMessage::CopyBothResponse(CopyResponse::default()),
        BackendMessage::CopyDone,
    ]))
    .unwrap();
    let e = c
        .handle_input(&server(&[BackendMessage::CopyData(vec![1].into())]))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Protocol);
}

#[test]
fn deadline_fails_the_connection() {
    let mut c = Connection::new(settings()).unwrap();
    let t0 = Instant::now();
    assert_eq!(c.poll_timeout(), None);
    c.set_deadline(Some(t0 + Duration::from_secs(5)));
    assert_eq!(c.poll_timeout(), Some(t0 + Duration::from_secs(5)));
    c.handle_timeout(t0 + Duration::from_secs(4)).unwrap();
    let e = c.handle_timeout(t0 + Duration::from_secs(5)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout);
    assert_eq!(c.poll_timeout(), None);
    assert_eq!(c.send_query("x").unwrap_err().kind(), ErrorKind::Closed);
}

#[test]
fn oversized_and_unexpected_messages() {
    let mut s = settings();
    s.max_message_size = 100;
    let mut c = Connection::new(s).unwrap();
    let _ = transmit(&mut c);
    // A 1 GiB ErrorResponse header: refused before buffering.
    let e = c.handle_input(b"E\x40\0\0\0").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Protocol);
    assert!(std::error::Error::source(&e).is_some());

    let mut c = Connection::new(settings()).unwrap();
    let _ = transmit(&mut c);
    let e = c
        .handle_input(&server(&[BackendMessage::CopyDone]))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Protocol);

    let mut c = Connection::new(settings()).unwrap();
    let e = c.handle_input(b"?\0\0\0\x04").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Protocol);
}

#[test]
fn close_sends_terminate() {
    let mut c = connected_trust();
    c.close();
    assert_eq!(
        frontend(transmit(&mut c), PasswordKind::Password),
        [FrontendMessage::Terminate]
    );
    assert_eq!(c.phase(), Phase::Closed);
    assert_eq!(c.send_query("x").unwrap_err().kind(), ErrorKind::Closed);
}

#[test]
fn random_input_never_panics() {
    // A small deterministic xorshift: feed garbage in every phase reachable from the start.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for round in 0..500 {
        let mut c = Connection::new(with_password(settings(), "pw")).unwrap();
        let mut data = server(&ready_sequence());
        let keep = round % data.len();
        data.truncate(keep);
        for _ in 0..64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            data.push(x.to_le_bytes()[0]);
        }
        let _ = c.handle_input(&data);
        let _ = events(&mut c);
    }
}

fn requesting(version: ProtocolVersion, min: ProtocolVersion) -> Connection {
    let mut s = settings();
    s.protocol_version = version;
    s.min_protocol_version = min;
    let mut c = Connection::new(s).unwrap();
    let mut b = transmit(&mut c);
    match StartupPacket::decode(&mut b).unwrap() {
        Some(StartupPacket::Startup(m)) => assert_eq!(m.version, version),
        other => panic!("expected StartupMessage, got {other:?}"),
    }
    c
}

/// `ready_sequence` with a cancel key of `len` bytes.
fn ready_with_key(len: u8) -> Vec<BackendMessage> {
    let mut msgs = ready_sequence();
    for m in &mut msgs {
        if let BackendMessage::BackendKeyData { secret_key, .. } = m {
            *secret_key = (0..len).collect::<Vec<u8>>().into();
        }
    }
    msgs
}

fn negotiate(newest_minor: u32, options: &[&str]) -> BackendMessage {
    BackendMessage::NegotiateProtocolVersion {
        newest_minor,
        unrecognized_options: options.iter().map(|o| (*o).to_owned()).collect(),
    }
}

#[test]
fn protocol_3_2_accepted_with_a_long_cancel_key() {
    let mut c = requesting(ProtocolVersion::V3_2, ProtocolVersion::V3_0);
    c.handle_input(&server(&ready_with_key(32))).unwrap();
    assert_eq!(c.phase(), Phase::Idle);
    assert_eq!(c.protocol_version(), ProtocolVersion::V3_2);
    let key = c.backend_key().unwrap();
    assert_eq!(&key.secret_key[..], &(0..32).collect::<Vec<u8>>()[..]);
    // The key is never printed.
    assert!(!format!("{key:?}").contains("31"));
}

#[test]
fn protocol_3_2_negotiated_down_to_3_0() {
    // What PostgreSQL 15 answers to a 3.2 startup message (the whole version number,
    // as the integration test against it confirms), and the bare minor version the protocol documentation describes.
    let captured: &[u8] = b"v\x00\x00\x00\x0c\x00\x03\x00\x00\x00\x00\x00\x00";
    for first in [captured.to_vec(), server(&[negotiate(0, &[])])] {
        let mut c = requesting(ProtocolVersion::V3_2, ProtocolVersion::V3_0);
        let mut bytes = first;
        bytes.extend(server(&ready_sequence()));
        c.handle_input(&bytes).unwrap();
        assert_eq!(c.phase(), Phase::Idle);
        assert_eq!(c.protocol_version(), ProtocolVersion::V3_0);
        assert_eq!(c.backend_key().unwrap().secret_key.len(), 4);
    }
}

#[test]
fn protocol_negotiation_violations() {
    let v30 = ProtocolVersion::V3_0;
    let v32 = ProtocolVersion::V3_2;
    let cases: Vec<(
        &str,
        ProtocolVersion,
        ProtocolVersion,
        Vec<BackendMessage>,
        ErrorKind,
    )> = vec![
        (
            "3.0 cannot be negotiated down",
            v30,
            v30,
            vec![negotiate(0, &[])],
            ErrorKind::Protocol,
        ),
        (
            "no upgrade",
            v32,
            v30,
            vec![negotiate(2, &[])],
            ErrorKind::Protocol,
        ),
        (
            "no 3.3",
            v32,
            v30,
            vec![negotiate(3, &[])],
            ErrorKind::Protocol,
        ),
        (
            "no 3.1",
            v32,
            v30,
            vec![negotiate(1, &[])],
            ErrorKind::Protocol,
        ),
        (
            "minor overflow",
            v32,
            v30,
            vec![negotiate(0x1_0000, &[])],
            ErrorKind::Protocol,
        ),
        (
            "options never sent",
            v32,
            v30,
            vec![negotiate(0, &["_pq_.x"])],
            ErrorKind::Protocol,
        ),
        (
            "twice",
            v32,
            v30,
            vec![negotiate(0, &[]), negotiate(0, &[])],
            ErrorKind::Protocol,
        ),
        (
            "below the minimum",
            v32,
            v32,
            vec![negotiate(0, &[])],
            ErrorKind::Unsupported,
        ),
        (
            "long key in 3.0",
            v30,
            v30,
            ready_with_key(32),
            ErrorKind::Protocol,
        ),
        (
            "short key in 3.2",
            v32,
            v30,
            ready_with_key(3),
            ErrorKind::Protocol,
        ),
        (
            "empty key in 3.0",
            v30,
            v30,
            ready_with_key(0),
            ErrorKind::Protocol,
        ),
    ];
    for (what, version, min, msgs, kind) in cases {
        let mut c = requesting(version, min);
        let e = c.handle_input(&server(&msgs)).unwrap_err();
        assert_eq!(e.kind(), kind, "{what}: {e}");
        assert_eq!(c.phase(), Phase::Failed, "{what}");
    }
    // After negotiating down, a 3.2-sized key is refused too.
    let mut c = requesting(v32, v30);
    let mut msgs = vec![negotiate(0, &[])];
    msgs.extend(ready_with_key(32));
    assert_eq!(
        c.handle_input(&server(&msgs)).unwrap_err().kind(),
        ErrorKind::Protocol
    );
}

#[test]
fn command_complete_without_copy_done_ends_copy_both() {
    // `pg_ctl stop -m fast`: the walsender leaves COPY BOTH with CommandComplete, no CopyDone.
    let mut c = connected_trust();
    c.send_query("START_REPLICATION SLOT s LOGICAL 0/0")
        .unwrap();
    let _ = transmit(&mut c);
    c.handle_input(&server(&[
        BackendMessage::CopyBothResponse(CopyResponse::default()),
        BackendMessage::CopyData(vec![b'k'; 18].into()),
        BackendMessage::CommandComplete("COPY 0".into()),
    ]))
    .unwrap();
    let ev = events(&mut c);
    assert!(
        matches!(
            ev.as_slice(),
            [Event::CopyBoth(_), Event::CopyData(_), Event::CopyDone, Event::CommandComplete(t)]
                if t == "COPY 0"
        ),
        "{ev:?}"
    );
    assert!(c.server_copy_done());
    // The server is out of COPY mode. A status update or CopyDone the caller sends before it
    // has polled these events (it cannot know yet) is dropped, not an error and not sent.
    c.send_copy_data(b"r").unwrap();
    c.send_copy_done().unwrap();
    assert!(transmit(&mut c).is_empty());
    // After the next query, COPY data outside COPY BOTH is a misuse again.
    c.handle_input(&server(&[BackendMessage::ReadyForQuery(
        TransactionStatus::IDLE,
    )]))
    .unwrap();
    let _ = events(&mut c);
    c.send_query("IDENTIFY_SYSTEM").unwrap();
    assert_eq!(
        c.send_copy_data(b"r").unwrap_err().kind(),
        ErrorKind::InvalidState
    );
}

#[test]
fn error_response_in_copy_both_drops_status_updates_sent_before_the_error_is_polled() {
    // A logical walsender whose output plugin fails (e.g. publication dropped) ends COPY BOTH
    // with an ErrorResponse; a status update the caller sends before polling it must not turn
    // the server's error into a client-side InvalidState.
    let mut c = connected_trust();
    c.send_query("START_REPLICATION SLOT s LOGICAL 0/0")
        .unwrap();
    let _ = transmit(&mut c);
    c.handle_input(&server(&[
        BackendMessage::CopyBothResponse(CopyResponse::default()),
        BackendMessage::CopyData(vec![b'k'; 18].into()),
        BackendMessage::ErrorResponse(error_fields(
            "ERROR",
            "42704",
            "publication \"p\" does not exist",
        )),
    ]))
    .unwrap();
    c.send_copy_data(b"r").unwrap();
    assert!(transmit(&mut c).is_empty());
    let ev = events(&mut c);
    assert!(
        matches!(
            ev.as_slice(),
            [Event::CopyBoth(_), Event::CopyData(_), Event::QueryError(db)]
                if db.code().code() == "42704"
        ),
        "{ev:?}"
    );
}

fn copy_in_response() -> BackendMessage {
    BackendMessage::CopyInResponse(CopyResponse::default())
}

/// A connection whose `COPY t FROM STDIN` (sent with `send_copy_in_query`) is in COPY IN.
fn in_copy_in() -> Connection {
    let mut c = connected_trust();
    c.send_copy_in_query("COPY t FROM STDIN").unwrap();
    assert_eq!(
        frontend(transmit(&mut c), PasswordKind::Password),
        [FrontendMessage::Query("COPY t FROM STDIN".into())]
    );
    c.handle_input(&server(&[copy_in_response()])).unwrap();
    let ev = events(&mut c);
    assert!(matches!(ev.as_slice(), [Event::CopyIn(_)]), "{ev:?}");
    assert_eq!(c.phase(), Phase::CopyIn);
    c
}

#[test]
fn copy_in_cycle_sends_data_then_copy_done() {
    let mut c = in_copy_in();
    c.send_copy_data(b"1\tone\n").unwrap();
    c.send_copy_data(b"").unwrap();
    c.send_copy_data(b"2\ttwo\n").unwrap();
    c.send_copy_done().unwrap();
    assert_eq!(
        frontend(transmit(&mut c), PasswordKind::Password),
        [
            FrontendMessage::CopyData(b"1\tone\n".to_vec().into()),
            FrontendMessage::CopyData(Bytes::new()),
            FrontendMessage::CopyData(b"2\ttwo\n".to_vec().into()),
            FrontendMessage::CopyDone,
        ]
    );
    assert_eq!(c.phase(), Phase::Query);
    // The client's side is closed: no more data, no second CopyDone, no CopyFail.
    for e in [
        c.send_copy_data(b"3").unwrap_err(),
        c.send_copy_done().unwrap_err(),
        c.send_copy_fail("late").unwrap_err(),
    ] {
        assert_eq!(e.kind(), ErrorKind::InvalidState, "{e}");
    }
    c.handle_input(&server(&[
        BackendMessage::NoticeResponse(error_fields("NOTICE", "00000", "hello")),
        BackendMessage::CommandComplete("COPY 2".into()),
        BackendMessage::ReadyForQuery(TransactionStatus::IDLE),
    ]))
    .unwrap();
    let ev = events(&mut c);
    assert!(
        matches!(
            ev.as_slice(),
            [Event::Notice(_), Event::CommandComplete(t), Event::ReadyForQuery(_)] if t == "COPY 2"
        ),
        "{ev:?}"
    );
    assert_eq!(c.phase(), Phase::Idle);
}

#[test]
fn error_response_during_copy_in_ends_it_and_later_data_is_dropped() {
    let mut c = in_copy_in();
    c.send_copy_data(b"x\n").unwrap();
    let _ = transmit(&mut c);
    // The server fails while the client still sends (e.g. a bad row, or a manifest from
    // another cluster): the caller has not polled the error yet.
    c.handle_input(&server(&[
        BackendMessage::ErrorResponse(error_fields(
            "ERROR",
            "22P02",
            "invalid input syntax for type integer: \"x\"",
        )),
        BackendMessage::ReadyForQuery(TransactionStatus::IDLE),
    ]))
    .unwrap();
    c.send_copy_data(b"more\n").unwrap();
    c.send_copy_done().unwrap();
    c.send_copy_fail("too late").unwrap();
    assert!(transmit(&mut c).is_empty());
    let ev = events(&mut c);
    let [Event::QueryError(db), Event::ReadyForQuery(_)] = ev.as_slice() else {
        panic!("{ev:?}")
    };
    assert_eq!(db.code().code(), "22P02");
    assert_eq!(c.phase(), Phase::Idle);
    // The next query resets it: COPY data outside COPY is a misuse again.
    c.send_query("SELECT 1").unwrap();
    assert_eq!(
        c.send_copy_data(b"r").unwrap_err().kind(),
        ErrorKind::InvalidState
    );
}

#[test]
fn copy_fail_aborts_copy_in_and_the_server_error_follows() {
    let mut c = in_copy_in();
    // A message that cannot be encoded fails without leaving COPY IN.
    assert_eq!(
        c.send_copy_fail("bad\0message").unwrap_err().kind(),
        ErrorKind::InvalidState
    );
    assert_eq!(c.phase(), Phase::CopyIn);
    c.send_copy_data(b"1\n").unwrap();
    c.send_copy_fail("caller gave up").unwrap();
    assert_eq!(
        frontend(transmit(&mut c), PasswordKind::Password),
        [
            FrontendMessage::CopyData(b"1\n".to_vec().into()),
            FrontendMessage::CopyFail("caller gave up".into()),
        ]
    );
    assert_eq!(c.phase(), Phase::Query);
    c.handle_input(&server(&[
        BackendMessage::ErrorResponse(error_fields(
            "ERROR",
            "57014",
            "COPY from stdin failed: caller gave up",
        )),
        BackendMessage::ReadyForQuery(TransactionStatus::IDLE),
    ]))
    .unwrap();
    let ev = events(&mut c);
    let [Event::QueryError(db), Event::ReadyForQuery(_)] = ev.as_slice() else {
        panic!("{ev:?}")
    };
    assert_eq!(db.code(), SqlState::QUERY_CANCELED);
    assert!(db.message().contains("caller gave up"));
    assert_eq!(c.phase(), Phase::Idle);
}

#[test]
fn copy_in_not_asked_for_is_refused_with_copy_fail() {
    // send_query: every COPY IN is refused (the behaviour before COPY IN support).
    let mut c = connected_trust();
    c.send_query("COPY t FROM STDIN").unwrap();
    let _ = transmit(&mut c);
    c.handle_input(&server(&[copy_in_response()])).unwrap();
    assert!(events(&mut c).is_empty());
    assert_eq!(c.phase(), Phase::Query);
    let sent = frontend(transmit(&mut c), PasswordKind::Password);
    assert!(
        matches!(sent.as_slice(), [FrontendMessage::CopyFail(_)]),
        "{sent:?}"
    );
    assert_eq!(
        c.send_copy_fail("x").unwrap_err().kind(),
        ErrorKind::InvalidState
    );

    // send_copy_in_query: only the first COPY IN of the query string is accepted.
    let mut c = in_copy_in();
    c.send_copy_done().unwrap();
    let _ = transmit(&mut c);
    c.handle_input(&server(&[
        BackendMessage::CommandComplete("COPY 0".into()),
        copy_in_response(),
    ]))
    .unwrap();
    let ev = events(&mut c);
    assert!(
        matches!(ev.as_slice(), [Event::CommandComplete(_)]),
        "{ev:?}"
    );
    let sent = frontend(transmit(&mut c), PasswordKind::Password);
    assert!(
        matches!(sent.as_slice(), [FrontendMessage::CopyFail(_)]),
        "{sent:?}"
    );
}

#[test]
fn protocol_violations_and_fatal_errors_during_copy_in() {
    let mut c = in_copy_in();
    let e = c
        .handle_input(&server(&[BackendMessage::DataRow(
            DataRow::from_columns([Some("1")]).unwrap(),
        )]))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Protocol, "{e}");
    assert_eq!(c.phase(), Phase::Failed);

    let mut c = in_copy_in();
    let e = c
        .handle_input(&server(&[BackendMessage::ErrorResponse(error_fields(
            "FATAL",
            "57P01",
            "terminating connection due to administrator command",
        ))]))
        .unwrap_err();
    assert_eq!(e.code(), Some(SqlState::ADMIN_SHUTDOWN));
    assert_eq!(
        c.send_copy_data(b"x").unwrap_err().kind(),
        ErrorKind::Closed
    );
}
