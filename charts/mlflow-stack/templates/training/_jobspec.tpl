{{/* A value as text, a whole number without exponent: Helm reads YAML numbers as float64, which print as 2.0240101e+07. */}}
{{- define "mlflow-stack.training.text" -}}
{{- if and (kindIs "float64" .) (eq . (floor .)) -}}
{{- int64 . -}}
{{- else -}}
{{- . -}}
{{- end -}}
{{- end -}}

{{/* The training's connection ConfigMap (envFrom of every training pod): a stable name, so connection settings never change a pod template. */}}
{{- define "mlflow-stack.training.configName" -}}
{{- include "mlflow-stack.componentName" (dict "ctx" . "suffix" "training") -}}
{{- end -}}

{{/* The training's connection settings as a map of env var -> value: tracking URI, login user (basic auth on: the chart's non-admin client user), the server's CA (server.tls). No artifact store settings: the server proxies every artifact (--serve-artifacts). */}}
{{- define "mlflow-stack.training.connectionEnv" -}}
{{- $env := dict "MLFLOW_TRACKING_URI" (.Values.training.trackingUri | default (include "mlflow-stack.trackingUri" .)) -}}
{{- if .Values.server.auth.enabled -}}
{{- $_ := set $env "MLFLOW_TRACKING_USERNAME" (.Values.server.auth.clientUsername | toString) -}}
{{- end -}}
{{- range include "mlflow-stack.tls.clientEnv" . | fromYamlArray -}}
{{- $_ := set $env .name (.value | toString) -}}
{{- end -}}
{{- toYaml $env -}}
{{- end -}}

{{/* The training Job's spec (hashed into the Job name by training/job.yaml; a CronJob's jobTemplate). Only what changes
the training is in it: connection settings come from the ConfigMap and the ServiceAccount (see training/job.yaml). */}}
{{- define "mlflow-stack.training.jobSpec" -}}
{{- $t := .Values.training -}}
{{- $synthetic := $t.dataset.synthetic -}}
{{- $image := include "mlflow-stack.image" (dict "ctx" . "image" $t.image) -}}
{{- $d := $t.distributed -}}
{{- $nnodes := int $d.nnodes -}}
{{- $nproc := int $d.nprocPerNode -}}
{{- $service := include "mlflow-stack.training.baseName" (dict "ctx" . "variant" $t.variant) -}}
{{- if gt $nnodes 1 -}}
# one pod per node, each knowing its rank (JOB_COMPLETION_INDEX) and named <job>-<rank>.<service>; a lost pod ends the
# training (DDP cannot go on without it), and the Job then stops the others
completionMode: Indexed
completions: {{ $nnodes }}
parallelism: {{ $nnodes }}
backoffLimit: 0
{{- else -}}
backoffLimit: {{ include "mlflow-stack.training.text" $t.backoffLimit }}
{{- end }}
activeDeadlineSeconds: {{ include "mlflow-stack.training.text" $t.activeDeadlineSeconds }}
{{- if not (kindIs "invalid" $t.ttlSecondsAfterFinished) }}
ttlSecondsAfterFinished: {{ include "mlflow-stack.training.text" $t.ttlSecondsAfterFinished }}
{{- end }}
template:
  metadata:
    labels:
      {{- include "mlflow-stack.selectorLabels" (dict "ctx" . "component" "training") | nindent 6 }}
      {{- with $t.variant }}
      mlflow-stack/variant: {{ . }}
      {{- end }}
      {{- with $t.podLabels }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
    {{- with $t.podAnnotations }}
    annotations:
      {{- toYaml . | nindent 6 }}
    {{- end }}
  spec:
    restartPolicy: Never
    {{- if gt $nnodes 1 }}
    subdomain: {{ $service }}
    {{- end }}
    terminationGracePeriodSeconds: {{ include "mlflow-stack.training.text" $t.terminationGracePeriodSeconds }}
    serviceAccountName: {{ include "mlflow-stack.serviceAccountName" . }}
    automountServiceAccountToken: {{ .Values.serviceAccount.automountServiceAccountToken }}
    {{- /* pull secrets come from the chart's ServiceAccount (the API server copies them into each pod), so changing them
    starts no new training; a ServiceAccount of your own (serviceAccount.create=false) may not have them */}}
    {{- if not .Values.serviceAccount.create }}
    {{- with .Values.imagePullSecrets }}
    imagePullSecrets:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    {{- end }}
    securityContext:
      {{- include "mlflow-stack.podSecurityContext" (dict "ctx" .) | nindent 6 }}
    {{- with $t.runtimeClassName }}
    runtimeClassName: {{ . }}
    {{- end }}
    {{- with $t.priorityClassName }}
    priorityClassName: {{ . }}
    {{- end }}
    {{- if $synthetic }}
    initContainers:
      # Offline smoke dataset: `trainer make-dataset` writes images, labels and data.yaml into the work directory.
      - name: make-dataset
        image: {{ $image }}
        imagePullPolicy: {{ $t.image.pullPolicy }}
        args: {{ concat (list "make-dataset" "/workspace/synthetic") $t.dataset.syntheticArgs | toJson }}
        securityContext:
          {{- toYaml .Values.containerSecurityContext | nindent 10 }}
        resources:
          {{- toYaml $t.resources | nindent 10 }}
        volumeMounts:
          - name: workspace
            mountPath: /workspace
          {{- include "mlflow-stack.tmpMount" . | nindent 10 }}
    {{- end }}
    containers:
      - name: trainer
        image: {{ $image }}
        imagePullPolicy: {{ $t.image.pullPolicy }}
        args: {{ concat (list (ternary "check-distributed" "train" (and $d.check true))) $t.extraArgs | toJson }}
        workingDir: /workspace
        env:
          - name: MLFLOW_EXPERIMENT_NAME
            value: {{ $t.experiment | quote }}
          {{- range $key, $value := $t.params }}
          {{- if not (kindIs "invalid" $value) }}
          - name: TRAINER_{{ $key | snakecase | upper }}
            value: {{ ternary "/workspace/synthetic/data.yaml" $value (and $synthetic (eq $key "data")) | include "mlflow-stack.training.text" | quote }}
          {{- end }}
          {{- end }}
          {{- with $t.tags }}
          - name: TRAINER_TAGS
            value: {{ toJson . | quote }}
          {{- end }}
          {{- with $t.variant }}
          - name: TRAINER_VARIANT
            value: {{ . | quote }}
          - name: TRAINER_SWEEP
            value: {{ $t.sweepName | default (include "mlflow-stack.fullname" $) | quote }}
          {{- end }}
          {{- with $t.yoloExtraArgs }}
          - name: TRAINER_EXTRA_ARGS
            value: {{ . | quote }}
          {{- end }}
          - name: TRAINER_IMAGE
            value: {{ $image | quote }}
          {{- with $t.gitCommit }}
          - name: TRAINER_GIT_COMMIT
            value: {{ . | quote }}
          {{- end }}
          - name: KUBERNETES_JOB_NAME
            valueFrom: {fieldRef: {fieldPath: "metadata.labels['batch.kubernetes.io/job-name']"}}
          - name: KUBERNETES_POD_NAME
            valueFrom: {fieldRef: {fieldPath: metadata.name}}
          - name: KUBERNETES_NAMESPACE
            valueFrom: {fieldRef: {fieldPath: metadata.namespace}}
          - name: KUBERNETES_NODE_NAME
            valueFrom: {fieldRef: {fieldPath: spec.nodeName}}
          {{- if or (gt $nnodes 1) (gt $nproc 1) }}
          # torchrun's settings as Kubeflow passes them; the node rank is the Indexed Job's JOB_COMPLETION_INDEX
          - name: PET_NNODES
            value: {{ $nnodes | quote }}
          - name: PET_NPROC_PER_NODE
            value: {{ $nproc | quote }}
          - name: PET_MASTER_PORT
            value: {{ include "mlflow-stack.training.text" $d.masterPort | quote }}
          {{- if gt $nnodes 1 }}
          - name: PET_MASTER_ADDR
            value: "$(KUBERNETES_JOB_NAME)-0.{{ $service }}"
          {{- end }}
          {{- end }}
          - name: HOME
            value: /tmp
          # the trainer's datasets root: relative dataset `path:`s and YOLOv5's downloads are there (the work directory's
          # datasets/ otherwise, i.e. /workspace/datasets)
          {{- if $t.dataset.existingClaim }}
          - name: YOLOv5_DATASETS_DIR
            value: {{ $t.dataset.mountPath | quote }}
          {{- end }}
          # the basic-auth password of the chart's non-admin client user (its name, MLFLOW_TRACKING_USERNAME, comes
          # from the ConfigMap); optional: without basic auth the Secret may not exist, and a password without a user
          # name sends no login
          - name: MLFLOW_TRACKING_PASSWORD
            valueFrom:
              secretKeyRef:
                name: {{ include "mlflow-stack.auth.clientSecretName" . }}
                key: {{ .Values.server.auth.clientPasswordKey }}
                optional: true
          {{- with $t.extraEnv }}
          {{- toYaml . | nindent 10 }}
          {{- end }}
        # the connection settings (tracking URI, user); no storage keys: artifacts go through the server's proxy
        envFrom:
          - configMapRef:
              name: {{ include "mlflow-stack.training.configName" . }}
        {{- if gt $nnodes 1 }}
        ports:
          - name: rendezvous
            containerPort: {{ include "mlflow-stack.training.text" $d.masterPort }}
        {{- end }}
        securityContext:
          {{- toYaml .Values.containerSecurityContext | nindent 10 }}
        resources:
          {{- include "mlflow-stack.training.resources" $t | nindent 10 }}
        volumeMounts:
          - name: workspace
            mountPath: /workspace
          - name: dshm
            mountPath: /dev/shm
          {{- include "mlflow-stack.tmpMount" . | nindent 10 }}
          {{- if $t.dataset.existingClaim }}
          - name: datasets
            mountPath: {{ $t.dataset.mountPath }}
            readOnly: true
          {{- end }}
          {{- with include "mlflow-stack.tls.clientMount" . | trim }}{{ . | nindent 10 }}{{ end }}
          {{- with $t.extraVolumeMounts }}
          {{- toYaml . | nindent 10 }}
          {{- end }}
    volumes:
      - name: workspace
        emptyDir:
          sizeLimit: {{ include "mlflow-stack.training.text" $t.workspaceSizeLimit }}
      # PyTorch dataloader workers exchange batches through shared memory; the container default (64Mi) is too small.
      - name: dshm
        emptyDir:
          medium: Memory
          sizeLimit: {{ include "mlflow-stack.training.shmSize" $t }}
      {{- include "mlflow-stack.tmpVolume" . | nindent 6 }}
      {{- if $t.dataset.existingClaim }}
      - name: datasets
        persistentVolumeClaim:
          claimName: {{ $t.dataset.existingClaim }}
          readOnly: true
      {{- end }}
      {{- with include "mlflow-stack.tls.clientVolume" . | trim }}{{ . | nindent 6 }}{{ end }}
      {{- with $t.extraVolumes }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
    {{- with include "mlflow-stack.scheduling" $t | trim }}{{ . | nindent 4 }}{{ end }}
{{- end -}}

{{/* The trainer's resources: training.resources, with nvidia.com/gpu = distributed.nprocPerNode added to the limits of a DDP training that sets none (not for the CPU check). */}}
{{- define "mlflow-stack.training.resources" -}}
{{- $resources := deepCopy (.resources | default dict) -}}
{{- $d := .distributed -}}
{{- if and (or (gt (int $d.nnodes) 1) (gt (int $d.nprocPerNode) 1)) (not $d.check) -}}
{{- $limits := $resources.limits | default dict -}}
{{- if not (hasKey $limits "nvidia.com/gpu") -}}
{{- $_ := set $limits "nvidia.com/gpu" (int $d.nprocPerNode) -}}
{{- $_ := set $resources "limits" $limits -}}
{{- end -}}
{{- end -}}
{{- toYaml $resources -}}
{{- end -}}

{{/* Size of /dev/shm: training.shmSizeLimit, per DDP process (nprocPerNode times a <n>Mi or <n>Gi value). */}}
{{- define "mlflow-stack.training.shmSize" -}}
{{- $size := include "mlflow-stack.training.text" .shmSizeLimit -}}
{{- $nproc := int .distributed.nprocPerNode -}}
{{- $parts := regexFindAll "^[0-9]+|(Mi|Gi)$" $size -1 -}}
{{- if and (gt $nproc 1) (regexMatch "^[0-9]+(Mi|Gi)$" $size) -}}
{{- printf "%d%s" (mul (index $parts 0 | int) $nproc) (index $parts 1) -}}
{{- else -}}
{{- $size -}}
{{- end -}}
{{- end -}}

{{/* CronJob name from the Job name (training.jobName without its hash): <fullname>-train[-<variant>], at most 52 characters (the Jobs it creates add 11). */}}
{{- define "mlflow-stack.training.cronJobName" -}}
{{- regexReplaceAll "-[0-9a-f]{10}$" . "" | trunc 52 | trimSuffix "-" -}}
{{- end -}}
