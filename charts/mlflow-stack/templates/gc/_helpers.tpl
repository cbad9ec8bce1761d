{{/* The `mlflow gc` arguments: the server's backend store (no password: PGPASSWORD) and its tracking URI, through which the runs' mlflow-artifacts:/ artifacts are deleted; gc.olderThan, gc.experimentIds. */}}
{{- define "mlflow-stack.gc.args" -}}
- --backend-store-uri={{ include "mlflow-stack.databaseUri" (dict "ctx" .) }}
- --tracking-uri={{ include "mlflow-stack.trackingUri" . }}
{{- with .Values.gc.olderThan }}
- --older-than={{ . }}
{{- end }}
{{- with .Values.gc.experimentIds }}
- --experiment-ids={{ join "," . }}
{{- end }}
{{- end -}}
