//! Checks the value decoders against a real PostgreSQL, on every configured major.
//!
//! For each installation `WALSTREAM_PG_BINDIRS` selects (see `walstream-test-support`), starts a
//! throwaway cluster and, for a table of (type, literal) cases, fetches the server's text
//! output (`format('%s', v)` calls the type's output function, as `pgoutput` does; `v::text`
//! would use casts such as `bool → text` that print differently) and its binary `send` output,
//! then asserts that decoding either gives the same value and that `Display` reproduces the
//! server's text exactly. The built-in OID constants are checked against `pg_type` too.
//! Cases that only exist on some majors (PostgreSQL 17's infinite intervals) carry the range
//! of majors they run on.
//!
//! psql talks to the server with `client_encoding=UTF8` (the harness runs it under `LC_ALL=C`,
//! which would otherwise make older psql versions pick SQL_ASCII and the server reject the
//! non-ASCII literals).
//!
//! With `WALSTREAM_WRITE_VALUE_SEEDS=<path to fuzz/>` it also writes each built-in case's text
//! and binary bytes as seeds for the `values` and `values_binary` fuzz targets.

use std::ops::RangeInclusive;
use std::path::PathBuf;

use bytes::Bytes;
use walstream_proto::{
    CompositeField, Oid, PgInterval, TypeKind, TypeRegistry, Value, ValueFormat,
};
use walstream_test_support::{Cluster, ClusterOptions, PgInstall, Role, for_each_server};

/// Runs SQL through the cluster's psql as `postgres`, in UTF-8, and returns its output lines
/// (unaligned, tuples only, `|` between columns).
fn psql(cluster: &Cluster, script: &str) -> Vec<String> {
    let conninfo = format!(
        "{} client_encoding=UTF8",
        cluster.socket_conninfo(Role::Postgres)
    );
    let out = cluster
        .psql_with(&conninfo, script)
        .unwrap_or_else(|e| panic!("psql failed: {e}"));
    out.lines().map(str::to_owned).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    assert!(s.len() % 2 == 0, "odd hex {s}");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// How a case is checked.
#[derive(Clone, Copy, PartialEq)]
enum Check {
    /// Text and binary decode to the same value; both display as the server's text.
    Full,
    /// Displays match, values are compared by display only (`money`: the text is kept as is).
    DisplayOnly,
    /// Values agree; display is UTC, not the session zone the server printed in.
    SameInstant,
    /// Values agree and equal `expected`'s display; the server's text is not comparable.
    /// PostgreSQL 14 prints a `"char"` with the high bit set as the raw byte (not UTF-8);
    /// 15 changed that to `\ooo`, which `Display` follows.
    Value(&'static str),
}

struct Case {
    /// SQL type the literal is cast to.
    ty: &'static str,
    /// SQL expression.
    expr: &'static str,
    check: Check,
    /// Session TimeZone for this case.
    tz: &'static str,
    /// The PostgreSQL majors the case runs on.
    majors: RangeInclusive<u32>,
}

const ALL_MAJORS: RangeInclusive<u32> = 0..=u32::MAX;

const fn c(ty: &'static str, expr: &'static str) -> Case {
    Case {
        ty,
        expr,
        check: Check::Full,
        tz: "UTC",
        majors: ALL_MAJORS,
    }
}

const fn money(ty: &'static str, expr: &'static str) -> Case {
    Case {
        ty,
        expr,
        check: Check::DisplayOnly,
        tz: "UTC",
        majors: ALL_MAJORS,
    }
}

const fn zoned(tz: &'static str, ty: &'static str, expr: &'static str) -> Case {
    Case {
        ty,
        expr,
        check: Check::SameInstant,
        tz,
        majors: ALL_MAJORS,
    }
}

/// `case` before PostgreSQL `until` only.
const fn before(until: u32, case: Case) -> Case {
    Case {
        majors: 0..=until - 1,
        ..case
    }
}

/// `case` on PostgreSQL `from` and later only.
const fn since(from: u32, case: Case) -> Case {
    Case {
        majors: from..=u32::MAX,
        ..case
    }
}

const CASES: &[Case] = &[
    c("bool", "'true'"),
    c("bool", "'false'"),
    c("\"char\"", "'a'"),
    since(15, c("\"char\"", "chr(200)")),
    before(
        15,
        Case {
            check: Check::Value("\\303"),
            ..c("\"char\"", "chr(200)")
        },
    ),
    c("int2", "'-32768'"),
    c("int2", "'32767'"),
    c("int4", "'2147483647'"),
    c("int4", "'-1'"),
    c("int8", "'-9223372036854775808'"),
    c("int8", "'9223372036854775807'"),
    c("oid", "'4294967295'"),
    c("xid", "'12345'"),
    c("xid8", "'18446744073709551615'"),
    c("float4", "'1234567'"),
    c("float4", "'123456'"),
    c("float4", "'0.1'"),
    c("float4", "'NaN'"),
    c("float4", "'-Infinity'"),
    c("float4", "'-0'"),
    c("float4", "'3.4028235e38'"),
    c("float4", "'1e-45'"),
    c("float4", "'0.0001'"),
    c("float8", "'0.1'"),
    c("float8", "'1e15'"),
    c("float8", "'1e14'"),
    c("float8", "'1e-7'"),
    c("float8", "'0.0001'"),
    c("float8", "'-0'"),
    c("float8", "'NaN'"),
    c("float8", "'Infinity'"),
    c("float8", "'-Infinity'"),
    c("float8", "'1.7976931348623157e308'"),
    c("float8", "'5e-324'"),
    c("float8", "'123456789012345.6'"),
    c("float8", "'-3.14159'"),
    c("numeric", "'0'"),
    c("numeric", "'0.00'"),
    c("numeric", "'-12.340'"),
    c("numeric", "'NaN'"),
    c("numeric", "'Infinity'"),
    c("numeric", "'-Infinity'"),
    c("numeric", "'123456789012345678901234567890.123456789'"),
    c("numeric", "'0.000000001'"),
    c("numeric", "'-0.000012'"),
    c("numeric", "'1e100'"),
    c("numeric", "'10000'"),
    c("numeric", "repeat('9', 1000) || '.' || repeat('1', 1000)"),
    c("numeric", "'0.1' ::numeric(20, 15)"),
    money("money", "'-1234.5'"),
    money("money", "'0.01'"),
    money("money", "'92233720368547758.07'"),
    c("text", "'héllo wörld'"),
    c("text", "''"),
    c("text", "'with \"quotes\" and \\ backslash'"),
    c("text", "E'line\\nbreak\\ttab'"),
    c("text", "'😀 emoji'"),
    c("varchar", "'abc'"),
    c("bpchar", "'ab'::char(5)"),
    c("name", "'pg_class'"),
    c("xml", "'<a>1</a>'"),
    c("json", "'{\"a\": [1, 2.5, null]}'"),
    c("jsonb", "'{\"b\": 1, \"a\": [true, \"x\"]}'"),
    c("bytea", "'\\x00ff10'"),
    c("bytea", "''"),
    c("bytea", "decode('deadbeef', 'hex')"),
    c("uuid", "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'"),
    c("date", "'2024-02-29'"),
    c("date", "'0044-03-15 BC'"),
    c("date", "'0001-01-01 BC'"),
    c("date", "'infinity'"),
    c("date", "'-infinity'"),
    c("date", "'5874897-12-31'"),
    c("date", "'4713-01-01 BC'"),
    c("time", "'00:00:00'"),
    c("time", "'23:59:59.999999'"),
    c("time", "'24:00:00'"),
    c("time", "'12:30:00.5'"),
    c("timetz", "'12:00:00+05:30'"),
    c("timetz", "'00:00:00-08'"),
    c("timetz", "'23:59:59.5+00'"),
    c("timetz", "'01:02:03+00:01:15'"),
    c("timestamp", "'2024-01-02 03:04:05.123456'"),
    c("timestamp", "'0044-03-15 12:00:00 BC'"),
    c("timestamp", "'infinity'"),
    c("timestamp", "'-infinity'"),
    c("timestamp", "'294276-12-31 23:59:59.999999'"),
    c("timestamp", "'4713-01-01 00:00:00 BC'"),
    c("timestamp", "'2000-02-29 00:00:00'"),
    c("timestamptz", "'2024-01-02 03:04:05.123456+00'"),
    c("timestamptz", "'2024-01-02 03:04:05+05:30'"),
    c("timestamptz", "'0044-03-15 12:00:00+00 BC'"),
    c("timestamptz", "'infinity'"),
    c("timestamptz", "'-infinity'"),
    zoned("Asia/Kolkata", "timestamptz", "'2024-01-02 03:04:05.5+00'"),
    zoned(
        "America/St_Johns",
        "timestamptz",
        "'2024-07-01 12:00:00+00'",
    ),
    zoned(
        "Europe/Amsterdam",
        "timestamptz",
        "'1900-01-01 00:00:00+00'",
    ),
    zoned(
        "America/Los_Angeles",
        "timestamptz",
        "'0044-03-15 12:00:00+00 BC'",
    ),
    zoned(
        "Asia/Kolkata",
        "tstzrange",
        "'[2024-01-01 00:00+00,2024-06-01 00:00+00)'",
    ),
    c("interval", "'1 year 2 mons -3 days -04:05:06.5'"),
    c("interval", "'-1 years -2 mons'"),
    c("interval", "'-1 days +02:03:00'"),
    c("interval", "'0'"),
    c("interval", "'1 day'"),
    c("interval", "'00:00:00.000001'"),
    // One microsecond short of PostgreSQL 17's `infinity` (all fields at their maximum; on
    // 14-16 that is a finite value, checked apart in `pre17_interval_extremes`). PostgreSQL
    // 14 keeps hours in an `int` when reading and printing intervals, so more than
    // 2147483647 hours is out of range there.
    since(
        15,
        c(
            "interval",
            "'178956970 years 7 mons 2147483647 days 2562047788:00:54.775806'",
        ),
    ),
    since(
        15,
        c(
            "interval",
            "'-178956970 years -8 mons -2147483648 days -2562047788:00:54.775807'",
        ),
    ),
    c(
        "interval",
        "'178956970 years 7 mons 2147483647 days 2147483647:59:59.999999'",
    ),
    c(
        "interval",
        "'-178956970 years -8 mons -2147483648 days -2147483647:59:59.999999'",
    ),
    since(17, c("interval", "'infinity'")),
    since(17, c("interval", "'-infinity'")),
    since(
        17,
        c(
            "interval[]",
            "ARRAY['infinity'::interval, '-infinity', '1 day']",
        ),
    ),
    since(
        15,
        c(
            "interval",
            "'-2562047788:00:54.775807'::interval - '00:00:00.000001'",
        ),
    ),
    c("inet", "'192.168.0.1'"),
    c("inet", "'192.168.0.1/24'"),
    c("inet", "'::1'"),
    c("inet", "'::'"),
    c("inet", "'::ffff:1.2.3.4'"),
    c("inet", "'::1.2.3.4'"),
    c("inet", "'2001:db8::1/64'"),
    c("inet", "'fe80::1:0:0:0'"),
    c("inet", "'1:0:0:2:0:0:0:3'"),
    c("cidr", "'10.0.0.0/8'"),
    c("cidr", "'10.1.2.3/32'"),
    c("cidr", "'2001:db8::/32'"),
    c("cidr", "'::/0'"),
    c("macaddr", "'08:00:2b:01:02:03'"),
    c("macaddr8", "'08:00:2b:01:02:03:04:05'"),
    c("bit(5)", "B'10110'"),
    c("varbit", "B'1'"),
    c("varbit", "B''"),
    c("varbit", "B'101010101'"),
    c("pg_lsn", "'16/B374D848'"),
    c("pg_lsn", "'0/0'"),
    c("int4[]", "'{1,2,3}'"),
    c("int4[]", "'{}'"),
    c("int4[]", "'[0:1]={1,2}'"),
    c("int4[]", "'{{1,2},{3,4}}'"),
    c("int4[]", "'{1,NULL}'"),
    c("int4[]", "'[-2:-1][3:4]={{1,NULL},{3,4}}'"),
    c("int4[]", "'{{{1},{2}},{{3},{4}}}'"),
    c(
        "text[]",
        "ARRAY['a b', 'NULL', '', NULL, 'x\"y\\z', 'é', '{}', 'a,b']",
    ),
    c("varchar[]", "'{a,b}'"),
    c("bpchar[]", "ARRAY['a'::char(3)]"),
    c("name[]", "'{pg_class}'"),
    c("\"char\"[]", "ARRAY['a'::\"char\", ','::\"char\"]"),
    c("numeric[]", "'{1.50,NaN,-Infinity}'"),
    c("float4[]", "'{NaN,-0,1.5}'"),
    c("float8[]", "'{NaN,-0,1e+300}'"),
    c("bool[]", "'{t,f,NULL}'"),
    c("int2[]", "'{1,-2}'"),
    c("int8[]", "'{9223372036854775807}'"),
    c("oid[]", "'{1,2}'"),
    c("xid[]", "'{1,2}'"),
    c("xid8[]", "'{1,2}'"),
    c("bytea[]", "ARRAY['\\x01ff'::bytea, '\\x'::bytea]"),
    c(
        "uuid[]",
        "ARRAY['a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid]",
    ),
    c("json[]", "ARRAY['[1, \"a\"]'::json]"),
    c("jsonb[]", "ARRAY['{\"a\": 1}'::jsonb]"),
    c("xml[]", "ARRAY['<a/>'::xml]"),
    c("date[]", "'{2024-02-29,\"0044-03-15 BC\",infinity}'"),
    c("time[]", "'{12:00:00.5}'"),
    c("timetz[]", "'{12:00:00+05:30}'"),
    c("timestamp[]", "'{\"2024-01-02 03:04:05\"}'"),
    c("timestamptz[]", "'{\"2024-01-02 03:04:05+00\",infinity}'"),
    c("interval[]", "ARRAY['1 day'::interval, '-00:00:01']"),
    c("inet[]", "'{::1,10.0.0.1/8}'"),
    c("cidr[]", "'{10.0.0.0/8}'"),
    c("macaddr[]", "'{08:00:2b:01:02:03}'"),
    c("macaddr8[]", "'{08:00:2b:01:02:03:04:05}'"),
    c("bit[]", "ARRAY[B'101']"),
    c("varbit[]", "ARRAY[B'1', B'']"),
    c("pg_lsn[]", "'{0/1,16/B374D848}'"),
    money("money[]", "'{1.5,-2}'"),
    c("int4range", "'[1,5)'"),
    c("int4range", "'empty'"),
    c("int4range", "'(,5)'"),
    c("int4range", "'[3,)'"),
    c("int4range", "'(,)'"),
    c("int8range", "'[-9223372036854775808,0)'"),
    c("numrange", "'(1.5,2.25]'"),
    c("numrange", "'[,)'"),
    c("tsrange", "'[2020-01-01,2020-01-02)'"),
    c("tstzrange", "'[2020-01-01 00:00+00,)'"),
    c("daterange", "'[2020-01-01,infinity)'"),
    c("daterange", "'[2020-01-01,2020-01-01]'"),
    c("int4range[]", "ARRAY[int4range(1, 3), 'empty']"),
    c("numrange[]", "ARRAY['[1.5,2)'::numrange]"),
    c("tsrange[]", "ARRAY['[2020-01-01,2020-01-02)'::tsrange]"),
    c("tstzrange[]", "ARRAY['[2020-01-01 00:00+00,)'::tstzrange]"),
    c("daterange[]", "ARRAY['[2020-01-01,2020-02-01)'::daterange]"),
    c("int8range[]", "ARRAY['[1,2)'::int8range]"),
    c("int4multirange", "'{[1,3), [5,7]}'"),
    c("int4multirange", "'{}'"),
    c("int8multirange", "'{[1,3)}'"),
    c("nummultirange", "'{[1.5,2.5), (3,)}'"),
    c("tsmultirange", "'{[2020-01-01,2020-01-02)}'"),
    c(
        "tstzmultirange",
        "'{[2020-01-01 00:00+00,2020-01-02 00:00+00)}'",
    ),
    c(
        "datemultirange",
        "'{[2020-01-01,2020-01-05), [2020-02-01,)}'",
    ),
    c("int4multirange[]", "ARRAY['{[1,3)}'::int4multirange, '{}']"),
    c("nummultirange[]", "ARRAY['{[1,2)}'::nummultirange]"),
    c("tsmultirange[]", "ARRAY['{}'::tsmultirange]"),
    c("tstzmultirange[]", "ARRAY['{}'::tstzmultirange]"),
    c("datemultirange[]", "ARRAY['{}'::datemultirange]"),
    c("int8multirange[]", "ARRAY['{}'::int8multirange]"),
    c("mood", "'happy'"),
    c("mood[]", "ARRAY['sad', 'happy']::mood[]"),
    c("posint", "5"),
    c("posint[]", "ARRAY[1, 2]::posint[]"),
    c("floatrange", "'[1.5,2.5)'"),
    c("floatmultirange", "'{[1,2), [3,4)}'"),
    c("textrange", "'[\"a b\",\"c,d\")'"),
    c("textrange", "textrange('', 'x\"y\\z', '[]')"),
    c("moodrange", "'[sad,happy]'"),
    c("pair", "ROW(1, 'x y')"),
    c("pair", "ROW(NULL, '')"),
    c("pair", "ROW(-2, 'q\"u,o(t)e\\s')"),
    c(
        "pair[]",
        "ARRAY[ROW(1, 'a b')::pair, NULL, ROW(NULL, NULL)::pair]",
    ),
    c(
        "rich",
        "ROW('happy', ARRAY['x', NULL, 'y z'], int4range(1, 5), ROW(7, 'p q')::pair, 3, 1.50)",
    ),
    c("rich", "ROW(NULL, NULL, NULL, NULL, NULL, NULL)"),
];

/// The name → constant table checked against `pg_type`.
const OIDS: &[(&str, Oid)] = &[
    ("bool", Oid::BOOL),
    ("bytea", Oid::BYTEA),
    ("\"char\"", Oid::CHAR),
    ("name", Oid::NAME),
    ("int8", Oid::INT8),
    ("int2", Oid::INT2),
    ("int4", Oid::INT4),
    ("text", Oid::TEXT),
    ("oid", Oid::OID),
    ("xid", Oid::XID),
    ("json", Oid::JSON),
    ("xml", Oid::XML),
    ("cidr", Oid::CIDR),
    ("float4", Oid::FLOAT4),
    ("float8", Oid::FLOAT8),
    ("macaddr8", Oid::MACADDR8),
    ("money", Oid::MONEY),
    ("macaddr", Oid::MACADDR),
    ("inet", Oid::INET),
    ("bpchar", Oid::BPCHAR),
    ("varchar", Oid::VARCHAR),
    ("date", Oid::DATE),
    ("time", Oid::TIME),
    ("timestamp", Oid::TIMESTAMP),
    ("timestamptz", Oid::TIMESTAMPTZ),
    ("interval", Oid::INTERVAL),
    ("timetz", Oid::TIMETZ),
    ("bit", Oid::BIT),
    ("varbit", Oid::VARBIT),
    ("numeric", Oid::NUMERIC),
    ("uuid", Oid::UUID),
    ("pg_lsn", Oid::PG_LSN),
    ("jsonb", Oid::JSONB),
    ("xid8", Oid::XID8),
    ("int4range", Oid::INT4RANGE),
    ("numrange", Oid::NUMRANGE),
    ("tsrange", Oid::TSRANGE),
    ("tstzrange", Oid::TSTZRANGE),
    ("daterange", Oid::DATERANGE),
    ("int8range", Oid::INT8RANGE),
    ("int4multirange", Oid::INT4MULTIRANGE),
    ("nummultirange", Oid::NUMMULTIRANGE),
    ("tsmultirange", Oid::TSMULTIRANGE),
    ("tstzmultirange", Oid::TSTZMULTIRANGE),
    ("datemultirange", Oid::DATEMULTIRANGE),
    ("int8multirange", Oid::INT8MULTIRANGE),
    ("bool[]", Oid::BOOL_ARRAY),
    ("bytea[]", Oid::BYTEA_ARRAY),
    ("\"char\"[]", Oid::CHAR_ARRAY),
    ("name[]", Oid::NAME_ARRAY),
    ("int2[]", Oid::INT2_ARRAY),
    ("int4[]", Oid::INT4_ARRAY),
    ("text[]", Oid::TEXT_ARRAY),
    ("xid[]", Oid::XID_ARRAY),
    ("bpchar[]", Oid::BPCHAR_ARRAY),
    ("varchar[]", Oid::VARCHAR_ARRAY),
    ("int8[]", Oid::INT8_ARRAY),
    ("float4[]", Oid::FLOAT4_ARRAY),
    ("float8[]", Oid::FLOAT8_ARRAY),
    ("oid[]", Oid::OID_ARRAY),
    ("macaddr[]", Oid::MACADDR_ARRAY),
    ("inet[]", Oid::INET_ARRAY),
    ("timestamp[]", Oid::TIMESTAMP_ARRAY),
    ("date[]", Oid::DATE_ARRAY),
    ("time[]", Oid::TIME_ARRAY),
    ("timestamptz[]", Oid::TIMESTAMPTZ_ARRAY),
    ("interval[]", Oid::INTERVAL_ARRAY),
    ("numeric[]", Oid::NUMERIC_ARRAY),
    ("timetz[]", Oid::TIMETZ_ARRAY),
    ("bit[]", Oid::BIT_ARRAY),
    ("varbit[]", Oid::VARBIT_ARRAY),
    ("uuid[]", Oid::UUID_ARRAY),
    ("pg_lsn[]", Oid::PG_LSN_ARRAY),
    ("jsonb[]", Oid::JSONB_ARRAY),
    ("json[]", Oid::JSON_ARRAY),
    ("xml[]", Oid::XML_ARRAY),
    ("cidr[]", Oid::CIDR_ARRAY),
    ("macaddr8[]", Oid::MACADDR8_ARRAY),
    ("money[]", Oid::MONEY_ARRAY),
    ("xid8[]", Oid::XID8_ARRAY),
    ("int4range[]", Oid::INT4RANGE_ARRAY),
    ("numrange[]", Oid::NUMRANGE_ARRAY),
    ("tsrange[]", Oid::TSRANGE_ARRAY),
    ("tstzrange[]", Oid::TSTZRANGE_ARRAY),
    ("daterange[]", Oid::DATERANGE_ARRAY),
    ("int8range[]", Oid::INT8RANGE_ARRAY),
    ("int4multirange[]", Oid::INT4MULTIRANGE_ARRAY),
    ("nummultirange[]", Oid::NUMMULTIRANGE_ARRAY),
    ("tsmultirange[]", Oid::TSMULTIRANGE_ARRAY),
    ("tstzmultirange[]", Oid::TSTZMULTIRANGE_ARRAY),
    ("datemultirange[]", Oid::DATEMULTIRANGE_ARRAY),
    ("int8multirange[]", Oid::INT8MULTIRANGE_ARRAY),
];

const SETUP: &str = r#"
SET client_encoding = 'UTF8';
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN posint AS int4 CHECK (VALUE > 0);
CREATE TYPE floatrange AS RANGE (subtype = float8);
CREATE TYPE textrange AS RANGE (subtype = text, collation = "C");
CREATE TYPE moodrange AS RANGE (subtype = mood);
CREATE TYPE pair AS (a int4, b text);
CREATE TYPE rich AS (m mood, tags text[], r int4range, p pair, d posint, gone int4, n numeric);
ALTER TYPE rich DROP ATTRIBUTE gone;
CREATE FUNCTION send_hex(v anyelement) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
  f regproc;
  r text;
BEGIN
  SELECT typsend INTO f FROM pg_type WHERE oid = pg_typeof(v);
  EXECUTE format('SELECT encode(%s($1), ''hex'')', f) INTO r USING v;
  RETURN r;
END $$;
"#;

fn registry(cluster: &Cluster) -> TypeRegistry {
    let rows = psql(
        cluster,
        "SELECT t.typname, t.oid, t.typtype, t.typbasetype, t.typarray, \
                coalesce(r.rngsubtype, 0), coalesce(r.rngmultitypid, 0), coalesce(r.rngmultitypid, 0) \
         FROM pg_type t LEFT JOIN pg_range r ON r.rngtypid = t.oid \
         WHERE t.typname IN ('mood', 'posint', 'floatrange', 'textrange', 'moodrange') ORDER BY 1;",
    );
    let mut reg = TypeRegistry::new();
    for row in rows {
        let f: Vec<&str> = row.split('|').collect();
        let oid = Oid(f[1].parse().unwrap());
        let array = Oid(f[4].parse().unwrap());
        match f[2] {
            "e" => reg.register(oid, TypeKind::Enum),
            "d" => reg.register(
                oid,
                TypeKind::Domain {
                    base: Oid(f[3].parse().unwrap()),
                },
            ),
            "r" => {
                reg.register(
                    oid,
                    TypeKind::Range {
                        subtype: Oid(f[5].parse().unwrap()),
                    },
                );
                let multi = Oid(f[6].parse().unwrap());
                reg.register(multi, TypeKind::Multirange { range: oid });
            }
            other => panic!("unexpected typtype {other}"),
        }
        reg.register(array, TypeKind::Array { element: oid });
    }
    // Composites with their attributes (dropped ones left out).
    let attrs = psql(
        cluster,
        "SELECT t.oid, t.typarray, a.attname, a.atttypid FROM pg_type t \
         JOIN pg_attribute a ON a.attrelid = t.typrelid \
         WHERE t.typname IN ('pair', 'rich') AND a.attnum > 0 AND NOT a.attisdropped \
         ORDER BY t.oid, a.attnum;",
    );
    let mut composites: Vec<(Oid, Oid, Vec<CompositeField>)> = Vec::new();
    for row in attrs {
        let f: Vec<&str> = row.split('|').collect();
        let oid = Oid(f[0].parse().unwrap());
        let field = CompositeField::new(f[2], Oid(f[3].parse().unwrap()));
        match composites.last_mut() {
            Some((o, _, fields)) if *o == oid => fields.push(field),
            _ => composites.push((oid, Oid(f[1].parse().unwrap()), vec![field])),
        }
    }
    assert_eq!(composites.len(), 2);
    for (oid, array, fields) in composites {
        reg.register_composite(oid, fields);
        reg.register(array, TypeKind::Array { element: oid });
    }
    // Arrays of the multiranges are not needed by the cases; the multiranges themselves are.
    reg
}

#[test]
fn values_match_postgres() {
    for_each_server(check_server);
}

fn check_server(install: &PgInstall) {
    let major = install.major;
    let cluster = Cluster::start(install, ClusterOptions::new()).expect("start a cluster");
    psql(&cluster, SETUP);

    // Every OID constant against the catalog.
    let mut script = String::new();
    for (name, _) in OIDS {
        script.push_str(&format!(
            "SELECT '{}'::regtype::oid;\n",
            name.replace('\'', "''")
        ));
    }
    let got = psql(&cluster, &script);
    assert_eq!(got.len(), OIDS.len());
    for ((name, oid), line) in OIDS.iter().zip(&got) {
        assert_eq!(
            line.parse::<u32>().unwrap(),
            oid.0,
            "OID constant for {name}"
        );
    }

    let types = registry(&cluster);

    let mut script = String::from(
        "SET DateStyle = 'ISO'; SET IntervalStyle = 'postgres'; SET extra_float_digits = 1; \
         SET bytea_output = 'hex'; SET lc_monetary = 'C';\n",
    );
    let cases: Vec<&Case> = CASES.iter().filter(|c| c.majors.contains(&major)).collect();
    for case in &cases {
        script.push_str(&format!(
            "SET TimeZone = '{}'; SELECT pg_typeof(v)::oid, encode(textsend(format('%s', v)), 'hex'), \
             send_hex(v) FROM (SELECT ({})::{} AS v) s;\n",
            case.tz, case.expr, case.ty
        ));
    }
    let rows = psql(&cluster, &script);
    assert_eq!(rows.len(), cases.len(), "one output row per case");

    // With WALSTREAM_WRITE_VALUE_SEEDS=<fuzz dir>, record every built-in case as fuzz seeds:
    // the 2-byte index of the type in `builtin_type_oids()`, then the server's bytes.
    let seed_dir = std::env::var_os("WALSTREAM_WRITE_VALUE_SEEDS").map(PathBuf::from);
    let mut failures = Vec::new();
    for (n, (case, row)) in cases.iter().zip(&rows).enumerate() {
        if let Some(dir) = &seed_dir {
            let f: Vec<&str> = row.split('|').collect();
            let oid = Oid(f[0].parse().unwrap());
            if let Some(i) = walstream_proto::builtin_type_oids()
                .iter()
                .position(|o| *o == oid)
            {
                let idx = u16::try_from(i).unwrap().to_be_bytes();
                for (target, hex) in [("values", f[1]), ("values_binary", f[2])] {
                    let mut seed = idx.to_vec();
                    seed.extend_from_slice(&unhex(hex));
                    let path = dir
                        .join("corpus")
                        .join(target)
                        .join(format!("pg{major}-{n:03}"));
                    std::fs::write(path, seed).unwrap();
                }
            }
        }
        let f: Vec<&str> = row.split('|').collect();
        let oid = Oid(f[0].parse().unwrap());
        // The output function's bytes as they are (`textsend` does not validate them).
        let server_bytes = unhex(f[1]);
        let server_text = String::from_utf8_lossy(&server_bytes).into_owned();
        let binary = unhex(f[2]);
        let what = format!("{}::{} (server text {server_text:?})", case.expr, case.ty);
        let txt = types.decode(oid, ValueFormat::Text, Bytes::from(server_bytes));
        let bin = types.decode(oid, ValueFormat::Binary, Bytes::from(binary));
        let (txt, bin) = match (txt, bin) {
            (Ok(t), Ok(b)) => (t, b),
            (t, b) => {
                failures.push(format!("{what}: decode failed: text {t:?}, binary {b:?}"));
                continue;
            }
        };
        if matches!(txt, Value::Unknown { .. }) || matches!(bin, Value::Unknown { .. }) {
            failures.push(format!("{what}: decoded as unknown"));
            continue;
        }
        if let Check::Value(expected) = case.check {
            for (name, v) in [("text", &txt), ("binary", &bin)] {
                if v.to_string() != expected {
                    failures.push(format!(
                        "{what}: {name}-decoded displays as {v}, not {expected}"
                    ));
                }
            }
        } else if case.check != Check::SameInstant {
            if txt.to_string() != server_text {
                failures.push(format!(
                    "{what}: text-decoded displays as {:?}",
                    txt.to_string()
                ));
            }
            if bin.to_string() != server_text {
                failures.push(format!(
                    "{what}: binary-decoded displays as {:?}",
                    bin.to_string()
                ));
            }
        }
        if case.check != Check::DisplayOnly && format!("{txt:?}") != format!("{bin:?}") {
            failures.push(format!(
                "{what}: text and binary disagree:\n  text   {txt:?}\n  binary {bin:?}"
            ));
        }
        // The JSON rendering is produced for every value without panicking and is never empty.
        assert!(!txt.to_json().is_empty());
    }
    assert!(
        failures.is_empty(),
        "PostgreSQL {}: {} of {} cases failed:\n{}",
        install.version,
        failures.len(),
        cases.len(),
        failures.join("\n")
    );

    // A type nobody registered is kept as received, text and binary alike.
    let rows = psql(
        &cluster,
        "SELECT pg_typeof(v)::oid, encode(convert_to(v::text, 'UTF8'), 'hex'), encode(point_send(v), 'hex') \
         FROM (SELECT '(1,2)'::point AS v) s;",
    );
    let f: Vec<&str> = rows[0].split('|').collect();
    let oid = Oid(f[0].parse().unwrap());
    let t = types
        .decode(oid, ValueFormat::Text, Bytes::from(unhex(f[1])))
        .unwrap();
    assert_eq!(
        t,
        Value::Unknown {
            format: ValueFormat::Text,
            bytes: Bytes::from_static(b"(1,2)")
        }
    );
    assert_eq!(t.to_string(), "(1,2)");
    let b = types
        .decode(oid, ValueFormat::Binary, Bytes::from(unhex(f[2])))
        .unwrap();
    assert_eq!(b.as_bytes().map(|b| b.len()), Some(16));

    if major < 17 {
        pre17_interval_extremes(&cluster, major);
    }
}

/// Before PostgreSQL 17 the interval with every field at its maximum (minimum) was a finite
/// value; 17 made exactly those bit patterns `infinity` (`-infinity`). The binary form is the
/// same on every version, so walstream reads them as the infinities (documented on
/// `PgInterval`): check that this is the only difference. (PostgreSQL 14 cannot print them,
/// more than 2147483647 hours; they are built by addition there and only sent.)
fn pre17_interval_extremes(cluster: &Cluster, major: u32) {
    let values = "('178956970 years 7 mons 2147483647 days'::interval + '2147483647 hours' \
                  + '414564141 hours' + '54.775807 seconds'), \
                  ('-178956970 years -8 mons -2147483648 days'::interval - '2147483647 hours' \
                  - '414564141 hours' - '54.775808 seconds')";
    let text = if major >= 15 { "format('%s', v)" } else { "''" };
    let rows = psql(
        cluster,
        &format!(
            "SET IntervalStyle = 'postgres'; \
             SELECT {text}, encode(interval_send(v), 'hex') FROM (VALUES {values}) t(v);"
        ),
    );
    assert_eq!(rows.len(), 2);
    let finite_text = [
        "178956970 years 7 mons 2147483647 days 2562047788:00:54.775807",
        "-178956970 years -8 mons -2147483648 days -2562047788:00:54.775808",
    ];
    for ((row, expected), finite) in rows
        .iter()
        .zip([PgInterval::INFINITY, PgInterval::NEG_INFINITY])
        .zip(finite_text)
    {
        let (text, hex) = row.split_once('|').unwrap();
        let mut inputs = vec![(ValueFormat::Binary, Bytes::from(unhex(hex)))];
        if major >= 15 {
            assert_eq!(text, finite, "the finite extreme before 17");
            inputs.push((ValueFormat::Text, Bytes::from(text.to_owned())));
        }
        for (format, bytes) in inputs {
            let v = walstream_proto::decode_value(Oid::INTERVAL, format, bytes).unwrap();
            assert_eq!(v, Value::Interval(expected), "{finite} ({format:?})");
        }
    }
}
