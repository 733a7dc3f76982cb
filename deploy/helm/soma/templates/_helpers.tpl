{{- define "soma.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "soma.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "soma.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
app.kubernetes.io/name: {{ include "soma.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: soma
{{- end -}}

{{/* Selector labels of one component: include "soma.selector" (list . "gateway") */}}
{{- define "soma.selector" -}}
{{- $ctx := index . 0 -}}
app.kubernetes.io/name: {{ include "soma.name" $ctx }}
app.kubernetes.io/instance: {{ $ctx.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "soma.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "soma.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* An image reference: include "soma.image" .Values.image.gateway */}}
{{- define "soma.image" -}}
{{- if .digest -}}
{{- printf "%s@%s" .repository .digest -}}
{{- else -}}
{{- if or (not .tag) (eq (toString .tag) "latest") -}}
{{- fail "image tags must be pinned versions (not empty, not latest)" -}}
{{- end -}}
{{- printf "%s:%s" .repository (toString .tag) -}}
{{- end -}}
{{- end -}}

{{- define "soma.homeClaim" -}}
{{- default (printf "%s-home" (include "soma.fullname" .)) .Values.home.persistence.existingClaim -}}
{{- end -}}

{{/* Environment shared by gateway and workers: ConfigMap, then secret keys. */}}
{{- define "soma.env" -}}
envFrom:
  - configMapRef:
      name: {{ include "soma.fullname" . }}
env:
  - name: SOMA_SECRET_KEY
    valueFrom:
      secretKeyRef:
        name: {{ required "secrets.existingSecret is required" .Values.secrets.existingSecret }}
        key: SOMA_SECRET_KEY
  - name: SOMA_DATABASE_URL
    valueFrom:
      secretKeyRef:
        name: {{ .Values.secrets.existingSecret }}
        key: SOMA_DATABASE_URL
  {{- range .Values.secrets.optionalKeys }}
  - name: {{ . }}
    valueFrom:
      secretKeyRef:
        name: {{ $.Values.secrets.existingSecret }}
        key: {{ . }}
        optional: true
  {{- end }}
{{- end -}}

{{- define "soma.volumes" -}}
- name: home
{{- if .Values.home.persistence.enabled }}
  persistentVolumeClaim:
    claimName: {{ include "soma.homeClaim" . }}
{{- else }}
  emptyDir: {}
{{- end }}
- name: tmp
  emptyDir:
    sizeLimit: 2Gi
{{- end -}}

{{- define "soma.volumeMounts" -}}
- name: home
  mountPath: {{ .Values.home.mountPath }}
- name: tmp
  mountPath: /tmp
{{- end -}}

{{- define "soma.spread" -}}
{{- $ctx := index . 0 -}}
- maxSkew: 1
  topologyKey: topology.kubernetes.io/zone
  whenUnsatisfiable: ScheduleAnyway
  labelSelector:
    matchLabels:
      {{- include "soma.selector" . | nindent 6 }}
- maxSkew: 1
  topologyKey: kubernetes.io/hostname
  whenUnsatisfiable: ScheduleAnyway
  labelSelector:
    matchLabels:
      {{- include "soma.selector" . | nindent 6 }}
{{- end -}}
