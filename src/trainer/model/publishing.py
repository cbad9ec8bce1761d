"""After a FINISHED training: log the detector as an MLflow Model, register it, point aliases at it.

All of it is bookkeeping (trainer/bookkeeping.py): a step that still fails after its retries is a warning and the
run tag `bookkeeping_failed`, and the training stays FINISHED.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from trainer import tracking
from trainer.model import model_logging, promotion
from trainer.bookkeeping import Bookkeeping

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

    from trainer.config import TrainConfig
    from trainer.datafiles import DataSpec

log = logging.getLogger(__name__)


def publish(client: MlflowClient, config: TrainConfig, run_id: str, spec: DataSpec | None, best_epoch: int,
            book: Bookkeeping) -> None:  # fmt: skip
    deadline = time.monotonic() + book.seconds
    logged = book.attempt("logging the model", lambda: model_logging.log_detector(
        client, config.mlflow_uri, run_id, config.save_dir, spec, config.imgsz, best_epoch, deadline))  # fmt: skip
    if not config.register_model:
        return
    if logged is None:
        log.warning("not registering %s: the run has no logged model", config.register_model)
        return
    name = config.register_model
    version = book.attempt("registering the model", lambda: tracking.register_model(
        client, run_id, name, config.model_alias, logged.model_id))  # fmt: skip
    if version is None:
        return
    book.attempt("tagging the registered version",
                 lambda: client.set_tag(run_id, "registered_model", f"{name}/{version}"))  # fmt: skip
    log.info("registered %s version %s%s", name, version, f" as @{config.model_alias}" if config.model_alias else "")
    if config.promote_alias:
        decision = book.attempt("promoting the model", lambda: promotion.promote(
            client, name, version, config.promote_alias, config.promote_metric, config.promote_mode,
            time.monotonic() + book.seconds))  # fmt: skip
        if decision is not None:
            log.info("promotion: %s", decision.message)
