//! Rows: the column values of an inserted, updated or deleted row, decoded on demand.
use std::fmt;
use std::sync::Arc;

use walstream_proto::pgoutput::{Column, ColumnValue, Relation, TupleData, TypedColumns};
use walstream_proto::{DecodeError, NoTypes, TypeRegistry, Value, ValueFormat};

/// One row of a relation: the relation's description plus the row's raw tuple data.
///
/// Values stay in the received bytes until asked for. Access them by index
/// ([`value`](Self::value)) or by column name ([`get`](Self::get)); each gives a [`Field`]:
/// a typed [`Value`], SQL NULL, or an **unchanged TOAST** value — a large value the server did
/// not send because the update did not touch it. That state is never turned into NULL and never
/// dropped: the old value is still in the table, the consumer just did not receive it.
#[derive(Clone)]
pub struct Row {
    relation: Arc<Relation>,
    tuple: TupleData,
    types: Option<Arc<TypeRegistry>>,
}

/// One column of a [`Row`], decoded.
#[derive(Debug, Clone, PartialEq)]
pub enum Field {
    /// SQL NULL.
    Null,
    /// An unchanged TOASTed value that the server did not send.
    UnchangedToast,
    /// A value.
    Value(Value),
}

impl Field {
    /// The value, if there is one.
    pub fn value(&self) -> Option<&Value> {
        match self {
            Self::Value(v) => Some(v),
            _ => None,
        }
    }

    /// Consumes the field, returning the value if there is one.
    pub fn into_value(self) -> Option<Value> {
        match self {
            Self::Value(v) => Some(v),
            _ => None,
        }
    }

    /// True for SQL NULL.
    pub fn is_null(&self) -> bool {
        matches!(self, Self::Null)
    }

    /// True for an unchanged TOAST value.
    pub fn is_unchanged_toast(&self) -> bool {
        matches!(self, Self::UnchangedToast)
    }
}

/// Errors from row access.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum RowError {
    /// The relation has no column of this name.
    #[error("no column named {0:?}")]
    NoSuchColumn(String),
    /// The row has no column at this index.
    #[error("no column at index {0}")]
    NoSuchIndex(usize),
    /// The column's value could not be decoded.
    #[error("column {column:?}: {source}")]
    Decode {
        /// The column name.
        column: String,
        /// What went wrong.
        source: DecodeError,
    },
}

impl Row {
    /// A row of `relation`. The tuple's column count must match the relation's (the relation
    /// cache checks it when resolving changes).
    pub fn new(relation: Arc<Relation>, tuple: TupleData) -> Self {
        Self {
            relation,
            tuple,
            types: None,
        }
    }

    /// Uses `types` for values of non-built-in types (enums, domains, ...).
    #[must_use]
    pub fn with_types(mut self, types: Option<Arc<TypeRegistry>>) -> Self {
        self.types = types;
        self
    }

    /// The registry used for values of non-built-in types, if any.
    pub fn types(&self) -> Option<&Arc<TypeRegistry>> {
        self.types.as_ref()
    }

    /// The relation this row belongs to.
    pub fn relation(&self) -> &Arc<Relation> {
        &self.relation
    }

    /// The relation's columns.
    pub fn columns(&self) -> &[Column] {
        &self.relation.columns
    }

    /// The raw tuple data.
    pub fn tuple(&self) -> &TupleData {
        &self.tuple
    }

    /// The number of columns.
    pub fn len(&self) -> usize {
        self.tuple.len()
    }

    /// True if the row has no columns.
    pub fn is_empty(&self) -> bool {
        self.tuple.is_empty()
    }

    /// The index of the column named `name`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.relation.columns.iter().position(|c| c.name == name)
    }

    /// The raw value of column `index` (text or binary bytes, null, or unchanged TOAST).
    pub fn raw(&self, index: usize) -> Option<ColumnValue> {
        self.tuple.get(index)
    }

    /// True if column `index` is an unchanged TOAST value.
    pub fn is_unchanged_toast(&self, index: usize) -> bool {
        matches!(self.tuple.get(index), Some(ColumnValue::UnchangedToast))
    }

    /// The names of the columns whose values are unchanged TOAST values.
    pub fn unchanged_columns(&self) -> impl Iterator<Item = &str> + '_ {
        self.relation
            .columns
            .iter()
            .zip(self.tuple.iter())
            .filter(|(_, v)| matches!(v, ColumnValue::UnchangedToast))
            .map(|(c, _)| c.name.as_str())
    }

    /// Decodes column `index`.
    pub fn value(&self, index: usize) -> Result<Field, RowError> {
        let raw = self.tuple.get(index).ok_or(RowError::NoSuchIndex(index))?;
        let column = self
            .relation
            .columns
            .get(index)
            .ok_or(RowError::NoSuchIndex(index))?;
        self.decode(column, raw)
    }

    /// Decodes the column named `name`.
    pub fn get(&self, name: &str) -> Result<Field, RowError> {
        let index = self
            .index_of(name)
            .ok_or_else(|| RowError::NoSuchColumn(name.to_owned()))?;
        self.value(index)
    }

    /// Iterates over `(column, decoded field)` pairs in column order.
    pub fn iter(&self) -> impl Iterator<Item = (&Column, Result<Field, RowError>)> + '_ {
        self.relation
            .columns
            .iter()
            .zip(self.tuple.iter())
            .map(|(c, raw)| (c, self.decode(c, raw)))
    }

    /// Decodes every column in column order, straight from the received bytes: the fast path
    /// for consumers that visit each value once. Unlike [`Row::iter`], no column's bytes are
    /// handed out as a shared buffer first; only values that keep bytes (text, bytea, ...)
    /// reference the receive buffer. Uses the stream's registry of user-defined types, like
    /// [`Row::value`].
    ///
    /// ```no_run
    /// # fn f(row: &walstream::Row) -> Result<(), walstream_proto::DecodeError> {
    /// for (column, value) in row.columns().iter().zip(row.typed()?) {
    ///     println!("{} = {:?}", column.name, value?);
    /// }
    /// # Ok(()) }
    /// ```
    pub fn typed(&self) -> Result<TypedColumns<'_>, DecodeError> {
        match &self.types {
            Some(types) => self.tuple.typed_with(&self.relation, &**types),
            None => self.tuple.typed_with(&self.relation, &NoTypes),
        }
    }

    pub(crate) fn decode(&self, column: &Column, raw: ColumnValue) -> Result<Field, RowError> {
        let (format, bytes) = match raw {
            ColumnValue::Null => return Ok(Field::Null),
            ColumnValue::UnchangedToast => return Ok(Field::UnchangedToast),
            ColumnValue::Text(b) => (ValueFormat::Text, b),
            ColumnValue::Binary(b) => (ValueFormat::Binary, b),
        };
        let decoded = match &self.types {
            Some(t) => t.decode(column.type_oid, format, bytes),
            None => walstream_proto::decode_value(column.type_oid, format, bytes),
        };
        decoded
            .map(Field::Value)
            .map_err(|source| RowError::Decode {
                column: column.name.clone(),
                source,
            })
    }
}

impl fmt::Debug for Row {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut m = f.debug_map();
        for (c, raw) in self.relation.columns.iter().zip(self.tuple.iter()) {
            m.entry(&c.name, &raw);
        }
        m.finish()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use walstream_proto::Oid;
    use walstream_proto::pgoutput::ReplicaIdentity;

    pub(crate) fn relation(oid: u32, name: &str, cols: &[(&str, u32, bool)]) -> Arc<Relation> {
        Arc::new(Relation {
            oid: Oid(oid),
            namespace: "public".into(),
            name: name.into(),
            replica_identity: ReplicaIdentity::DEFAULT,
            columns: cols
                .iter()
                .map(|&(n, t, key)| Column {
                    flags: u8::from(key),
                    name: n.into(),
                    type_oid: Oid(t),
                    type_modifier: -1,
                })
                .collect(),
        })
    }

    pub(crate) fn tuple(vals: &[Option<&str>]) -> TupleData {
        let vals: Vec<ColumnValue> = vals
            .iter()
            .map(|v| match v {
                None => ColumnValue::Null,
                Some("\u{0}toast") => ColumnValue::UnchangedToast,
                Some(s) => ColumnValue::Text(bytes::Bytes::copy_from_slice(s.as_bytes())),
            })
            .collect();
        TupleData::from_values(&vals).unwrap()
    }

    #[test]
    fn typed_access_by_name_and_index() {
        let rel = relation(
            1,
            "t",
            &[("id", 23, true), ("name", 25, false), ("big", 25, false)],
        );
        let row = Row::new(rel, tuple(&[Some("42"), None, Some("\u{0}toast")]));
        assert_eq!(row.get("id").unwrap(), Field::Value(Value::Int4(42)));
        assert_eq!(
            row.value(0).unwrap().value().and_then(Value::as_i64),
            Some(42)
        );
        assert!(row.get("name").unwrap().is_null());
        let big = row.get("big").unwrap();
        assert!(big.is_unchanged_toast());
        assert!(!big.is_null(), "unchanged TOAST is never NULL");
        assert!(row.is_unchanged_toast(2));
        assert_eq!(row.unchanged_columns().collect::<Vec<_>>(), ["big"]);
        assert_eq!(row.get("nope"), Err(RowError::NoSuchColumn("nope".into())));
        assert_eq!(row.value(9), Err(RowError::NoSuchIndex(9)));
        assert_eq!(row.iter().count(), 3);
    }

    #[test]
    fn decode_error_names_the_column() {
        let rel = relation(1, "t", &[("id", 23, true)]);
        let row = Row::new(rel, tuple(&[Some("forty-two")]));
        let err = row.get("id").unwrap_err();
        assert!(matches!(&err, RowError::Decode { column, .. } if column == "id"));
        assert!(err.to_string().contains("\"id\""), "{err}");
    }
}
