{{/* The training Job's spec (hashed into the Job name by training/job.yaml). */}}
{{- define "mlflow-stack.training.jobSpec" -}}
{{- $t := .Values.training -}}
{{- $synthetic := $t.dataset.synthetic -}}
{{- $image := include "mlflow-stack.image" (dict "ctx" . "image" $t.image) -}}
backoffLimit: {{ $t.backoffLimit }}
activeDeadlineSeconds: {{ $t.activeDeadlineSeconds }}
{{- if not (kindIs "invalid" $t.ttlSecondsAfterFinished) }}
ttlSecondsAfterFinished: {{ $t.ttlSecondsAfterFinished }}
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
    terminationGracePeriodSeconds: {{ $t.terminationGracePeriodSeconds }}
    {{- include "mlflow-stack.podCommon" (dict "ctx" .) | nindent 4 }}
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
        args: {{ concat (list "train") $t.extraArgs | toJson }}
        workingDir: /workspace
        env:
          - name: MLFLOW_TRACKING_URI
            value: {{ $t.trackingUri | default (include "mlflow-stack.trackingUri" .) | quote }}
          - name: MLFLOW_EXPERIMENT_NAME
            value: {{ $t.experiment | quote }}
          {{- range $key, $value := $t.params }}
          {{- if not (kindIs "invalid" $value) }}
          - name: TRAINER_{{ $key | snakecase | upper }}
            value: {{ ternary "/workspace/synthetic/data.yaml" $value (and $synthetic (eq $key "data")) | toString | quote }}
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
          - name: HOME
            value: /tmp
          {{- with include "mlflow-stack.trackingAuthEnv" . | trim }}{{ . | nindent 10 }}{{ end }}
          {{- with include "mlflow-stack.s3.env" . | trim }}{{ . | nindent 10 }}{{ end }}
          {{- with $t.extraEnv }}
          {{- toYaml . | nindent 10 }}
          {{- end }}
        envFrom:
          - secretRef:
              name: {{ include "mlflow-stack.s3.secretName" . }}
        securityContext:
          {{- toYaml .Values.containerSecurityContext | nindent 10 }}
        resources:
          {{- toYaml $t.resources | nindent 10 }}
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
          {{- with $t.extraVolumeMounts }}
          {{- toYaml . | nindent 10 }}
          {{- end }}
    volumes:
      - name: workspace
        emptyDir:
          sizeLimit: {{ $t.workspaceSizeLimit }}
      # PyTorch dataloader workers exchange batches through shared memory; the container default (64Mi) is too small.
      - name: dshm
        emptyDir:
          medium: Memory
          sizeLimit: {{ $t.shmSizeLimit }}
      {{- include "mlflow-stack.tmpVolume" . | nindent 6 }}
      {{- if $t.dataset.existingClaim }}
      - name: datasets
        persistentVolumeClaim:
          claimName: {{ $t.dataset.existingClaim }}
          readOnly: true
      {{- end }}
      {{- with $t.extraVolumes }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
    {{- with include "mlflow-stack.scheduling" $t | trim }}{{ . | nindent 4 }}{{ end }}
{{- end -}}
