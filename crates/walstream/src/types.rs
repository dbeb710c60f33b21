//! Resolving user-defined types (enums with their labels, domains, arrays, ranges, multiranges,
//! composites with their attributes) from the server's catalog, for [`LogicalStream`](crate::LogicalStream)'s automatic type resolution.
//!
//! `pgoutput` names a non-built-in type in a Type message (namespace and name only) and lists
//! its OID in Relation messages; what the type *is* lives in `pg_type` and `pg_range` (enum
//! labels in `pg_enum`, composite attributes in `pg_attribute`). The
//! [`TypeResolver`] asks for it over an ordinary (non-replication) connection made from the
//! stream's [`Config`], opened when first needed, reused, and closed with the stream, and turns
//! the rows into [`TypeKind`]s for the decoder's [`TypeRegistry`](walstream_proto::TypeRegistry).
//!
//! The catalog query is pure text over OIDs (no user input reaches the SQL); the mapping from
//! catalog rows to kinds is sans-IO and unit-tested ([`kinds_from_rows`]).
use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use walstream_conn::{Client, Config, ReplicationMode};
use walstream_proto::{CompositeField, Oid, TypeKind, TypeRegistry, builtin_type_oids};

use crate::LogicalDecoder;
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
    /// `typrelid`: the `pg_class` entry of a composite type.
    pub(crate) relid: Oid,
}

/// What a lookup found: registry entries, composite types with their attributes, and enum
/// types with their labels in sort order.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Resolved {
    pub(crate) kinds: Vec<(Oid, TypeKind)>,
    pub(crate) composites: Vec<(Oid, Vec<CompositeField>)>,
    pub(crate) enums: Vec<(Oid, Vec<String>)>,
}

impl Resolved {
    /// Adds everything found to `registry`.
    pub(crate) fn register_into(self, registry: &mut TypeRegistry) {
        for (oid, kind) in self.kinds {
            registry.register(oid, kind);
        }
        for (oid, fields) in self.composites {
            registry.register_composite(oid, fields);
        }
        for (oid, labels) in self.enums {
            registry.register_enum(oid, labels);
        }
    }
}

/// The catalog facts one lookup round fetched: `pg_type` rows, the attributes of the
/// composites among them (by `typrelid`) and the labels of the enums (by type OID).
#[derive(Debug, Default)]
pub(crate) struct CatalogRows {
    pub(crate) types: Vec<CatalogType>,
    pub(crate) attributes: HashMap<Oid, Vec<CompositeField>>,
    pub(crate) labels: HashMap<Oid, Vec<String>>,
}

/// What the catalog rows say, as registry entries; OIDs the rows refer to that are neither
/// built in, nor in `known`, nor described by the rows are returned too (look them up next).
pub(crate) fn kinds_from_rows(
    catalog: &CatalogRows,
    known: &dyn Fn(Oid) -> bool,
) -> (Resolved, BTreeSet<Oid>) {
    let (rows, attributes) = (&catalog.types, &catalog.attributes);
    let by_oid: HashMap<Oid, &CatalogType> = rows.iter().map(|r| (r.oid, r)).collect();
    let mut out = Vec::new();
    let mut composites = Vec::new();
    let mut enums = Vec::new();
    let mut refs = Vec::new();
    for r in rows {
        let kind = match r.typtype {
            // A composite with its attributes (looked up by `typrelid`).
            b'c' => attributes.get(&r.relid).map(|fields| {
                refs.extend(fields.iter().map(|f| f.type_oid));
                composites.push((r.oid, fields.clone()));
                TypeKind::Composite
            }),
            // An enum, with its labels when they were read (an enum without labels is
            // possible: `CREATE TYPE e AS ENUM ()`).
            b'e' => {
                let labels = catalog.labels.get(&r.oid).cloned().unwrap_or_default();
                enums.push((r.oid, labels));
                Some(TypeKind::Enum)
            }
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
            // Base types of extensions (citext, hstore, ...) and pseudo-types have no
            // decoder: their values stay `Value::Unknown`.
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
        if !matches!(kind, TypeKind::Composite | TypeKind::Enum) {
            out.push((r.oid, kind));
        }
        // The type's own array, when its elements are comma-delimited.
        if r.array.0 != 0 && r.delim == b',' && !by_oid.contains_key(&r.array) {
            out.push((r.array, TypeKind::Array { element: r.oid }));
        }
        // A range's multirange.
        if r.typtype == b'r' && r.range_multi.0 != 0 && !by_oid.contains_key(&r.range_multi) {
            out.push((r.range_multi, TypeKind::Multirange { range: r.oid }));
        }
    }
    let described: BTreeSet<Oid> = out
        .iter()
        .map(|(o, _)| *o)
        .chain(composites.iter().map(|(o, _)| *o))
        .chain(enums.iter().map(|(o, _)| *o))
        .collect();
    let missing = refs
        .into_iter()
        .filter(|o| o.0 != 0 && !is_builtin(*o) && !known(*o) && !described.contains(o))
        .filter(|o| !by_oid.contains_key(o))
        .collect();
    (
        Resolved {
            kinds: out,
            composites,
            enums,
        },
        missing,
    )
}

/// The number of attributes in a composite's text (`record_out`): top-level commas outside
/// quotes plus one; `None` when it is not a composite's text. `()` counts as 0.
pub(crate) fn composite_text_arity(text: &[u8]) -> Option<usize> {
    let inner = text.strip_prefix(b"(")?.strip_suffix(b")")?;
    if inner.is_empty() {
        return Some(0);
    }
    let mut count = 1;
    let mut in_quote = false;
    let mut bytes = inner.iter();
    while let Some(&b) = bytes.next() {
        match b {
            b'\\' => {
                bytes.next();
            }
            b'"' => in_quote = !in_quote,
            b',' if !in_quote => count += 1,
            _ => {}
        }
    }
    Some(count)
}

/// The enum type whose labels values of `oid` hold: `oid` itself, the enum under a domain, or
/// the element enum of an array (of an enum or of a domain over one).
pub(crate) fn enum_of(types: &TypeRegistry, oid: Oid) -> Option<Oid> {
    enum_of_with_array(types, oid).map(|(e, _)| e)
}

/// [`enum_of`], and whether `oid` is an array of the enum (true) or holds one label (false).
pub(crate) fn enum_of_with_array(types: &TypeRegistry, oid: Oid) -> Option<(Oid, bool)> {
    let mut oid = oid;
    let mut in_array = false;
    for _ in 0..16 {
        match types.get(oid)? {
            TypeKind::Enum => return Some((oid, in_array)),
            TypeKind::Domain { base } => oid = base,
            TypeKind::Array { element } if !in_array => {
                in_array = true;
                oid = element;
            }
            _ => return None,
        }
    }
    None
}

/// True for the types walstream-proto decodes without a registry.
pub(crate) fn is_builtin(oid: Oid) -> bool {
    builtin_type_oids().contains(&oid)
}

/// `oids` as the body of an `oid[]` literal: `1,2,3` (numbers only: nothing from the peer is
/// quoted into SQL).
fn oid_list(oids: &BTreeSet<Oid>) -> String {
    oids.iter()
        .map(|o| o.0.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// The catalog query for `oids` (numbers only: nothing from the peer is quoted into SQL).
fn lookup_sql(oids: &BTreeSet<Oid>) -> String {
    let list = oid_list(oids);
    // The element types of arrays are fetched alongside (their delimiter decides whether
    // the array is decodable).
    format!(
        "WITH wanted(oid) AS (SELECT unnest('{{{list}}}'::oid[])), \
         rows AS (SELECT oid FROM wanted \
                  UNION SELECT t.typelem FROM pg_catalog.pg_type t JOIN wanted w ON w.oid = t.oid \
                  WHERE t.typelem <> 0) \
         SELECT t.oid, t.typtype, t.typbasetype, t.typelem, t.typarray, t.typdelim, \
                (t.typsubscript = 'pg_catalog.array_subscript_handler'::pg_catalog.regproc), \
                coalesce(r.rngsubtype, 0), coalesce(r.rngmultitypid, 0), coalesce(m.rngtypid, 0), \
                t.typrelid \
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
        relid: oid(10, "typrelid")?,
    })
}

/// The attributes of the composite types whose `typrelid`s are `relids` (numbers only).
fn attributes_sql(relids: &BTreeSet<Oid>) -> String {
    let list = oid_list(relids);
    format!(
        "SELECT a.attrelid, a.attname, a.atttypid FROM pg_catalog.pg_attribute a \
         WHERE a.attrelid = ANY ('{{{list}}}'::oid[]) AND a.attnum > 0 AND NOT a.attisdropped \
         ORDER BY a.attrelid, a.attnum"
    )
}

/// The labels of the enum types `oids`, in sort order (numbers only).
fn labels_sql(oids: &BTreeSet<Oid>) -> String {
    let list = oid_list(oids);
    format!(
        "SELECT e.enumtypid, e.enumlabel FROM pg_catalog.pg_enum e \
         WHERE e.enumtypid = ANY ('{{{list}}}'::oid[]) ORDER BY e.enumtypid, e.enumsortorder"
    )
}

fn parse_labels(rows: &[walstream_conn::Row]) -> Result<HashMap<Oid, Vec<String>>, Error> {
    let mut out: HashMap<Oid, Vec<String>> = HashMap::new();
    for row in rows {
        let oid = row.get(0).and_then(|s| s.parse::<u32>().ok()).map(Oid);
        let (Some(oid), Some(label)) = (oid, row.get(1)) else {
            return Err(Error::protocol("type lookup: unexpected row from pg_enum"));
        };
        out.entry(oid).or_default().push(label.to_owned());
    }
    Ok(out)
}

fn parse_attributes(
    rows: &[walstream_conn::Row],
) -> Result<HashMap<Oid, Vec<CompositeField>>, Error> {
    let mut out: HashMap<Oid, Vec<CompositeField>> = HashMap::new();
    for row in rows {
        let oid = |i: usize| row.get(i).and_then(|s| s.parse::<u32>().ok()).map(Oid);
        let (Some(relid), Some(name), Some(ty)) = (oid(0), row.get(1), oid(2)) else {
            return Err(Error::protocol(
                "type lookup: unexpected row from pg_attribute",
            ));
        };
        out.entry(relid)
            .or_default()
            .push(CompositeField::new(name, ty));
    }
    Ok(out)
}

/// Looks user-defined types up in the server's catalog over an ordinary (non-replication)
/// connection, opened when first needed, reused, and replaced once when it broke.
///
/// [`LogicalStream`](crate::LogicalStream) uses one by itself. For a [`LogicalDecoder`] you
/// drive yourself: build the decoder
/// [`with_unresolved_type_collection(true)`](LogicalDecoder::with_unresolved_type_collection),
/// and after each [`handle_xlog_data`](LogicalDecoder::handle_xlog_data), before polling
/// its events, call [`resolve_pending`](Self::resolve_pending): rows then decode enums (with
/// their labels), domains, arrays, ranges, multiranges and composites. Lookup failures do not
/// stop anything: the values stay [`Value::Unknown`](walstream_proto::Value::Unknown) and the
/// failures are listed by [`failures`](Self::failures).
///
/// ```no_run
/// # async fn demo(config: walstream::Config, mut decoder: walstream::LogicalDecoder,
/// #               wal_start: walstream::Lsn, wal_end: walstream::Lsn, data: bytes::Bytes)
/// #               -> Result<(), walstream::Error> {
/// let mut resolver = walstream::TypeResolver::new(&config);
/// decoder.handle_xlog_data(wal_start, wal_end, data)?;
/// resolver.resolve_pending(&mut decoder).await;
/// while let Some(event) = decoder.poll_event() {
///     // ...
/// }
/// resolver.close().await;
/// # Ok(()) }
/// ```
pub struct TypeResolver {
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
    /// A resolver connecting with `config` (its replication mode is turned off). Nothing is
    /// opened until a type has to be looked up.
    pub fn new(config: &Config) -> Self {
        let mut config = config.clone();
        config.set_replication(ReplicationMode::Off);
        Self {
            config,
            client: None,
            failures: Vec::new(),
        }
    }

    /// The failures so far (the most recent last; the 32 latest are kept).
    pub fn failures(&self) -> &[TypeLookupFailure] {
        &self.failures
    }

    /// Looks up the types `decoder` met and does not know (its
    /// [`take_unresolved_types`](LogicalDecoder::take_unresolved_types)), with every type they
    /// build on, and registers them: the events still queued in `decoder` decode with them.
    /// Does nothing (no connection) when there is nothing to look up.
    pub async fn resolve_pending(&mut self, decoder: &mut LogicalDecoder) {
        if !decoder.has_unresolved_types() {
            return;
        }
        let wanted = decoder.take_unresolved_types();
        let found = self.resolve(wanted, decoder.types()).await;
        decoder.register_types(found.kinds);
        decoder.register_composites(found.composites);
        decoder.register_enums(found.enums);
    }

    /// Looks up `oids` and every non-built-in type they refer to that `known` (the registry)
    /// lacks. On failure the error is recorded (see [`failures`](Self::failures)) and what
    /// was resolved before it is still returned.
    pub(crate) async fn resolve(
        &mut self,
        oids: BTreeSet<Oid>,
        known: Option<&TypeRegistry>,
    ) -> Resolved {
        let mut found = Resolved::default();
        let mut wanted = oids;
        for _ in 0..MAX_ROUNDS {
            if wanted.is_empty() {
                break;
            }
            let catalog = match tokio::time::timeout(LOOKUP_TIMEOUT, self.query(&wanted)).await {
                Ok(Ok(r)) => r,
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
            let seen: BTreeSet<Oid> = found
                .kinds
                .iter()
                .map(|(o, _)| *o)
                .chain(found.composites.iter().map(|(o, _)| *o))
                .chain(found.enums.iter().map(|(o, _)| *o))
                .collect();
            let known_now = |o: Oid| known.is_some_and(|t| t.get(o).is_some()) || seen.contains(&o);
            let (more, missing) = kinds_from_rows(&catalog, &known_now);
            found.kinds.extend(more.kinds);
            found.composites.extend(more.composites);
            found.enums.extend(more.enums);
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

    /// The catalog rows of `oids`, the attributes of the composite types among them and the
    /// labels of the enums.
    async fn query(&mut self, oids: &BTreeSet<Oid>) -> Result<CatalogRows, Error> {
        // A reused connection may have been closed by the server meanwhile (idle timeout,
        // terminated backend, restart): on any failure it is replaced once.
        if let Some(client) = self.client.as_mut().filter(|c| c.is_usable()) {
            if let Ok(found) = Self::query_on(client, oids).await {
                return Ok(found);
            }
        }
        if let Some(old) = self.client.take() {
            old.close().await;
        }
        let mut client = Client::connect(&self.config).await?;
        let found = Self::query_on(&mut client, oids).await;
        self.client = Some(client);
        found
    }

    async fn query_on(client: &mut Client, oids: &BTreeSet<Oid>) -> Result<CatalogRows, Error> {
        let rows = client.simple_query(&lookup_sql(oids)).await?;
        let types = rows.iter().map(parse_row).collect::<Result<Vec<_>, _>>()?;
        let relids: BTreeSet<Oid> = types
            .iter()
            .filter(|r| r.typtype == b'c' && r.relid.0 != 0)
            .map(|r| r.relid)
            .collect();
        let enum_oids: BTreeSet<Oid> = types
            .iter()
            .filter(|r| r.typtype == b'e')
            .map(|r| r.oid)
            .collect();
        let attributes = if relids.is_empty() {
            HashMap::new()
        } else {
            parse_attributes(&client.simple_query(&attributes_sql(&relids)).await?)?
        };
        let labels = if enum_oids.is_empty() {
            HashMap::new()
        } else {
            parse_labels(&client.simple_query(&labels_sql(&enum_oids)).await?)?
        };
        Ok(CatalogRows {
            types,
            attributes,
            labels,
        })
    }

    /// Closes the connection, if open (a later lookup opens a new one).
    pub async fn close(&mut self) {
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
            relid: Oid(0),
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
        let catalog = CatalogRows {
            types: vec![mood, dom, dom_on_dom, rng],
            labels: [(Oid(100), vec!["sad".to_owned(), "happy".to_owned()])].into(),
            ..CatalogRows::default()
        };
        let (found, missing) = kinds_from_rows(&catalog, &|o: Oid| o == Oid(999));
        assert_eq!(
            found.enums,
            [(Oid(100), vec!["sad".to_owned(), "happy".to_owned()])]
        );
        let mut registry = TypeRegistry::new();
        Resolved {
            kinds: found.kinds.clone(),
            composites: vec![],
            enums: found.enums,
        }
        .register_into(&mut registry);
        assert_eq!(registry.get(Oid(100)), Some(TypeKind::Enum));
        assert_eq!(registry.enum_labels(Oid(100)).unwrap(), ["sad", "happy"]);
        let kinds: HashMap<Oid, TypeKind> = found.kinds.into_iter().collect();
        assert!(
            !kinds.contains_key(&Oid(100)),
            "enums are registered with labels"
        );
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
        // A composite whose attributes were not found.
        let composite = CatalogType {
            array: Oid(11),
            relid: Oid(12),
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
        let catalog = CatalogRows {
            types: vec![composite, ext_base, semi, semi_array, pointish],
            ..CatalogRows::default()
        };
        let (found, missing) = kinds_from_rows(&catalog, &|_| false);
        assert_eq!(found, Resolved::default());
        assert!(missing.is_empty());
    }

    #[test]
    fn composites_come_with_attributes_and_their_types_are_followed() {
        let pair = CatalogType {
            array: Oid(21),
            relid: Oid(22),
            ..row(20, b'c')
        };
        let fields = vec![
            CompositeField::new("a", Oid::INT4),
            CompositeField::new("m", Oid(30)),
            CompositeField::new("k", Oid(40)),
        ];
        let attrs: HashMap<Oid, Vec<CompositeField>> = [(Oid(22), fields.clone())].into();
        let catalog = CatalogRows {
            types: vec![pair],
            attributes: attrs,
            ..CatalogRows::default()
        };
        let (found, missing) = kinds_from_rows(&catalog, &|o: Oid| o == Oid(40));
        assert_eq!(found.composites, [(Oid(20), fields)]);
        assert_eq!(
            found.kinds,
            [(Oid(21), TypeKind::Array { element: Oid(20) })]
        );
        // The enum attribute's type is looked up next; the known one is not.
        assert_eq!(missing.into_iter().collect::<Vec<_>>(), [Oid(30)]);
    }

    #[test]
    fn composite_text_arity_counts_top_level_attributes() {
        for (text, n) in [
            ("()", Some(0)),
            ("(1)", Some(1)),
            ("(,)", Some(2)),
            ("(1,\"a,b\",)", Some(3)),
            ("(\"(1,2)\",\"x \"\"y,\"\"\")", Some(2)),
            ("(a\\,b,c)", Some(2)),
            ("1,2", None),
        ] {
            assert_eq!(composite_text_arity(text.as_bytes()), n, "{text}");
        }
    }

    #[test]
    fn lookup_sql_lists_oids_only() {
        let sql = lookup_sql(&[Oid(16_385), Oid(7)].into_iter().collect());
        assert!(sql.contains("'{7,16385}'::oid[]"), "{sql}");
        let sql = labels_sql(&[Oid(16_385), Oid(7)].into_iter().collect());
        assert!(sql.contains("'{7,16385}'::oid[]"), "{sql}");
        assert!(
            sql.contains("ORDER BY e.enumtypid, e.enumsortorder"),
            "{sql}"
        );
    }
}
