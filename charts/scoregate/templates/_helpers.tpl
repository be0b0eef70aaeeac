{{/*
Names, labels and shared fragments. Object names are trimmed to 63 characters (the DNS label
limit); selector labels are a stable subset of the labels, since a Deployment's selector cannot
change after creation.
*/}}

{{- define "scoregate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "scoregate.fullname" -}}
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

{{/* "<fullname>-<component>", for the objects of one component. Call with (list $ "gateway"). */}}
{{- define "scoregate.componentName" -}}
{{- $root := index . 0 }}
{{- printf "%s-%s" (include "scoregate.fullname" $root | trunc (int (sub 62 (len (index . 1))))) (index . 1) | trimSuffix "-" }}
{{- end }}

{{- define "scoregate.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels of one component. Call with (list $ "gateway"). */}}
{{- define "scoregate.selectorLabels" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: {{ include "scoregate.name" $root }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{/* All labels of one component. Call with (list $ "gateway"). */}}
{{- define "scoregate.labels" -}}
{{- $root := index . 0 -}}
helm.sh/chart: {{ include "scoregate.chart" $root }}
{{ include "scoregate.selectorLabels" . }}
app.kubernetes.io/version: {{ $root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ $root.Release.Service }}
app.kubernetes.io/part-of: scoregate
{{- end }}

{{/* "repository:tag" of an image block, the tag defaulting to appVersion. Call with (list $ .Values.x.image). */}}
{{- define "scoregate.image" -}}
{{- $root := index . 0 }}
{{- $image := index . 1 }}
{{- printf "%s:%s" $image.repository (default $root.Chart.AppVersion $image.tag) }}
{{- end }}

{{- define "scoregate.servingRuntimeName" -}}
{{- default (include "scoregate.componentName" (list . "onnx")) .Values.runtime.servingRuntimeName }}
{{- end }}

{{/*
InferenceService of one model version: "<fullname>-<model>-v<version>". KServe derives longer
names from it (<name>-predictor, <name>-predictor-<hash>), hence the 45-character limit; a longer
name fails the render instead of being cut into a collision.
Call with (list $ $model).
*/}}
{{- define "scoregate.isvcName" -}}
{{- $root := index . 0 }}
{{- $m := index . 1 }}
{{- $name := printf "%s-%s-v%s" (include "scoregate.fullname" $root) $m.name $m.version | lower | replace "." "-" | replace "_" "-" }}
{{- if gt (len $name) 45 }}
{{- fail (printf "InferenceService name %q is longer than 45 characters; set fullnameOverride" $name) }}
{{- end }}
{{- $name }}
{{- end }}

{{/*
gRPC address the gateway dials for one model version. In both deployment modes KServe puts the
predictor behind "<isvc>-predictor" on port 80, forwarding to the container port named h2c.
Call with (list $ $model).
*/}}
{{- define "scoregate.runtimeEndpoint" -}}
{{- $root := index . 0 }}
{{- printf "%s-predictor.%s.svc.cluster.local:80" (include "scoregate.isvcName" .) $root.Release.Namespace }}
{{- end }}

{{/*
Where the gateway exports its spans: the collector when enabled, else (outbox off) the lineage
store. With the outbox on the spans are redacted tracing only, never sent to the lineage store
(the outbox delivers the records there): the collector's tracing pipeline, or nowhere.
*/}}
{{- define "scoregate.otlpEndpoint" -}}
{{- if .Values.collector.enabled }}
{{- printf "%s.%s.svc.cluster.local:%d" (include "scoregate.componentName" (list . "collector")) .Release.Namespace (int .Values.collector.port) }}
{{- else if not .Values.gateway.outbox.enabled }}
{{- include "scoregate.lineageEndpoint" . }}
{{- end }}
{{- end }}

{{/* Where the gateway keeps its durable decision outbox: the outbox volume. */}}
{{- define "scoregate.outboxDir" -}}
/var/lib/scoregate-outbox
{{- end }}

{{/* Whether the collector forwards decision spans to the lineage store (only without the outbox). */}}
{{- define "scoregate.collectorToLineage" -}}
{{- if and .Values.collector.enabled (not .Values.gateway.outbox.enabled) }}true{{ end }}
{{- end }}

{{/* The lineage store's gRPC address (LineageService, OTLP) inside the cluster. */}}
{{- define "scoregate.lineageEndpoint" -}}
{{- printf "%s.%s.svc.cluster.local:%d" (include "scoregate.componentName" (list . "lineage")) .Release.Namespace (int .Values.lineage.port) }}
{{- end }}

{{/* Where the lineage store appends its chain checkpoints: the checkpoints PVC. */}}
{{- define "scoregate.checkpointDir" -}}
/var/lib/scoregate-checkpoints
{{- end }}

{{- define "scoregate.checkpointFile" -}}
{{ include "scoregate.checkpointDir" . }}/checkpoints.jsonl
{{- end }}

{{/* The routing config the gateway loads (docs/routing.md), rendered from values. */}}
{{- define "scoregate.routes" -}}
{{- $models := dict }}
{{- range .Values.runtime.models }}
{{- $entry := get $models .name | default (dict "versions" (dict)) }}
{{- if hasKey $entry.versions .version }}
{{- fail (printf "runtime.models: %s version %s is listed twice" .name .version) }}
{{- end }}
{{- $_ := set $entry.versions .version (dict "endpoints" (list (include "scoregate.runtimeEndpoint" (list $ .)))) }}
{{- $_ := set $models .name $entry }}
{{- end }}
{{- /* A key set to null in a values file drops the chart's default entry. */}}
{{- range $model, $aliases := .Values.routes.aliases }}
{{- if $aliases }}
{{- if not (hasKey $models $model) }}
{{- fail (printf "routes.aliases.%s: no version of %s in runtime.models" $model $model) }}
{{- else }}
{{- $_ := set (get $models $model) "aliases" $aliases }}
{{- end }}
{{- end }}
{{- end }}
{{- $rules := dict }}
{{- range $name, $content := .Values.routes.rules }}
{{- if $content }}
{{- $_ := set $rules $name (dict "file" (printf "%s.yaml" $name)) }}
{{- end }}
{{- end }}
{{- $points := dict }}
{{- range $name, $point := .Values.routes.decision_points }}
{{- if $point }}
{{- $_ := set $points $name $point }}
{{- range $i, $step := ($point.fallback | default dict).chain }}
{{- if and $step.rules (not (hasKey $rules $step.rules)) }}
{{- fail (printf "routes.decision_points.%s.fallback.chain[%d]: rules %q is not in routes.rules" $name $i $step.rules) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- $routes := dict "models" $models "decision_points" $points }}
{{- with $rules }}
{{- $_ := set $routes "rules" . }}
{{- end }}
{{- with .Values.routes.circuit_breaker }}
{{- $_ := set $routes "circuit_breaker" . }}
{{- end }}
{{- toYaml $routes }}
{{- end }}

{{/*
The rules files routes.yaml names, as ConfigMap data: "NAME.yaml" -> the file's YAML. Mounted with
routes.yaml in one folder, where its relative `file:` paths point.
*/}}
{{- define "scoregate.rulesFiles" -}}
{{- $files := dict }}
{{- range $name, $content := .Values.routes.rules }}
{{- if $content }}
{{- $_ := set $files (printf "%s.yaml" $name) (toYaml $content) }}
{{- end }}
{{- end }}
{{- with $files }}
{{- toYaml . }}
{{- end }}
{{- end }}

{{/* Checksum of everything the gateway reads from the routes ConfigMap: any change rolls it. */}}
{{- define "scoregate.routesChecksum" -}}
{{- print (include "scoregate.routes" .) "\n---\n" (include "scoregate.rulesFiles" .) | sha256sum }}
{{- end }}

{{/* Pod-level security context: the restricted Pod Security Standard. */}}
{{- define "scoregate.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.podSecurity.runAsUser }}
runAsGroup: {{ .Values.podSecurity.runAsGroup }}
fsGroup: {{ .Values.podSecurity.fsGroup }}
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Container-level security context: restricted, plus a read-only root filesystem. */}}
{{- define "scoregate.containerSecurityContext" -}}
runAsNonRoot: true
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "scoregate.imagePullSecrets" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
{{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}
