//! Integration tests for walstream-tls: real TLS handshakes against an in-process rustls
//! server over a tokio duplex pipe, with certificates made by rcgen for each test.

mod handshake;
mod pki;
