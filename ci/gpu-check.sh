#!/usr/bin/env bash
# GPU check, run by hand on a CUDA machine (not part of `make test`): `trainer train --device auto` must pick
# CUDA and record it, also as DDP under torchrun (1 process; 2 with 2 GPUs), and a GPU training must end FINISHED
# with every epoch in MLflow; its logged model, registered
# and promoted to @champion, must load on CUDA (device auto) and give the CPU load's boxes, also when `trainer serve`
# serves it. Expects the trainer's wheel and its missing dependencies in .whl/ (no network there); writes under $OUT
# (or /tmp).
set -euo pipefail
W=${OUT:-/tmp}/gpu-check
mkdir -p "$W"
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site MLFLOW_DISABLE_TELEMETRY=true MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false
nvidia-smi -L
python3 -m mlflow server --host 127.0.0.1 --port 5077 --workers 1 \
  --backend-store-uri "sqlite:///$W/mlflow.db" --artifacts-destination "$W/artifacts" >"$W/server.log" 2>&1 &
server=$!
trap 'kill $server' EXIT
for _ in $(seq 120); do curl -fs http://127.0.0.1:5077/health >/dev/null && break; sleep 1; done
python3 -m trainer.cli make-dataset "$W/synth" --train 256 --val 32 --imgsz 256 >/dev/null
cd "$W"
for device in auto cpu; do
  start=$(date +%s%N)
  python3 -m trainer.cli train --mlflow-uri http://127.0.0.1:5077 --data synth/data.yaml --weights '' \
    --cfg yolov5n.yaml --imgsz 256 --batch-size 32 --epochs 5 --workers 4 --device "$device" \
    --run-name "gpu-check-$device" --register-model gpu-check --promote-alias "champion-$device" \
    >"train-$device.log" 2>&1 || { tail -40 "train-$device.log"; exit 1; }
  echo "device=$device wall=$(( ($(date +%s%N) - start) / 1000000 )) ms"
done
# DDP under torchrun (docs/trainer.md "Distributed training"): world size 1 on any GPU machine, 2 processes where there
# are 2 GPUs; each must end FINISHED with every epoch, like the runs above (checked below).
gpus=$(nvidia-smi -L | wc -l)
for n in 1 2; do
  if [ "$n" -gt "$gpus" ]; then echo "ddp nproc-per-node=$n: not run, $gpus GPU(s) here"; continue; fi
  python3 -m trainer.cli train --mlflow-uri http://127.0.0.1:5077 --data synth/data.yaml --weights '' \
    --cfg yolov5n.yaml --imgsz 256 --batch-size 32 --epochs 5 --workers 4 --device auto --nproc-per-node "$n" \
    --master-port $((29600 + n)) --run-name "gpu-check-ddp-$n" >"train-ddp-$n.log" 2>&1 || { tail -40 "train-ddp-$n.log"; exit 1; }
  echo "ddp nproc-per-node=$n: trained"
done
python3 - <<'PY'
from mlflow.tracking import MlflowClient
c = MlflowClient("http://127.0.0.1:5077")
for run in c.search_runs([c.get_experiment_by_name("yolov5-coco128-demo").experiment_id]):
    steps = sorted(m.step for m in c.get_metric_history(run.info.run_id, "metrics/mAP_0.5"))
    print(run.info.run_name, run.info.status, "device", run.data.tags["device"], "gpu_available",
          run.data.tags["gpu_available"], "param device", run.data.params["device"], "steps", steps,
          "mAP@0.5 %.4f" % run.data.metrics["metrics/mAP_0.5"])
    if run.info.run_name == "gpu-check-auto":
        assert run.data.tags["device"] == "cuda:0" and run.data.tags["gpu_available"] == "true", run.data.tags
    assert run.info.status == "FINISHED" and steps == list(range(5))
import glob

import mlflow
import pandas as pd

mlflow.set_tracking_uri("http://127.0.0.1:5077")
image = open(sorted(glob.glob("synth/images/val/*.jpg"))[0], "rb").read()
frames = {}
for device in ("auto", "cpu"):  # the GPU run's model, loaded the way serving does (auto: CUDA here) and on CPU
    model = mlflow.pyfunc.load_model("models:/gpu-check@champion-auto", model_config={"device": device})
    frames[device] = model.predict(pd.DataFrame({"image": [image]}), params={"conf": 0.05})
    print("pyfunc", device, len(frames[device]), "boxes")
assert len(frames["auto"]) == len(frames["cpu"]) and len(frames["cpu"]) > 0, frames
diff = (frames["auto"][["xmin", "ymin", "xmax", "ymax"]] - frames["cpu"][["xmin", "ymin", "xmax", "ymax"]]).abs().max().max()
assert diff < 1.0, f"CUDA and CPU boxes differ by {diff} px"

# serving on the GPU: `trainer serve` (the serving pod's process) on that version answers with the CPU load's boxes
import base64, json, subprocess, sys, time, urllib.request
version = mlflow.MlflowClient().get_model_version_by_alias("gpu-check", "champion-auto").version
serve = subprocess.Popen([sys.executable, "-m", "trainer.cli", "serve", "--model", "gpu-check", "--version", version,
                          "--host", "127.0.0.1", "--port", "5078"], stdout=open("serve.log", "w"), stderr=subprocess.STDOUT)
try:
    for _ in range(240):
        try:
            if urllib.request.urlopen("http://127.0.0.1:5078/ping", timeout=2).status == 200:
                break
        except OSError:
            time.sleep(0.5)
    body = {"dataframe_split": {"columns": ["image"], "data": [[base64.b64encode(image).decode()]]}, "params": {"conf": 0.05}}
    req = urllib.request.Request("http://127.0.0.1:5078/invocations", json.dumps(body).encode(), {"Content-Type": "application/json"})
    rows = json.loads(urllib.request.urlopen(req, timeout=120).read())["predictions"]
    print("trainer serve (CUDA)", len(rows), "boxes")
    assert len(rows) == len(frames["cpu"]), (rows, frames["cpu"])
finally:
    serve.terminate()
print("GPU check passed")
PY
