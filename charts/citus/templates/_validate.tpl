{{/*
Checks across values that the schema cannot express. Every problem found is reported at once, each naming
the values involved. Included from configmap.yaml, which every render produces. The checks by topic live in
_validate-names.tpl, _validate-images.tpl, _validate-postgresql.tpl and _validate-kubernetes.tpl; each
returns a YAML list of messages.
*/}}
{{- define "citus.validateValues" -}}
{{- $errors := list -}}
{{- $v := .Values -}}

{{- $kube := include "citus.kubeVersion" . -}}
{{- if not (semverCompare ">=1.23.0-0" $kube) -}}
{{- $errors = append $errors (printf "Kubernetes %s is not supported: this chart needs 1.23 or newer (kubeVersion=%q)" $kube $v.kubeVersion) -}}
{{- end -}}

{{- if gt (int $v.coordinator.replicaCount) 1 -}}
{{- $errors = append $errors (printf "coordinator.replicaCount=%v: a Citus cluster has exactly one coordinator (its metadata is not replicated between coordinator pods); use 1, or 0 to stop it" $v.coordinator.replicaCount) -}}
{{- end -}}

{{- if not $v.auth.enablePostgresUser -}}
{{- if not $v.auth.username -}}
{{- $errors = append $errors "auth.enablePostgresUser=false needs auth.username: that user becomes the cluster's superuser" -}}
{{- end -}}
{{- end -}}
{{- if eq $v.auth.username "postgres" -}}
{{- $errors = append $errors "auth.username=postgres: the postgres superuser is configured by auth.enablePostgresUser and auth.postgresPassword; choose another application user name, or set auth.username to \"\" for none" -}}
{{- end -}}
{{- if and $v.auth.existingSecret (or $v.auth.postgresPassword $v.auth.password) -}}
{{- $errors = append $errors (printf "auth.existingSecret=%q and auth.postgresPassword/auth.password are both set: the passwords come from the existing Secret only; remove the password values" $v.auth.existingSecret) -}}
{{- end -}}

{{- if $v.metrics.enabled -}}
{{- if has $v.metrics.username (list "postgres" $v.auth.username (include "citus.superuser" .)) -}}
{{- $errors = append $errors (printf "metrics.username=%s is the superuser or the application user: the exporter needs a role of its own, which the chart restricts to pg_monitor; choose another name (default citus_monitor)" $v.metrics.username) -}}
{{- end -}}
{{- /* The exporter's password file (pgpass) is line-based, as the nodes' is (see the auth passwords). */ -}}
{{- if regexMatch "\n|\r$" (toString $v.metrics.password) -}}
{{- $errors = append $errors "metrics.password contains a line break: the exporter reads it from a line-based password file (pgpass), so it would log in with another password than the role has; use a single-line password" -}}
{{- end -}}
{{- if and $v.auth.existingSecret $v.metrics.password -}}
{{- $errors = append $errors (printf "auth.existingSecret=%q and metrics.password are both set: the monitoring password comes from key %s of the existing Secret; remove metrics.password" $v.auth.existingSecret $v.auth.secretKeys.monitoringPasswordKey) -}}
{{- end -}}
{{- end -}}

{{- range $component := list "coordinator" "worker" -}}
{{- $c := index $v $component -}}
{{- $min := toString $c.pdb.minAvailable -}}
{{- $max := toString $c.pdb.maxUnavailable -}}
{{- if $c.pdb.create -}}
{{- if and (ne $min "") (ne $min "<nil>") (ne $max "") (ne $max "<nil>") -}}
{{- $errors = append $errors (printf "%s.pdb.minAvailable=%s and %s.pdb.maxUnavailable=%s: a PodDisruptionBudget takes only one; set the other to \"\"" $component $min $component $max) -}}
{{- else if and (or (eq $min "") (eq $min "<nil>")) (or (eq $max "") (eq $max "<nil>")) -}}
{{- $errors = append $errors (printf "%s.pdb.create=true needs %s.pdb.minAvailable or %s.pdb.maxUnavailable" $component $component $component) -}}
{{- end -}}
{{- end -}}
{{- if and $c.nodeAffinityPreset.type (not $c.nodeAffinityPreset.key) -}}
{{- $errors = append $errors (printf "%s.nodeAffinityPreset.type=%s needs %s.nodeAffinityPreset.key and values" $component $c.nodeAffinityPreset.type $component) -}}
{{- end -}}
{{- end -}}

{{- if and $v.coordinator.persistence.existingClaim (not $v.coordinator.persistence.enabled) -}}
{{- $errors = append $errors "coordinator.persistence.existingClaim is set but coordinator.persistence.enabled=false: enable persistence to use the claim" -}}
{{- end -}}

{{- if and (eq (toString $v.worker.service.clusterIP) "None") (ne $v.worker.service.type "ClusterIP") -}}
{{- $errors = append $errors (printf "worker.service.type=%s cannot be headless: set worker.service.clusterIP to \"\" as well" $v.worker.service.type) -}}
{{- end -}}

{{- $as := $v.worker.autoscaling -}}
{{- if $as.enabled -}}
{{- if gt (int $as.minReplicas) (int $as.maxReplicas) -}}
{{- $errors = append $errors (printf "worker.autoscaling.minReplicas=%v is above worker.autoscaling.maxReplicas=%v" $as.minReplicas $as.maxReplicas) -}}
{{- end -}}
{{- if lt (int $as.minReplicas) 1 -}}
{{- $errors = append $errors "worker.autoscaling.minReplicas must be at least 1" -}}
{{- end -}}
{{- if and (eq (toString $as.targetCPU) "") (eq (toString $as.targetMemory) "") -}}
{{- $errors = append $errors "worker.autoscaling.enabled=true needs worker.autoscaling.targetCPU or worker.autoscaling.targetMemory" -}}
{{- end -}}
{{- /*
Above maxReplicas the HPA sets the StatefulSet to maxReplicas at once, before its behavior (the disabled
scale-down) applies: the highest workers would stop undrained. The rendered replicas are never below
replicaCount or the live value (citus.worker.replicas), so both must stay within maxReplicas; the live value
is known only with cluster access.
*/ -}}
{{- $worker := dict "ctx" $ "component" "worker" -}}
{{- $live := (include "citus.node.live" $worker | fromYaml).spec | default dict -}}
{{- $scaleIn := printf "or scale in first with autoscaling off (worker.autoscaling.enabled=false, worker.replicaCount=%v; the drain hook moves the shards off), then turn it on again" $as.maxReplicas -}}
{{- if gt (int $v.worker.replicaCount) (int $as.maxReplicas) -}}
{{- $errors = append $errors (printf "worker.replicaCount=%v is above worker.autoscaling.maxReplicas=%v: under autoscaling the StatefulSet keeps at least replicaCount workers, and the HPA cuts a StatefulSet above maxReplicas down at once, stopping the highest workers without draining them; raise worker.autoscaling.maxReplicas to at least %v (on a first install you may lower worker.replicaCount instead), %s" $v.worker.replicaCount $as.maxReplicas $v.worker.replicaCount $scaleIn) -}}
{{- else if gt (int $live.replicas) (int $as.maxReplicas) -}}
{{- $errors = append $errors (printf "worker.autoscaling.maxReplicas=%v is below the %v workers StatefulSet %s runs: the HPA would cut it down to %v at once, stopping the highest workers without draining them; raise worker.autoscaling.maxReplicas to at least %v, %s" $as.maxReplicas $live.replicas (include "citus.componentName" $worker) $as.maxReplicas $live.replicas $scaleIn) -}}
{{- end -}}
{{- end -}}

{{- if and $v.metrics.serviceMonitor.enabled (not $v.metrics.enabled) -}}
{{- $errors = append $errors "metrics.serviceMonitor.enabled=true needs metrics.enabled=true (the exporters it scrapes)" -}}
{{- end -}}
{{- if and $v.metrics.prometheusRule.enabled (not $v.metrics.enabled) -}}
{{- $errors = append $errors "metrics.prometheusRule.enabled=true needs metrics.enabled=true (the metrics its alerts read)" -}}
{{- end -}}
{{- if and $v.metrics.prometheusRule.enabled (not $v.metrics.prometheusRule.defaultRules) (not $v.metrics.prometheusRule.rules) -}}
{{- $errors = append $errors "metrics.prometheusRule.enabled=true with defaultRules=false and no metrics.prometheusRule.rules would create an empty PrometheusRule" -}}
{{- end -}}

{{- if and $v.ingress.enabled (not $v.ingress.hostname) (not $v.ingress.extraHosts) -}}
{{- $errors = append $errors "ingress.enabled=true needs ingress.hostname or ingress.extraHosts" -}}
{{- end -}}

{{- if $v.restore.enabled -}}
{{- if not $v.restore.existingClaim -}}
{{- $errors = append $errors "restore.enabled=true needs restore.existingClaim: the PVC that holds the backups (e.g. the old release's <fullname>-backup)" -}}
{{- end -}}
{{- if not $v.workerRegistration.enabled -}}
{{- $errors = append $errors "restore.enabled=true needs workerRegistration.enabled=true: the restore distributes the tables and runs after the registration Job" -}}
{{- end -}}
{{- if or $v.diagnosticMode.enabled (lt (int $v.coordinator.replicaCount) 1) -}}
{{- $errors = append $errors "restore.enabled=true needs a running coordinator: turn off diagnosticMode.enabled and set coordinator.replicaCount=1" -}}
{{- end -}}
{{- /* The new release's first backups would dump the database before the restore filled it, point `latest` at that, and prune the history the restore reads (review D11). */ -}}
{{- $backupClaim := ternary (include "citus.componentName" (dict "ctx" $ "component" "backup")) $v.backup.persistence.existingClaim (empty $v.backup.persistence.existingClaim) -}}
{{- if and $v.backup.enabled $v.backup.persistence.enabled $v.restore.existingClaim (eq $backupClaim (toString $v.restore.existingClaim)) -}}
{{- $errors = append $errors (printf "restore.existingClaim=%s is also where this release's backups go (backup.persistence): its CronJob could back up the still empty database while the restore runs, point latest at that and remove the backups the restore reads. Restore with backup.enabled=false, then turn backups on (with that claim, if you like) once the restore has completed" (toString $v.restore.existingClaim)) -}}
{{- end -}}
{{- end -}}

{{- range $topic := list "names" "images" "postgresql" "kubernetes" -}}
{{- $errors = concat $errors (include (printf "citus.validate.%s" $topic) $ | fromYamlArray) -}}
{{- end -}}

{{- if $errors -}}
{{- fail (printf "\n\nVALUES ERROR:\n  - %s\n" (join "\n  - " $errors)) -}}
{{- end -}}
{{- end -}}
