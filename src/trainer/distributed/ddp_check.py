"""`trainer check-distributed`: the DDP wiring of a training checked in seconds, before a long training.

Takes the training's flags and env (the chart runs it in the same pods with the same values) and starts
`trainer.distributed.ddp_probe` under torchrun instead of YOLOv5: every rank rendezvouses with node 0, all-reduces
over gloo and reports its host. Node 0 records the check as one MLflow run (world size, hosts, rendezvous time, the
log) that ends FINISHED, FAILED (a rank was lost or never came) or KILLED; worker nodes never create or end a run.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import BinaryIO, Mapping

from trainer import tracking
from trainer.config import TrainConfig
from trainer.distributed import launch
from trainer.training import runner, torchrun
from trainer.training.child import Child, Signals, Tee

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from trainer import config as cfg

    cfg.add_train_arguments(parser)
    parser.add_argument("--hold", type=float, default=0.0, metavar="SECONDS",
                        help="keep the ranks all-reducing this long after the rendezvous (a lost rank fails the check)")


def run(config: TrainConfig, hold: float, env: Mapping[str, str], console: BinaryIO) -> int:
    logs = config.save_dir.parent / "logs" / f"{config.name}-ddp-check"
    result_file = logs / "ddp-check.json"
    result_file.unlink(missing_ok=True)
    entry = ["-m", "trainer.distributed.ddp_probe", "--out", str(result_file), "--hold", str(hold)]
    tee = Tee(logs / "ddp-check.log", console)
    with Signals() as signals:
        child = Child(torchrun.child_command(config, entry), env, tee, logs / "device.json")
        try:
            if config.node_rank > 0:
                log.info("node %d of %d: checking the rendezvous with node 0 (%s:%d); node 0 records the check",
                         config.node_rank, config.nnodes, config.master_addr, config.master_port)  # fmt: skip
                return launch.worker_exit(child, signals)
            return _recorded(config, env, child, signals, result_file, logs / "ddp-check.log")
        finally:
            child.stop(force=True)
            tee.close()


def _recorded(config: TrainConfig, env: Mapping[str, str], child: Child, signals: Signals,
              result_file: Path, log_file: Path) -> int:  # fmt: skip
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient

    tracking.wait_for_server(config.mlflow_uri, config.wait_timeout)
    client = MlflowClient(config.mlflow_uri)
    deadline = time.monotonic() + config.wait_timeout
    experiment_id = tracking.get_or_create_experiment(client, config.experiment, deadline)
    tags = {**runner.run_tags(config, env), "check": "distributed"}
    run_id = tracking.retry("creating the run", lambda: client.create_run(
        experiment_id, run_name=f"{config.run_name}-ddp-check", tags=tags).info.run_id, deadline,
        transient=tracking.is_transient)  # fmt: skip
    log.info("MLflow run %s records the check, live at %s", run_id,
             tracking.run_link(config.mlflow_uri, experiment_id, run_id))  # fmt: skip
    status, code = "FAILED", 1
    try:
        params = [Param(k, str(v)) for k, v in (("nnodes", config.nnodes), ("nproc_per_node", config.nproc_per_node),
                                                  ("master_addr", config.master_addr), ("master_port", config.master_port))]
        client.log_batch(run_id, params=params)
        child.go()
        code = child.wait(None, signals)
        result = json.loads(result_file.read_text()) if result_file.exists() else None
        if signals.received is not None:
            status, code = "KILLED", 128 + signals.received
        elif code == 0 and result and result["all_reduce"] == result["world_size"] == config.world_size:
            status = "FINISHED"
        else:
            log.error("the check failed (exit code %s): %s", code,
                      "no rank reached the rendezvous" if result is None else "a rank was lost after it")  # fmt: skip
            code = code or 1
        if result:
            now = int(time.time() * 1000)
            client.log_batch(run_id, metrics=[Metric("ddp_check/world_size", result["world_size"], now, 0),
                                              Metric("ddp_check/rendezvous_seconds", result["rendezvous_seconds"], now, 0)],
                             tags=[RunTag("ddp_check.hosts", ",".join(result["hosts"]))])  # fmt: skip
    finally:
        end = time.monotonic() + max(config.wait_timeout, runner.FINISH_SECONDS_MIN)
        try:
            tracking.retry("uploading the log", lambda: client.log_artifact(run_id, str(log_file), "logs"), end)
        except Exception as exc:  # noqa: BLE001 - the status below must still be set
            log.error("could not upload the log: %s", tracking.first_line(exc))
        tracking.retry("ending the run", lambda: client.set_terminated(run_id, status), end + 30)
    print(f"trainer: ddp check run {run_id} {status}", file=sys.stderr)
    return code
