{{/* Chart name, truncated to 63 characters. */}}
{{- define "drop.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Prefix of every resource name: the release name, unless overridden. */}}
{{- define "drop.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/* chart-version, for the helm.sh/chart label. */}}
{{- define "drop.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Selector labels of one component. Pod labels, Service selectors, PDBs,
spread constraints and NetworkPolicies all come from here, so they cannot
drift apart. `app.kubernetes.io/name` is the service's name (order-api,
pdf-generator), as in k8s/base, so the backing services' NetworkPolicies
admit pods from either install.
Call with (dict "ctx" $ "component" "order-api").
*/}}
{{- define "drop.selectorLabels" -}}
app.kubernetes.io/name: {{ .component }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
{{- end }}

{{/* All standard labels of one component. */}}
{{- define "drop.labels" -}}
helm.sh/chart: {{ include "drop.chart" .ctx }}
{{ include "drop.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: {{ include "drop.name" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Name of one component's resources: <fullname>-<component>. */}}
{{- define "drop.componentName" -}}
{{- printf "%s-%s" (include "drop.fullname" .ctx) .component | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* repository:tag or repository@digest. Call with (dict "ctx" $ "image" .Values.x.image). */}}
{{- define "drop.image" -}}
{{- if .image.digest }}
{{- printf "%s@%s" .image.repository .image.digest }}
{{- else }}
{{- printf "%s:%s" .image.repository (default .ctx.Chart.AppVersion .image.tag) }}
{{- end }}
{{- end }}

{{/* Zone and node spread of one component's pods. */}}
{{- define "drop.topologySpread" -}}
- maxSkew: 1
  topologyKey: topology.kubernetes.io/zone
  whenUnsatisfiable: {{ .ctx.Values.topologySpread.zone }}
  labelSelector:
    matchLabels:
      {{- include "drop.selectorLabels" . | nindent 6 }}
  matchLabelKeys: [pod-template-hash]
- maxSkew: 1
  topologyKey: kubernetes.io/hostname
  whenUnsatisfiable: {{ .ctx.Values.topologySpread.node }}
  labelSelector:
    matchLabels:
      {{- include "drop.selectorLabels" . | nindent 6 }}
  matchLabelKeys: [pod-template-hash]
{{- end }}

{{/* Scheduling settings shared by both Deployments. */}}
{{- define "drop.scheduling" -}}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- end }}

{{/* The S3 settings and keys both services read. */}}
{{- define "drop.s3Env" -}}
- name: S3_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ .Values.connections.s3.secretName }}
      key: {{ .Values.connections.s3.accessKeyIdKey }}
- name: S3_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ .Values.connections.s3.secretName }}
      key: {{ .Values.connections.s3.secretAccessKeyKey }}
{{- end }}

{{/*
AMQP_URL assembled from the broker user's Secret by Kubernetes' $(VAR)
expansion: AMQP_USERNAME and AMQP_PASSWORD must be defined before it and
hold URL-safe characters (docs/operations.md).
*/}}
{{- define "drop.amqpEnv" -}}
- name: AMQP_USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ .Values.connections.amqp.secretName }}
      key: {{ .Values.connections.amqp.usernameKey }}
- name: AMQP_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .Values.connections.amqp.secretName }}
      key: {{ .Values.connections.amqp.passwordKey }}
- name: AMQP_URL
  value: {{ printf "amqp://$(AMQP_USERNAME):$(AMQP_PASSWORD)@%s:%d/%s" .Values.connections.amqp.host (int .Values.connections.amqp.port) .Values.connections.amqp.vhost | quote }}
{{- end }}

{{/* The notifier's login on the browsers' broker (FANOUT_AMQP_URL). */}}
{{- define "drop.fanoutEnv" -}}
- name: FANOUT_USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ .Values.connections.fanout.secretName }}
      key: {{ .Values.connections.fanout.usernameKey }}
- name: FANOUT_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .Values.connections.fanout.secretName }}
      key: {{ .Values.connections.fanout.passwordKey }}
- name: FANOUT_AMQP_URL
  value: {{ printf "amqp://$(FANOUT_USERNAME):$(FANOUT_PASSWORD)@%s:%d/%s" .Values.connections.fanout.host (int .Values.connections.fanout.port) .Values.connections.fanout.vhost | quote }}
{{- end }}

{{/* A NetworkPolicy egress rule to backing pods: (dict namespace podLabels port). */}}
{{- define "drop.egressTo" -}}
- to:
    - podSelector:
        matchLabels:
          {{- toYaml .podLabels | nindent 10 }}
      {{- if .namespace }}
      namespaceSelector:
        matchLabels:
          kubernetes.io/metadata.name: {{ .namespace }}
      {{- end }}
  ports:
    - protocol: TCP
      port: {{ .port }}
{{- end }}

{{/* DNS for both services. */}}
{{- define "drop.egressDns" -}}
- to:
    - namespaceSelector:
        matchLabels:
          kubernetes.io/metadata.name: kube-system
      podSelector:
        matchLabels:
          k8s-app: kube-dns
  ports:
    - protocol: UDP
      port: 53
    - protocol: TCP
      port: 53
{{- end }}
