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
