//! The password file, `~/.pgpass` (or `passfile` / `PGPASSFILE`), read like libpq.
//!
//! Each line is `hostname:port:database:username:password`. A field of just `*` matches
//! anything; `\:` and `\\` stand for a colon and a backslash (in the password too). Lines
//! starting with `#` and lines with fewer than five fields are skipped; the first matching
//! line wins. On Unix the file is ignored, with a [`PassFileWarning`] for the caller to log,
//! if it is not a regular file or if its permissions give the group or others any access.
//!
//! See the PostgreSQL documentation, "The Password File" (`libpq-pgpass`).

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use walstream_auth::Password;
use zeroize::Zeroizing;

/// A parsed password file. `Debug` never shows the passwords.
#[derive(Clone, Default)]
pub struct PassFile {
    entries: Vec<Entry>,
}

#[derive(Clone)]
struct Entry {
    host: Field,
    port: Field,
    database: Field,
    user: Field,
    password: Password,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Field {
    Any,
    Exact(String),
}

impl Field {
    fn matches(&self, value: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Exact(s) => s == value,
        }
    }
}

impl fmt::Debug for PassFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PassFile")
            .field("entries", &self.entries.len())
            .finish()
    }
}

/// Why a password file was not used. Display gives libpq's warning text.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PassFileWarning {
    /// The path exists but is not a regular file.
    NotAPlainFile {
        /// The password file path.
        path: PathBuf,
    },
    /// The file is readable or writable by the group or others (`mode & 0o077 != 0`).
    InsecurePermissions {
        /// The password file path.
        path: PathBuf,
        /// The file's permission bits.
        mode: u32,
    },
    /// The file exists but could not be read.
    Unreadable {
        /// The password file path.
        path: PathBuf,
        /// The I/O error, as text.
        reason: String,
    },
}

impl fmt::Display for PassFileWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotAPlainFile { path } => {
                write!(
                    f,
                    "password file \"{}\" is not a plain file",
                    path.display()
                )
            }
            Self::InsecurePermissions { path, mode } => write!(
                f,
                "password file \"{}\" has group or world access (mode {mode:04o}); permissions \
                 should be u=rw (0600) or less",
                path.display()
            ),
            Self::Unreadable { path, reason } => {
                write!(
                    f,
                    "could not read password file \"{}\": {reason}",
                    path.display()
                )
            }
        }
    }
}

impl PassFile {
    /// Parses the text of a password file. Malformed lines are skipped, as libpq does.
    #[must_use]
    pub fn parse(text: &str) -> Self {
        let entries = text
            .lines()
            .map(|l| l.strip_suffix('\r').unwrap_or(l))
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .filter_map(parse_line)
            .collect();
        Self { entries }
    }

    /// Reads the password file at `path`.
    ///
    /// Returns `Ok(None)` if there is no file (the normal case), `Err` with the warning to
    /// log if the file exists but must be ignored.
    ///
    /// # Errors
    ///
    /// [`PassFileWarning`] when the path is not a regular file, has group/world permissions
    /// (Unix), or cannot be read.
    pub fn load(path: &Path) -> Result<Option<Self>, PassFileWarning> {
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(PassFileWarning::Unreadable {
                    path: path.to_owned(),
                    reason: e.to_string(),
                });
            }
        };
        if !meta.is_file() {
            return Err(PassFileWarning::NotAPlainFile {
                path: path.to_owned(),
            });
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = meta.permissions().mode() & 0o7777;
            if mode & 0o077 != 0 {
                return Err(PassFileWarning::InsecurePermissions {
                    path: path.to_owned(),
                    mode,
                });
            }
        }
        let unreadable = |e: std::io::Error| PassFileWarning::Unreadable {
            path: path.to_owned(),
            reason: e.to_string(),
        };
        let mut file = std::fs::File::open(path).map_err(unreadable)?;
        // Size the buffer up front so reading does not leave reallocated, unwiped copies.
        let capacity = usize::try_from(meta.len()).unwrap_or(0).saturating_add(1);
        let mut text = Zeroizing::new(String::with_capacity(capacity));
        file.read_to_string(&mut text).map_err(unreadable)?;
        Ok(Some(Self::parse(&text)))
    }

    /// The password of the first entry matching all four values.
    #[must_use]
    pub fn find(&self, host: &str, port: &str, database: &str, user: &str) -> Option<Password> {
        self.entries
            .iter()
            .find(|e| {
                e.host.matches(host)
                    && e.port.matches(port)
                    && e.database.matches(database)
                    && e.user.matches(user)
            })
            .map(|e| e.password.clone())
    }

    /// Number of well-formed entries.
    #[must_use]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the file has no well-formed entries.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Splits one line into its five fields; `None` if it has fewer than four separators.
fn parse_line(line: &str) -> Option<Entry> {
    let mut rest = line;
    let mut fields: [Option<Field>; 4] = Default::default();
    for slot in &mut fields {
        let (field, after) = take_field(rest)?;
        *slot = Some(field);
        rest = after;
    }
    let [Some(host), Some(port), Some(database), Some(user)] = fields else {
        return None;
    };
    // The password runs to the next unescaped ':' or the end of the line.
    let mut password = Zeroizing::new(String::new());
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        match c {
            ':' => break,
            '\\' => match chars.next() {
                Some(escaped) => password.push(escaped),
                None => password.push('\\'),
            },
            c => password.push(c),
        }
    }
    Some(Entry {
        host,
        port,
        database,
        user,
        password: Password::from(password.as_str()),
    })
}

/// One of the first four fields, which must end with an unescaped `:`.
fn take_field(s: &str) -> Option<(Field, &str)> {
    if let Some(after) = s.strip_prefix("*:") {
        return Some((Field::Any, after));
    }
    let mut value = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            ':' => return Some((Field::Exact(value), &s[i + 1..])),
            '\\' => {
                let (_, escaped) = chars.next()?;
                value.push(escaped);
            }
            c => value.push(c),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pw(p: Option<Password>) -> Option<String> {
        p.map(|p| String::from_utf8(p.as_bytes().to_vec()).unwrap())
    }

    #[test]
    fn matching_table() {
        let file = PassFile::parse(
            "# comment line\n\
             \n\
             db.example.com:5432:app:alice:first\r\n\
             db.example.com:*:*:alice:second\n\
             *:5433:*:*:wild5433\n\
             host\\:with\\:colons:5432:d\\\\b:bob:pa\\:ss\\\\word\n\
             \\*:5432:*:carol:literal-star\n\
             localhost:5432:*:dave:local\n\
             too:few:fields\n\
             short:1:2:3\n\
             *:*:*:*:fallback:ignored-after-colon\n",
        );
        assert_eq!(file.len(), 7);
        let cases: &[(&str, &str, &str, &str, Option<&str>)] = &[
            ("db.example.com", "5432", "app", "alice", Some("first")),
            ("db.example.com", "5432", "other", "alice", Some("second")),
            ("db.example.com", "6000", "app", "alice", Some("second")),
            ("db.example.com", "5433", "app", "alice", Some("second")),
            ("elsewhere", "5433", "x", "y", Some("wild5433")),
            (
                "host:with:colons",
                "5432",
                "d\\b",
                "bob",
                Some("pa:ss\\word"),
            ),
            ("host:with:colons", "5432", "db", "bob", Some("fallback")),
            ("*", "5432", "x", "carol", Some("literal-star")),
            ("other", "5432", "x", "carol", Some("fallback")),
            ("localhost", "5432", "x", "dave", Some("local")),
            ("DB.EXAMPLE.COM", "5432", "app", "alice", Some("fallback")),
        ];
        for &(h, p, d, u, want) in cases {
            assert_eq!(
                pw(file.find(h, p, d, u)).as_deref(),
                want,
                "{h}:{p}:{d}:{u}"
            );
        }
        let strict = PassFile::parse("a:1:b:c:secret\n");
        assert_eq!(
            pw(strict.find("a", "1", "b", "c")).as_deref(),
            Some("secret")
        );
        assert_eq!(strict.find("a", "1", "b", "d"), None);
        assert_eq!(strict.find("a", "2", "b", "c"), None);
    }

    #[test]
    fn empty_password_and_trailing_backslash() {
        let file = PassFile::parse("h:1:d:u:\nh:2:d:u:ends\\\n");
        assert_eq!(pw(file.find("h", "1", "d", "u")).as_deref(), Some(""));
        assert_eq!(pw(file.find("h", "2", "d", "u")).as_deref(), Some("ends\\"));
    }

    #[test]
    fn debug_hides_passwords() {
        let file = PassFile::parse("h:1:d:u:hunter2-secret\n");
        assert!(!format!("{file:?}").contains("hunter2"));
    }

    #[test]
    fn load_checks_file_and_permissions() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pgpass");
        assert!(matches!(PassFile::load(&path), Ok(None)));
        std::fs::write(&path, "h:1:d:u:pw\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let file = PassFile::load(&path).unwrap().unwrap();
        assert_eq!(pw(file.find("h", "1", "d", "u")).as_deref(), Some("pw"));
        for mode in [0o640, 0o604, 0o660, 0o644, 0o610] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let warning = PassFile::load(&path).unwrap_err();
            assert_eq!(
                warning,
                PassFileWarning::InsecurePermissions {
                    path: path.clone(),
                    mode
                }
            );
            assert!(
                warning.to_string().contains("group or world access"),
                "{warning}"
            );
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
        assert!(PassFile::load(&path).unwrap().is_some());
        let warning = PassFile::load(dir.path()).unwrap_err();
        assert!(
            matches!(warning, PassFileWarning::NotAPlainFile { .. }),
            "{warning:?}"
        );
    }
}
