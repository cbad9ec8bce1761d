"""Turns YOLOv5's results.csv into MLflow metrics, live, one step per epoch."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from mlflow.entities import Metric

from trainer.tracking import first_line

log = logging.getLogger(__name__)

# YOLOv5's fitness(): how it picks best.pt (0.1 * mAP@0.5 + 0.9 * mAP@0.5:0.95).
FITNESS_WEIGHTS = {"metrics/mAP_0.5": 0.1, "metrics/mAP_0.5_0.95": 0.9}


def clean_metric_name(name: str) -> str:
    """results.csv pads names with spaces, and ':' is not allowed in MLflow names on every platform."""
    return name.strip().replace(":", "_")


@dataclass(frozen=True)
class EpochRow:
    epoch: int
    values: dict[str, float]

    def fitness(self) -> float:
        return sum(w * self.values.get(k, 0.0) for k, w in FITNESS_WEIGHTS.items())


def parse_results(text: str) -> list[EpochRow]:
    """Parses the complete lines of results.csv; a partly written last line is left for the next read."""
    lines = text.split("\n")[:-1]  # the piece after the last newline is incomplete (or empty)
    if not lines:
        return []
    header = [clean_metric_name(h) for h in lines[0].split(",")]
    rows = []
    for line in lines[1:]:
        cells = [c.strip() for c in line.split(",")]
        if len(cells) != len(header) or not cells[0]:
            log.warning("skipping malformed results.csv line: %r", line)
            continue
        values: dict[str, float] = {}
        for key, cell in zip(header[1:], cells[1:]):
            try:
                number = float(cell)
            except ValueError:
                continue
            if math.isfinite(number):
                values[key] = number
        rows.append(EpochRow(int(float(cells[0])), values))
    return rows


class MetricSink(Protocol):
    def log_batch(self, run_id: str, metrics: list[Metric]) -> None: ...


@dataclass
class ResultsWatcher:
    """Follows results.csv while YOLOv5 writes it and logs each new epoch as soon as it appears.

    Rows that fail to reach the server (e.g. while it restarts) stay queued and go with the next
    flush, keeping their original timestamps so a retried request cannot create duplicates.
    """

    path: Path
    client: MetricSink
    run_id: str
    rows: list[EpochRow] = field(default_factory=list)
    _pending: list[Metric] = field(default_factory=list)

    def poll(self) -> int:
        """Reads new epochs, queues them, tries to send the queue; returns epochs newly seen."""
        new = self._read_new_rows()
        now_ms = int(time.time() * 1000)
        for row in new:
            self._pending.extend(Metric(k, v, now_ms, row.epoch) for k, v in row.values.items())
        self.flush()
        return len(new)

    def flush(self) -> bool:
        """Sends queued metrics; True when nothing is left queued."""
        # MLflow caps a batch at 1000 metrics; a few epochs with per-class columns stay below.
        while self._pending:
            batch = self._pending[:1000]
            try:
                self.client.log_batch(self.run_id, metrics=batch)
            except Exception as exc:  # the server may be restarting; keep the rows for later
                log.warning("could not log %d metric values yet (%s); will retry", len(batch), first_line(exc, 200))
                return False
            del self._pending[: len(batch)]
        return True

    def flush_until(self, deadline: float, interval: float = 2.0) -> bool:
        while not self.flush():
            if time.monotonic() + interval > deadline:
                return False
            time.sleep(interval)
        return True

    def summary_metrics(self) -> list[Metric]:
        """best/<metric> at YOLOv5's best epoch (the one saved as best.pt) plus epoch counters."""
        if not self.rows:
            return []
        now_ms = int(time.time() * 1000)
        # YOLOv5 rewrites best.pt on a tie (`best_fitness == fi`): of tied epochs, the last is the saved one.
        best = max(reversed(self.rows), key=EpochRow.fitness)
        step = self.rows[-1].epoch
        metrics = [Metric(f"best/{k}", v, now_ms, step) for k, v in best.values.items() if k.startswith("metrics/")]
        metrics.append(Metric("best_epoch", best.epoch, now_ms, step))
        metrics.append(Metric("epochs_completed", len(self.rows), now_ms, step))
        return metrics

    def queue(self, metrics: list[Metric]) -> None:
        self._pending.extend(metrics)

    def _read_new_rows(self) -> list[EpochRow]:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return []
        rows = parse_results(text)
        new = rows[len(self.rows):]
        self.rows = rows
        return new

