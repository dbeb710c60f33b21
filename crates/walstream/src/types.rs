//! Resolving user-defined types (enums, domains, arrays, ranges, multiranges) from the server's
//! catalog, for [`LogicalStream`](crate::LogicalStream)'s automatic type resolution.
//!
//! `pgoutput` names a non-built-in type in a Type message (namespace and name only) and lists
//! its OID in Relation messages; what the type *is* lives in `pg_type` and `pg_range`. The
//! [`TypeResolver`] asks for it over an ordinary (non-replication) connection made from the
//! stream's [`Config`], opened when first needed, reused, and closed with the stream, and turns
//! the rows into [`TypeKind`]s for the decoder's [`TypeRegistry`](walstream_proto::TypeRegistry).
//!
//! The catalog query is pure text over OIDs (no user input reaches the SQL); the mapping from
//! catalog rows to kinds is sans-IO and unit-tested ([`kinds_from_rows`]).
use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use walstream_conn::{Client, Config, ReplicationMode};
use walstream_proto::{Oid, TypeKind, TypeRegistry, builtin_type_oids};

use crate::error::{Error, ErrorKind};

/// How long one lookup (connecting included) may take before it is given up.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(30);

/// How many rounds of "the types these types refer to" a lookup follows (domains over domains,
/// arrays of ranges over domains, ...).
const MAX_ROUNDS: usize = 16;

/// How many failures [`TypeResolver::failures`] keeps (the oldest are dropped).
const MAX_FAILURES: usize = 32;

/// A type lookup that failed: the stream went on, and values of these types are decoded as
/// [`Value::Unknown`](walstream_proto::Value::Unknown) until a later Relation or Type message
/// names them again and a lookup succeeds.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TypeLookupFailure {
    /// The type OIDs that were being looked up.
    pub oids: Vec<Oid>,
    /// The kind of the error.
    pub kind: ErrorKind,
    /// The error, as text.
    pub message: String,
}

/// One `pg_type` row (with its `pg_range` facts) as the lookup query returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CatalogType {
    pub(crate) oid: Oid,
    /// `typtype`: `b` base, `c` composite, `d` domain, `e` enum, `p` pseudo, `r` range,
    /// `m` multirange.
    pub(crate) typtype: u8,
    pub(crate) basetype: Oid,
    pub(crate) elem: Oid,
    pub(crate) array: Oid,
    /// `typdelim`: the array element delimiter of this type.
    pub(crate) delim: u8,
    /// True when `typsubscript` is `array_subscript_handler`: a true array type.
    pub(crate) is_array: bool,
    /// `pg_range.rngsubtype` (ranges).
    pub(crate) range_subtype: Oid,
    /// `pg_range.rngmultitypid` (ranges).
    pub(crate) range_multi: Oid,
    /// The range of a multirange.
    pub(crate) multi_range: Oid,
}

/// What the catalog rows say, as registry entries; OIDs the rows refer to that are neither
/// built in, nor in `known`, nor described by the rows are returned too (look them up next).
pub(crate) fn kinds_from_rows(
    rows: &[CatalogType],
    known: &dyn Fn(Oid) -> bool,
) -> (Vec<(Oid, TypeKind)>, BTreeSet<Oid>) {
    let by_oid: HashMap<Oid, &CatalogType> = rows.iter().map(|r| (r.oid, r)).collect();
    let mut out = Vec::new();
    let mut refs = Vec::new();
    for r in rows {
        let kind = match r.typtype {
            b'e' => Some(TypeKind::Enum),
            b'd' if r.basetype.0 != 0 => Some(TypeKind::Domain { base: r.basetype }),
            b'r' if r.range_subtype.0 != 0 => Some(TypeKind::Range {
                subtype: r.range_subtype,
            }),
            b'm' if r.multi_range.0 != 0 => Some(TypeKind::Multirange {
                range: r.multi_range,
            }),
            // Arrays whose elements are separated by commas (the only delimiter the array
            // decoder reads; `box` uses `;`). The delimiter is the element type's.
            b'b' if r.is_array && r.elem.0 != 0 => {
                let delim = by_oid.get(&r.elem).map(|e| e.delim);
                if delim.is_none_or(|d| d == b',') {
                    Some(TypeKind::Array { element: r.elem })
                } else {
                    None
                }
            }
            // Composite types, base types of extensions (citext, hstore, ...) and pseudo-types
            // have no decoder: their values stay `Value::Unknown`.
            _ => None,
        };
        let Some(kind) = kind else { continue };
        match kind {
            TypeKind::Domain { base } => refs.push(base),
            TypeKind::Range { subtype } => refs.push(subtype),
            TypeKind::Multirange { range } => refs.push(range),
            TypeKind::Array { element } => refs.push(element),
            _ => {}
        }
        out.push((r.oid, kind));
        // The type's own array, when its elements are comma-delimited.
        if r.array.0 != 0 && r.delim == b',' && !by_oid.contains_key(&r.array) {
            out.push((r.array, TypeKind::Array { element: r.oid }));
        }
        // A range's multirange.
        if r.typtype == b'r' && r.range_multi.0 != 0 && !by_oid.contains_key(&r.range_multi) {
            out.push((r.range_multi, TypeKind::Multirange { range: r.oid }));
        }
    }
    let described: BTreeSet<Oid> = out.iter().map(|(o, _)| *o).collect();
    let missing = refs
        .into_iter()
        .filter(|o| o.0 != 0 && !is_builtin(*o) && !known(*o) && !described.contains(o))
        .filter(|o| !by_oid.contains_key(o))
        .collect();
    (out, missing)
}

/// True for the types walstream-proto decodes without a registry.
pub(crate) fn is_builtin(oid: Oid) -> bool {
    builtin_type_oids().contains(&oid)
}

/// The catalog query for `oids` (numbers only: nothing from the peer is quoted into SQL).
fn lookup_sql(oids: &BTreeSet<Oid>) -> String {
    let list = oids
        .iter()
        .map(|o| o.0.to_string())
        .collect::<Vec<_>>()
        .join(",");
    // The element types of arrays are fetched alongside (their delimiter decides whether
    // the array is decodable).
    format!(
        "WITH wanted(oid) AS (SELECT unnest('{{{list}}}'::oid[])), \
         rows AS (SELECT oid FROM wanted \
                  UNION SELECT t.typelem FROM pg_catalog.pg_type t JOIN wanted w ON w.oid = t.oid \
                  WHERE t.typelem <> 0) \
         SELECT t.oid, t.typtype, t.typbasetype, t.typelem, t.typarray, t.typdelim, \
                (t.typsubscript = 'pg_catalog.array_subscript_handler'::pg_catalog.regproc), \
                coalesce(r.rngsubtype, 0), coalesce(r.rngmultitypid, 0), coalesce(m.rngtypid, 0) \
         FROM pg_catalog.pg_type t JOIN rows ON rows.oid = t.oid \
         LEFT JOIN pg_catalog.pg_range r ON r.rngtypid = t.oid \
         LEFT JOIN pg_catalog.pg_range m ON m.rngmultitypid = t.oid"
    )
}

fn parse_row(row: &walstream_conn::Row) -> Result<CatalogType, Error> {
    let bad = |what: &str| Error::protocol(format!("type lookup: unexpected {what} in pg_type"));
    let oid = |i: usize, what: &str| -> Result<Oid, Error> {
        row.get(i)
            .and_then(|s| s.parse::<u32>().ok())
            .map(Oid)
            .ok_or_else(|| bad(what))
    };
    let byte = |i: usize, what: &str| -> Result<u8, Error> {
        row.get(i)
            .and_then(|s| s.as_bytes().first().copied())
            .ok_or_else(|| bad(what))
    };
    Ok(CatalogType {
        oid: oid(0, "oid")?,
        typtype: byte(1, "typtype")?,
        basetype: oid(2, "typbasetype")?,
        elem: oid(3, "typelem")?,
        array: oid(4, "typarray")?,
        delim: byte(5, "typdelim")?,
        is_array: row.get(6) == Some("t"),
        range_subtype: oid(7, "rngsubtype")?,
        range_multi: oid(8, "rngmultitypid")?,
        multi_range: oid(9, "rngtypid")?,
    })
}

/// Looks types up over an ordinary connection, opened lazily and reused.
pub(crate) struct TypeResolver {
    config: Config,
    client: Option<Client>,
    failures: Vec<TypeLookupFailure>,
}

impl std::fmt::Debug for TypeResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TypeResolver")
            .field("connected", &self.client.is_some())
            .field("failures", &self.failures)
            .finish_non_exhaustive()
    }
}

impl TypeResolver {
    /// A resolver connecting with `config` (its replication mode is turned off).
    pub(crate) fn new(config: &Config) -> Self {
        let mut config = config.clone();
        config.set_replication(ReplicationMode::Off);
        Self {
            config,
            client: None,
            failures: Vec::new(),
        }
    }

    /// The failures so far (the most recent last).
    pub(crate) fn failures(&self) -> &[TypeLookupFailure] {
        &self.failures
    }

    /// Looks up `oids` and every non-built-in type they refer to that `known` (the registry)
    /// lacks. On failure the error is recorded (see [`failures`](Self::failures)) and what
    /// was resolved before it is still returned.
    pub(crate) async fn resolve(
        &mut self,
        oids: BTreeSet<Oid>,
        known: Option<&TypeRegistry>,
    ) -> Vec<(Oid, TypeKind)> {
        let mut found = Vec::new();
        let mut wanted = oids;
        for _ in 0..MAX_ROUNDS {
            if wanted.is_empty() {
                break;
            }
            let rows = match tokio::time::timeout(LOOKUP_TIMEOUT, self.query(&wanted)).await {
                Ok(Ok(rows)) => rows,
                Ok(Err(e)) => {
                    self.fail(&wanted, e.kind(), e.to_string());
                    break;
                }
                Err(_) => {
                    self.fail(
                        &wanted,
                        ErrorKind::Connection,
                        format!("type lookup timed out after {LOOKUP_TIMEOUT:?}"),
                    );
                    break;
                }
            };
            let seen: BTreeSet<Oid> = found.iter().map(|(o, _)| *o).collect();
            let known_now = |o: Oid| known.is_some_and(|t| t.get(o).is_some()) || seen.contains(&o);
            let (kinds, missing) = kinds_from_rows(&rows, &known_now);
            found.extend(kinds);
            wanted = missing;
        }
        found
    }

    fn fail(&mut self, oids: &BTreeSet<Oid>, kind: ErrorKind, message: String) {
        // A broken connection is not reused.
        self.client = None;
        if self.failures.len() == MAX_FAILURES {
            self.failures.remove(0);
        }
        self.failures.push(TypeLookupFailure {
            oids: oids.iter().copied().collect(),
            kind,
            message,
        });
    }

    async fn query(&mut self, oids: &BTreeSet<Oid>) -> Result<Vec<CatalogType>, Error> {
        let sql = lookup_sql(oids);
        // A reused connection may have been closed by the server meanwhile (idle timeout,
        // terminated backend, restart): on any failure it is replaced once.
        if let Some(client) = self.client.as_mut().filter(|c| c.is_usable()) {
            if let Ok(rows) = client.simple_query(&sql).await {
                return rows.iter().map(parse_row).collect();
            }
        }
        if let Some(old) = self.client.take() {
            old.close().await;
        }
        let mut client = Client::connect(&self.config).await?;
        let rows = client.simple_query(&sql).await;
        self.client = Some(client);
        rows?.iter().map(parse_row).collect()
    }

    /// Closes the connection, if open.
    pub(crate) async fn close(&mut self) {
        if let Some(c) = self.client.take() {
            c.close().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(oid: u32, typtype: u8) -> CatalogType {
        CatalogType {
            oid: Oid(oid),
            typtype,
            basetype: Oid(0),
            elem: Oid(0),
            array: Oid(0),
            delim: b',',
            is_array: false,
            range_subtype: Oid(0),
            range_multi: Oid(0),
            multi_range: Oid(0),
        }
    }

    #[test]
    fn catalog_rows_become_kinds_with_arrays_and_multiranges() {
        let mood = CatalogType {
            array: Oid(101),
            ..row(100, b'e')
        };
        let dom = CatalogType {
            basetype: Oid(1700),
            array: Oid(201),
            ..row(200, b'd')
        };
        let dom_on_dom = CatalogType {
            basetype: Oid(400),
            ..row(300, b'd')
        };
        let rng = CatalogType {
            range_subtype: Oid(200),
            range_multi: Oid(501),
            array: Oid(502),
            ..row(500, b'r')
        };
        let (kinds, missing) =
            kinds_from_rows(&[mood, dom, dom_on_dom, rng], &|o: Oid| o == Oid(999));
        let kinds: HashMap<Oid, TypeKind> = kinds.into_iter().collect();
        assert_eq!(kinds[&Oid(100)], TypeKind::Enum);
        assert_eq!(kinds[&Oid(101)], TypeKind::Array { element: Oid(100) });
        assert_eq!(kinds[&Oid(200)], TypeKind::Domain { base: Oid(1700) });
        assert_eq!(kinds[&Oid(201)], TypeKind::Array { element: Oid(200) });
        assert_eq!(kinds[&Oid(300)], TypeKind::Domain { base: Oid(400) });
        assert_eq!(kinds[&Oid(500)], TypeKind::Range { subtype: Oid(200) });
        assert_eq!(kinds[&Oid(501)], TypeKind::Multirange { range: Oid(500) });
        assert_eq!(kinds[&Oid(502)], TypeKind::Array { element: Oid(500) });
        // 400 (the inner domain's base) is neither built in nor described: look it up next.
        assert_eq!(missing.into_iter().collect::<Vec<_>>(), [Oid(400)]);
    }

    #[test]
    fn undecodable_types_are_left_out() {
        let composite = CatalogType {
            array: Oid(11),
            ..row(10, b'c')
        };
        let ext_base = row(20, b'b');
        // An array of a type whose delimiter is `;` (like box[]).
        let semi = CatalogType {
            delim: b';',
            ..row(30, b'b')
        };
        let semi_array = CatalogType {
            elem: Oid(30),
            is_array: true,
            ..row(31, b'b')
        };
        // A base type with typelem that is not an array (like point).
        let pointish = CatalogType {
            elem: Oid(701),
            ..row(40, b'b')
        };
        let (kinds, missing) =
            kinds_from_rows(&[composite, ext_base, semi, semi_array, pointish], &|_| {
                false
            });
        assert!(kinds.is_empty(), "{kinds:?}");
        assert!(missing.is_empty());
    }

    #[test]
    fn lookup_sql_lists_oids_only() {
        let sql = lookup_sql(&[Oid(16_385), Oid(7)].into_iter().collect());
        assert!(sql.contains("'{7,16385}'::oid[]"), "{sql}");
    }
}
