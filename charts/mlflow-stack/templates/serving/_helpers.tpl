{{/* Name of the serving follower's Deployment, ServiceAccount, Role, RoleBinding and egress NetworkPolicy: <fullname>-serving-follower. */}}
{{- define "mlflow-stack.serving.followerName" -}}
{{- include "mlflow-stack.componentName" (dict "ctx" . "suffix" "serving-follower") -}}
{{- end -}}
