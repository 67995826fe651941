{{/*
The StatefulSet of a Citus node group. Coordinator and workers differ only in their values
(.Values.coordinator / .Values.worker), so both files call this with
(dict "ctx" $ "component" "coordinator"|"worker").
*/}}
{{- define "citus.node.statefulset" -}}
{{- $ctx := .ctx -}}
{{- $v := index $ctx.Values .component -}}
{{- $existingClaim := "" -}}
{{- if eq .component "coordinator" }}{{ $existingClaim = $v.persistence.existingClaim }}{{ end -}}
{{- include "citus.node.immutableCheck" . -}}
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: {{ include "citus.componentName" . }}
  namespace: {{ $ctx.Release.Namespace | quote }}
  labels:
    {{- include "citus.indent" (dict "indent" 4 "text" (include "citus.labels" .)) }}
  {{- $images := list $ctx.Values.image -}}
  {{- if $ctx.Values.metrics.enabled }}{{ $images = append $images $ctx.Values.metrics.image }}{{ end -}}
  {{- $skips := include "citus.checkov.skips" (dict "ctx" $ctx "images" $images "securityContext" $v.containerSecurityContext "probes" true) | fromYaml }}
  {{- include "citus.indent" (dict "indent" 2 "text" (include "citus.annotations" (dict "ctx" $ctx "extra" $skips))) }}
spec:
  replicas: {{ if eq .component "worker" }}{{ include "citus.worker.replicas" $ctx }}{{ else }}{{ $v.replicaCount }}{{ end }}
  serviceName: {{ include "citus.headlessName" . }}
  podManagementPolicy: {{ $v.podManagementPolicy }}
  updateStrategy:
    {{- toYaml $v.updateStrategy | nindent 4 }}
  selector:
    matchLabels:
      {{- include "citus.indent" (dict "indent" 6 "text" (include "citus.selectorLabels" .)) }}
  template:
    metadata:
      labels:
        {{- include "citus.indent" (dict "indent" 8 "text" (include "citus.node.podLabels" .)) }}
      annotations:
        checksum/config: {{ include (print $ctx.Template.BasePath "/configmap.yaml") $ctx | sha256sum }}
        checksum/scripts: {{ include (print $ctx.Template.BasePath "/scripts-configmap.yaml") $ctx | sha256sum }}
        {{- if $ctx.Values.metrics.enabled }}
        checksum/metrics-queries: {{ include (print $ctx.Template.BasePath "/metrics/queries-configmap.yaml") $ctx | sha256sum }}
        {{- end }}
        {{- with $v.podAnnotations }}
        {{- include "citus.indent" (dict "indent" 8 "text" (include "citus.tplvalues" (dict "value" . "ctx" $ctx))) }}
        {{- end }}
    spec:
      {{- include "citus.indent" (dict "indent" 6 "text" (include "citus.node.podSpec" (dict "ctx" $ctx "component" .component "existingClaim" $existingClaim))) }}
  {{- with include "citus.node.claimTemplates" . | fromYamlArray }}
  volumeClaimTemplates:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}

{{/*
The StatefulSet's volumeClaimTemplates as a YAML list (empty without persistence, or with the coordinator's
existingClaim): (dict "ctx" $ "component" ...). Also what the immutable-field check compares.
*/}}
{{- define "citus.node.claimTemplates" -}}
{{- $ctx := .ctx -}}
{{- $v := index $ctx.Values .component -}}
{{- $existingClaim := and (eq .component "coordinator") $v.persistence.existingClaim -}}
{{- if and $v.persistence.enabled (not $existingClaim) -}}
- apiVersion: v1
  kind: PersistentVolumeClaim
  metadata:
    name: data
    labels:
      {{- include "citus.indent" (dict "indent" 6 "text" (include "citus.selectorLabels" .)) }}
      {{- with $v.persistence.labels }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
    {{- with $v.persistence.annotations }}
    annotations:
      {{- toYaml . | nindent 6 }}
    {{- end }}
  spec:
    accessModes:
      {{- toYaml $v.persistence.accessModes | nindent 6 }}
    resources:
      requests:
        storage: {{ $v.persistence.size | quote }}
    {{- include "citus.indent" (dict "indent" 4 "text" (include "citus.storageClass" (dict "persistence" $v.persistence "ctx" $ctx))) }}
    {{- with $v.persistence.selector }}
    selector:
      {{- toYaml . | nindent 6 }}
    {{- end }}
{{- else -}}
[]
{{- end -}}
{{- end -}}

{{/* Pod labels: commonLabels and podLabels first, selector labels last so they always win. */}}
{{- define "citus.node.podLabels" -}}
{{- $v := index .ctx.Values .component -}}
{{- $labels := merge (include "citus.selectorLabels" . | fromYaml) ($v.podLabels | default (dict)) (include "citus.labels" . | fromYaml) -}}
{{- toYaml $labels -}}
{{- end -}}

{{- define "citus.node.podSpec" -}}
{{- $ctx := .ctx -}}
{{- $v := index $ctx.Values .component -}}
{{- include "citus.imagePullSecrets" (dict "image" $ctx.Values.image "ctx" $ctx) }}
serviceAccountName: {{ include "citus.serviceAccountName" . }}
automountServiceAccountToken: {{ $v.serviceAccount.automountServiceAccountToken }}
enableServiceLinks: false
{{- with $v.hostAliases }}
hostAliases:
  {{- include "citus.indent" (dict "indent" 2 "text" (include "citus.tplvalues" (dict "value" . "ctx" $ctx))) }}
{{- end }}
{{- with (include "citus.affinity" .) }}
affinity:
  {{- include "citus.indent" (dict "indent" 2 "text" .) }}
{{- end }}
{{- include "citus.nodeSelector" (dict "ctx" $ctx "image" $ctx.Values.image "nodeSelector" $v.nodeSelector) }}
{{- with $v.tolerations }}
tolerations:
  {{- include "citus.indent" (dict "indent" 2 "text" (include "citus.tplvalues" (dict "value" . "ctx" $ctx))) }}
{{- end }}
{{- with $v.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- include "citus.indent" (dict "indent" 2 "text" (include "citus.tplvalues" (dict "value" . "ctx" $ctx))) }}
{{- end }}
{{- with $v.priorityClassName }}
priorityClassName: {{ . | quote }}
{{- end }}
{{- with $v.schedulerName }}
schedulerName: {{ . | quote }}
{{- end }}
terminationGracePeriodSeconds: {{ $v.terminationGracePeriodSeconds }}
{{- include "citus.podSecurityContext" $v.podSecurityContext }}
{{- $persistent := or $v.persistence.enabled .existingClaim }}
{{- if or (and $ctx.Values.volumePermissions.enabled $persistent) $v.initContainers }}
initContainers:
  {{- if and $ctx.Values.volumePermissions.enabled $persistent }}
  - name: volume-permissions
    image: {{ include "citus.image" (dict "image" $ctx.Values.volumePermissions.image "ctx" $ctx) | quote }}
    imagePullPolicy: {{ $ctx.Values.volumePermissions.image.pullPolicy }}
    command: ["/bin/sh", "-ec"]
    args:
      - |
        mkdir -p {{ include "citus.path.pgdata" . }}
        chown {{ $v.containerSecurityContext.runAsUser }}:{{ $v.podSecurityContext.fsGroup }} {{ include "citus.path.dataMount" . }} {{ include "citus.path.pgdata" . }}
        chmod 0700 {{ include "citus.path.pgdata" . }}
    securityContext:
      runAsUser: {{ $ctx.Values.volumePermissions.containerSecurityContext.runAsUser }}
      runAsNonRoot: false
      allowPrivilegeEscalation: false
      readOnlyRootFilesystem: true
      capabilities:
        drop: ["ALL"]
        add: ["CHOWN", "FOWNER", "DAC_OVERRIDE"]
      seccompProfile:
        type: RuntimeDefault
    resources:
      requests:
        cpu: 10m
        memory: 32Mi
      limits:
        cpu: 100m
        memory: 64Mi
    volumeMounts:
      - name: data
        mountPath: /var/lib/postgresql/data
  {{- end }}
  {{- with $v.initContainers }}
  {{- include "citus.indent" (dict "indent" 2 "text" (include "citus.tplvalues" (dict "value" . "ctx" $ctx))) }}
  {{- end }}
{{- end }}
containers:
  - name: postgresql
    image: {{ include "citus.image" (dict "image" $ctx.Values.image "ctx" $ctx) | quote }}
    imagePullPolicy: {{ $ctx.Values.image.pullPolicy }}
    {{- if $ctx.Values.diagnosticMode.enabled }}
    command:
      {{- toYaml $ctx.Values.diagnosticMode.command | nindent 6 }}
    args:
      {{- toYaml $ctx.Values.diagnosticMode.args | nindent 6 }}
    {{- else }}
    command:
      {{- if $v.command }}
      {{- include "citus.indent" (dict "indent" 6 "text" (include "citus.tplvalues" (dict "value" $v.command "ctx" $ctx))) }}
      {{- else }}
      - /bin/sh
      - {{ include "citus.path.scripts" . }}/entrypoint.sh
      {{- end }}
    {{- with $v.args }}
    args:
      {{- include "citus.indent" (dict "indent" 6 "text" (include "citus.tplvalues" (dict "value" . "ctx" $ctx))) }}
    {{- end }}
    {{- end }}
    {{- include "citus.indent" (dict "indent" 4 "text" (include "citus.containerSecurityContext" $v.containerSecurityContext)) }}
    env:
      - name: CITUS_NODE_ROLE
        value: {{ .component }}
      - name: PGDATA
        value: {{ include "citus.path.pgdata" . }}
      - name: PGPORT
        value: {{ $v.containerPorts.postgresql | quote }}
      - name: POSTGRES_USER
        value: {{ include "citus.superuser" $ctx | quote }}
      - name: POSTGRES_DB
        value: {{ $ctx.Values.auth.database | quote }}
      {{- include "citus.indent" (dict "indent" 6 "text" (include "citus.node.passwordEnv" (dict "ctx" $ctx "var" "POSTGRES_PASSWORD" "key" (include "citus.superuserPasswordKey" $ctx)))) }}
      {{- if include "citus.hasAppUser" $ctx }}
      - name: CITUS_APP_USER
        value: {{ $ctx.Values.auth.username | quote }}
      {{- include "citus.indent" (dict "indent" 6 "text" (include "citus.node.passwordEnv" (dict "ctx" $ctx "var" "CITUS_APP_PASSWORD" "key" $ctx.Values.auth.secretKeys.userPasswordKey))) }}
      {{- end }}
      {{- include "citus.indent" (dict "indent" 6 "text" (include "citus.metrics.nodeEnv" .)) }}
      {{- include "citus.indent" (dict "indent" 6 "text" (include "citus.node.clusterEnv" .)) }}
      {{- with $v.extraEnvVars }}
      {{- include "citus.indent" (dict "indent" 6 "text" (include "citus.tplvalues" (dict "value" . "ctx" $ctx))) }}
      {{- end }}
    {{- if or $v.extraEnvVarsCM $v.extraEnvVarsSecret }}
    envFrom:
      {{- with $v.extraEnvVarsCM }}
      - configMapRef:
          name: {{ include "citus.tplvalues" (dict "value" . "ctx" $ctx) }}
      {{- end }}
      {{- with $v.extraEnvVarsSecret }}
      - secretRef:
          name: {{ include "citus.tplvalues" (dict "value" . "ctx" $ctx) }}
      {{- end }}
    {{- end }}
    ports:
      - name: postgresql
        containerPort: {{ $v.containerPorts.postgresql }}
        protocol: TCP
    {{- if not $ctx.Values.diagnosticMode.enabled }}
    {{- include "citus.indent" (dict "indent" 4 "text" (include "citus.node.probe" (dict "ctx" $ctx "name" "livenessProbe" "custom" $v.customLivenessProbe "probe" $v.livenessProbe "alive" true))) }}
    {{- include "citus.indent" (dict "indent" 4 "text" (include "citus.node.probe" (dict "ctx" $ctx "name" "readinessProbe" "custom" $v.customReadinessProbe "probe" $v.readinessProbe))) }}
    {{- include "citus.indent" (dict "indent" 4 "text" (include "citus.node.probe" (dict "ctx" $ctx "name" "startupProbe" "custom" $v.customStartupProbe "probe" $v.startupProbe "alive" true))) }}
    {{- end }}
    {{- with $v.lifecycleHooks }}
    lifecycle:
      {{- include "citus.indent" (dict "indent" 6 "text" (include "citus.tplvalues" (dict "value" . "ctx" $ctx))) }}
    {{- end }}
    {{- include "citus.indent" (dict "indent" 4 "text" (include "citus.resources" .)) }}
    volumeMounts:
      - name: data
        mountPath: /var/lib/postgresql/data
      - name: config
        mountPath: {{ include "citus.path.config" . }}
        readOnly: true
      - name: scripts
        mountPath: {{ include "citus.path.scripts" . }}
        readOnly: true
      - name: tmp
        mountPath: /tmp
      - name: run
        mountPath: /var/run/postgresql
      - name: dshm
        mountPath: /dev/shm
      {{- include "citus.indent" (dict "indent" 6 "text" (include "citus.passwordFilesMount" $ctx)) }}
      {{- include "citus.indent" (dict "indent" 6 "text" (include "citus.metrics.nodeMounts" $ctx)) }}
      {{- if not $ctx.Values.auth.usePasswordFiles }}
      {{- /* Read by the entrypoint's password watcher: Secret volumes update in place, env vars do not. */}}
      - name: secrets
        mountPath: {{ include "citus.path.secrets" . }}
        readOnly: true
      {{- end }}
      {{- with $v.extraVolumeMounts }}
      {{- include "citus.indent" (dict "indent" 6 "text" (include "citus.tplvalues" (dict "value" . "ctx" $ctx))) }}
      {{- end }}
  {{- if $ctx.Values.metrics.enabled }}
  {{- include "citus.indent" (dict "indent" 2 "text" (include "citus.metrics.container" .)) }}
  {{- end }}
  {{- with $v.sidecars }}
  {{- include "citus.indent" (dict "indent" 2 "text" (include "citus.tplvalues" (dict "value" . "ctx" $ctx))) }}
  {{- end }}
volumes:
  - name: config
    configMap:
      name: {{ include "citus.configMapName" $ctx }}
  - name: scripts
    configMap:
      name: {{ include "citus.scriptsName" $ctx }}
      defaultMode: 365 # 0555: the YAML 1.2 reading of an octal literal is a string
  - name: tmp
    emptyDir: {}
  - name: run
    emptyDir: {}
  - name: dshm
    emptyDir:
      medium: Memory
  {{- if .existingClaim }}
  - name: data
    persistentVolumeClaim:
      claimName: {{ include "citus.tplvalues" (dict "value" .existingClaim "ctx" $ctx) }}
  {{- else if not $v.persistence.enabled }}
  - name: data
    emptyDir: {}
  {{- end }}
  {{- include "citus.indent" (dict "indent" 2 "text" (include "citus.metrics.volumes" $ctx)) }}
  {{- include "citus.indent" (dict "indent" 2 "text" (include "citus.passwordFilesVolume" $ctx)) }}
  {{- if not $ctx.Values.auth.usePasswordFiles }}
  - name: secrets
    secret:
      secretName: {{ include "citus.secretName" $ctx }}
      defaultMode: 288 # 0440
  {{- end }}
  {{- with $v.extraVolumes }}
  {{- include "citus.indent" (dict "indent" 2 "text" (include "citus.tplvalues" (dict "value" . "ctx" $ctx))) }}
  {{- end }}
{{- end -}}

{{/* A password as VAR (secretKeyRef) or VAR_FILE (auth.usePasswordFiles). */}}
{{- define "citus.node.passwordEnv" -}}
{{- if .ctx.Values.auth.usePasswordFiles -}}
- name: {{ .var }}_FILE
  value: {{ printf "%s/%s" (include "citus.path.secrets" .) .key | quote }}
{{- else -}}
- name: {{ .var }}
  valueFrom:
    secretKeyRef:
      name: {{ include "citus.secretName" .ctx }}
      key: {{ .key }}
{{- end -}}
{{- end -}}

{{/*
A probe: the custom one when set, else pg_isready over TCP. The node only listens on TCP once its first-start
initialisation is over, so readiness also means "database and extension exist".
*/}}
{{- define "citus.node.probe" -}}
{{- if .custom -}}
{{ .name }}:
  {{- include "citus.indent" (dict "indent" 2 "text" (include "citus.tplvalues" (dict "value" .custom "ctx" .ctx))) }}
{{- else if .probe.enabled -}}
{{ .name }}:
  exec:
    command:
      - /bin/sh
      - -c
      {{- if .alive }}
      {{- /* initdb, first setup and extension updates can outlast any probe budget; the entrypoint marks them. */}}
      - test -e {{ include "citus.path.state" . }}/initializing || exec pg_isready -q -h 127.0.0.1 -p "$PGPORT" -U "$POSTGRES_USER" -d "dbname=$POSTGRES_DB"
      {{- else }}
      - exec pg_isready -q -h 127.0.0.1 -p "$PGPORT" -U "$POSTGRES_USER" -d "dbname=$POSTGRES_DB"
      {{- end }}
  {{- toYaml (omit .probe "enabled") | nindent 2 }}
{{- end -}}
{{- end -}}

{{/*
Environment for the entrypoint's cluster duties: the Secret files its password watcher reads; on workers the
coordinator whose citus update comes first; on the coordinator under autoscaling the registration loop.
*/}}
{{- define "citus.node.clusterEnv" -}}
{{- $ctx := .ctx -}}
{{- $worker := dict "ctx" $ctx "component" "worker" -}}
- name: CITUS_WATCH_POSTGRES_PASSWORD_FILE
  value: {{ printf "%s/%s" (include "citus.path.secrets" .) (include "citus.superuserPasswordKey" $ctx) | quote }}
{{- if include "citus.hasAppUser" $ctx }}
- name: CITUS_WATCH_APP_PASSWORD_FILE
  value: {{ printf "%s/%s" (include "citus.path.secrets" .) $ctx.Values.auth.secretKeys.userPasswordKey | quote }}
{{- end }}
- name: CITUS_COORDINATOR_HOST
  value: {{ include "citus.podFQDN" (dict "ctx" $ctx "component" "coordinator" "ordinal" 0) | quote }}
- name: CITUS_COORDINATOR_PORT
  value: {{ $ctx.Values.coordinator.containerPorts.postgresql | quote }}
{{- if and (eq .component "coordinator") $ctx.Values.worker.autoscaling.enabled $ctx.Values.workerRegistration.enabled }}
- name: CITUS_REGISTER_WATCH
  value: "true"
- name: CITUS_WORKER_PREFIX
  value: {{ printf "%s-" (include "citus.componentName" $worker) | quote }}
- name: CITUS_WORKER_DOMAIN
  value: {{ include "citus.podDomain" $worker | quote }}
- name: CITUS_WORKER_PORT
  value: {{ $ctx.Values.worker.containerPorts.postgresql | quote }}
- name: CITUS_WORKER_MAX
  value: {{ $ctx.Values.worker.autoscaling.maxReplicas | quote }}
- name: CITUS_REBALANCE
  value: {{ $ctx.Values.workerRegistration.rebalance | quote }}
- name: CITUS_SHARD_TRANSFER_MODE
  value: {{ $ctx.Values.workerRegistration.shardTransferMode | quote }}
{{- end }}
{{- end -}}

{{/* The live StatefulSet of a component, or an empty dict (first install, or rendered without cluster access). */}}
{{- define "citus.node.live" -}}
{{- toYaml (lookup "apps/v1" "StatefulSet" .ctx.Release.Namespace (include "citus.componentName" .) | default (dict)) -}}
{{- end -}}

{{/*
Worker replicas. Under autoscaling the HPA owns the count and only adds workers (scaleDown is disabled, and
the drain hook's target is maxReplicas), so no render may return fewer workers than run: the largest of
minReplicas, replicaCount and the live value. `lookup` reads the live value only with cluster access (helm,
Flux); `helm template` and Argo CD see nothing, and replicaCount is then the only count of the workers that
ran before autoscaling was turned on (minReplicas alone would stop the ones above it, holding shards,
undrained). Omitting `replicas` is no way out: Helm's three-way merge would reset it to 1. Workers the HPA adds
later are kept by `lookup`, or in Argo CD by ignoring /spec/replicas (README: GitOps). _validate.tpl keeps
replicaCount and the live value at most maxReplicas: above it the HPA cuts the StatefulSet down at once.
*/}}
{{- define "citus.worker.replicas" -}}
{{- $w := .Values.worker -}}
{{- if $w.autoscaling.enabled -}}
{{- $n := max (int $w.autoscaling.minReplicas) (int $w.replicaCount) -}}
{{- $live := include "citus.node.live" (dict "ctx" . "component" "worker") | fromYaml -}}
{{- with $live.spec }}{{ $n = max $n (int .replicas) }}{{ end -}}
{{- $n -}}
{{- else -}}
{{- $w.replicaCount -}}
{{- end -}}
{{- end -}}

{{/*
What an upgrade would change in the immutable fields of the live StatefulSet: (dict "ctx" $ "component" ...
"live" <the StatefulSet as the API server returns it, or empty>), a YAML list of problems. The whole of
volumeClaimTemplates is immutable (names, labels, annotations, access modes, size, class, selector); the API
server stores a size in canonical form (10240Mi as 10Gi), so sizes are compared as quantities.
*/}}
{{- define "citus.node.immutableErrors" -}}
{{- $ctx := .ctx -}}
{{- $v := index $ctx.Values .component -}}
{{- $name := include "citus.componentName" . -}}
{{- $errors := list -}}
{{- with .live.spec -}}
{{- if ne (toString .serviceName) (include "citus.headlessName" $) -}}
{{- $errors = append $errors (printf "serviceName of StatefulSet %s would change from %s to %s (nameOverride/fullnameOverride)" $name .serviceName (include "citus.headlessName" $)) -}}
{{- end -}}
{{- $selector := include "citus.selectorLabels" $ | fromYaml -}}
{{- if ne (toJson .selector.matchLabels) (toJson $selector) -}}
{{- $errors = append $errors (printf "the selector of StatefulSet %s would change (nameOverride=%q): %s -> %s" $name $ctx.Values.nameOverride (toJson .selector.matchLabels) (toJson $selector)) -}}
{{- end -}}
{{- if ne (toString .podManagementPolicy) (toString $v.podManagementPolicy) -}}
{{- $errors = append $errors (printf "%s.podManagementPolicy=%s but StatefulSet %s has %s" $.component $v.podManagementPolicy $name .podManagementPolicy) -}}
{{- end -}}
{{- $claims := .volumeClaimTemplates | default list -}}
{{- $want := include "citus.node.claimTemplates" $ | fromYamlArray -}}
{{- if ne (len $claims) (len $want) -}}
{{- $errors = append $errors (printf "%s.persistence.enabled=%v / existingClaim=%q would %s the volumeClaimTemplates of StatefulSet %s" $.component $v.persistence.enabled (toString (get $v.persistence "existingClaim")) (ternary "add" "remove" (gt (len $want) (len $claims))) $name) -}}
{{- else if $want -}}
{{- $c := index $claims 0 -}}
{{- $w := index $want 0 -}}
{{- $p := printf "%s.persistence" $.component -}}
{{- $wantSize := include "citus.validate.quantity" $w.spec.resources.requests.storage -}}
{{- $liveSize := include "citus.validate.quantity" $c.spec.resources.requests.storage -}}
{{- if or (not $wantSize) (not $liveSize) (ne (float64 $wantSize) (float64 $liveSize)) -}}
{{- $errors = append $errors (printf "%s.size=%s but StatefulSet %s was created with %s" $p $v.persistence.size $name $c.spec.resources.requests.storage) -}}
{{- end -}}
{{- if ne (toJson $c.spec.accessModes) (toJson $w.spec.accessModes) -}}
{{- $errors = append $errors (printf "%s.accessModes=%s but StatefulSet %s was created with %s" $p (toJson $w.spec.accessModes) $name (toJson $c.spec.accessModes)) -}}
{{- end -}}
{{- $class := dict "live" (ternary (printf "%q" (toString $c.spec.storageClassName)) "none (the cluster's default class)" (hasKey $c.spec "storageClassName")) "want" (ternary (printf "%q" (toString $w.spec.storageClassName)) "none (the cluster's default class)" (hasKey $w.spec "storageClassName")) -}}
{{- if ne $class.live $class.want -}}
{{- $errors = append $errors (printf "%s.storageClass (or global.storageClass) gives storage class %s but StatefulSet %s was created with %s" $p $class.want $name $class.live) -}}
{{- end -}}
{{- range $field := list "labels" "annotations" -}}
{{- $l := get ($c.metadata | default dict) $field | default dict -}}
{{- $n := get $w.metadata $field | default dict -}}
{{- if ne (toJson $l) (toJson $n) -}}
{{- $errors = append $errors (printf "%s.%s would change the claim template's %s of StatefulSet %s from %s to %s" $p $field $field $name (toJson $l) (toJson $n)) -}}
{{- end -}}
{{- end -}}
{{- if ne (toJson ($c.spec.selector | default dict)) (toJson ($w.spec.selector | default dict)) -}}
{{- $errors = append $errors (printf "%s.selector=%s but StatefulSet %s was created with %s" $p (toJson ($w.spec.selector | default dict)) $name (toJson ($c.spec.selector | default dict))) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- toYaml $errors -}}
{{- end -}}

{{/*
Kubernetes refuses to change these StatefulSet fields; an upgrade would fail half-way with a raw API error.
Compared with the live object when the render can read it (helm with cluster access).
*/}}
{{- define "citus.node.immutableCheck" -}}
{{- $ctx := .ctx -}}
{{- $name := include "citus.componentName" . -}}
{{- $live := include "citus.node.live" . | fromYaml -}}
{{- $errors := include "citus.node.immutableErrors" (dict "ctx" $ctx "component" .component "live" $live) | fromYamlArray -}}
{{- $how := printf "StatefulSet fields cannot be changed in place. To migrate: back up (README: backups), keep the old value for this release, or delete the StatefulSet but keep its pods and claims (kubectl delete statefulset %s --cascade=orphan -n %s), then run the upgrade again; the new StatefulSet adopts the pods and claims (for storage size: resize each PVC data-%s-<n> with kubectl edit pvc, where the storage class allows expansion, then orphan-delete the StatefulSet and upgrade)" $name $ctx.Release.Namespace $name -}}
{{- /* A new name (nameOverride/fullnameOverride) makes a new StatefulSet with new, empty claims. */ -}}
{{- range (lookup "apps/v1" "StatefulSet" $ctx.Release.Namespace "").items | default list -}}
{{- $l := .metadata.labels | default dict -}}
{{- if and (eq (toString (index $l "app.kubernetes.io/instance")) $ctx.Release.Name) (eq (toString (index $l "app.kubernetes.io/component")) $.component) (ne .metadata.name $name) -}}
{{- $errors = append $errors (printf "StatefulSet %s of this release would be replaced by %s (nameOverride=%q, fullnameOverride=%q): the new one would start with new, empty volumes; keep the previous names, or move the data by backup and restore (README) into a release with the new names" .metadata.name $name $ctx.Values.nameOverride $ctx.Values.fullnameOverride) -}}
{{- end -}}
{{- end -}}
{{- if $errors -}}
{{- fail (printf "\n\nIMMUTABLE FIELD:\n  - %s\n%s\n" (join "\n  - " $errors) $how) -}}
{{- end -}}
{{- end -}}
