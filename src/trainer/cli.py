"""`trainer train`, `check-distributed`, `make-dataset`, `predict`, `serve`, `follow-alias` and `check-serving`: the
command line of the training image (which is also the serving image)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from trainer import config as cfg

EXIT_USAGE = 2  # bad flags or environment values
EXIT_TRACKING = 3  # the tracking server never answered


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="trainer", description="YOLOv5 training tracked in MLflow")
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train YOLOv5 and record the run in MLflow")
    cfg.add_train_arguments(train)
    from trainer.distributed import ddp_check

    ddp_check.add_arguments(sub.add_parser("check-distributed", help="check a DDP training's rendezvous (gloo), recorded in MLflow"))
    data = sub.add_parser("make-dataset", help="write a small synthetic YOLO dataset (DIR/data.yaml)")
    data.add_argument("dir", type=Path)
    data.add_argument("--seed", type=int, default=0)
    data.add_argument("--train", type=int, default=32, help="training images")
    data.add_argument("--val", type=int, default=8, help="validation images")
    data.add_argument("--imgsz", type=int, default=128, help="image size in pixels")
    # light modules: mlflow and torch are imported when a command runs
    from trainer.serving import follow_alias, serving, serving_check
    from trainer.model import predict

    predict.add_arguments(sub.add_parser("predict", help="print a logged model's detections as JSON lines"))
    serving.add_arguments(sub.add_parser("serve", help="serve one registered version (MLflow's scoring server)"))
    follow_alias.add_arguments(sub.add_parser("follow-alias", help="keep the serving Deployment on the alias's version"))
    serving_check.add_arguments(sub.add_parser("check-serving", help="helm test of serving: one prediction, one 400"))
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="trainer: %(levelname)s %(message)s", stream=sys.stderr)
    for noisy in ("urllib3", "mlflow", "botocore", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    args = build_parser().parse_args(argv)
    if args.command == "make-dataset":
        return _make_dataset(args)
    if args.command == "predict":
        return _predict(args)
    if args.command in ("serve", "follow-alias", "check-serving"):
        return _serving(args)
    code = _check_distributed(args) if args.command == "check-distributed" else _train(args)
    # Everything is uploaded, closed and printed by now; skipping the interpreter's teardown of the modules
    # mlflow imported saves ~0.4 s per run (measured by bench/overhead.py).
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _fail(message: str, code: int) -> int:
    print(f"trainer: error: {message}", file=sys.stderr)
    return code


def _make_dataset(args: argparse.Namespace) -> int:
    from trainer.training.dataset import make_dataset

    try:
        data_yaml = make_dataset(args.dir, seed=args.seed, train=args.train, val=args.val, imgsz=args.imgsz)
    except (ValueError, OSError) as exc:
        return _fail(str(exc), EXIT_USAGE)
    print(data_yaml)
    return 0


def _predict(args: argparse.Namespace) -> int:
    from trainer.model import predict

    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    try:
        count = predict.run(args, sys.stdout)
    except predict.PredictError as exc:
        return _fail(str(exc), EXIT_USAGE)
    print(f"trainer: {count} detections in {len(args.images)} images", file=sys.stderr)
    return 0


def _serving(args: argparse.Namespace) -> int:
    from trainer.serving import follow_alias, serving, serving_check

    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    try:
        if args.command == "serve":
            serving.run(args)  # returns only when the waiting server stops
        elif args.command == "follow-alias":
            follow_alias.run(args, dict(os.environ))
        else:
            return serving_check.run(args)
    except (serving.ServeError, follow_alias.FollowError) as exc:
        return _fail(str(exc), EXIT_USAGE)
    return 0


def _check_distributed(args: argparse.Namespace) -> int:
    from trainer import tracking
    from trainer.distributed import ddp_check

    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    try:
        config = cfg.resolve(args, os.environ)
    except cfg.ConfigError as exc:
        return _fail(str(exc), EXIT_USAGE)
    if args.hold < 0:
        return _fail("--hold must be 0 or more", EXIT_USAGE)
    try:
        return ddp_check.run(config, args.hold, os.environ, sys.stdout.buffer)
    except tracking.TrackingUnavailable as exc:
        return _fail(str(exc), EXIT_TRACKING)


def _train(args: argparse.Namespace) -> int:
    from trainer import datafiles, tracking
    from trainer.distributed import launch
    from trainer.training import downloads, runner

    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    try:
        config = cfg.resolve(args, os.environ)
        launch.check(config, launch.cuda_devices)
        # A missing file would fail the run after it exists; a download YOLOv5 would retry for minutes offline:
        # both are found in seconds, before any run.
        datafiles.check(config, runner.yolov5_root(), os.environ)
        downloads.check(config, runner.yolov5_root(), os.environ)
    except cfg.ConfigError as exc:
        return _fail(str(exc), EXIT_USAGE)
    if config.node_rank > 0:  # a worker node of a DDP training: node 0 owns the MLflow run
        return launch.work(config, os.environ, sys.stdout.buffer)
    try:
        outcome = runner.run(config, os.environ, sys.stdout.buffer)
    except tracking.TrackingUnavailable as exc:
        return _fail(str(exc), EXIT_TRACKING)
    except Exception as exc:  # noqa: BLE001 - e.g. 401/403 from the server before a run exists
        return _fail(f"could not start an MLflow run at {config.mlflow_uri}: {tracking.first_line(exc)}", EXIT_TRACKING)
    mean_ap = outcome.metrics.get("metrics/mAP_0.5")
    summary = f"run {outcome.run_id} {outcome.status}"
    if mean_ap is not None:
        summary += f" mAP@0.5={mean_ap:.4f} mAP@0.5:0.95={outcome.metrics.get('metrics/mAP_0.5_0.95', 0.0):.4f}"
    print(f"trainer: {summary}", file=sys.stderr)
    return outcome.exit_code


if __name__ == "__main__":
    sys.exit(main())
