//! `RelationCache`: what Relation and Type messages said, for resolving later changes.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use crate::error::DecodeError;
use crate::pgoutput::message::{PgType, PgoutputMessage, Relation};
use crate::pgoutput::tuple::TupleData;
use crate::types::Oid;

/// How a Relation message changed the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RelationChange {
    /// The relation was not known before.
    New,
    /// An identical re-send (PostgreSQL re-sends relations, e.g. after a cache invalidation
    /// or at the start of each streamed block).
    Unchanged,
    /// Only the schema or table name changed; the columns and replica identity did not.
    Renamed,
    /// The column list (names, types, type modifiers, key flags) or replica identity changed.
    ShapeChanged,
}

impl RelationChange {
    fn between(old: &Relation, new: &Relation) -> Self {
        if old.columns != new.columns || old.replica_identity != new.replica_identity {
            Self::ShapeChanged
        } else if old.namespace != new.namespace || old.name != new.name {
            Self::Renamed
        } else {
            Self::Unchanged
        }
    }
}

/// What [`RelationCache::observe`] found for a message.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Observed {
    /// A Relation message was stored.
    Relation {
        /// The stored relation.
        relation: Arc<Relation>,
        /// How it compares with what was known before.
        change: RelationChange,
    },
    /// A Type message was stored.
    Type {
        /// The stored type.
        pg_type: Arc<PgType>,
        /// True if it was unknown or differs from what was known.
        changed: bool,
    },
    /// An Insert, Update or Delete, resolved to its relation.
    Row(Arc<Relation>),
    /// A Truncate, resolved to its relations (in message order).
    Truncate(Vec<Arc<Relation>>),
    /// A message that does not involve relations.
    Other,
}

/// A cache of the relations and types described by Relation and Type messages.
///
/// PostgreSQL sends a relation's description before the first change to it in a session (and
/// again when it changes); changes then name the relation only by OID. Feed every message to
/// [`RelationCache::observe`], or call the narrower methods directly. Relations are kept as
/// [`Arc<Relation>`] so decoded events can hold a cheap reference.
#[derive(Debug, Clone, Default)]
pub struct RelationCache {
    relations: HashMap<Oid, Arc<Relation>, OidHash>,
    types: HashMap<Oid, Arc<PgType>, OidHash>,
}

/// Every change looks its relation up, so the map uses a multiplicative hash of the OID
/// instead of SipHash. OIDs are assigned by the server, not chosen by an attacker on the
/// client's side of the protocol, so collision flooding is not a concern here.
type OidHash = BuildHasherDefault<OidHasher>;

/// Fibonacci hashing of the (32-bit) key; see [`OidHash`].
#[derive(Debug, Default, Clone, Copy)]
struct OidHasher(u64);

impl Hasher for OidHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

impl RelationCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Stores a relation and reports how it compares with the previous description.
    pub fn update_relation(&mut self, relation: Arc<Relation>) -> RelationChange {
        match self.relations.insert(relation.oid, Arc::clone(&relation)) {
            None => RelationChange::New,
            Some(old) => RelationChange::between(&old, &relation),
        }
    }

    /// Stores a type; returns true if it was unknown or differs from the previous description.
    pub fn update_type(&mut self, pg_type: Arc<PgType>) -> bool {
        match self.types.insert(pg_type.oid, Arc::clone(&pg_type)) {
            None => true,
            Some(old) => *old != *pg_type,
        }
    }

    /// The relation with `oid`, if described.
    pub fn relation(&self, oid: Oid) -> Option<&Arc<Relation>> {
        self.relations.get(&oid)
    }

    /// The relation with `oid`, or [`DecodeError::UnknownRelation`].
    pub fn resolve(&self, oid: Oid) -> Result<&Arc<Relation>, DecodeError> {
        self.relations
            .get(&oid)
            .ok_or(DecodeError::UnknownRelation {
                context: "pgoutput relation cache",
                oid: oid.0,
            })
    }

    /// The type with `oid`, if a Type message described it.
    pub fn pg_type(&self, oid: Oid) -> Option<&Arc<PgType>> {
        self.types.get(&oid)
    }

    /// Forgets a relation.
    pub fn remove_relation(&mut self, oid: Oid) -> Option<Arc<Relation>> {
        self.relations.remove(&oid)
    }

    /// Forgets everything (for example when a new replication session starts).
    pub fn clear(&mut self) {
        self.relations.clear();
        self.types.clear();
    }

    /// The number of cached relations.
    pub fn relation_count(&self) -> usize {
        self.relations.len()
    }

    /// Updates the cache from a Relation or Type message, or resolves the relation(s) a change
    /// refers to.
    ///
    /// Changes to an unknown relation fail with [`DecodeError::UnknownRelation`]; a tuple whose
    /// column count differs from the relation's fails with [`DecodeError::InvalidValue`].
    pub fn observe(&mut self, msg: &PgoutputMessage) -> Result<Observed, DecodeError> {
        Ok(match msg {
            PgoutputMessage::Relation(m) => {
                let change = self.update_relation(Arc::clone(&m.relation));
                Observed::Relation {
                    relation: Arc::clone(&m.relation),
                    change,
                }
            }
            PgoutputMessage::Type(m) => {
                let changed = self.update_type(Arc::clone(&m.pg_type));
                Observed::Type {
                    pg_type: Arc::clone(&m.pg_type),
                    changed,
                }
            }
            PgoutputMessage::Insert(m) => {
                Observed::Row(self.resolve_row(m.relation_id, [Some(&m.new), None])?)
            }
            PgoutputMessage::Update(m) => Observed::Row(self.resolve_row(
                m.relation_id,
                [Some(&m.new), m.old.as_ref().map(|o| o.tuple())],
            )?),
            PgoutputMessage::Delete(m) => {
                Observed::Row(self.resolve_row(m.relation_id, [Some(m.old.tuple()), None])?)
            }
            PgoutputMessage::Truncate(m) => Observed::Truncate(
                m.relation_ids
                    .iter()
                    .map(|&oid| self.resolve(oid).cloned())
                    .collect::<Result<_, _>>()?,
            ),
            _ => Observed::Other,
        })
    }

    fn resolve_row(
        &self,
        oid: Oid,
        tuples: [Option<&TupleData>; 2],
    ) -> Result<Arc<Relation>, DecodeError> {
        let rel = self.resolve(oid)?;
        for t in tuples.into_iter().flatten() {
            if t.len() != rel.columns.len() {
                return Err(DecodeError::InvalidValue {
                    context: "pgoutput relation cache",
                    offset: 0,
                    reason: "tuple column count differs from the relation's",
                });
            }
        }
        Ok(Arc::clone(rel))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pgoutput::message::{
        Column, Insert, RelationMessage, ReplicaIdentity, Truncate, TruncateOptions,
    };
    use crate::pgoutput::tuple::ColumnValue;

    fn rel(name: &str, cols: &[(&str, u32, u8)], ri: ReplicaIdentity) -> Arc<Relation> {
        Arc::new(Relation {
            oid: Oid(100),
            namespace: "public".into(),
            name: name.into(),
            replica_identity: ri,
            columns: cols
                .iter()
                .map(|&(n, t, f)| Column {
                    flags: f,
                    name: n.into(),
                    type_oid: Oid(t),
                    type_modifier: -1,
                })
                .collect(),
        })
    }

    #[test]
    fn reports_changes() {
        let mut c = RelationCache::new();
        let a = rel(
            "t",
            &[("id", 23, 1), ("v", 25, 0)],
            ReplicaIdentity::DEFAULT,
        );
        assert_eq!(c.update_relation(a.clone()), RelationChange::New);
        assert_eq!(
            c.update_relation(Arc::new((*a).clone())),
            RelationChange::Unchanged
        );
        assert_eq!(
            c.update_relation(rel(
                "t2",
                &[("id", 23, 1), ("v", 25, 0)],
                ReplicaIdentity::DEFAULT
            )),
            RelationChange::Renamed
        );
        assert_eq!(
            c.update_relation(rel(
                "t2",
                &[("id", 23, 1), ("v", 25, 0)],
                ReplicaIdentity::FULL
            )),
            RelationChange::ShapeChanged
        );
        assert_eq!(
            c.update_relation(rel(
                "t2",
                &[("id", 23, 1), ("v", 1043, 0)],
                ReplicaIdentity::FULL
            )),
            RelationChange::ShapeChanged
        );
        assert_eq!(
            c.update_relation(rel(
                "t2",
                &[("id", 23, 0), ("v", 1043, 0)],
                ReplicaIdentity::FULL
            )),
            RelationChange::ShapeChanged
        );
        assert_eq!(c.relation_count(), 1);
        assert_eq!(c.relation(Oid(100)).unwrap().name, "t2");
    }

    #[test]
    fn observe_resolves_rows() {
        let mut c = RelationCache::new();
        let ins = PgoutputMessage::Insert(Insert {
            xid: None,
            relation_id: Oid(100),
            new: TupleData::from_values(&[ColumnValue::Null, ColumnValue::Null]).unwrap(),
        });
        assert_eq!(
            c.observe(&ins),
            Err(DecodeError::UnknownRelation {
                context: "pgoutput relation cache",
                oid: 100
            })
        );
        let r = rel(
            "t",
            &[("id", 23, 1), ("v", 25, 0)],
            ReplicaIdentity::DEFAULT,
        );
        let msg = PgoutputMessage::Relation(RelationMessage {
            xid: None,
            relation: r.clone(),
        });
        assert_eq!(
            c.observe(&msg).unwrap(),
            Observed::Relation {
                relation: r.clone(),
                change: RelationChange::New
            }
        );
        assert_eq!(c.observe(&ins).unwrap(), Observed::Row(r.clone()));
        let narrow = PgoutputMessage::Insert(Insert {
            xid: None,
            relation_id: Oid(100),
            new: TupleData::from_values(&[ColumnValue::Null]).unwrap(),
        });
        assert!(matches!(
            c.observe(&narrow),
            Err(DecodeError::InvalidValue { .. })
        ));
        let tr = PgoutputMessage::Truncate(Truncate {
            xid: None,
            options: TruncateOptions(0),
            relation_ids: vec![Oid(100), Oid(101)],
        });
        assert!(matches!(
            c.observe(&tr),
            Err(DecodeError::UnknownRelation { oid: 101, .. })
        ));
    }
}
