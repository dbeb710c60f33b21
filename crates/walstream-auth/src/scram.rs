//! SCRAM-SHA-256 and SCRAM-SHA-256-PLUS (RFC 5802, RFC 7677) as consuming states.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use rand::RngCore as _;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq as _;
use zeroize::Zeroizing;

use crate::{AuthError, ChannelBinding, ChannelBindingPolicy, Mechanism};

type HmacSha256 = Hmac<Sha256>;

/// Number of random bytes in a generated client nonce (base64-encoded to 24 characters).
const NONCE_BYTES: usize = 18;
const SERVER_FIRST: &str = "SCRAM server-first-message";
const SERVER_FINAL: &str = "SCRAM server-final-message";

/// Limits protecting the client from hostile SCRAM parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScramLimits {
    max_iterations: u32,
}

impl ScramLimits {
    /// The default maximum PBKDF2 iteration count. PostgreSQL's default is 4096; this leaves
    /// room for hardened servers while bounding the work at a fraction of a second.
    pub const DEFAULT_MAX_ITERATIONS: u32 = 100_000;

    /// Limits with the defaults.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            max_iterations: Self::DEFAULT_MAX_ITERATIONS,
        }
    }

    /// Sets the largest iteration count the client accepts from the server.
    #[must_use]
    pub const fn with_max_iterations(mut self, max: u32) -> Self {
        self.max_iterations = max;
        self
    }

    /// The largest iteration count the client accepts.
    #[must_use]
    pub const fn max_iterations(&self) -> u32 {
        self.max_iterations
    }
}

impl Default for ScramLimits {
    fn default() -> Self {
        Self::new()
    }
}

/// First state of a SCRAM exchange: holds the client-first-message.
///
/// Legal call order (each step consumes the previous state):
///
/// 1. [`ScramClient::new`] (optionally [`with_limits`](Self::with_limits),
///    [`with_nonce`](Self::with_nonce), [`with_username`](Self::with_username));
/// 2. send [`mechanism`](Self::mechanism) and [`initial_message`](Self::initial_message) in
///    `SASLInitialResponse`;
/// 3. [`update`](Self::update) with the data of `AuthenticationSASLContinue`, giving a
///    [`ScramContinue`];
/// 4. send [`ScramContinue::client_final_message`] in `SASLResponse`;
/// 5. [`ScramContinue::finish`] with the data of `AuthenticationSASLFinal`. Only when this
///    returns `Ok` is the server authenticated; an `AuthenticationOk` arriving before it
///    must be treated as an error by the connection layer.
///
/// ```
/// use walstream_auth::{ChannelBinding, ScramClient};
/// let client = ScramClient::new("pencil", ChannelBinding::NotSupported)
///     .with_nonce("rOprNGfwEbeRWgbNEkqO")?;
/// assert_eq!(client.initial_message(), b"n,,n=,r=rOprNGfwEbeRWgbNEkqO");
/// # Ok::<(), walstream_auth::AuthError>(())
/// ```
pub struct ScramClient {
    password: Zeroizing<Vec<u8>>,
    channel_binding: ChannelBinding,
    limits: ScramLimits,
    username: String,
    nonce: String,
    message: Vec<u8>,
}

impl ScramClient {
    /// Starts an exchange with a fresh random nonce from the operating system.
    ///
    /// The password is normalised with SASLprep (RFC 4013); like PostgreSQL, when it is not
    /// valid UTF-8 or SASLprep rejects it, the raw bytes are used.
    #[must_use]
    pub fn new(password: impl AsRef<[u8]>, channel_binding: ChannelBinding) -> Self {
        let mut raw = [0u8; NONCE_BYTES];
        rand::rngs::OsRng.fill_bytes(&mut raw);
        let nonce = B64.encode(raw);
        let mut client = Self {
            password: saslprep_password(password.as_ref()),
            channel_binding,
            limits: ScramLimits::new(),
            username: String::new(),
            nonce,
            message: Vec::new(),
        };
        client.rebuild_message();
        client
    }

    /// Negotiates the mechanism from the server's list (see [`crate::negotiate`]) and starts
    /// the exchange.
    ///
    /// # Errors
    ///
    /// As [`crate::select_mechanism`].
    pub fn negotiate(
        password: impl AsRef<[u8]>,
        offered: &[&str],
        server_end_point: Option<&[u8]>,
        policy: ChannelBindingPolicy,
    ) -> Result<Self, AuthError> {
        let cb = crate::negotiate(offered, server_end_point, policy)?;
        Ok(Self::new(password, cb))
    }

    /// Replaces the iteration-count limits.
    #[must_use]
    pub fn with_limits(mut self, limits: ScramLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Replaces the client nonce (for tests and recorded exchanges).
    ///
    /// # Errors
    ///
    /// [`AuthError::InvalidNonce`] if the nonce is empty or has a character outside
    /// `0x21..=0x7e` or a comma.
    pub fn with_nonce(mut self, nonce: &str) -> Result<Self, AuthError> {
        if !valid_nonce(nonce) {
            return Err(AuthError::InvalidNonce);
        }
        nonce.clone_into(&mut self.nonce);
        self.rebuild_message();
        Ok(self)
    }

    /// Sets the SCRAM user name (`n=`). PostgreSQL ignores it and libpq sends it empty (the
    /// default); generic SCRAM servers need it. `,` and `=` are escaped as RFC 5802 says.
    #[must_use]
    pub fn with_username(mut self, username: &str) -> Self {
        self.username = username.replace('=', "=3D").replace(',', "=2C");
        self.rebuild_message();
        self
    }

    /// The SASL mechanism name to send in `SASLInitialResponse`.
    #[must_use]
    pub const fn mechanism(&self) -> Mechanism {
        self.channel_binding.mechanism()
    }

    /// The client-first-message (GS2 header followed by `n=<user>,r=<nonce>`).
    #[must_use]
    pub fn initial_message(&self) -> &[u8] {
        &self.message
    }

    /// Processes the server-first-message and computes the client proof.
    ///
    /// # Errors
    ///
    /// [`AuthError::ServerError`] for an `e=` attribute, [`AuthError::Protocol`] for a
    /// malformed message or an iteration count of 0, [`AuthError::NonceMismatch`],
    /// [`AuthError::IterationsTooHigh`].
    pub fn update(self, server_first: &[u8]) -> Result<ScramContinue, AuthError> {
        let msg = std::str::from_utf8(server_first)
            .map_err(|_| AuthError::protocol(SERVER_FIRST, "not valid UTF-8"))?;
        let parsed = parse_server_first(msg, self.limits)?;
        if parsed.nonce.len() <= self.nonce.len() || !parsed.nonce.starts_with(&self.nonce) {
            return Err(AuthError::NonceMismatch);
        }

        let mut salted = Zeroizing::new([0u8; 32]);
        pbkdf2::pbkdf2_hmac::<Sha256>(
            &self.password,
            &parsed.salt,
            parsed.iterations,
            &mut *salted,
        );
        let client_key = Zeroizing::new(hmac(&*salted, b"Client Key"));
        let server_key = Zeroizing::new(hmac(&*salted, b"Server Key"));
        let stored_key = Zeroizing::new(<[u8; 32]>::from(Sha256::digest(*client_key)));

        let mut final_msg = String::with_capacity(128);
        final_msg.push_str("c=");
        B64.encode_string(self.channel_binding.cbind_input(), &mut final_msg);
        final_msg.push_str(",r=");
        final_msg.push_str(parsed.nonce);

        // The message was built as GS2 header + client-first-message-bare.
        let gs2_len = self.channel_binding.gs2_header().len();
        let client_first_bare = self.message.get(gs2_len..).unwrap_or_default();
        let mut auth_message = Zeroizing::new(Vec::with_capacity(256));
        auth_message.extend_from_slice(client_first_bare);
        auth_message.push(b',');
        auth_message.extend_from_slice(server_first);
        auth_message.push(b',');
        auth_message.extend_from_slice(final_msg.as_bytes());

        let client_signature = Zeroizing::new(hmac(&*stored_key, &auth_message));
        let mut proof = Zeroizing::new([0u8; 32]);
        for ((p, k), s) in proof
            .iter_mut()
            .zip(client_key.iter())
            .zip(client_signature.iter())
        {
            *p = k ^ s;
        }
        final_msg.push_str(",p=");
        B64.encode_string(*proof, &mut final_msg);

        Ok(ScramContinue {
            message: final_msg.into_bytes(),
            server_signature: Zeroizing::new(hmac(&*server_key, &auth_message)),
        })
    }

    fn rebuild_message(&mut self) {
        let gs2 = self.channel_binding.gs2_header();
        let mut m = Vec::with_capacity(gs2.len() + self.username.len() + self.nonce.len() + 5);
        m.extend_from_slice(gs2.as_bytes());
        m.extend_from_slice(b"n=");
        m.extend_from_slice(self.username.as_bytes());
        m.extend_from_slice(b",r=");
        m.extend_from_slice(self.nonce.as_bytes());
        self.message = m;
    }
}

impl fmt::Debug for ScramClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramClient")
            .field("mechanism", &self.mechanism())
            .field("channel_binding", &self.channel_binding)
            .field("limits", &self.limits)
            .field("nonce", &self.nonce)
            .finish_non_exhaustive()
    }
}

/// Second state of a SCRAM exchange: holds the client-final-message and the expected server
/// signature. See [`ScramClient`] for the call order.
pub struct ScramContinue {
    message: Vec<u8>,
    server_signature: Zeroizing<[u8; 32]>,
}

impl ScramContinue {
    /// The client-final-message (`c=...,r=...,p=...`) to send in `SASLResponse`.
    #[must_use]
    pub fn client_final_message(&self) -> &[u8] {
        &self.message
    }

    /// Checks the server-final-message; `Ok` means the server proved it knows the password.
    ///
    /// # Errors
    ///
    /// [`AuthError::ServerError`] for an `e=` attribute, [`AuthError::BadServerSignature`] when
    /// the signature does not match (compared in constant time), [`AuthError::Protocol`] for a
    /// malformed message.
    pub fn finish(self, server_final: &[u8]) -> Result<(), AuthError> {
        let msg = std::str::from_utf8(server_final)
            .map_err(|_| AuthError::protocol(SERVER_FINAL, "not valid UTF-8"))?;
        let first = msg.split(',').next().unwrap_or("");
        if let Some(code) = first.strip_prefix("e=") {
            return Err(AuthError::ServerError {
                code: code.to_owned(),
            });
        }
        let Some(v) = first.strip_prefix("v=") else {
            return Err(AuthError::protocol(
                SERVER_FINAL,
                "expected v= or e= attribute",
            ));
        };
        let sig = B64.decode(v).map_err(|_| {
            AuthError::protocol(SERVER_FINAL, "server signature is not valid base64")
        })?;
        if bool::from(sig.as_slice().ct_eq(self.server_signature.as_slice())) {
            Ok(())
        } else {
            Err(AuthError::BadServerSignature)
        }
    }
}

impl fmt::Debug for ScramContinue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramContinue").finish_non_exhaustive()
    }
}

struct ServerFirst<'a> {
    nonce: &'a str,
    salt: Vec<u8>,
    iterations: u32,
}

fn parse_server_first(msg: &str, limits: ScramLimits) -> Result<ServerFirst<'_>, AuthError> {
    if let Some(code) = msg.strip_prefix("e=") {
        let code = code.split(',').next().unwrap_or("");
        return Err(AuthError::ServerError {
            code: code.to_owned(),
        });
    }
    let mut parts = msg.split(',');
    let mut next = |attr: &str, missing: &'static str| -> Result<&str, AuthError> {
        parts
            .next()
            .and_then(|p| p.strip_prefix(attr))
            .ok_or(AuthError::protocol(SERVER_FIRST, missing))
    };
    if msg.starts_with("m=") {
        return Err(AuthError::protocol(
            SERVER_FIRST,
            "unsupported mandatory extension m=",
        ));
    }
    let nonce = next("r=", "expected r= (nonce) attribute")?;
    if !valid_nonce(nonce) {
        return Err(AuthError::protocol(
            SERVER_FIRST,
            "nonce has invalid characters",
        ));
    }
    let salt_b64 = next("s=", "expected s= (salt) attribute")?;
    let salt = B64
        .decode(salt_b64)
        .map_err(|_| AuthError::protocol(SERVER_FIRST, "salt is not valid base64"))?;
    if salt.is_empty() {
        return Err(AuthError::protocol(SERVER_FIRST, "salt is empty"));
    }
    let iter_str = next("i=", "expected i= (iteration count) attribute")?;
    if iter_str.is_empty() || !iter_str.bytes().all(|b| b.is_ascii_digit()) {
        return Err(AuthError::protocol(
            SERVER_FIRST,
            "iteration count is not a decimal number",
        ));
    }
    let requested = iter_str.parse::<u64>().unwrap_or(u64::MAX);
    if requested == 0 {
        return Err(AuthError::protocol(
            SERVER_FIRST,
            "iteration count must be at least 1",
        ));
    }
    let max = limits.max_iterations();
    let iterations = match u32::try_from(requested) {
        Ok(i) if i <= max => i,
        _ => return Err(AuthError::IterationsTooHigh { requested, max }),
    };
    // Further attributes are extensions (RFC 5802 §7) and are ignored.
    Ok(ServerFirst {
        nonce,
        salt,
        iterations,
    })
}

fn valid_nonce(nonce: &str) -> bool {
    !nonce.is_empty()
        && nonce
            .bytes()
            .all(|b| (0x21..=0x7e).contains(&b) && b != b',')
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length; `new_from_slice` cannot fail for it.
    let mut mac = <HmacSha256 as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// SASLprep the password as PostgreSQL does: use the normalised form when the password is
/// valid UTF-8 and SASLprep accepts it, the raw bytes otherwise.
pub(crate) fn saslprep_password(password: &[u8]) -> Zeroizing<Vec<u8>> {
    match std::str::from_utf8(password)
        .ok()
        .and_then(|s| stringprep::saslprep(s).ok())
    {
        Some(prepped) => Zeroizing::new(prepped.as_bytes().to_vec()),
        None => Zeroizing::new(password.to_vec()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 7677 §3.
    const RFC_NONCE: &str = "rOprNGfwEbeRWgbNEkqO";
    const RFC_SERVER_FIRST: &[u8] =
        b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
    const RFC_CLIENT_FINAL: &[u8] = b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
    const RFC_SERVER_FINAL: &[u8] = b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

    fn rfc_client() -> ScramClient {
        ScramClient::new("pencil", ChannelBinding::NotSupported)
            .with_username("user")
            .with_nonce(RFC_NONCE)
            .unwrap()
    }

    #[test]
    fn rfc7677_test_vector() {
        let c = rfc_client();
        assert_eq!(c.mechanism(), Mechanism::ScramSha256);
        assert_eq!(c.initial_message(), b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
        let c = c.update(RFC_SERVER_FIRST).unwrap();
        assert_eq!(c.client_final_message(), RFC_CLIENT_FINAL);
        c.finish(RFC_SERVER_FINAL).unwrap();
    }

    // Recorded against PostgreSQL 15.x (role `scramuser`, password `pencil`, created with
    // password_encryption = scram-sha-256). pg_authid.rolpassword of the role:
    // SCRAM-SHA-256$4096:H3q+LCyMWo6K9eCtWyoH3w==$iz2u+d3J0ywl0D8Wvm1K4Q8HuE9fbGgPheWwbx+Bqtg=:
    // dkgOgtcYOjAMP24jCjiTOlJ3i+aGZ2KbYbDHL8aqJK4=
    const PG_NONCE: &str = "FV/1mw0A80UO8uC2yw/sifFT";
    const PG_SERVER_FIRST: &[u8] =
        b"r=FV/1mw0A80UO8uC2yw/sifFTv9ozAvMH8zHksYB+DUp3ncC8,s=H3q+LCyMWo6K9eCtWyoH3w==,i=4096";
    const PG_CLIENT_FINAL: &[u8] = b"c=biws,r=FV/1mw0A80UO8uC2yw/sifFTv9ozAvMH8zHksYB+DUp3ncC8,\
p=v6IjXG5QT86jFYLG2IF06CrHSq01diPtBrf5jpnrbg8=";
    const PG_SERVER_FINAL: &[u8] = b"v=SUmRdSGHNnuaFC3O3zoBZFI1txFFXuKLYRgZWyCLXfc=";
    const PG_STORED_KEY: &str = "iz2u+d3J0ywl0D8Wvm1K4Q8HuE9fbGgPheWwbx+Bqtg=";
    const PG_SERVER_KEY: &str = "dkgOgtcYOjAMP24jCjiTOlJ3i+aGZ2KbYbDHL8aqJK4=";

    #[test]
    fn postgres15_recorded_exchange() {
        let c = ScramClient::new("pencil", ChannelBinding::NotSupported)
            .with_nonce(PG_NONCE)
            .unwrap();
        assert_eq!(c.initial_message(), b"n,,n=,r=FV/1mw0A80UO8uC2yw/sifFT");
        let c = c.update(PG_SERVER_FIRST).unwrap();
        assert_eq!(c.client_final_message(), PG_CLIENT_FINAL);
        c.finish(PG_SERVER_FINAL).unwrap();
    }

    /// SCRAM-SHA-256-PLUS recorded against PostgreSQL 15 over TLS (same role), the server
    /// presenting `crates/walstream-tls/tests/data/ec-sha384.pem` (ECDSA with SHA-384, so
    /// the tls-server-end-point data is the SHA-384 of its DER, as computed by walstream-tls).
    #[test]
    fn postgres15_recorded_plus_exchange() {
        const CERT_HASH: &str = "50834c2cefb924a5139cab8ae27d461535da91401e2022d2b9324e9e35715501\
da05bae3a611158343b1e4fe9f51b8a0";
        let hash: Vec<u8> = (0..CERT_HASH.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&CERT_HASH[i..i + 2], 16).unwrap())
            .collect();
        let c = ScramClient::negotiate(
            "pencil",
            &["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"],
            Some(&hash),
            ChannelBindingPolicy::Require,
        )
        .unwrap()
        .with_nonce("RpK9kRcL+BBaP2IzKGrOVZsg")
        .unwrap();
        assert_eq!(c.mechanism(), Mechanism::ScramSha256Plus);
        assert_eq!(
            c.initial_message(),
            b"p=tls-server-end-point,,n=,r=RpK9kRcL+BBaP2IzKGrOVZsg"
        );
        let c = c
            .update(b"r=RpK9kRcL+BBaP2IzKGrOVZsgP7PhSJbsi0Nr8nuz6GD/IfXI,s=H3q+LCyMWo6K9eCtWyoH3w==,i=4096")
            .unwrap();
        assert_eq!(
            c.client_final_message(),
            b"c=cD10bHMtc2VydmVyLWVuZC1wb2ludCwsUINMLO+5JKUTnKuK4n1GFTXakUAeICLSuTJOnjVxVQHaBbrjphEV\
g0Ox5P6fUbig,r=RpK9kRcL+BBaP2IzKGrOVZsgP7PhSJbsi0Nr8nuz6GD/IfXI,p=yAPrYMw3vNpl200RXtsFYAdTe5nBNiBA\
HfsPpuWz0f0="
        );
        c.finish(b"v=NobCemYBjCEm5f7YBwWXlbdZPDzVcFspbtdx3iFmUgs=")
            .unwrap();
    }

    #[test]
    fn postgres15_server_side_verification() {
        // Do what the server does with the stored secret: recover ClientKey from the proof,
        // check SHA-256(ClientKey) == StoredKey, and compute the server signature.
        let stored_key = B64.decode(PG_STORED_KEY).unwrap();
        let server_key = B64.decode(PG_SERVER_KEY).unwrap();
        let final_str = std::str::from_utf8(PG_CLIENT_FINAL).unwrap();
        let (without_proof, proof_b64) = final_str.rsplit_once(",p=").unwrap();
        let mut auth_message = b"n=,r=FV/1mw0A80UO8uC2yw/sifFT,".to_vec();
        auth_message.extend_from_slice(PG_SERVER_FIRST);
        auth_message.push(b',');
        auth_message.extend_from_slice(without_proof.as_bytes());
        let client_signature = hmac(&stored_key, &auth_message);
        let proof = B64.decode(proof_b64).unwrap();
        let client_key: Vec<u8> = proof
            .iter()
            .zip(client_signature)
            .map(|(p, s)| p ^ s)
            .collect();
        assert_eq!(
            Sha256::digest(&client_key).as_slice(),
            stored_key.as_slice()
        );
        let server_signature = hmac(&server_key, &auth_message);
        let mut expected = b"v=".to_vec();
        expected.extend_from_slice(B64.encode(server_signature).as_bytes());
        assert_eq!(expected, PG_SERVER_FINAL);
    }

    #[test]
    fn wrong_server_signature() {
        let c = rfc_client().update(RFC_SERVER_FIRST).unwrap();
        let e = c
            .finish(b"v=7rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
            .unwrap_err();
        assert_eq!(e, AuthError::BadServerSignature);
        assert!(e.is_server_misbehaviour());
        // Truncated signature is a mismatch too, not a panic.
        let c = rfc_client().update(RFC_SERVER_FIRST).unwrap();
        assert_eq!(
            c.finish(b"v=6rriTRBi").unwrap_err(),
            AuthError::BadServerSignature
        );
        let c = rfc_client().update(RFC_SERVER_FIRST).unwrap();
        assert_eq!(
            c.finish(b"v=6rriTRB").unwrap_err(),
            AuthError::protocol(SERVER_FINAL, "server signature is not valid base64")
        );
        let c = rfc_client().update(RFC_SERVER_FIRST).unwrap();
        assert_eq!(
            c.finish(b"v=AAAA").unwrap_err(),
            AuthError::BadServerSignature
        );
    }

    #[test]
    fn wrong_password_gives_other_proof() {
        let c = ScramClient::new("pencil2", ChannelBinding::NotSupported)
            .with_username("user")
            .with_nonce(RFC_NONCE)
            .unwrap()
            .update(RFC_SERVER_FIRST)
            .unwrap();
        assert_ne!(c.client_final_message(), RFC_CLIENT_FINAL);
        assert_eq!(
            c.finish(RFC_SERVER_FINAL).unwrap_err(),
            AuthError::BadServerSignature
        );
    }

    #[test]
    fn server_error_attribute() {
        let c = rfc_client().update(RFC_SERVER_FIRST).unwrap();
        assert_eq!(
            c.finish(b"e=invalid-proof").unwrap_err(),
            AuthError::ServerError {
                code: "invalid-proof".into()
            }
        );
        assert_eq!(
            rfc_client().update(b"e=other-error,x=1").unwrap_err(),
            AuthError::ServerError {
                code: "other-error".into()
            }
        );
    }

    #[test]
    fn nonce_mismatch() {
        let e = rfc_client().update(b"r=XOprNGfwEbeRWgbNEkqOsrv,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096");
        assert_eq!(e.unwrap_err(), AuthError::NonceMismatch);
        // The server must add its own part.
        let e = rfc_client().update(b"r=rOprNGfwEbeRWgbNEkqO,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096");
        assert_eq!(e.unwrap_err(), AuthError::NonceMismatch);
    }

    #[test]
    fn iteration_bounds() {
        let msg = |i: &str| format!("r={RFC_NONCE}srv,s=W22ZaJ0SNY7soEsUEjb6gQ==,i={i}");
        assert!(matches!(
            rfc_client().update(msg("0").as_bytes()).unwrap_err(),
            AuthError::Protocol {
                reason: "iteration count must be at least 1",
                ..
            }
        ));
        assert_eq!(
            rfc_client().update(msg("100001").as_bytes()).unwrap_err(),
            AuthError::IterationsTooHigh {
                requested: 100_001,
                max: 100_000
            }
        );
        assert_eq!(
            rfc_client()
                .update(msg("4294967296").as_bytes())
                .unwrap_err(),
            AuthError::IterationsTooHigh {
                requested: 4_294_967_296,
                max: 100_000
            }
        );
        assert_eq!(
            rfc_client()
                .update(msg("99999999999999999999999999").as_bytes())
                .unwrap_err(),
            AuthError::IterationsTooHigh {
                requested: u64::MAX,
                max: 100_000
            }
        );
        for bad in ["", "-1", "+5", "4096x", " 4096"] {
            assert!(
                matches!(
                    rfc_client().update(msg(bad).as_bytes()),
                    Err(AuthError::Protocol { .. })
                ),
                "{bad:?}"
            );
        }
        // A lower configured limit rejects the RFC's 4096.
        let c = rfc_client().with_limits(ScramLimits::new().with_max_iterations(4095));
        assert_eq!(
            c.update(RFC_SERVER_FIRST).unwrap_err(),
            AuthError::IterationsTooHigh {
                requested: 4096,
                max: 4095
            }
        );
        // Exactly at the limit is accepted.
        let c = rfc_client().with_limits(ScramLimits::new().with_max_iterations(4096));
        c.update(RFC_SERVER_FIRST)
            .unwrap()
            .finish(RFC_SERVER_FINAL)
            .unwrap();
    }

    #[test]
    fn malformed_server_first() {
        let cases: &[&[u8]] = &[
            b"",
            b"\xff\xfe",
            b"m=ext,r=rOprNGfwEbeRWgbNEkqOx,s=QQ==,i=1",
            b"s=QQ==,r=rOprNGfwEbeRWgbNEkqOx,i=1",
            b"r=rOprNGfwEbeRWgbNEkqOx",
            b"r=rOprNGfwEbeRWgbNEkqOx,s=QQ==",
            b"r=rOprNGfwEbeRWgbNEkqOx,s=!!!,i=1",
            b"r=rOprNGfwEbeRWgbNEkqOx,s=,i=1",
            b"r=rOprNGfwEbeRWgbNEkqO\x01,s=QQ==,i=1",
        ];
        for case in cases {
            let e = rfc_client().update(case).unwrap_err();
            assert!(matches!(e, AuthError::Protocol { .. }), "{case:?}: {e:?}");
            assert!(e.is_server_misbehaviour());
        }
        // Extensions after i= are ignored.
        rfc_client()
            .update(b"r=rOprNGfwEbeRWgbNEkqOx,s=QQ==,i=1,x=ext")
            .unwrap();
    }

    #[test]
    fn malformed_server_final() {
        for case in [&b""[..], b"x=1", b"\xff", b"V=abc"] {
            let c = rfc_client().update(RFC_SERVER_FIRST).unwrap();
            assert!(
                matches!(c.finish(case), Err(AuthError::Protocol { .. })),
                "{case:?}"
            );
        }
        // Extensions after v= are allowed.
        let c = rfc_client().update(RFC_SERVER_FIRST).unwrap();
        let mut msg = RFC_SERVER_FINAL.to_vec();
        msg.extend_from_slice(b",x=ext");
        c.finish(&msg).unwrap();
    }

    #[test]
    fn invalid_client_nonce() {
        for bad in ["", "a,b", "a b", "é"] {
            let e = ScramClient::new("p", ChannelBinding::NotSupported)
                .with_nonce(bad)
                .unwrap_err();
            assert_eq!(e, AuthError::InvalidNonce);
            assert!(!e.is_server_misbehaviour());
        }
    }

    #[test]
    fn random_nonce_is_fresh_and_long() {
        let a = ScramClient::new("p", ChannelBinding::NotSupported);
        let b = ScramClient::new("p", ChannelBinding::NotSupported);
        assert_ne!(a.initial_message(), b.initial_message());
        let nonce = a.initial_message().strip_prefix(b"n,,n=,r=").unwrap();
        assert_eq!(nonce.len(), 24);
        assert!(valid_nonce(std::str::from_utf8(nonce).unwrap()));
    }

    #[test]
    fn channel_binding_round_trip() {
        let hash: Vec<u8> = (0u8..32).collect();
        let c = ScramClient::new("pencil", ChannelBinding::TlsServerEndPoint(hash.clone()))
            .with_nonce(RFC_NONCE)
            .unwrap();
        assert_eq!(c.mechanism(), Mechanism::ScramSha256Plus);
        assert_eq!(
            c.initial_message(),
            b"p=tls-server-end-point,,n=,r=rOprNGfwEbeRWgbNEkqO"
        );
        let c = c.update(RFC_SERVER_FIRST).unwrap();
        let msg = std::str::from_utf8(c.client_final_message()).unwrap();
        let c_attr = msg.split(',').next().unwrap().strip_prefix("c=").unwrap();
        let decoded = B64.decode(c_attr).unwrap();
        let (header, data) = decoded.split_at(b"p=tls-server-end-point,,".len());
        assert_eq!(header, b"p=tls-server-end-point,,");
        assert_eq!(data, hash.as_slice());

        let y = ScramClient::new("pencil", ChannelBinding::NotOfferedByServer)
            .with_nonce(RFC_NONCE)
            .unwrap();
        assert_eq!(y.initial_message(), b"y,,n=,r=rOprNGfwEbeRWgbNEkqO");
        let y = y.update(RFC_SERVER_FIRST).unwrap();
        assert!(y.client_final_message().starts_with(b"c=eSws,r=")); // base64("y,,")
    }

    #[test]
    fn username_escaping() {
        let c = ScramClient::new("p", ChannelBinding::NotSupported)
            .with_username("a=b,c")
            .with_nonce("N")
            .unwrap();
        assert_eq!(c.initial_message(), b"n,,n=a=3Db=2Cc,r=N");
    }

    #[test]
    fn saslprep_cases() {
        // ASCII passes unchanged.
        assert_eq!(saslprep_password(b"pencil").as_slice(), b"pencil");
        // Non-ASCII space (U+00A0) maps to SPACE (RFC 4013 §2.1).
        assert_eq!(
            saslprep_password("a\u{00A0}b".as_bytes()).as_slice(),
            b"a b"
        );
        // Soft hyphen (U+00AD) is mapped to nothing.
        assert_eq!(saslprep_password("I\u{00AD}X".as_bytes()).as_slice(), b"IX");
        // NFKC: U+2168 ROMAN NUMERAL NINE becomes "IX".
        assert_eq!(saslprep_password("\u{2168}".as_bytes()).as_slice(), b"IX");
        // Prohibited character (U+0007 BEL): raw bytes are used, as PostgreSQL does.
        assert_eq!(saslprep_password(b"a\x07b").as_slice(), b"a\x07b");
        // Invalid UTF-8: raw bytes.
        assert_eq!(saslprep_password(b"\xff\xfe").as_slice(), b"\xff\xfe");
        // Equivalent passwords give the same proof.
        let a = ScramClient::new("I\u{00AD}X", ChannelBinding::NotSupported)
            .with_nonce(RFC_NONCE)
            .unwrap()
            .update(RFC_SERVER_FIRST)
            .unwrap();
        let b = ScramClient::new("IX", ChannelBinding::NotSupported)
            .with_nonce(RFC_NONCE)
            .unwrap()
            .update(RFC_SERVER_FIRST)
            .unwrap();
        assert_eq!(a.client_final_message(), b.client_final_message());
    }

    #[test]
    fn negotiate_constructor() {
        let c = ScramClient::negotiate(
            "p",
            &["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"],
            Some(&[1u8; 32]),
            ChannelBindingPolicy::Prefer,
        )
        .unwrap();
        assert_eq!(c.mechanism(), Mechanism::ScramSha256Plus);
        assert!(c.initial_message().starts_with(b"p=tls-server-end-point,,"));
    }

    #[test]
    fn debug_does_not_leak_password() {
        let c = ScramClient::new("hunter2", ChannelBinding::NotSupported);
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
