"""Calls that record a run but are not its training (dataset input, params, tags, model registration).

Each is retried while the server is away or a concurrent writer gets in the way; if it still fails, that is a
warning and a `bookkeeping_failed` tag on the run, never a failed training.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, TypeVar

from trainer.tracking import first_line, is_transient, retry

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

log = logging.getLogger(__name__)
T = TypeVar("T")

FAILED_TAG = "bookkeeping_failed"


@dataclass
class Bookkeeping:
    seconds: float  # how long each call is retried
    failed: list[str] = field(default_factory=list)

    def attempt(self, what: str, action: Callable[[], T]) -> T | None:
        """action's result, or None (and a warning) when it still fails after its retries."""
        try:
            return retry(what, action, time.monotonic() + self.seconds, transient=is_transient)
        except Exception as exc:  # noqa: BLE001 - whatever went wrong, the training itself is fine
            log.warning("%s failed after retries (%s); the run goes on without it", what, first_line(exc))
            self.failed.append(what)
            return None

    def record(self, client: MlflowClient, run_id: str) -> None:
        """Tags the run with what is missing from it, so the UI shows it (best effort: the server may be gone)."""
        if self.failed:
            try:
                client.set_tag(run_id, FAILED_TAG, "; ".join(self.failed))
            except Exception as exc:  # noqa: BLE001 - the warnings above are in the log already
                log.warning("could not tag the run with %s: %s", FAILED_TAG, first_line(exc))
