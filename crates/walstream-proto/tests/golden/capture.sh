#!/usr/bin/env bash
# Captures pgoutput golden frames from a throwaway PostgreSQL cluster.
#
# Writes, next to this script, one capture file per protocol variant (the frame format is a
# u32 big-endian length followed by the payload, repeated) plus pgoutput-meta.txt with the
# server version and the transaction ids the tests check.
#
#   PGBIN=/usr/lib/postgresql/15/bin PORT=25420 ./capture.sh
#
# OUT=dir writes the files there instead. pgoutput-v1-narrow-inserts.bin (bare pgoutput:
# 2000 narrow inserts in 20 transactions, decoded by a slot of its own) is written last.
#
# PostgreSQL refuses to run as root; when run as root the server and psql run as `postgres`.
# PostgreSQL 15 has protocol versions 1-3 only; protocol 4 (streaming = parallel) needs 16+.
set -euo pipefail

PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
PORT=${PORT:-25420}
OUT=${OUT:-$(cd "$(dirname "$0")" && pwd)}
WORK=$(mktemp -d /tmp/pgo-capture.XXXXXX)
DATA=$WORK/data
SOCK=$WORK/sock

as_pg() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

if [ "$(id -u)" = 0 ]; then chown postgres "$WORK"; fi
as_pg mkdir -p "$SOCK"
as_pg "$PGBIN/initdb" -D "$DATA" -U postgres --auth=trust --encoding=UTF8 --locale=C >/dev/null
cat >>"$DATA/postgresql.conf" <<EOF
port = $PORT
listen_addresses = ''
unix_socket_directories = '$SOCK'
wal_level = logical
max_prepared_transactions = 10
max_replication_slots = 10
logical_decoding_work_mem = 64kB
fsync = off
EOF
as_pg "$PGBIN/pg_ctl" -D "$DATA" -l "$WORK/server.log" -w start >/dev/null
cleanup() {
    as_pg "$PGBIN/pg_ctl" -D "$DATA" -m immediate -w stop >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT

psql_run() {
    as_pg "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$SOCK" -p "$PORT" -U postgres -d postgres -At "$@"
}

psql_run >/dev/null <<'SQL'
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE TABLE t_default (id int PRIMARY KEY, name text, big text);
ALTER TABLE t_default ALTER COLUMN big SET STORAGE EXTERNAL;
CREATE TABLE t_full (id int PRIMARY KEY, v text, big text);
ALTER TABLE t_full REPLICA IDENTITY FULL;
ALTER TABLE t_full ALTER COLUMN big SET STORAGE EXTERNAL;
CREATE TABLE t_types (
    id serial PRIMARY KEY, b bool, i2 int2, i8 int8, n numeric(10, 2), f8 float8,
    ts timestamptz, d date, u uuid, j jsonb, ba bytea, arr int[], m mood,
    vc varchar(20), tnull text);
CREATE TABLE t_parent (id int PRIMARY KEY);
CREATE TABLE t_child (id serial PRIMARY KEY, pid int REFERENCES t_parent (id));
CREATE TABLE t_big (id int, payload text);
CREATE PUBLICATION p FOR ALL TABLES;
SELECT 'init', pg_create_logical_replication_slot('s1', 'pgoutput');
SELECT 'init', pg_create_logical_replication_slot('s2', 'pgoutput', false, true);
SQL

meta() { echo "$1=$2" >>"$OUT/pgoutput-meta.txt"; }
: >"$OUT/pgoutput-meta.txt"
meta server_version "$(psql_run -c 'SHOW server_version_num')"

# Plain DML: insert, update without and with a key change, unchanged TOAST, FULL identity.
psql_run >/dev/null <<'SQL'
INSERT INTO t_default VALUES (1, 'a', repeat('x', 3000));
UPDATE t_default SET name = 'b' WHERE id = 1;
UPDATE t_default SET id = 2 WHERE id = 1;
INSERT INTO t_full VALUES (1, 'v1', repeat('y', 3000));
UPDATE t_full SET v = 'v2' WHERE id = 1;
DELETE FROM t_default WHERE id = 2;
DELETE FROM t_full WHERE id = 1;
INSERT INTO t_types (b, i2, i8, n, f8, ts, d, u, j, ba, arr, m, vc, tnull) VALUES
    (true, -2, 9000000000, 12.34, 1.5, '2024-02-29 12:34:56.789+00', '2024-02-29',
     'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{"k": [1, 2]}', '\x00ff', '{1,2,3}', 'happy',
     'varchar', NULL);
INSERT INTO t_parent VALUES (1);
INSERT INTO t_child (pid) VALUES (1);
TRUNCATE t_parent, t_child RESTART IDENTITY CASCADE;
TRUNCATE t_types;
SELECT 'msg', pg_logical_emit_message(true, 'walstream', 'transactional content');
SELECT 'msg', pg_logical_emit_message(false, 'walstream-nt', '\x00ff01'::bytea);
SQL

# A transaction large enough to be streamed, with a transactional message, a Type and a
# Truncate inside; its xid is recorded.
psql_run <<'SQL' | sed -n 's/^xid|//p' >"$WORK/xid"
BEGIN;
SELECT 'xid', pg_current_xact_id();
INSERT INTO t_big SELECT g, repeat('z', 20) FROM generate_series(1, 500) g;
SELECT 'msg', pg_logical_emit_message(true, 'walstream-stream', 'inside a stream');
INSERT INTO t_types (m) VALUES ('ok');
INSERT INTO t_big SELECT g, repeat('z', 20) FROM generate_series(1, 500) g;
TRUNCATE t_types;
COMMIT;
SQL
meta streamed_commit_xid "$(cat "$WORK/xid")"

# A streamed transaction with a rolled-back subtransaction whose changes were already streamed.
psql_run <<'SQL' | sed -n 's/^xid|//p' >"$WORK/xid"
BEGIN;
SELECT 'xid', pg_current_xact_id();
INSERT INTO t_big SELECT g, repeat('a', 20) FROM generate_series(1, 200) g;
SAVEPOINT sp;
INSERT INTO t_big SELECT g, repeat('b', 20) FROM generate_series(1, 800) g;
ROLLBACK TO SAVEPOINT sp;
INSERT INTO t_big VALUES (-1, 'after rollback to savepoint');
COMMIT;
SQL
meta streamed_subabort_xid "$(cat "$WORK/xid")"

# A streamed transaction rolled back as a whole.
psql_run <<'SQL' | sed -n 's/^xid|//p' >"$WORK/xid"
BEGIN;
SELECT 'xid', pg_current_xact_id();
INSERT INTO t_big SELECT g, repeat('c', 20) FROM generate_series(1, 800) g;
ROLLBACK;
SQL
meta streamed_abort_xid "$(cat "$WORK/xid")"

# Two-phase: committed, rolled back, and a streamed prepared transaction.
psql_run <<'SQL' | sed -n 's/^xid|//p' >"$WORK/xid"
BEGIN;
SELECT 'xid', pg_current_xact_id();
INSERT INTO t_default VALUES (10, 'prepared', 'p');
PREPARE TRANSACTION 'walstream-gx1';
COMMIT PREPARED 'walstream-gx1';
SQL
meta prepared_commit_xid "$(cat "$WORK/xid")"
psql_run <<'SQL' | sed -n 's/^xid|//p' >"$WORK/xid"
BEGIN;
SELECT 'xid', pg_current_xact_id();
INSERT INTO t_default VALUES (11, 'rolled back', 'p');
PREPARE TRANSACTION 'walstream-gx2';
ROLLBACK PREPARED 'walstream-gx2';
SQL
meta prepared_rollback_xid "$(cat "$WORK/xid")"
psql_run <<'SQL' | sed -n 's/^xid|//p' >"$WORK/xid"
BEGIN;
SELECT 'xid', pg_current_xact_id();
INSERT INTO t_big SELECT g, repeat('d', 20) FROM generate_series(1, 800) g;
PREPARE TRANSACTION 'walstream-gx3';
COMMIT PREPARED 'walstream-gx3';
SQL
meta stream_prepared_xid "$(cat "$WORK/xid")"

# A transaction with a replication origin.
psql_run <<'SQL' | sed -n 's/^xid|//p' >"$WORK/xid"
SELECT 'init', pg_replication_origin_create('walstream-origin');
SELECT 'init', pg_replication_origin_session_setup('walstream-origin');
BEGIN;
SELECT 'xid', pg_current_xact_id();
SELECT 'init', pg_replication_origin_xact_setup('0/ABCDEF', now());
INSERT INTO t_default VALUES (20, 'from origin', 'o');
COMMIT;
SQL
meta origin_xid "$(cat "$WORK/xid")"

capture() { # file slot options...
    local file=$1 slot=$2
    shift 2
    local opts
    opts=$(printf ", '%s'" "$@")
    psql_run -c "SELECT encode(int4send(length(data)) || data, 'hex')
                 FROM pg_logical_slot_peek_binary_changes('$slot', NULL, NULL $opts)" |
        xxd -r -p >"$OUT/$file"
    echo "$file: $(stat -c %s "$OUT/$file") bytes"
}

common=(publication_names p messages true)
capture pgoutput-v1-text.bin s1 proto_version 1 "${common[@]}" binary false
capture pgoutput-v1-binary.bin s1 proto_version 1 "${common[@]}" binary true
capture pgoutput-v2-stream.bin s1 proto_version 2 "${common[@]}" binary false streaming on
capture pgoutput-v3-twophase.bin s2 proto_version 3 "${common[@]}" binary false streaming on two_phase true
capture pgoutput-v3-twophase-binary.bin s2 proto_version 3 "${common[@]}" binary true streaming on two_phase true

# Narrow inserts only, through a publication of their own (bare pgoutput; the benchmark reads
# the replication-framed captures of capture-bench.sh).
psql_run >/dev/null <<'SQL'
CREATE TABLE t_narrow (id bigint PRIMARY KEY, qty int, label text);
CREATE PUBLICATION p_narrow FOR TABLE t_narrow;
SELECT pg_create_logical_replication_slot('s3', 'pgoutput');
SQL
for batch in $(seq 0 19); do
    psql_run -c "INSERT INTO t_narrow SELECT g, g % 97, 'item-' || g
                 FROM generate_series($((batch * 100 + 1)), $((batch * 100 + 100))) g"
done
capture pgoutput-v1-narrow-inserts.bin s3 proto_version 1 publication_names p_narrow binary false
cat "$OUT/pgoutput-meta.txt"
