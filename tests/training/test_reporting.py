"""results.csv parsing and live metric logging."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.entities import Metric

from trainer.training.reporting import ResultsWatcher, clean_metric_name, parse_results

# Exactly how YOLOv5 7.0.14 writes it: names right-aligned in 20 characters, per-class columns at the end.
HEADER = ("               epoch,      train/box_loss,     metrics/mAP_0.5,metrics/mAP_0.5:0.95,"
          "metrics/red_rect_mAP,metrics/red_rect_mAP_50\n")
ROW0 = "                   0,             0.12597,          0.00065183,          0.00016178,          0.00029861,           0.0010218\n"
ROW1 = "                   1,             0.11526,          0.00042997,          0.00036185,          0.00024656,          0.00049328\n"


@pytest.mark.parametrize(
    ("raw", "clean"),
    [("     metrics/mAP_0.5", "metrics/mAP_0.5"), ("metrics/mAP_0.5:0.95", "metrics/mAP_0.5_0.95"),
     ("  train/box_loss ", "train/box_loss"), ("x/lr0", "x/lr0")],
)
def test_metric_names_are_cleaned(raw: str, clean: str) -> None:
    assert clean_metric_name(raw) == clean


def test_padded_header_and_per_class_columns() -> None:
    rows = parse_results(HEADER + ROW0 + ROW1)
    assert [r.epoch for r in rows] == [0, 1]
    assert rows[0].values == {
        "train/box_loss": 0.12597, "metrics/mAP_0.5": 0.00065183, "metrics/mAP_0.5_0.95": 0.00016178,
        "metrics/red_rect_mAP": 0.00029861, "metrics/red_rect_mAP_50": 0.0010218,
    }  # fmt: skip


def test_partial_last_line_waits_for_the_next_read() -> None:
    assert [r.epoch for r in parse_results(HEADER + ROW0 + ROW1[:30])] == [0]
    assert parse_results(HEADER[:40]) == []
    assert parse_results("") == []


def test_non_numeric_and_infinite_cells_are_dropped() -> None:
    rows = parse_results(HEADER + ROW0.replace("0.12597", "    nan").replace("0.0010218", "      inf"))
    assert "train/box_loss" not in rows[0].values
    assert "metrics/red_rect_mAP_50" not in rows[0].values


class FlakySink:
    """Stands in for the tracking server: fails `failures` times (as while it restarts), then records."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.logged: list[Metric] = []

    def log_batch(self, run_id: str, metrics: list[Metric]) -> None:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("connection refused")
        self.logged.extend(metrics)


def test_each_epoch_is_logged_once_with_step_epoch(tmp_path: Path) -> None:
    csv = tmp_path / "results.csv"
    sink = FlakySink()
    watcher = ResultsWatcher(csv, sink, "run")
    assert watcher.poll() == 0  # no file yet
    csv.write_text(HEADER + ROW0)
    assert watcher.poll() == 1
    csv.write_text(HEADER + ROW0 + ROW1[:10])
    assert watcher.poll() == 0  # half-written line
    csv.write_text(HEADER + ROW0 + ROW1)
    assert watcher.poll() == 1
    steps = sorted((m.key, m.step) for m in sink.logged if m.key == "metrics/mAP_0.5")
    assert steps == [("metrics/mAP_0.5", 0), ("metrics/mAP_0.5", 1)]
    assert len(sink.logged) == 10


def test_rows_survive_a_server_outage_without_duplicates(tmp_path: Path) -> None:
    csv = tmp_path / "results.csv"
    sink = FlakySink(failures=2)
    watcher = ResultsWatcher(csv, sink, "run")
    csv.write_text(HEADER + ROW0)
    watcher.poll()  # fails: queued
    csv.write_text(HEADER + ROW0 + ROW1)
    watcher.poll()  # fails again
    assert sink.logged == []
    assert watcher.flush()
    assert sorted({m.step for m in sink.logged}) == [0, 1]
    assert len(sink.logged) == 10


def test_best_epoch_uses_yolov5_fitness(tmp_path: Path) -> None:
    csv = tmp_path / "results.csv"
    csv.write_text(HEADER + ROW0 + ROW1)
    watcher = ResultsWatcher(csv, FlakySink(), "run")
    watcher.poll()
    summary = {m.key: m.value for m in watcher.summary_metrics()}
    # epoch 1 has the higher 0.1*mAP50 + 0.9*mAP50-95 even though its mAP50 is lower
    assert summary["best_epoch"] == 1
    assert summary["best/metrics/mAP_0.5_0.95"] == pytest.approx(0.00036185)
    assert summary["epochs_completed"] == 2
    assert "best/train/box_loss" not in summary


def test_tied_epochs_pick_the_last_like_best_pt(tmp_path: Path) -> None:
    """YOLOv5 rewrites best.pt when an epoch ties the best fitness: best_epoch and best/* are of that last epoch."""
    row2 = ROW1.replace("                   1,             0.11526", "                   2,             0.09999")
    csv = tmp_path / "results.csv"
    csv.write_text(HEADER + ROW0 + ROW1 + row2)
    watcher = ResultsWatcher(csv, FlakySink(), "run")
    watcher.poll()
    summary = {m.key: m.value for m in watcher.summary_metrics()}
    assert summary["best_epoch"] == 2
