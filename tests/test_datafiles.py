"""One rule for where a dataset yaml's files are, shared by the trainer's checks, its records and YOLOv5 itself."""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import shutil
import subprocess
import sys
import threading
import zipfile
from pathlib import Path
from typing import Iterator

import pytest
from mlflow.tracking import MlflowClient

from trainer.cli import build_parser
from trainer.config import ConfigError, resolve
from trainer.datafiles import check, load
from trainer.training.dataset import make_dataset
from trainer.training.downloads import needed
from trainer.training.runner import yolov5_root

from harness import MlflowServer, tiny_train_args, trainer_cmd, trainer_env

ROOT = yolov5_root()


def parse(*argv: str):
    return resolve(build_parser().parse_args(["train", *argv]), {"MLFLOW_TRACKING_URI": "http://127.0.0.1:1"})


def yolov5_check_dataset(data_yaml: Path, cwd: Path) -> dict[str, object]:
    """YOLOv5's own check_dataset() on the yaml the trainer hands it, offline (no download may start)."""
    code = ("import json, sys; from trainer import offline; offline.prepare_environment(); offline.patch_yolov5();"
            "from yolov5.utils.general import check_dataset;"
            "d = check_dataset(sys.argv[1], autodownload=False); print(json.dumps({k: str(d[k]) for k in ('train', 'val')}))")
    result = subprocess.run([sys.executable, "-c", code, str(data_yaml)], cwd=cwd, env=trainer_env(),
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return json.loads(result.stdout.splitlines()[-1])


def test_stock_coco128_lives_in_the_datasets_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    spec = load("coco128.yaml", ROOT, {})
    assert spec is not None and spec.source == ROOT / "data" / "coco128.yaml"
    assert spec.root == tmp_path / "datasets" / "coco128"  # not <site-packages>/datasets/coco128
    assert spec.download_dir() == tmp_path / "datasets"  # where YOLOv5 unzips coco128.zip (its folder coco128/)
    other = load("coco128.yaml", ROOT, {"YOLOv5_DATASETS_DIR": "/data/sets"})
    assert other is not None and other.root == Path("/data/sets/coco128")


def test_complete_dataset_on_a_volume_with_the_stock_yaml_needs_no_download(tmp_path: Path) -> None:
    """ci/gpu-values.yaml's layout: /datasets/coco128/{images,labels}/train2017 and the stock yaml beside them."""
    volume = tmp_path / "datasets"
    synth = make_dataset(tmp_path / "gen", train=2, val=2, imgsz=64).parent
    for kind in ("images", "labels"):
        (volume / "coco128" / kind).mkdir(parents=True)
        shutil.copytree(synth / kind / "train", volume / "coco128" / kind / "train2017")
    stock = volume / "coco128" / "coco128.yaml"
    shutil.copyfile(ROOT / "data" / "coco128.yaml", stock)
    env = {"YOLOv5_DATASETS_DIR": str(volume)}  # what the chart sets for training.dataset.existingClaim

    config = parse("--data", str(stock), "--weights", "", "--cfg", "yolov5n.yaml")
    assert needed(config, ROOT, env) == []  # offline: no "needs a download from ultralytics.com"
    spec = load(str(stock), ROOT, env)
    assert spec is not None and spec.present()
    copy = spec.write(tmp_path / "logs" / "data.yaml")
    found = yolov5_check_dataset(copy, cwd=tmp_path)
    assert found["train"] == str(volume / "coco128" / "images" / "train2017")


def test_yaml_without_path_is_relative_to_its_folder(tmp_path: Path) -> None:
    synth = make_dataset(tmp_path / "d", train=3, val=2, imgsz=64)
    synth.write_text("train: images/train\nval: images/val\nnames: [a, b, c]\n")  # no path:
    spec = load(str(synth), ROOT, {})
    assert spec is not None and spec.root == synth.parent and spec.present()  # YOLOv5 alone: its package folder


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--hyp", "hyp.typo.yaml"], "--hyp hyp.typo.yaml: no such file, and YOLOv5 ships none of that name (it ships "),
        (["--data", "coco129.yaml"], "--data coco129.yaml: no such file, and YOLOv5 ships none of that name"),
        (["--cfg", "yolov5q.yaml", "--weights", ""], "--cfg yolov5q.yaml: no such file"),
    ],
)
def test_a_bare_name_that_yolov5_does_not_ship_is_refused(argv: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        check(parse(*argv), ROOT, {})
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_yolov5s_own_bare_names_are_accepted(tmp_path: Path) -> None:
    data = make_dataset(tmp_path / "d", train=1, val=1, imgsz=64)
    check(parse("--data", str(data), "--hyp", "hyp.scratch-high.yaml", "--cfg", "yolov5n.yaml"), ROOT, {})


def test_bad_files_exit_2_before_a_run_exists(sqlite_server: MlflowServer, tmp_path: Path) -> None:
    data = make_dataset(tmp_path / "d", train=1, val=1, imgsz=64)
    no_val = tmp_path / "no-val.yaml"
    no_val.write_text(f"path: {data.parent}\ntrain: images/train\nnames: [a]\n")
    for argv, line in (
        (["--data", "coco129.yaml"], "--data coco129.yaml: no such file"),
        (["--data", str(data), "--hyp", "hyp.scratch-hihg.yaml"], "--hyp hyp.scratch-hihg.yaml: no such file"),
        (["--data", str(no_val)], f"--data {no_val}: missing val:"),
    ):
        result = subprocess.run(trainer_cmd("train", "--mlflow-uri", sqlite_server.url, "--weights", "", "--cfg",
                                            "yolov5n.yaml", *argv), cwd=tmp_path, env=trainer_env(),
                                capture_output=True, text=True, timeout=120)  # fmt: skip
        assert result.returncode == 2, result.stderr
        (only,) = result.stderr.strip().splitlines()  # one readable line
        assert only.startswith(f"trainer: error: {line}"), only
    assert MlflowClient(sqlite_server.url).get_experiment_by_name("yolov5-coco128-demo") is None  # no run, no experiment


@contextlib.contextmanager
def serve_folder(folder: Path) -> Iterator[str]:
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def zip_dataset(tmp_path: Path, name: str) -> Path:
    """A dataset archive shaped like YOLOv5's coco128.zip: one top folder NAME/ with images/ and labels/."""
    synth = make_dataset(tmp_path / "gen" / name, train=16, val=4, imgsz=128).parent
    archive = tmp_path / "www" / f"{name}.zip"
    archive.parent.mkdir(parents=True)
    with zipfile.ZipFile(archive, "w") as zf:
        for file in sorted(synth.rglob("*")):
            if file.is_file() and file.name != "data.yaml":
                zf.write(file, Path(name) / file.relative_to(synth))
    return archive


@pytest.mark.slow
def test_stock_style_yaml_downloads_where_training_looks(sqlite_server: MlflowServer, tmp_path: Path) -> None:
    """The stock coco128.yaml's shape (`path: ../datasets/NAME`, a zip `download:`) with the zip on 127.0.0.1:
    download, then train from it, FINISHED (YOLOv5 alone: "Dataset download success", then FileNotFoundError)."""
    zip_dataset(tmp_path, "shapes")
    work = tmp_path / "work"
    work.mkdir()
    with serve_folder(tmp_path / "www") as url:
        data = tmp_path / "cfg" / "shapes.yaml"
        data.parent.mkdir()
        data.write_text(f"path: ../datasets/shapes\ntrain: images/train\nval: images/val\n"
                        f"names: [red_rect, green_circle, blue_rect]\ndownload: {url}/shapes.zip\n")  # fmt: skip
        result = subprocess.run(trainer_cmd("train", "--mlflow-uri", sqlite_server.url, *tiny_train_args(data, epochs=1)),
                                cwd=work, env=trainer_env(), capture_output=True, text=True, timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Dataset download success" in result.stdout
    assert (work / "datasets" / "shapes" / "images" / "train").is_dir()
    client = MlflowClient(sqlite_server.url)
    (run,) = client.search_runs([client.get_experiment_by_name("yolov5-coco128-demo").experiment_id])
    assert run.info.status == "FINISHED"


@pytest.mark.slow
def test_yaml_without_path_trains_and_its_input_counts_what_trained(sqlite_server: MlflowServer, tmp_path: Path) -> None:
    data = make_dataset(tmp_path / "plain", train=16, val=4, imgsz=128)
    data.write_text("train: images/train\nval: images/val\nnames: [red_rect, green_circle, blue_rect]\n")
    result = subprocess.run(trainer_cmd("train", "--mlflow-uri", sqlite_server.url, *tiny_train_args(data, epochs=1)),
                            cwd=tmp_path, env=trainer_env(), capture_output=True, text=True, timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    client = MlflowClient(sqlite_server.url)
    (run,) = client.search_runs([client.get_experiment_by_name("yolov5-coco128-demo").experiment_id])
    assert run.info.status == "FINISHED"
    (inp,) = run.inputs.dataset_inputs
    profile = json.loads(inp.dataset.profile)
    assert (profile["train_images"], profile["val_images"], profile["classes"]) == (16, 4, 3)
