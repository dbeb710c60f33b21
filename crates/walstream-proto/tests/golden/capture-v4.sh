#!/usr/bin/env bash
# Captures a pgoutput protocol 4 golden file with `streaming 'parallel'` from a throwaway
# PostgreSQL 16+ cluster: pgoutput-v4-parallel.bin (u32 big-endian length + payload frames)
# and pgoutput-v4-meta.txt with the transaction ids the tests check.
#
#   PGBIN=/opt/pgbin/16/bin PORT=25600 ./capture-v4.sh
#
# The capture holds a large streamed transaction that commits, one with a rolled-back
# subtransaction (Stream Abort of the subtransaction, then Stream Commit) and one rolled back
# as a whole, then a small plain transaction. With 'parallel', Stream Abort carries the abort LSN and time.
# PostgreSQL refuses to run as root; when run as root the server and psql run as `postgres`.
set -euo pipefail

PGBIN=${PGBIN:-/opt/pgbin/16/bin}
PORT=${PORT:-25600}
OUT=${OUT:-$(cd "$(dirname "$0")" && pwd)}
WORK=$(mktemp -d /tmp/pgo-capture-v4.XXXXXX)
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
logical_decoding_work_mem = 64kB
fsync = off
CONF
as_pg "$PGBIN/pg_ctl" -D "$DATA" -l "$WORK/server.log" -w start >/dev/null
cleanup() {
    as_pg "$PGBIN/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT

psql_run() {
    as_pg "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$SOCK" -p "$PORT" -U postgres -d postgres -At "$@"
}

psql_run >/dev/null <<'SQL'
CREATE TABLE t_big (id int, payload text);
CREATE PUBLICATION p FOR ALL TABLES;
SELECT 'init', pg_create_logical_replication_slot('s4', 'pgoutput');
SQL

meta() { echo "$1=$2" >>"$OUT/pgoutput-v4-meta.txt"; }
: >"$OUT/pgoutput-v4-meta.txt"
meta server_version "$(psql_run -c 'SHOW server_version_num')"

xid_of() { sed -n 's/^xid|//p'; }
meta streamed_commit_xid "$(psql_run <<'SQL' | xid_of
BEGIN;
SELECT 'xid', pg_current_xact_id();
INSERT INTO t_big SELECT g, repeat('z', 20) FROM generate_series(1, 1000) g;
COMMIT;
SQL
)"
meta streamed_subabort_xid "$(psql_run <<'SQL' | xid_of
BEGIN;
SELECT 'xid', pg_current_xact_id();
INSERT INTO t_big SELECT g, repeat('a', 20) FROM generate_series(1, 200) g;
SAVEPOINT sp;
INSERT INTO t_big SELECT g, repeat('b', 20) FROM generate_series(1, 800) g;
ROLLBACK TO SAVEPOINT sp;
INSERT INTO t_big VALUES (-1, 'after rollback to savepoint');
COMMIT;
SQL
)"
meta streamed_abort_xid "$(psql_run <<'SQL' | xid_of
BEGIN;
SELECT 'xid', pg_current_xact_id();
INSERT INTO t_big SELECT g, repeat('c', 20) FROM generate_series(1, 800) g;
ROLLBACK;
SQL
)"
# Abort records are not flushed; a small committed transaction flushes WAL past the rollback
# so the decoder sees it (and sends its Stream Abort).
psql_run -c "INSERT INTO t_big VALUES (0, 'flush')"

psql_run -c "SELECT encode(int4send(length(data)) || data, 'hex')
             FROM pg_logical_slot_peek_binary_changes('s4', NULL, NULL,
                 'proto_version', '4', 'publication_names', 'p', 'streaming', 'parallel')" |
    xxd -r -p >"$OUT/pgoutput-v4-parallel.bin"
echo "pgoutput-v4-parallel.bin: $(stat -c %s "$OUT/pgoutput-v4-parallel.bin") bytes"
cat "$OUT/pgoutput-v4-meta.txt"
