{{/*
Image references, checked as the container runtime parses them (registry[:port]/path[:tag][@digest]), for the
images that are rendered. An empty or malformed reference only fails on the node, with InvalidImageName.
*/}}
{{- define "citus.validate.images" -}}
{{- $errors := list -}}
{{- $v := .Values -}}
{{- $images := list (dict "path" "image" "image" $v.image) -}}
{{- if $v.metrics.enabled }}{{ $images = append $images (dict "path" "metrics.image" "image" $v.metrics.image) }}{{ end -}}
{{- if $v.backup.enabled }}{{ $images = append $images (dict "path" "backup.image" "image" $v.backup.image) }}{{ end -}}
{{- if $v.volumePermissions.enabled }}{{ $images = append $images (dict "path" "volumePermissions.image" "image" $v.volumePermissions.image) }}{{ end -}}
{{- $domain := `(([A-Za-z0-9]|[A-Za-z0-9][-A-Za-z0-9]*[A-Za-z0-9])(\.([A-Za-z0-9]|[A-Za-z0-9][-A-Za-z0-9]*[A-Za-z0-9]))*|\[[0-9A-Fa-f:]+\])(:[0-9]+)?` -}}
{{- $path := `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*` -}}
{{- range $images -}}
{{- $image := .image -}}
{{- $registryPath := ternary "global.imageRegistry" (printf "%s.registry" .path) (not (empty $v.global.imageRegistry)) -}}
{{- $registry := toString ($v.global.imageRegistry | default $image.registry) -}}
{{- $repository := toString $image.repository -}}
{{- if and $registry (not (regexMatch (printf "^%s$" $domain) $registry)) -}}
{{- $errors = append $errors (printf "%s=%q is not a registry host: use a host name or IP with an optional port, without a scheme or path (e.g. \"docker.io\", \"registry.example.com:5000\")" $registryPath $registry) -}}
{{- end -}}
{{- if not $repository -}}
{{- $errors = append $errors (printf "%s.repository is empty: set the image repository (see the chart's values.yaml for the default)" .path) -}}
{{- else if and $registry (not (regexMatch (printf "^%s$" $path) $repository)) -}}
{{- $errors = append $errors (printf "%s.repository=%q is not an image repository: use lowercase path components of letters and digits separated by '/', '.', '_' or '-' (the registry goes into %s)" .path $repository $registryPath) -}}
{{- else if and (not $registry) (not (regexMatch (printf "^(%s/)?%s$" $domain $path) $repository)) -}}
{{- $errors = append $errors (printf "%s.repository=%q is not an image repository: use [registry/]path with lowercase path components of letters and digits separated by '/', '.', '_' or '-'" .path $repository) -}}
{{- else if gt (len (printf "%s/%s" $registry $repository)) 255 -}}
{{- $errors = append $errors (printf "%s: the image name %s/%s is longer than the 255 characters an image reference allows" .path $registry $repository) -}}
{{- end -}}
{{- if not $image.digest -}}
{{- $tag := toString $image.tag -}}
{{- if not $tag -}}
{{- $errors = append $errors (printf "%s.tag is empty (and %s.digest too): the pods would fail with InvalidImageName; set %s.tag (see the chart's values.yaml for the default) or %s.digest" .path .path .path .path) -}}
{{- else if not (regexMatch `^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$` $tag) -}}
{{- $errors = append $errors (printf "%s.tag=%q is not an image tag: use at most 128 letters, digits, '_', '.' and '-', not starting with '.' or '-' (a digest goes into %s.digest)" .path $tag .path) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- toYaml $errors -}}
{{- end -}}

