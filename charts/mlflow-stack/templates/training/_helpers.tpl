{{/* One sweep variant's training values as JSON (dict "t" .Values.training "name" NAME): its params, tags and resources override the shared ones key by key (resources one level deeper); runName is the trainer's default (the variant name) unless the variant sets it. */}}
{{- define "mlflow-stack.training.variantValues" -}}
{{- $t := .t -}}
{{- $o := get $t.variants .name | default dict -}}
{{- $params := deepCopy $t.params -}}
{{- $_ := set $params "runName" nil -}}
{{- range $k, $v := $o.params }}{{ $_ := set $params $k $v }}{{ end -}}
{{- $tags := deepCopy ($t.tags | default dict) -}}
{{- range $k, $v := $o.tags }}{{ $_ := set $tags $k $v }}{{ end -}}
{{- $resources := deepCopy ($t.resources | default dict) -}}
{{- range $k, $v := $o.resources -}}
{{- if and (kindIs "map" $v) (kindIs "map" (get $resources $k)) -}}
{{- $inner := get $resources $k -}}
{{- range $k2, $v2 := $v }}{{ $_ := set $inner $k2 $v2 }}{{ end -}}
{{- else -}}
{{- $_ := set $resources $k $v -}}
{{- end -}}
{{- end -}}
{{- $distributed := merge (deepCopy ($o.distributed | default dict)) (deepCopy $t.distributed) -}}
{{- toJson (merge (dict "params" $params "tags" $tags "resources" $resources "distributed" $distributed "variant" .name) (omit $t "variants" "params" "tags" "resources" "distributed")) -}}
{{- end -}}

{{/* Training Job name (dict "ctx" $ "variant" NAME "spec" SPEC "nnodes" N): <fullname>-train[-<variant>]-<10 hex of the spec's hash>, at most 63 characters (the full name is shortened to keep the whole variant name), less "-<last rank>" for an Indexed Job's pod host names. */}}
{{- define "mlflow-stack.training.jobName" -}}
{{- $nnodes := int (.nnodes | default 1) -}}
{{- $reserve := ternary 0 (add1 (len (toString (sub $nnodes 1)))) (eq $nnodes 1) | int -}}
{{- $base := include "mlflow-stack.training.baseName" . | trunc (sub 52 $reserve | int) | trimSuffix "-" -}}
{{- printf "%s-%s" $base (.spec | fromYaml | toJson | sha256sum | trunc 10) -}}
{{- end -}}

{{/* Training name without hash (dict "ctx" $ "variant" NAME): <fullname>-train[-<variant>], at most 52 characters; the distributed training's headless Service. */}}
{{- define "mlflow-stack.training.baseName" -}}
{{- $variant := .variant | default "" -}}
{{- $keep := ternary 46 (sub 45 (len $variant)) (empty $variant) | int -}}
{{- $prefix := printf "%s-train" (include "mlflow-stack.fullname" .ctx | trunc $keep | trimSuffix "-") -}}
{{- with $variant }}{{ $prefix = printf "%s-%s" $prefix . }}{{ end -}}
{{- $prefix -}}
{{- end -}}
