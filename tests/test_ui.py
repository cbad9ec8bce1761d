"""The MLflow UI in a real browser (Debian's headless Chromium, driven by Playwright; no browser is downloaded).

A finished tiny training (harness.sqlite_training, shared), then the link the trainer prints in its first line, opened
in a fresh browser: it must show the model-training view (not the GenAI one MLflow 3.17 opens by default) with the
run's mAP@0.5 chart.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from harness import MODEL, Training

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SCREENSHOTS = Path(__file__).resolve().parent.parent / ".work" / "screenshots"


def open_page(url: str, screenshot: Path, wait_for: str, search: tuple[str, str] | None = None) -> str:
    """Opens url in a fresh headless Chromium, optionally types into a search box as a user would (placeholder,
    text), and returns the page's text once `wait_for` is shown; the screenshot is taken also when it never is."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            page.goto(url)
            try:
                if search:
                    page.get_by_placeholder(search[0]).fill(search[1], timeout=120_000)
                page.get_by_text(wait_for).first.wait_for(timeout=120_000)
            finally:
                page.screenshot(path=str(screenshot), full_page=True)
            return page.inner_text("body")
        finally:
            browser.close()


@pytest.mark.timeout(1800)  # a 15 s training took 10+ minutes on the 2-core machine under a parallel load of 40
def test_run_link_opens_the_model_training_view_with_the_map_chart(sqlite_training: Training) -> None:
    assert Path(CHROMIUM).exists(), "chromium is missing: `make setup` installs it (ci/setup-python.sh)"
    sqlite_server, result = sqlite_training.server, sqlite_training.result
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    link = re.search(r"live at (\S+)", result.stderr.splitlines()[0])
    assert link, result.stderr.splitlines()[0]
    run_id = link.group(1).split("/runs/")[1].split("/")[0]
    experiment = MlflowClient(sqlite_server.url).get_experiment(MlflowClient(sqlite_server.url).get_run(run_id).info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"

    # only the charts in view are drawn: filter them; the chart's legend names the run and the metric, so waiting for
    # it waits for the data, not for a time
    text = open_page(link.group(1), SCREENSHOTS / "run-page.png", "(metrics/mAP_0.5)",
                     search=("Search metric charts", "metrics/mAP_0.5"))

    lines = text.splitlines()
    assert "Model metrics" in lines  # the run page's metric charts tab ...
    assert "Runs" in lines and "Model registry" in lines  # ... in the model-training navigation
    for genai in ("Evaluation runs", "Judges", "Evaluations"):  # ... not the GenAI app one
        assert genai not in lines, genai
    assert "mAP_0.5" in lines  # the chart's title

    # The registered version's page: its alias and the promotion's record with the metric, and the linked logged
    # model's page with the best epoch's metrics (README's two screenshots come from these pages after `make demo`).
    base = sqlite_server.url
    version_page = open_page(f"{base}/#/models/{MODEL}/versions/1?workflowType=machine_learning",
                             SCREENSHOTS / "model-version.png", wait_for="promotion.champion")
    assert re.search(r"^@\s*champion$", version_page, re.MULTILINE), version_page  # the alias chip, not the tag
    assert "best/metrics/mAP_0.5" in version_page  # the promotion tag carries the compared metric
    source = MlflowClient(base).get_model_version(MODEL, "1").source
    model_page = open_page(f"{base}/#/experiments/{experiment.experiment_id}/models/{source.split('/')[-1]}"
                           "?workflowType=machine_learning", SCREENSHOTS / "logged-model.png", wait_for="metrics/mAP_0.5")
    assert MODEL in model_page  # its model version
    assert "metrics/mAP_0.5_0.95" in model_page.splitlines()

