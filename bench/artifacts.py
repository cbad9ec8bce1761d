"""5. Artifact upload: a 200 MB file through the proxied server (--serve-artifacts), with and without proxy multipart
upload, vs a direct boto3 upload to the same S3-compatible server (SeaweedFS). Sides interleave.
Target: proxied throughput >= 50 % of direct.
"""

from __future__ import annotations

import os
import shutil
import sys
import time

from mlflow.tracking import MlflowClient

from common import WORK, chart_server_env, chart_server_flags, median, rendered_server, start_s3, start_server, table, verdict, write_section

SIZE_MB = int(sys.argv[1]) if len(sys.argv) > 1 else 200
ROUNDS = int(sys.argv[2]) if len(sys.argv) > 2 else 3
# Proxy multipart only kicks in above MLflow's minimum size (default 500 MB): lower it so the 200 MB file uses it.
MULTIPART = {"MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD": "true", "MLFLOW_MULTIPART_UPLOAD_MINIMUM_FILE_SIZE": str(50 * 1024**2)}


def main() -> None:
    work = WORK / "artifacts"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    payload = work / "payload.bin"
    with payload.open("wb") as f:
        for _ in range(SIZE_MB):
            f.write(os.urandom(1024 * 1024))
    deployment = rendered_server()
    flags, env = chart_server_flags(deployment), chart_server_env(deployment)
    times: dict[str, list[float]] = {"direct boto3": [], "proxied": [], "proxied, multipart": []}
    with start_s3() as s3:
        bucket = s3.create_bucket("bench")
        server, url = start_server(flags, f"sqlite:///{work / 'mlflow.db'}", f"{bucket}/mlflow", work, env={**env, **s3.env})
        try:
            client = MlflowClient(url)
            exp = client.create_experiment("artifacts")
            s3_client = s3.client()
            for i in range(ROUNDS):
                for side in times:
                    saved = {k: os.environ.get(k) for k in MULTIPART}
                    if side == "proxied, multipart":
                        os.environ.update(MULTIPART)
                    start = time.perf_counter()
                    if side == "direct boto3":
                        s3_client.upload_file(str(payload), "bench", f"direct/{i}/payload.bin")
                    else:
                        client.log_artifact(client.create_run(exp).info.run_id, str(payload))
                    times[side].append(time.perf_counter() - start)
                    for k, v in saved.items():
                        os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
                    print(f"round {i + 1}: {side} {times[side][-1]:.2f} s", flush=True)
        finally:
            server.stop()
            payload.unlink()
    direct = SIZE_MB / median(times["direct boto3"])
    rows = [["direct boto3", f"{direct:.0f}", "100 %", ""]]
    for side in ("proxied", "proxied, multipart"):
        speed = SIZE_MB / median(times[side])
        rows.append([f"through the server ({side})", f"{speed:.0f}", f"{speed / direct * 100:.0f} %", verdict(speed / direct >= 0.5)])
    text = table(f"5. Artifact upload ({SIZE_MB} MB file, {ROUNDS} rounds, SeaweedFS S3 on 127.0.0.1)",
                 ["path", "MB/s (median)", "of direct", "target >= 50 %"], rows)  # fmt: skip
    write_section("5-artifacts", text)


if __name__ == "__main__":
    main()
