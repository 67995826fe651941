#!/bin/sh
# Starts one Citus node (coordinator or worker).
# A data directory made by another PostgreSQL major version stops the pod at once (see the README's major
# upgrade procedure). First start: initdb into a temporary directory renamed to $PGDATA only when complete,
# so a start killed at any moment is redone cleanly. Every start, on a server that only listens on its
# socket: the application role, the database and the citus extension (first start), the passwords from the
# Secret (the Secret is the source of truth), no timeouts for the superuser role (see UNLIMITED), and ALTER
# EXTENSION citus UPDATE in every database that has citus older than the library (a worker first waits,
# bounded, for the coordinator to update). Then a 0600 password file for this server's own connections to the
# other nodes, and postgres under a small supervisor that also re-applies a rotated password (Secret volume
# updated in place) and, on the coordinator under autoscaling, runs the registration loop.
# Environment: PGDATA, POSTGRES_USER, POSTGRES_DB, POSTGRES_PASSWORD or POSTGRES_PASSWORD_FILE, CITUS_NODE_ROLE,
# CITUS_APP_USER, CITUS_APP_PASSWORD or CITUS_APP_PASSWORD_FILE, CITUS_CONF_FILE, CITUS_SOCKET_DIR,
# CITUS_STATE_DIR, CITUS_WATCH_POSTGRES_PASSWORD_FILE, CITUS_WATCH_APP_PASSWORD_FILE,
# CITUS_WATCH_MONITORING_PASSWORD_FILE (Secret volume files), monitoring-role.sh's variables,
# CITUS_COORDINATOR_HOST, CITUS_COORDINATOR_PORT, CITUS_UPGRADE_WAIT_SECONDS, CITUS_REGISTER_WATCH
# (and register.sh's variables for the loop).
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
# While this file exists the liveness and startup probes count the node as alive (initdb, setup, upgrade).
INITIALIZING="$STATE_DIR/initializing"
PGPASSFILE="$STATE_DIR/pgpass"
export PGPASSFILE

sql_socket() {
    psql_strict -h "$SOCKET_DIR" -U "$POSTGRES_USER" "$@"
}

# write_pgpass SUPERUSER_PASSWORD [APP_PASSWORD]: libpq ignores a password file that others can read (the
# umask is 077), and a uid without a passwd entry has no $HOME.
write_pgpass() {
    {
        pgpass_line "$POSTGRES_USER" "$1"
        if [ -n "${CITUS_APP_USER:-}" ]; then pgpass_line "$CITUS_APP_USER" "${2:-}"; fi
    } | replace_file "$PGPASSFILE"
}

# set_passwords: ALTER ROLE for the superuser (and the application user) from $NEW_SUPER / $NEW_APP, on this
# node only (every node applies the Secret itself), never logged.
set_passwords() {
    psql_secret -h "$SOCKET_DIR" -U "$POSTGRES_USER" -d postgres -v app_user="${CITUS_APP_USER:-}" -v su="$POSTGRES_USER" <<'SQL'
\getenv su_password NEW_SUPER
\getenv app_password NEW_APP
SELECT set_config('citus.enable_alter_role_propagation', 'off', false)
 WHERE EXISTS (SELECT 1 FROM pg_settings WHERE name = 'citus.enable_alter_role_propagation') \g /dev/null
SELECT format('ALTER ROLE %I PASSWORD %L', :'su', :'su_password') \gexec
SELECT format('ALTER ROLE %I PASSWORD %L', :'app_user', :'app_password')
 WHERE :'app_user' <> '' AND EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'app_user') \gexec
SELECT :'app_user' <> '' AND NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'app_user') AS app_missing \gset
\if :app_missing
\warn 'WARNING: role' :app_user 'does not exist: auth.username was changed after the first start (the role and database are created then only). It was not created: set auth.username back, or create the role and grant it what the old one had'
\endif
SQL
}

# The timeouts of postgresql.extraConfiguration are for the application: a statement_timeout shorter than a
# shard copy would cancel every move, and one shorter than an extension update would stop the node. The setup
# server and, on every start, the superuser role of this node (the chart's jobs and scripts, and the
# connections through which Citus moves shards, log in as the superuser) run without them.
UNLIMITED="statement_timeout lock_timeout idle_in_transaction_session_timeout idle_session_timeout transaction_timeout"

# unlimited_superuser: ALTER ROLE <superuser> SET <timeout> = 0 for each of UNLIMITED this PostgreSQL has, on
# this node only (every node does it at its start).
unlimited_superuser() {
    sql_socket -d postgres -v su="$POSTGRES_USER" -v names="$UNLIMITED" <<'SQL'
SELECT set_config('citus.enable_alter_role_set_propagation', 'off', false)
 WHERE EXISTS (SELECT 1 FROM pg_settings WHERE name = 'citus.enable_alter_role_set_propagation') \g /dev/null
SELECT format('ALTER ROLE %I SET %s = 0', :'su', name) FROM pg_settings
 WHERE name = ANY (string_to_array(:'names', ' ')) ORDER BY name \gexec
SQL
}

# setup_options: "-c <timeout>=0" for each of UNLIMITED this server knows (an unknown one stops it).
setup_options() {
    so_known=$(postgres --describe-config 2>/dev/null | cut -f1)
    for so_name in $UNLIMITED; do
        if printf '%s\n' "$so_known" | grep -qx "$so_name"; then printf ' -c %s=0' "$so_name"; fi
    done
}

# setup_start_failed LOG: stops the pod with the reason the setup server did not start, naming the value to
# change where the server's log tells.
setup_start_failed() {
    missing=$(sed -n 's/.*could not access file "\([^"]*\)": No such file.*/\1/p' "$1" | head -n 1)
    if [ -n "$missing" ]; then
        libdir="$(dirname "$(readlink -f "$(command -v postgres)")")/../lib"
        have=$(find "$libdir" -maxdepth 1 -name '*.so' 2>/dev/null | sed 's|.*/||; s|\.so$||' | sort | tr '\n' ' ')
        die "PostgreSQL cannot load the library \"$missing\" (postgresql.sharedPreloadLibraries, or a library setting in postgresql.extraConfiguration): this image ($(postgres --version)) does not ship it. Remove it from the value, or use an image that has it. Libraries this image has: ${have:-none found in $libdir}"
    fi
    die "the setup server did not start (its log is above)"
}

# read_passwords: NEW_SUPER, NEW_APP and new_monitoring from the watched files (fails when one is unreadable).
read_passwords() {
    NEW_SUPER=$(cat "$CITUS_WATCH_POSTGRES_PASSWORD_FILE" 2>/dev/null) &&
        NEW_APP=$(cat "${CITUS_WATCH_APP_PASSWORD_FILE:-/dev/null}" 2>/dev/null) &&
        new_monitoring=$(cat "${CITUS_WATCH_MONITORING_PASSWORD_FILE:-/dev/null}" 2>/dev/null)
}

# watch_passwords: every 10 s, the Secret volume's files (updated in place by the kubelet) against what this
# node applied; a change is applied as at start: set_passwords and the password file for the superuser and
# the application user, monitoring-role.sh (role, pg_dist_authinfo, the exporter's password file) for the
# monitoring role. A failed step is retried on the next round. The files are read one after another, so a
# round can meet an edit of several keys half-written: a change is applied once two reads 2 s apart agree,
# so that one edit of the Secret is applied, and logged, once.
watch_passwords() {
    CITUS_LOG_TAG="$CITUS_LOG_TAG-passwords"
    applied_super=$(cat "$CITUS_WATCH_POSTGRES_PASSWORD_FILE")
    applied_app=$(cat "${CITUS_WATCH_APP_PASSWORD_FILE:-/dev/null}")
    applied_monitoring=$(cat "${CITUS_WATCH_MONITORING_PASSWORD_FILE:-/dev/null}")
    while sleep 10; do
        read_passwords || continue
        [ -n "$NEW_SUPER" ] || continue
        if [ "$NEW_SUPER" != "$applied_super" ] || [ "$NEW_APP" != "$applied_app" ] ||
            { [ -n "$new_monitoring" ] && [ "$new_monitoring" != "$applied_monitoring" ]; }; then
            seen_super=$NEW_SUPER seen_app=$NEW_APP seen_monitoring=$new_monitoring
            sleep 2
            read_passwords || continue
            if [ "$NEW_SUPER" != "$seen_super" ] || [ "$NEW_APP" != "$seen_app" ] ||
                [ "$new_monitoring" != "$seen_monitoring" ]; then
                continue
            fi
        fi
        if [ "$NEW_SUPER" != "$applied_super" ] || [ "$NEW_APP" != "$applied_app" ]; then
            export NEW_SUPER NEW_APP
            if set_passwords >/dev/null; then
                write_pgpass "$NEW_SUPER" "$NEW_APP"
                applied_super=$NEW_SUPER applied_app=$NEW_APP
                log "the Secret's passwords changed: applied to this node's roles and to its connections to the other nodes"
            else
                log "applying the changed passwords failed; retrying in 10s"
            fi
            unset NEW_SUPER NEW_APP
        fi
        if [ -n "$new_monitoring" ] && [ "$new_monitoring" != "$applied_monitoring" ]; then
            # The script reads the file itself, as at start with usePasswordFiles: no password in any environment.
            if CITUS_MONITORING_PASSWORD='' CITUS_MONITORING_PASSWORD_FILE=$CITUS_WATCH_MONITORING_PASSWORD_FILE \
                /bin/sh "$(dirname "$0")/monitoring-role.sh"; then
                applied_monitoring=$new_monitoring
                log "the Secret's monitoring password changed: applied to role ${CITUS_MONITORING_USER:-} on this node and to the exporter's password file"
            else
                log "applying the changed monitoring password failed; retrying in 10s"
            fi
        fi
    done
}

# ---- Supervisor (second stage, started below with the passwords out of the environment) -------------
if [ "${1:-}" = --supervise ]; then
    shift
    postgres -D "$PGDATA" -c config_file="$CONF_FILE" "$@" &
    pg_pid=$!
    # The kubelet stops a pod with SIGTERM, which PostgreSQL reads as a smart shutdown: it would wait for every
    # session (application pools, other nodes' cached connections) until the grace period ends in SIGKILL and
    # crash recovery. A fast shutdown (SIGINT, the postgres image's STOPSIGNAL) ends them and checkpoints.
    trap 'kill -INT "$pg_pid" 2>/dev/null' INT TERM
    trap 'kill -QUIT "$pg_pid" 2>/dev/null' QUIT
    helpers=
    if [ -n "${CITUS_WATCH_POSTGRES_PASSWORD_FILE:-}" ]; then
        watch_passwords &
        helpers="$helpers $!"
    fi
    if [ "${CITUS_REGISTER_WATCH:-}" = true ]; then
        PGUSER=$POSTGRES_USER PGDATABASE=$POSTGRES_DB sh "$(dirname "$0")/register.sh" --watch &
        helpers="$helpers $!"
    fi
    status=0
    while :; do
        status=0
        wait "$pg_pid" || status=$?
        # wait returns early when a trapped signal arrives; postgres is still shutting down then.
        kill -0 "$pg_pid" 2>/dev/null || break
    done
    for pid in $helpers; do kill "$pid" 2>/dev/null || log "helper $pid already ended"; done
    exit "$status"
fi

# ---- First stage ------------------------------------------------------------------------------------
file_env POSTGRES_PASSWORD
[ -n "$POSTGRES_PASSWORD" ] || die "no password for $POSTGRES_USER (POSTGRES_PASSWORD or POSTGRES_PASSWORD_FILE)"
if [ -n "${CITUS_APP_USER:-}" ]; then
    file_env CITUS_APP_PASSWORD
    [ -n "$CITUS_APP_PASSWORD" ] || die "no password for $CITUS_APP_USER (CITUS_APP_PASSWORD or CITUS_APP_PASSWORD_FILE)"
fi
[ -r "$CONF_FILE" ] || die "configuration $CONF_FILE is missing"

umask 077
mkdir -p "$STATE_DIR"
: > "$INITIALIZING"
write_pgpass "$POSTGRES_PASSWORD" "${CITUS_APP_PASSWORD:-}"

# The image's PostgreSQL must be the one that made the data directory: a newer major version cannot read it.
server_major=$(postgres -V | sed -n 's/^[^0-9]*\([0-9][0-9]*\).*/\1/p')
if [ -s "$PGDATA/PG_VERSION" ]; then
    data_major=$(cat "$PGDATA/PG_VERSION")
    if [ "$data_major" != "$server_major" ]; then
        die "the data directory $PGDATA was made by PostgreSQL $data_major, this image runs PostgreSQL $server_major ($(postgres -V)). PostgreSQL cannot open another major version's data directory and nothing was changed. Set image.tag back to a Citus image on PostgreSQL $data_major, then follow the README section on PostgreSQL major upgrades (pg_upgrade per node, or a dump and restore into a new release)"
    fi
fi

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
    pg_ctl -D "$PGDATA" -w -t 120 -m fast stop >/dev/null 2>&1 || log "the setup server was not running"
    die "$1 (see the errors above)"
}

# citus_updates: "database installed available direction" lines, tab-separated (a database name may hold
# spaces), for every database whose citus differs from the library; direction "up" or "down" by the numbers
# of the versions ("13.2-1": 13, 2, 1).
citus_updates() {
    sql_socket -d postgres -c "SELECT datname FROM pg_database WHERE datallowconn" | while IFS= read -r db; do
        sql_socket -d "$db" <<'SQL'
SELECT current_database() || E'\t' || e.extversion || E'\t' || a.default_version || E'\t'
       || CASE WHEN string_to_array(translate(e.extversion, '-', '.'), '.')::int[]
                  < string_to_array(translate(a.default_version, '-', '.'), '.')::int[] THEN 'up' ELSE 'down' END
  FROM pg_extension e JOIN pg_available_extensions a ON a.name = e.extname
 WHERE e.extname = 'citus' AND e.extversion <> a.default_version
SQL
    done
}

# A worker updates after the coordinator (whose own entrypoint updates it without waiting for anyone):
# metadata the coordinator syncs must find the worker's catalog at the same or an older version.
wait_for_coordinator_update() {
    installed=$1
    [ "${CITUS_NODE_ROLE:-}" = worker ] && [ -n "${CITUS_COORDINATOR_HOST:-}" ] || return 0
    wait_s=${CITUS_UPGRADE_WAIT_SECONDS:-300}
    deadline=$(( $(date +%s) + wait_s ))
    while [ "$(date +%s)" -lt "$deadline" ]; do
        coord_version=$(echo "SELECT extversion FROM pg_extension WHERE extname = 'citus'" \
            | PGCONNECT_TIMEOUT=5 psql -X -q -t -A -v ON_ERROR_STOP=1 -h "$CITUS_COORDINATOR_HOST" \
                -p "${CITUS_COORDINATOR_PORT:-5432}" -U "$POSTGRES_USER" -d "$POSTGRES_DB" 2>/dev/null) || coord_version=
        if [ -n "$coord_version" ] && [ "$coord_version" != "$installed" ]; then
            log "the coordinator has citus $coord_version: updating this worker"
            return 0
        fi
        log "waiting for the coordinator to update citus from $installed first (${coord_version:-not reachable})"
        sleep 5
    done
    log "WARNING: the coordinator did not update citus within ${wait_s}s (CITUS_UPGRADE_WAIT_SECONDS): updating this worker anyway"
}

# Role, database, passwords and extension version, idempotently, on a server that only listens on its socket.
# Its start may replay WAL after a crash for as long as the WAL needs (no restartpoint is written meanwhile,
# so a bounded wait that kills it would start the replay over at every restart); the probes count the node
# as alive while it does.
setup_database() {
    : > "$STATE_DIR/setup-server.log"
    # CREATE EXTENSION citus writes ssl = on to postgresql.auto.conf at once (outside its transaction), then
    # the certificate: a first setup killed between the two leaves a server that cannot start. Without the
    # setting the data directory is as before the extension's creation, which the setup then runs again.
    if [ ! -e "$INIT_DONE" ] && [ ! -e "$PGDATA/server.crt" ] && grep -q "^ssl = 'on'" "$PGDATA/postgresql.auto.conf" 2>/dev/null; then
        log "an earlier setup stopped after citus turned ssl on but before it wrote the certificate: setting ssl back, citus's creation runs again"
        sed -i "/^ssl = 'on'\$/d" "$PGDATA/postgresql.auto.conf"
    fi
    pg_ctl -D "$PGDATA" -w -t 86400 start -l "$STATE_DIR/setup-server.log" \
        -o "-c config_file=$CONF_FILE -c listen_addresses= -c unix_socket_directories=$SOCKET_DIR -c log_statement=none $(setup_options)" \
        || { cat "$STATE_DIR/setup-server.log" >&2; setup_start_failed "$STATE_DIR/setup-server.log"; }
    if [ ! -e "$INIT_DONE" ]; then
        log "creating ${CITUS_APP_USER:+role $CITUS_APP_USER, }database $POSTGRES_DB and the citus extension"
        owner=${CITUS_APP_USER:-$POSTGRES_USER}
        psql_secret -h "$SOCKET_DIR" -U "$POSTGRES_USER" -d postgres -v app_user= -v app_password= -v owner="$owner" -v db="$POSTGRES_DB" <<'SQL' \
            || setup_failed "creating the role, database or extension failed"
\getenv app_user CITUS_APP_USER
\getenv app_password CITUS_APP_PASSWORD
SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', :'app_user', :'app_password')
 WHERE :'app_user' <> '' AND NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'app_user') \gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'owner')
 WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'db') \gexec
\connect :"db"
CREATE EXTENSION IF NOT EXISTS citus;
SQL
        : > "$INIT_DONE"
        log "database $POSTGRES_DB is ready"
    fi
    NEW_SUPER=$POSTGRES_PASSWORD NEW_APP=${CITUS_APP_PASSWORD:-} set_passwords >/dev/null \
        || setup_failed "setting the passwords from the Secret failed"
    unlimited_superuser >/dev/null || setup_failed "lifting the timeouts of the superuser role $POSTGRES_USER failed"
    updates=$(citus_updates) || setup_failed "reading the citus extension versions failed"
    # Citus has no downgrade path: a library older than the extension (a rollback or image.tag set back after
    # an upgrade) would fail every Citus call. Refused before anything waits or changes.
    down=$(echo "$updates" | awk -F '\t' '$4 == "down" { printf "%sdatabase %s has citus %s", sep, $1, $2; sep = ", " }')
    if [ -n "$down" ]; then
        setup_failed "this image's Citus library is $(echo "$updates" | head -n 1 | cut -f3), older than the extension in the data ($down): Citus cannot be downgraded and nothing was changed. Set image.tag back to the Citus version the data was upgraded to (or newer); to go back to an older Citus, restore a backup taken before the upgrade into a new release"
    fi
    if [ -n "$updates" ]; then
        wait_for_coordinator_update "$(echo "$updates" | head -n 1 | cut -f2)"
        echo "$updates" | while IFS="$(printf '\t')" read -r db installed available _; do
            log "database $db: citus $installed -> $available (ALTER EXTENSION citus UPDATE)"
            echo 'ALTER EXTENSION citus UPDATE' | sql_socket -d "$db" >/dev/null \
                || setup_failed "ALTER EXTENSION citus UPDATE failed in database $db"
        done
    fi
    pg_ctl -D "$PGDATA" -w -t 300 -m fast stop >/dev/null
}

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    # Only a complete initdb is renamed to $PGDATA, so a leftover temporary directory never holds data.
    staging="$PGDATA.initdb"
    rm -rf "$staging"
    if [ -d "$PGDATA" ] && [ -n "$(ls -A "$PGDATA")" ]; then
        aside="$PGDATA.incomplete-$(date -u +%Y%m%dT%H%M%SZ)"
        log "$PGDATA holds files but no PG_VERSION (an interrupted initialisation): moved to $aside"
        mv "$PGDATA" "$aside"
    fi
    log "initialising a new data directory in $PGDATA"
    mkdir -m 0700 "$staging"
    printf '%s\n' "$POSTGRES_PASSWORD" > "$STATE_DIR/initdb-pwfile"
    with_passwd_entry initdb -D "$staging" --username="$POSTGRES_USER" --pwfile="$STATE_DIR/initdb-pwfile" \
        --auth-local=trust --auth-host=scram-sha-256 --encoding=UTF8 >/dev/null \
        || { rm -f "$STATE_DIR/initdb-pwfile"; die "initdb failed"; }
    rm -f "$STATE_DIR/initdb-pwfile"
    if [ -d "$PGDATA" ]; then rmdir "$PGDATA"; fi
    mv "$staging" "$PGDATA"
else
    log "using the existing data directory $PGDATA"
    # The kubelet's fsGroup ownership change (fsGroupChangePolicy Always, on volumes that support it) adds
    # group write to everything on the volume at every pod start. PostgreSQL refuses a group-writable data
    # directory and a group-readable TLS key (Citus writes server.key into PGDATA): restore both.
    chmod 0700 "$PGDATA"
    if [ -e "$PGDATA/server.key" ]; then chmod 0600 "$PGDATA/server.key"; fi
fi

# A killed server's lock file names a process that may live on as a zombie, or whose PID another program
# now has (a pod without its own PID namespace); postgres would then refuse to start. A live postgres
# process keeps its lock file: postgres itself refuses that case. A server in another pod on the same volume
# (ReadWriteMany, a force-deleted pod still running) is invisible here, as to postgres: NOTES warns about it.
if [ -s "$PGDATA/postmaster.pid" ]; then
    old_pid=$(head -n 1 "$PGDATA/postmaster.pid")
    old_state=$(sed -n 's/^[0-9]* (.*) \([A-Za-z]\) .*/\1/p' "/proc/$old_pid/stat" 2>/dev/null) || old_state=
    old_comm=$(cat "/proc/$old_pid/comm" 2>/dev/null) || old_comm=
    if [ "$old_state" = Z ] || { [ -n "$old_comm" ] && [ "$old_comm" != postgres ]; }; then
        log "removing the stale postmaster.pid of process $old_pid (${old_comm:-gone}, state ${old_state:-none})"
        rm -f "$PGDATA/postmaster.pid"
    fi
fi

setup_database
/bin/sh "$(dirname "$0")/monitoring-role.sh"
rm -f "$INITIALIZING"

log "starting PostgreSQL"
unset POSTGRES_PASSWORD CITUS_APP_PASSWORD CITUS_MONITORING_PASSWORD
exec /bin/sh "$0" --supervise "$@"
