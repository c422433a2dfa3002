{{/* Names and labels shared by every template. */}}
{{- define "flotilla.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "flotilla.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "flotilla.selector" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "flotilla.image" -}}
{{- printf "%s%s:%s" .root.Values.image.registry .image .root.Values.image.tag -}}
{{- end -}}

{{/* host:port of the workers' headless Service, as the gateway's DNS discovery wants it. */}}
{{- define "flotilla.workersDns" -}}
{{- printf "%s-worker.%s.svc.cluster.local:%d" (include "flotilla.fullname" .) .Release.Namespace (int .Values.worker.grpcPort) -}}
{{- end -}}
