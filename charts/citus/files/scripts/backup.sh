#!/bin/sh
# Backs up the Citus database through the coordinator into $BACKUP_DIR/<UTC timestamp>/ (CronJob).
# pg_dump holds every row (Citus streams distributed tables through the coordinator) but not the
# distribution, so the backup also writes what re-creates it; restore.sh replays both in one transaction.
#   dump/                    pg_dump --format=directory (schemas, tables, functions, data, indexes, FKs, ACLs)
#   citus-distribution.sql   columnar options, reference / Citus local / hash / single-shard tables by
#                            colocation group, distributed schemas, distributed functions (run after pre-data)
#   roles.sql                roles, memberships, role and database settings and database privileges
#   manifest.txt             versions, contents, rows of every table counted in the dump, sha256 of every
#                            file; its last line is `end <sha256 of the lines above>`
# What the backup cannot restore fails it here, naming the object. Each backup is written to a hidden
# directory, read back (every data file decompressed and counted, most of them while pg_dump still writes
# the next; checksums; pg_restore --list), renamed, and only then `latest` and `last-success` are replaced
# and backups older than $BACKUP_RETENTION_DAYS days removed (also before each run, so that expired backups
# filling the volume cannot stop backups for good). A failure writes `last-failure`. Both are also kept in citus_chart.backup_status in the
# database (one row; not part of the backups).
# Environment: PGHOST, PGPORT, PGDATABASE, PGUSER, PGPASSWORD or PGPASSWORD_FILE, BACKUP_DIR,
# BACKUP_RETENTION_DAYS; BACKUP_CONNECT_WAIT_SECONDS (default 120): how long a coordinator that does not
# answer is waited for.
set -eu
CITUS_LOG_TAG=citus-backup
. "$(dirname "$0")/common.sh"

: "${PGHOST:?}" "${PGDATABASE:?}" "${PGUSER:?}" "${BACKUP_DIR:?}" "${BACKUP_RETENTION_DAYS:?}"
file_env PGPASSWORD
[ -n "$PGPASSWORD" ] || die "no password for $PGUSER (PGPASSWORD or PGPASSWORD_FILE)"
case "$BACKUP_RETENTION_DAYS" in
    ''|*[!0-9]*) die "BACKUP_RETENTION_DAYS must be a whole number of days, got '$BACKUP_RETENTION_DAYS'" ;;
esac
CONNECT_WAIT_SECONDS=${BACKUP_CONNECT_WAIT_SECONDS:-120}
case "$CONNECT_WAIT_SECONDS" in
    ''|*[!0-9]*) die "BACKUP_CONNECT_WAIT_SECONDS must be a whole number of seconds, got '$CONNECT_WAIT_SECONDS'" ;;
esac

# prune: backups older than BACKUP_RETENTION_DAYS and day-old partial directories go, never the one `latest`
# names. Also run before a backup: a volume filled by expired backups must not stop backups for good.
prune() {
    keep=$(cat "$BACKUP_DIR/latest" 2>/dev/null) || keep=
    find "$BACKUP_DIR" -mindepth 1 -maxdepth 1 -type d -name '2*' -mtime +"$BACKUP_RETENTION_DAYS" | while read -r old; do
        [ "${old##*/}" != "$keep" ] || continue
        log "removing $old (older than $BACKUP_RETENTION_DAYS days)"
        rm -rf "$old"
    done
    find "$BACKUP_DIR" -mindepth 1 -maxdepth 1 -type d -name '.partial-*' -mmin +1440 -exec rm -rf {} +
}

sql() {
    psql_strict "$@"
}

umask 077
stamp=$(date -u +%Y%m%dT%H%M%SZ)
partial="$BACKUP_DIR/.partial-$stamp"
final="$BACKUP_DIR/$stamp"
step="starting"

# epoch seconds, then what failed: monitoring compares it with last-success.
record_failure() {
    status=$?
    trap - EXIT
    for running in ${counter_pid:-} ${dump_pid:-}; do
        if kill -0 "$running" 2>/dev/null; then
            kill "$running"
            wait "$running" 2>/dev/null || log "stopped process $running"
        fi
    done
    rm -rf "$partial"
    [ "$status" -ne 0 ] || exit 0
    now=$(date +%s)
    if printf '%s\n%s backup %s failed while %s\n' "$now" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$stamp" "$step" \
        > "$BACKUP_DIR/.last-failure.tmp" && mv "$BACKUP_DIR/.last-failure.tmp" "$BACKUP_DIR/last-failure"; then
        log "recorded the failure in $BACKUP_DIR/last-failure"
    else
        log "ERROR: could not write $BACKUP_DIR/last-failure"
    fi
    if ! record_status failure "$stamp" "backup failed while $step" 2>/dev/null; then
        log "ERROR: could not record the failure in citus_chart.backup_status (database unreachable?)"
    fi
    exit "$status"
}

# record_status success|failure BACKUP MESSAGE: the row monitoring reads in the database.
record_status() {
    sql -v outcome="$1" -v backup="$2" -v message="$3" <<'SQL'
SET client_min_messages TO warning;
CREATE SCHEMA IF NOT EXISTS citus_chart;
CREATE TABLE IF NOT EXISTS citus_chart.backup_status (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    tracked_since timestamptz NOT NULL DEFAULT now(),
    last_success timestamptz,
    last_backup text,
    last_failure timestamptz,
    last_failure_message text
);
GRANT USAGE ON SCHEMA citus_chart TO PUBLIC;
GRANT SELECT ON citus_chart.backup_status TO PUBLIC;
INSERT INTO citus_chart.backup_status DEFAULT VALUES ON CONFLICT (singleton) DO NOTHING;
UPDATE citus_chart.backup_status
   SET last_success = CASE WHEN :'outcome' = 'success' THEN now() ELSE last_success END,
       last_backup = CASE WHEN :'outcome' = 'success' THEN :'backup' ELSE last_backup END,
       last_failure = CASE WHEN :'outcome' = 'failure' THEN now() ELSE last_failure END,
       last_failure_message = CASE WHEN :'outcome' = 'failure' THEN :'message' ELSE last_failure_message END;
SQL
}

trap record_failure EXIT
step="removing expired backups"
prune
mkdir -p "$partial"

step="connecting to $PGHOST"
log "backing up database $PGDATABASE from $PGHOST into $final"
read_versions() {
    sql <<'SQL'
SELECT current_setting('server_version_num') || ' ' || current_setting('server_version')
    || E'\n' || coalesce((SELECT extversion FROM pg_extension WHERE extname = 'citus'), 'none')
    || E'\n' || CASE WHEN EXISTS (SELECT FROM pg_extension WHERE extname = 'citus') THEN 'yes' ELSE 'no' END
SQL
}
# A coordinator that is restarting (a rolling update, a crash, not Ready yet after an install) is out of its
# Service for a while: wait for it, bounded, before the run counts as failed.
waited=0
until versions=$(read_versions); do
    [ "$waited" -lt "$CONNECT_WAIT_SECONDS" ] \
        || die "cannot query $PGHOST:${PGPORT:-5432} database $PGDATABASE as $PGUSER (tried for ${waited} s)"
    log "$PGHOST does not answer yet; trying again in 5 s"
    sleep 5
    waited=$((waited + 5))
done
pg_version=$(echo "$versions" | sed -n 1p)
citus_extversion=$(echo "$versions" | sed -n 2p)
[ "$citus_extversion" != none ] || die "database $PGDATABASE on $PGHOST has no citus extension"
citus_version=$(echo 'SELECT citus_version()' | sql) || die "citus_version() failed"

# Everything below reads the catalogs with an empty search_path: regclass and regprocedure then print
# schema-qualified names, which the restore (also with an empty search_path) needs.
step="checking that every Citus table and function can be restored"
problems=$(sql <<'SQL'
SET search_path TO '';
SELECT format('table %s: %s-distributed tables (partmethod %L) cannot be re-created by create_distributed_table; convert it to hash distribution or a reference table before backing up',
              p.logicalrelid::regclass, CASE p.partmethod WHEN 'a' THEN 'append' ELSE 'range' END, p.partmethod)
  FROM pg_catalog.pg_dist_partition p
 WHERE p.partmethod IN ('a', 'r')
UNION ALL
SELECT format('function %s: distributed with colocation group %s, which has no table any more, so create_distributed_function cannot colocate it; redistribute it with colocate_with set to an existing table',
              o.objid::regprocedure, o.colocationid)
  FROM pg_catalog.pg_dist_object o
 WHERE o.classid = 'pg_catalog.pg_proc'::regclass AND o.colocationid IS NOT NULL AND o.colocationid <> 0
   AND NOT EXISTS (SELECT FROM pg_catalog.pg_dist_partition p WHERE p.colocationid = o.colocationid)
UNION ALL
SELECT format('%s %L: a name with a tab or line break cannot be listed in the backup manifest; rename it',
              CASE WHEN c.relkind IS NULL THEN 'schema' ELSE 'relation' END, n.nspname || coalesce('.' || c.relname, ''))
  FROM pg_catalog.pg_namespace n LEFT JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid
 WHERE n.nspname || coalesce(c.relname, '') ~ '[\t\n\r]';
SQL
) || die "checking the Citus metadata failed"
[ -z "$problems" ] || die "this database cannot be backed up so that it restores:
$problems"

step="writing the Citus distribution"
{
    echo "-- Citus distribution of database $PGDATABASE, $citus_version; run after pg_restore --section=pre-data."
    if [ "$(echo "SELECT to_regclass('columnar.options') IS NOT NULL" | sql)" = t ]; then
        # Before distribution, so that the shards are created with them.
        sql <<'SQL'
SET search_path TO '';
SELECT format('ALTER TABLE %s SET (columnar.chunk_group_row_limit = %s, columnar.stripe_row_limit = %s, columnar.compression = %s, columnar.compression_level = %s);',
              o.relation, o.chunk_group_row_limit, o.stripe_row_limit, o.compression, o.compression_level)
  FROM columnar.options o
 WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_depend d
                    WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = o.relation AND d.deptype = 'e')
 ORDER BY o.relation::text;
SQL
    fi
    sql <<'SQL'
SET search_path TO '';
-- Partitions follow their parent; distributed schemas re-create their tables (citus_schema_distribute);
-- Citus local tables that Citus added by itself for a foreign key to a reference table (autoconverted)
-- come back when the restore adds that foreign key. Within a colocation group the first table (by name)
-- creates the group with its shard count, the others join it: Citus rejects shard_count with colocate_with.
WITH t AS (
    SELECT p.logicalrelid::regclass::text AS name,
           CASE WHEN p.partmethod = 'h' THEN 'hash'
                WHEN p.repmodel = 't' THEN 'reference'
                WHEN p.colocationid = 0 THEN 'local'
                WHEN EXISTS (SELECT FROM pg_catalog.pg_dist_schema s WHERE s.colocationid = p.colocationid) THEN 'schema'
                ELSE 'single-shard' END AS kind,
           pg_catalog.column_to_column_name(p.logicalrelid, p.partkey) AS col,
           p.colocationid, p.autoconverted,
           (SELECT count(*) FROM pg_catalog.pg_dist_shard s WHERE s.logicalrelid = p.logicalrelid) AS shards,
           (SELECT c.replicationfactor FROM pg_catalog.pg_dist_colocation c WHERE c.colocationid = p.colocationid) AS replication
      FROM pg_catalog.pg_dist_partition p
      JOIN pg_catalog.pg_class r ON r.oid = p.logicalrelid
     WHERE NOT r.relispartition
       AND NOT EXISTS (SELECT FROM pg_catalog.pg_depend d
                        WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = p.logicalrelid AND d.deptype = 'e')
), g AS (
    SELECT t.*, first_value(name) OVER (PARTITION BY colocationid ORDER BY name) AS anchor
      FROM t
)
SELECT stmt FROM (
    SELECT 1 AS o, name, format('SELECT pg_catalog.create_reference_table(%L);', name) AS stmt
      FROM g WHERE kind = 'reference'
    UNION ALL
    SELECT 2, name, format('SELECT pg_catalog.citus_add_local_table_to_metadata(%L);', name)
      FROM g WHERE kind = 'local' AND NOT autoconverted
    UNION ALL
    SELECT 3, anchor || E'\x01' || (name <> anchor)::int || name,
           CASE WHEN replication > 1 THEN format('SET citus.shard_replication_factor TO %s; ', replication) ELSE '' END
           || CASE WHEN name = anchor
                   THEN format('SELECT pg_catalog.create_distributed_table(%L, %L, shard_count := %s, colocate_with := ''none'');', name, col, shards)
                   ELSE format('SELECT pg_catalog.create_distributed_table(%L, %L, colocate_with := %L);', name, col, anchor) END
           || CASE WHEN replication > 1 THEN ' RESET citus.shard_replication_factor;' ELSE '' END
      FROM g WHERE kind = 'hash'
    UNION ALL
    SELECT 4, anchor || E'\x01' || (name <> anchor)::int || name,
           CASE WHEN name = anchor
                THEN format('SELECT pg_catalog.create_distributed_table(%L, NULL, colocate_with := ''none'');', name)
                ELSE format('SELECT pg_catalog.create_distributed_table(%L, NULL, colocate_with := %L);', name, anchor) END
      FROM g WHERE kind = 'single-shard'
    UNION ALL
    SELECT 5, n.nspname, format('SELECT pg_catalog.citus_schema_distribute(%L);', quote_ident(n.nspname))
      FROM pg_catalog.pg_dist_schema s JOIN pg_catalog.pg_namespace n ON n.oid = s.schemaid
) s
ORDER BY o, name;
-- Functions last: their colocation groups exist by now.
SELECT format('SELECT pg_catalog.create_distributed_function(%L, %L, colocate_with := %L%s);',
              o.objid::regprocedure,
              CASE WHEN o.distribution_argument_index IS NOT NULL THEN '$' || (o.distribution_argument_index + 1) END,
              (SELECT min(p.logicalrelid::regclass::text) FROM pg_catalog.pg_dist_partition p
                 JOIN pg_catalog.pg_class r ON r.oid = p.logicalrelid
                WHERE p.colocationid = o.colocationid AND NOT r.relispartition),
              CASE WHEN o.force_delegation THEN ', force_delegation := true' WHEN NOT o.force_delegation THEN ', force_delegation := false' ELSE '' END)
  FROM pg_catalog.pg_dist_object o
 WHERE o.classid = 'pg_catalog.pg_proc'::regclass AND o.colocationid IS NOT NULL AND o.colocationid <> 0
 ORDER BY o.objid::regprocedure::text;
SQL
} > "$partial/citus-distribution.sql" || die "reading the Citus distribution failed"

step="writing roles"
# Roles are global: the restore creates the missing ones (with their password hashes) and leaves the ones
# the new release created (superuser, application user) as they are, then adds memberships and settings.
# Statements that name the database use psql's :"DBNAME", the database the restore connects to.
sql -v db="$PGDATABASE" > "$partial/roles.sql" <<'SQL' || die "reading the roles failed"
SET search_path TO '';
SELECT 'SET client_min_messages TO warning;';
SELECT '-- Roles of the cluster and privileges on database ' || quote_ident(:'db') || '; run with psql in the restored database.';
SELECT format($q$SELECT %L WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = %L) \gexec$q$,
              format('CREATE ROLE %I WITH %s %s %s %s %s %s %s CONNECTION LIMIT %s%s%s',
                     a.rolname,
                     CASE WHEN a.rolsuper THEN 'SUPERUSER' ELSE 'NOSUPERUSER' END,
                     CASE WHEN a.rolinherit THEN 'INHERIT' ELSE 'NOINHERIT' END,
                     CASE WHEN a.rolcreaterole THEN 'CREATEROLE' ELSE 'NOCREATEROLE' END,
                     CASE WHEN a.rolcreatedb THEN 'CREATEDB' ELSE 'NOCREATEDB' END,
                     CASE WHEN a.rolcanlogin THEN 'LOGIN' ELSE 'NOLOGIN' END,
                     CASE WHEN a.rolreplication THEN 'REPLICATION' ELSE 'NOREPLICATION' END,
                     CASE WHEN a.rolbypassrls THEN 'BYPASSRLS' ELSE 'NOBYPASSRLS' END,
                     a.rolconnlimit,
                     CASE WHEN a.rolpassword IS NOT NULL THEN format(' PASSWORD %L', a.rolpassword) ELSE '' END,
                     CASE WHEN a.rolvaliduntil IS NOT NULL THEN format(' VALID UNTIL %L', a.rolvaliduntil) ELSE '' END),
              a.rolname)
  FROM pg_catalog.pg_authid a
 WHERE a.rolname !~ '^pg_' AND a.oid <> 10
 ORDER BY a.rolname;
SELECT format('GRANT %I TO %I%s;', r.rolname, m.rolname, CASE WHEN am.admin_option THEN ' WITH ADMIN OPTION' ELSE '' END)
  FROM pg_catalog.pg_auth_members am
  JOIN pg_catalog.pg_authid r ON r.oid = am.roleid
  JOIN pg_catalog.pg_authid m ON m.oid = am.member
 WHERE m.rolname !~ '^pg_' AND m.oid <> 10
 ORDER BY r.rolname, m.rolname;
-- search_path is a list: its stored form is already valid SQL, quoting it would make it one schema name.
SELECT format('ALTER %s SET %I = %s;',
              CASE WHEN s.setrole = 0 THEN 'DATABASE :"DBNAME"'
                   ELSE format('ROLE %I', (SELECT rolname FROM pg_catalog.pg_authid WHERE oid = s.setrole))
                        || CASE WHEN s.setdatabase <> 0 THEN ' IN DATABASE :"DBNAME"' ELSE '' END END,
              split_part(c.setting, '=', 1),
              CASE WHEN split_part(c.setting, '=', 1) = 'search_path' THEN substr(c.setting, strpos(c.setting, '=') + 1)
                   ELSE quote_literal(substr(c.setting, strpos(c.setting, '=') + 1)) END)
  FROM pg_catalog.pg_db_role_setting s, unnest(s.setconfig) c(setting)
 WHERE (s.setdatabase = 0 OR s.setdatabase = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database()))
   AND (s.setrole = 0 AND s.setdatabase <> 0
        OR s.setrole <> 0 AND s.setrole <> 10
           AND (SELECT rolname FROM pg_catalog.pg_authid WHERE oid = s.setrole) !~ '^pg_');
SELECT 'REVOKE ALL ON DATABASE :"DBNAME" FROM PUBLIC;'
  FROM pg_catalog.pg_database WHERE datname = current_database() AND datacl IS NOT NULL;
SELECT format('GRANT %s ON DATABASE :"DBNAME" TO %s;', a.privilege_type,
              CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_catalog.pg_get_userbyid(a.grantee)) END)
  FROM pg_catalog.pg_database d, aclexplode(d.datacl) a
 WHERE d.datname = current_database() AND a.grantee <> d.datdba
 ORDER BY 1;
SQL

# count_rows FILE: the rows in one data file of the dump, or failure while it does not decompress (not
# written to its end yet, or damaged). Decompressing checks the gzip CRC; COPY text data has one line per
# row (line breaks inside values are escaped), then "\." and two empty lines.
count_rows() {
    cr_failed="$partial/failed-${1##*/}"
    rm -f "$cr_failed"
    cr_lines=$( { gzip -dc < "$1" 2>/dev/null || echo "$?" > "$cr_failed"; } | wc -l)
    if [ -e "$cr_failed" ] || [ "$cr_lines" -lt 3 ]; then
        return 1
    fi
    echo $((cr_lines - 3))
}

# count_finished all|running: appends "<file> <size> <rows>" to $partial/counts for every data file not
# counted at its present size. While pg_dump runs, its newest file is left alone and a file that does not
# decompress is tried again later; at the end every file must count.
count_finished() {
    newest=
    # shellcheck disable=SC2012 # pg_dump's file names are digits; ls -t gives the one being written
    [ "$1" = all ] || newest=$(ls -t "$partial"/dump/*.dat.gz 2>/dev/null | head -n 1)
    for cf_file in "$partial"/dump/*.dat.gz; do
        if [ ! -f "$cf_file" ] || [ "$cf_file" = "$newest" ]; then
            continue
        fi
        cf_size=$(wc -c < "$cf_file")
        ! grep -q "^${cf_file##*/} $cf_size " "$partial/counts" || continue
        if cf_rows=$(count_rows "$cf_file"); then
            echo "${cf_file##*/} $cf_size $cf_rows" >> "$partial/counts"
        elif [ "$1" = all ]; then
            die "dump/${cf_file##*/} of the dump just written does not decompress"
        fi
    done
}

step="running pg_dump"
# The status schema describes this cluster, not the data: it stays out of the backups. gzip level 1: about
# twice as fast as pg_dump's default level for files about a tenth larger. pg_dump writes one table's file
# after the other; a background loop reads back (counts) the finished ones while it writes the next.
: > "$partial/counts"
pg_dump --format=directory --compress=1 --exclude-schema=citus_chart --file="$partial/dump" "$PGDATABASE" &
dump_pid=$!
while :; do
    count_finished running
    sleep 1
done &
counter_pid=$!
wait "$dump_pid" || die "pg_dump of $PGDATABASE failed"
kill "$counter_pid"
wait "$counter_pid" 2>/dev/null || log "read back $(wc -l < "$partial/counts") data file(s) while pg_dump ran"
count_finished all

step="reading the backup back"
toc=$(pg_restore --list "$partial/dump") || die "pg_restore --list cannot read the dump just written"
# "<dump id>; 0 <table oid> TABLE DATA <schema> <table> <owner>": the data of one table in <dump id>.dat.gz.
data_entries=$(echo "$toc" | sed -n 's/^\([0-9][0-9]*\); 0 \([0-9][0-9]*\) TABLE DATA .*/\1 \2/p')
oids=$(echo "$data_entries" | awk 'NF { printf "%s%s", sep, $2; sep = "," }')
names=$(sql -v oids="{$oids}" <<'SQL'
SET search_path TO '';
SELECT c.oid || ' ' || c.oid::regclass::text FROM pg_catalog.pg_class c WHERE c.oid = ANY (:'oids'::oid[]);
SQL
) || die "reading the names of the dumped tables failed"
workers=$(echo "SELECT count(*) FROM pg_dist_node WHERE groupid <> 0 AND isactive AND noderole = 'primary'" | sql)

body="$partial/manifest.body"
{
    printf 'format\tcitus-chart-backup 1\n'
    printf 'backup\t%s\n' "$stamp"
    printf 'created\t%s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    printf 'database\t%s\n' "$PGDATABASE"
    printf 'postgresql\t%s\n' "$pg_version"
    printf 'citus\t%s\t%s\n' "$citus_extversion" "$citus_version"
    printf 'pg_dump\t%s\n' "$(pg_dump --version)"
    printf 'workers\t%s\n' "$workers"
    printf 'citus_calls\t%s\n' "$(awk '/^SELECT/ { n++ } END { print n + 0 }' "$partial/citus-distribution.sql")"
    printf 'contains\t%s roles=%s\n' "$(awk '
        /create_reference_table/ { reference++ }
        /citus_add_local_table_to_metadata/ { local++ }
        /create_distributed_table\(.*, NULL,/ { single++; next }
        /create_distributed_table/ { hash++ }
        /citus_schema_distribute/ { schemas++ }
        /create_distributed_function/ { functions++ }
        /^ALTER TABLE .*columnar\./ { columnar++ }
        END { printf "reference=%d citus_local=%d hash_distributed=%d single_shard=%d distributed_schemas=%d distributed_functions=%d columnar_options=%d",
              reference, local, hash, single, schemas, functions, columnar }' "$partial/citus-distribution.sql")" \
        "$(awk '/gexec$/ { n++ } END { print n + 0 }' "$partial/roles.sql")"
} > "$body"
while read -r id oid; do
    [ -n "$id" ] || continue
    file="dump/$id.dat.gz"
    [ -f "$partial/$file" ] || die "pg_dump wrote no data file for table oid $oid (dump id $id)"
    name=$(echo "$names" | sed -n "s/^$oid //p")
    [ -n "$name" ] || die "table oid $oid of the dump is not in the catalog any more"
    size=$(wc -c < "$partial/$file")
    rows=$(awk -v f="$id.dat.gz" -v s="$size" '$1 == f && $2 == s { r = $3 } END { print r }' "$partial/counts")
    [ -n "$rows" ] || die "$file of the dump just written was not counted"
    printf 'rows\t%s\t%s\t%s\n' "$name" "$rows" "$file" >> "$body"
done <<ENTRIES
$data_entries
ENTRIES
rm -f "$partial/counts" "$partial"/failed-*
files=$(cd "$partial" && find . -type f ! -name 'manifest.*' | sed 's|^\./||' | LC_ALL=C sort)
while read -r file; do
    size=$(wc -c < "$partial/$file")
    sum=$(sha256sum < "$partial/$file")
    printf 'file\t%s\t%s\t%s\n' "${sum%% *}" "$size" "$file" >> "$body"
done <<FILES
$files
FILES
body_sum=$(sha256sum < "$body")
{ cat "$body"; printf 'end\t%s\n' "${body_sum%% *}"; } > "$partial/manifest.txt"
rm "$body"
tables=$(awk '/^rows\t/ { n++ } END { print n + 0 }' "$partial/manifest.txt")
calls=$(awk '/^citus_calls\t/ { print $2 }' "$partial/manifest.txt")
# On disk before anything points to it (only this backup's files, not the whole node's page cache).
find "$partial" -exec sync {} +

step="publishing the backup"
mv "$partial" "$final"
printf '%s\n' "$stamp" > "$BACKUP_DIR/.latest.tmp"
mv "$BACKUP_DIR/.latest.tmp" "$BACKUP_DIR/latest"
printf '%s\n%s\n' "$(date +%s)" "$stamp" > "$BACKUP_DIR/.last-success.tmp"
mv "$BACKUP_DIR/.last-success.tmp" "$BACKUP_DIR/last-success"
sync "$BACKUP_DIR" "$BACKUP_DIR/latest" "$BACKUP_DIR/last-success"
record_status success "$stamp" "" >/dev/null || die "recording the success in citus_chart.backup_status failed"
log "backup $stamp complete: $(du -sk "$final" | cut -f1) KiB, $tables table(s), $calls Citus call(s)"

step="removing old backups"
prune
