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
  {{- end }}
  {{- include "citus.containerSecurityContext" (merge (dict "readOnlyRootFilesystem" true) $v.containerSecurityContext) | nindent 2 }}
  env:
    - name: DATA_SOURCE_URI
      value: {{ printf "127.0.0.1:%v/%s?sslmode=disable" $v.containerPorts.postgresql $ctx.Values.auth.database | quote }}
    - name: DATA_SOURCE_USER
      value: {{ include "citus.superuser" $ctx | quote }}
    {{- include "citus.node.passwordEnv" (dict "ctx" $ctx "var" "DATA_SOURCE_PASS" "key" (include "citus.superuserPasswordKey" $ctx)) | nindent 4 }}
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
  {{- include "citus.job.resources" $m | nindent 2 }}
  {{- if $ctx.Values.auth.usePasswordFiles }}
  volumeMounts:
    {{- include "citus.passwordFilesMount" $ctx | nindent 4 }}
  {{- end }}
{{- end -}}
