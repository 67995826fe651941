{{/* Pieces shared by the chart's Job, CronJob and test pods (they all run psql against the cluster). */}}

{{/* Pod-level settings: non-root with the coordinator's ids, no service account token, pull secrets. */}}
{{- define "citus.job.podSettings" -}}
{{- include "citus.imagePullSecrets" (dict "image" .image "ctx" .ctx) }}
{{- include "citus.nodeSelector" (dict "ctx" .ctx "image" .image "nodeSelector" dict) }}
automountServiceAccountToken: false
enableServiceLinks: false
securityContext:
  fsGroup: {{ .ctx.Values.coordinator.podSecurityContext.fsGroup }}
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
