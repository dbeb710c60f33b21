//! The `tls-server-end-point` channel-binding value (RFC 5929 §4): a hash of the server's
//! DER certificate, with the hash function taken from the certificate's signature algorithm.

use sha2::{Digest, Sha224, Sha256, Sha384, Sha512};

use crate::TlsError;

/// The hash function used for `tls-server-end-point`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndPointHash {
    /// SHA-224.
    Sha224,
    /// SHA-256 (also used for MD5- and SHA-1-based signatures, RFC 5929 §4.1).
    Sha256,
    /// SHA-384.
    Sha384,
    /// SHA-512.
    Sha512,
}

impl EndPointHash {
    /// Hashes `data`.
    #[must_use]
    pub fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            Self::Sha224 => Sha224::digest(data).to_vec(),
            Self::Sha256 => Sha256::digest(data).to_vec(),
            Self::Sha384 => Sha384::digest(data).to_vec(),
            Self::Sha512 => Sha512::digest(data).to_vec(),
        }
    }
}

/// Computes the `tls-server-end-point` channel-binding data for a DER-encoded certificate,
/// as PostgreSQL's server does for `SCRAM-SHA-256-PLUS`.
///
/// # Errors
///
/// [`TlsError::MalformedCertificate`] if the DER cannot be parsed far enough,
/// [`TlsError::UnsupportedSignatureAlgorithm`] for algorithms without a single hash function
/// (Ed25519, RSASSA-PSS, unknown OIDs).
pub fn tls_server_end_point(cert_der: &[u8]) -> Result<Vec<u8>, TlsError> {
    Ok(end_point_hash_algorithm(cert_der)?.digest(cert_der))
}

/// Finds the hash function RFC 5929 prescribes for a DER-encoded certificate.
///
/// # Errors
///
/// As [`tls_server_end_point`].
pub fn end_point_hash_algorithm(cert_der: &[u8]) -> Result<EndPointHash, TlsError> {
    let oid = signature_algorithm_oid(cert_der)?;
    hash_for_oid(oid).ok_or_else(|| TlsError::UnsupportedSignatureAlgorithm { oid: dotted(oid) })
}

const TAG_SEQUENCE: u8 = 0x30;
const TAG_OID: u8 = 0x06;

/// Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm AlgorithmIdentifier, .. }
/// AlgorithmIdentifier ::= SEQUENCE { algorithm OBJECT IDENTIFIER, parameters ANY OPTIONAL }
fn signature_algorithm_oid(der: &[u8]) -> Result<&[u8], TlsError> {
    let mut outer = Der::new(der);
    let cert = outer.expect(TAG_SEQUENCE, "certificate is not a SEQUENCE")?;
    let mut cert = Der::new(cert);
    cert.expect(TAG_SEQUENCE, "tbsCertificate is not a SEQUENCE")?;
    let alg = cert.expect(TAG_SEQUENCE, "signatureAlgorithm is not a SEQUENCE")?;
    let oid = Der::new(alg).expect(TAG_OID, "signatureAlgorithm has no OID")?;
    if oid.is_empty() {
        return Err(malformed("empty OID"));
    }
    Ok(oid)
}

fn hash_for_oid(oid: &[u8]) -> Option<EndPointHash> {
    const PKCS1: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01];
    const ECDSA_SHA2: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03];
    const ECDSA_SHA1: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x01];
    const DSA_SHA1: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x38, 0x04, 0x03];
    const DSA_SHA2: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x03];
    const OIW_SHA1_RSA: &[u8] = &[0x2b, 0x0e, 0x03, 0x02, 0x1d];

    if oid == ECDSA_SHA1 || oid == DSA_SHA1 || oid == OIW_SHA1_RSA {
        return Some(EndPointHash::Sha256);
    }
    let (last, prefix) = oid.split_last()?;
    match (prefix, last) {
        // md5WithRSAEncryption, sha1WithRSAEncryption: RFC 5929 says use SHA-256.
        (PKCS1, 0x04 | 0x05 | 0x0b) => Some(EndPointHash::Sha256),
        (PKCS1, 0x0c) => Some(EndPointHash::Sha384),
        (PKCS1, 0x0d) => Some(EndPointHash::Sha512),
        (PKCS1, 0x0e) => Some(EndPointHash::Sha224),
        (ECDSA_SHA2, 0x01) => Some(EndPointHash::Sha224),
        (ECDSA_SHA2, 0x02) => Some(EndPointHash::Sha256),
        (ECDSA_SHA2, 0x03) => Some(EndPointHash::Sha384),
        (ECDSA_SHA2, 0x04) => Some(EndPointHash::Sha512),
        (DSA_SHA2, 0x01) => Some(EndPointHash::Sha224),
        (DSA_SHA2, 0x02) => Some(EndPointHash::Sha256),
        _ => None,
    }
}

/// Renders an OID's DER content in dotted decimal (for error messages).
fn dotted(oid: &[u8]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut acc: u64 = 0;
    for &b in oid {
        acc = acc.saturating_mul(128).saturating_add(u64::from(b & 0x7f));
        if b & 0x80 == 0 {
            if parts.is_empty() {
                // The first subidentifier packs two arcs: 40 * X + Y, X in 0..=2.
                let first = acc.min(80) / 40;
                parts.push(first.to_string());
                parts.push((acc - first * 40).to_string());
            } else {
                parts.push(acc.to_string());
            }
            acc = 0;
        }
    }
    parts.join(".")
}

const fn malformed(reason: &'static str) -> TlsError {
    TlsError::MalformedCertificate { reason }
}

/// A minimal bounded DER reader: single-byte tags, definite lengths of at most four bytes.
struct Der<'a> {
    data: &'a [u8],
}

impl<'a> Der<'a> {
    const fn new(data: &'a [u8]) -> Self {
        Self { data }
    }

    fn byte(&mut self) -> Result<u8, TlsError> {
        let (&b, rest) = self.data.split_first().ok_or(malformed("truncated DER"))?;
        self.data = rest;
        Ok(b)
    }

    /// Reads one TLV with tag `tag` and returns its contents.
    fn expect(&mut self, tag: u8, reason: &'static str) -> Result<&'a [u8], TlsError> {
        if self.byte()? != tag {
            return Err(malformed(reason));
        }
        let first = self.byte()?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let n = first & 0x7f;
            if n == 0 || n > 4 {
                return Err(malformed("unsupported DER length encoding"));
            }
            let mut len: usize = 0;
            for _ in 0..n {
                let b = self.byte()?;
                len = len
                    .checked_mul(256)
                    .and_then(|l| l.checked_add(usize::from(b)))
                    .ok_or(malformed("DER length overflow"))?;
            }
            len
        };
        if len > self.data.len() {
            return Err(malformed("DER length exceeds the data"));
        }
        let (content, rest) = self.data.split_at(len);
        self.data = rest;
        Ok(content)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Fixtures made once with openssl (see tests/data/README.md); the expected values are
    // `openssl x509 -in X.pem -outform der | sha256sum` (sha384sum, sha512sum respectively).
    const RSA_SHA256: &[u8] = include_bytes!("../tests/data/rsa-sha256.der");
    const RSA_SHA256_HASH: &str =
        "7634fba9df3fe3945658b516f47c97fb91c0726a63ea9c2885b81beddb0fd093";
    const EC_SHA384: &[u8] = include_bytes!("../tests/data/ec-sha384.der");
    const EC_SHA384_HASH: &str = "50834c2cefb924a5139cab8ae27d461535da91401e2022d2b9324e9e35715501da05bae3a611158343b1e4fe9f51b8a0";
    const RSA_SHA512: &[u8] = include_bytes!("../tests/data/rsa-sha512.der");
    const RSA_SHA512_HASH: &str = "5b710530c14c872c7aca1555996d884af5ab2077b8c6c62f2854ecf2f3c7a77c7df22655106960ee726e552254842181420b1b60f201641b6ea0ed50c7d47a8c";
    const ED25519: &[u8] = include_bytes!("../tests/data/ed25519.der");

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn known_certificates() {
        assert_eq!(
            end_point_hash_algorithm(RSA_SHA256).unwrap(),
            EndPointHash::Sha256
        );
        assert_eq!(
            hex(&tls_server_end_point(RSA_SHA256).unwrap()),
            RSA_SHA256_HASH
        );
        assert_eq!(
            end_point_hash_algorithm(EC_SHA384).unwrap(),
            EndPointHash::Sha384
        );
        assert_eq!(
            hex(&tls_server_end_point(EC_SHA384).unwrap()),
            EC_SHA384_HASH
        );
        assert_eq!(
            end_point_hash_algorithm(RSA_SHA512).unwrap(),
            EndPointHash::Sha512
        );
        assert_eq!(
            hex(&tls_server_end_point(RSA_SHA512).unwrap()),
            RSA_SHA512_HASH
        );
    }

    #[test]
    fn ed25519_is_unsupported() {
        match tls_server_end_point(ED25519) {
            Err(TlsError::UnsupportedSignatureAlgorithm { oid }) => assert_eq!(oid, "1.3.101.112"),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn oid_table() {
        let pkcs1 = |x: u8| vec![0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, x];
        assert_eq!(hash_for_oid(&pkcs1(0x04)), Some(EndPointHash::Sha256)); // md5
        assert_eq!(hash_for_oid(&pkcs1(0x05)), Some(EndPointHash::Sha256)); // sha1
        assert_eq!(hash_for_oid(&pkcs1(0x0e)), Some(EndPointHash::Sha224));
        assert_eq!(hash_for_oid(&pkcs1(0x0a)), None); // RSASSA-PSS
        assert_eq!(
            hash_for_oid(&[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x01]),
            Some(EndPointHash::Sha256)
        );
        assert_eq!(dotted(&pkcs1(0x0b)), "1.2.840.113549.1.1.11");
    }

    #[test]
    fn truncations_and_garbage_never_panic() {
        for cert in [RSA_SHA256, EC_SHA384, RSA_SHA512, ED25519] {
            // Only the full certificate parses: every proper prefix is rejected because the
            // outer length exceeds the data.
            for cut in 0..cert.len() {
                assert!(tls_server_end_point(&cert[..cut]).is_err(), "cut at {cut}");
            }
            let mut flipped = cert.to_vec();
            for i in 0..flipped.len().min(64) {
                flipped[i] ^= 0xff;
                let _ = tls_server_end_point(&flipped);
                flipped[i] ^= 0xff;
            }
        }
        for bad in [
            &[][..],
            &[0x30],
            &[0x30, 0x80],
            &[0x30, 0x85, 1, 1, 1, 1, 1],
            &[0x30, 0x84, 0xff, 0xff, 0xff, 0xff],
        ] {
            assert!(matches!(
                tls_server_end_point(bad),
                Err(TlsError::MalformedCertificate { .. })
            ));
        }
        assert!(matches!(
            tls_server_end_point(&[0x30, 0x06, 0x30, 0x00, 0x30, 0x02, 0x05, 0x00]),
            Err(TlsError::MalformedCertificate {
                reason: "signatureAlgorithm has no OID"
            })
        ));
    }
}
