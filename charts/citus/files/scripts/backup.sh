#!/bin/sh
# Backs up the Citus database from the coordinator into $BACKUP_DIR/<UTC timestamp>/ (CronJob).
# A pg_dump of the coordinator holds every distributed row but not the distribution itself, so the backup
# also writes citus-distribution.sql, the calls that re-create it (see the chart README, "恢复").
# A backup is written to a hidden directory and renamed when complete; backups older than
# $BACKUP_RETENTION_DAYS days are removed only after a new one succeeded.
# Environment: PGHOST, PGPORT, PGDATABASE, PGUSER, PGPASSWORD or PGPASSWORD_FILE, BACKUP_DIR, BACKUP_RETENTION_DAYS.
set -eu
CITUS_LOG_TAG=citus-backup
. "$(dirname "$0")/common.sh"

: "${PGHOST:?}" "${PGDATABASE:?}" "${PGUSER:?}" "${BACKUP_DIR:?}" "${BACKUP_RETENTION_DAYS:?}"
file_env PGPASSWORD
[ -n "$PGPASSWORD" ] || die "no password for $PGUSER (PGPASSWORD or PGPASSWORD_FILE)"
case "$BACKUP_RETENTION_DAYS" in
    ''|*[!0-9]*) die "BACKUP_RETENTION_DAYS must be a whole number of days, got '$BACKUP_RETENTION_DAYS'" ;;
esac

umask 077
stamp=$(date -u +%Y%m%dT%H%M%SZ)
partial="$BACKUP_DIR/.partial-$stamp"
final="$BACKUP_DIR/$stamp"
mkdir -p "$partial"
trap 'rm -rf "$partial"' EXIT

log "backing up database $PGDATABASE from $PGHOST into $final"
pg_dumpall --globals-only -f "$partial/globals.sql" -l "$PGDATABASE" \
    || die "pg_dumpall --globals-only failed"
pg_dump --format=custom --file="$partial/$PGDATABASE.dump" "$PGDATABASE" || die "pg_dump failed"
psql -X -q -t -A -v ON_ERROR_STOP=1 -f - > "$partial/citus-distribution.sql" <<'SQL' || die "reading the Citus distribution failed"
-- One call per Citus table, colocation groups kept: the first table of a group starts it, the others join it.
WITH t AS (
    SELECT table_name::text AS name, citus_table_type AS type, distribution_column AS col, shard_count, colocation_id,
           first_value(table_name::text) OVER (PARTITION BY colocation_id ORDER BY table_name::text) AS first_in_group
      FROM citus_tables
)
SELECT CASE type
    WHEN 'reference' THEN format('SELECT create_reference_table(%L);', name)
    WHEN 'distributed' THEN format('SELECT create_distributed_table(%L, %L, shard_count := %s, colocate_with := %L);',
                                   name, col, shard_count, CASE WHEN name = first_in_group THEN 'none' ELSE first_in_group END)
    ELSE format('SELECT citus_add_local_table_to_metadata(%L);', name)
  END
  FROM t
 ORDER BY colocation_id, name = first_in_group DESC, name;
SQL
mv "$partial" "$final"
trap - EXIT
log "backup complete: $(du -sk "$final" | cut -f1) KiB, $(wc -l < "$final/citus-distribution.sql") Citus table(s)"

find "$BACKUP_DIR" -mindepth 1 -maxdepth 1 -type d -name '2*' -mtime +"$BACKUP_RETENTION_DAYS" | while read -r old; do
    log "removing $old (older than $BACKUP_RETENTION_DAYS days)"
    rm -rf "$old"
done
find "$BACKUP_DIR" -mindepth 1 -maxdepth 1 -type d -name '.partial-*' -mmin +1440 -exec rm -rf {} +
