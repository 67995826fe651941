#!/bin/sh
# `helm test`: connects to the coordinator Service, checks that workers are active, and runs a distributed
# query end to end in a throw-away table.
# Environment: PGHOST, PGPORT, PGDATABASE, PGUSER, PGPASSWORD or PGPASSWORD_FILE.
set -eu
CITUS_LOG_TAG=citus-test
. "$(dirname "$0")/common.sh"
file_env PGPASSWORD

workers=$(psql -X -t -A -v ON_ERROR_STOP=1 -c 'SELECT count(*) FROM citus_get_active_worker_nodes()') \
    || die "cannot query the coordinator at $PGHOST:${PGPORT:-5432}"
[ "$workers" -gt 0 ] || die "the coordinator has no active worker"
log "$workers active worker(s)"

table="helm_test_$(date +%s)_$$"
result=$(psql -X -t -A -v ON_ERROR_STOP=1 -v t="$table" <<'SQL'
\set QUIET on
CREATE TABLE :"t" (id bigint PRIMARY KEY, payload text);
SELECT create_distributed_table(:'t', 'id') \g /dev/null
INSERT INTO :"t" SELECT g, md5(g::text) FROM generate_series(1, 1000) g;
SELECT (SELECT count(*) FROM :"t") || ' ' ||
       (SELECT count(DISTINCT nodename) FROM citus_shards WHERE table_name = :'t'::regclass);
DROP TABLE :"t";
SQL
) || die "the distributed query failed"
rows=${result% *}
nodes=${result#* }
[ "$rows" = 1000 ] || die "expected 1000 rows back, got $rows"
log "distributed query ok: 1000 rows over $nodes worker(s)"
