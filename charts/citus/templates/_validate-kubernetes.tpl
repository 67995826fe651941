{{/*
Values the API server (or a controller) would refuse although they pass the schema: quantities, resource
limits below requests, cron schedules, PDB percentages, durations and ports.
*/}}

{{/*
A Kubernetes quantity ("500m", "1.5Gi", "1e3", 2) as a float in base units, or "" when it is not one.
Only comparisons need the number; float64 is precise enough for them.
*/}}
{{- define "citus.validate.quantity" -}}
{{- $q := toString . -}}
{{- if regexMatch `^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([KMGTPE]i|[numkMGTPE]|[eE][+-]?[0-9]+)?$` $q -}}
{{- $number := regexFind `^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)` $q -}}
{{- $suffix := trimPrefix $number $q -}}
{{- $factors := dict "" 1.0 "n" 1e-9 "u" 1e-6 "m" 1e-3 "k" 1e3 "M" 1e6 "G" 1e9 "T" 1e12 "P" 1e15 "E" 1e18
  "Ki" 1024.0 "Mi" 1048576.0 "Gi" 1073741824.0 "Ti" 1099511627776.0 "Pi" 1125899906842624.0 "Ei" 1152921504606846976.0 -}}
{{- $value := float64 (trimPrefix "+" $number) -}}
{{- if hasKey $factors $suffix -}}
{{- $value = mulf $value (get $factors $suffix) -}}
{{- else -}}
{{- $exp := int (trimPrefix "+" (substr 1 -1 $suffix)) -}}
{{- range until (min 400 (ternary $exp (mul $exp -1) (gt $exp 0)) | int) -}}
{{- $value = ternary (mulf $value 10.0) (divf $value 10.0) (gt $exp 0) -}}
{{- end -}}
{{- end -}}
{{- printf "%g" $value -}}
{{- end -}}
{{- end -}}

{{/*
Checks one resources block: (dict "path" "worker.resources" "resources" {...}). Every amount must be a
quantity, not negative; a limit must not be below its request; hugepages and extended resources (name with a
domain other than kubernetes.io) need a limit equal to the request.
*/}}
{{- define "citus.validate.resources" -}}
{{- $errors := list -}}
{{- $path := .path -}}
{{- $res := .resources | default (dict) -}}
{{- range $key := keys $res | sortAlpha -}}
{{- if not (has $key (list "limits" "requests" "claims")) -}}
{{- $errors = append $errors (printf "%s.%s: a container's resources have only limits, requests and claims" $path $key) -}}
{{- end -}}
{{- end -}}
{{- $amounts := dict "limits" (dict) "requests" (dict) -}}
{{- range $kind := list "limits" "requests" -}}
{{- range $name, $q := (get $res $kind | default (dict)) -}}
{{- $n := include "citus.validate.quantity" $q -}}
{{- if not $n -}}
{{- $errors = append $errors (printf "%s.%s.%s=%v is not a Kubernetes quantity: write e.g. 500m or 1.5 for CPU, 512Mi or 2Gi for memory" $path $kind $name $q) -}}
{{- else if lt (float64 $n) 0.0 -}}
{{- $errors = append $errors (printf "%s.%s.%s=%v is negative" $path $kind $name $q) -}}
{{- else -}}
{{- $_ := set (get $amounts $kind) $name (float64 $n) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- $limits := get $amounts "limits" -}}
{{- range $name, $request := get $amounts "requests" -}}
{{- $exact := or (hasPrefix "hugepages-" $name) (and (contains "/" $name) (not (regexMatch `^([^/]*\.)?kubernetes\.io/` $name))) -}}
{{- if hasKey $limits $name -}}
{{- $limit := get $limits $name -}}
{{- if and $exact (ne $limit $request) -}}
{{- $errors = append $errors (printf "%s: %s cannot be overcommitted, so its request (%v) must equal its limit (%v)" $path $name (index $.resources.requests $name) (index $.resources.limits $name)) -}}
{{- else if lt (mulf $limit 1.000000001) $request -}}
{{- $errors = append $errors (printf "%s.limits.%s=%v is below %s.requests.%s=%v: Kubernetes refuses the pod; raise the limit or lower the request" $path $name (index $.resources.limits $name) $path $name (index $.resources.requests $name)) -}}
{{- end -}}
{{- else if $exact -}}
{{- $errors = append $errors (printf "%s.requests.%s needs %s.limits.%s with the same amount: %s cannot be overcommitted" $path $name $path $name $name) -}}
{{- end -}}
{{- end -}}
{{- toYaml $errors -}}
{{- end -}}

{{/* One cron field, (dict "field" "0-59" "min" 0 "max" 59 "names" (list ...)): "" when robfig/cron (the CronJob controller's parser) accepts it. */}}
{{- define "citus.validate.cronField" -}}
{{- $f := . -}}
{{- $bad := false -}}
{{- /* Empty list items are skipped, and numbers may carry a '+', as robfig/cron's strconv.Atoi allows; a field
with no item at all would never match. */ -}}
{{- $parts := without (splitList "," $f.field) "" -}}
{{- if not $parts }}{{ $bad = true }}{{ end -}}
{{- range $part := $parts -}}
{{- $step := splitList "/" $part -}}
{{- $range := splitList "-" (first $step) -}}
{{- $numbers := list -}}
{{- if or (gt (len $step) 2) (and (eq (len $step) 2) (not (regexMatch `^\+?[0-9]+$` (last $step)))) -}}
{{- $bad = true -}}
{{- else if and (eq (len $step) 2) (eq (int (trimPrefix "+" (last $step))) 0) -}}
{{- $bad = true -}}
{{- else if has (first $range) (list "*" "?") -}}
{{- /* "*" and "?" take the whole range; robfig ignores anything after a hyphen there. */ -}}
{{- else if gt (len $range) 2 -}}
{{- $bad = true -}}
{{- else -}}
{{- range $range -}}
{{- $i := -1 -}}
{{- if regexMatch `^\+?[0-9]+$` . -}}{{- $i = int (trimPrefix "+" .) -}}
{{- else if has (lower .) $f.names -}}{{- $i = add (include "citus.validate.indexOf" (dict "list" $f.names "item" (lower .))) $f.min -}}
{{- end -}}
{{- $numbers = append $numbers $i -}}
{{- end -}}
{{- $start := int (first $numbers) -}}
{{- $end := int (last $numbers) -}}
{{- if or (lt $start (int $f.min)) (gt $end (int $f.max)) (gt $start $end) -}}{{- $bad = true -}}{{- end -}}
{{- end -}}
{{- end -}}
{{- if $bad }}bad{{ end -}}
{{- end -}}

{{- define "citus.validate.indexOf" -}}
{{- $found := -1 -}}
{{- range $i, $x := .list }}{{ if and (eq $found -1) (eq $x $.item) }}{{ $found = $i }}{{ end }}{{ end -}}
{{- $found -}}
{{- end -}}

{{/* Error message for a CronJob schedule, or "": (dict "path" "backup.schedule" "schedule" "..." "ctx" $). */}}
{{- define "citus.validate.schedule" -}}
{{- $s := trim (toString .schedule) -}}
{{- $fields := regexSplit `\s+` $s -1 -}}
{{- if regexMatch `^(CRON_)?TZ=` $s -}}
{{- if semverCompare ">=1.27.0-0" (include "citus.kubeVersion" .ctx) -}}
{{- printf "%s=%q: Kubernetes 1.27 and newer refuse TZ= or CRON_TZ= in a CronJob schedule; remove it (the schedule then runs in the kube-controller-manager's time zone)" .path $s -}}
{{- end -}}
{{- $fields = rest $fields -}}
{{- $s = join " " $fields -}}
{{- end -}}
{{- $ok := false -}}
{{- if hasPrefix "@every " $s -}}
{{- $ok = regexMatch `^@every\s+([-+]?(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h))+|0)$` $s -}}
{{- else if hasPrefix "@" $s -}}
{{- $ok = has $s (list "@yearly" "@annually" "@monthly" "@weekly" "@daily" "@midnight" "@hourly") -}}
{{- else if eq (len $fields) 5 -}}
{{- $ok = true -}}
{{- $specs := list
  (dict "min" 0 "max" 59 "names" (list))
  (dict "min" 0 "max" 23 "names" (list))
  (dict "min" 1 "max" 31 "names" (list))
  (dict "min" 1 "max" 12 "names" (list "jan" "feb" "mar" "apr" "may" "jun" "jul" "aug" "sep" "oct" "nov" "dec"))
  (dict "min" 0 "max" 6 "names" (list "sun" "mon" "tue" "wed" "thu" "fri" "sat")) -}}
{{- range $i, $spec := $specs -}}
{{- if include "citus.validate.cronField" (merge (dict "field" (index $fields $i)) $spec) -}}{{- $ok = false -}}{{- end -}}
{{- end -}}
{{- end -}}
{{- if not $ok -}}
{{- printf "%s=%q is not a schedule Kubernetes accepts and runs: use 5 fields (minute 0-59, hour 0-23, day of month 1-31, month 1-12 or jan-dec, day of week 0-6 or sun-sat; with *, ranges a-b, lists a,b and steps /n), e.g. \"0 2 * * *\", or @hourly, @daily, @weekly, @monthly, @yearly" .path $s -}}
{{- end -}}
{{- end -}}

{{- define "citus.validate.kubernetes" -}}
{{- $errors := list -}}
{{- $v := .Values -}}

{{- /* Resources as rendered: presets replace a component's resources; the jobs' helper adds default limits. */ -}}
{{- $blocks := list -}}
{{- range $component := list "coordinator" "worker" -}}
{{- $c := index $v $component -}}
{{- if eq $c.resourcesPreset "none" -}}
{{- $blocks = append $blocks (dict "path" (printf "%s.resources" $component) "resources" $c.resources) -}}
{{- end -}}
{{- end -}}
{{- range $path := list "workerRegistration" "metrics" -}}
{{- $r := (index $v $path).resources | default (dict) -}}
{{- $blocks = append $blocks (dict "path" (printf "%s.resources" $path) "resources" $r) -}}
{{- /* Without limits the chart sets cpu 500m and memory 256Mi (citus.job.resources). */ -}}
{{- if not $r.limits -}}
{{- range $name, $default := dict "cpu" "500m" "memory" "256Mi" -}}
{{- $q := get ($r.requests | default (dict)) $name -}}
{{- $n := include "citus.validate.quantity" $q -}}
{{- if and $q $n (gt (float64 $n) (float64 (include "citus.validate.quantity" $default))) -}}
{{- $errors = append $errors (printf "%s.resources.requests.%s=%v is above the limit %s the chart sets when %s.resources.limits is empty: Kubernetes refuses the pod; set %s.resources.limits.%s (at least %v)" $path $name $q $default $path $path $name $q) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- range $blocks -}}
{{- $errors = concat $errors (include "citus.validate.resources" . | fromYamlArray) -}}
{{- end -}}

{{- /* A node's volume holds its data directory, which PostgreSQL writes. */ -}}
{{- range $component := list "coordinator" "worker" -}}
{{- $p := (index $v $component).persistence -}}
{{- if and $p.enabled (not $p.existingClaim) (not (has "ReadWriteOnce" $p.accessModes)) (not (has "ReadWriteOncePod" $p.accessModes)) (not (has "ReadWriteMany" $p.accessModes)) -}}
{{- $errors = append $errors (printf "%s.persistence.accessModes=%s has no writable mode: PostgreSQL writes its data directory there; use [\"ReadWriteOnce\"] or [\"ReadWriteOncePod\"]" $component (toJson $p.accessModes)) -}}
{{- end -}}
{{- end -}}

{{- /* VPA bounds and volume sizes. */ -}}
{{- range $component := list "coordinator" "worker" -}}
{{- $vpa := (index $v $component).vpa -}}
{{- if $vpa.enabled -}}
{{- range $bound := list "minAllowed" "maxAllowed" -}}
{{- range $name, $q := (index $vpa $bound | default (dict)) -}}
{{- if not (include "citus.validate.quantity" $q) -}}
{{- $errors = append $errors (printf "%s.vpa.%s.%s=%v is not a Kubernetes quantity: write e.g. 500m or 2Gi" $component $bound $name $q) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- range $name, $max := ($vpa.maxAllowed | default (dict)) -}}
{{- $min := get ($vpa.minAllowed | default (dict)) $name -}}
{{- $a := include "citus.validate.quantity" $min -}}
{{- $b := include "citus.validate.quantity" $max -}}
{{- if and $min $a $b (lt (mulf (float64 $b) 1.000000001) (float64 $a)) -}}
{{- $errors = append $errors (printf "%s.vpa.maxAllowed.%s=%v is below %s.vpa.minAllowed.%s=%v: the VerticalPodAutoscaler refuses it" $component $name $max $component $name $min) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- $sizes := list -}}
{{- range $component := list "coordinator" "worker" -}}
{{- $p := (index $v $component).persistence -}}
{{- if and $p.enabled (not $p.existingClaim) }}{{ $sizes = append $sizes (dict "path" (printf "%s.persistence.size" $component) "value" $p.size) }}{{ end -}}
{{- end -}}
{{- if and $v.backup.enabled $v.backup.persistence.enabled (not $v.backup.persistence.existingClaim) -}}
{{- $sizes = append $sizes (dict "path" "backup.persistence.size" "value" $v.backup.persistence.size) -}}
{{- end -}}
{{- range $sizes -}}
{{- $n := include "citus.validate.quantity" .value -}}
{{- if not $n -}}
{{- $errors = append $errors (printf "%s=%v is not a Kubernetes quantity: write e.g. 10Gi or 500Mi (binary units Ki, Mi, Gi, Ti; decimal k, M, G, T)" .path .value) -}}
{{- else if le (float64 $n) 0.0 -}}
{{- $errors = append $errors (printf "%s=%v: a PersistentVolumeClaim needs a size above zero" .path .value) -}}
{{- end -}}
{{- end -}}

{{- if $v.backup.enabled -}}
{{- with include "citus.validate.schedule" (dict "path" "backup.schedule" "schedule" $v.backup.schedule "ctx" $) }}{{ $errors = append $errors . }}{{ end -}}
{{- end -}}

{{- /* PDB percentages: Kubernetes refuses more than 100%. */ -}}
{{- range $component := list "coordinator" "worker" -}}
{{- $pdb := (index $v $component).pdb -}}
{{- range $key := list "minAvailable" "maxUnavailable" -}}
{{- $value := toString (index $pdb $key) -}}
{{- if and $pdb.create (hasSuffix "%" $value) (gt (int (trimSuffix "%" $value)) 100) -}}
{{- $errors = append $errors (printf "%s.pdb.%s=%s: a percentage of pods cannot exceed 100%%" $component $key $value) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- /* Service addresses: the API server refuses anything but IP addresses and CIDRs here. */ -}}
{{- $ipv4 := `((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])` -}}
{{- $ipv6 := `[0-9A-Fa-f]{0,4}(:[0-9A-Fa-f]{0,4}){2,7}` -}}
{{- range $component := list "coordinator" "worker" -}}
{{- $ip := toString (index $v $component).service.clusterIP -}}
{{- if and $ip (ne $ip "None") (not (regexMatch (printf "^(%s|%s)$" $ipv4 $ipv6) $ip)) -}}
{{- $errors = append $errors (printf "%s.service.clusterIP=%q is not an IP address: use \"\" (allocated by Kubernetes), \"None\" (headless) or an address of the service range" $component $ip) -}}
{{- end -}}
{{- end -}}
{{- $svc := $v.coordinator.service -}}
{{- if and $svc.loadBalancerIP (not (regexMatch (printf "^(%s|%s)$" $ipv4 $ipv6) (toString $svc.loadBalancerIP))) -}}
{{- $errors = append $errors (printf "coordinator.service.loadBalancerIP=%q is not an IP address" (toString $svc.loadBalancerIP)) -}}
{{- end -}}
{{- range $svc.loadBalancerSourceRanges -}}
{{- if not (regexMatch (printf "^(%s/(3[0-2]|[12]?[0-9])|%s/(12[0-8]|1[01][0-9]|[1-9]?[0-9]))$" $ipv4 $ipv6) (toString .)) -}}
{{- $errors = append $errors (printf "coordinator.service.loadBalancerSourceRanges entry %q is not a CIDR: write e.g. 10.0.0.0/8" (toString .)) -}}
{{- end -}}
{{- end -}}

{{- /* Ingress paths must be absolute; only ImplementationSpecific may leave the path empty. */ -}}
{{- if $v.ingress.enabled -}}
{{- $paths := list (dict "path" "ingress.path" "value" (toString $v.ingress.path) "type" $v.ingress.pathType) -}}
{{- range $i, $h := $v.ingress.extraHosts -}}
{{- $paths = append $paths (dict "path" (printf "ingress.extraHosts[%d].path" $i) "value" (default $v.ingress.path $h.path | toString) "type" (default $v.ingress.pathType $h.pathType)) -}}
{{- end -}}
{{- range $paths -}}
{{- if or (and .value (not (hasPrefix "/" .value))) (and (not .value) (ne .type "ImplementationSpecific")) -}}
{{- $errors = append $errors (printf "%s=%q is not an absolute path: start it with \"/\" (only pathType ImplementationSpecific may leave it empty)" .path .value) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- /* The exporter and PostgreSQL share the pod's network namespace: one port each. */ -}}
{{- if $v.metrics.enabled -}}
{{- range $component := list "coordinator" "worker" -}}
{{- if eq (int $v.metrics.containerPorts.metrics) (int (index $v $component).containerPorts.postgresql) -}}
{{- $errors = append $errors (printf "metrics.containerPorts.metrics=%v is also %s.containerPorts.postgresql: the exporter could not listen next to PostgreSQL; use another port (e.g. 9187)" $v.metrics.containerPorts.metrics $component) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- /* Prometheus durations; a scrape timeout longer than the interval is refused by Prometheus. */ -}}
{{- if $v.metrics.serviceMonitor.enabled -}}
{{- $durations := dict -}}
{{- range $key := list "interval" "scrapeTimeout" -}}
{{- $d := toString (index $v.metrics.serviceMonitor $key) -}}
{{- if and $d (not (regexMatch `^(0|([0-9]+y)?([0-9]+w)?([0-9]+d)?([0-9]+h)?([0-9]+m)?([0-9]+s)?([0-9]+ms)?)$` $d)) -}}
{{- $errors = append $errors (printf "metrics.serviceMonitor.%s=%q is not a Prometheus duration: write e.g. 30s, 1m or 1m30s" $key $d) -}}
{{- else if $d -}}
{{- $ms := 0.0 -}}
{{- range $unit, $factor := dict "y" 31536000000.0 "w" 604800000.0 "d" 86400000.0 "h" 3600000.0 "m" 60000.0 "s" 1000.0 "ms" 1.0 -}}
{{- $n := regexFind (printf `[0-9]+%s([0-9]|$)` $unit) $d -}}
{{- with regexFind `^[0-9]+` $n }}{{ $ms = addf $ms (mulf (float64 .) $factor) }}{{ end -}}
{{- end -}}
{{- $_ := set $durations $key $ms -}}
{{- end -}}
{{- end -}}
{{- if and (hasKey $durations "interval") (hasKey $durations "scrapeTimeout") (gt (get $durations "scrapeTimeout") (get $durations "interval")) -}}
{{- $errors = append $errors (printf "metrics.serviceMonitor.scrapeTimeout=%s is longer than metrics.serviceMonitor.interval=%s: Prometheus refuses the scrape configuration; use a timeout up to the interval" $v.metrics.serviceMonitor.scrapeTimeout $v.metrics.serviceMonitor.interval) -}}
{{- end -}}
{{- end -}}

{{- toYaml $errors -}}
{{- end -}}
