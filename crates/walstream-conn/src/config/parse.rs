//! The two textual forms of a libpq connection string: `key=value` pairs and
//! `postgresql://` URIs. Both produce a list of `(key, value)` pairs that
//! [`Config::param`](super::Config::param) then applies in order, so a later pair wins.
//!
//! See the PostgreSQL documentation, "Connection Strings" (`libpq-connect`, section
//! `LIBPQ-CONNSTRING`).

use super::ConfigError;

/// The URI prefixes libpq recognises (case-sensitive, like libpq).
const URI_PREFIXES: [&str; 2] = ["postgresql://", "postgres://"];

/// The part after the scheme if `s` is a connection URI.
pub(super) fn strip_uri_prefix(s: &str) -> Option<&str> {
    URI_PREFIXES.iter().find_map(|p| s.strip_prefix(p))
}

/// C's `isspace` in the "C" locale: space, `\t`, `\n`, `\v`, `\f`, `\r`.
const fn is_c_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\u{0b}' | '\u{0c}' | '\r')
}

/// Parses `key = value key2='quoted \' value'` like libpq's `conninfo_parse`.
///
/// Whitespace separates pairs and may surround `=`. A value is either single-quoted (a
/// backslash escapes the next character, so `\'` and `\\`) or runs to the next whitespace
/// (where a backslash also escapes the next character). Errors never quote a value.
pub(super) fn parse_key_value(s: &str) -> Result<Vec<(String, String)>, ConfigError> {
    let mut out = Vec::new();
    let mut it = s.char_indices().peekable();
    loop {
        while it.next_if(|&(_, c)| is_c_space(c)).is_some() {}
        let Some(&(key_start, _)) = it.peek() else {
            break;
        };
        // Keyword: up to '=' or whitespace.
        let mut key = String::new();
        while let Some(&(_, c)) = it.peek() {
            if c == '=' || is_c_space(c) {
                break;
            }
            key.push(c);
            it.next();
        }
        while it.next_if(|&(_, c)| is_c_space(c)).is_some() {}
        if it.next_if(|&(_, c)| c == '=').is_none() {
            return Err(ConfigError::InvalidSyntax {
                offset: key_start,
                reason: "missing \"=\" after keyword in connection info string".into(),
            });
        }
        while it.next_if(|&(_, c)| is_c_space(c)).is_some() {}
        let mut value = String::new();
        if let Some((quote_at, _)) = it.next_if(|&(_, c)| c == '\'') {
            loop {
                match it.next() {
                    None => {
                        return Err(ConfigError::InvalidSyntax {
                            offset: quote_at,
                            reason: "unterminated quoted string in connection info string".into(),
                        });
                    }
                    Some((_, '\\')) => {
                        if let Some((_, c)) = it.next() {
                            value.push(c);
                        }
                    }
                    Some((_, '\'')) => break,
                    Some((_, c)) => value.push(c),
                }
            }
        } else {
            while let Some((_, c)) = it.next() {
                if is_c_space(c) {
                    break;
                }
                if c == '\\' {
                    if let Some((_, escaped)) = it.next() {
                        value.push(escaped);
                    }
                } else {
                    value.push(c);
                }
            }
        }
        out.push((key, value));
    }
    Ok(out)
}

/// Parses the part of a URI after `postgresql://` like libpq's `conninfo_uri_parse_options`:
///
/// `[user[:password]@][host][:port][,...][/dbname][?param1=value1&...]`
///
/// Every component is percent-decoded; a host in brackets is an IPv6 address; a host
/// that decodes to an absolute path (`%2Ftmp`) is a Unix-socket directory. The query
/// parameter `ssl=true` means `sslmode=require`, as in libpq. Errors name the component but
/// never quote user information.
pub(super) fn parse_uri(rest: &str) -> Result<Vec<(String, String)>, ConfigError> {
    let mut out = Vec::new();
    let mut s = rest;

    // User information: everything before an '@' that comes before any '/' or '?'.
    if let Some(at) = s
        .find(['@', '/', '?'])
        .filter(|&i| s.as_bytes().get(i) == Some(&b'@'))
    {
        let userinfo = &s[..at];
        s = &s[at + 1..];
        let (user, password) = match userinfo.split_once(':') {
            Some((u, p)) => (u, Some(p)),
            None => (userinfo, None),
        };
        if !user.is_empty() {
            out.push(("user".to_owned(), decode(user, "user name")?));
        }
        if let Some(p) = password {
            out.push(("password".to_owned(), decode(p, "password")?));
        }
    }

    // Host list.
    let mut hosts: Vec<String> = Vec::new();
    let mut ports: Vec<String> = Vec::new();
    let mut any_port = false;
    loop {
        let host_raw;
        if let Some(after) = s.strip_prefix('[') {
            let Some(end) = after.find(']') else {
                return Err(ConfigError::InvalidUrl {
                    reason: "end of string reached when looking for matching \"]\" in IPv6 host \
                             address"
                        .into(),
                });
            };
            host_raw = &after[..end];
            if host_raw.is_empty() {
                return Err(ConfigError::InvalidUrl {
                    reason: "IPv6 host address may not be empty".into(),
                });
            }
            s = &after[end + 1..];
            if let Some(c) = s
                .chars()
                .next()
                .filter(|c| !matches!(c, ':' | '/' | '?' | ','))
            {
                return Err(ConfigError::InvalidUrl {
                    reason: format!(
                        "unexpected character {c:?} after IPv6 host address (expected \":\", \
                         \",\", \"/\" or \"?\")"
                    ),
                });
            }
        } else {
            let end = s.find([':', '/', '?', ',']).unwrap_or(s.len());
            host_raw = &s[..end];
            s = &s[end..];
        }
        hosts.push(decode(host_raw, "host")?);
        if let Some(after) = s.strip_prefix(':') {
            let end = after.find(['/', '?', ',']).unwrap_or(after.len());
            ports.push(decode(&after[..end], "port")?);
            any_port = true;
            s = &after[end..];
        } else {
            ports.push(String::new());
        }
        match s.strip_prefix(',') {
            Some(after) => s = after,
            None => break,
        }
    }
    let host_list = hosts.join(",");
    if !host_list.is_empty() {
        out.push(("host".to_owned(), host_list));
    }
    if any_port {
        out.push(("port".to_owned(), ports.join(",")));
    }

    // Database name.
    if let Some(after) = s.strip_prefix('/') {
        let end = after.find('?').unwrap_or(after.len());
        let db = decode(&after[..end], "database name")?;
        if !db.is_empty() {
            out.push(("dbname".to_owned(), db));
        }
        s = &after[end..];
    }

    // Query parameters.
    if let Some(query) = s.strip_prefix('?') {
        if !query.is_empty() {
            for param in query.split('&') {
                let Some((k, v)) = param.split_once('=') else {
                    return Err(ConfigError::InvalidUrl {
                        reason: "missing key/value separator \"=\" in URI query parameter".into(),
                    });
                };
                if v.contains('=') {
                    return Err(ConfigError::InvalidUrl {
                        reason: "extra key/value separator \"=\" in URI query parameter".into(),
                    });
                }
                let key = decode(k, "query parameter name")?;
                let value = decode(v, "query parameter value")?;
                if key == "ssl" && value == "true" {
                    out.push(("sslmode".to_owned(), "require".to_owned()));
                } else {
                    out.push((key, value));
                }
            }
        }
    } else if !s.is_empty() {
        // Only reachable when the host list ended on something unexpected.
        return Err(ConfigError::InvalidUrl {
            reason: "unexpected characters after the host list".into(),
        });
    }
    Ok(out)
}

/// Percent-decodes one URI component. `%00` is refused (it cannot be sent to the server),
/// and so is a result that is not UTF-8. `what` names the component in errors; the text
/// itself is never quoted, since it may be a password.
fn decode(s: &str, what: &str) -> Result<String, ConfigError> {
    if !s.contains('%') {
        return Ok(s.to_owned());
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = |at: usize| bytes.get(at).and_then(|&h| char::from(h).to_digit(16));
            let (Some(hi), Some(lo)) = (hex(i + 1), hex(i + 2)) else {
                return Err(ConfigError::InvalidUrl {
                    reason: format!("invalid percent-encoded token in {what}"),
                });
            };
            let byte = u8::try_from(hi * 16 + lo).map_err(|_| ConfigError::InvalidUrl {
                reason: format!("invalid percent-encoded token in {what}"),
            })?;
            if byte == 0 {
                return Err(ConfigError::InvalidUrl {
                    reason: format!("forbidden value %00 in percent-encoded {what}"),
                });
            }
            out.push(byte);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| ConfigError::InvalidUrl {
        reason: format!("percent-encoded {what} is not valid UTF-8"),
    })
}
