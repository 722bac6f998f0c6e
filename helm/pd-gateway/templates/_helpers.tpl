{{/* Chart name, truncated to the 63 characters a DNS label allows. */}}
{{- define "pd-gateway.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Release-qualified name; the release name alone when it already contains the chart name. */}}
{{- define "pd-gateway.fullname" -}}
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

{{- define "pd-gateway.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "pd-gateway.labels" -}}
helm.sh/chart: {{ include "pd-gateway.chart" . }}
{{ include "pd-gateway.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: pd-gateway
{{- end }}

{{- define "pd-gateway.selectorLabels" -}}
app.kubernetes.io/name: {{ include "pd-gateway.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Per-component names and selector labels: gateway, triton, redis. */}}
{{- define "pd-gateway.gateway.fullname" -}}
{{- printf "%s-gateway" (include "pd-gateway.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "pd-gateway.triton.fullname" -}}
{{- printf "%s-triton" (include "pd-gateway.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "pd-gateway.redis.fullname" -}}
{{- printf "%s-redis" (include "pd-gateway.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "pd-gateway.gateway.selectorLabels" -}}
{{ include "pd-gateway.selectorLabels" . }}
app.kubernetes.io/component: gateway
{{- end }}

{{- define "pd-gateway.triton.selectorLabels" -}}
{{ include "pd-gateway.selectorLabels" . }}
app.kubernetes.io/component: triton
{{- end }}

{{- define "pd-gateway.redis.selectorLabels" -}}
{{ include "pd-gateway.selectorLabels" . }}
app.kubernetes.io/component: redis
{{- end }}

{{/* Triton gRPC address (host:port) the gateway calls: the in-chart Service or an external one. */}}
{{- define "pd-gateway.tritonGrpcUrl" -}}
{{- if .Values.triton.enabled }}
{{- printf "%s:%v" (include "pd-gateway.triton.fullname" .) .Values.triton.ports.grpc }}
{{- else }}
{{- required "triton.externalGrpcUrl is required when triton.enabled is false" .Values.triton.externalGrpcUrl }}
{{- end }}
{{- end }}

{{/* REDIS_URL: external URL, else the in-chart Redis, else "" (the gateway then caches in-process only). */}}
{{- define "pd-gateway.redisUrl" -}}
{{- if .Values.redis.externalUrl }}
{{- .Values.redis.externalUrl }}
{{- else if .Values.redis.enabled }}
{{- printf "redis://%s:6379/0" (include "pd-gateway.redis.fullname" .) }}
{{- end }}
{{- end }}

{{- define "pd-gateway.modelRepository.claimName" -}}
{{- default (printf "%s-models" (include "pd-gateway.fullname" .)) .Values.modelRepository.existingClaim }}
{{- end }}

{{- define "pd-gateway.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "pd-gateway.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The Secret holding the API-keys file: an existing one, or the chart's (auth.create). */}}
{{- define "pd-gateway.auth.secretName" -}}
{{- default (printf "%s-api-keys" (include "pd-gateway.fullname" .)) .Values.auth.existingSecret }}
{{- end }}

{{/* True (non-empty) when the gateway gets an API-keys file. Fails the install when it would not and
     anonymous access was not asked for explicitly: auth is on by default. */}}
{{- define "pd-gateway.auth.enabled" -}}
{{- if or .Values.auth.existingSecret .Values.auth.create }}true
{{- else if not .Values.auth.allowAnonymous }}
{{- fail "auth: no API keys. Set auth.existingSecret (a Secret whose key auth.secretKey holds \"name:role:key\" lines), or auth.create=true with auth.keys, or auth.allowAnonymous=true to serve /v1/detect without keys." }}
{{- end }}
{{- end }}

{{/* topologySpreadConstraints of a component: the values' entries, each given the component's labelSelector
     and matchLabelKeys [pod-template-hash] (spread one rollout's pods, not old and new together). */}}
{{- define "pd-gateway.topologySpread" -}}
{{- $selector := index . 1 | fromYaml }}
{{- $out := list }}
{{- range index . 0 }}
{{- $out = append $out (merge (deepCopy .) (dict "labelSelector" (dict "matchLabels" $selector) "matchLabelKeys" (list "pod-template-hash"))) }}
{{- end }}
{{- toYaml $out }}
{{- end }}
