{{/* postgres-exporter sidecar of a node pod; (dict "ctx" $ "component" ...). */}}
{{- define "citus.metrics.container" -}}
{{- $ctx := .ctx -}}
{{- $v := index $ctx.Values .component -}}
{{- $m := $ctx.Values.metrics -}}
- name: metrics
  image: {{ include "citus.image" (dict "image" $m.image "ctx" $ctx) | quote }}
  imagePullPolicy: {{ $m.image.pullPolicy }}
  {{- if $ctx.Values.diagnosticMode.enabled }}
  command:
    {{- toYaml $ctx.Values.diagnosticMode.command | nindent 4 }}
  args:
    {{- toYaml $ctx.Values.diagnosticMode.args | nindent 4 }}
  {{- else }}
  args:
    - --web.listen-address=:{{ $m.containerPorts.metrics }}
    - --extend.query-path={{ include "citus.path.metrics" . }}/queries.yaml
    {{- with include "citus.metrics.bgwriterFlag" $m.image }}
    - {{ . }}
    {{- end }}
  {{- end }}
  {{- include "citus.indent" (dict "indent" 2 "text" (include "citus.containerSecurityContext" (merge (dict "readOnlyRootFilesystem" true) $v.containerSecurityContext))) }}
  env:
    - name: DATA_SOURCE_URI
      value: {{ printf "127.0.0.1:%v/%s?sslmode=disable" $v.containerPorts.postgresql $ctx.Values.auth.database | quote }}
    - name: DATA_SOURCE_USER
      value: {{ $m.username | quote }}
    {{- /* No DATA_SOURCE_PASS: the exporter reads it once at start; libpq's password file at every connection,
    so a rotated password works without a restart (monitoring-role.sh writes it). */}}
    - name: PGPASSFILE
      value: {{ printf "%s/pgpass" (include "citus.path.exporterAuth" .) | quote }}
  ports:
    - name: http-metrics
      containerPort: {{ $m.containerPorts.metrics }}
      protocol: TCP
  {{- if not $ctx.Values.diagnosticMode.enabled }}
  livenessProbe:
    httpGet:
      path: /
      port: http-metrics
    initialDelaySeconds: 10
    periodSeconds: 10
    timeoutSeconds: 5
  readinessProbe:
    httpGet:
      path: /
      port: http-metrics
    initialDelaySeconds: 5
    periodSeconds: 10
    timeoutSeconds: 5
  {{- end }}
  {{- include "citus.indent" (dict "indent" 2 "text" (include "citus.job.resources" $m)) }}
  volumeMounts:
    - name: metrics-queries
      mountPath: {{ include "citus.path.metrics" . }}
      readOnly: true
    - name: exporter-auth
      mountPath: {{ include "citus.path.exporterAuth" . }}
      readOnly: true
{{- end -}}

{{/*
The exporter flag that turns off its bgwriter collector, which fails on PostgreSQL 17 (the columns moved to
pg_stat_checkpointer) before postgres-exporter 0.17.0; the collector is called bgwriter before 0.13.0.
Tags that are not versions (latest, a digest's tag) are taken as new enough. Call with the image values.
*/}}
{{- define "citus.metrics.bgwriterFlag" -}}
{{- $tag := toString .tag -}}
{{- if regexMatch "^v?[0-9]+\\.[0-9]+\\.[0-9]+" $tag -}}
{{- $version := regexFind "[0-9]+\\.[0-9]+\\.[0-9]+" $tag -}}
{{- if semverCompare "<0.13.0" $version -}}
--no-collector.bgwriter
{{- else if semverCompare "<0.17.0" $version -}}
--no-collector.stat_bgwriter
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
Environment of the PostgreSQL container for monitoring-role.sh (the role the exporter logs in with, and the
exporter's password file) and for the entrypoint's password watcher (the Secret file it re-applies).
*/}}
{{- define "citus.metrics.nodeEnv" -}}
{{- if .ctx.Values.metrics.enabled -}}
- name: CITUS_MONITORING_USER
  value: {{ .ctx.Values.metrics.username | quote }}
{{ include "citus.node.passwordEnv" (dict "ctx" .ctx "var" "CITUS_MONITORING_PASSWORD" "key" .ctx.Values.auth.secretKeys.monitoringPasswordKey) }}
- name: CITUS_MONITORING_PGPASSFILE
  value: {{ printf "%s/pgpass" (include "citus.path.exporterAuth" .) | quote }}
- name: CITUS_WATCH_MONITORING_PASSWORD_FILE
  value: {{ printf "%s/%s" (include "citus.path.secrets" .) .ctx.Values.auth.secretKeys.monitoringPasswordKey | quote }}
{{- end -}}
{{- end -}}

{{/* The PostgreSQL container's mount of the exporter's password file (it writes the file). */}}
{{- define "citus.metrics.nodeMounts" -}}
{{- if .Values.metrics.enabled -}}
- name: exporter-auth
  mountPath: {{ include "citus.path.exporterAuth" . }}
{{- end -}}
{{- end -}}

{{/* The exporter's queries file and its password file (in memory), as pod volumes. Call with the root context. */}}
{{- define "citus.metrics.volumes" -}}
{{- if .Values.metrics.enabled -}}
- name: metrics-queries
  configMap:
    name: {{ include "citus.metrics.queriesName" . }}
- name: exporter-auth
  emptyDir:
    medium: Memory
{{- end -}}
{{- end -}}

{{- define "citus.metrics.queriesName" -}}
{{- printf "%s-metrics-queries" (include "citus.fullname" .) -}}
{{- end -}}

{{/* Series of this release's exporters (both node groups), and of the coordinator's only. */}}
{{- define "citus.alerts.selector" -}}
namespace="{{ .Release.Namespace }}", service=~"{{ include "citus.fullname" . }}-(coordinator|worker)-metrics"
{{- end -}}

{{- define "citus.alerts.coordinatorSelector" -}}
namespace="{{ .Release.Namespace }}", service="{{ include "citus.componentName" (dict "ctx" . "component" "coordinator") }}-metrics"
{{- end -}}

{{/* Where an alert's runbook is: a section of the chart README named after the alert. */}}
{{- define "citus.alerts.runbook" -}}
"Chart README (README.en.md / README.md), section Alerts: {{ . }}"
{{- end -}}

{{/*
Seconds a backup may be old before CitusBackupTooOld: metrics.prometheusRule.backupMaxAgeSeconds, or the
longest gap backup.schedule can leave plus an hour for the run itself. The gap is read coarsely from the
cron fields (a month or day-of-month field: a year or a month; a weekday field: a week; an hour field
"every N hours": N hours; another hour field: a day; else an hour), so it is an upper bound.
*/}}
{{- define "citus.alerts.backupMaxAge" -}}
{{- $pr := .Values.metrics.prometheusRule -}}
{{- if gt (int $pr.backupMaxAgeSeconds) 0 -}}
{{- int $pr.backupMaxAgeSeconds -}}
{{- else -}}
{{- $schedule := trim .Values.backup.schedule -}}
{{- $macros := dict "@yearly" 31622400 "@annually" 31622400 "@monthly" 2678400 "@weekly" 604800 "@daily" 86400 "@midnight" 86400 "@hourly" 3600 -}}
{{- $period := 86400 -}}
{{- if hasKey $macros $schedule -}}
{{- $period = index $macros $schedule -}}
{{- else -}}
{{- $f := splitList " " (regexReplaceAll "\\s+" $schedule " ") -}}
{{- if lt (len $f) 5 -}}
{{- fail (printf "backup.schedule=%q is not a cron schedule of 5 fields; set it, or metrics.prometheusRule.backupMaxAgeSeconds" $schedule) -}}
{{- end -}}
{{- if ne (index $f 3) "*" -}}{{- $period = 31622400 -}}
{{- else if ne (index $f 2) "*" -}}{{- $period = 2678400 -}}
{{- else if ne (index $f 4) "*" -}}{{- $period = 604800 -}}
{{- else if hasPrefix "*/" (index $f 1) -}}{{- $period = mul 3600 (int (trimPrefix "*/" (index $f 1))) -}}
{{- else if eq (index $f 1) "*" -}}{{- $period = 3600 -}}
{{- end -}}
{{- end -}}
{{- add $period 3600 -}}
{{- end -}}
{{- end -}}
