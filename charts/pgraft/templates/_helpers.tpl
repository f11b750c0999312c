{{/* The chart's name. */}}
{{- define "pgraft.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The full name: the StatefulSet and the prefix of every object (pods are <fullname>-<ordinal>). */}}
{{- define "pgraft.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "pgraft.headless" -}}
{{- printf "%s-headless" (include "pgraft.fullname" .) }}
{{- end }}

{{- define "pgraft.clusterId" -}}
{{- default (include "pgraft.fullname" .) .Values.clusterId }}
{{- end }}

{{- define "pgraft.secretName" -}}
{{- default (printf "%s-auth" (include "pgraft.fullname" .)) .Values.auth.existingSecret }}
{{- end }}

{{- define "pgraft.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "pgraft.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "pgraft.selectorLabels" -}}
app.kubernetes.io/name: {{ include "pgraft.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "pgraft.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "pgraft.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: pgraft
{{- end }}

{{/* The PromQL selector of this release's pods. */}}
{{- define "pgraft.promSelector" -}}
namespace="{{ .Release.Namespace }}", pod=~"{{ include "pgraft.fullname" . }}-[0-9]+"
{{- end }}

{{- define "pgraft.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The settings the postgres container always gets as `-c name=value` (postgres.parameters may not set them). */}}
{{- define "pgraft.reservedParameters" -}}
wal_level track_commit_timestamp password_encryption port
{{- end }}

{{/*
Checks of values that values.schema.json cannot express (they compare values with each other):
each fails the install/upgrade with a message naming the values and the way out.
*/}}
{{- define "pgraft.validate" -}}
{{- $v := .Values }}
{{- if gt (int $v.initialReplicas) (int $v.replicas) }}
{{- fail (printf "initialReplicas (%d) must not exceed replicas (%d): the founding pods must all exist" (int $v.initialReplicas) (int $v.replicas)) }}
{{- end }}
{{- /* TLS: certificates from exactly where the values say, and never a silent plaintext. */}}
{{- if and $v.tls.enabled (not $v.tls.certManager.enabled) (not $v.tls.existingSecret) }}
{{- fail "tls.enabled=true needs the peers' certificates: either set tls.existingSecret to a Secret holding ca.crt and <pod>.crt / <pod>.key for every pod (e.g. pg-pgraft-0.crt), or let cert-manager make them: tls.certManager.enabled=true and tls.certManager.issuerRef.name=<your Issuer or ClusterIssuer>" }}
{{- end }}
{{- if and $v.tls.certManager.enabled (not $v.tls.enabled) }}
{{- fail "tls.certManager.enabled=true but tls.enabled=false: the sidecars would talk plaintext (--plaintext) and the certificates would go unused; set tls.enabled=true as well, or turn tls.certManager.enabled off" }}
{{- end }}
{{- if and $v.tls.existingSecret (not $v.tls.enabled) }}
{{- fail (printf "tls.existingSecret (%s) is set but tls.enabled=false: the sidecars would talk plaintext (--plaintext) and the Secret would go unused; set tls.enabled=true as well, or unset tls.existingSecret" $v.tls.existingSecret) }}
{{- end }}
{{- if and $v.tls.enabled $v.tls.certManager.enabled (gt (int $v.replicas) (int $v.tls.maxReplicas)) }}
{{- fail (printf "replicas (%d) exceeds tls.maxReplicas (%d): cert-manager Certificates are made and mounted for ordinals 0..%d only, so the pods beyond would have no certificate; raise tls.maxReplicas to at least %d" (int $v.replicas) (int $v.tls.maxReplicas) (sub (int $v.tls.maxReplicas) 1) (int $v.replicas)) }}
{{- end }}
{{- /* postgres.parameters may not override what the chart relies on. */}}
{{- $reserved := splitList " " (include "pgraft.reservedParameters" .) }}
{{- $bad := list }}
{{- range $k, $_ := $v.postgres.parameters }}
{{- if has (lower $k) $reserved }}{{ $bad = append $bad $k }}{{ end }}
{{- end }}
{{- if $bad }}
{{- fail (printf "postgres.parameters may not set %s: the chart always sets wal_level=logical, track_commit_timestamp=on, password_encryption=scram-sha-256 and port=<ports.postgres> (pgraft needs them; change the port with ports.postgres)" (join ", " (sortAlpha $bad))) }}
{{- end }}
{{- /* Ports: the containers share the pod's network, and the sidecar's SQL endpoint is 127.0.0.1:7432. */}}
{{- $names := list "raft" "http" "postgres" "proxy" "proxyReadOnly" }}
{{- range $i, $a := $names }}
{{- $pa := int (index $v.ports $a) }}
{{- if eq $pa 7432 }}
{{- fail (printf "ports.%s (7432) collides with the sidecar's SQL endpoint (127.0.0.1:7432, which the SQL shim in PostgreSQL calls): choose another port" $a) }}
{{- end }}
{{- range $j, $b := $names }}
{{- if and (lt $i $j) (eq $pa (int (index $v.ports $b))) }}
{{- fail (printf "ports.%s and ports.%s are both %d: every port of the pod must differ (PostgreSQL and the sidecar share the pod's network)" $a $b $pa) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
