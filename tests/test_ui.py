"""The MLflow UI in a real browser (Debian's headless Chromium, driven by Playwright; no browser is downloaded).

A finished tiny training, then the link the trainer prints in its first line, opened in a fresh browser: it must
show the model-training view (not the GenAI one MLflow 3.17 opens by default) with the run's mAP@0.5 chart.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from harness import MlflowServer, tiny_train_args, trainer_cmd, trainer_env

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SCREENSHOTS = Path(__file__).resolve().parent.parent / ".work" / "screenshots"


def open_run_page(url: str, screenshot: Path, search: str = "metrics/mAP_0.5") -> str:
    """Opens url in a fresh headless Chromium, filters the charts as a user would (only those in view are drawn),
    and returns the page's text once the mAP@0.5 chart is drawn; the screenshot is taken also when it never is."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            page.goto(url)
            try:
                page.get_by_placeholder("Search metric charts").fill(search, timeout=120_000)
                # the chart's legend names the run and the metric: waiting for it waits for the data, not for a time
                page.get_by_text("(metrics/mAP_0.5)").first.wait_for(timeout=120_000)
            finally:
                page.screenshot(path=str(screenshot))
            return page.inner_text("body")
        finally:
            browser.close()


@pytest.mark.timeout(1800)  # a 15 s training took 10+ minutes on the 2-core machine under a parallel load of 40
def test_run_link_opens_the_model_training_view_with_the_map_chart(
    sqlite_server: MlflowServer, dataset: Path, tmp_path: Path
) -> None:
    assert Path(CHROMIUM).exists(), "chromium is missing: `make setup` installs it (ci/setup-python.sh)"
    result = subprocess.run(
        trainer_cmd("train", "--mlflow-uri", sqlite_server.url, *tiny_train_args(dataset)), cwd=tmp_path,
        env=trainer_env(), capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    link = re.search(r"live at (\S+)", result.stderr.splitlines()[0])
    assert link, result.stderr.splitlines()[0]
    run_id = link.group(1).split("/runs/")[1].split("/")[0]
    experiment = MlflowClient(sqlite_server.url).get_experiment(MlflowClient(sqlite_server.url).get_run(run_id).info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"

    text = open_run_page(link.group(1), SCREENSHOTS / "run-page.png")

    lines = text.splitlines()
    assert "Model metrics" in lines  # the run page's metric charts tab ...
    assert "Runs" in lines and "Model registry" in lines  # ... in the model-training navigation
    for genai in ("Evaluation runs", "Judges", "Evaluations"):  # ... not the GenAI app one
        assert genai not in lines, genai
    assert "mAP_0.5" in lines  # the chart's title
