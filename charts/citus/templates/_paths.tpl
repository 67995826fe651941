{{/*
Paths inside the pods, defined once: the scripts (entrypoint.sh and the Job scripts read the same values from
their environment, with these as defaults), the configuration, the Secret files, the data directory.
Each takes no argument: {{ include "citus.path.scripts" . }}.
*/}}
{{- define "citus.path.scripts" -}}/opt/citus/scripts{{- end -}}
{{- define "citus.path.secrets" -}}/opt/citus/secrets{{- end -}}
{{- define "citus.path.config" -}}/etc/citus/conf{{- end -}}
{{- define "citus.path.dataMount" -}}/var/lib/postgresql/data{{- end -}}
{{/* PGDATA is a subdirectory of the volume: the mount root belongs to root, PostgreSQL wants its own 0700. */}}
{{- define "citus.path.pgdata" -}}{{ include "citus.path.dataMount" . }}/pgdata{{- end -}}
{{- define "citus.path.state" -}}/tmp/citus{{- end -}}
{{- define "citus.path.metrics" -}}/etc/citus/metrics{{- end -}}
{{/* The exporter's password file, written by the PostgreSQL container (volume exporter-auth). */}}
{{/* The backup volume in the backup pods; kubectl citus backup list finds it through their BACKUP_DIR. */}}
{{- define "citus.path.backups" -}}/var/lib/postgresql/backups{{- end -}}
{{- define "citus.path.exporterAuth" -}}/opt/citus/exporter-auth{{- end -}}

{{/* A Job or test container's command: the named chart script under sh. Takes the script's file name. */}}
{{- define "citus.scriptCommand" -}}
["/bin/sh", "{{ include "citus.path.scripts" . }}/{{ . }}"]
{{- end -}}
