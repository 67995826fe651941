{{/*
Affinity presets with the bitnami/common meanings: soft = preferred (weight 1), hard = required,
"" = none; an explicit <component>.affinity replaces all presets.
Call with (dict "ctx" $ "component" "coordinator"|"worker").
*/}}
{{- define "citus.affinity" -}}
{{- $v := index .ctx.Values .component -}}
{{- if $v.affinity -}}
{{- include "citus.tplvalues" (dict "value" $v.affinity "ctx" .ctx) -}}
{{- else -}}
{{- $pod := include "citus.podAffinityTerm" (dict "ctx" .ctx "component" .component "preset" $v.podAffinityPreset) -}}
{{- $anti := include "citus.podAffinityTerm" (dict "ctx" .ctx "component" .component "preset" $v.podAntiAffinityPreset) -}}
{{- $node := include "citus.nodeAffinity" $v.nodeAffinityPreset -}}
{{- if $pod }}
podAffinity:
  {{- $pod | nindent 2 }}
{{- end }}
{{- if $anti }}
podAntiAffinity:
  {{- $anti | nindent 2 }}
{{- end }}
{{- if $node }}
nodeAffinity:
  {{- $node | nindent 2 }}
{{- end }}
{{- end -}}
{{- end -}}

{{- define "citus.podAffinityTerm" -}}
{{- if eq .preset "soft" -}}
preferredDuringSchedulingIgnoredDuringExecution:
  - weight: 1
    podAffinityTerm:
      labelSelector:
        matchLabels:
          {{- include "citus.indent" (dict "indent" 10 "text" (include "citus.selectorLabels" .)) }}
      topologyKey: kubernetes.io/hostname
{{- else if eq .preset "hard" -}}
requiredDuringSchedulingIgnoredDuringExecution:
  - labelSelector:
      matchLabels:
        {{- include "citus.indent" (dict "indent" 8 "text" (include "citus.selectorLabels" .)) }}
    topologyKey: kubernetes.io/hostname
{{- end -}}
{{- end -}}

{{- define "citus.nodeAffinity" -}}
{{- $expr := dict "key" .key "operator" "In" "values" .values -}}
{{- if eq .type "soft" -}}
preferredDuringSchedulingIgnoredDuringExecution:
  - weight: 1
    preference:
      matchExpressions:
        - {{- toYaml $expr | nindent 10 }}
{{- else if eq .type "hard" -}}
requiredDuringSchedulingIgnoredDuringExecution:
  nodeSelectorTerms:
    - matchExpressions:
        - {{- toYaml $expr | nindent 10 }}
{{- end -}}
{{- end -}}

{{/*
nodeSelector of a pod: the given one, plus kubernetes.io/arch for images built for one architecture only.
citusdata/citus images are published for amd64 only, so pods of that repository default to amd64 nodes
instead of failing to pull on arm64 ones; image.nodeArchitecture names another architecture, or "any" for
none (multi-arch images of your own). A kubernetes.io/arch key in the given nodeSelector always wins.
Call with (dict "ctx" $ "image" <image values> "nodeSelector" <map>).
*/}}
{{- define "citus.nodeSelector" -}}
{{- $selector := dict -}}
{{- $arch := .image.nodeArchitecture | default "" -}}
{{- if and (not $arch) (eq .image.repository "citusdata/citus") -}}{{- $arch = "amd64" -}}{{- end -}}
{{- if and $arch (ne $arch "any") -}}{{- $_ := set $selector "kubernetes.io/arch" $arch -}}{{- end -}}
{{- with .nodeSelector -}}
{{- $selector = merge (include "citus.tplvalues" (dict "value" . "ctx" $.ctx) | fromYaml) $selector -}}
{{- end -}}
{{- with $selector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end -}}
{{- end -}}
