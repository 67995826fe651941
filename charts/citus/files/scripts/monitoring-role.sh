#!/bin/sh
# Creates or updates the least-privilege role postgres-exporter logs in with, on this node, at every start
# (run by entrypoint.sh before PostgreSQL starts for good, and by its password watcher on the running server
# when the Secret's monitoring password changes; does nothing when CITUS_MONITORING_USER is unset).
# Every step is idempotent and local to this node: Citus propagation is off in the session, so a worker that
# is down cannot stop the coordinator from starting, and every node gets the same role from the same Secret.
# - LOGIN, pg_monitor, EXECUTE on citus_remote_connection_stats() (revoked from PUBLIC by Citus);
# - a pg_dist_authinfo row (all nodes) so that the Citus functions the exporter calls on the coordinator
#   (shard sizes, connection checks) can log in to the workers as this role;
# - statement_timeout and citus.node_connection_timeout below the scrape timeout;
# - table citus_chart.backup_status, which the backup job updates and the exporter reads;
# - the exporter's 0600 password file (CITUS_MONITORING_PGPASSFILE, in a volume the two containers share).
# Environment: PGDATA, PGPORT, POSTGRES_USER, POSTGRES_DB, CITUS_MONITORING_USER, CITUS_MONITORING_PASSWORD or
# CITUS_MONITORING_PASSWORD_FILE, CITUS_MONITORING_PGPASSFILE, CITUS_CONF_FILE, CITUS_SOCKET_DIR, CITUS_STATE_DIR.
set -eu
CITUS_LOG_TAG=citus-monitoring-role
. "$(dirname "$0")/common.sh"

[ -n "${CITUS_MONITORING_USER:-}" ] || exit 0
: "${PGDATA:?PGDATA is not set}"
: "${POSTGRES_USER:?POSTGRES_USER is not set}"
: "${POSTGRES_DB:?POSTGRES_DB is not set}"
case "$CITUS_MONITORING_USER" in
    "$POSTGRES_USER"|"${CITUS_APP_USER:-}") die "CITUS_MONITORING_USER=$CITUS_MONITORING_USER is the superuser or the application user; the monitoring role must be a role of its own" ;;
esac
file_env CITUS_MONITORING_PASSWORD
[ -n "$CITUS_MONITORING_PASSWORD" ] || die "no password for $CITUS_MONITORING_USER (CITUS_MONITORING_PASSWORD or CITUS_MONITORING_PASSWORD_FILE)"
CONF_FILE=${CITUS_CONF_FILE:-/etc/citus/conf/postgresql.conf}
SOCKET_DIR=${CITUS_SOCKET_DIR:-/var/run/postgresql}
STATE_DIR=${CITUS_STATE_DIR:-/tmp/citus}
umask 077
mkdir -p "$STATE_DIR"

# A server of our own on the socket only, unless one already runs (then it is left running).
started=
if ! pg_ctl -D "$PGDATA" status >/dev/null 2>&1; then
    pg_ctl -D "$PGDATA" -w -t 120 start -l "$STATE_DIR/monitoring-role-server.log" \
        -o "-c config_file=$CONF_FILE -c listen_addresses= -c unix_socket_directories=$SOCKET_DIR -c log_statement=none" \
        >/dev/null || { cat "$STATE_DIR/monitoring-role-server.log" >&2; die "the server for the monitoring role did not start"; }
    started=1
fi
stop_server() {
    if [ -n "$started" ]; then pg_ctl -D "$PGDATA" -w -t 120 -m fast stop >/dev/null; fi
}

log "creating or updating role $CITUS_MONITORING_USER"
if ! with_secret_options psql -X -q -v ON_ERROR_STOP=1 -h "$SOCKET_DIR" -U "$POSTGRES_USER" -d "$POSTGRES_DB" \
    -v role="$CITUS_MONITORING_USER" <<'SQL'
\getenv password CITUS_MONITORING_PASSWORD
BEGIN;
SET LOCAL client_min_messages TO warning;
SET LOCAL citus.enable_ddl_propagation TO off;
SET LOCAL citus.enable_create_role_propagation TO off;
SET LOCAL citus.enable_alter_role_propagation TO off;
SET LOCAL citus.enable_alter_role_set_propagation TO off;
SELECT format('CREATE ROLE %I LOGIN', :'role') WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'role') \gexec
SELECT format('ALTER ROLE %I WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD %L',
              :'role', :'password') \gexec
GRANT pg_monitor TO :"role";
GRANT EXECUTE ON FUNCTION pg_catalog.citus_remote_connection_stats() TO :"role";
-- Below the default scrape timeout (10s), so a slow query or an unreachable worker costs one metric, not the scrape.
ALTER ROLE :"role" SET statement_timeout = '8s';
ALTER ROLE :"role" SET citus.node_connection_timeout = '3s';
DELETE FROM pg_catalog.pg_dist_authinfo WHERE rolename = :'role' AND nodeid = 0;
INSERT INTO pg_catalog.pg_dist_authinfo (nodeid, rolename, authinfo)
SELECT 0, :'role', 'password=''' || replace(replace(:'password', '\', '\\'), '''', '\''') || '''';
CREATE SCHEMA IF NOT EXISTS citus_chart;
CREATE TABLE IF NOT EXISTS citus_chart.backup_status (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    -- When this node started to track backups: the age alert counts from here until the first backup.
    tracked_since timestamptz NOT NULL DEFAULT now(),
    last_success timestamptz,
    last_backup text,
    last_failure timestamptz,
    last_failure_message text
);
INSERT INTO citus_chart.backup_status DEFAULT VALUES ON CONFLICT (singleton) DO NOTHING;
GRANT USAGE ON SCHEMA citus_chart TO :"role";
GRANT SELECT ON citus_chart.backup_status TO :"role";
COMMIT;
SQL
then
    stop_server || log "stopping the server failed as well"
    die "creating role $CITUS_MONITORING_USER failed (see the errors above)"
fi
# The exporter reads this file (libpq's PGPASSFILE) at every new connection, so a rotated password reaches it
# without a restart; written after the role has the password.
if [ -n "${CITUS_MONITORING_PGPASSFILE:-}" ] \
    && ! pgpass_line "$CITUS_MONITORING_USER" "$CITUS_MONITORING_PASSWORD" | replace_file "$CITUS_MONITORING_PGPASSFILE"; then
    stop_server || log "stopping the server failed as well"
    die "writing the exporter's password file $CITUS_MONITORING_PGPASSFILE failed"
fi
stop_server
