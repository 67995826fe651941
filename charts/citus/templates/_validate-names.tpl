{{/*
Strings that become Kubernetes names, DNS names, label keys and values, Secret keys, or PostgreSQL roles,
databases and passwords. Each check returns a YAML list of messages; citus.validateValues collects them.
*/}}

{{/* Kubernetes object name (RFC 1123 subdomain): (dict "path" "a.b" "value" "..."). */}}
{{- define "citus.validate.subdomain" -}}
{{- $v := toString .value -}}
{{- if or (gt (len $v) 253) (not (regexMatch `^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$` $v)) -}}
{{ .path }}={{ $v | quote }} is not a valid Kubernetes object name: use at most 253 lowercase letters, digits, '-' and '.', starting and ending with a letter or digit
{{- end -}}
{{- end -}}

{{/* "bad" unless the key is a Kubernetes qualified name ([prefix/]name), as label and annotation keys must be. */}}
{{- define "citus.validate.badQualifiedName" -}}
{{- $name := regexReplaceAll `^.*/` . "" -}}
{{- $prefixOk := true -}}
{{- if contains "/" . -}}
{{- $prefixOk = and (not (regexMatch `/.*/` .)) (empty (include "citus.validate.subdomain" (dict "path" "" "value" (regexReplaceAll `/[^/]*$` . "")))) -}}
{{- end -}}
{{- if or (gt (len $name) 63) (not (regexMatch `^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$` $name)) (not $prefixOk) -}}bad{{- end -}}
{{- end -}}

{{- define "citus.validate.names" -}}
{{- $errors := list -}}
{{- $v := .Values -}}

{{- /* Every Service is "<fullname>-<component>[-headless]": a DNS-1035 label, so the prefix must start with a letter. */ -}}
{{- $fullname := include "citus.fullname" . -}}
{{- if $v.fullnameOverride -}}
{{- if gt (len $v.fullnameOverride) 42 -}}
{{- $errors = append $errors (printf "fullnameOverride=%q is %d characters long: it is cut to 42 so that \"<fullname>-coordinator-headless\" fits a 63-character DNS label; use at most 42 characters" $v.fullnameOverride (len $v.fullnameOverride)) -}}
{{- end -}}
{{- if not (regexMatch `^[a-z][-a-z0-9]*$` $v.fullnameOverride) -}}
{{- $errors = append $errors (printf "fullnameOverride=%q: it prefixes every Service name, which must be a DNS label; use lowercase letters, digits and '-', starting with a letter (e.g. \"citus-prod\")" $v.fullnameOverride) -}}
{{- end -}}
{{- else if $v.nameOverride -}}
{{- if not (regexMatch `^[a-z0-9]([-a-z0-9]*[a-z0-9])?$` $v.nameOverride) -}}
{{- $errors = append $errors (printf "nameOverride=%q: it becomes part of every resource name and the app.kubernetes.io/name label; use at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit" $v.nameOverride) -}}
{{- else if not (regexMatch `^[a-z][-a-z0-9]*$` $fullname) -}}
{{- $errors = append $errors (printf "release name %q with nameOverride=%q gives the resource name prefix %q, which does not start with a letter as Service names must: set fullnameOverride (e.g. \"citus-%s\")" .Release.Name $v.nameOverride $fullname $v.nameOverride) -}}
{{- end -}}
{{- else if not (regexMatch `^[a-z][-a-z0-9]*$` $fullname) -}}
{{- $errors = append $errors (printf "release name %q gives the resource name prefix %q, which is not a valid start of a Service name (lowercase letters, digits and '-', starting with a letter): set fullnameOverride (e.g. \"citus\")" .Release.Name $fullname) -}}
{{- end -}}
{{- if and $v.fullnameOverride $v.nameOverride (not (regexMatch `^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$` $v.nameOverride)) -}}
{{- $errors = append $errors (printf "nameOverride=%q is not a valid label value (app.kubernetes.io/name): use at most 63 letters, digits, '-', '_' and '.', starting and ending with a letter or digit" $v.nameOverride) -}}
{{- else if gt (len $v.nameOverride) 63 -}}
{{- $errors = append $errors (printf "nameOverride is %d characters long: the app.kubernetes.io/name label takes at most 63" (len $v.nameOverride)) -}}
{{- end -}}

{{- /* clusterDomain ends every node's DNS name, which Citus stores in pg_dist_node. */ -}}
{{- $domain := toString $v.clusterDomain -}}
{{- $labelsOk := true -}}
{{- range (splitList "." (trimSuffix "." $domain)) -}}
{{- if not (regexMatch `^[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?$` .) -}}{{- $labelsOk = false -}}{{- end -}}
{{- end -}}
{{- if not $labelsOk -}}
{{- $errors = append $errors (printf "clusterDomain=%q is not a DNS name: use dot-separated labels of letters, digits and '-' (at most 63 each, no leading or trailing '-'), e.g. \"cluster.local\"" $domain) -}}
{{- else -}}
{{- $last := sub (max 1 (int (include "citus.worker.registeredReplicas" .))) 1 -}}
{{- $fqdn := include "citus.podFQDN" (dict "ctx" $ "component" "worker" "ordinal" $last) -}}
{{- if gt (len $fqdn) 253 -}}
{{- $errors = append $errors (printf "clusterDomain=%q makes the workers' DNS names %d characters long (e.g. %s); DNS allows 253: use a shorter clusterDomain, namespace or fullnameOverride" $domain (len $fqdn) $fqdn) -}}
{{- end -}}
{{- end -}}

{{- /* Names of other objects the pods refer to. */ -}}
{{- $refs := list -}}
{{- with $v.auth.existingSecret }}{{ $refs = append $refs (dict "path" "auth.existingSecret" "value" (tpl . $)) }}{{ end -}}
{{- with $v.coordinator.persistence.existingClaim }}{{ $refs = append $refs (dict "path" "coordinator.persistence.existingClaim" "value" (tpl . $)) }}{{ end -}}
{{- with $v.backup.persistence.existingClaim }}{{ $refs = append $refs (dict "path" "backup.persistence.existingClaim" "value" .) }}{{ end -}}
{{- with $v.ingress.ingressClassName }}{{ $refs = append $refs (dict "path" "ingress.ingressClassName" "value" .) }}{{ end -}}
{{- range $component := list "coordinator" "worker" -}}
{{- $c := index $v $component -}}
{{- range $key := list "priorityClassName" "schedulerName" "extraEnvVarsCM" "extraEnvVarsSecret" -}}
{{- with index $c $key }}{{ $refs = append $refs (dict "path" (printf "%s.%s" $component $key) "value" (tpl (toString .) $)) }}{{ end -}}
{{- end -}}
{{- with $c.serviceAccount.name }}{{ $refs = append $refs (dict "path" (printf "%s.serviceAccount.name" $component) "value" .) }}{{ end -}}
{{- with $c.persistence.storageClass }}{{ if ne . "-" }}{{ $refs = append $refs (dict "path" (printf "%s.persistence.storageClass" $component) "value" .) }}{{ end }}{{ end -}}
{{- end -}}
{{- with $v.backup.persistence.storageClass }}{{ if ne . "-" }}{{ $refs = append $refs (dict "path" "backup.persistence.storageClass" "value" .) }}{{ end }}{{ end -}}
{{- with $v.global.storageClass }}{{ if ne . "-" }}{{ $refs = append $refs (dict "path" "global.storageClass" "value" .) }}{{ end }}{{ end -}}
{{- range $refs -}}
{{- with include "citus.validate.subdomain" . }}{{ $errors = append $errors . }}{{ end -}}
{{- end -}}
{{- with $v.metrics.serviceMonitor.namespace -}}
{{- if or (gt (len .) 63) (not (regexMatch `^[a-z0-9]([-a-z0-9]*[a-z0-9])?$` .)) -}}
{{- $errors = append $errors (printf "metrics.serviceMonitor.namespace=%q is not a namespace name: use at most 63 lowercase letters, digits and '-'" .) -}}
{{- end -}}
{{- end -}}
{{- if $v.ingress.enabled -}}
{{- $hosts := list (dict "path" "ingress.hostname" "value" $v.ingress.hostname) -}}
{{- range $i, $h := $v.ingress.extraHosts }}{{ $hosts = append $hosts (dict "path" (printf "ingress.extraHosts[%d].name" $i) "value" $h.name) }}{{ end -}}
{{- range $hosts -}}
{{- if and .value (or (gt (len .value) 253) (not (regexMatch `^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$` .value)) (regexMatch `^[0-9]+(\.[0-9]+){3}$` .value)) -}}
{{- $errors = append $errors (printf "%s=%q is not a host name an Ingress accepts: use a lowercase DNS name such as \"citus.example.com\" (optionally starting with \"*.\"), not an IP address" .path .value) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- /* Labels: commonLabels on everything, podLabels on the pods. */ -}}
{{- $labelSets := list (dict "path" "commonLabels" "value" (include "citus.tplvalues" (dict "value" ($v.commonLabels | default (dict)) "ctx" $) | fromYaml)) -}}
{{- range $component := list "coordinator" "worker" -}}
{{- $labelSets = append $labelSets (dict "path" (printf "%s.podLabels" $component) "value" ((index $v $component).podLabels | default (dict))) -}}
{{- $labelSets = append $labelSets (dict "path" (printf "%s.persistence.labels" $component) "value" ((index $v $component).persistence.labels | default (dict))) -}}
{{- end -}}
{{- if $v.metrics.serviceMonitor.enabled }}{{ $labelSets = append $labelSets (dict "path" "metrics.serviceMonitor.labels" "value" ($v.metrics.serviceMonitor.labels | default (dict))) }}{{ end -}}
{{- if $v.metrics.prometheusRule.enabled }}{{ $labelSets = append $labelSets (dict "path" "metrics.prometheusRule.labels" "value" ($v.metrics.prometheusRule.labels | default (dict))) }}{{ end -}}
{{- range $set := $labelSets -}}
{{- range $key, $value := $set.value -}}
{{- if include "citus.validate.badQualifiedName" $key -}}
{{- $errors = append $errors (printf "%s: label key %q is not valid: use [prefix/]name, name at most 63 letters, digits, '-', '_' and '.', prefix a DNS subdomain" $set.path $key) -}}
{{- end -}}
{{- if not (kindIs "string" $value) -}}
{{- $errors = append $errors (printf "%s.%s=%v is not a string: label values are strings, quote it (\"%v\")" $set.path $key $value $value) -}}
{{- else if or (gt (len $value) 63) (not (regexMatch `^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$` $value)) -}}
{{- $errors = append $errors (printf "%s.%s=%q is not a valid label value: use at most 63 letters, digits, '-', '_' and '.', starting and ending with a letter or digit" $set.path $key $value) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- /* Annotations: string values under qualified-name keys. */ -}}
{{- $annotationSets := list (dict "path" "commonAnnotations" "value" $v.commonAnnotations) (dict "path" "workerRegistration.podAnnotations" "value" $v.workerRegistration.podAnnotations) -}}
{{- if $v.ingress.enabled }}{{ $annotationSets = append $annotationSets (dict "path" "ingress.annotations" "value" $v.ingress.annotations) }}{{ end -}}
{{- range $component := list "coordinator" "worker" -}}
{{- $c := index $v $component -}}
{{- $annotationSets = append $annotationSets (dict "path" (printf "%s.podAnnotations" $component) "value" $c.podAnnotations) -}}
{{- $annotationSets = append $annotationSets (dict "path" (printf "%s.persistence.annotations" $component) "value" $c.persistence.annotations) -}}
{{- $annotationSets = append $annotationSets (dict "path" (printf "%s.service.annotations" $component) "value" $c.service.annotations) -}}
{{- $annotationSets = append $annotationSets (dict "path" (printf "%s.serviceAccount.annotations" $component) "value" $c.serviceAccount.annotations) -}}
{{- $annotationSets = append $annotationSets (dict "path" (printf "%s.vpa.annotations" $component) "value" $c.vpa.annotations) -}}
{{- end -}}
{{- range $set := $annotationSets -}}
{{- range $key, $value := ($set.value | default (dict)) -}}
{{- if include "citus.validate.badQualifiedName" $key -}}
{{- $errors = append $errors (printf "%s: annotation key %q is not valid: use [prefix/]name, name at most 63 letters, digits, '-', '_' and '.', prefix a DNS subdomain" $set.path $key) -}}
{{- end -}}
{{- if not (kindIs "string" $value) -}}
{{- $errors = append $errors (printf "%s.%s=%v is not a string: annotation values are strings, quote it (\"%v\")" $set.path $key $value $value) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- /* Secret keys are also the file names under /opt/citus/secrets (auth.usePasswordFiles). */ -}}
{{- $keys := $v.auth.secretKeys -}}
{{- range $name := list "adminPasswordKey" "userPasswordKey" -}}
{{- $key := toString (index $keys $name) -}}
{{- if or (gt (len $key) 253) (not (regexMatch `^[-._a-zA-Z0-9]+$` $key)) (eq $key ".") (hasPrefix ".." $key) -}}
{{- $errors = append $errors (printf "auth.secretKeys.%s=%q is not a valid Secret key: use letters, digits, '-', '_' and '.' (not \".\" and not starting with \"..\"), e.g. \"postgres-password\"" $name $key) -}}
{{- end -}}
{{- end -}}
{{- if and $v.auth.enablePostgresUser $v.auth.username (eq (toString $keys.adminPasswordKey) (toString $keys.userPasswordKey)) -}}
{{- $errors = append $errors (printf "auth.secretKeys.adminPasswordKey and auth.secretKeys.userPasswordKey are both %q: the postgres and the application user's passwords need different keys" (toString $keys.adminPasswordKey)) -}}
{{- end -}}

{{- /* Roles and the database: PostgreSQL cuts names to 63 bytes; initdb and CREATE ROLE refuse reserved names. */ -}}
{{- with $v.auth.username -}}
{{- if gt (len .) 63 -}}
{{- $errors = append $errors (printf "auth.username is %d bytes long: PostgreSQL cuts role names to 63 bytes, so the role created would not be the one the pods log in as; use at most 63" (len .)) -}}
{{- end -}}
{{- if or (hasPrefix "pg_" .) (has . (list "public" "none")) -}}
{{- $errors = append $errors (printf "auth.username=%q is a name PostgreSQL reserves (\"public\", \"none\" and names starting with \"pg_\"): choose another name" .) -}}
{{- end -}}
{{- if regexMatch "[\r\n]" . -}}
{{- $errors = append $errors "auth.username contains a line break: the pods' password file (pgpass) is line-based; use a single line" -}}
{{- end -}}
{{- end -}}
{{- $db := toString $v.auth.database -}}
{{- if gt (len $db) 63 -}}
{{- $errors = append $errors (printf "auth.database is %d bytes long: PostgreSQL cuts database names to 63 bytes, so the database created would not be the one the pods connect to; use at most 63" (len $db)) -}}
{{- end -}}
{{- if regexMatch `[[:space:]'\\=/]` $db -}}
{{- $errors = append $errors (printf "auth.database=%q contains whitespace or one of ' \\ = /: the probes pass it in a connection string (dbname=...), psql \\connect reads '=' as a connection string and the backup names its file after it; use letters, digits, '_' and '-'" $db) -}}
{{- else if has $db (list "postgres" "template0" "template1") -}}
{{- $errors = append $errors (printf "auth.database=%q is a database initdb creates: the chart would not create it, so %s would not own it and could not create tables (PostgreSQL 15 takes CREATE on schema public from everyone else); use a database of its own, e.g. auth.database=citus" $db (ternary (printf "the application user %q" (toString $v.auth.username)) "the application user" (ne (toString $v.auth.username) ""))) -}}
{{- else if and $v.metrics.enabled (regexMatch `[?#%]` $db) -}}
{{- $errors = append $errors (printf "auth.database=%q contains one of ? # %%: the metrics exporter receives it inside a URL (DATA_SOURCE_URI); use letters, digits, '_' and '-'" $db) -}}
{{- end -}}

{{- /*
Passwords: initdb --pwfile reads one line and the pgpass file is line-based, both dropping trailing carriage
returns; $(cat file) drops trailing newlines. A carriage return inside the password survives all of them.
*/ -}}
{{- range $path := list "postgresPassword" "password" -}}
{{- $p := toString (index $v.auth $path) -}}
{{- if regexMatch "\n|\r$" $p -}}
{{- $errors = append $errors (printf "auth.%s contains a line break: initdb keeps only the first line and the pods' password file (pgpass) is line-based, so the database and the Secret would disagree; use a single-line password" $path) -}}
{{- end -}}
{{- end -}}

{{- toYaml $errors -}}
{{- end -}}
