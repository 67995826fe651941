{{/*
postgresql.* values and postgresql.extraConfiguration: what PostgreSQL or Citus would refuse at start (or
silently ignore), and settings the chart owns. All nodes share one postgresql.conf.
*/}}

{{/*
The settings of postgresql.extraConfiguration (after tpl), as a YAML map name -> value; lines that are not
"name [=] value" are returned under the key "!syntax". Names are lower-cased as PostgreSQL does.
*/}}
{{- define "citus.validate.extraConfiguration" -}}
{{- $settings := dict -}}
{{- $bad := list -}}
{{- range $line := splitList "\n" (tpl (toString .Values.postgresql.extraConfiguration) .) -}}
{{- /* Drop a comment that is not inside a quoted value. */ -}}
{{- $l := trim (regexReplaceAll `^((?:[^'#]|'(?:[^'\\]|\\.|'')*')*)#.*$` $line "${1}") -}}
{{- if $l -}}
{{- if regexMatch `^[A-Za-z_][A-Za-z0-9_.$-]*(\s*=\s*|\s+)[^=\s]` $l -}}
{{- $name := lower (regexFind `^[A-Za-z_][A-Za-z0-9_.$-]*` $l) -}}
{{- $value := trim (regexReplaceAll `^[A-Za-z_][A-Za-z0-9_.$-]*\s*=?\s*` $l "") -}}
{{- if and (hasPrefix "'" $value) (hasSuffix "'" $value) (gt (len $value) 1) -}}{{- $value = trimSuffix "'" (trimPrefix "'" $value) -}}{{- end -}}
{{- $_ := set $settings $name $value -}}
{{- else -}}
{{- $bad = append $bad $l -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if $bad }}{{ $_ := set $settings "!syntax" $bad }}{{ end -}}
{{- toYaml $settings -}}
{{- end -}}

{{- define "citus.validate.postgresql" -}}
{{- $errors := list -}}
{{- $v := .Values -}}
{{- $pg := $v.postgresql -}}
{{- $conf := include "citus.validate.extraConfiguration" . | fromYaml -}}

{{- range (get $conf "!syntax" | default list) -}}
{{- $errors = append $errors (printf "postgresql.extraConfiguration line %q is not \"name = value\": PostgreSQL would refuse to start; write one setting per line, e.g. \"work_mem = '64MB'\"" .) -}}
{{- end -}}

{{- /* Settings rendered from a value: a second line would silently win over the value. */ -}}
{{- $fromValues := dict
  "shared_preload_libraries" "postgresql.sharedPreloadLibraries"
  "max_connections" "postgresql.maxConnections"
  "wal_level" "postgresql.walLevel"
  "max_wal_senders" "postgresql.maxWalSenders"
  "max_replication_slots" "postgresql.maxReplicationSlots"
  "max_worker_processes" "postgresql.maxWorkerProcesses"
  "citus.shard_count" "postgresql.citusShardCount"
  "citus.shard_replication_factor" "postgresql.citusShardReplicationFactor"
  "port" "coordinator.containerPorts.postgresql and worker.containerPorts.postgresql (the Services, probes and jobs use them)" -}}
{{- /* Settings the pods depend on, with no value to change them. */ -}}
{{- $fixed := dict
  "listen_addresses" "the other nodes, the Services and the probes connect over TCP, so every node listens on all addresses; restrict clients with networkPolicy.enabled instead"
  "unix_socket_directories" "the entrypoint and `kubectl exec ... psql` use the socket in /var/run/postgresql"
  "hba_file" "the chart's pg_hba.conf (scram-sha-256 for every TCP connection) is what the nodes, jobs and probes log in with"
  "password_encryption" "pg_hba.conf accepts only scram-sha-256, so a password stored any other way could no longer log in"
  "config_file" "every node starts with the chart's ConfigMap as config_file"
  "data_directory" "the data directory is PGDATA on the node's volume (/var/lib/postgresql/data/pgdata)" -}}
{{- range $name := keys $conf | sortAlpha -}}
{{- if hasKey $fromValues $name -}}
{{- $errors = append $errors (printf "postgresql.extraConfiguration sets %s, which the chart renders from %s: set that value instead" $name (get $fromValues $name)) -}}
{{- else if hasKey $fixed $name -}}
{{- $errors = append $errors (printf "postgresql.extraConfiguration sets %s, which the chart owns: %s; remove the line" $name (get $fixed $name)) -}}
{{- end -}}
{{- end -}}

{{- /* Integer settings of extraConfiguration the checks below read, with PostgreSQL's or Citus's defaults and ranges. */ -}}
{{- $maxConn := int $pg.maxConnections -}}
{{- $ints := dict -}}
{{- $limits := list
  (list "superuser_reserved_connections" 3 0 262143)
  (list "reserved_connections" 0 0 262143)
  (list "autovacuum_max_workers" 3 1 262143)
  (list "citus.max_shared_pool_size" 0 -1 2147483647)
  (list "citus.max_adaptive_executor_pool_size" 16 1 2147483647)
  (list "citus.max_client_connections" -1 -1 $maxConn) -}}
{{- range $limits -}}
{{- $name := index . 0 -}}
{{- $_ := set $ints $name (index . 1) -}}
{{- if hasKey $conf $name -}}
{{- $raw := toString (get $conf $name) -}}
{{- if not (regexMatch `^[-+]?[0-9]+$` $raw) -}}
{{- $errors = append $errors (printf "postgresql.extraConfiguration: %s = %s is not an integer; PostgreSQL would not accept it" $name $raw) -}}
{{- else if or (lt (int64 $raw) (int64 (index . 2))) (gt (int64 $raw) (int64 (index . 3))) -}}
{{- $errors = append $errors (printf "postgresql.extraConfiguration: %s = %s is outside the range %v..%v that %s accepts" $name $raw (index . 2) (index . 3) (ternary "Citus" "PostgreSQL" (hasPrefix "citus." $name))) -}}
{{- else -}}
{{- $_ := set $ints $name (int64 $raw) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- if eq $pg.walLevel "minimal" -}}
{{- if gt (int $pg.maxWalSenders) 0 -}}
{{- $errors = append $errors (printf "postgresql.walLevel=minimal with postgresql.maxWalSenders=%v: PostgreSQL refuses to start (WAL streaming requires wal_level replica or logical); set postgresql.maxWalSenders=0, or better postgresql.walLevel=logical, which online shard moves need" $pg.maxWalSenders) -}}
{{- end -}}
{{- if has (lower (toString (get $conf "archive_mode"))) (list "on" "always" "true" "yes" "1") -}}
{{- $errors = append $errors "postgresql.walLevel=minimal with archive_mode on in postgresql.extraConfiguration: PostgreSQL refuses to start (WAL archival needs wal_level replica or logical); set postgresql.walLevel=replica or logical" -}}
{{- end -}}
{{- end -}}

{{- $reserved := add (get $ints "superuser_reserved_connections") (get $ints "reserved_connections") -}}
{{- /*
Connections a node must accept for one client to run a multi-shard query: every node's maintenance daemon
keeps one connection to every node (2PC recovery, deadlock detection), the metrics exporter one per node and
the chart's jobs one, all as superuser, which take ordinary slots first; then the client's session opens up to
one connection per shard on each worker, at most citus.max_adaptive_executor_pool_size and at most
citus.max_shared_pool_size (0: max_connections), none of which may use the reserved slots. Citus fails the
query when a worker refuses one of them, and waits instead when its own pool limits are reached.
*/ -}}
{{- $workers := int (include "citus.worker.registeredReplicas" .) -}}
{{- $nodes := add (int $v.coordinator.replicaCount) $workers -}}
{{- $perWorker := 1 -}}
{{- if gt $workers 0 -}}
{{- $shards := div (add (mul (int $pg.citusShardCount) (int $pg.citusShardReplicationFactor)) (sub $workers 1)) $workers -}}
{{- $perWorker = min $shards (get $ints "citus.max_adaptive_executor_pool_size") -}}
{{- $shared := int64 (get $ints "citus.max_shared_pool_size") -}}
{{- if eq $shared 0 }}{{ $shared = int64 $maxConn }}{{ end -}}
{{- if gt $shared 0 }}{{ $perWorker = min $perWorker $shared }}{{ end -}}
{{- end -}}
{{- $needed := add $reserved $nodes (ternary 1 0 $v.metrics.enabled) 1 $perWorker -}}
{{- if ge (int64 $reserved) (int64 $maxConn) -}}
{{- $errors = append $errors (printf "postgresql.maxConnections=%d is not above the %d reserved connections (superuser_reserved_connections %v + reserved_connections %v): PostgreSQL refuses to start; raise postgresql.maxConnections (to at least %d for this cluster)" $maxConn $reserved (get $ints "superuser_reserved_connections") (get $ints "reserved_connections") $needed) -}}
{{- else if lt (int64 $maxConn) (int64 $needed) -}}
{{- $errors = append $errors (printf "postgresql.maxConnections=%d is too small for %d nodes: each node receives one connection from every node's Citus maintenance daemon (%d)%s and one from the chart's jobs, all as superuser, and a multi-shard query opens up to %d connections per worker beside the %d reserved slots; Citus fails the query when a worker refuses one. Use at least %d, or lower citus.max_adaptive_executor_pool_size (or citus.max_shared_pool_size) in postgresql.extraConfiguration so that Citus waits instead" $maxConn $nodes $nodes (ternary ", one from the metrics exporter" "" $v.metrics.enabled) $perWorker $reserved $needed) -}}
{{- end -}}
{{- $backends := add $maxConn (get $ints "autovacuum_max_workers") 1 (int $pg.maxWorkerProcesses) (int $pg.maxWalSenders) -}}
{{- if gt (int64 $backends) 262143 -}}
{{- $errors = append $errors (printf "postgresql.maxConnections + autovacuum_max_workers + 1 + postgresql.maxWorkerProcesses + postgresql.maxWalSenders = %d: PostgreSQL refuses more than 262143 backends; lower them" $backends) -}}
{{- end -}}
{{- $pool := int64 (get $ints "citus.max_shared_pool_size") -}}
{{- if gt $pool (int64 $maxConn) -}}
{{- $errors = append $errors (printf "postgresql.extraConfiguration: citus.max_shared_pool_size = %d is above postgresql.maxConnections=%d, the connections every other node accepts: Citus would open connections the workers refuse; use at most %d, 0 (= max_connections) or -1 (no limit)" $pool $maxConn $maxConn) -}}
{{- end -}}

{{- /* Citus refuses create_distributed_table when there are fewer workers than replicas of a shard. */ -}}
{{- if and $v.workerRegistration.enabled (gt $workers 0) (gt (int $pg.citusShardReplicationFactor) $workers) -}}
{{- $errors = append $errors (printf "postgresql.citusShardReplicationFactor=%v is above the %d registered workers: Citus refuses to distribute tables (replication_factor exceeds number of worker nodes); use at most %d or add workers" $pg.citusShardReplicationFactor $workers $workers) -}}
{{- end -}}

{{- /*
TLS written into extraConfiguration (the chart has no TLS values yet). Between the nodes TLS is on already:
CREATE EXTENSION citus turns ssl on (ALTER SYSTEM) with a self-signed certificate in the data directory, since
Citus's default node_conninfo is sslmode=require. But ssl = on in the configuration file is read before that,
on a new node's first start, and PostgreSQL does not start without server.crt; and node_conninfo modes that
verify the server need certificates signed by a CA the nodes are given (sslrootcert), which Citus's are not.
*/ -}}
{{- $ssl := has (lower (toString (get $conf "ssl"))) (list "on" "true" "yes" "1") -}}
{{- if and $ssl (or (not (get $conf "ssl_cert_file")) (not (get $conf "ssl_key_file"))) -}}
{{- $errors = append $errors "postgresql.extraConfiguration sets ssl = on without both ssl_cert_file and ssl_key_file: a new node reads server.crt and server.key from its data directory before anything created them, and does not start. Remove the line (the nodes already speak TLS among themselves: Citus turns ssl on with a self-signed certificate), or mount a certificate and its key (coordinator.extraVolumes/extraVolumeMounts and the same for worker) and set ssl_cert_file and ssl_key_file to their paths" -}}
{{- end -}}
{{- $conninfo := toString (get $conf "citus.node_conninfo") -}}
{{- if and (regexMatch `sslmode\s*=\s*'?verify-(ca|full)` $conninfo) (or (not (get $conf "ssl_cert_file")) (not (contains "sslrootcert" $conninfo))) -}}
{{- $errors = append $errors (printf "postgresql.extraConfiguration sets citus.node_conninfo = '%s', which verifies the other nodes' certificates, without both ssl_cert_file (certificates of your CA on the nodes) and sslrootcert in node_conninfo (that CA): the nodes' own certificates are Citus's self-signed ones, so every connection between nodes would fail verification. Give the nodes certificates of a CA and name it in sslrootcert, or keep sslmode=require" $conninfo) -}}
{{- end -}}

{{- /*
shared_buffers is shared memory that counts against the container's memory limit: at or above the limit, the
node is killed for memory (OOMKilled) once the buffers fill, over and over.
*/ -}}
{{- $buffers := toString (get $conf "shared_buffers" | default "128MB") -}}
{{- $buffersFrom := ternary "postgresql.extraConfiguration" "PostgreSQL's default" (hasKey $conf "shared_buffers") -}}
{{- $bufferBytes := 0.0 -}}
{{- if regexMatch `^[0-9]+\s*(B|kB|MB|GB|TB)?$` $buffers -}}
{{- $n := float64 (regexReplaceAll `^([0-9]+).*$` $buffers "${1}") -}}
{{- $unit := regexReplaceAll `^[0-9]+\s*` $buffers "" -}}
{{- $bufferBytes = mulf $n (get (dict "" 8192.0 "B" 1.0 "kB" 1024.0 "MB" 1048576.0 "GB" 1073741824.0 "TB" 1099511627776.0) $unit) -}}
{{- end -}}
{{- range $component := list "coordinator" "worker" -}}
{{- $c := index $v $component -}}
{{- $limit := "" -}}
{{- $from := printf "%s.resources.limits.memory" $component -}}
{{- if ne $c.resourcesPreset "none" -}}
{{- $limit = (include "citus.resourcesPreset" (dict "type" $c.resourcesPreset "component" $component) | fromYaml).limits.memory -}}
{{- $from = printf "%s.resourcesPreset=%s" $component $c.resourcesPreset -}}
{{- else if and $c.resources $c.resources.limits -}}
{{- $limit = toString ($c.resources.limits.memory | default "") -}}
{{- end -}}
{{- $limitBytes := include "citus.validate.quantity" $limit -}}
{{- if and $limitBytes (gt $bufferBytes 0.0) -}}
{{- if ge $bufferBytes (float64 $limitBytes) -}}
{{- $errors = append $errors (printf "shared_buffers = %s (%s) is not below the %s memory limit %s (%s): shared buffers count against the limit, so the node would be killed for memory (OOMKilled) once they fill. Lower shared_buffers in postgresql.extraConfiguration (a quarter of the limit is usual) or raise the limit" $buffers $buffersFrom $component $limit $from) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- /* Rendered inside '...' in postgresql.conf and split on commas by PostgreSQL. */ -}}
{{- range (splitList "," (toString $pg.sharedPreloadLibraries)) -}}
{{- if regexMatch `['"\\[:cntrl:]]|\S\s+\S` (trim .) -}}
{{- $errors = append $errors (printf "postgresql.sharedPreloadLibraries entry %q cannot be written into postgresql.conf: library names are comma-separated, without quotes, backslashes, inner spaces or line breaks (e.g. \"citus,pg_stat_statements\")" (trim .)) -}}
{{- end -}}
{{- end -}}

{{- toYaml $errors -}}
{{- end -}}
