{{/* Pieces shared by the chart's Job, CronJob and test pods (they all run psql against the cluster). */}}

{{/*
Pod-level settings: non-root, no service account token, pull secrets, and the coordinator's placement
(nodeSelector, tolerations, priority class): a Job pod runs where the coordinator may run, and a drain is not
preempted before the pods it protects. The ids follow the coordinator's security contexts: with them
disabled the platform assigns them (OpenShift's restricted SCC refuses fixed ones).
*/}}
{{- define "citus.job.podSettings" -}}
{{- $c := .ctx.Values.coordinator -}}
{{- include "citus.imagePullSecrets" (dict "image" .image "ctx" .ctx) }}
{{- include "citus.nodeSelector" (dict "ctx" .ctx "image" .image "nodeSelector" $c.nodeSelector) }}
{{- with $c.tolerations }}
tolerations:
  {{- include "citus.tplvalues" (dict "value" . "ctx" $.ctx) | nindent 2 }}
{{- end }}
{{- with $c.priorityClassName }}
priorityClassName: {{ . | quote }}
{{- end }}
automountServiceAccountToken: false
enableServiceLinks: false
securityContext:
  {{- if $c.podSecurityContext.enabled }}
  fsGroup: {{ $c.podSecurityContext.fsGroup }}
  {{- end }}
  runAsNonRoot: true
  seccompProfile:
    type: RuntimeDefault
{{- end -}}

{{/* Volumes of a job pod: scripts, a writable /tmp, and the password files when used. */}}
{{- define "citus.job.volumes" -}}
- name: scripts
  configMap:
    name: {{ include "citus.scriptsName" . }}
    defaultMode: 365 # 0555: the YAML 1.2 reading of an octal literal is a string
- name: tmp
  emptyDir: {}
{{- include "citus.passwordFilesVolume" . }}
{{- end -}}

{{- define "citus.job.volumeMounts" -}}
- name: scripts
  mountPath: {{ include "citus.path.scripts" . }}
  readOnly: true
- name: tmp
  mountPath: /tmp
{{- include "citus.passwordFilesMount" . }}
{{- end -}}
