"""The training child process: `python -m trainer.training.yolo_entry <YOLOv5 train.py flags>`.

Runs in its own process so the parent can stream its output, watch results.csv and stop it on SIGTERM.
With TRAINER_HANDSHAKE=<file> it writes the device it chose there, then waits for `go` on stdin, so the
parent can record device and params before training starts while both processes start up in parallel.
Under torchrun (DDP) only global rank 0 does that handshake; every other rank trains at once, and `--device auto`
means this node's GPUs, one per local rank.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from trainer import checkpoints, offline


def main(argv: list[str]) -> None:
    offline.quiet_known_warnings()
    offline.prepare_environment()
    offline.patch_yolov5()
    import torch

    checkpoints.guard_saves(torch)  # SIGTERM while a .pt is written: it lands after the write, never in the middle
    from yolov5 import train

    sys.argv = ["yolov5-train", *argv]
    opt = train.parse_opt()
    gpu = torch.cuda.is_available()
    local_ranks = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))  # torchrun sets it: processes on this node
    if opt.device in ("", "auto"):
        opt.device = ",".join(map(str, range(local_ranks))) if gpu else "cpu"
    handshake = os.environ.pop("TRAINER_HANDSHAKE", "")
    if handshake and os.environ.get("RANK", "0") == "0":
        partial = Path(handshake + ".tmp")
        partial.write_text(json.dumps({"device": opt.device, "gpu": gpu}))
        partial.rename(handshake)  # the parent never reads half a file
        if sys.stdin.readline().strip() != "go":
            sys.exit("trainer: stopped before training started")
    train.main(opt)
    if os.environ.get("RANK", "0") == "0":
        from trainer.model.model_logging import check_after_training

        check_after_training(Path(opt.save_dir), dict(os.environ))


if __name__ == "__main__":
    main(sys.argv[1:])
