{{/*
Names, labels and small shared values. Component-specific pieces take a dict
(dict "ctx" $ "component" "coordinator"|"worker").
*/}}

{{- define "citus.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Release-wide prefix; `my-citus` for release my-citus. Kept short enough for "-coordinator-headless". */}}
{{- define "citus.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 42 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 42 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 42 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "citus.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* "<fullname>-<component>": StatefulSet, Service, PDB... of a component. */}}
{{- define "citus.componentName" -}}
{{- printf "%s-%s" (include "citus.fullname" .ctx) .component -}}
{{- end -}}

{{/* Governing (headless) service of a component's StatefulSet: gives every pod a stable DNS name. */}}
{{- define "citus.headlessName" -}}
{{- printf "%s-%s-headless" (include "citus.fullname" .ctx) .component -}}
{{- end -}}

{{/* Immutable selector labels. Never add commonLabels or podLabels here. */}}
{{- define "citus.selectorLabels" -}}
app.kubernetes.io/name: {{ include "citus.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Release-wide selector (every component). */}}
{{- define "citus.instanceSelectorLabels" -}}
app.kubernetes.io/name: {{ include "citus.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Labels of every resource: commonLabels, version/chart labels, and the selector labels, which always win. */}}
{{- define "citus.labels" -}}
{{- $common := dict -}}
{{- with .ctx.Values.commonLabels }}{{ $common = include "citus.tplvalues" (dict "value" . "ctx" $.ctx) | fromYaml }}{{ end -}}
{{- $chart := dict
  "app.kubernetes.io/version" .ctx.Chart.AppVersion
  "app.kubernetes.io/managed-by" .ctx.Release.Service
  "app.kubernetes.io/part-of" "citus"
  "helm.sh/chart" (include "citus.chart" .ctx) -}}
{{- toYaml (merge (include "citus.selectorLabels" . | fromYaml) $chart $common) -}}
{{- end -}}

{{/* metadata.annotations from commonAnnotations merged with extra ones (a dict or nil). */}}
{{- define "citus.annotations" -}}
{{- $all := merge (dict) (.extra | default (dict)) (.ctx.Values.commonAnnotations | default (dict)) -}}
{{- with $all }}
annotations:
  {{- include "citus.indent" (dict "indent" 2 "text" (include "citus.tplvalues" (dict "value" . "ctx" $.ctx))) }}
{{- end }}
{{- end -}}

{{/* Render a value (string or structure) through tpl. */}}
{{- define "citus.tplvalues" -}}
{{- if typeIs "string" .value -}}
{{- tpl .value .ctx -}}
{{- else -}}
{{- tpl (.value | toYaml) .ctx -}}
{{- end -}}
{{- end -}}

{{/* Values of a component: .Values.coordinator or .Values.worker. */}}
{{- define "citus.componentValues" -}}
{{- index .ctx.Values .component | toYaml -}}
{{- end -}}

{{- define "citus.secretName" -}}
{{- if .Values.auth.existingSecret -}}
{{- tpl .Values.auth.existingSecret . -}}
{{- else -}}
{{- printf "%s-secret" (include "citus.fullname" .) -}}
{{- end -}}
{{- end -}}

{{- define "citus.configMapName" -}}
{{- printf "%s-config" (include "citus.fullname" .) -}}
{{- end -}}

{{- define "citus.scriptsName" -}}
{{- printf "%s-scripts" (include "citus.fullname" .) -}}
{{- end -}}

{{/* The superuser the chart's own jobs connect as (see auth.enablePostgresUser). */}}
{{- define "citus.superuser" -}}
{{- if .Values.auth.enablePostgresUser -}}postgres{{- else -}}{{ .Values.auth.username }}{{- end -}}
{{- end -}}

{{/* Secret key that holds the superuser's password. */}}
{{- define "citus.superuserPasswordKey" -}}
{{- if .Values.auth.enablePostgresUser -}}{{ .Values.auth.secretKeys.adminPasswordKey }}{{- else -}}{{ .Values.auth.secretKeys.userPasswordKey }}{{- end -}}
{{- end -}}

{{/* Whether a separate application user exists besides the superuser. */}}
{{- define "citus.hasAppUser" -}}
{{- if and .Values.auth.enablePostgresUser .Values.auth.username (ne .Values.auth.username "postgres") -}}true{{- end -}}
{{- end -}}

{{- define "citus.serviceAccountName" -}}
{{- $sa := (index .ctx.Values .component).serviceAccount -}}
{{- if $sa.create -}}
{{- default (include "citus.componentName" .) $sa.name -}}
{{- else -}}
{{- default "default" $sa.name -}}
{{- end -}}
{{- end -}}

{{/* DNS suffix of a component's pods, `.<headless>.<ns>.svc.<domain>`: pod <n> is `<sts>-<n>` followed by it. */}}
{{- define "citus.podDomain" -}}
{{- printf ".%s.%s.svc.%s" (include "citus.headlessName" .) .ctx.Release.Namespace .ctx.Values.clusterDomain -}}
{{- end -}}

{{/* Stable DNS name of pod <ordinal> of a component: <sts>-<n>.<headless>.<ns>.svc.<domain>. */}}
{{- define "citus.podFQDN" -}}
{{- printf "%s-%d%s" (include "citus.componentName" .) (int .ordinal) (include "citus.podDomain" .) -}}
{{- end -}}

{{/* DNS name of a component's Service: <name>.<ns>.svc.<domain>. */}}
{{- define "citus.serviceFQDN" -}}
{{- printf "%s.%s.svc.%s" (include "citus.componentName" .) .ctx.Release.Namespace .ctx.Values.clusterDomain -}}
{{- end -}}

{{/* Number of workers the chart registers, and keeps on a scale-in: with an HPA, up to maxReplicas (the
registration loop takes every worker pod the HPA adds; _validate.tpl keeps the StatefulSet within it). */}}
{{- define "citus.worker.registeredReplicas" -}}
{{- if .Values.worker.autoscaling.enabled -}}{{ .Values.worker.autoscaling.maxReplicas }}{{- else -}}{{ .Values.worker.replicaCount }}{{- end -}}
{{- end -}}

{{- define "citus.kubeVersion" -}}
{{- default .Capabilities.KubeVersion.Version .Values.kubeVersion -}}
{{- end -}}

{{/* Storage class line for a PVC spec (persistence values in .persistence). */}}
{{- define "citus.storageClass" -}}
{{- $sc := .persistence.storageClass | default .ctx.Values.global.storageClass -}}
{{- if $sc -}}
{{- if eq $sc "-" }}
storageClassName: ""
{{- else }}
storageClassName: {{ $sc | quote }}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Pod-level security context from <component>.podSecurityContext. */}}
{{- define "citus.podSecurityContext" -}}
{{- if .enabled }}
securityContext:
  {{- toYaml (omit . "enabled") | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Container security context from <component>.containerSecurityContext. */}}
{{- define "citus.containerSecurityContext" -}}
{{- if .enabled }}
securityContext:
  {{- toYaml (omit . "enabled") | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Security context of the chart's Job and CronJob pods: the coordinator's user, non-root, nothing else. */}}
{{- define "citus.jobContainerSecurityContext" -}}
securityContext:
  {{- if .Values.coordinator.containerSecurityContext.enabled }}
  runAsUser: {{ .Values.coordinator.containerSecurityContext.runAsUser }}
  runAsGroup: {{ .Values.coordinator.containerSecurityContext.runAsGroup }}
  {{- end }}
  runAsNonRoot: true
  allowPrivilegeEscalation: false
  readOnlyRootFilesystem: true
  capabilities:
    drop: ["ALL"]
  seccompProfile:
    type: RuntimeDefault
{{- end -}}

{{/*
Environment that gives a container the superuser's connection credentials
(PGUSER/PGPASSWORD, or PGPASSFILE-free PGPASSWORD_FILE read by the scripts).
*/}}
{{- define "citus.superuserEnv" -}}
- name: PGUSER
  value: {{ include "citus.superuser" . | quote }}
{{- if .Values.auth.usePasswordFiles }}
- name: PGPASSWORD_FILE
  value: {{ printf "%s/%s" (include "citus.path.secrets" .) (include "citus.superuserPasswordKey" .) | quote }}
{{- else }}
- name: PGPASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "citus.secretName" . }}
      key: {{ include "citus.superuserPasswordKey" . }}
{{- end }}
{{- end -}}

{{/* Secret volume for auth.usePasswordFiles; group-readable through fsGroup; the scripts copy what libpq needs. */}}
{{- define "citus.passwordFilesVolume" -}}
{{- if .Values.auth.usePasswordFiles }}
- name: secrets
  secret:
    secretName: {{ include "citus.secretName" . }}
    defaultMode: 288 # 0440
{{- end }}
{{- end -}}

{{- define "citus.passwordFilesMount" -}}
{{- if .Values.auth.usePasswordFiles }}
- name: secrets
  mountPath: {{ include "citus.path.secrets" . }}
  readOnly: true
{{- end }}
{{- end -}}

{{/* Text placed at an indentation: a newline, then every non-empty line indented by .indent; nothing at all
for empty text. Unlike nindent it leaves no whitespace-only lines (empty lines stay empty, a block's leading
and trailing newline is dropped). The one way templates indent included blocks and files:
(dict "indent" N "text" (include ...)). */}}
{{- define "citus.indent" -}}
{{- $text := .text | trimPrefix "\n" | trimSuffix "\n" -}}
{{- if trim $text }}
{{ regexReplaceAll "(?m)^(.+)$" $text (printf "%s${1}" (repeat (int .indent) " ")) }}
{{- end -}}
{{- end -}}
