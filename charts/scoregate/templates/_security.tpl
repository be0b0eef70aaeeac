{{/*
Transport security and access control (values: security, gateway.security, lineage.security).
*/}}

{{/* "true" unless the release runs the insecure demo mode. */}}
{{- define "scoregate.secure" -}}
{{- if not .Values.security.insecureDemo }}true{{ end }}
{{- end }}

{{/* Where a component's certificate Secret and the policy ConfigMap are mounted: whole
directories, never subPath, so that a Secret or ConfigMap update reaches the running process. */}}
{{- define "scoregate.tlsDir" -}}
/etc/scoregate-tls
{{- end }}

{{- define "scoregate.policyDir" -}}
/etc/scoregate-policy
{{- end }}

{{- define "scoregate.jwksDir" -}}
/etc/scoregate-jwks
{{- end }}

{{/* The certificate Secret of a component: (list $ "gateway"|"lineage"). */}}
{{- define "scoregate.tlsSecretName" -}}
{{- $root := index . 0 }}{{ $component := index . 1 }}
{{- (index $root.Values $component).security.tlsSecretName | default (printf "%s-tls" (include "scoregate.componentName" (list $root $component))) }}
{{- end }}

{{- define "scoregate.testsTlsSecretName" -}}
{{- .Values.security.testsTlsSecretName | default (printf "%s-tls" (include "scoregate.componentName" (list . "test"))) }}
{{- end }}

{{/* The SPIFFE ID the chart derives for a service account: (list $ "<service account>"). */}}
{{- define "scoregate.spiffeId" -}}
{{- $root := index . 0 }}
{{- printf "spiffe://%s/ns/%s/sa/%s" $root.Values.security.trustDomain $root.Release.Namespace (index . 1) }}
{{- end }}

{{/* The gateway's principal at the lineage store: its client certificate's identity. */}}
{{- define "scoregate.gatewayPrincipal" -}}
{{- .Values.gateway.security.principal | default (include "scoregate.spiffeId" (list . (include "scoregate.componentName" (list . "gateway")))) }}
{{- end }}

{{/* The canary controller's principal at the lineage store: its client certificate's. */}}
{{- define "scoregate.canaryPrincipal" -}}
{{- include "scoregate.spiffeId" (list . (include "scoregate.componentName" (list . "canary"))) }}
{{- end }}

{{- define "scoregate.testsPrincipal" -}}
{{- include "scoregate.spiffeId" (list . (include "scoregate.componentName" (list . "test"))) }}
{{- end }}

{{/* The lineage store's host name inside the cluster: the name its certificate carries. */}}
{{- define "scoregate.lineageHost" -}}
{{- printf "%s.%s.svc.cluster.local" (include "scoregate.componentName" (list . "lineage")) .Release.Namespace }}
{{- end }}

{{- define "scoregate.gatewayHost" -}}
{{- printf "%s.%s.svc.cluster.local" (include "scoregate.componentName" (list . "gateway")) .Release.Namespace }}
{{- end }}

{{/* The access policy file: the values' grants, plus the ones the release itself needs. */}}
{{- define "scoregate.accessPolicy" -}}
{{- $p := .Values.security.accessPolicy }}
{{- $scoring := concat (list (dict "principals" (list (include "scoregate.testsPrincipal" .)) "decision_points" (list .Values.tests.scoreRequest.decision_point) "description" "helm test: one decision")) $p.scoring }}
{{- $lineage := concat (list (dict "principals" (list (include "scoregate.gatewayPrincipal" .)) "permissions" (list "ingest" "record_route_changes" "register_models" "read_approvals") "description" "the gateway: decision records, route changes and the manifests they name; the approvals its routes are checked against")) $p.lineage }}
{{- if or .Values.canary.job.enabled .Values.canary.cronJob.enabled }}
{{- $lineage = append $lineage (dict "principals" (list (include "scoregate.canaryPrincipal" .)) "permissions" (list "read_decisions" "record_route_changes") "description" "the canary controller: the arms it compares and the steps it records") }}
{{- end }}
{{- toYaml (dict "scoring" $scoring "lineage" $lineage) }}
{{- end }}

{{/*
A component's listener, caller and policy arguments: (list $ "gateway"|"lineage"). The two
entry points share every flag name but the leeway's (--jwt-leeway-s / --jwt-leeway).
*/}}
{{- define "scoregate.securityArgs" -}}
{{- $root := index . 0 }}{{ $component := index . 1 }}
{{- $s := (index $root.Values $component).security }}
{{- if include "scoregate.secure" $root }}
{{- $tls := include "scoregate.tlsDir" $root }}
- --plaintext
- "false"
- --tls-cert-file
- {{ printf "%s/tls.crt" $tls }}
- --tls-key-file
- {{ printf "%s/tls.key" $tls }}
- --tls-ca-file
- {{ printf "%s/ca.crt" $tls }}
- --tls-client-certificate
- {{ $s.clientCertificate | quote }}
- --certificate-identity
- {{ $s.certificateIdentity | quote }}
{{- if eq $s.certificateIdentity "subject" }}
- --certificate-subject-field
- {{ $s.certificateSubjectField | quote }}
{{- end }}
{{- with $s.jwt }}
{{- if or .jwksUrl .jwksConfigMap .jwksSecret }}
{{- if .jwksUrl }}
- --jwt-jwks-url
- {{ .jwksUrl | quote }}
{{- else }}
- --jwt-jwks-file
- {{ printf "%s/%s" (include "scoregate.jwksDir" $root) .jwksKey }}
{{- end }}
- --jwt-issuer
- {{ required (printf "%s.security.jwt.issuer is required with a JWKS" $component) .issuer | quote }}
- --jwt-audience
- {{ required (printf "%s.security.jwt.audience is required with a JWKS" $component) .audience | quote }}
- --jwt-algorithms
- {{ required (printf "%s.security.jwt.algorithms is required with a JWKS" $component) (join "," .algorithms) | quote }}
- {{ ternary "--jwt-leeway-s" "--jwt-leeway" (eq $component "gateway") }}
- {{ .leewaySeconds | quote }}
- --jwt-principal-claim
- {{ .principalClaim | quote }}
{{- end }}
{{- end }}
- --access-policy
- {{ printf "%s/policy.yaml" (include "scoregate.policyDir" $root) }}
{{- else }}
# Demo mode (security.insecureDemo): h2c with open access; the process logs both warnings.
- --plaintext
- "true"
- --open-access
- "true"
{{- end }}
{{- end }}

{{/* Volume mounts for a component's certificate, JWKS and policy: (list $ component). */}}
{{- define "scoregate.securityVolumeMounts" -}}
{{- $root := index . 0 }}{{ $s := (index $root.Values (index . 1)).security }}
{{- if include "scoregate.secure" $root }}
- name: tls
  mountPath: {{ include "scoregate.tlsDir" $root }}
  readOnly: true
- name: access-policy
  mountPath: {{ include "scoregate.policyDir" $root }}
  readOnly: true
{{- if and (not $s.jwt.jwksUrl) (or $s.jwt.jwksConfigMap $s.jwt.jwksSecret) }}
- name: jwks
  mountPath: {{ include "scoregate.jwksDir" $root }}
  readOnly: true
{{- end }}
{{- end }}
{{- end }}

{{- define "scoregate.securityVolumes" -}}
{{- $root := index . 0 }}{{ $component := index . 1 }}{{ $s := (index $root.Values $component).security }}
{{- if include "scoregate.secure" $root }}
- name: tls
  secret:
    secretName: {{ include "scoregate.tlsSecretName" (list $root $component) }}
    defaultMode: 0440
- name: access-policy
  configMap:
    name: {{ include "scoregate.componentName" (list $root "access-policy") }}
{{- if and (not $s.jwt.jwksUrl) (or $s.jwt.jwksConfigMap $s.jwt.jwksSecret) }}
- name: jwks
  {{- if $s.jwt.jwksConfigMap }}
  configMap:
    name: {{ $s.jwt.jwksConfigMap }}
  {{- else }}
  secret:
    secretName: {{ $s.jwt.jwksSecret }}
  {{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/* The pseudonym keys' Secret (security.pseudonyms), mounted whole, like the certificates. */}}
{{- define "scoregate.pseudonymDir" -}}
/etc/scoregate-pseudonyms
{{- end }}

{{/* A component's keyed-hash arguments: (list $ "gateway"|"lineage"). */}}
{{- define "scoregate.pseudonymArgs" -}}
{{- $root := index . 0 }}{{ $component := index . 1 }}
{{- $p := $root.Values.security.pseudonyms }}
{{- if and $p.decisionPoints (not $p.secretName) }}
{{- fail "security.pseudonyms.decisionPoints needs security.pseudonyms.secretName (the Secret with entity.key)" }}
{{- end }}
{{- if $p.secretName }}
{{- if eq $component "gateway" }}
- --telemetry-key-file
- {{ printf "%s/telemetry.key" (include "scoregate.pseudonymDir" $root) }}
{{- else }}
# The key also answers searches by entity key over records pseudonymised earlier.
- --entity-key-file
- {{ printf "%s/entity.key" (include "scoregate.pseudonymDir" $root) }}
{{- with $p.decisionPoints }}
- --pseudonymise-entities
- {{ join "," . | quote }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{- define "scoregate.pseudonymVolumeMounts" -}}
{{- if .Values.security.pseudonyms.secretName }}
- name: pseudonyms
  mountPath: {{ include "scoregate.pseudonymDir" . }}
  readOnly: true
{{- end }}
{{- end }}

{{- define "scoregate.pseudonymVolumes" -}}
{{- with .Values.security.pseudonyms.secretName }}
- name: pseudonyms
  secret:
    secretName: {{ . }}
    defaultMode: 0440
{{- end }}
{{- end }}

{{/* Probes: the kubelet's gRPC probe speaks h2c only, so a TLS listener is probed by TCP. */}}
{{- define "scoregate.probeAction" -}}
{{- $root := index . 0 }}
{{- if include "scoregate.secure" $root }}
tcpSocket:
  port: {{ index . 1 }}
{{- else }}
grpc:
  port: {{ index . 1 }}
{{- end }}
{{- end }}
