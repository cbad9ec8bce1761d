"""Which weights/dataset downloads a training needs, and the one-line refusal when they cannot happen."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from trainer.cli import build_parser
from trainer.config import ConfigError, resolve
from trainer.training.downloads import check, needed, reachable
from trainer.training.runner import yolov5_root


def parse(*argv: str):
    return resolve(build_parser().parse_args(["train", *argv]), {"MLFLOW_TRACKING_URI": "http://127.0.0.1:1"})


def unreachable(url: str) -> str:
    return "cannot resolve it"


def test_defaults_need_the_release_weights_and_coco128() -> None:
    found = needed(parse(), yolov5_root(), {})
    assert [(d.flag, d.value) for d in found] == [("--weights", "yolov5s.pt"), ("--data", "coco128.yaml")]
    assert found[0].url.startswith("https://github.com/")
    assert found[1].url == "https://ultralytics.com/assets/coco128.zip"  # coco128.yaml's `download:`


def test_local_weights_and_dataset_need_nothing(dataset: Path, tmp_path: Path) -> None:
    weights = tmp_path / "yolov5s.pt"
    weights.write_bytes(b"local")
    assert needed(parse("--data", str(dataset), "--weights", str(weights)), yolov5_root(), {}) == []
    assert needed(parse("--data", str(dataset), "--weights", "", "--cfg", "yolov5n.yaml"), yolov5_root(), {}) == []


def test_url_weights_and_a_yaml_whose_dataset_is_present(tmp_path: Path) -> None:
    (tmp_path / "images" / "val").mkdir(parents=True)
    data = tmp_path / "data.yaml"
    data.write_text(f"path: {tmp_path}\ntrain: images/val\nval: images/val\nnames: [a]\ndownload: https://example.com/d.zip\n")
    found = needed(parse("--data", str(data), "--weights", "https://models.example.com/w/best.pt"), yolov5_root(), {})
    assert [(d.flag, d.url) for d in found] == [("--weights", "https://models.example.com/w/best.pt")]


def test_unreachable_weights_name_the_flag_and_the_fix() -> None:
    with pytest.raises(ConfigError) as err:
        check(parse(), yolov5_root(), {}, probe=unreachable)
    message = str(err.value)
    assert message.startswith("--weights yolov5s.pt needs a download from github.com, which is unreachable")
    assert "--weights '' --cfg yolov5n.yaml" in message
    assert "\n" not in message


def test_unreachable_dataset_names_the_synthetic_alternative(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        check(parse("--weights", "", "--cfg", "yolov5n.yaml"), yolov5_root(), {}, probe=unreachable)
    assert str(err.value).startswith("--data coco128.yaml needs a download from ultralytics.com")
    assert "trainer make-dataset" in str(err.value) and "training.dataset.synthetic" in str(err.value)


def test_reachable_downloads_pass() -> None:
    check(parse(), yolov5_root(), {}, probe=lambda url: "")


def test_probe_is_a_tcp_connect_on_loopback() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert reachable(f"http://127.0.0.1:{port}/x.pt", timeout=2) == ""
    assert reachable(f"http://127.0.0.1:{port}/x.pt", timeout=2).startswith(f"cannot connect to 127.0.0.1:{port}")
