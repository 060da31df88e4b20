{{/* Chart name. */}}
{{- define "mesh-registry.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name; 63 characters at most (DNS label), 54 leaves room for suffixes. */}}
{{- define "mesh-registry.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 54 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 54 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 54 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "mesh-registry.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "mesh-registry.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mesh-registry.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "mesh-registry.labels" -}}
helm.sh/chart: {{ include "mesh-registry.chart" . }}
{{ include "mesh-registry.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: mcp-mesh
{{- end }}

{{- define "mesh-registry.headlessName" -}}
{{- printf "%s-headless" (include "mesh-registry.fullname" .) }}
{{- end }}

{{- define "mesh-registry.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "mesh-registry.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "mesh-registry.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion | toString) }}
{{- end }}

{{/* The Secret holding DATABASE_URL, and its key. */}}
{{- define "mesh-registry.databaseSecretName" -}}
{{- if .Values.database.existingSecret.name }}
{{- .Values.database.existingSecret.name }}
{{- else }}
{{- printf "%s-database" (include "mesh-registry.fullname" .) }}
{{- end }}
{{- end }}

{{- define "mesh-registry.databaseSecretKey" -}}
{{- if .Values.database.existingSecret.name }}
{{- .Values.database.existingSecret.key }}
{{- else }}
{{- "DATABASE_URL" }}
{{- end }}
{{- end }}

{{/* The port /admin/* is served on: the admin port, or the public port when it is disabled. */}}
{{- define "mesh-registry.adminPort" -}}
{{- if .Values.admin.enabled }}{{ int64 .Values.admin.port }}{{ else }}{{ int64 .Values.port }}{{ end }}
{{- end }}

{{/* MCP_MESH_SHUTDOWN_TIMEOUT as the registry will read it (its default is 30). */}}
{{- define "mesh-registry.shutdownTimeout" -}}
{{- $v := index .Values.config "MCP_MESH_SHUTDOWN_TIMEOUT" }}
{{- if kindIs "invalid" $v }}30{{ else }}{{ int64 $v }}{{ end }}
{{- end }}

{{/* Deployment or StatefulSet. Releases installed with chart 0.1.0 have no such value (an
     upgrade with --reuse-values keeps the old values), and stay a Deployment. */}}
{{- define "mesh-registry.workload" -}}
{{- .Values.workload | default "Deployment" }}
{{- end }}

{{/* The preStop drain's request timeout, and the margin of the grace period. Both have template
     defaults for releases upgraded from chart 0.1.0 with --reuse-values. */}}
{{- define "mesh-registry.drainRequestTimeout" -}}
{{- .Values.drain.requestTimeoutSeconds | default 5 | int64 }}
{{- end }}

{{- define "mesh-registry.drainLinger" -}}
{{- if kindIs "invalid" .Values.drain.lingerSeconds }}5{{ else }}{{ .Values.drain.lingerSeconds | int64 }}{{ end }}
{{- end }}

{{- define "mesh-registry.graceMargin" -}}
{{- .Values.drain.graceMarginSeconds | default 5 | int64 }}
{{- end }}

{{/* The preStop drain and its linger, then the graceful shutdown, then a margin. */}}
{{- define "mesh-registry.terminationGracePeriodSeconds" -}}
{{- add (include "mesh-registry.drainRequestTimeout" . | int64) (include "mesh-registry.drainLinger" . | int64) (include "mesh-registry.shutdownTimeout" . | int64) (include "mesh-registry.graceMargin" . | int64) }}
{{- end }}

{{/* admin.host: "" (the registry's own default, 0.0.0.0) for releases installed before the
     value existed. */}}
{{- define "mesh-registry.adminHost" -}}
{{- .Values.admin.host | default "" }}
{{- end }}

{{/* "true" when the admin port binds the pod's IP, so that 127.0.0.1 does not reach it. */}}
{{- define "mesh-registry.adminOnPodIP" -}}
{{- if and .Values.admin.enabled (eq (include "mesh-registry.adminHost" .) "podIP") }}true{{ end }}
{{- end }}

{{/* "true" when other pods can reach a replica's /admin/* (it does not bind loopback only). */}}
{{- define "mesh-registry.adminReachableFromPods" -}}
{{- if not (and .Values.admin.enabled (eq (include "mesh-registry.adminHost" .) "127.0.0.1")) }}true{{ end }}
{{- end }}

{{/* /admin/* of the replica a command runs in (preStop, kubectl exec) over loopback. */}}
{{- define "mesh-registry.localAdminUrl" -}}
{{- printf "http://127.0.0.1:%s" (include "mesh-registry.adminPort" .) }}
{{- end }}

{{/* What a `registry` command run in the replica's own container needs to find its /admin/*:
     --registry-url on loopback, or nothing when the admin port binds the pod's IP (the
     container's MCP_MESH_REGISTRY_URL then names it; exec'd commands inherit the environment,
     while the kubelet expands no $(VAR) in an exec command). Starts with a space when not empty. */}}
{{- define "mesh-registry.localAdminFlag" -}}
{{- if not (include "mesh-registry.adminOnPodIP" .) }} --registry-url {{ include "mesh-registry.localAdminUrl" . }}{{ end }}
{{- end }}

{{/* The NetworkPolicy's settings; releases installed before it existed have none. */}}
{{- define "mesh-registry.networkPolicyEnabled" -}}
{{- if (.Values.networkPolicy | default dict).enabled }}true{{ end }}
{{- end }}

{{/* "true" when more than one replica can run at once. */}}
{{- define "mesh-registry.multiReplica" -}}
{{- if .Values.autoscaling.enabled }}
{{- if gt (int64 .Values.autoscaling.maxReplicas) 1 }}true{{ end }}
{{- else if gt (int64 .Values.replicaCount) 1 }}true{{ end }}
{{- end }}

{{/* An environment value as a string; whole numbers never in exponent form. */}}
{{- define "mesh-registry.envValue" -}}
{{- if kindIs "float64" . }}
{{- if eq . (float64 (int64 .)) }}{{ int64 . }}{{ else }}{{ . }}{{ end }}
{{- else }}
{{- toString . }}
{{- end }}
{{- end }}

{{/* The container port GET /metrics is served on: the admin port when there is one. */}}
{{- define "mesh-registry.metricsPort" -}}
{{- if .Values.admin.enabled }}{{ int64 .Values.admin.port }}{{ else }}{{ int64 .Values.port }}{{ end }}
{{- end }}
