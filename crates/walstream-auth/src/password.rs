//! Cleartext and MD5 password authentication.

use std::fmt;

use md5::{Digest, Md5};
use zeroize::Zeroizing;

/// A password, wiped from memory when dropped; its `Debug` output is redacted.
///
/// For `AuthenticationCleartextPassword` the bytes of [`Password::as_bytes`] are sent as is
/// (the connection layer adds the message framing and the terminating NUL).
#[derive(Clone, PartialEq, Eq)]
pub struct Password(Zeroizing<Vec<u8>>);

impl Password {
    /// Wraps the password bytes.
    #[must_use]
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Self(Zeroizing::new(bytes.into()))
    }

    /// The raw password bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The response to `AuthenticationMD5Password`; see [`md5_response`].
    #[must_use]
    pub fn md5_response(&self, user: &[u8], salt: [u8; 4]) -> String {
        md5_response(user, self.as_bytes(), salt)
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

impl From<&str> for Password {
    fn from(s: &str) -> Self {
        Self::new(s.as_bytes())
    }
}

impl From<String> for Password {
    fn from(s: String) -> Self {
        Self::new(s.into_bytes())
    }
}

impl From<Vec<u8>> for Password {
    fn from(bytes: Vec<u8>) -> Self {
        Self::new(bytes)
    }
}

impl AsRef<[u8]> for Password {
    fn as_ref(&self) -> &[u8] {
        self.as_bytes()
    }
}

/// Computes the response to `AuthenticationMD5Password`:
/// `"md5" + hex(md5(hex(md5(password + user)) + salt))`.
///
/// See the PostgreSQL documentation, "Password Authentication" (`auth-password`).
#[must_use]
pub fn md5_response(user: &[u8], password: &[u8], salt: [u8; 4]) -> String {
    let mut inner = Md5::new();
    inner.update(password);
    inner.update(user);
    let inner_hex = Zeroizing::new(hex(&inner.finalize()));

    let mut outer = Md5::new();
    outer.update(inner_hex.as_bytes());
    outer.update(salt);
    let mut out = String::with_capacity(35);
    out.push_str("md5");
    out.push_str(&hex(&outer.finalize()));
    out
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5_known_answer() {
        // Computed independently:
        // python3 -c "import hashlib; i=hashlib.md5(b'secret'+b'alice').hexdigest();
        //   print('md5'+hashlib.md5(i.encode()+bytes([1,2,3,4])).hexdigest())"
        assert_eq!(
            md5_response(b"alice", b"secret", [1, 2, 3, 4]),
            "md598a0412b9c31436fc53776e863350083"
        );
    }

    #[test]
    fn md5_accepted_by_postgres15() {
        // Recorded: PostgreSQL 15 sent AuthenticationMD5Password with this salt to role
        // `md5user` (password `secret`) and answered AuthenticationOk to this response.
        // pg_authid.rolpassword was md52aea419619857e8a27f0f7aa641db0c6.
        assert_eq!(
            md5_response(b"md5user", b"secret", [145, 45, 74, 251]),
            "md51a233daf128f688ba93e11777cbb7ed8"
        );
    }

    #[test]
    fn md5_via_password_type() {
        let p = Password::from("secret");
        assert_eq!(
            p.md5_response(b"alice", [1, 2, 3, 4]),
            md5_response(b"alice", b"secret", [1, 2, 3, 4])
        );
        assert_ne!(
            p.md5_response(b"alice", [1, 2, 3, 5]),
            p.md5_response(b"alice", [1, 2, 3, 4])
        );
    }

    #[test]
    fn password_debug_is_redacted() {
        let p = Password::from("hunter2");
        assert_eq!(format!("{p:?}"), "Password(<redacted>)");
        assert_eq!(p.as_bytes(), b"hunter2");
    }
}
