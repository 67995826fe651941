{{/*
Image references. global.imageRegistry replaces each image's registry; a digest replaces the tag.
Call with (dict "image" .Values.x.image "ctx" $).
*/}}
{{- define "citus.image" -}}
{{- $registry := .ctx.Values.global.imageRegistry | default .image.registry -}}
{{- $ref := .image.repository -}}
{{- if $registry -}}{{- $ref = printf "%s/%s" $registry $ref -}}{{- end -}}
{{- if .image.digest -}}
{{- printf "%s@%s" $ref .image.digest -}}
{{- else -}}
{{- printf "%s:%s" $ref (toString .image.tag) -}}
{{- end -}}
{{- end -}}

{{/* imagePullSecrets: union of global.imagePullSecrets and image.pullSecrets, de-duplicated. */}}
{{- define "citus.imagePullSecrets" -}}
{{- $names := list -}}
{{- range (concat (.ctx.Values.global.imagePullSecrets | default list) (.image.pullSecrets | default list)) -}}
{{- $name := . -}}
{{- if kindIs "map" . -}}{{- $name = .name -}}{{- end -}}
{{- $names = append $names (tpl (toString $name) $.ctx) -}}
{{- end -}}
{{- with ($names | uniq) }}
imagePullSecrets:
{{- range . }}
  - name: {{ . }}
{{- end }}
{{- end }}
{{- end -}}
