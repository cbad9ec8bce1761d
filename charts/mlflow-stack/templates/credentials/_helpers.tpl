{{/* Secrets the credentials hook (templates/credentials) creates when missing, as JSON [{"name": NAME, "keys": {KEY: LENGTH}}]: each generated credential that has neither an explicit value nor an existingSecret. */}}
{{- define "mlflow-stack.generatedSecrets" -}}
{{- $list := list -}}
{{- $pg := .Values.backend.postgresql -}}
{{- if and (eq .Values.backend.type "postgresql") (not $pg.existingSecret) (not $pg.password) -}}
{{- $list = append $list (dict "name" (include "mlflow-stack.postgresql.secretName" .) "keys" (dict $pg.passwordKey 32)) -}}
{{- end -}}
{{- $my := .Values.backend.mysql -}}
{{- if and (eq .Values.backend.type "mysql") (not $my.existingSecret) (not $my.password) -}}
{{- $list = append $list (dict "name" (include "mlflow-stack.mysql.secretName" .) "keys" (dict $my.passwordKey 32)) -}}
{{- end -}}
{{- $a := .Values.server.auth -}}
{{- if and $a.enabled (not $a.existingSecret) (not $a.adminPassword) -}}
{{- $list = append $list (dict "name" (include "mlflow-stack.auth.secretName" .) "keys" (dict $a.adminPasswordKey 24 $a.flaskSecretKeyKey 48)) -}}
{{- end -}}
{{- if and $a.enabled (not $a.clientExistingSecret) (not $a.clientPassword) -}}
{{- $list = append $list (dict "name" (include "mlflow-stack.auth.clientSecretName" .) "keys" (dict $a.clientPasswordKey 24)) -}}
{{- end -}}
{{- if include "mlflow-stack.s3.generated" . -}}
{{- $list = append $list (dict "name" (include "mlflow-stack.objectStore.keysSecretName" .) "keys" (dict "AWS_ACCESS_KEY_ID" 20 "AWS_SECRET_ACCESS_KEY" 40)) -}}
{{- end -}}
{{- toJson $list -}}
{{- end -}}
