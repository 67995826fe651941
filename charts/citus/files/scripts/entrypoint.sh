#!/bin/sh
# Starts one Citus node (coordinator or worker).
# First start: initdb into $PGDATA (a subdirectory of the volume), then, on a socket-only server, the
# application role, the database and the citus extension: all before any worker can be registered.
# Every start: a 0600 password file so that this server's own connections to the other nodes authenticate
# (Citus connects between nodes with libpq defaults), then exec postgres with the chart's configuration.
set -eu
CITUS_LOG_TAG="citus-${CITUS_NODE_ROLE:-node}"
. "$(dirname "$0")/common.sh"

: "${PGDATA:?PGDATA is not set}"
: "${POSTGRES_USER:?POSTGRES_USER is not set}"
: "${POSTGRES_DB:?POSTGRES_DB is not set}"
CONF_FILE=${CITUS_CONF_FILE:-/etc/citus/conf/postgresql.conf}
SOCKET_DIR=${CITUS_SOCKET_DIR:-/var/run/postgresql}
STATE_DIR=${CITUS_STATE_DIR:-/tmp/citus}
INIT_DONE="$PGDATA/citus-chart-init.done"

file_env POSTGRES_PASSWORD
[ -n "$POSTGRES_PASSWORD" ] || die "no password for $POSTGRES_USER (POSTGRES_PASSWORD or POSTGRES_PASSWORD_FILE)"
if [ -n "${CITUS_APP_USER:-}" ]; then
    file_env CITUS_APP_PASSWORD
    [ -n "$CITUS_APP_PASSWORD" ] || die "no password for $CITUS_APP_USER (CITUS_APP_PASSWORD or CITUS_APP_PASSWORD_FILE)"
fi
[ -r "$CONF_FILE" ] || die "configuration $CONF_FILE is missing"

umask 077
mkdir -p "$STATE_DIR"

# libpq ignores a password file that others can read, and a uid without a passwd entry has no $HOME.
PGPASSFILE="$STATE_DIR/pgpass"
{
    printf '*:*:*:%s:%s\n' "$(pgpass_escape "$POSTGRES_USER")" "$(pgpass_escape "$POSTGRES_PASSWORD")"
    if [ -n "${CITUS_APP_USER:-}" ]; then
        printf '*:*:*:%s:%s\n' "$(pgpass_escape "$CITUS_APP_USER")" "$(pgpass_escape "$CITUS_APP_PASSWORD")"
    fi
} > "$PGPASSFILE.new"
mv "$PGPASSFILE.new" "$PGPASSFILE"
export PGPASSFILE

# initdb looks up the current user; an arbitrary uid has no passwd entry, so give it one through
# nss_wrapper, as the postgres image's entrypoint does.
with_passwd_entry() {
    if id -un >/dev/null 2>&1; then
        "$@"
        return
    fi
    nss_lib=
    for candidate in /usr/lib/*/libnss_wrapper.so /usr/lib/libnss_wrapper.so /usr/lib64/libnss_wrapper.so; do
        if [ -e "$candidate" ]; then nss_lib=$candidate; break; fi
    done
    [ -n "$nss_lib" ] || die "uid $(id -u) has no passwd entry and libnss_wrapper.so is not installed"
    printf 'postgres:x:%s:%s:PostgreSQL:%s:/bin/false\n' "$(id -u)" "$(id -g)" "$PGDATA" > "$STATE_DIR/passwd"
    printf 'postgres:x:%s:\n' "$(id -g)" > "$STATE_DIR/group"
    LD_PRELOAD=$nss_lib NSS_WRAPPER_PASSWD="$STATE_DIR/passwd" NSS_WRAPPER_GROUP="$STATE_DIR/group" "$@"
}

setup_failed() {
    pg_ctl -D "$PGDATA" -w -t 120 -m fast stop >/dev/null 2>&1 || true
    die "creating the role, database or extension failed (see the errors above)"
}

# Role, database and extension, idempotently, on a server that only listens on its socket.
setup_database() {
    pg_ctl -D "$PGDATA" -w -t 120 start -l "$STATE_DIR/setup-server.log" \
        -o "-c config_file=$CONF_FILE -c listen_addresses= -c unix_socket_directories=$SOCKET_DIR -c log_statement=none" \
        || { cat "$STATE_DIR/setup-server.log" >&2; die "the setup server did not start"; }
    owner=${CITUS_APP_USER:-$POSTGRES_USER}
    psql -X -q -v ON_ERROR_STOP=1 -h "$SOCKET_DIR" -U "$POSTGRES_USER" -d postgres -v app_user= -v app_password= \
        -v owner="$owner" -v db="$POSTGRES_DB" <<'SQL' || setup_failed
\getenv app_user CITUS_APP_USER
\getenv app_password CITUS_APP_PASSWORD
SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', :'app_user', :'app_password')
 WHERE :'app_user' <> '' AND NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'app_user') \gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'owner')
 WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'db') \gexec
\connect :"db"
CREATE EXTENSION IF NOT EXISTS citus;
SQL
    pg_ctl -D "$PGDATA" -w -t 120 -m fast stop >/dev/null
}

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    log "initialising a new data directory in $PGDATA"
    mkdir -p "$PGDATA"
    chmod 0700 "$PGDATA"
    printf '%s\n' "$POSTGRES_PASSWORD" > "$STATE_DIR/initdb-pwfile"
    with_passwd_entry initdb -D "$PGDATA" --username="$POSTGRES_USER" --pwfile="$STATE_DIR/initdb-pwfile" \
        --auth-local=trust --auth-host=scram-sha-256 --encoding=UTF8 >/dev/null \
        || { rm -f "$STATE_DIR/initdb-pwfile"; die "initdb failed"; }
    rm -f "$STATE_DIR/initdb-pwfile"
else
    log "using the existing data directory $PGDATA"
    # The kubelet's fsGroup ownership change (fsGroupChangePolicy Always, on volumes that support it) adds
    # group write to everything on the volume at every pod start. PostgreSQL refuses a group-writable data
    # directory and a group-readable TLS key (Citus writes server.key into PGDATA): restore both.
    chmod 0700 "$PGDATA"
    if [ -e "$PGDATA/server.key" ]; then chmod 0600 "$PGDATA/server.key"; fi
fi

if [ ! -e "$INIT_DONE" ]; then
    log "creating ${CITUS_APP_USER:+role $CITUS_APP_USER, }database $POSTGRES_DB and the citus extension"
    setup_database
    : > "$INIT_DONE"
    log "database $POSTGRES_DB is ready"
fi

/bin/sh "$(dirname "$0")/monitoring-role.sh"
unset POSTGRES_PASSWORD CITUS_APP_PASSWORD
log "starting PostgreSQL"
exec postgres -D "$PGDATA" -c config_file="$CONF_FILE" "$@"
