"""Training configuration: one table of options, each settable by flag or environment variable.

Precedence is flag > environment variable > default, so the chart's Job can pass values either way.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Mapping

DEFAULT_EXPERIMENT = "yolov5-coco128-demo"


class ConfigError(ValueError):
    """A bad option value; the message names the flag or environment variable."""


@dataclass(frozen=True)
class Option:
    flag: str
    type: Callable[[str], Any]
    default: Any
    help: str
    env: str = ""  # defaults to TRAINER_<FLAG>, e.g. --batch-size -> TRAINER_BATCH_SIZE

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")

    @property
    def env_name(self) -> str:
        return self.env or "TRAINER_" + self.dest.upper()


def _bool(text: str) -> bool:
    value = text.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"expected true or false, got {text!r}")


def _tag(text: str) -> dict[str, str]:
    """One --tag flag: KEY=VALUE, where the value may hold commas and '=' (`--tag classes=car,person`)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"expected KEY=VALUE, got {text!r}")
    return {key.strip(): value.strip()}


def _tags(text: str) -> dict[str, str]:
    """TRAINER_TAGS: a JSON object (what the chart sets: values may hold commas) or 'k=v,k2=v2'."""
    if text.lstrip().startswith("{"):
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"expected a JSON object: {exc}") from None
        if not isinstance(parsed, dict):
            raise ValueError("expected a JSON object")
        return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in parsed.items()}
    tags: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"expected KEY=VALUE, got {item!r}")
        tags[key.strip()] = value.strip()
    return tags


# Flag names follow YOLOv5's train.py so users can move between the two without relearning.
OPTIONS: tuple[Option, ...] = (
    Option("--data", str, "coco128.yaml", "dataset.yaml path, or a name YOLOv5 ships (coco128.yaml downloads it)"),
    Option("--weights", str, "yolov5s.pt", "initial weights path; '' trains from scratch (needs --cfg)"),
    Option("--cfg", str, "", "model.yaml, e.g. yolov5n.yaml"),
    Option("--hyp", str, "", "hyperparameters yaml (default: YOLOv5's hyp.scratch-low.yaml)"),
    Option("--epochs", int, 3, "total training epochs"),
    Option("--batch-size", int, 16, "total batch size (-1 = YOLOv5 autobatch)"),
    Option("--imgsz", int, 640, "train/val image size in pixels"),
    Option("--device", str, "auto", "auto (CUDA if available, else cpu), cpu, or CUDA ids like 0 or 0,1"),
    Option("--workers", int, 2, "dataloader workers"),
    Option("--optimizer", str, "SGD", "SGD, Adam or AdamW"),
    Option("--patience", int, 100, "early-stopping patience in epochs"),
    Option("--seed", int, 0, "global training seed"),
    Option("--project", str, "runs/train", "YOLOv5 output folder; the run goes to PROJECT/NAME"),
    Option("--name", str, "", "YOLOv5 run folder name (default: the MLflow run name)"),
    Option("--mlflow-uri", str, "", "MLflow tracking URI", env="MLFLOW_TRACKING_URI"),
    Option("--experiment", str, DEFAULT_EXPERIMENT, "MLflow experiment name", env="MLFLOW_EXPERIMENT_NAME"),
    Option("--run-name", str, "", "MLflow run name (default: the --variant, else yolov5-<dataset>-<UTC yyyymmdd-HHMMSS>)"),
    Option("--sweep", str, "", "sweep (group of runs compared together), recorded as the run tag `sweep`"),
    Option("--variant", str, "", "this run's variant in the sweep: the run tag `variant` and the default run name"),
    Option("--register-model", str, "", "register the logged detector (MLflow Model) as a version of this registered model"),
    Option("--model-alias", str, "", "alias to point at the new model version (needs --register-model)"),
    Option("--promote-alias", str, "", "alias (e.g. champion) moved to the new version only if its metric is better"),
    Option("--promote-metric", str, "best/metrics/mAP_0.5", "run metric that --promote-alias compares"),
    Option("--promote-mode", str, "max", "max (higher --promote-metric is better) or min"),
    Option("--wait-timeout", float, 120.0, "seconds to wait for the tracking server before giving up"),
    Option("--system-metrics", _bool, True, "log CPU/GPU/memory system metrics while training"),
    Option("--tag", _tags, {}, "extra run tag KEY=VALUE (repeatable; env: comma-separated, or a JSON object)", env="TRAINER_TAGS"),
    Option("--extra-args", shlex.split, [], "more YOLOv5 train.py flags, e.g. '--cos-lr --label-smoothing 0.1'"),
    # torchrun's flags and the PET_* env it (and Kubeflow) use: giving --nproc-per-node or --nnodes trains DDP under it
    Option("--nproc-per-node", int, 1, "DDP processes (one per GPU) on this node, under torchrun", env="PET_NPROC_PER_NODE"),
    Option("--nnodes", int, 1, "nodes of a DDP training; node 0 owns the MLflow run", env="PET_NNODES"),
    Option("--node-rank", int, 0, "this node's rank (else JOB_COMPLETION_INDEX, an Indexed Job's)", env="PET_NODE_RANK"),
    Option("--master-addr", str, "127.0.0.1", "address of node 0 (torchrun's static rendezvous)", env="PET_MASTER_ADDR"),
    Option("--master-port", int, 29500, "rendezvous port on node 0", env="PET_MASTER_PORT"),
)
DISTRIBUTED = ("nproc_per_node", "nnodes")  # either one given: torchrun launches YOLOv5

OPTIMIZERS = ("SGD", "Adam", "AdamW")
PROMOTE_MODES = ("max", "min")
_DEVICE = re.compile(r"^(auto|cpu|mps|\d+(,\d+)*)$")


@dataclass(frozen=True)
class TrainConfig:
    data: str
    weights: str
    cfg: str
    hyp: str
    epochs: int
    batch_size: int
    imgsz: int
    device: str
    workers: int
    optimizer: str
    patience: int
    seed: int
    project: str
    name: str
    mlflow_uri: str
    experiment: str
    run_name: str
    sweep: str
    variant: str
    register_model: str
    model_alias: str
    promote_alias: str
    promote_metric: str
    promote_mode: str
    wait_timeout: float
    system_metrics: bool
    tag: dict[str, str] = field(default_factory=dict)
    extra_args: list[str] = field(default_factory=list)
    nproc_per_node: int = 1
    nnodes: int = 1
    node_rank: int = 0
    master_addr: str = "127.0.0.1"
    master_port: int = 29500
    torchrun: bool = False  # --nproc-per-node or --nnodes was given (even 1: the DDP path with world size 1)

    @property
    def world_size(self) -> int:
        return self.nnodes * self.nproc_per_node

    @property
    def save_dir(self) -> Path:
        return Path(self.project).absolute() / self.name


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """Declares every option; defaults are resolved later so env errors can name the variable."""
    for opt in OPTIONS:
        kwargs: dict[str, Any] = {"dest": opt.dest, "default": None, "help": f"{opt.help} [env {opt.env_name}; default {_show(opt.default)}]"}
        if opt.dest == "tag":
            kwargs.update(action="append", metavar="KEY=VALUE")
        else:
            kwargs["metavar"] = opt.dest.upper()
        parser.add_argument(opt.flag, **kwargs)
    parser.add_argument("yolo_args", nargs="*", help="anything after -- goes to YOLOv5 train.py unchanged")


def _show(default: Any) -> str:
    return repr(default) if default in ("", [], {}) else str(default)


def _convert(opt: Option, raw: str, source: str) -> Any:
    try:
        return opt.type(raw)
    except ValueError as exc:
        kind = {int: "an integer", float: "a number"}.get(opt.type, "valid")
        detail = "" if opt.type in (int, float) else f" ({exc})"
        raise ConfigError(f"{source}={raw!r} is not {kind}{detail}") from None


def resolve(args: argparse.Namespace, env: Mapping[str, str], now: datetime | None = None) -> TrainConfig:
    """Merges flags, environment and defaults into a validated TrainConfig."""
    values: dict[str, Any] = {}
    for opt in OPTIONS:
        given = getattr(args, opt.dest)
        if opt.dest == "tag" and given:
            merged: dict[str, str] = {}
            flag = Option(opt.flag, _tag, {}, opt.help)
            for item in given:
                merged.update(_convert(flag, item, opt.flag))
            values["tag"] = merged
        elif given is not None:
            values[opt.dest] = _convert(opt, given, opt.flag)
        elif opt.env_name in env:
            values[opt.dest] = _convert(opt, env[opt.env_name], opt.env_name)
        elif opt.dest == "node_rank" and "JOB_COMPLETION_INDEX" in env:
            values[opt.dest] = _convert(opt, env["JOB_COMPLETION_INDEX"], "JOB_COMPLETION_INDEX")
        else:
            values[opt.dest] = opt.default
    values["torchrun"] = any(getattr(args, d) is not None or _option(d).env_name in env for d in DISTRIBUTED)
    values["extra_args"] = list(values["extra_args"]) + list(getattr(args, "yolo_args", None) or [])
    if not values["run_name"]:
        values["run_name"] = values["variant"] or default_run_name(values["data"], now)
    if not values["name"]:
        values["name"] = values["run_name"]
    config = TrainConfig(**values)
    validate(config)
    return config


def _option(dest: str) -> Option:
    return next(opt for opt in OPTIONS if opt.dest == dest)


def dataset_label(data: str) -> str:
    """Short dataset name for run names and tags: coco128.yaml -> coco128, /d/synth/data.yaml -> synth."""
    path = Path(data)
    if path.stem in {"data", "dataset"} and path.parent.name:
        return path.parent.name
    return path.stem or "dataset"


def default_run_name(data: str, now: datetime | None = None) -> str:
    stamp = (now or datetime.now(timezone.utc)).strftime("%Y%m%d-%H%M%S")
    return f"yolov5-{dataset_label(data)}-{stamp}"


def validate(config: TrainConfig) -> None:
    """Rejects values YOLOv5 would only fail on minutes later, naming the flag."""
    checks = [
        (config.epochs >= 1, "--epochs must be at least 1"),
        (config.batch_size >= 1 or config.batch_size == -1, "--batch-size must be positive or -1"),
        (config.imgsz >= 32 and config.imgsz % 32 == 0, "--imgsz must be a multiple of 32 (at least 32)"),
        (config.workers >= 0, "--workers must be 0 or more"),
        (config.patience >= 0, "--patience must be 0 or more"),
        (config.optimizer in OPTIMIZERS, f"--optimizer must be one of {', '.join(OPTIMIZERS)}"),
        (bool(_DEVICE.match(config.device)), "--device must be auto, cpu, or CUDA ids like 0 or 0,1"),
        (bool(config.weights or config.cfg), "--weights '' (from scratch) needs --cfg, e.g. --cfg yolov5n.yaml"),
        (config.wait_timeout >= 0, "--wait-timeout must be 0 or more"),
        (bool(config.mlflow_uri), "--mlflow-uri (or MLFLOW_TRACKING_URI) is required"),
        (bool(config.experiment), "--experiment must not be empty"),
        (not config.model_alias or bool(config.register_model), "--model-alias needs --register-model"),
        (not config.promote_alias or bool(config.register_model), "--promote-alias needs --register-model"),
        (config.promote_mode in PROMOTE_MODES, f"--promote-mode must be one of {', '.join(PROMOTE_MODES)}"),
        (bool(config.promote_metric), "--promote-metric must not be empty"),
        (not config.promote_alias or config.promote_alias != config.model_alias,
         "--promote-alias must differ from --model-alias (which is set unconditionally)"),
        ("/" not in config.name and config.name not in {".", ".."}, "--name must be a plain folder name"),
        (config.nproc_per_node >= 1, "--nproc-per-node must be at least 1"),
        (config.nnodes >= 1, "--nnodes must be at least 1"),
        (0 <= config.node_rank < config.nnodes, f"--node-rank must be from 0 to --nnodes - 1 ({config.nnodes - 1})"),
        (0 < config.master_port < 65536, "--master-port must be a port number (1-65535)"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)
    check_alias("--model-alias", config.model_alias)
    check_alias("--promote-alias", config.promote_alias)
    for flag, value in (("--data", config.data), ("--hyp", config.hyp), ("--weights", config.weights)):
        if _looks_local(value) and not Path(value).exists():
            raise ConfigError(f"{flag} {value}: no such file")


# MLflow's own rules (mlflow/utils/validation.py): it refuses these only when the alias is set, after the training.
_ALIAS = re.compile(r"^[\w\-]+$")
_VERSION_ALIAS = re.compile(r"^[vV]\d+$")


def check_alias(flag: str, alias: str) -> None:
    """Refuses an alias MLflow would refuse (characters, `latest`, `v<N>`) before the training, not after it."""
    if not alias:
        return
    if not _ALIAS.match(alias):
        raise ConfigError(f"{flag} {alias!r}: an alias may only contain letters, digits, '_' and '-'")
    if alias.lower() == "latest" or _VERSION_ALIAS.match(alias):
        raise ConfigError(f"{flag} {alias!r} is reserved by MLflow ('latest' and v<number> name versions)")


def _looks_local(value: str) -> bool:
    """A value with a folder part is a local file; a bare name may be one YOLOv5 ships or downloads."""
    return bool(value) and "://" not in value and (os.sep in value or value.startswith("."))
