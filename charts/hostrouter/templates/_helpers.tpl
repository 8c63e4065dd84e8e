{{/*
Chart name, truncated to 63 characters (the limit of a label value).
*/}}
{{- define "hostrouter.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name of every object: `<release>-<chart>`, or `<release>` when the release name already
contains the chart name. Truncated to 63 characters (DNS-1123 label).
*/}}
{{- define "hostrouter.fullname" -}}
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
`<chart>-<version>` for the helm.sh/chart label.
*/}}
{{- define "hostrouter.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels of every object. `app.kubernetes.io/managed-by` is Helm's, not `hostrouter` (the value
the operator puts on the Envoy objects it generates), so the operator never mistakes the chart's
objects for its own.
*/}}
{{- define "hostrouter.labels" -}}
helm.sh/chart: {{ include "hostrouter.chart" . }}
{{ include "hostrouter.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: hostrouter
{{- end }}

{{/*
Labels that select the operator pod. Immutable in the Deployment selector: never change them.
*/}}
{{- define "hostrouter.selectorLabels" -}}
app.kubernetes.io/name: {{ include "hostrouter.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Name of the ServiceAccount the operator runs as.
*/}}
{{- define "hostrouter.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "hostrouter.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Operator image: `repository@digest` when a digest is set, else `repository:tag` with the tag
defaulting to the chart's appVersion (the crate version).
*/}}
{{- define "hostrouter.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}
