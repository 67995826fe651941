#!/bin/sh
# Drains the workers a `helm upgrade` is about to remove (pre-upgrade hook), so that the StatefulSet only
# shrinks once no shard lives on the pods that go away. Runs on every upgrade; does nothing when no pod
# exists at an ordinal >= CITUS_WORKER_TARGET. For every registered worker of this release whose
# ordinal is >= CITUS_WORKER_TARGET: citus_drain_node (moves its shards to the remaining workers),
# citus_cleanup_orphaned_resources, then citus_remove_node once nothing is left for its group.
# Any failure fails the hook, and Helm then aborts the upgrade before touching the StatefulSet.
# Environment: CITUS_COORDINATOR_HOST, CITUS_COORDINATOR_PORT, CITUS_WORKER_PREFIX ("<sts>-"),
# CITUS_WORKER_DOMAIN (".<headless>.<ns>.svc.<domain>"), CITUS_WORKER_TARGET, PGDATABASE, PGUSER,
# PGPASSWORD or PGPASSWORD_FILE.
set -eu
CITUS_LOG_TAG=citus-scale-in
. "$(dirname "$0")/common.sh"

: "${CITUS_COORDINATOR_HOST:?}" "${CITUS_COORDINATOR_PORT:?}" "${CITUS_WORKER_PREFIX:?}" "${CITUS_WORKER_DOMAIN:?}"
: "${CITUS_WORKER_TARGET:?}" "${PGDATABASE:?}" "${PGUSER:?}"
file_env PGPASSWORD
[ -n "$PGPASSWORD" ] || die "no password for $PGUSER (PGPASSWORD or PGPASSWORD_FILE)"
export PGCONNECT_TIMEOUT=${PGCONNECT_TIMEOUT:-10}

coord() {
    psql -X -q -t -A -v ON_ERROR_STOP=1 -h "$CITUS_COORDINATOR_HOST" -p "$CITUS_COORDINATOR_PORT" "$@"
}

# StatefulSet ordinals are contiguous: if no pod answers to the name at the target ordinal, nothing is
# removed and the coordinator is not needed (an upgrade may be meant to repair it).
first_removed="${CITUS_WORKER_PREFIX}${CITUS_WORKER_TARGET}${CITUS_WORKER_DOMAIN}"
if ! getent hosts "$first_removed" >/dev/null 2>&1; then
    log "no worker pod at ordinal $CITUS_WORKER_TARGET or above ($first_removed does not resolve): nothing to drain"
    exit 0
fi

nodes=$(echo "SELECT nodename || ' ' || nodeport || ' ' || groupid FROM pg_dist_node WHERE groupid <> 0 ORDER BY nodename" | coord) \
    || die "workers from ordinal $CITUS_WORKER_TARGET on are being removed but pg_dist_node cannot be read on the coordinator $CITUS_COORDINATOR_HOST: nothing is drained and the upgrade is aborted"

echo "$nodes" | while read -r host port group; do
    [ -n "$host" ] || continue
    case "$host" in
        "$CITUS_WORKER_PREFIX"*"$CITUS_WORKER_DOMAIN") ;;
        *) continue ;;
    esac
    ordinal=${host#"$CITUS_WORKER_PREFIX"}
    ordinal=${ordinal%"$CITUS_WORKER_DOMAIN"}
    case "$ordinal" in ''|*[!0-9]*) continue ;; esac
    [ "$ordinal" -ge "$CITUS_WORKER_TARGET" ] || continue

    log "worker $host:$port (group $group) is removed by this upgrade: draining it"
    echo "SELECT citus_drain_node(:'host', :port)" | coord -v host="$host" -v port="$port" >/dev/null \
        || die "citus_drain_node($host, $port) failed: its shards stay where they are and the upgrade is aborted"
    echo "CALL citus_cleanup_orphaned_resources()" | coord >/dev/null \
        || die "citus_cleanup_orphaned_resources() failed after draining $host"
    # Reference tables keep a copy on every node (the drain never moves it); citus_remove_node drops it.
    left=$(coord -v group="$group" <<'SQL'
SELECT (SELECT count(*) FROM pg_dist_placement p
          JOIN pg_dist_shard s USING (shardid)
          JOIN pg_dist_partition t USING (logicalrelid)
         WHERE p.groupid = :group AND NOT (t.partmethod = 'n' AND t.repmodel = 't'))
     + (SELECT count(*) FROM pg_dist_cleanup WHERE node_group_id = :group)
SQL
    ) || die "cannot check what is left on $host"
    [ "$left" = 0 ] || die "$host still has $left shard placement(s) or cleanup record(s) after the drain; not removing it"
    echo "SELECT citus_remove_node(:'host', :port)" | coord -v host="$host" -v port="$port" >/dev/null \
        || die "citus_remove_node($host, $port) failed"
    log "worker $host:$port drained and removed"
done
log "done: every worker at ordinal >= $CITUS_WORKER_TARGET holds no shard"
