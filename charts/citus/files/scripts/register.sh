#!/bin/sh
# Registers the workers with the coordinator (Helm post-install/post-upgrade/post-rollback hook).
# Idempotent: waits for every node, makes sure each has the citus extension at the version of its library
# (ALTER EXTENSION citus UPDATE, coordinator first: Citus does not propagate it), sets the coordinator host,
# adds each missing worker and re-activates an inactive one, all by stable DNS name, never by IP; gives the
# workers of this release that an abandoned drain left at shouldhaveshards=false their shards back
# (only as a Helm hook, CITUS_HOOK=true; see scale-in.sh); then, when a worker holds no shard yet, starts a
# background rebalance (CITUS_REBALANCE=true); as a hook it replaces a running one planned without that worker.
# With --watch (the coordinator's registration loop under autoscaling): every CITUS_WATCH_INTERVAL seconds,
# registers the worker pods at ordinals below CITUS_WORKER_MAX that answer and are not registered yet.
# Environment: CITUS_COORDINATOR_HOST, CITUS_COORDINATOR_PORT, CITUS_WORKER_HOSTS (space separated),
# CITUS_WORKER_PORT, CITUS_WAIT_SECONDS, CITUS_AUTH_GRACE_SECONDS, CITUS_REBALANCE, CITUS_SHARD_TRANSFER_MODE,
# CITUS_HOOK, PGDATABASE, PGUSER, PGPASSWORD or PGPASSWORD_FILE (or PGPASSFILE); with --watch also CITUS_WORKER_PREFIX,
# CITUS_WORKER_DOMAIN, CITUS_WORKER_MAX, CITUS_WATCH_INTERVAL.
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
REBALANCE=${CITUS_REBALANCE:-true}
# A Helm hook runs alone: Helm runs one operation of a release at a time. The registration loop does not (a
# drain hook may run beside it), so it never ends another session's work.
HOOK=${CITUS_HOOK:-true}
MODE=${CITUS_SHARD_TRANSFER_MODE:-auto}
if [ -n "${PGPASSFILE:-}" ] && [ -z "${PGPASSWORD:-}${PGPASSWORD_FILE:-}" ]; then
    : # the coordinator's own password file (registration loop)
else
    file_env PGPASSWORD
    [ -n "$PGPASSWORD" ] || die "no password for $PGUSER (PGPASSWORD or PGPASSWORD_FILE)"
fi
export PGCONNECT_TIMEOUT="${PGCONNECT_TIMEOUT:-5}"
export PGAPPNAME=citus-chart-registration

# sql HOST PORT: run the SQL on stdin there; psql variables host/port/... come as -v arguments.
sql() {
    sql_host=$1 sql_port=$2
    shift 2
    psql_strict -h "$sql_host" -p "$sql_port" "$@"
}

# Right after a password rotation the nodes apply the Secret's new value within about a minute (the
# kubelet's Secret volume update): a refused login is waited for a while in each attempt, and the Job's
# retries (backoffLimit) cover the rest; a wrong password still fails each attempt quickly.
AUTH_GRACE=${CITUS_AUTH_GRACE_SECONDS:-30}

# wait_for LABEL HOST PORT: until the node accepts an authenticated query, before DEADLINE.
wait_for() {
    refused_since=
    while :; do
        if out=$(echo 'SELECT 1' | sql "$2" "$3" 2>&1); then
            log "$1 $2:$3 accepts connections"
            return 0
        fi
        case "$out" in
            *"database \"$PGDATABASE\" does not exist"*)
                die "$1 $2:$3 has no database $PGDATABASE: a node creates it on its first start only, so auth.database was changed after the release was installed. Set auth.database back to the database that holds the data; to rename it, ALTER DATABASE on every node first" ;;
            *"password authentication failed"*|*"no password supplied"*|*"role \""*"\" does not exist"*)
                now=$(date +%s)
                refused_since=${refused_since:-$now}
                if [ $(( now - refused_since )) -ge "$AUTH_GRACE" ] || [ "$now" -ge "$DEADLINE" ]; then
                    die "cannot log in to $1 $2:$3 as $PGUSER: $(echo "$out" | tr '\n' ' ')(refused for $(( now - refused_since ))s; the nodes take the password from the Secret, see the README on password rotation)"
                fi ;;
        esac
        if [ "$(date +%s)" -ge "$DEADLINE" ]; then
            case "$out" in
                *"could not translate host name"*)
                    die "$1 $2:$3 did not accept connections in time (CITUS_WAIT_SECONDS=$WAIT_SECONDS): the name does not resolve. Either its pod is not running and ready (kubectl get pods), or clusterDomain (${2#*.svc.}) is not this cluster's DNS domain (the kubelet's --cluster-domain, usually cluster.local): set clusterDomain to it. $(echo "$out" | tr '\n' ' ')" ;;
            esac
            die "$1 $2:$3 did not accept connections in time (CITUS_WAIT_SECONDS=$WAIT_SECONDS): $(echo "$out" | tr '\n' ' ')"
        fi
        log "waiting for $1 $2:$3: $(echo "$out" | head -n 1)"
        sleep 2
    done
}

# ensure_extension LABEL HOST PORT: the citus extension exists and matches the node's library. Each node's
# entrypoint updates it before it listens on TCP; this catches a node started by an older chart.
ensure_extension() {
    versions=$(echo "SELECT coalesce((SELECT extversion FROM pg_extension WHERE extname = 'citus'), '') || ' ' || default_version FROM pg_available_extensions WHERE name = 'citus'" \
        | sql "$2" "$3") || die "cannot query $1 $2:$3"
    installed=${versions% *}
    available=${versions#* }
    if [ -z "$installed" ]; then
        log "$1 $2:$3 has no citus extension in database $PGDATABASE: creating it"
        echo 'CREATE EXTENSION IF NOT EXISTS citus' | sql "$2" "$3" || die "CREATE EXTENSION citus failed on $1 $2:$3"
    elif [ "$installed" != "$available" ]; then
        log "$1 $2:$3 has citus $installed, its library is $available: ALTER EXTENSION citus UPDATE"
        echo 'ALTER EXTENSION citus UPDATE' | sql "$2" "$3" || die "ALTER EXTENSION citus UPDATE failed on $1 $2:$3"
    else
        log "$1 $2:$3 has citus $installed"
    fi
}

# watch: the registration loop. Registers what answers; a worker that does not answer yet is tried again.
watch() {
    : "${CITUS_WORKER_PREFIX:?}" "${CITUS_WORKER_DOMAIN:?}" "${CITUS_WORKER_MAX:?}"
    interval=${CITUS_WATCH_INTERVAL:-20}
    log "registration loop: worker ordinals 0 to $(( CITUS_WORKER_MAX - 1 )) every ${interval}s"
    while :; do
        sleep "$interval"
        registered=$(echo "SELECT string_agg(nodename, ' ') FROM pg_dist_node WHERE isactive" \
            | sql "$CITUS_COORDINATOR_HOST" "$CITUS_COORDINATOR_PORT" 2>/dev/null) || continue
        new=
        i=0
        while [ "$i" -lt "$CITUS_WORKER_MAX" ]; do
            host="$CITUS_WORKER_PREFIX$i$CITUS_WORKER_DOMAIN"
            i=$((i + 1))
            case " $registered " in *" $host "*) continue ;; esac
            getent hosts "$host" >/dev/null 2>&1 || continue
            # A worker the scale-in hook drained and removed keeps running until the StatefulSet shrinks.
            retired=$(worker_retired "$host" "$CITUS_WORKER_PORT" 2>/dev/null) || continue
            [ "$retired" = f ] || continue
            new="$new $host"
        done
        if [ -z "$new" ]; then
            # A worker registered while a rebalance ran was left empty by it: once nothing runs, one more
            # rebalance (tried once per set of empty workers).
            empty=$(sql "$CITUS_COORDINATOR_HOST" "$CITUS_COORDINATOR_PORT" 2>/dev/null <<'SQL'
SELECT coalesce(string_agg(n.nodename, ' ' ORDER BY n.nodename), '') FROM pg_dist_node n
 WHERE n.isactive AND n.shouldhaveshards AND n.groupid <> 0 AND n.noderole = 'primary'
   AND NOT EXISTS (SELECT 1 FROM pg_dist_background_job WHERE state IN ('scheduled', 'running', 'cancelling', 'failing'))
   AND EXISTS (SELECT 1 FROM pg_dist_partition WHERE NOT (partmethod = 'n' AND repmodel = 't'))
   AND NOT EXISTS (SELECT 1 FROM pg_dist_placement p JOIN pg_dist_shard s USING (shardid)
                     JOIN pg_dist_partition t USING (logicalrelid)
                    WHERE p.groupid = n.groupid AND NOT (t.partmethod = 'n' AND t.repmodel = 't'))
SQL
            ) || continue
            if [ -n "$empty" ] && [ "$empty" != "${tried_empty:-}" ]; then
                tried_empty=$empty
                log "worker(s) holding no shard while no rebalance runs: $empty"
                CITUS_WORKER_HOSTS='' CITUS_WAIT_SECONDS=120 CITUS_HOOK=false sh "$0" || log "starting a rebalance failed"
            fi
            continue
        fi
        log "unregistered worker pod(s):$new"
        if CITUS_WORKER_HOSTS=$new CITUS_WAIT_SECONDS=120 CITUS_HOOK=false sh "$0"; then
            log "registered:$new"
        else
            log "registering$new failed; trying again in ${interval}s"
        fi
    done
}
if [ "${1:-}" = --watch ]; then
    watch
fi

wait_for coordinator "$CITUS_COORDINATOR_HOST" "$CITUS_COORDINATOR_PORT"
ensure_extension coordinator "$CITUS_COORDINATOR_HOST" "$CITUS_COORDINATOR_PORT"

coord() {
    sql "$CITUS_COORDINATOR_HOST" "$CITUS_COORDINATOR_PORT" "$@"
}

# The same pods registered under another cluster domain (clusterDomain changed): adding them again would put
# one server in two node groups, and the drain hook would not know the old names. Refused before any change,
# and before waiting for the workers, which the same change is restarting.
other_domain=$(coord -v names="$CITUS_COORDINATOR_HOST $WORKER_HOSTS" <<'SQL'
SELECT coalesce(string_agg(DISTINCT n.nodename, ', '), '')
  FROM pg_dist_node n, unnest(string_to_array(:'names', ' ')) AS e(name)
 WHERE e.name <> '' AND n.nodename <> e.name AND split_part(n.nodename, '.svc.', 1) = split_part(e.name, '.svc.', 1)
SQL
) || die "cannot read pg_dist_node on the coordinator"
[ -z "$other_domain" ] || die "this release's pods are registered under another cluster domain: $other_domain (clusterDomain is now ${CITUS_COORDINATOR_HOST#*.svc.}). Nothing was changed. Set clusterDomain back to the domain they were registered with; clusterDomain must be the cluster's DNS domain, and renaming every node (citus_update_node) needs all of them reachable under both names"

for host in $WORKER_HOSTS; do
    wait_for worker "$host" "$CITUS_WORKER_PORT"
    ensure_extension worker "$host" "$CITUS_WORKER_PORT"
    # A revision that keeps a worker whose drain was abandoned after it was marked: the loop may add it again.
    if [ "$HOOK" = true ]; then
        mark_worker "$host" "$CITUS_WORKER_PORT" kept || die "cannot clear the removal mark on worker $host"
    fi
done

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
            log "worker $host:$CITUS_WORKER_PORT already registered and active (node ${state% *})"
            # A worker whose volume was lost starts on a new, empty data directory and still looks registered:
            # Citus would route queries to shards it no longer has. Its own copy of the metadata tells.
            placed=$(echo "SELECT count(*) FROM pg_dist_placement p JOIN pg_dist_node n USING (groupid) WHERE n.nodename = :'host' AND n.nodeport = :port" \
                | coord -v host="$host" -v port="$CITUS_WORKER_PORT") || die "cannot count the placements on worker $host"
            if [ "$placed" != 0 ]; then
                known=$(echo "SELECT count(*) FROM pg_dist_placement" | sql "$host" "$CITUS_WORKER_PORT") \
                    || die "cannot read the metadata of worker $host"
                [ "$known" != 0 ] || die "worker $host holds $placed shard placement(s) by the coordinator's metadata, but its own data directory has no Citus metadata: it was initialised again (volume lost or replaced, or persistence disabled), and the shards that lived there are gone. Nothing was changed. Restore that volume if you can; otherwise restore the data from a backup into a new release (README: backups)"
            fi ;;
    esac
done

# After a Citus major version update of every node, the distributed schema needs Citus's own finishing steps
# (citus_finish_citus_upgrade; a notice and nothing else when they ran already, as after a fresh install).
if [ "$HOOK" = true ]; then
    printf 'SET client_min_messages = warning;\nCALL citus_finish_citus_upgrade();\n' | coord >/dev/null \
        || die "CALL citus_finish_citus_upgrade() failed on the coordinator (the error above); the workers stay as they are: fix the cause and run the upgrade again"
fi

# citus_add_node does not copy reference tables to a new worker (Citus >= 11 defers that), and until they are
# there no shard can move onto it, not even by hand (citus_move_shard_placement refuses). A background
# rebalance copies them as its first task, outside this Job's deadline, however big they are (review D12):
# when this Job starts one, it leaves the copy to it; when it starts none, it copies them itself, within what
# is left of its deadline. So after registration every worker has the reference tables, or a background job
# that copies them first runs. In auto mode Citus refuses to copy a reference table without replica identity
# online, and one lookup table without a primary key would fail every scale-out and its rebalance (D1): those
# are copied here with block_writes (writes to reference tables wait during the copy), whatever follows.
no_identity=
if [ "$MODE" = auto ]; then
    no_identity=$(coord <<'SQL'
SELECT string_agg(t.logicalrelid::regclass::text, ', ' ORDER BY t.logicalrelid::regclass::text)
  FROM pg_dist_partition t JOIN pg_class c ON c.oid = t.logicalrelid
 WHERE t.partmethod = 'n' AND t.repmodel = 't'
   AND (c.relreplident = 'n'
        OR (c.relreplident = 'd' AND NOT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary)))
   AND EXISTS (SELECT 1 FROM pg_dist_node n
                WHERE n.isactive AND n.noderole = 'primary'
                  AND NOT EXISTS (SELECT 1 FROM pg_dist_placement p JOIN pg_dist_shard s USING (shardid)
                                   WHERE s.logicalrelid = t.logicalrelid AND p.groupid = n.groupid))
SQL
    ) || die "cannot check the replica identity of the reference tables"
fi

# copy_reference_tables: replicate_reference_tables (a no-op when every node has them), under a
# statement_timeout that ends before the Job's deadline.
copy_reference_tables() {
    crt_mode=$MODE
    [ -z "$no_identity" ] || crt_mode=block_writes
    crt_left=$(( DEADLINE - $(date +%s) ))
    [ "$crt_left" -gt 0 ] || crt_left=1
    echo "SET statement_timeout = :'timeout'; SELECT replicate_reference_tables(shard_transfer_mode => :'mode')" \
        | coord -v timeout="${crt_left}s" -v mode="$crt_mode" >/dev/null \
        || die "copying the reference tables to the new worker(s) ($crt_mode) failed or did not end within ${crt_left}s, what was left of this run's ${WAIT_SECONDS}s (the error above)${no_identity:+. Tables without primary key or replica identity: $no_identity: with a primary key (or REPLICA IDENTITY FULL) a background rebalance copies them online, outside any deadline}. Until they are copied no shard can move onto the new worker(s). Copy them in a session of your own, without a deadline: SELECT replicate_reference_tables('$crt_mode'); or raise workerRegistration.activeDeadlineSeconds and run the release change again"
}

# done_without_rebalance: this Job starts no background job: it copies the reference tables itself, then ends.
done_without_rebalance() {
    copy_reference_tables
    exit 0
}

if [ -n "$no_identity" ]; then
    log "WARNING: reference table(s) without primary key or replica identity: $no_identity. They cannot be copied online: new workers get them now with block_writes (writes to reference tables wait during the copy). Add a primary key (or REPLICA IDENTITY FULL) so that the background rebalance copies them online"
    copy_reference_tables
fi

# An abandoned drain (its hook pod killed, or Helm gave up and the user rolled back or kept the workers) left
# workers of this release at shouldhaveshards=false, recorded in citus_chart.draining; every later rebalance
# would empty them. Helm runs one operation at a time, so a scale-in session still open now belongs to an
# abandoned drain: it and its background job end, and the kept workers take shards again.
recovered=0
if [ "$HOOK" = true ] && [ -n "$WORKER_HOSTS" ]; then
    pairs=
    for host in $WORKER_HOSTS; do
        pairs="$pairs${pairs:+,}('$(printf '%s' "$host" | sed "s/'/''/g")', $CITUS_WORKER_PORT)"
    done
    recovered=$(coord <<SQL
SELECT to_regclass('citus_chart.draining') IS NOT NULL AS has_record \gset
\if :has_record
SELECT coalesce(string_agg(d.nodename, ' ' ORDER BY d.nodename), '') AS kept
  FROM citus_chart.draining d JOIN (VALUES $pairs) AS l(host, port) ON d.nodename = l.host AND d.nodeport = l.port \gset
SELECT :'kept' <> '' AS abandoned \gset
\if :abandoned
\warn '$CITUS_LOG_TAG: an abandoned drain left' :kept 'at shouldhaveshards=false; this release keeps them: ending the drain and giving them their shards back'
SELECT pg_terminate_backend(pid) FROM pg_stat_activity
 WHERE application_name = 'citus-chart-scale-in' AND pid <> pg_backend_pid() \g /dev/null
SELECT 'SELECT citus_rebalance_stop()' FROM pg_dist_background_job
 WHERE job_type = 'rebalance' AND state IN ('scheduled', 'running') LIMIT 1 \gexec
SELECT citus_set_node_property(n.nodename, n.nodeport, 'shouldhaveshards', true)
  FROM pg_dist_node n JOIN citus_chart.draining d ON d.nodename = n.nodename AND d.nodeport = n.nodeport
  JOIN (VALUES $pairs) AS l(host, port) ON n.nodename = l.host AND n.nodeport = l.port
 WHERE NOT n.shouldhaveshards \g /dev/null
DELETE FROM citus_chart.draining d USING (VALUES $pairs) AS l(host, port) WHERE d.nodename = l.host AND d.nodeport = l.port;
SELECT 1;
\else
SELECT 0;
\endif
\else
SELECT 0;
\endif
SQL
    ) || die "cannot take back an abandoned drain (citus_chart.draining)"
    recovered=$(printf '%s' "$recovered" | tail -n 1)
fi

active=$(echo "SELECT count(*) FROM pg_dist_node WHERE isactive AND noderole = 'primary' AND groupid <> 0" | coord) \
    || die "cannot count the active workers"
log "done: $active active worker(s) registered, $expected expected from this release"

# A background rebalance when some worker that should hold shards holds none (a new one, or one whose
# rebalance never ran), and none is running already. It runs inside the coordinator, not in this Job.
[ "$REBALANCE" = true ] || done_without_rebalance
state=$(coord <<'SQL'
SELECT (SELECT count(*) FROM pg_dist_background_job WHERE state IN ('scheduled', 'running', 'cancelling', 'failing'))
       || ' ' || (SELECT count(*) FROM pg_dist_node n
                   WHERE n.isactive AND n.shouldhaveshards AND n.groupid <> 0 AND n.noderole = 'primary'
                     AND NOT EXISTS (SELECT 1 FROM pg_dist_placement p JOIN pg_dist_shard s USING (shardid)
                                       JOIN pg_dist_partition t USING (logicalrelid)
                                      WHERE p.groupid = n.groupid AND NOT (t.partmethod = 'n' AND t.repmodel = 't')))
       || ' ' || (SELECT count(*) FROM pg_dist_partition WHERE NOT (partmethod = 'n' AND repmodel = 't'))
SQL
) || die "cannot read the rebalance state"
read -r running empty tables <<EOF
$state
EOF
if [ "$tables" = 0 ] || { [ "$empty" = 0 ] && [ "$recovered" = 0 ]; }; then
    [ "$running" = 0 ] || log "a rebalance is running: SELECT * FROM citus_rebalance_status()"
    done_without_rebalance
fi
if [ "$running" != 0 ] && [ "$HOOK" != true ]; then
    log "a rebalance is running; the worker(s) that hold nothing get a rebalance of their own when it ended (next round)"
    done_without_rebalance
fi
if [ "$MODE" = auto ]; then
    missing=$(coord <<'SQL'
SELECT string_agg(t.logicalrelid::regclass::text, ', ')
  FROM pg_dist_partition t JOIN pg_class c ON c.oid = t.logicalrelid
 WHERE NOT (t.partmethod = 'n' AND t.repmodel = 't')
   AND (c.relreplident = 'n'
        OR (c.relreplident = 'd' AND NOT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary)))
SQL
    ) || die "cannot check the replica identity of the tables"
    if [ -n "$missing" ]; then
        log "WARNING: no rebalance started: table(s) without primary key or replica identity cannot move online: $missing. Add a primary key or REPLICA IDENTITY FULL, or set workerRegistration.shardTransferMode=block_writes, then SELECT citus_rebalance_start(shard_transfer_mode => 'block_writes')"
        done_without_rebalance
    fi
fi
# parallel_transfer_colocated_shards exists from Citus 13.2 on: colocated shard groups move in parallel.
parallel=$(echo "SELECT count(*) FROM pg_proc WHERE proname = 'citus_rebalance_start' AND 'parallel_transfer_colocated_shards' = ANY (proargnames)" | coord) \
    || die "cannot inspect citus_rebalance_start"
if [ "$parallel" != 0 ]; then
    call="citus_rebalance_start(shard_transfer_mode => :'mode', parallel_transfer_colocated_shards => true)"
else
    call="citus_rebalance_start(shard_transfer_mode => :'mode')"
fi
# A running rebalance was planned without the empty (or recovered) workers, and Citus runs one at a time:
# left alone it would end with them still empty. Stopped (moves done so far stay), then planned again.
if [ "$running" != 0 ]; then
    log "a running rebalance was planned without the worker(s) that hold nothing: stopping it to plan again with every worker"
    coord >/dev/null <<'SQL' || die "cannot stop the running rebalance: SELECT * FROM citus_rebalance_status()"
SELECT 'SELECT citus_rebalance_stop()' FROM pg_dist_background_job
 WHERE job_type = 'rebalance' AND state IN ('scheduled', 'running') LIMIT 1 \gexec
SQL
fi
until [ "$(echo "SELECT count(*) FROM pg_dist_background_job WHERE state IN ('scheduled', 'running', 'cancelling', 'failing')" | coord)" = 0 ]; do
    [ "$(date +%s)" -lt "$DEADLINE" ] || die "a Citus background job is still running (SELECT * FROM pg_dist_background_job): no rebalance started; start one when it ended: SELECT citus_rebalance_start()"
    sleep 1
done
job=$(echo "SELECT $call" | coord -v mode="$MODE") || die "$call failed"
if [ -n "$job" ]; then
    log "background rebalance started (job $job, $MODE); watch it with SELECT * FROM citus_rebalance_status();"
else
    log "no rebalance needed: the shards are spread evenly already"
    copy_reference_tables
fi
