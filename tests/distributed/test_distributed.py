"""DDP under torchrun: the launch command and the refusals (unit), then real processes on CPU: refusals before a run
exists, torchrun wiring up to YOLOv5's own CUDA assert, and `trainer check-distributed` rendezvousing two nodes over
gloo, recorded as one run by node 0 alone (a worker never creates or ends one), FAILED when a worker goes away."""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from trainer import config as cfg
from trainer.distributed import launch
from trainer.training import runner, torchrun

from harness import MlflowServer, Proc, free_port, tiny_train_args, trainer_cmd, trainer_env, wait_until


def resolve(*argv: str, env: dict[str, str] | None = None) -> cfg.TrainConfig:
    parser = argparse.ArgumentParser()
    cfg.add_train_arguments(parser)
    return cfg.resolve(parser.parse_args(["--mlflow-uri", "http://127.0.0.1:1", *argv]), env or {})


def test_single_process_unless_torchrun_flags_are_given() -> None:
    config = resolve()
    assert not config.torchrun and config.world_size == 1
    assert torchrun.child_command(config) == [sys.executable, "-m", "trainer.training.yolo_entry"]
    launch.check(config, lambda: pytest.fail("a single-process training must not look for GPUs"))


def test_torchrun_command_for_one_node_and_for_several() -> None:
    one = resolve("--nproc-per-node", "1")  # world size 1, still through torchrun (the DDP path)
    assert one.torchrun and one.world_size == 1
    assert torchrun.child_command(one)[1:] == [
        "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", "1", "--node-rank", "0",
        "--master-addr", "127.0.0.1", "--master-port", "29500", "-m", "trainer.training.yolo_entry",
    ]  # fmt: skip
    env = {"PET_NNODES": "2", "PET_NPROC_PER_NODE": "4", "PET_MASTER_ADDR": "train-0.train", "PET_MASTER_PORT": "23456",
           "JOB_COMPLETION_INDEX": "1"}  # fmt: skip
    two = resolve(env=env)
    assert (two.nnodes, two.nproc_per_node, two.node_rank, two.world_size) == (2, 4, 1, 8)
    assert torchrun.child_command(two)[3:13] == [
        "--nnodes", "2", "--nproc-per-node", "4", "--node-rank", "1", "--master-addr", "train-0.train",
        "--master-port", "23456",
    ]  # fmt: skip


def test_node_rank_comes_from_the_flag_then_pet_node_rank_then_the_job_completion_index() -> None:
    env = {"PET_NNODES": "3", "JOB_COMPLETION_INDEX": "2"}
    assert resolve(env=env).node_rank == 2
    assert resolve(env={**env, "PET_NODE_RANK": "1"}).node_rank == 1
    assert resolve("--node-rank", "0", env={**env, "PET_NODE_RANK": "1"}).node_rank == 0
    assert resolve().node_rank == 0
    with pytest.raises(cfg.ConfigError, match="JOB_COMPLETION_INDEX='x' is not an integer"):
        resolve(env={"JOB_COMPLETION_INDEX": "x"})
    with pytest.raises(cfg.ConfigError, match="--node-rank must be from 0 to --nnodes - 1"):
        resolve("--nnodes", "2", "--node-rank", "2")


@pytest.mark.parametrize(
    ("argv", "gpus", "message"),
    [
        (["--batch-size", "-1"], 2, "--batch-size -1 (autobatch) does not work with DDP"),
        (["--batch-size", "10", "--nnodes", "2"], 4, "--batch-size 10 must be a multiple of the world size 4"),
        (["--extra-args", "--evolve 10"], 2, "--evolve does not work with DDP"),
        (["--", "--image-weights"], 2, "--image-weights does not work with DDP"),
        (["--device", "cpu"], 2, "--device cpu cannot train DDP"),
        (["--device", "0"], 2, "--device 0 names 1 GPUs but --nproc-per-node is 2"),
        ([], 1, "--nproc-per-node 2 needs 2 CUDA devices; this node has 1"),
    ],
)
def test_refusals_name_the_flag(argv: list[str], gpus: int, message: str) -> None:
    config = resolve("--nproc-per-node", "2", "--batch-size", "16", *argv)
    with pytest.raises(cfg.ConfigError) as refused:
        launch.check(config, lambda: gpus)
    assert message in str(refused.value)


def test_runs_record_the_world_size() -> None:
    config = resolve(env={"PET_NNODES": "2", "PET_NPROC_PER_NODE": "4", "KUBERNETES_JOB_NAME": "train-abc"})
    assert runner.run_tags(config, {"KUBERNETES_JOB_NAME": "train-abc"})[torchrun.GROUP_TAG] == "train-abc"
    assert runner.run_tags(config, {})["world_size"] == "8"
    assert "world_size" not in runner.run_tags(resolve(), {})
    assert torchrun.node_id(config) == "node-0" and torchrun.node_id(resolve()) is None


def test_ddp_on_cpu_is_refused_in_one_line_before_a_run_exists(sqlite_server: MlflowServer, dataset: Path,
                                                               tmp_path: Path) -> None:  # fmt: skip
    for extra in (["--device", "cpu"], []):  # explicit CPU; auto on a machine without CUDA
        proc = subprocess.run(
            trainer_cmd("train", "--mlflow-uri", sqlite_server.url, *tiny_train_args(dataset), "--nproc-per-node", "2",
                        *extra), cwd=tmp_path, env=trainer_env(), capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("trainer: error: --"), proc.stderr
        assert ("--device cpu cannot train DDP" if extra else "needs 2 CUDA devices; this node has 0") in lines[0]
    client = MlflowClient(sqlite_server.url)
    assert not client.search_runs([e.experiment_id for e in client.search_experiments()])


def test_torchrun_starts_yolov5_as_a_rank_up_to_its_cuda_assert(dataset: Path, tmp_path: Path) -> None:
    """No refusal is possible where CUDA is missing only at YOLOv5's assert: the launch itself is what is checked."""
    config = resolve(*tiny_train_args(dataset), "--nproc-per-node", "1", "--master-port", str(free_port()))
    root = runner.yolov5_root()
    argv = torchrun.child_command(config) + runner.yolo_args(config, root / "data/hyps/hyp.scratch-low.yaml", str(dataset))
    proc = subprocess.run(argv, cwd=tmp_path, env=trainer_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "insufficient CUDA devices for DDP command" in proc.stdout + proc.stderr, proc.stderr[-3000:]


def check_node(rank: int, server: str, port: int, tmp_path: Path, *extra: str) -> Proc:
    argv = trainer_cmd("check-distributed", "--mlflow-uri", server, "--nnodes", "2", "--node-rank", str(rank),
                       "--master-port", str(port), "--run-name", "wiring", "--project", str(tmp_path / f"node{rank}"),
                       *extra)  # fmt: skip
    return Proc(argv, tmp_path / f"node{rank}.log", trainer_env())


def test_two_nodes_rendezvous_and_only_node_0_records_the_check(mlflow_server_factory, tmp_path: Path) -> None:
    tracked, untouched = mlflow_server_factory(), mlflow_server_factory()  # the worker reports to a second server
    port = free_port()
    worker = check_node(1, untouched.url, port, tmp_path)
    master = check_node(0, tracked.url, port, tmp_path)
    assert master.popen.wait(300) == 0, master.tail()
    assert worker.popen.wait(120) == 0, worker.tail()
    client = MlflowClient(tracked.url)
    (run,) = client.search_runs([client.get_experiment_by_name("yolov5-coco128-demo").experiment_id])
    assert run.info.status == "FINISHED" and run.info.run_name == "wiring-ddp-check"
    assert run.data.params["nnodes"] == "2" and run.data.tags["world_size"] == "2"
    assert run.data.metrics["ddp_check/world_size"] == 2 and len(run.data.tags["ddp_check.hosts"].split(",")) == 2
    assert [a.path for a in client.list_artifacts(run.info.run_id, "logs")] == ["logs/ddp-check.log"]
    assert MlflowClient(untouched.url).search_experiments(filter_string="name != 'Default'") == []
    assert not MlflowClient(untouched.url).search_runs(["0"])
    assert "node 1 of 2" in worker.tail()


def test_a_worker_that_goes_away_fails_node_0s_run(sqlite_server: MlflowServer, tmp_path: Path) -> None:
    port = free_port()
    worker = check_node(1, sqlite_server.url, port, tmp_path)
    master = check_node(0, sqlite_server.url, port, tmp_path, "--hold", "300")
    client = MlflowClient(sqlite_server.url)

    def running() -> bool:
        experiment = client.get_experiment_by_name("yolov5-coco128-demo")
        return experiment is not None and "all-reduce 2" in master.tail(200) and bool(client.search_runs([experiment.experiment_id]))

    wait_until(running, 300, "the rendezvous", master)
    worker.stop(signal.SIGTERM)  # what deleting its pod does
    assert master.popen.wait(200) != 0, master.tail()
    (run,) = client.search_runs([client.get_experiment_by_name("yolov5-coco128-demo").experiment_id])
    assert run.info.status == "FAILED", master.tail()
    assert "a rank was lost" in master.tail()
    assert worker.popen.returncode != 0
