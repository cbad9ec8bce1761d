"""`trainer serve` before a version is pinned, a wrong pin, and the helm test's verdicts; the pinned scoring server is
in test_model.py (it needs the trained model), the follower on a real API server in tests/cluster/test_serving_follower.py."""

from __future__ import annotations

import subprocess
import time

from harness import MlflowServer, Proc, free_port, http_json, http_ok, trainer_cmd, trainer_env, wait_until


def test_without_a_pinned_version_serve_is_ready_and_says_what_it_waits_for(tmp_path) -> None:
    port = free_port()
    proc = Proc(trainer_cmd("serve", "--model", "yolo-det", "--alias", "champion", "--version", "", "--host",
                            "127.0.0.1", "--port", str(port)), tmp_path / "serve.log")  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: http_ok(f"{url}/ping"), 60, "trainer serve (waiting)", proc)
        assert http_json("GET", f"{url}/health")[1]["status"] == "waiting"
        code, body = http_json("POST", f"{url}/invocations", {"dataframe_split": {"columns": ["image"], "data": [["x"]]}})
        assert code == 503 and body["error_code"] == "MODEL_NOT_PINNED", body
        assert "'yolo-det'" in body["message"] and "'champion'" in body["message"]
        check = subprocess.run(trainer_cmd("check-serving", "--url", url), env=trainer_env(), capture_output=True,
                               text=True, timeout=120)  # fmt: skip
        assert check.returncode == 0, check.stdout + check.stderr
        assert check.stdout.startswith("check-serving: waiting, nothing to check yet")
        assert proc.popen.poll() is None  # it keeps waiting: no crash loop
        assert "waiting: no version of registered model 'yolo-det' is served yet" in proc.tail()
    finally:
        proc.stop()


def test_a_pin_to_a_version_that_does_not_exist_is_one_line_and_exit_2(sqlite_server: MlflowServer) -> None:
    t0 = time.monotonic()
    proc = subprocess.run(trainer_cmd("serve", "--model", "yolo-det", "--version", "7", "--mlflow-uri", sqlite_server.url),
                          env=trainer_env(), capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith("trainer: error: --model yolo-det --version 7: ") and "yolo-det" in line[40:], line
    assert time.monotonic() - t0 < 60


def test_check_serving_fails_naming_serving_when_the_url_is_no_scoring_server(sqlite_server: MlflowServer) -> None:
    proc = subprocess.run(trainer_cmd("check-serving", "--url", sqlite_server.url), env=trainer_env(),
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 1
    assert proc.stdout.startswith(f"helm test FAILED at serving ({sqlite_server.url}): POST /invocations"), proc.stdout
