"""A training under torchrun (DDP): the child's command, and what ties the nodes of one training to the MLflow run
node 0 owns (its group tag, the system-metrics node id). Pure functions of the configuration, used by the tracked run
(runner) and by a worker node (distributed.launch)."""

from __future__ import annotations

import sys
from typing import Mapping

from trainer.config import TrainConfig

ENTRY = ["-m", "trainer.training.yolo_entry"]
GROUP_TAG = "distributed.group"  # on node 0's run: how workers find the run they belong to


def child_command(config: TrainConfig, entry: list[str] = ENTRY) -> list[str]:
    """The training child: `python -m trainer.training.yolo_entry`, under torch.distributed.run when the training is
    DDP.
    Static rendezvous (--master-addr/--master-port) keeps node 0's first process global rank 0."""
    if not config.torchrun:
        return [sys.executable, *entry]
    return [
        sys.executable, "-m", "torch.distributed.run", "--nnodes", str(config.nnodes),
        "--nproc-per-node", str(config.nproc_per_node), "--node-rank", str(config.node_rank),
        "--master-addr", config.master_addr, "--master-port", str(config.master_port), *entry,
    ]  # fmt: skip


def group(config: TrainConfig, env: Mapping[str, str]) -> str:
    """What the nodes of one training share: the Job (one per training) where the chart runs it, else the rendezvous."""
    return env.get("KUBERNETES_JOB_NAME") or f"{config.master_addr}:{config.master_port}"


def run_tags(config: TrainConfig, env: Mapping[str, str]) -> dict[str, str]:
    if not config.torchrun:
        return {}
    return {GROUP_TAG: group(config, env), "world_size": str(config.world_size)}


def node_id(config: TrainConfig) -> str | None:
    """MLflow's system-metrics node id (system/<id>/...): set when several nodes log into one run."""
    return f"node-{config.node_rank}" if config.nnodes > 1 else None


