#!/bin/sh
# Restores a backup written by backup.sh into this release's empty database (Helm hook Job, after the
# workers are registered: distributing tables needs them).
# 1. Verifies the backup before anything is written: manifest complete and unchanged, every file present
#    with its size and sha256, the dump readable. A damaged or truncated backup is refused here.
# 2. Refuses a database that holds any table, view, sequence, function, type or schema of its own.
# 3. Creates the missing roles (roles.sql), then in ONE transaction: pg_restore's pre-data section, the
#    Citus distribution (on empty tables: nothing moves), the data (COPY through the coordinator into the
#    shards), the post-data section (indexes, constraints, foreign keys, triggers, propagated to the
#    shards), sequences raised above the restored keys, every table's row count compared with the manifest,
#    and the marker row citus_chart.restore_status. Applications see the database empty or fully restored;
#    the first failing statement is printed, aborts everything and fails the Job.
# 4. Raises the workers' sequence ranges above keys inserted through them (only possible once committed),
#    then marks the restore complete. Run again (helm upgrade), a complete restore is a no-op and a
#    committed one only finishes step 4.
# Environment: PGHOST, PGPORT, PGDATABASE, PGUSER, PGPASSWORD or PGPASSWORD_FILE, RESTORE_DIR (the backup
# volume), RESTORE_BACKUP (a backup directory name or `latest`), RESTORE_WAIT_SECONDS (default 300).
set -eu
CITUS_LOG_TAG=citus-restore
. "$(dirname "$0")/common.sh"

: "${PGHOST:?}" "${PGDATABASE:?}" "${PGUSER:?}" "${RESTORE_DIR:?}" "${RESTORE_BACKUP:?}"
WAIT_SECONDS=${RESTORE_WAIT_SECONDS:-300}
file_env PGPASSWORD
[ -n "$PGPASSWORD" ] || die "no password for $PGUSER (PGPASSWORD or PGPASSWORD_FILE)"
export PGCONNECT_TIMEOUT="${PGCONNECT_TIMEOUT:-10}"
TAB=$(printf '\t')

sql() {
    psql_strict "$@"
}

backups() {
    find "$RESTORE_DIR" -mindepth 1 -maxdepth 1 -type d ! -name '.*' | sed 's|.*/||' | sort | tr '\n' ' '
}

# Sequences feeding a column of a Citus table (a column default calling nextval, or an identity or owned-by
# sequence), as the FROM part of a query over `dep` (seq, rel, colnum): used in steps 3 and 4.
SEQUENCE_DEPENDENCIES=$(cat <<'SQL'
          FROM (SELECT d.refobjid AS seq, ad.adrelid AS rel, ad.adnum AS colnum
                  FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_attrdef ad ON ad.oid = d.objid
                 WHERE d.classid = 'pg_catalog.pg_attrdef'::regclass AND d.refclassid = 'pg_catalog.pg_class'::regclass
                UNION
                SELECT d.objid, d.refobjid, d.refobjsubid
                  FROM pg_catalog.pg_depend d
                 WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.refclassid = 'pg_catalog.pg_class'::regclass
                   AND d.deptype = 'i' AND d.refobjsubid > 0) dep
          JOIN pg_catalog.pg_class sc ON sc.oid = dep.seq AND sc.relkind = 'S'
          JOIN pg_catalog.pg_dist_partition p ON p.logicalrelid = dep.rel
SQL
)

# --- 1. the backup -------------------------------------------------------------------------------------
name=$RESTORE_BACKUP
if [ "$name" = latest ]; then
    [ -f "$RESTORE_DIR/latest" ] \
        || die "restore.backup=latest, but $RESTORE_DIR has no 'latest' marker: no backup finished on this volume (backups: $(backups))"
    name=$(sed -n 1p "$RESTORE_DIR/latest")
fi
case "$name" in
    ''|.*|*/*) die "backup name '$name' is not a backup directory name" ;;
esac
dir="$RESTORE_DIR/$name"
[ -d "$dir" ] || die "no backup $name in $RESTORE_DIR (backups: $(backups))"
refuse() {
    die "backup $name is damaged or incomplete: $*. Nothing was written; restore another backup (restore.backup)"
}
manifest="$dir/manifest.txt"
[ -f "$manifest" ] || refuse "it has no manifest.txt"
last=$(tail -n 1 "$manifest")
case "$last" in
    "end$TAB"*) ;;
    *) refuse "manifest.txt is truncated (its last line is not the end line)" ;;
esac
body_sum=$(sed '$d' "$manifest" | sha256sum)
[ "${last#end"$TAB"}" = "${body_sum%% *}" ] || refuse "manifest.txt does not match its own checksum"
grep -qx "format${TAB}citus-chart-backup 1" "$manifest" || refuse "manifest.txt is not of format citus-chart-backup 1"
log "verifying backup $name ($(awk -F "$TAB" '$1 == "file" { n++; b += $3 } END { printf "%d files, %d bytes", n, b }' "$manifest"))"
files=$(awk -F "$TAB" '$1 == "file" { print $2 " " $3 " " $4 }' "$manifest")
while read -r sum size file; do
    [ -n "$file" ] || continue
    [ -f "$dir/$file" ] || refuse "$file is missing"
    actual_size=$(wc -c < "$dir/$file")
    [ "$actual_size" -eq "$size" ] || refuse "$file has $actual_size bytes, the manifest says $size (truncated?)"
    actual_sum=$(sha256sum < "$dir/$file")
    [ "${actual_sum%% *}" = "$sum" ] || refuse "$file does not match its sha256 in the manifest"
done <<FILES
$files
FILES
for required in dump/toc.dat citus-distribution.sql roles.sql; do
    grep -q "^file$TAB.*$TAB$required\$" "$manifest" || refuse "the manifest lists no $required"
done
pg_restore --list "$dir/dump" > /dev/null || refuse "pg_restore cannot read dump/"
backup_pg=$(awk -F "$TAB" '$1 == "postgresql" { split($2, v, " "); print v[1] }' "$manifest")
backup_citus=$(awk -F "$TAB" '$1 == "citus" { print $2 }' "$manifest")
tables=$(awk -F "$TAB" '$1 == "rows" { n++ } END { print n + 0 }' "$manifest")
log "backup $name is intact: $tables table(s), PostgreSQL $backup_pg, Citus $backup_citus"

# --- 2. the database -----------------------------------------------------------------------------------
deadline=$(( $(date +%s) + WAIT_SECONDS ))
until out=$(echo 'SELECT 1' | sql 2>&1); do
    [ "$(date +%s)" -lt "$deadline" ] \
        || die "$PGHOST:${PGPORT:-5432} did not accept connections in time (RESTORE_WAIT_SECONDS=$WAIT_SECONDS): $(echo "$out" | tr '\n' ' ')"
    log "waiting for $PGHOST: $(echo "$out" | head -n 1)"
    sleep 2
done
target=$(sql <<'SQL'
SELECT current_setting('server_version_num') || ' ' || coalesce((SELECT extversion FROM pg_extension WHERE extname = 'citus'), 'none')
    || ' ' || (SELECT count(*) FROM pg_dist_node WHERE groupid <> 0 AND isactive AND noderole = 'primary')
SQL
) || die "cannot read the versions and workers of $PGHOST (is the citus extension in $PGDATABASE?)"
read -r target_pg target_citus workers <<TARGET
$target
TARGET
[ "$(( target_pg / 10000 ))" -ge "$(( backup_pg / 10000 ))" ] \
    || die "backup $name is from PostgreSQL $(( backup_pg / 10000 )), this cluster runs $(( target_pg / 10000 )): restore into the same or a newer major version"
# Extension versions look like 13.0-1: compare major and minor.
older=$(awk -v a="$target_citus" -v b="$backup_citus" 'BEGIN { split(a, x, /[.-]/); split(b, y, /[.-]/);
    print (x[1] + 0 < y[1] + 0 || (x[1] + 0 == y[1] + 0 && x[2] + 0 < y[2] + 0)) ? "yes" : "no" }')
[ "$older" = no ] || die "backup $name is from Citus $backup_citus, this cluster runs $target_citus: restore into the same or a newer Citus"
[ "$workers" -ge 1 ] || die "no active worker is registered with the coordinator: the restore must run after the registration Job"

state=none
if [ "$(echo "SELECT to_regclass('citus_chart.restore_status') IS NOT NULL" | sql)" = t ]; then
    state=$(echo "SELECT CASE WHEN completed_at IS NULL THEN 'committed' ELSE 'complete' END || ' ' || backup FROM citus_chart.restore_status ORDER BY data_committed_at DESC LIMIT 1" | sql)
    state=${state:-none}
fi
case "$state" in
    complete*)
        log "database $PGDATABASE was already restored from backup ${state#complete }; nothing to do (restore.backup=$RESTORE_BACKUP)"
        exit 0 ;;
    committed*)
        [ "${state#committed }" = "$name" ] \
            || die "database $PGDATABASE holds the data of backup ${state#committed } (restore not finished); restore.backup=$RESTORE_BACKUP names $name: set restore.backup=${state#committed } to finish that restore"
        log "the data of backup $name is already committed; finishing the restore" ;;
    *)
        found=$(sql <<'SQL'
SET search_path TO '';
WITH ext AS (SELECT classid, objid FROM pg_catalog.pg_depend WHERE deptype = 'e'),
     own AS (SELECT n.oid, n.nspname FROM pg_catalog.pg_namespace n
              WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast', 'citus_chart')
                AND n.nspname NOT LIKE 'pg\_temp\_%' AND n.nspname NOT LIKE 'pg\_toast\_temp\_%'
                AND (n.tableoid, n.oid) NOT IN (SELECT classid, objid FROM ext))
SELECT what FROM (
    SELECT 'schema ' || quote_ident(nspname) AS what FROM own WHERE nspname <> 'public'
    UNION ALL
    SELECT 'relation ' || c.oid::regclass FROM pg_catalog.pg_class c
     WHERE c.relnamespace IN (SELECT oid FROM own) AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f', 'c')
       AND (c.tableoid, c.oid) NOT IN (SELECT classid, objid FROM ext)
    UNION ALL
    SELECT 'function ' || p.oid::regprocedure FROM pg_catalog.pg_proc p
     WHERE p.pronamespace IN (SELECT oid FROM own) AND (p.tableoid, p.oid) NOT IN (SELECT classid, objid FROM ext)
    UNION ALL
    SELECT 'type ' || t.oid::regtype FROM pg_catalog.pg_type t
     WHERE t.typnamespace IN (SELECT oid FROM own) AND t.typtype IN ('e', 'd', 'r', 'm', 'b') AND t.typelem = 0
       AND (t.tableoid, t.oid) NOT IN (SELECT classid, objid FROM ext)
) o ORDER BY what LIMIT 20;
SQL
) || die "cannot check whether database $PGDATABASE is empty"
        [ -z "$found" ] || die "database $PGDATABASE is not empty, refusing to restore into it. It holds: $(echo "$found" | tr '\n' ',' | sed 's/,$//'). Restore into a new release (or drop these objects)"

        # --- 3. roles, then everything else in one transaction ---------------------------------------
        log "restoring backup $name into $PGDATABASE on $PGHOST ($workers worker(s))"
        with_secret_options psql -X -q -v ON_ERROR_STOP=1 --single-transaction -f "$dir/roles.sql" > /dev/null \
            || die "restoring the roles (roles.sql of backup $name) failed with the error above (its statement is not shown: it holds a password hash); nothing else was written"
        started=$(date +%s)
        # Each statement that Citus runs on the shards inside this transaction must reuse the connections
        # that created them (sequential mode). A cut stream never reaches COMMIT, so psql's end of input
        # rolls everything back; the marker row checked below tells a commit from that.
        checks=$(awk -F "$TAB" '$1 == "rows" { gsub(/\047/, "\047\047", $2); printf "%s(\047%s\047, %s)", sep, $2, $3; sep = ",\n        " }' "$manifest")
        {
            printf '%s\n' "BEGIN;" "SET client_min_messages TO warning;" \
                "SET citus.multi_shard_modify_mode TO 'sequential';" \
                "SET citus.enable_unsafe_triggers TO on;"
            # errexit does not reach into this list (it is part of an || list): each step exits itself.
            pg_restore --section=pre-data --file=- "$dir/dump" || exit 1
            cat "$dir/citus-distribution.sql" || exit 1
            pg_restore --section=data --file=- "$dir/dump" || exit 1
            pg_restore --section=post-data --file=- "$dir/dump" || exit 1
            cat <<'SQL'
-- Keys inserted while pg_dump ran can be above the sequence value it saved (the shards are read later
-- than the coordinator's sequences): raise each sequence of a Citus table above the restored keys.
-- Keys above 2^48 come from the workers' own ranges (step 4).
DO $citus_chart$
DECLARE r record; m bigint;
BEGIN
    FOR r IN
        SELECT DISTINCT dep.seq::regclass::text AS seq, dep.rel::regclass::text AS rel, a.attname AS col
SQL
            printf '%s\n' "$SEQUENCE_DEPENDENCIES"
            cat <<'SQL'
          JOIN pg_catalog.pg_sequence ps ON ps.seqrelid = dep.seq AND ps.seqincrement > 0
          JOIN pg_catalog.pg_attribute a ON a.attrelid = dep.rel AND a.attnum = dep.colnum
                                         AND a.atttypid IN ('pg_catalog.int2'::regtype, 'pg_catalog.int4'::regtype, 'pg_catalog.int8'::regtype)
    LOOP
        EXECUTE format('SELECT max(%I) FROM ONLY %s WHERE %I <= 281474976710656', r.col, r.rel, r.col) INTO m;
        IF m IS NOT NULL AND m > coalesce((SELECT last_value FROM pg_catalog.pg_sequences
                                            WHERE format('%I.%I', schemaname, sequencename) = r.seq), m - 1) THEN
            PERFORM pg_catalog.setval(r.seq, m);
        END IF;
    END LOOP;
END
$citus_chart$;
SQL
            if [ -n "$checks" ]; then
                cat <<SQL
DO \$citus_chart\$
DECLARE r record; n bigint;
BEGIN
    FOR r IN SELECT * FROM (VALUES
        $checks) v(rel, expected)
    LOOP
        EXECUTE format('SELECT count(*) FROM ONLY %s', r.rel) INTO n;
        IF n <> r.expected THEN
            RAISE EXCEPTION 'restore check failed: % holds % rows after the restore, the manifest of backup $name says %', r.rel, n, r.expected;
        END IF;
    END LOOP;
END
\$citus_chart\$;
SQL
            fi
            cat <<'SQL'
CREATE SCHEMA IF NOT EXISTS citus_chart;
CREATE TABLE IF NOT EXISTS citus_chart.restore_status (
    backup text NOT NULL,
    data_committed_at timestamptz NOT NULL,
    completed_at timestamptz
);
GRANT USAGE ON SCHEMA citus_chart TO PUBLIC;
GRANT SELECT ON citus_chart.restore_status TO PUBLIC;
SQL
            printf "INSERT INTO citus_chart.restore_status (backup, data_committed_at) VALUES ('%s', now());\nCOMMIT;\n" "$name"
        } | psql -X -q -b -v ON_ERROR_STOP=1 -f - > /dev/null \
            || die "restoring backup $name failed at the statement printed above; the transaction was rolled back and database $PGDATABASE is empty again"
        committed=$(echo "SELECT count(*) FROM citus_chart.restore_status WHERE backup = '$name'" | sql 2>/dev/null) || committed=0
        [ "$committed" = 1 ] || die "restoring backup $name did not commit (the stream from pg_restore ended early, see above); database $PGDATABASE is unchanged"
        log "data of backup $name committed in $(( $(date +%s) - started )) s"
        ;;
esac

# --- 4. the workers' sequence ranges, then the marker --------------------------------------------------
# A worker hands out keys of bigint sequences from its own range (group id << 48); after a restore every
# range starts again from its beginning, below keys that were inserted through that worker before.
{
    cat <<'SQL'
SET search_path TO '';
DO $citus_chart$
DECLARE r record; g record; m bigint; res record;
BEGIN
    FOR r IN
        SELECT DISTINCT dep.seq::regclass::text AS seq, dep.rel::regclass::text AS rel, a.attname AS col
SQL
    printf '%s\n' "$SEQUENCE_DEPENDENCIES"
    cat <<'SQL'
          JOIN pg_catalog.pg_attribute a ON a.attrelid = dep.rel AND a.attnum = dep.colnum AND a.atttypid = 'pg_catalog.int8'::regtype
    LOOP
        FOR g IN SELECT DISTINCT groupid FROM pg_catalog.pg_dist_node WHERE groupid > 0 AND noderole = 'primary' LOOP
            EXECUTE format('SELECT max(%I) FROM ONLY %s WHERE %I > $1 AND %I <= $2', r.col, r.rel, r.col, r.col)
               INTO m USING g.groupid::bigint << 48, (g.groupid::bigint + 1) << 48;
            CONTINUE WHEN m IS NULL;
            FOR res IN SELECT * FROM pg_catalog.run_command_on_workers(format(
                    'SELECT pg_catalog.setval(%L, %s) FROM %s s, pg_catalog.pg_dist_local_group l WHERE l.groupid = %s AND (NOT s.is_called OR s.last_value < %s)',
                    r.seq, m, r.seq, g.groupid, m)) LOOP
                IF NOT res.success THEN
                    RAISE EXCEPTION 'raising sequence % to % on worker %:% failed: %', r.seq, m, res.nodename, res.nodeport, res.result;
                END IF;
            END LOOP;
        END LOOP;
    END LOOP;
END
$citus_chart$;
SQL
} | sql > /dev/null || die "raising the workers' sequences failed; run the restore again (helm upgrade) to finish it"
echo "UPDATE citus_chart.restore_status SET completed_at = now() WHERE backup = :'backup' AND completed_at IS NULL" \
    | sql -v backup="$name" || die "marking the restore complete failed; run the restore again (helm upgrade) to finish it"
log "restore of backup $name complete: $tables table(s) with the row counts of the manifest"
