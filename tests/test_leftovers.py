"""ci/lib/leftovers.py: the end-of-run check that a test run left no process running."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "ci" / "lib" / "leftovers.py"


def check(marker: str, grace: str = "0") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MLFLOW_STACK_TEST_RUN": marker}
    return subprocess.run([sys.executable, str(SCRIPT), grace], env=env, capture_output=True, text=True, timeout=60)


def test_reports_a_process_of_this_run_and_nothing_else() -> None:
    mine = subprocess.Popen(["sleep", "300"], env={**os.environ, "MLFLOW_STACK_TEST_RUN": "run-a"})
    other = subprocess.Popen(["sleep", "301"], env={**os.environ, "MLFLOW_STACK_TEST_RUN": "run-b"})
    try:
        result = check("run-a")
        assert result.returncode == 1
        assert result.stderr.splitlines() == [f"leftovers: still running, started by this test run: pid {mine.pid}: sleep 300"]
    finally:
        for proc in (mine, other):
            proc.kill()
            proc.wait()
    assert check("run-a").returncode == 0

