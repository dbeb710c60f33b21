#!/usr/bin/env bash
# Captures the benchmark inputs: replication captures (u32 big-endian length + one XLogData
# `CopyData` payload per frame) of three insert workloads, from a throwaway PostgreSQL cluster.
#
#   PGBIN=/usr/lib/postgresql/15/bin PORT=25460 ./capture-bench.sh
#
# Each frame is the exact payload a walsender sends for a logical change: `w`, Int64 WAL start
# and Int64 WAL end (both the change's LSN, as walsender writes them), Int64 send time, then the
# pgoutput message (protocol 1, text format). The SQL below assembles it from
# pg_logical_slot_peek_binary_changes(), so no client code is involved.
#
# - replication-v1-narrow-inserts.bin: 2000 rows of (bigint, int, text) in 20 transactions;
# - replication-v1-wide-rows.bin: 400 rows of 16 mixed-type columns in 4 transactions;
# - replication-v1-text-2k.bin: 100 rows of (int, 2048-byte text) in 2 transactions.
#
# OUT=dir writes the files there instead. When run as root the server runs as `postgres`.
set -euo pipefail

PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
PORT=${PORT:-25460}
OUT=${OUT:-$(cd "$(dirname "$0")" && pwd)}
WORK=$(mktemp -d /tmp/pgo-bench-capture.XXXXXX)
DATA=$WORK/data
SOCK=$WORK/sock

as_pg() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

if [ "$(id -u)" = 0 ]; then chown postgres "$WORK"; fi
as_pg mkdir -p "$SOCK"
as_pg "$PGBIN/initdb" -D "$DATA" -U postgres --auth=trust --encoding=UTF8 --locale=C >/dev/null
cat >>"$DATA/postgresql.conf" <<CONF
port = $PORT
listen_addresses = ''
unix_socket_directories = '$SOCK'
wal_level = logical
max_replication_slots = 10
fsync = off
CONF
as_pg "$PGBIN/pg_ctl" -D "$DATA" -l "$WORK/server.log" -w start >/dev/null
cleanup() {
    as_pg "$PGBIN/pg_ctl" -D "$DATA" -m immediate -w stop >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT

psql_run() {
    as_pg "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$SOCK" -p "$PORT" -U postgres -d postgres -At "$@"
}

capture() { # file slot publication
    local file=$1 slot=$2 publication=$3
    psql_run -c "SELECT encode(int4send(25 + length(data)) || 'w'::bytea
                     || int8send((lsn - '0/0')::bigint) || int8send((lsn - '0/0')::bigint)
                     || int8send((extract(epoch FROM clock_timestamp()
                                  - '2000-01-01 00:00:00+00'::timestamptz) * 1000000)::bigint)
                     || data, 'hex')
                 FROM pg_logical_slot_peek_binary_changes('$slot', NULL, NULL,
                      'proto_version', '1', 'publication_names', '$publication')" |
        xxd -r -p >"$OUT/$file"
    echo "$file: $(stat -c %s "$OUT/$file") bytes"
}

psql_run >/dev/null <<'SQL'
CREATE TABLE t_narrow (id bigint PRIMARY KEY, qty int, label text);
CREATE PUBLICATION p_narrow FOR TABLE t_narrow;
CREATE TABLE t_wide (
    id bigint PRIMARY KEY, account int, flags smallint, active bool, amount numeric(12, 2),
    ratio float8, name text, code varchar(16), created timestamptz, day date, ref uuid,
    attrs jsonb, note text, score int, updated timestamp, tag text);
CREATE PUBLICATION p_wide FOR TABLE t_wide;
CREATE TABLE t_text (id int PRIMARY KEY, body text);
CREATE PUBLICATION p_text FOR TABLE t_text;
SELECT pg_create_logical_replication_slot('s_narrow', 'pgoutput');
SELECT pg_create_logical_replication_slot('s_wide', 'pgoutput');
SELECT pg_create_logical_replication_slot('s_text', 'pgoutput');
SQL
for batch in $(seq 0 19); do
    psql_run -c "INSERT INTO t_narrow SELECT g, g % 97, 'item-' || g
                 FROM generate_series($((batch * 100 + 1)), $((batch * 100 + 100))) g"
done
for batch in $(seq 0 3); do
    psql_run -c "INSERT INTO t_wide SELECT g, g % 10007, (g % 7)::smallint, g % 3 = 0,
                     (g * 17.31)::numeric(12, 2), g / 7.0, 'customer ' || g, 'C-' || (g % 911),
                     '2024-03-01 12:00:00+00'::timestamptz + g * interval '37 seconds',
                     '2024-03-01'::date + g % 365, md5(g::text)::uuid,
                     jsonb_build_object('k', g, 'tier', g % 4), 'note for row ' || g, g * 3,
                     '2024-03-01 12:00:00'::timestamp + g * interval '1 minute', 'tag' || (g % 13)
                 FROM generate_series($((batch * 100 + 1)), $((batch * 100 + 100))) g"
done
for batch in $(seq 0 1); do
    psql_run -c "INSERT INTO t_text SELECT g,
                     substr(repeat(md5(g::text) || md5((g + 1)::text), 32), 1, 2048)
                 FROM generate_series($((batch * 50 + 1)), $((batch * 50 + 50))) g"
done
capture replication-v1-narrow-inserts.bin s_narrow p_narrow
capture replication-v1-wide-rows.bin s_wide p_wide
capture replication-v1-text-2k.bin s_text p_text
psql_run -c "SELECT 'server_version=' || current_setting('server_version_num')"
