//! The workloads: a table, a publication and the SQL that fills a slot's backlog.

use std::fmt::Write as _;

/// One workload of the benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scenario {
    /// Narrow inserts (bigserial, int, short text).
    Narrow,
    /// Wide rows: 20 columns of mixed types.
    Wide,
    /// Rows with a 2 KB text column.
    Text2k,
    /// Inserts, updates and deletes with `REPLICA IDENTITY FULL`.
    Mixed,
    /// One large transaction, consumed with protocol 2 streaming by walstream.
    BigTx,
}

impl Scenario {
    pub(crate) const ALL: [Self; 5] = [
        Self::Narrow,
        Self::Wide,
        Self::Text2k,
        Self::Mixed,
        Self::BigTx,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Narrow => "narrow",
            Self::Wide => "wide",
            Self::Text2k => "text2k",
            Self::Mixed => "mixed",
            Self::BigTx => "bigtx",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.name() == s)
    }

    /// A short description for the tables.
    pub(crate) fn describe(self, rows: u64) -> String {
        match self {
            Self::Narrow => format!("{rows} narrow inserts (bigserial, int, short text)"),
            Self::Wide => format!("{rows} wide rows (20 mixed columns)"),
            Self::Text2k => format!("{rows} rows with a 2 KB text"),
            Self::Mixed => {
                format!("{rows} mixed insert/update/delete, REPLICA IDENTITY FULL")
            }
            Self::BigTx => format!("one {rows}-row transaction, protocol v2 streaming"),
        }
    }

    /// Row changes at scale 1.
    fn base_rows(self) -> u64 {
        match self {
            Self::Narrow | Self::BigTx => 1_000_000,
            Self::Wide | Self::Text2k => 200_000,
            Self::Mixed => 300_000,
        }
    }

    /// Row changes (the events counted) at `scale`: at least 3, and a multiple of 3 for the
    /// mixed workload (one insert, one update and one delete per key).
    pub(crate) fn rows(self, scale: f64) -> u64 {
        let scaled = (self.base_rows() as f64 * scale).round();
        let rows = if scaled.is_finite() && scaled >= 3.0 {
            scaled as u64
        } else {
            3
        };
        match self {
            Self::Mixed => rows - rows % 3,
            _ => rows,
        }
    }

    pub(crate) fn table(self) -> String {
        format!("bench_{}", self.name())
    }

    pub(crate) fn publication(self) -> String {
        format!("bench_pub_{}", self.name())
    }

    /// The slot every run copies.
    pub(crate) fn base_slot(self) -> String {
        format!("bench_base_{}", self.name())
    }

    /// Whether walstream consumes this workload with protocol 2 and `streaming = on`.
    pub(crate) fn streamed(self) -> bool {
        self == Self::BigTx
    }

    /// Creates the table and its publication.
    pub(crate) fn setup_sql(self) -> String {
        let t = self.table();
        let columns = match self {
            Self::Narrow | Self::BigTx => "id bigserial PRIMARY KEY, n int NOT NULL, t text",
            Self::Text2k => "id bigserial PRIMARY KEY, n int NOT NULL, body text",
            Self::Mixed => "id int PRIMARY KEY, n int NOT NULL, t text",
            Self::Wide => {
                "id bigserial PRIMARY KEY, c_int int, c_big bigint, c_small smallint, \
                 c_num numeric(14,2), c_f8 float8, c_f4 real, c_bool bool, c_text text, \
                 c_vc varchar(40), c_ts timestamptz, c_tsn timestamp, c_date date, c_time time, \
                 c_uuid uuid, c_json jsonb, c_bytea bytea, c_arr int[], c_inet inet, \
                 c_interval interval"
            }
        };
        let mut sql = format!("CREATE TABLE {t} ({columns});\n");
        if self == Self::Mixed {
            let _ = writeln!(sql, "ALTER TABLE {t} REPLICA IDENTITY FULL;");
        }
        if self == Self::Text2k {
            // Keep the text uncompressed in the heap's TOAST table: the stream carries it
            // whole either way; this keeps the fill fast.
            let _ = writeln!(
                sql,
                "ALTER TABLE {t} ALTER COLUMN body SET STORAGE EXTERNAL;"
            );
        }
        let _ = writeln!(
            sql,
            "CREATE PUBLICATION {} FOR TABLE {t};",
            self.publication()
        );
        sql
    }

    /// Fills the backlog with `rows` row changes in transactions of `txn_rows` rows (one
    /// transaction for [`Scenario::BigTx`]).
    pub(crate) fn fill_sql(self, rows: u64, txn_rows: u64) -> String {
        let t = self.table();
        let txn_rows = txn_rows.max(1);
        let select = |lo: &str, hi: &str| -> String {
            match self {
                Self::Narrow | Self::BigTx => format!(
                    "INSERT INTO {t} (n, t) SELECT g, 'row ' || g FROM generate_series({lo}, {hi}) g;"
                ),
                Self::Text2k => format!(
                    "INSERT INTO {t} (n, body) SELECT g, repeat(md5(g::text), 64) \
                     FROM generate_series({lo}, {hi}) g;"
                ),
                Self::Wide => format!(
                    "INSERT INTO {t} (c_int, c_big, c_small, c_num, c_f8, c_f4, c_bool, c_text, \
                     c_vc, c_ts, c_tsn, c_date, c_time, c_uuid, c_json, c_bytea, c_arr, c_inet, \
                     c_interval) SELECT g, g::bigint * 1000003, (g % 30000)::smallint, \
                     g * 1.25, g / 3.0, g / 7.0, g % 2 = 0, 'text value ' || g, \
                     'vc-' || g, timestamptz '2024-01-01 00:00:00+00' + g * interval '1 s', \
                     timestamp '2024-01-01' + g * interval '1 min', date '2000-01-01' + g % 9000, \
                     time '00:00' + (g % 86400) * interval '1 s', md5(g::text)::uuid, \
                     jsonb_build_object('g', g, 's', 'x' || g), decode(md5(g::text), 'hex'), \
                     ARRAY[g, g + 1, g + 2], ('10.' || g % 256 || '.' || g / 256 % 256 || '.1')::inet, \
                     make_interval(secs => g) FROM generate_series({lo}, {hi}) g;"
                ),
                Self::Mixed => format!(
                    "INSERT INTO {t} (id, n, t) SELECT g, g, 'row ' || g FROM generate_series({lo}, {hi}) g; \
                     COMMIT; UPDATE {t} SET n = n + 1, t = t || ' updated' WHERE id BETWEEN {lo} AND {hi}; \
                     COMMIT; DELETE FROM {t} WHERE id BETWEEN {lo} AND {hi};"
                ),
            }
        };
        match self {
            Self::BigTx => select("1", &rows.to_string()),
            _ => {
                // Mixed: each key makes three row changes.
                let keys = if self == Self::Mixed { rows / 3 } else { rows };
                let per = if self == Self::Mixed {
                    (txn_rows / 3).max(1)
                } else {
                    txn_rows
                };
                let batches = keys.div_ceil(per);
                let body = select(
                    &format!("b * {per} + 1"),
                    &format!("LEAST((b + 1) * {per}, {keys})"),
                );
                format!(
                    "DO $bench$ BEGIN FOR b IN 0..{} LOOP {body} COMMIT; END LOOP; END $bench$;",
                    batches.saturating_sub(1)
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_scale_and_stay_usable() {
        assert_eq!(Scenario::Narrow.rows(1.0), 1_000_000);
        assert_eq!(Scenario::Wide.rows(0.1), 20_000);
        assert_eq!(Scenario::Mixed.rows(0.1), 30_000);
        assert_eq!(Scenario::Mixed.rows(0.0001) % 3, 0);
        assert_eq!(Scenario::Narrow.rows(0.0), 3);
        assert_eq!(Scenario::Narrow.rows(f64::NAN), 3);
    }

    #[test]
    fn fill_sql_batches_cover_every_row() {
        let sql = Scenario::Narrow.fill_sql(1050, 100);
        assert!(sql.contains("FOR b IN 0..10 LOOP"), "{sql}");
        assert!(sql.contains("LEAST((b + 1) * 100, 1050)"), "{sql}");
        let mixed = Scenario::Mixed.fill_sql(300, 30);
        assert!(mixed.contains("FOR b IN 0..9 LOOP"), "{mixed}");
        assert!(mixed.contains("LEAST((b + 1) * 10, 100)"), "{mixed}");
        let big = Scenario::BigTx.fill_sql(500, 100);
        assert!(!big.contains("COMMIT"), "{big}");
        assert!(big.contains("generate_series(1, 500)"), "{big}");
    }

    #[test]
    fn names_round_trip() {
        for s in Scenario::ALL {
            assert_eq!(Scenario::parse(s.name()), Some(s));
        }
        assert_eq!(Scenario::parse("nope"), None);
        assert!(
            Scenario::Mixed
                .setup_sql()
                .contains("REPLICA IDENTITY FULL")
        );
    }
}
