{{/*
checkov waivers, each with its reason, emitted only while the value that triggers the check is in effect
(mostly the seed's defaults); change the value and the check applies again.
Call with (dict "ctx" $ "images" (list <image values>...) "securityContext" <container security context>
"probes" true|false) and use the result as extra annotations (fromYaml).
*/}}
{{- define "citus.checkov.skips" -}}
{{- $ctx := .ctx -}}
{{- $skips := list -}}
{{- $undigested := false -}}
{{- $notAlways := false -}}
{{- range .images -}}
{{- if not .digest }}{{ $undigested = true }}{{ end -}}
{{- if ne .pullPolicy "Always" }}{{ $notAlways = true }}{{ end -}}
{{- end -}}
{{- if $undigested -}}
{{- $skips = append $skips "CKV_K8S_43=images are pinned by tag (the chart's defaults); set image.digest and the other *.image.digest values to pin digests" -}}
{{- end -}}
{{- if $notAlways -}}
{{- $skips = append $skips "CKV_K8S_15=pullPolicy IfNotPresent is the chart default for immutable release tags; set *.image.pullPolicy Always to change it" -}}
{{- end -}}
{{- if lt (int (.securityContext.runAsUser | default 0)) 10000 -}}
{{- $skips = append $skips "CKV_K8S_40=uid 1001 is the chart default (containerSecurityContext.runAsUser); any non-root uid works" -}}
{{- end -}}
{{- if not $ctx.Values.auth.usePasswordFiles -}}
{{- $skips = append $skips "CKV_K8S_35=passwords come from secretKeyRef env by default; auth.usePasswordFiles true mounts them as files instead" -}}
{{- end -}}
{{- if not .securityContext.readOnlyRootFilesystem -}}
{{- $skips = append $skips "CKV_K8S_22=readOnlyRootFilesystem false is the chart default; every path PostgreSQL writes is a volume, so true works" -}}
{{- end -}}
{{- if not $ctx.Values.networkPolicy.enabled -}}
{{- $skips = append $skips "CKV2_K8S_6=networkPolicy.enabled false is the chart default; enable it to give every pod of the release a NetworkPolicy" -}}
{{- end -}}
{{- if not .probes -}}
{{- $skips = concat $skips (list "CKV_K8S_8=runs one script to completion; a liveness probe does not apply" "CKV_K8S_9=runs one script to completion and serves nothing; a readiness probe does not apply") -}}
{{- end -}}
{{- range $i, $s := $skips }}
checkov.io/skip{{ add1 $i }}: {{ $s | quote }}
{{- end }}
{{- end -}}

{{/* Waivers for the chart's Job, CronJob and test pods (Citus or backup image, job security context). */}}
{{- define "citus.checkov.jobSkips" -}}
{{- include "citus.checkov.skips" (dict "ctx" .ctx "images" (list .image) "securityContext" (dict "runAsUser" .ctx.Values.coordinator.containerSecurityContext.runAsUser "readOnlyRootFilesystem" true) "probes" false) -}}
{{- end -}}

{{/* Job container resources: the configured ones, with limits added when none are configured. */}}
{{- define "citus.job.resources" -}}
{{- $res := deepCopy (.resources | default (dict)) -}}
{{- if not $res.limits -}}
{{- $_ := set $res "limits" (dict "cpu" "500m" "memory" "256Mi") -}}
{{- end -}}
resources:
  {{- toYaml $res | nindent 2 }}
{{- end -}}
