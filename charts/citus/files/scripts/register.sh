#!/bin/sh
# Registers the workers with the coordinator (Helm post-install/post-upgrade hook).
# Idempotent: waits for every node, makes sure each has the citus extension, sets the coordinator host,
# adds each missing worker and re-activates an inactive one, all by stable DNS name, never by IP.
# Environment: CITUS_COORDINATOR_HOST, CITUS_COORDINATOR_PORT, CITUS_WORKER_HOSTS (space separated),
# CITUS_WORKER_PORT, CITUS_WAIT_SECONDS, PGDATABASE, PGUSER, PGPASSWORD or PGPASSWORD_FILE.
set -eu
CITUS_LOG_TAG=citus-registration
. "$(dirname "$0")/common.sh"

: "${CITUS_COORDINATOR_HOST:?}" "${CITUS_COORDINATOR_PORT:?}" "${CITUS_WORKER_PORT:?}" "${PGDATABASE:?}" "${PGUSER:?}"
WORKER_HOSTS=${CITUS_WORKER_HOSTS:-}
WAIT_SECONDS=${CITUS_WAIT_SECONDS:-300}
# One deadline for all nodes, ending a little before CITUS_WAIT_SECONDS: the chart passes the Job's
# activeDeadlineSeconds there, and the node that never came up must be named before the Job is killed.
MARGIN=$(( WAIT_SECONDS / 10 ))
[ "$MARGIN" -le 15 ] || MARGIN=15
DEADLINE=$(( $(date +%s) + WAIT_SECONDS - MARGIN ))
file_env PGPASSWORD
[ -n "$PGPASSWORD" ] || die "no password for $PGUSER (PGPASSWORD or PGPASSWORD_FILE)"
export PGCONNECT_TIMEOUT=${PGCONNECT_TIMEOUT:-5}

# sql HOST PORT: run the SQL on stdin there; psql variables host/port/... come as -v arguments.
sql() {
    sql_host=$1 sql_port=$2
    shift 2
    psql -X -q -t -A -v ON_ERROR_STOP=1 -h "$sql_host" -p "$sql_port" "$@"
}

# wait_for LABEL HOST PORT: until the node accepts an authenticated query, before DEADLINE.
wait_for() {
    while :; do
        if out=$(echo 'SELECT 1' | sql "$2" "$3" 2>&1); then
            log "$1 $2:$3 accepts connections"
            return 0
        fi
        case "$out" in
            *"password authentication failed"*|*"no password supplied"*|*"role \""*"\" does not exist"*)
                die "cannot log in to $1 $2:$3 as $PGUSER: $(echo "$out" | tr '\n' ' ')" ;;
        esac
        if [ "$(date +%s)" -ge "$DEADLINE" ]; then
            die "$1 $2:$3 did not accept connections in time (CITUS_WAIT_SECONDS=$WAIT_SECONDS): $(echo "$out" | tr '\n' ' ')"
        fi
        log "waiting for $1 $2:$3: $(echo "$out" | head -n 1)"
        sleep 2
    done
}

# ensure_extension LABEL HOST PORT
ensure_extension() {
    version=$(echo "SELECT extversion FROM pg_extension WHERE extname = 'citus'" | sql "$2" "$3") \
        || die "cannot query $1 $2:$3"
    if [ -z "$version" ]; then
        log "$1 $2:$3 has no citus extension in database $PGDATABASE: creating it"
        echo 'CREATE EXTENSION IF NOT EXISTS citus' | sql "$2" "$3" || die "CREATE EXTENSION citus failed on $1 $2:$3"
    else
        log "$1 $2:$3 has citus $version"
    fi
}

wait_for coordinator "$CITUS_COORDINATOR_HOST" "$CITUS_COORDINATOR_PORT"
ensure_extension coordinator "$CITUS_COORDINATOR_HOST" "$CITUS_COORDINATOR_PORT"
for host in $WORKER_HOSTS; do
    wait_for worker "$host" "$CITUS_WORKER_PORT"
    ensure_extension worker "$host" "$CITUS_WORKER_PORT"
done

coord() {
    sql "$CITUS_COORDINATOR_HOST" "$CITUS_COORDINATOR_PORT" "$@"
}

current=$(echo "SELECT nodename || ':' || nodeport FROM pg_dist_node WHERE groupid = 0" | coord) \
    || die "cannot read pg_dist_node on the coordinator"
if [ "$current" = "$CITUS_COORDINATOR_HOST:$CITUS_COORDINATOR_PORT" ]; then
    log "coordinator already registered as $current"
else
    echo "SELECT citus_set_coordinator_host(:'host', :port)" \
        | coord -v host="$CITUS_COORDINATOR_HOST" -v port="$CITUS_COORDINATOR_PORT" >/dev/null \
        || die "citus_set_coordinator_host($CITUS_COORDINATOR_HOST, $CITUS_COORDINATOR_PORT) failed"
    log "coordinator registered as $CITUS_COORDINATOR_HOST:$CITUS_COORDINATOR_PORT${current:+ (was $current)}"
fi

expected=0
for host in $WORKER_HOSTS; do
    expected=$((expected + 1))
    state=$(echo "SELECT nodeid || ' ' || isactive FROM pg_dist_node WHERE nodename = :'host' AND nodeport = :port" \
        | coord -v host="$host" -v port="$CITUS_WORKER_PORT") || die "cannot read pg_dist_node for worker $host"
    case "$state" in
        "")
            nodeid=$(echo "SELECT citus_add_node(:'host', :port)" | coord -v host="$host" -v port="$CITUS_WORKER_PORT") \
                || die "citus_add_node($host, $CITUS_WORKER_PORT) failed"
            log "worker $host:$CITUS_WORKER_PORT added as node $nodeid" ;;
        *" f")
            echo "SELECT citus_activate_node(:'host', :port)" | coord -v host="$host" -v port="$CITUS_WORKER_PORT" >/dev/null \
                || die "citus_activate_node($host, $CITUS_WORKER_PORT) failed"
            log "worker $host:$CITUS_WORKER_PORT was inactive (node ${state% *}): re-activated" ;;
        *)
            log "worker $host:$CITUS_WORKER_PORT already registered and active (node ${state% *})" ;;
    esac
done

# citus_add_node does not copy reference tables to a new worker (Citus >= 11 defers that to the first
# rebalance), and until they are there no shard can be moved onto it: copy them now (no-op when complete).
echo "SELECT replicate_reference_tables()" | coord >/dev/null || die "replicate_reference_tables() failed"

active=$(echo "SELECT count(*) FROM pg_dist_node WHERE isactive AND noderole = 'primary' AND groupid <> 0" | coord) \
    || die "cannot count the active workers"
log "done: $active active worker(s) registered, $expected expected from this release"
