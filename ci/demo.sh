#!/usr/bin/env bash
# `make demo`: a local MLflow server (SQLite + local artifacts, 127.0.0.1), a synthetic dataset, a short
# tracked YOLOv5 training, then the run id, final mAP and UI link. The server is stopped at the end unless
# KEEP_SERVER=1 (then browse the UI; stop it with `kill $(cat .work/demo/server.pid)`).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH" MLFLOW_DISABLE_TELEMETRY=true MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false
PORT=${DEMO_PORT:-5000}
EPOCHS=${DEMO_EPOCHS:-40}  # enough for mAP@0.5 to climb from 0 to about 0.6 on the synthetic set
W=$PWD/.work/demo
URL=http://127.0.0.1:$PORT
mkdir -p "$W"

if curl -fsS "$URL/health" >/dev/null 2>&1; then
  echo "demo: port $PORT already answers; set DEMO_PORT to use another" >&2; exit 1
fi
mlflow server --host 127.0.0.1 --port "$PORT" --workers 1 \
  --backend-store-uri "sqlite:///$W/mlflow.db" --artifacts-destination "$W/artifacts" >"$W/server.log" 2>&1 &
echo $! >"$W/server.pid"
stop() { [ "${KEEP_SERVER:-0}" = 1 ] || { kill "$(cat "$W/server.pid")" 2>/dev/null || true; }; }
trap stop EXIT
for _ in $(seq 120); do curl -fsS "$URL/health" >/dev/null 2>&1 && break; sleep 1; done
curl -fsS "$URL/health" >/dev/null || { echo "demo: mlflow server did not start; see $W/server.log" >&2; exit 1; }

[ -f "$W/synth128/data.yaml" ] || trainer make-dataset "$W/synth128" --train 128 --val 16 >/dev/null
cd "$W"
# The model is registered, and becomes @champion only when it beats the current one (a rerun with more epochs).
trainer train --mlflow-uri "$URL" --data synth128/data.yaml --weights '' --cfg yolov5n.yaml \
  --imgsz 128 --batch-size 16 --epochs "$EPOCHS" --workers 0 \
  --register-model yolov5-synth --promote-alias champion 2>&1 | tee "$W/train.out"

python - "$URL" <<'PY'
import sys
from mlflow.tracking import MlflowClient
from trainer.tracking import run_link
url = sys.argv[1]
client = MlflowClient(url)
exp = client.get_experiment_by_name("yolov5-coco128-demo")
run = client.search_runs([exp.experiment_id], order_by=["attributes.start_time DESC"], max_results=1)[0]
m = run.data.metrics
print("\n=== mlflow-stack demo ===")
print(f"run id      : {run.info.run_id} ({run.info.run_name}, {run.info.status})")
print(f"final mAP   : mAP@0.5={m.get('metrics/mAP_0.5', float('nan')):.4f}  mAP@0.5:0.95={m.get('metrics/mAP_0.5_0.95', float('nan')):.4f}")
print(f"weights     : {run.info.artifact_uri}/training-output/weights/best.pt")
print(f"MLflow UI   : {run_link(url, exp.experiment_id, run.info.run_id)}")
champion = client.get_model_version_by_alias("yolov5-synth", "champion")
print(f"champion    : models:/yolov5-synth@champion = version {champion.version} (run {champion.run_id})")
PY
image=$(ls synth128/images/val/*.jpg | head -1)
echo "use it      : MLFLOW_TRACKING_URI=$URL trainer predict --model models:/yolov5-synth@champion $W/$image"
MLFLOW_TRACKING_URI=$URL trainer predict --model models:/yolov5-synth@champion "$image" | head -3
if [ "${KEEP_SERVER:-0}" = 1 ]; then
  echo "server kept running (pid $(cat "$W/server.pid")); stop it with: kill \$(cat .work/demo/server.pid)"
else
  echo "server stopped (run with KEEP_SERVER=1 to keep browsing the UI)"
fi
