{{/*
Expand the name of the chart.
*/}}
{{- define "gateway.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Create a default fully qualified app name.
We truncate at 63 chars because some Kubernetes name fields are limited to this (by the DNS naming spec).
If release name contains chart name it will be used as a full name.
*/}}
{{- define "gateway.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Create chart name and version as used by the chart label.
*/}}
{{- define "gateway.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Common labels
*/}}
{{- define "gateway.labels" -}}
helm.sh/chart: {{ include "gateway.chart" . }}
{{ include "gateway.selectorLabels" . }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
Selector labels (the gateway's pods only).
*/}}
{{- define "gateway.selectorLabels" -}}
app.kubernetes.io/name: {{ include "gateway.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Labels of the pods of the hook Job and the test: their own name, so that the Services, the
PodDisruptionBudget and the NetworkPolicy, which select the gateway's pods, never pick them.
Call with (dict "root" $ "component" "migrate").
*/}}
{{- define "gateway.auxLabels" -}}
helm.sh/chart: {{ include "gateway.chart" .root }}
app.kubernetes.io/name: {{ printf "%s-%s" (include "gateway.name" .root) .component | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- if .root.Chart.AppVersion }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
{{- end }}

{{/*
Create the name of the service account to use
*/}}
{{- define "gateway.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "gateway.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The image reference.
*/}}
{{- define "gateway.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{/*
The Secret holding JWT_SECRET, INTERNAL_API_TOKEN, DATABASE_URL and REDIS_URL.
*/}}
{{- define "gateway.secretName" -}}
{{- default (include "gateway.fullname" .) .Values.existingSecret }}
{{- end }}

{{/*
"true" when the gateway runs as a cluster (several replicas, or autoscaling): it needs Redis.
*/}}
{{- define "gateway.clustered" -}}
{{- if or .Values.autoscaling.enabled (gt (int .Values.replicaCount) 1) }}true{{ end }}
{{- end }}

{{/*
Checks of the values that the schema cannot express; fails the install with a clear message.
*/}}
{{- define "gateway.validate" -}}
{{- if not .Values.existingSecret }}
{{- $missing := list }}
{{- range $key := list "jwtSecret" "internalApiToken" "databaseUrl" }}
{{- if not (get $.Values.secrets $key) }}{{ $missing = append $missing (printf "secrets.%s" $key) }}{{ end }}
{{- end }}
{{- if and (include "gateway.clustered" .) (not .Values.secrets.redisUrl) }}
{{- $missing = append $missing "secrets.redisUrl (several replicas share state through Redis)" }}
{{- end }}
{{- if $missing }}
{{- fail (printf "set existingSecret to a Secret with the keys JWT_SECRET, INTERNAL_API_TOKEN, DATABASE_URL and REDIS_URL, or set %s" (join ", " $missing)) }}
{{- end }}
{{- end }}
{{- if and .Values.podDisruptionBudget.enabled (hasKey .Values.podDisruptionBudget "minAvailable") (hasKey .Values.podDisruptionBudget "maxUnavailable") }}
{{- if and (not (kindIs "invalid" .Values.podDisruptionBudget.minAvailable)) (not (kindIs "invalid" .Values.podDisruptionBudget.maxUnavailable)) }}
{{- fail "podDisruptionBudget: set either minAvailable or maxUnavailable, not both (set the other to null)" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
SHUTDOWN_GRACE_MS in whole seconds, rounded up.
*/}}
{{- define "gateway.shutdownGraceSeconds" -}}
{{- $ms := get .Values.settings "SHUTDOWN_GRACE_MS" | default "25000" | atoi }}
{{- div (add $ms 999) 1000 }}
{{- end }}

{{/*
Pod termination budget: preStop sleep, then the drain (SHUTDOWN_GRACE_MS), plus 5 s of margin
for the process to exit before SIGKILL.
*/}}
{{- define "gateway.terminationGracePeriodSeconds" -}}
{{- add (include "gateway.shutdownGraceSeconds" . | atoi) (int .Values.preStopSleepSeconds) 5 }}
{{- end }}
