"""The training child process: `python -m trainer.yolo_entry <YOLOv5 train.py flags>`.

Runs in its own process so the parent can stream its output, watch results.csv and stop it on SIGTERM.
"""

from __future__ import annotations

import sys

from trainer import offline


def main(argv: list[str]) -> None:
    offline.prepare_environment()
    offline.patch_yolov5()
    from yolov5 import train

    sys.argv = ["yolov5-train", *argv]
    train.main(train.parse_opt())


if __name__ == "__main__":
    main(sys.argv[1:])
