//! PostgreSQL's built-in type OIDs (checked against `pg_type` and `pg_range` of PostgreSQL 15).

use super::TypeKind;
use crate::types::Oid;

macro_rules! type_oids {
    ($($name:ident = $val:literal, $doc:literal;)*) => {
        /// Built-in type OIDs, as in PostgreSQL's `pg_type`.
        impl Oid {
            $(
                #[doc = concat!("`", $doc, "`")]
                pub const $name: Self = Self($val);
            )*
        }

        /// Every OID the decoder knows, scalars then containers.
        pub(crate) const ALL: &[Oid] = &[$(Oid::$name),*];
    };
}

type_oids! {
    BOOL = 16, "bool";
    BYTEA = 17, "bytea";
    CHAR = 18, "\"char\"";
    NAME = 19, "name";
    INT8 = 20, "int8";
    INT2 = 21, "int2";
    INT4 = 23, "int4";
    TEXT = 25, "text";
    OID = 26, "oid";
    XID = 28, "xid";
    JSON = 114, "json";
    XML = 142, "xml";
    CIDR = 650, "cidr";
    FLOAT4 = 700, "float4";
    FLOAT8 = 701, "float8";
    MACADDR8 = 774, "macaddr8";
    MONEY = 790, "money";
    MACADDR = 829, "macaddr";
    INET = 869, "inet";
    BPCHAR = 1042, "bpchar";
    VARCHAR = 1043, "varchar";
    DATE = 1082, "date";
    TIME = 1083, "time";
    TIMESTAMP = 1114, "timestamp";
    TIMESTAMPTZ = 1184, "timestamptz";
    INTERVAL = 1186, "interval";
    TIMETZ = 1266, "timetz";
    BIT = 1560, "bit";
    VARBIT = 1562, "varbit";
    NUMERIC = 1700, "numeric";
    UUID = 2950, "uuid";
    PG_LSN = 3220, "pg_lsn";
    JSONB = 3802, "jsonb";
    XID8 = 5069, "xid8";
    INT4RANGE = 3904, "int4range";
    NUMRANGE = 3906, "numrange";
    TSRANGE = 3908, "tsrange";
    TSTZRANGE = 3910, "tstzrange";
    DATERANGE = 3912, "daterange";
    INT8RANGE = 3926, "int8range";
    INT4MULTIRANGE = 4451, "int4multirange";
    NUMMULTIRANGE = 4532, "nummultirange";
    TSMULTIRANGE = 4533, "tsmultirange";
    TSTZMULTIRANGE = 4534, "tstzmultirange";
    DATEMULTIRANGE = 4535, "datemultirange";
    INT8MULTIRANGE = 4536, "int8multirange";
    BOOL_ARRAY = 1000, "bool[]";
    BYTEA_ARRAY = 1001, "bytea[]";
    CHAR_ARRAY = 1002, "\"char\"[]";
    NAME_ARRAY = 1003, "name[]";
    INT2_ARRAY = 1005, "int2[]";
    INT4_ARRAY = 1007, "int4[]";
    TEXT_ARRAY = 1009, "text[]";
    XID_ARRAY = 1011, "xid[]";
    BPCHAR_ARRAY = 1014, "bpchar[]";
    VARCHAR_ARRAY = 1015, "varchar[]";
    INT8_ARRAY = 1016, "int8[]";
    FLOAT4_ARRAY = 1021, "float4[]";
    FLOAT8_ARRAY = 1022, "float8[]";
    OID_ARRAY = 1028, "oid[]";
    MACADDR_ARRAY = 1040, "macaddr[]";
    INET_ARRAY = 1041, "inet[]";
    TIMESTAMP_ARRAY = 1115, "timestamp[]";
    DATE_ARRAY = 1182, "date[]";
    TIME_ARRAY = 1183, "time[]";
    TIMESTAMPTZ_ARRAY = 1185, "timestamptz[]";
    INTERVAL_ARRAY = 1187, "interval[]";
    NUMERIC_ARRAY = 1231, "numeric[]";
    TIMETZ_ARRAY = 1270, "timetz[]";
    BIT_ARRAY = 1561, "bit[]";
    VARBIT_ARRAY = 1563, "varbit[]";
    UUID_ARRAY = 2951, "uuid[]";
    PG_LSN_ARRAY = 3221, "pg_lsn[]";
    JSONB_ARRAY = 3807, "jsonb[]";
    JSON_ARRAY = 199, "json[]";
    XML_ARRAY = 143, "xml[]";
    CIDR_ARRAY = 651, "cidr[]";
    MACADDR8_ARRAY = 775, "macaddr8[]";
    MONEY_ARRAY = 791, "money[]";
    XID8_ARRAY = 271, "xid8[]";
    INT4RANGE_ARRAY = 3905, "int4range[]";
    NUMRANGE_ARRAY = 3907, "numrange[]";
    TSRANGE_ARRAY = 3909, "tsrange[]";
    TSTZRANGE_ARRAY = 3911, "tstzrange[]";
    DATERANGE_ARRAY = 3913, "daterange[]";
    INT8RANGE_ARRAY = 3927, "int8range[]";
    INT4MULTIRANGE_ARRAY = 6150, "int4multirange[]";
    NUMMULTIRANGE_ARRAY = 6151, "nummultirange[]";
    TSMULTIRANGE_ARRAY = 6152, "tsmultirange[]";
    TSTZMULTIRANGE_ARRAY = 6153, "tstzmultirange[]";
    DATEMULTIRANGE_ARRAY = 6155, "datemultirange[]";
    INT8MULTIRANGE_ARRAY = 6157, "int8multirange[]";
}

/// (array type, element type) for the built-in array types.
const ARRAYS: &[(u32, u32)] = &[
    (1000, 16),
    (1001, 17),
    (1002, 18),
    (1003, 19),
    (1005, 21),
    (1007, 23),
    (1009, 25),
    (1011, 28),
    (1014, 1042),
    (1015, 1043),
    (1016, 20),
    (1021, 700),
    (1022, 701),
    (1028, 26),
    (1040, 829),
    (1041, 869),
    (1115, 1114),
    (1182, 1082),
    (1183, 1083),
    (1185, 1184),
    (1187, 1186),
    (1231, 1700),
    (1270, 1266),
    (1561, 1560),
    (1563, 1562),
    (2951, 2950),
    (3221, 3220),
    (3807, 3802),
    (199, 114),
    (143, 142),
    (651, 650),
    (775, 774),
    (791, 790),
    (271, 5069),
    (3905, 3904),
    (3907, 3906),
    (3909, 3908),
    (3911, 3910),
    (3913, 3912),
    (3927, 3926),
    (6150, 4451),
    (6151, 4532),
    (6152, 4533),
    (6153, 4534),
    (6155, 4535),
    (6157, 4536),
];

/// (range type, subtype, multirange type) as in `pg_range`.
const RANGES: &[(u32, u32, u32)] = &[
    (3904, 23, 4451),
    (3906, 1700, 4532),
    (3908, 1114, 4533),
    (3910, 1184, 4534),
    (3912, 1082, 4535),
    (3926, 20, 4536),
];

/// The container kind of a built-in array, range or multirange type.
pub(crate) fn builtin_kind(oid: Oid) -> Option<TypeKind> {
    if let Some(&(_, elem)) = ARRAYS.iter().find(|(a, _)| *a == oid.0) {
        return Some(TypeKind::Array { element: Oid(elem) });
    }
    if let Some(&(_, sub, _)) = RANGES.iter().find(|(r, _, _)| *r == oid.0) {
        return Some(TypeKind::Range { subtype: Oid(sub) });
    }
    if let Some(&(r, _, _)) = RANGES.iter().find(|(_, _, m)| *m == oid.0) {
        return Some(TypeKind::Multirange { range: Oid(r) });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_consistent() {
        for &(a, e) in ARRAYS {
            assert!(ALL.contains(&Oid(a)), "array {a} listed");
            assert!(ALL.contains(&Oid(e)), "element {e} listed");
        }
        assert_eq!(
            builtin_kind(Oid::INT4_ARRAY),
            Some(TypeKind::Array { element: Oid::INT4 })
        );
        assert_eq!(
            builtin_kind(Oid::NUMMULTIRANGE),
            Some(TypeKind::Multirange {
                range: Oid::NUMRANGE
            })
        );
        assert_eq!(
            builtin_kind(Oid::TSTZRANGE),
            Some(TypeKind::Range {
                subtype: Oid::TIMESTAMPTZ
            })
        );
        assert_eq!(builtin_kind(Oid::INT4), None);
    }
}
