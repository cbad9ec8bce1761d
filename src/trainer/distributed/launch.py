"""DDP training under torchrun: the refusals YOLOv5 would only reach minutes in and the life of
a worker node (node_rank > 0), which trains but never creates or ends the MLflow run: node 0 owns it."""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, BinaryIO, Callable, Mapping

from trainer.config import ConfigError, TrainConfig
from trainer.training.torchrun import GROUP_TAG, group

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

    from trainer.training.child import Child, Signals

log = logging.getLogger(__name__)

REFUSED_WITH_DDP = ("--evolve", "--image-weights")  # YOLOv5's train.py asserts on both under DDP


def check(config: TrainConfig, cuda_devices: Callable[[], int]) -> None:
    """Refuses a DDP training YOLOv5 would refuse, naming the flag; cuda_devices is called only for a DDP training."""
    if not config.torchrun:
        return
    world = f"the world size {config.world_size} (--nnodes {config.nnodes} x --nproc-per-node {config.nproc_per_node})"
    if config.batch_size == -1:
        raise ConfigError(f"--batch-size -1 (autobatch) does not work with DDP: give the total batch, a multiple of {world}")
    if config.batch_size % config.world_size:
        raise ConfigError(f"--batch-size {config.batch_size} must be a multiple of {world}: it is the total over all ranks")
    for flag in REFUSED_WITH_DDP:
        if flag in config.extra_args:
            raise ConfigError(f"{flag} does not work with DDP (--nproc-per-node/--nnodes): YOLOv5 refuses it")
    if config.device in ("cpu", "mps"):
        raise ConfigError(f"--device {config.device} cannot train DDP (--nproc-per-node/--nnodes): YOLOv5's DDP needs CUDA")
    if config.device != "auto" and len(config.device.split(",")) != config.nproc_per_node:
        raise ConfigError(f"--device {config.device} names {len(config.device.split(','))} GPUs but --nproc-per-node is "
                          f"{config.nproc_per_node}: one GPU per process (or --device auto)")  # fmt: skip
    found = cuda_devices()
    if found < config.nproc_per_node:
        raise ConfigError(f"--nproc-per-node {config.nproc_per_node} needs {config.nproc_per_node} CUDA devices; "
                          f"this node has {found}")  # fmt: skip


def cuda_devices() -> int:
    import torch

    return torch.cuda.device_count()


def find_run(client: MlflowClient, config: TrainConfig, env: Mapping[str, str], deadline: float) -> str | None:
    """The RUNNING run node 0 created for this training (read only: a worker never creates or ends a run)."""
    from trainer import tracking

    while time.monotonic() < deadline:
        try:
            experiment = client.get_experiment_by_name(config.experiment)
            if experiment is not None:
                runs = client.search_runs([experiment.experiment_id], max_results=1,
                                          filter_string=f"tags.`{GROUP_TAG}` = '{group(config, env)}' "
                                                        "and attributes.status = 'RUNNING'")  # fmt: skip
                if runs:
                    return runs[0].info.run_id
        except Exception as exc:  # noqa: BLE001 - the server may still be starting
            log.debug("looking for node 0's run: %s", tracking.first_line(exc))
        time.sleep(2)
    return None


def work(config: TrainConfig, env: Mapping[str, str], console: BinaryIO) -> int:
    """A worker node: trains its ranks, streams their output, ends with torchrun's exit code (128+N on signal N)."""
    from trainer.training import runner

    with runner.launched(config, env, console) as launch:
        log.info("node %d of %d: a worker of the training whose MLflow run node 0 owns (group %s)",
                 config.node_rank, config.nnodes, group(config, env))  # fmt: skip
        launch.child.go()
        monitor: list[object] = []
        threading.Thread(target=_join_run, args=(config, env, monitor), daemon=True).start()
        try:
            return worker_exit(launch.child, launch.signals)
        finally:
            for m in monitor:
                m.finish()  # type: ignore[attr-defined]


def worker_exit(child: Child, signals: Signals) -> int:
    """Streams a worker node's ranks to their end: torchrun's exit code, or 128+N when signal N stopped them."""
    code = child.wait(None, signals)
    return 128 + signals.received if signals.received is not None else code


def _join_run(config: TrainConfig, env: Mapping[str, str], monitor: list[object]) -> None:
    """Names the run in the log and, with system metrics on, adds this node's system/node-<rank>/* metrics to it."""
    from mlflow.tracking import MlflowClient

    run_id = find_run(MlflowClient(config.mlflow_uri), config, env, time.monotonic() + max(config.wait_timeout, 60))
    if run_id is None:
        log.warning("node 0's MLflow run was not found (group %s): this node's system metrics are not logged",
                    group(config, env))  # fmt: skip
        return
    log.info("node %d is a worker of MLflow run %s", config.node_rank, run_id)
    if config.system_metrics:
        from trainer.training import runner

        found = runner.system_metrics(run_id, config)
        if found is not None:
            monitor.append(found)
