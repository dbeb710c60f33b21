//! `inet`, `cidr`, `macaddr` and `macaddr8`.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::text::{bad, trim};
use crate::cursor::Cursor;
use crate::error::DecodeError;

/// PostgreSQL's on-the-wire family codes (`PGSQL_AF_INET`, `PGSQL_AF_INET6`).
const PGSQL_AF_INET: u8 = 2;
const PGSQL_AF_INET6: u8 = 3;

/// An `inet` or `cidr` value: an address and a netmask length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PgInet {
    addr: IpAddr,
    netmask: u8,
}

impl PgInet {
    /// An address with a netmask length (at most 32 for IPv4, 128 for IPv6).
    pub fn new(addr: IpAddr, netmask: u8) -> Option<Self> {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        (netmask <= max).then_some(Self { addr, netmask })
    }

    /// The address.
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The netmask length in bits.
    pub fn netmask(&self) -> u8 {
        self.netmask
    }

    pub(crate) fn parse(data: &[u8], context: &'static str) -> Result<Self, DecodeError> {
        let t = trim(data);
        let s = std::str::from_utf8(t).map_err(|_| bad(context, 0, "invalid address"))?;
        let (a, m) = match s.split_once('/') {
            Some((a, m)) => (a, Some(m)),
            None => (s, None),
        };
        let addr: IpAddr = a.parse().map_err(|_| bad(context, 0, "invalid address"))?;
        let netmask = match m {
            None => {
                if addr.is_ipv4() {
                    32
                } else {
                    128
                }
            }
            Some(m) if !m.is_empty() && m.len() <= 3 && m.bytes().all(|b| b.is_ascii_digit()) => m
                .parse()
                .map_err(|_| bad(context, a.len() + 1, "invalid netmask"))?,
            Some(_) => return Err(bad(context, a.len() + 1, "invalid netmask")),
        };
        Self::new(addr, netmask).ok_or_else(|| bad(context, a.len() + 1, "netmask too long"))
    }

    pub(crate) fn from_binary(
        data: bytes::Bytes,
        context: &'static str,
    ) -> Result<Self, DecodeError> {
        let mut c = Cursor::new(data, context);
        let family = c.u8()?;
        let bits = c.u8()?;
        let _is_cidr = c.u8()?;
        let nb_at = c.offset();
        let nb = c.u8()?;
        let addr = match (family, nb) {
            (PGSQL_AF_INET, 4) => {
                let b = c.bytes(4)?;
                IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))
            }
            (PGSQL_AF_INET6, 16) => {
                let mut a = [0u8; 16];
                a.copy_from_slice(&c.bytes(16)?);
                IpAddr::V6(Ipv6Addr::from(a))
            }
            (PGSQL_AF_INET | PGSQL_AF_INET6, _) => {
                return Err(c.invalid(nb_at, "address length does not match the family"));
            }
            (other, _) => return Err(c.unknown_tag(other, 0)),
        };
        c.finish()?;
        Self::new(addr, bits).ok_or_else(|| c.invalid(1, "netmask too long"))
    }

    /// Writes PostgreSQL's text output; `cidr` always shows the netmask.
    pub(crate) fn fmt_pg(&self, cidr: bool, f: &mut impl fmt::Write) -> fmt::Result {
        let full = match self.addr {
            IpAddr::V4(a) => {
                let o = a.octets();
                write!(f, "{}.{}.{}.{}", o[0], o[1], o[2], o[3])?;
                32
            }
            IpAddr::V6(a) => {
                fmt_ipv6(&a.octets(), f)?;
                128
            }
        };
        if cidr || self.netmask != full {
            write!(f, "/{}", self.netmask)
        } else {
            Ok(())
        }
    }
}

/// `inet_net_ntop_ipv6`: the longest run (≥ 2) of zero words becomes `::`; an address that
/// starts with six zero words, or five and `ffff`, ends in dotted IPv4.
fn fmt_ipv6(b: &[u8; 16], f: &mut impl fmt::Write) -> fmt::Result {
    let mut words = [0u16; 8];
    for (i, w) in words.iter_mut().enumerate() {
        *w = u16::from_be_bytes([b[2 * i], b[2 * i + 1]]);
    }
    let (mut best_base, mut best_len) = (None::<usize>, 0usize);
    let mut cur: Option<(usize, usize)> = None;
    for (i, w) in words.iter().enumerate() {
        if *w == 0 {
            cur = Some(match cur {
                Some((base, len)) => (base, len + 1),
                None => (i, 1),
            });
        } else if let Some((base, len)) = cur.take() {
            if best_base.is_none() || len > best_len {
                (best_base, best_len) = (Some(base), len);
            }
        }
    }
    if let Some((base, len)) = cur {
        if best_base.is_none() || len > best_len {
            (best_base, best_len) = (Some(base), len);
        }
    }
    if best_len < 2 {
        best_base = None;
    }
    let mut i = 0;
    while i < 8 {
        if let Some(base) = best_base {
            if i >= base && i < base + best_len {
                if i == base {
                    f.write_char(':')?;
                }
                i += 1;
                continue;
            }
        }
        if i != 0 {
            f.write_char(':')?;
        }
        if i == 6
            && best_base == Some(0)
            && (best_len == 6 || (best_len == 5 && words[5] == 0xffff))
        {
            return write!(f, "{}.{}.{}.{}", b[12], b[13], b[14], b[15]);
        }
        write!(f, "{:x}", words[i])?;
        i += 1;
    }
    if let Some(base) = best_base {
        if base + best_len == 8 {
            f.write_char(':')?;
        }
    }
    Ok(())
}

/// A `macaddr` (EUI-48).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacAddr(pub [u8; 6]);

/// A `macaddr8` (EUI-64).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacAddr8(pub [u8; 8]);

fn fmt_mac(b: &[u8], f: &mut impl fmt::Write) -> fmt::Result {
    for (i, x) in b.iter().enumerate() {
        if i > 0 {
            f.write_char(':')?;
        }
        write!(f, "{x:02x}")?;
    }
    Ok(())
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_mac(&self.0, f)
    }
}

impl fmt::Display for MacAddr8 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_mac(&self.0, f)
    }
}

/// Parses `xx:xx:...` (or `-` separated) hexadecimal pairs.
pub(crate) fn parse_mac<const N: usize>(
    data: &[u8],
    context: &'static str,
) -> Result<[u8; N], DecodeError> {
    let t = trim(data);
    let mut out = [0u8; N];
    let mut parts = t.split(|b| *b == b':' || *b == b'-');
    for (i, slot) in out.iter_mut().enumerate() {
        let p = parts
            .next()
            .ok_or_else(|| bad(context, i * 3, "too few octets"))?;
        let s = std::str::from_utf8(p).map_err(|_| bad(context, i * 3, "invalid octet"))?;
        if s.len() != 2 {
            return Err(bad(context, i * 3, "invalid octet"));
        }
        *slot = u8::from_str_radix(s, 16).map_err(|_| bad(context, i * 3, "invalid octet"))?;
    }
    if parts.next().is_some() {
        return Err(bad(context, N * 3, "too many octets"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn show(s: &str, cidr: bool) -> String {
        let mut out = String::new();
        PgInet::parse(s.as_bytes(), "t")
            .unwrap()
            .fmt_pg(cidr, &mut out)
            .unwrap();
        out
    }

    #[test]
    fn inet_text() {
        assert_eq!(show("192.168.0.1", false), "192.168.0.1");
        assert_eq!(show("192.168.0.1/24", false), "192.168.0.1/24");
        assert_eq!(show("10.0.0.0/32", true), "10.0.0.0/32");
        assert_eq!(show("::1", false), "::1");
        assert_eq!(show("::", false), "::");
        assert_eq!(show("::2", false), "::2");
        assert_eq!(show("2001:db8::/32", true), "2001:db8::/32");
        assert_eq!(show("::ffff:1.2.3.4", false), "::ffff:1.2.3.4");
        assert_eq!(show("::1.2.3.4", false), "::1.2.3.4");
        assert_eq!(show("1:0:0:2:0:0:0:3", false), "1:0:0:2::3");
        assert_eq!(show("1:0:2:3:4:5:6:7", false), "1:0:2:3:4:5:6:7");
        assert_eq!(show("fe80::1:0:0", false), "fe80::1:0:0");
        assert_eq!(show("1::", false), "1::");
        for bad in [
            "1.2.3",
            "1.2.3.4/33",
            "::/129",
            "x",
            "1.2.3.4/",
            "1.2.3.4/-1",
            "1.2.3.4/+1",
        ] {
            assert!(PgInet::parse(bad.as_bytes(), "t").is_err(), "{bad}");
        }
    }

    #[test]
    fn inet_binary() {
        let v4 = PgInet::from_binary(
            bytes::Bytes::from_static(&[2, 24, 0, 4, 192, 168, 0, 1]),
            "t",
        )
        .unwrap();
        assert_eq!(v4, PgInet::parse(b"192.168.0.1/24", "t").unwrap());
        let mut v6 = vec![3, 128, 0, 16];
        v6.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        assert_eq!(
            PgInet::from_binary(v6.into(), "t").unwrap(),
            PgInet::parse(b"::1", "t").unwrap()
        );
        for bad in [
            &[2u8, 33, 0, 4, 1, 2, 3, 4][..],
            &[2, 8, 0, 16, 1, 2, 3, 4],
            &[9, 8, 0, 4, 1, 2, 3, 4],
            &[2, 8, 0, 4, 1, 2, 3],
            &[2, 8, 0, 4, 1, 2, 3, 4, 5],
        ] {
            assert!(
                PgInet::from_binary(bytes::Bytes::copy_from_slice(bad), "t").is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn macs() {
        let m: [u8; 6] = parse_mac(b"08:00:2b:01:02:03", "t").unwrap();
        assert_eq!(MacAddr(m).to_string(), "08:00:2b:01:02:03");
        let m: [u8; 8] = parse_mac(b"08-00-2B-01-02-03-04-05", "t").unwrap();
        assert_eq!(MacAddr8(m).to_string(), "08:00:2b:01:02:03:04:05");
        assert!(parse_mac::<6>(b"08:00:2b:01:02", "t").is_err());
        assert!(parse_mac::<6>(b"08:00:2b:01:02:03:04", "t").is_err());
        assert!(parse_mac::<6>(b"08:00:2b:01:02:0g", "t").is_err());
    }
}
