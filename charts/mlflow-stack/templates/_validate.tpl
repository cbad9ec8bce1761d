{{/* Cross-field rules values.schema.json cannot express; each failure names the field to fix. Included by server/deployment.yaml. */}}
{{- define "mlflow-stack.validate" -}}
{{- $v := .Values -}}
{{- $s := $v.server -}}
{{- $pg := $v.backend.postgresql -}}
{{- $my := $v.backend.mysql -}}
{{- $s3 := $v.artifacts.s3 -}}
{{- $errors := list -}}
{{- if eq $v.backend.type "sqlite" -}}
  {{- if gt (int $s.replicas) 1 -}}
    {{- $errors = append $errors (printf "server.replicas=%v needs backend.type=postgresql or mysql: SQLite is a single-writer file on a ReadWriteOnce volume" $s.replicas) -}}
  {{- end -}}
  {{- if $s.autoscaling.enabled -}}
    {{- $errors = append $errors "server.autoscaling.enabled=true needs backend.type=postgresql or mysql: SQLite allows one server pod" -}}
  {{- end -}}
  {{- if $v.gc.enabled -}}
    {{- $errors = append $errors "gc.enabled=true needs backend.type=postgresql: the SQLite database is a file on the server's ReadWriteOnce volume (backend.sqlite.persistence), which the gc CronJob's pod cannot open beside the server" -}}
  {{- end -}}
{{- else if eq $v.backend.type "mysql" -}}
  {{- if not $my.host -}}
    {{- $errors = append $errors "backend.mysql.host is required when backend.type=mysql (an external MySQL/MariaDB server)" -}}
  {{- end -}}
  {{- if or $pg.host $pg.password $pg.existingSecret $pg.sslMode (not $pg.bundled) -}}
    {{- $errors = append $errors "backend.postgresql.* is set (host, password, existingSecret, sslMode or bundled=false) while backend.type=mysql: configure the server under backend.mysql" -}}
  {{- end -}}
  {{- if $s.auth.enabled -}}
    {{- $errors = append $errors "server.auth.enabled=true does not work with backend.type=mysql: MLflow's basic-auth migration names two foreign keys fk_user_id, which MySQL and MariaDB refuse (unique per database; mlflow/mlflow#9642); set server.auth.enabled=false and authenticate in front of the server (e.g. at the ingress)" -}}
  {{- end -}}
  {{- if $v.gc.enabled -}}
    {{- $errors = append $errors "gc.enabled=true needs backend.type=postgresql: with backend.type=mysql the password reaches PyMySQL through an option file that only the server pod's init container writes" -}}
  {{- end -}}
  {{- if and (has $my.sslMode (list "verify-ca" "verify-full")) (not $my.sslCa) -}}
    {{- $errors = append $errors (printf "backend.mysql.sslCa is required with backend.mysql.sslMode=%s (the CA bundle the certificate is checked against)" $my.sslMode) -}}
  {{- end -}}
{{- else -}}
  {{- if and (not $pg.bundled) (not $pg.host) -}}
    {{- $errors = append $errors "backend.postgresql.host is required when backend.postgresql.bundled=false (external PostgreSQL)" -}}
  {{- end -}}
  {{- if and $pg.bundled $pg.host -}}
    {{- $errors = append $errors "backend.postgresql.host must be empty when backend.postgresql.bundled=true (set bundled=false to use an external server)" -}}
  {{- end -}}
  {{- if and $pg.bundled $pg.sslMode -}}
    {{- $errors = append $errors (printf "backend.postgresql.sslMode=%s applies to an external server only: the bundled PostgreSQL has SSL off (leave it empty)" $pg.sslMode) -}}
  {{- end -}}
{{- end -}}
{{- if and $s.tls.enabled (not $s.tls.secretName) -}}
  {{- $errors = append $errors "server.tls.secretName is required when server.tls.enabled=true (a kubernetes.io/tls Secret with tls.crt and tls.key)" -}}
{{- end -}}
{{- if $s.tls.enabled -}}
  {{- range $s.extraArgs -}}
    {{- if regexMatch "^--(uvicorn|gunicorn|waitress)-opts" (toString .) -}}
      {{- $errors = append $errors (printf "server.extraArgs %s with server.tls.enabled=true: the chart passes --uvicorn-opts for TLS (one uvicorn, its TLS options)" (toString .)) -}}
    {{- end -}}
  {{- end -}}
{{- end -}}
{{- if and $pg.password $pg.existingSecret -}}
  {{- $errors = append $errors "backend.postgresql.password and backend.postgresql.existingSecret are exclusive: the password comes from one place" -}}
{{- end -}}
{{- if and $my.password $my.existingSecret -}}
  {{- $errors = append $errors "backend.mysql.password and backend.mysql.existingSecret are exclusive: the password comes from one place" -}}
{{- end -}}
{{- if and $s.auth.adminPassword $s.auth.existingSecret -}}
  {{- $errors = append $errors "server.auth.adminPassword and server.auth.existingSecret are exclusive: the password comes from one place" -}}
{{- end -}}
{{- if and $s.auth.clientPassword $s.auth.clientExistingSecret -}}
  {{- $errors = append $errors "server.auth.clientPassword and server.auth.clientExistingSecret are exclusive: the password comes from one place" -}}
{{- end -}}
{{- if and $s.auth.enabled (eq (toString $s.auth.clientUsername) (toString $s.auth.adminUsername)) -}}
  {{- $errors = append $errors (printf "server.auth.clientUsername must differ from server.auth.adminUsername (%s): the chart's clients log in as a user without admin rights" $s.auth.adminUsername) -}}
{{- end -}}
{{- if and $s3.existingSecret (or $s3.accessKeyId $s3.secretAccessKey) -}}
  {{- $errors = append $errors "artifacts.s3.accessKeyId/secretAccessKey and artifacts.s3.existingSecret are exclusive: the keys come from one place" -}}
{{- end -}}
{{- if ne (empty $s3.accessKeyId) (empty $s3.secretAccessKey) -}}
  {{- $errors = append $errors "artifacts.s3.accessKeyId and artifacts.s3.secretAccessKey must be set together" -}}
{{- end -}}
{{- $a := $v.artifacts -}}
{{- if ne $a.type "s3" -}}
  {{- if $v.objectStore.enabled -}}
    {{- $errors = append $errors (printf "artifacts.type=%s needs objectStore.enabled=false: the bundled object store speaks S3 only" $a.type) -}}
  {{- end -}}
  {{- $set := list -}}
  {{- range $k := list "endpointUrl" "region" "ignoreTls" "existingSecret" "accessKeyId" "secretAccessKey" -}}
    {{- if index $s3 $k }}{{ $set = append $set $k }}{{ end -}}
  {{- end -}}
  {{- if $set -}}
    {{- $errors = append $errors (printf "artifacts.s3.* is set (%s) while artifacts.type=%s: configure the store under artifacts.%s" (join ", " $set) $a.type $a.type) -}}
  {{- end -}}
{{- end -}}
{{- if and (ne $a.type "gcs") (or $a.gcs.existingSecret $a.gcs.project $a.gcs.location) -}}
  {{- $errors = append $errors (printf "artifacts.gcs.* is set (existingSecret, project or location) while artifacts.type=%s: set artifacts.type=gcs or leave artifacts.gcs empty" $a.type) -}}
{{- end -}}
{{- if and (ne $a.type "azure") (or $a.azure.storageAccount $a.azure.existingSecret) -}}
  {{- $errors = append $errors (printf "artifacts.azure.* is set (storageAccount or existingSecret) while artifacts.type=%s: set artifacts.type=azure or leave artifacts.azure empty" $a.type) -}}
{{- end -}}
{{- if eq $a.type "azure" -}}
  {{- if not $a.azure.storageAccount -}}
    {{- $errors = append $errors "artifacts.azure.storageAccount is required when artifacts.type=azure (the <account> of wasbs://<container>@<account>.blob.core.windows.net)" -}}
  {{- end -}}
  {{- if or (contains "." $a.bucket) (contains "--" $a.bucket) -}}
    {{- $errors = append $errors (printf "artifacts.bucket=%s is not an Azure container name (letters, digits and single hyphens, no dots)" $a.bucket) -}}
  {{- end -}}
{{- end -}}
{{- if and (eq $a.type "s3") (not (or $v.objectStore.enabled $s3.endpointUrl $s3.accessKeyId $s3.existingSecret $v.serviceAccount.annotations (ne $v.artifacts.bucket "mlflow"))) -}}
  {{- $errors = append $errors "objectStore.enabled=false leaves no usable artifact store: set artifacts.s3.endpointUrl, artifacts.s3.accessKeyId/secretAccessKey or artifacts.s3.existingSecret, an IRSA role in serviceAccount.annotations, or an artifacts.bucket of your own (on AWS the default bucket name mlflow belongs to someone else)" -}}
{{- end -}}
{{- if and $v.networkPolicy.enabled (not $v.objectStore.enabled) $s3.existingSecret (not $s3.endpointUrl) (not $v.networkPolicy.s3Port) -}}
  {{- $errors = append $errors "networkPolicy.enabled=true with artifacts.s3.existingSecret and no artifacts.s3.endpointUrl: the S3 endpoint comes from the Secret, so the port its egress rule must open is unknown at template time; set networkPolicy.s3Port (e.g. 9000 for MinIO, 443 for AWS S3) or artifacts.s3.endpointUrl (it wins over the Secret's MLFLOW_S3_ENDPOINT_URL)" -}}
{{- end -}}
{{- /* a port override that no rule uses would silently change nothing */ -}}
{{- $np := $v.networkPolicy -}}
{{- if and $np.databasePort (or (eq $v.backend.type "sqlite") (and (eq $v.backend.type "postgresql") $pg.bundled)) -}}
  {{- $errors = append $errors (printf "networkPolicy.databasePort=%v applies to an external PostgreSQL or MySQL server only (backend.type=%s%s): leave it empty" $np.databasePort $v.backend.type (ternary " with the bundled PostgreSQL" "" (eq $v.backend.type "postgresql"))) -}}
{{- end -}}
{{- if and $np.issuerPort (not $s.oidc.enabled) -}}
  {{- $errors = append $errors (printf "networkPolicy.issuerPort=%v needs server.oidc.enabled=true (it is the OIDC provider's port): leave it empty" $np.issuerPort) -}}
{{- end -}}
{{- if and $np.trackingPort (eq (include "mlflow-stack.trackingUri.externalClients" .) "[]") -}}
  {{- $errors = append $errors (printf "networkPolicy.trackingPort=%v needs an external training.trackingUri used by training.enabled or serving.enabled (the chart's own server needs no port): leave it empty" $np.trackingPort) -}}
{{- end -}}
{{- if and $v.objectStore.enabled $s3.endpointUrl -}}
  {{- $errors = append $errors "artifacts.s3.endpointUrl must be empty when objectStore.enabled=true (the bundled store's Service is used)" -}}
{{- end -}}
{{- if and $s.autoscaling.enabled (gt (int $s.autoscaling.minReplicas) (int $s.autoscaling.maxReplicas)) -}}
  {{- $errors = append $errors (printf "server.autoscaling.minReplicas=%v is greater than server.autoscaling.maxReplicas=%v" $s.autoscaling.minReplicas $s.autoscaling.maxReplicas) -}}
{{- end -}}
{{- if and $s.pdb.enabled (not $s.autoscaling.enabled) (kindIs "float64" $s.pdb.minAvailable) (ge (int $s.pdb.minAvailable) (int $s.replicas)) -}}
  {{- $errors = append $errors (printf "server.pdb.minAvailable=%v must be lower than server.replicas=%v, or no node could ever be drained" $s.pdb.minAvailable $s.replicas) -}}
{{- end -}}
{{- if and $s.metrics.serviceMonitor.enabled (not $s.metrics.enabled) -}}
  {{- $errors = append $errors "server.metrics.serviceMonitor.enabled=true needs server.metrics.enabled=true (nothing to scrape otherwise)" -}}
{{- end -}}
{{- $outside := list -}}
{{- if $v.ingress.enabled }}{{ $outside = append $outside "ingress.enabled=true" }}{{ end -}}
{{- if $v.httpRoute.enabled }}{{ $outside = append $outside "httpRoute.enabled=true" }}{{ end -}}
{{- if $s.metrics.serviceMonitor.enabled }}{{ $outside = append $outside "server.metrics.serviceMonitor.enabled=true" }}{{ end -}}
{{- if and $v.networkPolicy.enabled (not $v.networkPolicy.serverFrom) $outside -}}
  {{- $errors = append $errors (printf "networkPolicy.serverFrom is empty while %s: the server's NetworkPolicy would block the ingress controller/Gateway/Prometheus; add their namespace (namespaceSelector) to networkPolicy.serverFrom" (join ", " $outside)) -}}
{{- end -}}
{{- if and $v.networkPolicy.enabled (has $s.service.type (list "NodePort" "LoadBalancer")) (not (include "mlflow-stack.networkPolicy.hasIpBlock" $v.networkPolicy.serverFrom)) -}}
  {{- $errors = append $errors (printf "networkPolicy.serverFrom has no ipBlock peer while server.service.type=%s and networkPolicy.enabled=true: the Service's traffic arrives from node or load balancer addresses, which pod and namespace selectors never match, so the server's NetworkPolicy would drop it; add the addresses allowed to connect as an ipBlock peer (e.g. {ipBlock: {cidr: 203.0.113.0/24}}, 0.0.0.0/0 for the whole internet; docs/chart.md \"NetworkPolicies on other clusters\") or set networkPolicy.enabled=false" $s.service.type) -}}
{{- end -}}
{{- if and $v.httpRoute.enabled (not $v.httpRoute.parentRefs) -}}
  {{- $errors = append $errors "httpRoute.parentRefs must list at least one Gateway (ParentReference) when httpRoute.enabled=true: a route without a parent is attached to nothing" -}}
{{- end -}}
{{- if $v.ingress.enabled -}}
  {{- if not $v.ingress.hosts -}}
    {{- $errors = append $errors "ingress.hosts must list at least one host when ingress.enabled=true" -}}
  {{- end -}}
  {{- $hosts := list -}}
  {{- range $v.ingress.hosts }}{{ $hosts = append $hosts .host }}{{ end -}}
  {{- range $v.ingress.tls -}}
    {{- range .hosts -}}
      {{- if not (has . $hosts) -}}
        {{- $errors = append $errors (printf "ingress.tls host %q is not one of ingress.hosts (%s)" . (join ", " $hosts)) -}}
      {{- end -}}
    {{- end -}}
  {{- end -}}
{{- end -}}
{{- if $v.training.enabled -}}
  {{- /* each Job's training values: the shared ones, or each sweep variant's merged over them */ -}}
  {{- $jobs := list (dict "path" "training" "t" $v.training) -}}
  {{- with $v.training.variants -}}
    {{- $jobs = list -}}
    {{- range $name := keys . | sortAlpha -}}
      {{- if not (regexMatch "^[a-z0-9]([-a-z0-9]{0,18}[a-z0-9])?$" $name) -}}
        {{- $errors = append $errors (printf "training.variants.%s: a variant name is part of Kubernetes names: lowercase letters, digits and '-', at most 20 characters" $name) -}}
      {{- end -}}
      {{- $jobs = append $jobs (dict "path" (printf "training.variants.%s" $name) "t" (include "mlflow-stack.training.variantValues" (dict "t" $v.training "name" $name) | fromJson)) -}}
    {{- end -}}
  {{- end -}}
  {{- range $jobs -}}
  {{- $p := .t.params -}}
  {{- if and (kindIs "string" $p.weights) (not $p.weights) (not $p.cfg) -}}
    {{- $errors = append $errors (printf "%s.params.cfg is required when %s.params.weights is empty (training from scratch), e.g. cfg: yolov5n.yaml" .path .path) -}}
  {{- end -}}
  {{- if and $p.modelAlias (not $p.registerModel) -}}
    {{- $errors = append $errors (printf "%s.params.modelAlias needs %s.params.registerModel (an alias points at a registered model version)" .path .path) -}}
  {{- end -}}
  {{- if and $p.promoteAlias (not $p.registerModel) -}}
    {{- $errors = append $errors (printf "%s.params.promoteAlias needs %s.params.registerModel (only a registered model version can be promoted)" .path .path) -}}
  {{- end -}}
  {{- if and $p.promoteAlias (eq (toString $p.promoteAlias) (toString $p.modelAlias)) -}}
    {{- $errors = append $errors (printf "%s.params.promoteAlias=%s is also %s.params.modelAlias, which always moves: use one of them" .path $p.promoteAlias .path) -}}
  {{- end -}}
  {{- if and $v.training.schedule $p.runName -}}
    {{- $errors = append $errors (printf "%s.params.runName=%s with training.schedule: every scheduled run would get the same name; leave it empty (each run is named yolov5-<dataset>-<UTC time>)" .path $p.runName) -}}
  {{- end -}}
  {{- $d := .t.distributed -}}
  {{- $world := mul (int $d.nnodes) (int $d.nprocPerNode) -}}
  {{- if and $v.training.schedule (gt (int $d.nnodes) 1) -}}
    {{- $errors = append $errors (printf "%s.distributed.nnodes=%v with training.schedule: a distributed training runs as an Indexed Job, not on a schedule" .path $d.nnodes) -}}
  {{- end -}}
  {{- if and (or (gt (int $d.nnodes) 1) (gt (int $d.nprocPerNode) 1)) (not $d.check) -}}
    {{- if eq (toString $p.device) "cpu" -}}
      {{- $errors = append $errors (printf "%s.params.device=cpu with %s.distributed (nnodes=%v, nprocPerNode=%v): YOLOv5's DDP trains on CUDA GPUs only; distributed.check=true checks the wiring on CPU" .path .path $d.nnodes $d.nprocPerNode) -}}
    {{- end -}}
    {{- if or (eq (int $p.batchSize) -1) (mod (int $p.batchSize) $world) -}}
      {{- $errors = append $errors (printf "%s.params.batchSize=%v must be a multiple of the world size %d (distributed.nnodes x distributed.nprocPerNode): it is the total batch over all processes (autobatch -1 does not work with DDP)" .path $p.batchSize $world) -}}
    {{- end -}}
    {{- $gpus := get (.t.resources.limits | default dict) "nvidia.com/gpu" -}}
    {{- if and $gpus (lt (int $gpus) (int $d.nprocPerNode)) -}}
      {{- $errors = append $errors (printf "%s.resources.limits nvidia.com/gpu=%v is fewer than %s.distributed.nprocPerNode=%v: one GPU per process" .path $gpus .path $d.nprocPerNode) -}}
    {{- end -}}
  {{- end -}}
  {{- if and (contains "nvidia.com/gpu" (toJson .t.resources.limits)) (eq (toString $p.device) "cpu") -}}
    {{- $errors = append $errors (printf "%s.params.device=cpu while %s.resources.limits requests nvidia.com/gpu: use device auto or 0" .path .path) -}}
  {{- end -}}
  {{- end -}}
{{- end -}}
{{- $o := $s.oidc -}}
{{- if $o.enabled -}}
  {{- range $f := list "issuerUrl" "clientId" -}}
    {{- if not (get $o $f) -}}
      {{- $errors = append $errors (printf "server.oidc.%s is required when server.oidc.enabled=true" $f) -}}
    {{- end -}}
  {{- end -}}
  {{- if not (or $o.clientSecret $o.existingSecret) -}}
    {{- $errors = append $errors (printf "server.oidc.clientSecret or server.oidc.existingSecret (keys %s and %s) is required when server.oidc.enabled=true" $o.clientSecretKey $o.cookieSecretKey) -}}
  {{- end -}}
  {{- if and $o.clientSecret $o.existingSecret -}}
    {{- $errors = append $errors "server.oidc.clientSecret and server.oidc.existingSecret are exclusive: the client secret comes from one place" -}}
  {{- end -}}
  {{- if not (or $o.emailDomains $o.allowedGroups) -}}
    {{- $errors = append $errors "server.oidc.emailDomains or server.oidc.allowedGroups must say who may log in, e.g. emailDomains: [example.com] (\"*\" admits every account of the provider)" -}}
  {{- end -}}
  {{- if $s.auth.enabled -}}
    {{- $errors = append $errors "server.oidc.enabled=true with server.auth.enabled=true: the browser's login is the provider's, and MLflow's basic auth would ask it for a second password on every request; set server.auth.enabled=false (the NetworkPolicy keeps MLflow's own port to this release's pods)" -}}
  {{- end -}}
  {{- if not $v.networkPolicy.enabled -}}
    {{- $errors = append $errors "server.oidc.enabled=true needs networkPolicy.enabled=true: MLflow's own port has no login behind the proxy, and only the server's NetworkPolicy keeps it to this release's pods (any other pod reaching port 5000 would bypass the login)" -}}
  {{- end -}}
  {{- if $s.metrics.serviceMonitor.enabled -}}
    {{- $errors = append $errors "server.metrics.serviceMonitor.enabled=true with server.oidc.enabled=true: Prometheus would scrape MLflow's own port, which the NetworkPolicy keeps to this release's pods behind the login; scrape it another way or turn one off" -}}
  {{- end -}}
  {{- $callback := printf "%s/oauth2/callback" $s.staticPrefix -}}
  {{- if and $o.redirectUrl (not (hasSuffix $callback $o.redirectUrl)) -}}
    {{- $errors = append $errors (printf "server.oidc.redirectUrl=%s must end in %s (server.staticPrefix + /oauth2/callback), where oauth2-proxy serves the callback" $o.redirectUrl $callback) -}}
  {{- end -}}
  {{- range $o.extraArgs -}}
    {{- if regexMatch "^--(client-secret|cookie-secret)(=|$)" (toString .) -}}
      {{- $errors = append $errors (printf "server.oidc.extraArgs %s: secrets do not go on the command line; they come from server.oidc.clientSecret/existingSecret" (regexReplaceAll "=.*" (toString .) "=...")) -}}
    {{- end -}}
  {{- end -}}
{{- end -}}
{{- $sv := $v.serving -}}
{{- if $sv.enabled -}}
  {{- /* the alias's characters are the schema's (as for training's aliases); MLflow's reserved ones named here */ -}}
  {{- if not $sv.model -}}
    {{- $errors = append $errors (printf "serving.model is required when serving.enabled=true: the registered model to serve (models:/<serving.model>@%s), e.g. training.params.registerModel's" $sv.alias) -}}
  {{- end -}}
  {{- if regexMatch "^([Ll][Aa][Tt][Ee][Ss][Tt]|[vV][0-9]+)$" (toString $sv.alias) -}}
    {{- $errors = append $errors (printf "serving.alias=%s is reserved by MLflow (latest and v<N> name versions, not aliases): follow an alias such as champion" $sv.alias) -}}
  {{- end -}}
  {{- if hasKey ($sv.podAnnotations | default dict) "mlflow-stack.io/model-version" -}}
    {{- $errors = append $errors "serving.podAnnotations must not set mlflow-stack.io/model-version: the follower pins the served version there (helm upgrade would overwrite it)" -}}
  {{- end -}}
  {{- if and $sv.autoscaling.enabled (gt (int $sv.autoscaling.minReplicas) (int $sv.autoscaling.maxReplicas)) -}}
    {{- $errors = append $errors (printf "serving.autoscaling.minReplicas=%v is greater than serving.autoscaling.maxReplicas=%v" $sv.autoscaling.minReplicas $sv.autoscaling.maxReplicas) -}}
  {{- end -}}
  {{- if and $sv.pdb.enabled (not $sv.autoscaling.enabled) (kindIs "float64" $sv.pdb.minAvailable) (ge (int $sv.pdb.minAvailable) (int $sv.replicas)) -}}
    {{- $errors = append $errors (printf "serving.pdb.minAvailable=%v must be lower than serving.replicas=%v, or no node could ever be drained" $sv.pdb.minAvailable $sv.replicas) -}}
  {{- end -}}
  {{- if and $v.networkPolicy.enabled $sv.ingress.enabled (not $sv.from) -}}
    {{- $errors = append $errors "serving.from is empty while serving.ingress.enabled=true and networkPolicy.enabled=true: the serving NetworkPolicy would block the ingress controller; add its namespace (namespaceSelector) to serving.from" -}}
  {{- else if and $v.networkPolicy.enabled $sv.ingress.enabled (not (include "mlflow-stack.networkPolicy.crossesNamespace" $sv.from)) -}}
    {{- $errors = append $errors "serving.from admits no other namespace while serving.ingress.enabled=true and networkPolicy.enabled=true (its default admits the release's namespace only): the serving NetworkPolicy would block the ingress controller; add its namespace (namespaceSelector) to serving.from" -}}
  {{- end -}}
  {{- if and $v.networkPolicy.enabled (has $sv.service.type (list "NodePort" "LoadBalancer")) (not (include "mlflow-stack.networkPolicy.hasIpBlock" $sv.from)) -}}
    {{- $errors = append $errors (printf "serving.from has no ipBlock peer while serving.service.type=%s and networkPolicy.enabled=true: the Service's traffic arrives from node or load balancer addresses, which pod and namespace selectors never match, so the serving NetworkPolicy would drop it; add the addresses allowed to call /invocations (no login) as an ipBlock peer (e.g. {ipBlock: {cidr: 203.0.113.0/24}}; docs/chart.md \"NetworkPolicies on other clusters\") or set networkPolicy.enabled=false" $sv.service.type) -}}
  {{- end -}}
  {{- if $sv.ingress.enabled -}}
    {{- if not $sv.ingress.hosts -}}
      {{- $errors = append $errors "serving.ingress.hosts must list at least one host when serving.ingress.enabled=true" -}}
    {{- end -}}
    {{- $hosts := list -}}
    {{- range $sv.ingress.hosts }}{{ $hosts = append $hosts .host }}{{ end -}}
    {{- range $sv.ingress.tls -}}
      {{- range .hosts -}}
        {{- if not (has . $hosts) -}}
          {{- $errors = append $errors (printf "serving.ingress.tls host %q is not one of serving.ingress.hosts (%s)" . (join ", " $hosts)) -}}
        {{- end -}}
      {{- end -}}
    {{- end -}}
  {{- end -}}
{{- end -}}
{{- with $errors -}}
{{- fail (printf "\n\nmlflow-stack: invalid values:\n  - %s\n" (join "\n  - " .)) -}}
{{- end -}}
{{- end -}}
