{{/* Where the server's TLS Secret is mounted (server.tls). */}}
{{- define "mlflow-stack.tls.serverDir" -}}/etc/mlflow-tls{{- end -}}

{{/* Secret with the oauth2-proxy client and cookie secrets: server.oidc.existingSecret, else the rendered <fullname>-oidc. */}}
{{- define "mlflow-stack.oidc.secretName" -}}
{{- .Values.server.oidc.existingSecret | default (include "mlflow-stack.componentName" (dict "ctx" . "suffix" "oidc")) -}}
{{- end -}}

{{/* OIDC redirect URL: server.oidc.redirectUrl, else https://<first Ingress host or HTTPRoute hostname><staticPrefix>/oauth2/callback, else empty (oauth2-proxy derives it from the request). */}}
{{- define "mlflow-stack.oidc.redirectUrl" -}}
{{- $host := "" -}}
{{- if and .Values.ingress.enabled .Values.ingress.hosts -}}
{{- $host = (first .Values.ingress.hosts).host -}}
{{- else if and .Values.httpRoute.enabled .Values.httpRoute.hostnames -}}
{{- $host = first .Values.httpRoute.hostnames -}}
{{- end -}}
{{- if .Values.server.oidc.redirectUrl -}}
{{- .Values.server.oidc.redirectUrl -}}
{{- else if $host -}}
{{- printf "https://%s%s/oauth2/callback" $host .Values.server.staticPrefix -}}
{{- end -}}
{{- end -}}

{{/* The oauth2-proxy arguments (no secrets: those come from the environment), built in one place from server.oidc. */}}
{{- define "mlflow-stack.oidc.args" -}}
{{- $s := .Values.server -}}
{{- $o := $s.oidc -}}
- --provider=oidc
- --oidc-issuer-url={{ $o.issuerUrl }}
- --client-id={{ $o.clientId }}
{{- if $s.tls.enabled }}
{{- $dir := include "mlflow-stack.tls.serverDir" . }}
- --https-address=0.0.0.0:4180
- --tls-cert-file={{ $dir }}/tls.crt
- --tls-key-file={{ $dir }}/tls.key
{{- /* the certificate names the Service, not 127.0.0.1: the hop never leaves the pod's network namespace */}}
- --upstream=https://127.0.0.1:5000/
- --ssl-upstream-insecure-skip-verify=true
{{- else }}
- --http-address=0.0.0.0:4180
- --upstream=http://127.0.0.1:5000/
{{- end }}
- --proxy-prefix={{ $s.staticPrefix }}/oauth2
{{- with include "mlflow-stack.oidc.redirectUrl" . }}
- --redirect-url={{ . }}
{{- end }}
- --scope={{ join " " $o.scopes }}
{{- range ($o.emailDomains | default (list "*")) }}
- --email-domain={{ . }}
{{- end }}
{{- range $o.allowedGroups }}
- --allowed-group={{ . }}
{{- end }}
- --code-challenge-method=S256
- --skip-provider-button=true
- --reverse-proxy=true
- --cookie-secure=true
- --silence-ping-logging=true
{{- with $o.extraArgs }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Host patterns (fnmatch, comma-separated) of pod and node IPs in private networks, with any port: RFC 1918 (10/8, 172.16/12, 192.168/16), the shared CGNAT range 100.64/10 (pod networks of EKS custom networking, Calico, Cilium) and IPv6 unique local addresses fc00::/7 (`[fd00::5]:5000`; `[[]` is fnmatch for a literal `[`). */}}
{{- define "mlflow-stack.podNetworkHosts" -}}
{{- $hosts := list "10.*" "192.168.*" -}}
{{- range $i := until 16 }}{{ $hosts = append $hosts (printf "172.%d.*" (add 16 $i)) }}{{ end -}}
{{- $hosts = concat $hosts (list "100.6[4-9].*" "100.[7-9][0-9].*" "100.1[01][0-9].*" "100.12[0-7].*") -}}
{{- $hosts = concat $hosts (list "[[]fc*" "[[]fd*") -}}
{{- join "," $hosts -}}
{{- end -}}

{{/* Comma-separated Host headers the server accepts: Service DNS names (+port), Ingress hosts, HTTPRoute hostnames, localhost, pod IPs (private networks), server.allowedHosts. */}}
{{- define "mlflow-stack.allowedHosts" -}}
{{- $svc := include "mlflow-stack.serviceName" . -}}
{{- $port := .Values.server.service.port | toString -}}
{{- $hosts := list "localhost" "localhost:*" "127.0.0.1" "127.0.0.1:*" -}}
{{- range $name := list $svc (printf "%s.%s" $svc .Release.Namespace) (printf "%s.%s.svc" $svc .Release.Namespace) (printf "%s.%s.svc.cluster.local" $svc .Release.Namespace) -}}
{{- $hosts = concat $hosts (list $name (printf "%s:%s" $name $port)) -}}
{{- end -}}
{{- if .Values.ingress.enabled -}}
{{- range .Values.ingress.hosts }}{{ $hosts = append $hosts .host }}{{ end -}}
{{- end -}}
{{- if .Values.httpRoute.enabled -}}
{{- $hosts = concat $hosts .Values.httpRoute.hostnames -}}
{{- end -}}
{{- if or .Values.server.allowPrivateNetworks .Values.server.metrics.serviceMonitor.enabled -}}
{{- $hosts = concat $hosts (include "mlflow-stack.podNetworkHosts" . | splitList ",") -}}
{{- end -}}
{{- concat $hosts .Values.server.allowedHosts | uniq | join "," -}}
{{- end -}}

{{/* The `mlflow server` arguments, built in one place from the values. */}}
{{- define "mlflow-stack.serverArgs" -}}
{{- $s := .Values.server -}}
- --host=0.0.0.0
- --port=5000
- --workers={{ $s.workers }}
- --backend-store-uri={{ include "mlflow-stack.databaseUri" (dict "ctx" .) }}
- --serve-artifacts
- --artifacts-destination={{ include "mlflow-stack.artifactsDestination" . }}
- --allowed-hosts={{ include "mlflow-stack.allowedHosts" . }}
{{- with $s.corsAllowedOrigins }}
- --cors-allowed-origins={{ join "," . }}
{{- end }}
{{- with $s.staticPrefix }}
- --static-prefix={{ . }}
{{- end }}
{{- if $s.auth.enabled }}
- --app-name=basic-auth
{{- end }}
{{- if $s.metrics.enabled }}
- --expose-prometheus=/tmp/prometheus-metrics
{{- end }}
{{- if $s.tls.enabled }}
{{- $dir := include "mlflow-stack.tls.serverDir" . }}
- --uvicorn-opts=--ssl-keyfile {{ $dir }}/tls.key --ssl-certfile {{ $dir }}/tls.crt
{{- end }}
{{- with $s.extraArgs }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Basic-auth settings of the server and its auth-admin init container (empty with server.auth.enabled=false). */}}
{{- define "mlflow-stack.auth.serverEnv" -}}
{{- $a := .Values.server.auth -}}
{{- if $a.enabled -}}
- name: MLFLOW_AUTH_CONFIG_PATH
  value: /etc/mlflow-auth/basic_auth.ini
- name: MLFLOW_AUTH_ADMIN_USERNAME
  value: {{ $a.adminUsername | quote }}
- name: MLFLOW_AUTH_ADMIN_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "mlflow-stack.auth.secretName" . }}
      key: {{ $a.adminPasswordKey }}
- name: MLFLOW_FLASK_SERVER_SECRET_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "mlflow-stack.auth.secretName" . }}
      key: {{ $a.flaskSecretKeyKey }}
{{- end }}
{{- end -}}

{{/* What the auth-admin init container grants the chart's client user, as JSON {"experiments": [NAME], "models": {NAME: PERMISSION}}: MANAGE on the chart's own experiments (training.experiment, helm test's `helm-test`) where they exist and on the registered models its training registers (training.params.registerModel, of every variant), READ on serving.model (unless it is one of those). */}}
{{- define "mlflow-stack.auth.clientGrants" -}}
{{- $t := .Values.training -}}
{{- $models := dict -}}
{{- $all := list $t.params -}}
{{- range $_, $v := $t.variants | default dict }}{{ $all = append $all (($v | default dict).params | default dict) }}{{ end -}}
{{- range $all -}}
{{- with .registerModel }}{{ $_ := set $models (toString .) "MANAGE" }}{{ end -}}
{{- end -}}
{{- if and .Values.serving.enabled .Values.serving.model (not (hasKey $models (toString .Values.serving.model))) -}}
{{- $_ := set $models (toString .Values.serving.model) "READ" -}}
{{- end -}}
{{- toJson (dict "experiments" (list (toString $t.experiment) "helm-test" | uniq) "models" $models) -}}
{{- end -}}

{{/* server.extraContainers/extraInitContainers (dict "list" L "ctx" $): rendered with tpl, each with containerSecurityContext under its own securityContext. */}}
{{- define "mlflow-stack.extraContainers" -}}
{{- $out := list -}}
{{- range include "mlflow-stack.tplvalues.render" (dict "value" .list "ctx" .ctx) | fromYamlArray -}}
{{- $out = append $out (mergeOverwrite (dict "securityContext" (deepCopy $.ctx.Values.containerSecurityContext)) .) -}}
{{- end -}}
{{- toYaml $out -}}
{{- end -}}
