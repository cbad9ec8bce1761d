{{/* Chart name, overridable with nameOverride. */}}
{{- define "mlflow-stack.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Resource name prefix: fullnameOverride, else <release>-<chart> (just <release> when it already contains the chart name). */}}
{{- define "mlflow-stack.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Name of one component's resources, <fullname>-<suffix>, within a name limit (dict "ctx" $ "suffix" SUFFIX ["max" N], default 63): the full name is shortened, the suffix kept whole. */}}
{{- define "mlflow-stack.componentName" -}}
{{- $keep := sub (.max | default 63 | int) (add1 (len .suffix)) | int -}}
{{- printf "%s-%s" (include "mlflow-stack.fullname" .ctx | trunc $keep | trimSuffix "-") .suffix -}}
{{- end -}}

{{/* Name of the bundled PostgreSQL's StatefulSet, Service, NetworkPolicy: at most 52 characters (its pods get a controller-revision-hash label of the name plus 11). */}}
{{- define "mlflow-stack.postgresql.fullname" -}}
{{- include "mlflow-stack.componentName" (dict "ctx" . "suffix" "postgresql" "max" 52) -}}
{{- end -}}

{{/* Name of the bundled object store's PVC, Deployment, Service and NetworkPolicy. */}}
{{- define "mlflow-stack.objectStore.fullname" -}}
{{- include "mlflow-stack.componentName" (dict "ctx" . "suffix" "objectstore") -}}
{{- end -}}

{{/* Selector labels of one component; call with (dict "ctx" $ "component" "server"). */}}
{{- define "mlflow-stack.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mlflow-stack.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Standard labels of one component's resources; call like selectorLabels. */}}
{{- define "mlflow-stack.labels" -}}
{{ include "mlflow-stack.selectorLabels" . }}
helm.sh/chart: {{ printf "%s-%s" .ctx.Chart.Name .ctx.Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: mlflow-stack
{{- with .ctx.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Image reference from an image block; call with (dict "ctx" $ "image" .Values.server.image); the tag defaults to appVersion, a digest pins it. The trainer's `variant: cuda` defaults the tag to <appVersion>-cuda and pins cudaDigest instead. */}}
{{- define "mlflow-stack.image" -}}
{{- $cuda := eq (toString .image.variant) "cuda" -}}
{{- printf "%s:%s" .image.repository (.image.tag | default (printf "%s%s" .ctx.Chart.AppVersion (ternary "-cuda" "" $cuda)) | toString) -}}
{{- with ternary .image.cudaDigest .image.digest $cuda }}@{{ . }}{{ end -}}
{{- end -}}

{{/* ServiceAccount the pods run as. */}}
{{- define "mlflow-stack.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "mlflow-stack.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Name of the tracking server's Service (server.service.name, else the full name). */}}
{{- define "mlflow-stack.serviceName" -}}
{{- .Values.server.service.name | default (include "mlflow-stack.fullname" .) -}}
{{- end -}}

{{/* In-cluster tracking URI: http(s)://<service>.<namespace>.svc.cluster.local:<port><staticPrefix> (https with server.tls). */}}
{{- define "mlflow-stack.trackingUri" -}}
{{- printf "%s://%s.%s.svc.cluster.local:%v%s" (ternary "https" "http" .Values.server.tls.enabled) (include "mlflow-stack.serviceName" .) .Release.Namespace .Values.server.service.port .Values.server.staticPrefix -}}
{{- end -}}

{{/* With server.tls: a client's env naming the CA it verifies the server with (MLflow's client and the trainer read it). */}}
{{- define "mlflow-stack.tls.clientEnv" -}}
{{- if .Values.server.tls.enabled }}
- name: MLFLOW_TRACKING_SERVER_CERT_PATH
  value: /etc/mlflow-tls-ca/ca.crt
{{- end }}
{{- end -}}

{{/* With server.tls: a client's mount of the CA (clientEnv's path). */}}
{{- define "mlflow-stack.tls.clientMount" -}}
{{- if .Values.server.tls.enabled }}
- name: tracking-ca
  mountPath: /etc/mlflow-tls-ca
  readOnly: true
{{- end }}
{{- end -}}

{{/* With server.tls: a client pod's volume with only the CA key of the TLS Secret (never the private key). */}}
{{- define "mlflow-stack.tls.clientVolume" -}}
{{- with .Values.server.tls }}{{ if .enabled }}
- name: tracking-ca
  secret:
    secretName: {{ .secretName }}
    items:
      - key: {{ .caKey }}
        path: ca.crt
{{- end }}{{ end }}
{{- end -}}

{{/* Annotations of chart-generated Secrets and PVCs: `helm uninstall` leaves them (data and credentials survive). */}}
{{- define "mlflow-stack.keepAnnotations" -}}
helm.sh/resource-policy: keep
{{- end -}}

{{/* Secret with the PostgreSQL password: backend.postgresql.existingSecret, else the generated <fullname>-postgresql. */}}
{{- define "mlflow-stack.postgresql.secretName" -}}
{{- .Values.backend.postgresql.existingSecret | default (include "mlflow-stack.postgresql.fullname" .) -}}
{{- end -}}

{{/* Secret with the MySQL password: backend.mysql.existingSecret, else the generated <fullname>-mysql. */}}
{{- define "mlflow-stack.mysql.secretName" -}}
{{- .Values.backend.mysql.existingSecret | default (include "mlflow-stack.componentName" (dict "ctx" . "suffix" "mysql")) -}}
{{- end -}}

{{/* PyMySQL's client option file with the MySQL password, written by the db-upgrade init container into the pod's /tmp. */}}
{{- define "mlflow-stack.mysql.optionFile" -}}
/tmp/mlflow-mysql.cnf
{{- end -}}

{{/* SQLAlchemy's PyMySQL TLS query arguments for backend.mysql.sslMode (each starting with &; none when empty). */}}
{{- define "mlflow-stack.mysql.sslQuery" -}}
{{- $my := .Values.backend.mysql -}}
{{- if eq $my.sslMode "disable" }}&ssl_disabled=true
{{- else if eq $my.sslMode "require" }}&ssl_check_hostname=false
{{- else if eq $my.sslMode "verify-ca" }}&ssl_ca={{ $my.sslCa }}&ssl_check_hostname=false
{{- else if eq $my.sslMode "verify-full" }}&ssl_ca={{ $my.sslCa }}
{{- end -}}
{{- end -}}

{{/* "true" when the credentials hook generates the bundled object store's S3 keys (objectStore.enabled, no existingSecret, no accessKeyId), else empty. */}}
{{- define "mlflow-stack.s3.generated" -}}
{{- if and .Values.objectStore.enabled (not .Values.artifacts.s3.existingSecret) (not .Values.artifacts.s3.accessKeyId) }}true{{ end -}}
{{- end -}}

{{/* Secret with the S3 credentials (envFrom): artifacts.s3.existingSecret, else the hook's <fullname>-objectstore-keys when it generates them, else the chart's <fullname>-s3-credentials. */}}
{{- define "mlflow-stack.s3.secretName" -}}
{{- if .Values.artifacts.s3.existingSecret -}}
{{- .Values.artifacts.s3.existingSecret -}}
{{- else if include "mlflow-stack.s3.generated" . -}}
{{- include "mlflow-stack.objectStore.keysSecretName" . -}}
{{- else -}}
{{- include "mlflow-stack.componentName" (dict "ctx" . "suffix" "s3-credentials") -}}
{{- end -}}
{{- end -}}

{{/* Secret holding the bundled object store's generated S3 keys (created by the credentials hook, never rendered: no upgrade or rollback overwrites it; the name of installs from before, which keep theirs). */}}
{{- define "mlflow-stack.objectStore.keysSecretName" -}}
{{- include "mlflow-stack.componentName" (dict "ctx" . "suffix" "objectstore-keys") -}}
{{- end -}}

{{/* Secret with the basic-auth admin password and Flask secret key: server.auth.existingSecret, else the generated <fullname>-auth. */}}
{{- define "mlflow-stack.auth.secretName" -}}
{{- .Values.server.auth.existingSecret | default (include "mlflow-stack.componentName" (dict "ctx" . "suffix" "auth")) -}}
{{- end -}}

{{/* Secret with the password of the chart's non-admin client user: server.auth.clientExistingSecret, else the generated (or, with clientPassword, rendered) <fullname>-auth-client. */}}
{{- define "mlflow-stack.auth.clientSecretName" -}}
{{- .Values.server.auth.clientExistingSecret | default (include "mlflow-stack.componentName" (dict "ctx" . "suffix" "auth-client")) -}}
{{- end -}}

{{/* TCP port of an http(s) URL (for egress rules): its explicit port, else 80 for http, else 443. */}}
{{- define "mlflow-stack.urlPort" -}}
{{- $url := urlParse . -}}
{{- if regexMatch ":[0-9]+$" $url.host -}}
{{- splitList ":" $url.host | last -}}
{{- else -}}
{{- ternary 80 443 (eq $url.scheme "http") -}}
{{- end -}}
{{- end -}}

{{/* TCP port of the OIDC provider (the server's egress rule): networkPolicy.issuerPort (the provider pod's port), else server.oidc.issuerUrl's. */}}
{{- define "mlflow-stack.oidc.issuerPort" -}}
{{- .Values.networkPolicy.issuerPort | default (include "mlflow-stack.urlPort" .Values.server.oidc.issuerUrl) | int -}}
{{- end -}}

{{/* Host of the PostgreSQL server: the bundled StatefulSet's Service or backend.postgresql.host. */}}
{{- define "mlflow-stack.postgresql.host" -}}
{{- if .Values.backend.postgresql.bundled -}}
{{- printf "%s.%s.svc.cluster.local" (include "mlflow-stack.postgresql.fullname" .) .Release.Namespace -}}
{{- else -}}
{{- .Values.backend.postgresql.host -}}
{{- end -}}
{{- end -}}

{{/* SQLAlchemy URI of a database on the backend (default: mlflow.db); no password: psycopg2/libpq read PGPASSWORD, PyMySQL the option file (read_default_file). */}}
{{- define "mlflow-stack.databaseUri" -}}
{{- $pg := .ctx.Values.backend.postgresql -}}
{{- if eq .ctx.Values.backend.type "postgresql" -}}
{{- $port := ternary 5432 $pg.port $pg.bundled -}}
{{- printf "postgresql+psycopg2://%s@%s:%v/%s" $pg.username (include "mlflow-stack.postgresql.host" .ctx) $port $pg.database -}}
{{- with $pg.sslMode }}?sslmode={{ . }}{{ end -}}
{{- else if eq .ctx.Values.backend.type "mysql" -}}
{{- $my := .ctx.Values.backend.mysql -}}
{{- printf "mysql+pymysql://%s@%s:%v/%s?read_default_file=%s" $my.username $my.host $my.port $my.database (include "mlflow-stack.mysql.optionFile" .ctx) -}}
{{- include "mlflow-stack.mysql.sslQuery" .ctx -}}
{{- else -}}
{{- printf "sqlite:////mlflow-data/%s" (.file | default "mlflow.db") -}}
{{- end -}}
{{- end -}}

{{/* S3 endpoint: artifacts.s3.endpointUrl, else the bundled object store's Service (empty for AWS S3). */}}
{{- define "mlflow-stack.s3.endpoint" -}}
{{- if .Values.artifacts.s3.endpointUrl -}}
{{- .Values.artifacts.s3.endpointUrl -}}
{{- else if .Values.objectStore.enabled -}}
{{- printf "http://%s.%s.svc.cluster.local:9000" (include "mlflow-stack.objectStore.fullname" .) .Release.Namespace -}}
{{- end -}}
{{- end -}}

{{/* TCP port of the S3 endpoint (for egress rules): networkPolicy.s3Port, else the URL's port, else 80 for http, else 443 (also AWS S3). */}}
{{- define "mlflow-stack.s3.port" -}}
{{- .Values.networkPolicy.s3Port | default (include "mlflow-stack.urlPort" (include "mlflow-stack.s3.endpoint" . | default "https://s3.amazonaws.com")) | int -}}
{{- end -}}

{{/* Egress rules to the cloud's credential endpoints for the storage credential mode that fetches its tokens there, else empty: GCS without a key file (GKE metadata server: 169.254.169.254:80 on Dataplane V2, 169.254.169.252:988 on Calico clusters), S3 without keys nor IRSA (EKS Pod Identity agent, then the EC2 instance profile; IPv4 and IPv6). */}}
{{- define "mlflow-stack.artifacts.metadataEgress" -}}
{{- $a := .Values.artifacts -}}
{{- if and (eq $a.type "gcs") (not $a.gcs.existingSecret) }}
- ports: [{port: 80, protocol: TCP}]
  to: [{ipBlock: {cidr: 169.254.169.254/32}}]
- ports: [{port: 988, protocol: TCP}]
  to: [{ipBlock: {cidr: 169.254.169.252/32}}]
{{- else if and (eq $a.type "s3") (not .Values.objectStore.enabled) (not $a.s3.existingSecret) (not $a.s3.accessKeyId) (not (hasKey (.Values.serviceAccount.annotations | default dict) "eks.amazonaws.com/role-arn")) }}
- ports: [{port: 80, protocol: TCP}]
  to:
    - ipBlock: {cidr: 169.254.170.23/32}
    - ipBlock: {cidr: "fd00:ec2::23/128"}
    - ipBlock: {cidr: 169.254.169.254/32}
    - ipBlock: {cidr: "fd00:ec2::254/128"}
{{- end -}}
{{- end -}}

{{/* Egress rule to TCP ports (dict "ports" LIST "cidrs" LIST), to those CIDRs when any (any address otherwise): the API server's, an external database's, the artifact store's. */}}
{{- define "mlflow-stack.networkPolicy.tcpRule" -}}
- ports:
    {{- range .ports }}
    - {port: {{ int . }}, protocol: TCP}
    {{- end }}
  {{- with .cidrs }}
  to:
    {{- range . }}
    - ipBlock: {cidr: {{ . | quote }}}
    {{- end }}
  {{- end }}
{{- end -}}

{{/* Egress rule to the Kubernetes API server (credentials hook, serving follower): networkPolicy.apiServerPorts, to networkPolicy.apiServerCIDRs when set. */}}
{{- define "mlflow-stack.networkPolicy.apiServerRule" -}}
{{- include "mlflow-stack.networkPolicy.tcpRule" (dict "ports" .Values.networkPolicy.apiServerPorts "cidrs" .Values.networkPolicy.apiServerCIDRs) -}}
{{- end -}}

{{/* podSelector of this release's pods of some components (dict "ctx" $ "components" LIST): the egress policies of one flow's clients. */}}
{{- define "mlflow-stack.networkPolicy.componentSelector" -}}
matchLabels:
  app.kubernetes.io/name: {{ include "mlflow-stack.name" .ctx }}
  app.kubernetes.io/instance: {{ .ctx.Release.Name }}
matchExpressions:
  - {key: app.kubernetes.io/component, operator: In, values: [{{ join ", " .components }}]}
{{- end -}}

{{/* TCP port of an external PostgreSQL or MySQL server (its clients' egress rule): networkPolicy.databasePort, else the backend's port; empty for SQLite and the bundled PostgreSQL. */}}
{{- define "mlflow-stack.externalDatabasePort" -}}
{{- $b := .Values.backend -}}
{{- if and (eq $b.type "postgresql") (not $b.postgresql.bundled) -}}
{{- .Values.networkPolicy.databasePort | default $b.postgresql.port | int -}}
{{- else if eq $b.type "mysql" -}}
{{- .Values.networkPolicy.databasePort | default $b.mysql.port | int -}}
{{- end -}}
{{- end -}}

{{/* "true" when a NetworkPolicyPeer list holds an ipBlock peer: the only peer that matches node and load balancer addresses (a NodePort or LoadBalancer Service's traffic). */}}
{{- define "mlflow-stack.networkPolicy.hasIpBlock" -}}
{{- range . }}{{ if .ipBlock }}true{{ end }}{{ end -}}
{{- end -}}

{{/* "true" when a NetworkPolicyPeer list reaches past the policy's own namespace (a namespaceSelector or ipBlock peer). */}}
{{- define "mlflow-stack.networkPolicy.crossesNamespace" -}}
{{- range . }}{{ if or (hasKey . "namespaceSelector") .ipBlock }}true{{ end }}{{ end -}}
{{- end -}}

{{/* Components of the release's pods that call MLflow's own port (training, serving, its follower, gc, helm test; the credentials and bucket hooks never do), as a flow list. */}}
{{- define "mlflow-stack.trackingClientComponents" -}}
[training, serving, serving-follower, gc, test]
{{- end -}}

{{/* Pod components that use training.trackingUri (training, serving and its follower, as enabled), as JSON; empty list without an external tracking URI. */}}
{{- define "mlflow-stack.trackingUri.externalClients" -}}
{{- $c := list -}}
{{- $uri := .Values.training.trackingUri -}}
{{- if and $uri (ne $uri (include "mlflow-stack.trackingUri" .)) -}}
{{- if .Values.training.enabled }}{{ $c = append $c "training" }}{{ end -}}
{{- if .Values.serving.enabled }}{{ $c = concat $c (list "serving" "serving-follower") }}{{ end -}}
{{- end -}}
{{- toJson $c -}}
{{- end -}}

{{/* Artifact destination by artifacts.type: s3://<bucket>, gs://<bucket> or wasbs://<container>@<account>.blob.core.windows.net, then [/<prefix>]. */}}
{{- define "mlflow-stack.artifactsDestination" -}}
{{- $a := .Values.artifacts -}}
{{- if eq $a.type "gcs" -}}
{{- printf "gs://%s" $a.bucket -}}
{{- else if eq $a.type "azure" -}}
{{- printf "wasbs://%s@%s.blob.core.windows.net" $a.bucket $a.azure.storageAccount -}}
{{- else -}}
{{- printf "s3://%s" $a.bucket -}}
{{- end -}}
{{- with $a.prefix }}/{{ . }}{{ end -}}
{{- end -}}

{{/* Mount directory of the GCS service-account key file (artifacts.gcs.existingSecret). */}}
{{- define "mlflow-stack.gcs.keyDir" -}}
/etc/mlflow-gcs
{{- end -}}

{{/* Environment of the artifact store's clients (server, bucket hook) besides envFrom: the S3 settings, or GCS's key file and project. */}}
{{- define "mlflow-stack.artifacts.env" -}}
{{- $a := .Values.artifacts -}}
{{- if eq $a.type "gcs" -}}
{{- if $a.gcs.existingSecret }}
- name: GOOGLE_APPLICATION_CREDENTIALS
  value: {{ printf "%s/key.json" (include "mlflow-stack.gcs.keyDir" .) | quote }}
{{- end }}
{{- with $a.gcs.project }}
- name: GOOGLE_CLOUD_PROJECT
  value: {{ . | quote }}
{{- end }}
{{- else -}}
{{- include "mlflow-stack.s3.env" . -}}
{{- end -}}
{{- end -}}

{{/* envFrom items of the artifact store's clients: the S3 Secret, artifacts.azure.existingSecret (Azure's env var keys), none for GCS (a key file) or Azure without a Secret. */}}
{{- define "mlflow-stack.artifacts.envFrom" -}}
{{- $a := .Values.artifacts -}}
{{- if eq $a.type "s3" }}
- secretRef:
    name: {{ include "mlflow-stack.s3.secretName" . }}
{{- else if and (eq $a.type "azure") $a.azure.existingSecret }}
- secretRef:
    name: {{ $a.azure.existingSecret }}
{{- end -}}
{{- end -}}

{{/* Volume mount of the GCS key file (artifacts.type=gcs with existingSecret), else empty. */}}
{{- define "mlflow-stack.artifacts.volumeMount" -}}
{{- if and (eq .Values.artifacts.type "gcs") .Values.artifacts.gcs.existingSecret }}
- name: gcs-key
  mountPath: {{ include "mlflow-stack.gcs.keyDir" . }}
  readOnly: true
{{- end -}}
{{- end -}}

{{/* Volume of the GCS key file: only its key, as key.json (the Secret's default mode, as for server.tls: the pod's user is not root). */}}
{{- define "mlflow-stack.artifacts.volume" -}}
{{- $g := .Values.artifacts.gcs -}}
{{- if and (eq .Values.artifacts.type "gcs") $g.existingSecret }}
- name: gcs-key
  secret:
    secretName: {{ $g.existingSecret }}
    items:
      - key: {{ $g.keyFileKey }}
        path: key.json
{{- end -}}
{{- end -}}

{{/* Pod labels the artifact store needs: AKS Workload Identity's `azure.workload.identity/use` for Azure without a Secret. */}}
{{- define "mlflow-stack.artifacts.podLabels" -}}
{{- if and (eq .Values.artifacts.type "azure") (not .Values.artifacts.azure.existingSecret) }}
azure.workload.identity/use: "true"
{{- end -}}
{{- end -}}

{{/* The backend's password from its Secret (none with SQLite): PGPASSWORD, which libpq reads, or MYSQL_PASSWORD, which the db-upgrade init container writes to PyMySQL's option file; no URI carries it. */}}
{{- define "mlflow-stack.backend.passwordEnv" -}}
{{- if eq .Values.backend.type "postgresql" -}}
- name: PGPASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "mlflow-stack.postgresql.secretName" . }}
      key: {{ .Values.backend.postgresql.passwordKey }}
{{- else if eq .Values.backend.type "mysql" -}}
- name: MYSQL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "mlflow-stack.mysql.secretName" . }}
      key: {{ .Values.backend.mysql.passwordKey }}
{{- end }}
{{- end -}}

{{/* Pod security context: the global podSecurityContext with a component's overrides (dict "ctx" $ "override" MAP). */}}
{{- define "mlflow-stack.podSecurityContext" -}}
{{- toYaml (mergeOverwrite (deepCopy .ctx.Values.podSecurityContext) (.override | default dict)) -}}
{{- end -}}

{{/* Pod-level settings shared by every pod: service account, pull secrets, security context; call like podSecurityContext, with "serviceAccount" NAME for a pod that runs as its own ServiceAccount and mounts its token (the serving follower). */}}
{{- define "mlflow-stack.podCommon" -}}
{{- if .serviceAccount -}}
serviceAccountName: {{ .serviceAccount }}
automountServiceAccountToken: true
{{- else -}}
serviceAccountName: {{ include "mlflow-stack.serviceAccountName" .ctx }}
automountServiceAccountToken: {{ .ctx.Values.serviceAccount.automountServiceAccountToken }}
{{- end }}
{{- with .ctx.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- include "mlflow-stack.podSecurityContext" . | nindent 2 }}
{{- end -}}

{{/* The writable /tmp every container gets (the root filesystem is read-only): the volume. */}}
{{- define "mlflow-stack.tmpVolume" -}}
- name: tmp
  emptyDir:
    sizeLimit: 1Gi
{{- end -}}

{{/* The writable /tmp every container gets: the mount. */}}
{{- define "mlflow-stack.tmpMount" -}}
- name: tmp
  mountPath: /tmp
{{- end -}}

{{/* nodeSelector/tolerations/affinity of a pod from a component's values block (server, backend.postgresql, training). */}}
{{- define "mlflow-stack.scheduling" -}}
{{- with .nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* S3 client settings besides the keys, as plain env (also with artifacts.s3.existingSecret): endpoint, region, TLS skip; none unless artifacts.type=s3. */}}
{{- define "mlflow-stack.s3.env" -}}
{{- if eq .Values.artifacts.type "s3" -}}
{{- with include "mlflow-stack.s3.endpoint" . }}
- name: MLFLOW_S3_ENDPOINT_URL
  value: {{ . | quote }}
{{- end }}
{{- with .Values.artifacts.s3.region }}
- name: AWS_DEFAULT_REGION
  value: {{ . | quote }}
{{- end }}
{{- if .Values.artifacts.s3.ignoreTls }}
- name: MLFLOW_S3_IGNORE_TLS
  value: "true"
{{- end }}
{{- end -}}
{{- end -}}

{{/* MLflow client login (basic auth on) of serving, its follower, gc and the helm test pod: the chart's non-admin client user (server.auth.clientUsername) and its password, never the admin's (the training Job's: training/_jobspec.tpl). */}}
{{- define "mlflow-stack.trackingAuthEnv" -}}
{{- if .Values.server.auth.enabled }}
- name: MLFLOW_TRACKING_USERNAME
  value: {{ .Values.server.auth.clientUsername | quote }}
- name: MLFLOW_TRACKING_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "mlflow-stack.auth.clientSecretName" . }}
      key: {{ .Values.server.auth.clientPasswordKey }}
{{- end }}
{{- end -}}

{{/* Name of the serving Deployment, Service, PDB, HPA, Ingress and NetworkPolicy (the follower patches it): <fullname>-serving. */}}
{{- define "mlflow-stack.serving.fullname" -}}
{{- include "mlflow-stack.componentName" (dict "ctx" . "suffix" "serving") -}}
{{- end -}}

{{/* A value rendered through tpl (bitnami's common.tplvalues.render): a string as is, anything else as its YAML; (dict "value" V "ctx" $). */}}
{{- define "mlflow-stack.tplvalues.render" -}}
{{- tpl (ternary .value (toYaml .value) (kindIs "string" .value)) .ctx -}}
{{- end -}}
