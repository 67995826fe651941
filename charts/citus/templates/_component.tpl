{{/*
Per-component objects that coordinator and workers share in shape.
All take (dict "ctx" $ "component" "coordinator"|"worker").
*/}}

{{/* Governing headless Service: stable pod DNS names, published before readiness so registration can start. */}}
{{- define "citus.node.headlessService" -}}
{{- $v := index .ctx.Values .component -}}
apiVersion: v1
kind: Service
metadata:
  name: {{ include "citus.headlessName" . }}
  namespace: {{ .ctx.Release.Namespace | quote }}
  labels:
    {{- include "citus.indent" (dict "indent" 4 "text" (include "citus.labels" .)) }}
  {{- include "citus.indent" (dict "indent" 2 "text" (include "citus.annotations" (dict "ctx" .ctx))) }}
spec:
  type: ClusterIP
  clusterIP: None
  publishNotReadyAddresses: true
  ports:
    - name: tcp-postgresql
      port: {{ $v.containerPorts.postgresql }}
      targetPort: postgresql
      protocol: TCP
  selector:
    {{- include "citus.indent" (dict "indent" 4 "text" (include "citus.selectorLabels" .)) }}
{{- end -}}

{{- define "citus.node.serviceAccount" -}}
{{- $sa := (index .ctx.Values .component).serviceAccount -}}
{{- if $sa.create -}}
apiVersion: v1
kind: ServiceAccount
metadata:
  name: {{ include "citus.serviceAccountName" . }}
  namespace: {{ .ctx.Release.Namespace | quote }}
  labels:
    {{- include "citus.indent" (dict "indent" 4 "text" (include "citus.labels" .)) }}
  {{- include "citus.indent" (dict "indent" 2 "text" (include "citus.annotations" (dict "ctx" .ctx "extra" $sa.annotations))) }}
automountServiceAccountToken: {{ $sa.automountServiceAccountToken }}
{{- end -}}
{{- end -}}

{{- define "citus.node.pdb" -}}
{{- $pdb := (index .ctx.Values .component).pdb -}}
{{- if $pdb.create -}}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "citus.componentName" . }}
  namespace: {{ .ctx.Release.Namespace | quote }}
  labels:
    {{- include "citus.indent" (dict "indent" 4 "text" (include "citus.labels" .)) }}
  {{- include "citus.indent" (dict "indent" 2 "text" (include "citus.annotations" (dict "ctx" .ctx))) }}
spec:
  {{- if not (kindIs "invalid" $pdb.minAvailable) }}{{ if ne (toString $pdb.minAvailable) "" }}
  minAvailable: {{ $pdb.minAvailable }}
  {{- end }}{{ end }}
  {{- if not (kindIs "invalid" $pdb.maxUnavailable) }}{{ if ne (toString $pdb.maxUnavailable) "" }}
  maxUnavailable: {{ $pdb.maxUnavailable }}
  {{- end }}{{ end }}
  selector:
    matchLabels:
      {{- include "citus.indent" (dict "indent" 6 "text" (include "citus.selectorLabels" .)) }}
{{- end -}}
{{- end -}}

{{- define "citus.node.vpa" -}}
{{- $vpa := (index .ctx.Values .component).vpa -}}
{{- if $vpa.enabled -}}
{{- $policy := dict "containerName" "postgresql" -}}
{{- with $vpa.controlledResources }}{{ $_ := set $policy "controlledResources" . }}{{ end -}}
{{- with $vpa.minAllowed }}{{ $_ := set $policy "minAllowed" . }}{{ end -}}
{{- with $vpa.maxAllowed }}{{ $_ := set $policy "maxAllowed" . }}{{ end -}}
{{- $policy = merge (dict) ($vpa.containerPolicies.main | default (dict)) $policy -}}
apiVersion: autoscaling.k8s.io/v1
kind: VerticalPodAutoscaler
metadata:
  name: {{ include "citus.componentName" . }}
  namespace: {{ .ctx.Release.Namespace | quote }}
  labels:
    {{- include "citus.indent" (dict "indent" 4 "text" (include "citus.labels" .)) }}
  {{- include "citus.indent" (dict "indent" 2 "text" (include "citus.annotations" (dict "ctx" .ctx "extra" $vpa.annotations))) }}
spec:
  targetRef:
    apiVersion: apps/v1
    kind: StatefulSet
    name: {{ include "citus.componentName" . }}
  updatePolicy:
    updateMode: {{ $vpa.updateMode | quote }}
  resourcePolicy:
    containerPolicies:
      - {{- toYaml $policy | nindent 8 }}
{{- end -}}
{{- end -}}

{{/*
NetworkPolicy of a node group. Nodes always accept PostgreSQL from every pod of the release (nodes talk to
each other, the registration, backup and test jobs connect too). The coordinator additionally accepts clients:
everyone when networkPolicy.allowExternal, else pods labelled <fullname>-client=true and the namespaces/pods in
ingressNSMatchLabels/ingressNSPodMatchLabels.
*/}}
{{- define "citus.node.networkPolicy" -}}
{{- $np := .ctx.Values.networkPolicy -}}
{{- $v := index .ctx.Values .component -}}
{{- $port := $v.containerPorts.postgresql -}}
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: {{ include "citus.componentName" . }}
  namespace: {{ .ctx.Release.Namespace | quote }}
  labels:
    {{- include "citus.indent" (dict "indent" 4 "text" (include "citus.labels" .)) }}
  {{- include "citus.indent" (dict "indent" 2 "text" (include "citus.annotations" (dict "ctx" .ctx))) }}
spec:
  podSelector:
    matchLabels:
      {{- include "citus.indent" (dict "indent" 6 "text" (include "citus.selectorLabels" .)) }}
  policyTypes:
    - Ingress
    - Egress
  ingress:
    - ports:
        - port: {{ $port }}
          protocol: TCP
      from:
        - podSelector:
            matchLabels:
              {{- include "citus.indent" (dict "indent" 14 "text" (include "citus.instanceSelectorLabels" .ctx)) }}
    {{- if eq .component "coordinator" }}
    - ports:
        - port: {{ $port }}
          protocol: TCP
      {{- if not $np.allowExternal }}
      from:
        - podSelector:
            matchLabels:
              {{ include "citus.fullname" .ctx }}-client: "true"
        {{- if or $np.ingressNSMatchLabels $np.ingressNSPodMatchLabels }}
        - namespaceSelector:
            {{- with $np.ingressNSMatchLabels }}
            matchLabels:
              {{- toYaml . | nindent 14 }}
            {{- else }}
            {}
            {{- end }}
          {{- with $np.ingressNSPodMatchLabels }}
          podSelector:
            matchLabels:
              {{- toYaml . | nindent 14 }}
          {{- end }}
        {{- end }}
      {{- end }}
    {{- end }}
    {{- if .ctx.Values.metrics.enabled }}
    - ports:
        - port: {{ .ctx.Values.metrics.containerPorts.metrics }}
          protocol: TCP
    {{- end }}
    {{- with $np.extraIngress }}
    {{- include "citus.indent" (dict "indent" 4 "text" (include "citus.tplvalues" (dict "value" . "ctx" $.ctx))) }}
    {{- end }}
  egress:
    {{- if $np.allowExternalEgress }}
    - {}
    {{- else }}
    - ports:
        - port: 53
          protocol: UDP
        - port: 53
          protocol: TCP
    - to:
        - podSelector:
            matchLabels:
              {{- include "citus.indent" (dict "indent" 14 "text" (include "citus.instanceSelectorLabels" .ctx)) }}
    {{- end }}
    {{- with $np.extraEgress }}
    {{- include "citus.indent" (dict "indent" 4 "text" (include "citus.tplvalues" (dict "value" . "ctx" $.ctx))) }}
    {{- end }}
{{- end -}}
