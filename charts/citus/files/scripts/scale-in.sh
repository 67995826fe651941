#!/bin/sh
# Drains the workers that a `helm upgrade` or `helm rollback` is about to remove (pre-upgrade and
# pre-rollback hook), so that the StatefulSet only shrinks once no shard lives on the pods that go away.
# The leaving workers are the registered ones (pg_dist_node, not DNS: a Pending pod has no address but may
# hold shards) of this release whose ordinal is >= CITUS_WORKER_TARGET. Before anything moves: every
# leaving worker must answer, and in `auto` mode every table with shards on them must be movable online.
# Then, in one session holding an advisory lock (a second run, e.g. Helm's retry, waits for the first
# instead of interrupting it): the leaving workers are recorded in citus_chart.draining and set to
# shouldhaveshards=false, citus_drain_node for each, citus_cleanup_orphaned_resources, and citus_remove_node
# for each whose group holds nothing any more. When this pod dies, its session ends at the next shard move
# (the coordinator writes to the lost client); a retry drains the rest, and a later revision that keeps those
# workers gives them shouldhaveshards=true back (register.sh, from the record).
# If the drain fails, the leaving workers get shouldhaveshards=true back (the upgrade is aborted and they stay).
# Whether any worker pod is about to go is read at run time (DNS), never from the render: a rollback replays
# what `lookup` answered when its revision was rendered (review D2), and Argo CD renders without it (D10).
# Environment: CITUS_COORDINATOR_HOST, CITUS_COORDINATOR_PORT, CITUS_WORKER_PREFIX ("<sts>-"),
# CITUS_WORKER_DOMAIN (".<headless>.<ns>.svc.<domain>"), CITUS_WORKER_TARGET, CITUS_SHARD_TRANSFER_MODE (auto,
# force_logical, block_writes), CITUS_WAIT_SECONDS, PGDATABASE, PGUSER, PGPASSWORD or PGPASSWORD_FILE
# (may be absent: a first GitOps sync runs this hook before the Secret exists).
set -eu
CITUS_LOG_TAG=citus-scale-in
. "$(dirname "$0")/common.sh"

: "${CITUS_COORDINATOR_HOST:?}" "${CITUS_COORDINATOR_PORT:?}" "${CITUS_WORKER_PREFIX:?}" "${CITUS_WORKER_DOMAIN:?}"
: "${CITUS_WORKER_TARGET:?}" "${PGDATABASE:?}" "${PGUSER:?}"
MODE=${CITUS_SHARD_TRANSFER_MODE:-auto}
WAIT_SECONDS=${CITUS_WAIT_SECONDS:-120}
case "$MODE" in
    auto|force_logical|block_writes) ;;
    *) die "CITUS_SHARD_TRANSFER_MODE=$MODE: use auto, force_logical or block_writes" ;;
esac
export PGCONNECT_TIMEOUT="${PGCONNECT_TIMEOUT:-10}"
export PGAPPNAME=citus-chart-scale-in

# doomed_pods: the worker pods that exist now (they have a DNS name: the headless Service publishes pods that
# are not ready) at ordinals the new revision's StatefulSet no longer has. A StatefulSet's ordinals are
# contiguous, so 16 names past the target cover any gap a pod being replaced can leave.
doomed_pods() {
    dp_i=$CITUS_WORKER_TARGET
    dp_found=
    while [ "$dp_i" -lt $(( CITUS_WORKER_TARGET + 16 )) ]; do
        dp_host="$CITUS_WORKER_PREFIX$dp_i$CITUS_WORKER_DOMAIN"
        if getent hosts "$dp_host" >/dev/null 2>&1; then dp_found="$dp_found${dp_found:+ }${CITUS_WORKER_PREFIX}$dp_i"; fi
        dp_i=$((dp_i + 1))
    done
    printf '%s' "$dp_found"
}

# A first sync by Argo CD runs pre-upgrade hooks before any other object: no Secret, no cluster, nothing to drain.
if [ -z "${PGPASSWORD:-}" ] && { [ -z "${PGPASSWORD_FILE:-}" ] || [ ! -s "$PGPASSWORD_FILE" ]; }; then
    unset PGPASSWORD_FILE
    if getent hosts "$CITUS_COORDINATOR_HOST" >/dev/null 2>&1; then
        die "the password Secret is missing but the coordinator $CITUS_COORDINATOR_HOST exists: cannot tell which workers hold shards; restore the Secret and retry"
    fi
    log "no password Secret and no coordinator yet (first install or first GitOps sync): nothing to drain"
    exit 0
fi
file_env PGPASSWORD

sql() {
    sql_host=$1 sql_port=$2
    shift 2
    psql_strict -h "$sql_host" -p "$sql_port" "$@"
}
coord() {
    sql "$CITUS_COORDINATOR_HOST" "$CITUS_COORDINATOR_PORT" "$@"
}

# The coordinator may be restarting, or broken by the revision this run replaces: an upgrade or rollback that
# removes no worker pod must not depend on it; one that removes pods must, to know what they hold.
deadline=$(( $(date +%s) + WAIT_SECONDS ))
until out=$(echo 'SELECT 1' | coord 2>&1); do
    doomed=$(doomed_pods)
    if [ -z "$doomed" ]; then
        log "coordinator not reachable ($(echo "$out" | head -n 1)), but no worker pod exists at ordinal $CITUS_WORKER_TARGET or above: nothing to drain"
        exit 0
    fi
    [ "$(date +%s)" -lt "$deadline" ] \
        || die "this release change keeps $CITUS_WORKER_TARGET worker(s) and would delete $doomed, but the coordinator $CITUS_COORDINATOR_HOST does not answer ($(echo "$out" | head -n 1)): nobody can tell what those workers hold, so nothing is drained and the change is refused. Fix the coordinator with a change that keeps every worker (helm upgrade with worker.replicaCount at the current number of workers; a helm rollback cannot change values, so roll back to a revision that has as many workers), then scale in"
    log "waiting for the coordinator (worker pod(s) $doomed would be deleted): $(echo "$out" | head -n 1)"
    sleep 3
done

# Leaving workers: "host port group" lines from pg_dist_node.
leaving=
all=$(echo "SELECT nodename || ' ' || nodeport || ' ' || groupid FROM pg_dist_node WHERE groupid <> 0 AND noderole = 'primary' ORDER BY nodename" | coord) \
    || die "cannot read pg_dist_node on the coordinator"
nl='
'
for line in $(echo "$all" | tr ' ' '|'); do
    host=${line%%|*}
    case "$host" in
        "$CITUS_WORKER_PREFIX"*"$CITUS_WORKER_DOMAIN") ;;
        *) continue ;;
    esac
    ordinal=${host#"$CITUS_WORKER_PREFIX"}
    ordinal=${ordinal%"$CITUS_WORKER_DOMAIN"}
    case "$ordinal" in ''|*[!0-9]*) continue ;; esac
    [ "$ordinal" -ge "$CITUS_WORKER_TARGET" ] || continue
    leaving="$leaving$line$nl"
done
if [ -z "$leaving" ]; then
    log "no registered worker at ordinal $CITUS_WORKER_TARGET or above: nothing to drain"
    exit 0
fi
names=$(printf '%s' "$leaving" | cut -d'|' -f1 | tr '\n' ' ')
names=${names% }
groups=$(printf '%s' "$leaving" | cut -d'|' -f3 | tr '\n' ',' | sed 's/,$//')
log "leaving worker(s): $names (transfer mode $MODE)"

# Every leaving worker must answer: its shards can only be copied from it.
unreachable=
for line in $leaving; do
    host=${line%%|*}
    rest=${line#*|}
    port=${rest%%|*}
    if ! out=$(echo 'SELECT 1' | PGCONNECT_TIMEOUT=5 sql "$host" "$port" 2>&1); then
        unreachable="$unreachable $host ($(echo "$out" | head -n 1))"
    fi
done
[ -z "$unreachable" ] || die "leaving worker(s) not reachable (Pending, crashed or unreachable):$unreachable. Nothing was moved or removed and the upgrade is refused: bring them up (kubectl get pods) and retry"

# Online moves need wal_level=logical and, per table, a primary key or replica identity.
if [ "$MODE" != block_writes ]; then
    wal=$(echo 'SHOW wal_level' | coord) || die "cannot read wal_level"
    [ "$wal" = logical ] || die "wal_level=$wal on the coordinator: online shard moves (shard transfer mode $MODE) need postgresql.walLevel=logical; or set workerRegistration.shardTransferMode=block_writes (writes to a shard wait while it moves). Nothing was moved"
fi
if [ "$MODE" = auto ]; then
    missing=$(coord -v groups="$groups" <<'SQL'
SELECT string_agg(DISTINCT t.logicalrelid::regclass::text, ', ')
  FROM pg_dist_partition t
  JOIN pg_class c ON c.oid = t.logicalrelid
 WHERE NOT (t.partmethod = 'n' AND t.repmodel = 't')
   AND (c.relreplident = 'n'
        OR (c.relreplident = 'd' AND NOT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary)))
   AND EXISTS (SELECT 1 FROM pg_dist_shard s JOIN pg_dist_placement p USING (shardid)
                WHERE s.logicalrelid = t.logicalrelid AND p.groupid IN (:groups))
SQL
    ) || die "cannot check the replica identity of the tables"
    [ -z "$missing" ] || die "table(s) without primary key or replica identity have shards on the leaving workers: $missing. Shard transfer mode auto cannot move them online. Fix: add a primary key, or ALTER TABLE <table> REPLICA IDENTITY FULL (or USING INDEX), or set workerRegistration.shardTransferMode=block_writes (writes wait while each shard moves). Nothing was moved"
fi

# psql variables :host and :port per leaving worker, as a list of SQL literals for the session below.
pairs=
for line in $leaving; do
    host=${line%%|*}
    rest=${line#*|}
    port=${rest%%|*}
    pairs="$pairs${pairs:+,}('$(printf '%s' "$host" | sed "s/'/''/g")', $port)"
done

# mark_leaving VALUE: psql lines, for the session that holds the scale-in lock, that make VALUE ("removed" or
# "kept") the mark of every leaving worker (master_run_on_worker: from the coordinator, one command per worker);
# psql variable mark_failed names the workers it could not mark. Written only under the lock, so that a failed
# run's "kept" can never land after another run's "removed".
mark_leaving() {
    ml_hosts='' ml_ports='' ml_commands=''
    for line in $leaving; do
        host=${line%%|*}
        rest=${line#*|}
        port=${rest%%|*}
        ml_hosts="$ml_hosts${ml_hosts:+,}'$(printf '%s' "$host" | sed "s/'/''/g")'"
        ml_ports="$ml_ports${ml_ports:+,}$port"
        ml_commands="$ml_commands${ml_commands:+,}'$(mark_command "$1" | sed "s/'/''/g")'"
    done
    cat <<SQL
SELECT string_agg(node_name || ': ' || result, '; ') AS mark_failed
  FROM master_run_on_worker(ARRAY[$ml_hosts]::text[], ARRAY[$ml_ports]::int[], ARRAY[$ml_commands]::text[], false)
 WHERE NOT success \gset
SQL
}

# The drain failed: unless another run holds or waits for the lock (it drains these workers now, and their
# state is its own), the leaving workers get shouldhaveshards=true and the mark "kept" back.
restore() {
    log "the drain failed: the leaving workers get shouldhaveshards=true back, nothing else changes"
    { cat <<SQL
SELECT pg_try_advisory_lock(hashtext('citus-chart-scale-in'))
       AND NOT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted
                          AND objid = hashtext('citus-chart-scale-in')::oid) AS scale_in_alone \gset
\if :scale_in_alone
SELECT citus_set_node_property(n.nodename, n.nodeport, 'shouldhaveshards', true)
  FROM pg_dist_node n JOIN (VALUES $pairs) AS l(host, port) ON n.nodename = l.host AND n.nodeport = l.port
 WHERE NOT n.shouldhaveshards \g /dev/null
DELETE FROM citus_chart.draining d USING (VALUES $pairs) AS l(host, port) WHERE d.nodename = l.host AND d.nodeport = l.port;
SQL
      mark_leaving kept
      cat <<SQL
\if :{?mark_failed}
\warn '$CITUS_LOG_TAG: could not take back the removal mark of' :mark_failed '(the registration hook of the next release change does)'
\endif
\else
\warn '$CITUS_LOG_TAG: another scale-in run drains these workers now: their state is left to it'
\endif
SQL
    } | coord >/dev/null || log "could not restore shouldhaveshards=true; run: SELECT citus_set_node_property(nodename, nodeport, 'shouldhaveshards', true) FROM pg_dist_node WHERE nodename IN ($names)"
    die "draining $names failed (see the error above); the upgrade is aborted, every worker stays registered"
}

log "draining $names"
# A transaction of the application that holds a lock a move needs (one left open, idle) holds up the drain for
# as long as it stays open. Every CITUS_LOCK_REPORT_SECONDS while the drain runs, the sessions it waits for
# are named in the log (not their statements, which may carry secrets), with how to end them; nothing ends them
# for the user. Another scale-in run is not such a session: waiting for it is said once, above.
report_lock_waits() {
    while sleep "${CITUS_LOCK_REPORT_SECONDS:-15}"; do
        coord 2>/dev/null <<'SQL' | while IFS= read -r line; do log "$line"; done
SELECT DISTINCT ON (w.blocking_gpid)
       format('the drain waits for a lock held by process %s on node %s (user %s, application %s, client %s, %s, transaction open since %s). It goes on once that transaction ends: COMMIT or ROLLBACK it in the application, or end it with SELECT pg_terminate_backend(%s) on that node',
              a.pid, n.nodename, a.usename, coalesce(nullif(a.application_name, ''), '-'),
              coalesce(host(a.client_addr), 'local'), a.state,
              to_char(coalesce(a.xact_start, a.backend_start) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'), a.pid)
  FROM citus_lock_waits w
  JOIN citus_stat_activity a ON a.global_pid = w.blocking_gpid
  JOIN pg_dist_node n ON n.nodeid = a.nodeid
 WHERE w.waiting_gpid IN (SELECT global_pid FROM citus_stat_activity WHERE application_name = 'citus-chart-scale-in')
   AND w.blocking_gpid NOT IN (SELECT global_pid FROM citus_stat_activity WHERE application_name = 'citus-chart-scale-in')
 ORDER BY w.blocking_gpid, a.is_worker_query, a.nodeid
SQL
    done
}
PGAPPNAME=citus-chart-scale-in-report report_lock_waits &
reporter=$!
trap 'kill "$reporter" 2>/dev/null || true' EXIT
# A run that finds the lock taken says so (e.g. a retried helm upgrade whose first drain outlived Helm's
# --timeout), waits, and then reports what the other run left to do.
coord -v mode="$MODE" <<SQL || restore
SELECT pg_try_advisory_lock(hashtext('citus-chart-scale-in')) AS scale_in_free \\gset
\\if :scale_in_free
\\else
SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS scale_in_at \\gset
\\warn :scale_in_at '$CITUS_LOG_TAG: another scale-in run holds the lock (a drain still running, e.g. from an earlier helm upgrade or rollback that timed out): waiting for it to end'
SELECT pg_advisory_lock(hashtext('citus-chart-scale-in')) \\g /dev/null
SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS scale_in_at,
       NOT EXISTS (SELECT 1 FROM pg_dist_node n JOIN (VALUES $pairs) AS l(host, port)
                     ON n.nodename = l.host AND n.nodeport = l.port) AS scale_in_none_left \\gset
\\if :scale_in_none_left
\\warn :scale_in_at '$CITUS_LOG_TAG: the other run ended and removed $names: nothing left to drain'
\\else
\\warn :scale_in_at '$CITUS_LOG_TAG: the other run ended: draining what it left'
\\endif
\\endif
-- Marked before anything moves, under the lock: the registration loop (the coordinator's, under autoscaling;
-- also on the old pod spec until the coordinator restarts) must never add back a worker this run removes.
$(mark_leaving removed)
\\if :{?mark_failed}
\\warn '$CITUS_LOG_TAG: cannot mark the leaving workers as removed:' :mark_failed
DO \$\$ BEGIN RAISE EXCEPTION 'the leaving workers could not be marked (above): nothing was moved'; END \$\$;
\\endif
-- The record says which workers the chart (not a user) set to shouldhaveshards=false: the registration hook
-- gives those back shouldhaveshards=true when a later revision keeps them (an abandoned drain).
CREATE SCHEMA IF NOT EXISTS citus_chart;
CREATE TABLE IF NOT EXISTS citus_chart.draining (
    nodename text NOT NULL,
    nodeport int NOT NULL,
    since timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (nodename, nodeport)
);
INSERT INTO citus_chart.draining (nodename, nodeport)
SELECT n.nodename, n.nodeport
  FROM pg_dist_node n JOIN (VALUES $pairs) AS l(host, port) ON n.nodename = l.host AND n.nodeport = l.port
 WHERE n.shouldhaveshards
ON CONFLICT DO NOTHING;
SELECT citus_set_node_property(n.nodename, n.nodeport, 'shouldhaveshards', false)
  FROM pg_dist_node n JOIN (VALUES $pairs) AS l(host, port) ON n.nodename = l.host AND n.nodeport = l.port
 WHERE n.shouldhaveshards \\g /dev/null
-- A rebalance running now (e.g. started after the last scale-out) was
-- planned with other targets, and Citus runs one at a time: stop it, and wait until its moves have ended.
SELECT 'SELECT citus_rebalance_stop()' FROM pg_dist_background_job
 WHERE job_type = 'rebalance' AND state IN ('scheduled', 'running') LIMIT 1 \\gexec
DO \$\$
BEGIN
  FOR i IN 1..600 LOOP
    IF NOT EXISTS (SELECT 1 FROM pg_dist_background_job WHERE state IN ('scheduled', 'running', 'cancelling', 'failing')) THEN
      RETURN;
    END IF;
    PERFORM pg_sleep(1);
  END LOOP;
  RAISE EXCEPTION 'a Citus background job is still running after 10 minutes: SELECT * FROM pg_dist_background_job';
END
\$\$;
SELECT format('SELECT citus_drain_node(%L, %s, shard_transfer_mode => %L)', n.nodename, n.nodeport, :'mode')
  FROM pg_dist_node n JOIN (VALUES $pairs) AS l(host, port) ON n.nodename = l.host AND n.nodeport = l.port
 ORDER BY n.nodename \\gexec
CALL citus_cleanup_orphaned_resources();
-- Under load an old shard copy is still in use and its cleanup record stays; the maintenance daemon retries
-- the cleanup (citus.defer_shard_delete_interval): wait for it, bounded.
DO \$\$
BEGIN
  FOR i IN 1..120 LOOP
    EXIT WHEN NOT EXISTS (SELECT 1 FROM pg_dist_cleanup c JOIN pg_dist_node n ON n.groupid = c.node_group_id
                            JOIN (VALUES $pairs) AS l(host, port) ON n.nodename = l.host AND n.nodeport = l.port);
    PERFORM pg_sleep(1);
  END LOOP;
END
\$\$;
SELECT format('SELECT citus_remove_node(%L, %s)', n.nodename, n.nodeport)
  FROM pg_dist_node n JOIN (VALUES $pairs) AS l(host, port) ON n.nodename = l.host AND n.nodeport = l.port
 WHERE NOT EXISTS (SELECT 1 FROM pg_dist_placement p JOIN pg_dist_shard s USING (shardid)
                     JOIN pg_dist_partition t USING (logicalrelid)
                    WHERE p.groupid = n.groupid AND NOT (t.partmethod = 'n' AND t.repmodel = 't'))
   AND NOT EXISTS (SELECT 1 FROM pg_dist_cleanup c WHERE c.node_group_id = n.groupid)
 ORDER BY n.nodename \\gexec
DELETE FROM citus_chart.draining d
 WHERE NOT EXISTS (SELECT 1 FROM pg_dist_node n WHERE n.nodename = d.nodename AND n.nodeport = d.nodeport);
SQL

left=$(echo "SELECT string_agg(n.nodename, ' ') FROM pg_dist_node n JOIN (VALUES $pairs) AS l(host, port) ON n.nodename = l.host AND n.nodeport = l.port" | coord) \
    || die "cannot check pg_dist_node after the drain"
if [ -n "$left" ]; then
    log "still registered after the drain (placements or pg_dist_cleanup records left for their group): $left"
    restore
fi
# A removed worker's pod lives on until the StatefulSet shrinks (its mark keeps the registration loop away). The
# sessions still open on it are ended while its address answers, so that their clients see the connection
# closed; cut off later by the pod's deletion, a client that sends on it waits for an answer from an address
# that is gone.
for line in $leaving; do
    host=${line%%|*}
    rest=${line#*|}
    port=${rest%%|*}
    sql "$host" "$port" >/dev/null <<'SQL' || log "could not end the sessions on $host (it is no longer registered and holds no shard)"
SELECT pg_terminate_backend(pid) FROM pg_stat_activity
 WHERE backend_type = 'client backend' AND pid <> pg_backend_pid();
SQL
done
# The coordinator's maintenance daemon (deferred cleanup, 2PC recovery, the start of background rebalances)
# keeps connections to the removed workers and would use them again when a worker of the same name comes
# back, then hang on a cancel request to the old pod's address. Citus starts it again within seconds, as
# after any exit of the daemon.
echo "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'Citus Maintenance Daemon'" \
    | coord >/dev/null || log "could not restart the coordinator's maintenance daemon; it may pause until its connections to $names time out"
log "done: $names drained and removed"
