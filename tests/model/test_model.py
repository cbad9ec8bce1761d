"""The trained detector as an MLflow Model: the shared tiny training (harness.sqlite_training) registers it; then it
is loaded by alias, compared with YOLOv5's own inference, served by `trainer serve` (also with the curl examples of
the docs), and called by `trainer predict`."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
import pytest
from mlflow.entities import LoggedModelStatus
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from PIL import Image

from harness import (MODEL, MlflowServer, S3, Proc, Training, free_port, http_json, http_ok, trainer_cmd, trainer_env,
                     wait_until)  # fmt: skip
from test_docs_commands import scoring_examples
from trainer.training.dataset import _sample

pytestmark = pytest.mark.slow

URI = f"models:/{MODEL}@champion"
COLUMNS = ["image_index", "xmin", "ymin", "xmax", "ymax", "confidence", "class", "name"]
LOW = {"conf": 0.001, "max_det": 50}  # a two-epoch model is unsure of everything: keep its boxes to compare


@dataclass(frozen=True)
class Trained:
    server: MlflowServer
    run_id: str
    weights: Path  # best.pt as YOLOv5 wrote it
    workdir: Path


def registered(training: Training, experiment: str = "yolov5-coco128-demo") -> Trained:
    """The shared training's registered run (MODEL@champion), once its output shows it finished cleanly."""
    result = training.result
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "failed after retries" not in result.stderr, result.stderr[-3000:]
    assert "logged the model models:/m-" in result.stderr
    [weights] = training.workdir.glob("runs/train/*/weights/best.pt")
    client = MlflowClient(training.server.url)
    [run] = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    return Trained(training.server, run.info.run_id, weights, training.workdir)


@pytest.fixture(scope="module")
def trained(sqlite_training: Training) -> Trained:
    return registered(sqlite_training)


@contextlib.contextmanager
def tracking_uri(url: str) -> Iterator[None]:
    """models:/ URIs resolve against the process-wide tracking URI."""
    import mlflow

    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(url)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous)


@pytest.fixture(scope="module")
def model(trained: Trained):  # noqa: ANN201 - mlflow's PyFuncModel
    import mlflow

    with tracking_uri(trained.server.url):
        return mlflow.pyfunc.load_model(URI)


def jpeg(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=95)
    return out.getvalue()


def generated(size: int, seed: int = 7) -> bytes:
    """A new image of the dataset's kind (shapes on noise), not one the model trained on."""
    image, _ = _sample(np.random.default_rng(seed), size)
    return jpeg(image)


def yolov5_reference(weights: Path, images: list[bytes], size: int, conf: float, max_det: int) -> pd.DataFrame:
    """YOLOv5's own inference, in this process: yolov5.load (DetectMultiBackend + AutoShape), same settings."""
    import yolov5
    from yolov5.models.common import AutoShape

    reference = yolov5.load(str(weights), device="cpu")
    assert isinstance(reference, AutoShape)  # yolov5.load falls back to the raw model when loading fails
    reference.conf, reference.iou, reference.max_det = conf, 0.45, max_det
    frames = []
    for index, data in enumerate(images):
        frame = reference(Image.open(io.BytesIO(data)).convert("RGB"), size=size).pandas().xyxy[0]
        frames.append(frame.assign(image_index=index))
    return pd.concat(frames, ignore_index=True)[COLUMNS]


def test_registered_version_is_the_logged_model_linked_to_the_run(trained: Trained) -> None:
    client = MlflowClient(trained.server.url)
    version = client.get_model_version_by_alias(MODEL, "champion")
    assert version.run_id == trained.run_id
    run = client.get_run(trained.run_id)
    [output] = run.outputs.model_outputs  # the run's one LoggedModel, at its best epoch
    assert output.step == int(run.data.metrics["best_epoch"])
    assert version.source == f"models:/{output.model_id}"  # not the run's weights folder
    logged = client.get_logged_model(output.model_id)
    assert logged.source_run_id == trained.run_id
    assert logged.status == LoggedModelStatus.READY
    assert {m.key for m in logged.metrics} >= {"metrics/mAP_0.5", "metrics/mAP_0.5_0.95"}  # the model page's mAP
    assert logged.params["imgsz"] == "128"
    assert run.data.tags["registered_model"] == f"{MODEL}/{version.version}"
    weights = {a.path for a in client.list_artifacts(trained.run_id, "training-output/weights")}
    assert "training-output/weights/best.pt" in weights  # the old artifacts stay


def test_model_has_signature_example_and_pinned_requirements(trained: Trained, model) -> None:
    import importlib.metadata

    import mlflow
    from mlflow.models import Model

    meta = model.metadata
    assert meta.get_input_schema().input_names() == ["image"]
    assert meta.get_input_schema().input_types()[0].name == "binary"
    assert {p.name: p.default for p in meta.get_params_schema().params} == {
        "conf": 0.25, "iou": 0.45, "size": 128, "max_det": 1000}  # fmt: skip
    assert meta.get_output_schema().input_names() == COLUMNS
    with tracking_uri(trained.server.url):
        local = Path(mlflow.artifacts.download_artifacts(URI))
    example = Model.load(str(local)).load_input_example(str(local))
    assert Image.open(io.BytesIO(example["image"][0])).size == (128, 128)  # a validation image of the dataset
    requirements = (local / "requirements.txt").read_text().split()
    for name in ("mlflow", "torch", "yolov5", "pillow"):
        assert f"{name}=={importlib.metadata.version(name)}" in requirements
    assert (local / "detector_model.py").is_file() and not list(local.rglob("*.pkl"))  # models from code


def test_the_training_process_checks_the_model_and_a_failed_check_logs_none(trained: Trained, dataset: Path,
                                                                           tmp_path: Path) -> None:  # fmt: skip
    """The training child loaded its best.pt as MLflow will and predicted on the example before it exited (so the
    parent never imports torch for it); a failure there keeps the model out of MLflow, and weights written after that
    check are checked again by the parent."""
    from trainer import datafiles
    from trainer.model import model_logging

    check = json.loads((trained.weights.parent.parent / model_logging.CHECK_FILE).read_text())
    assert (check["weights"], check["error"]) == ("best.pt", ""), check
    save_dir = tmp_path / "run"
    (save_dir / "weights").mkdir(parents=True)
    weights = save_dir / "weights" / "best.pt"
    weights.write_bytes(trained.weights.read_bytes())
    stat = weights.stat()
    failed = {"weights": "best.pt", "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "error": "ValueError: boom"}
    (save_dir / model_logging.CHECK_FILE).write_text(json.dumps(failed))
    spec = datafiles.load(str(dataset), dataset.parent, {})
    client = MlflowClient(trained.server.url)
    with pytest.raises(RuntimeError, match="does not load and predict on the input example: ValueError: boom"):
        model_logging.log_detector(client, trained.server.url, trained.run_id, save_dir, spec, 128, 0, 0.0)
    assert model_logging.checked_by_child(save_dir, weights) == "ValueError: boom"
    weights.write_bytes(trained.weights.read_bytes() + b"\0")  # not the file the child checked
    assert model_logging.checked_by_child(save_dir, weights) is None


def test_load_by_alias_predicts_the_boxes_of_yolov5_itself(trained: Trained, model) -> None:
    images = [generated(128, seed=7), generated(128, seed=8)]
    found = model.predict(pd.DataFrame({"image": images}), params=LOW)
    assert list(found.columns) == COLUMNS
    assert len(found) > 0 and set(found["image_index"]) <= {0, 1}
    assert set(found["name"]) <= {"red_rect", "green_circle", "blue_rect"}
    expected = yolov5_reference(trained.weights, images, size=128, **LOW)
    assert len(found) == len(expected)
    assert found["class"].tolist() == expected["class"].tolist()
    assert found["name"].tolist() == expected["name"].tolist()
    np.testing.assert_allclose(found[COLUMNS[1:6]].to_numpy(float), expected[COLUMNS[1:6]].to_numpy(float), atol=1e-3)
    # base64 text (what JSON carries) gives the same rows as bytes
    again = model.predict(pd.DataFrame({"image": [base64.b64encode(b).decode() for b in images]}), params=LOW)
    pd.testing.assert_frame_equal(again, found)


def test_huge_image_is_resized_by_size(trained: Trained, model) -> None:
    big = jpeg(Image.open(io.BytesIO(generated(128, seed=9))).resize((3000, 2000)))
    found = model.predict(pd.DataFrame({"image": [big]}), params={**LOW, "size": 256})
    assert len(found) > 0
    assert found["xmax"].max() <= 3000 and found["ymax"].max() <= 2000  # pixels of the original image
    expected = yolov5_reference(trained.weights, [big], size=256, **LOW)
    np.testing.assert_allclose(found[COLUMNS[1:6]].to_numpy(float), expected[COLUMNS[1:6]].to_numpy(float), atol=1e-2)


def test_bad_input_is_the_callers_error_and_empty_input_gives_no_rows(model) -> None:
    with pytest.raises(MlflowException, match=r"image row 1: not a decodable JPEG or PNG image") as caught:
        model.predict(pd.DataFrame({"image": [generated(128), b"not an image"]}))
    assert caught.value.error_code == "INVALID_PARAMETER_VALUE"
    empty = model.predict(pd.DataFrame({"image": pd.Series([], dtype=object)}))
    assert list(empty.columns) == COLUMNS and len(empty) == 0
    assert len(model.predict(pd.DataFrame({"image": [generated(128)]}))) == 0  # default conf 0.25: nothing sure


@dataclass(frozen=True)
class Served:
    url: str
    version: str
    proc: Proc


@pytest.fixture(scope="module")
def served(trained: Trained) -> Iterator[Served]:
    """`trainer serve` (the serving pod's process): MLflow's scoring server on the pinned version."""
    version = MlflowClient(trained.server.url).get_model_version_by_alias(MODEL, "champion").version
    port = free_port()
    proc = Proc(trainer_cmd("serve", "--model", MODEL, "--alias", "champion", "--version", version, "--host",
                            "127.0.0.1", "--port", str(port)), trained.workdir / "serve.log",
                env={"MLFLOW_TRACKING_URI": trained.server.url})  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: http_ok(f"{url}/ping"), 300, "trainer serve", proc)
        yield Served(url, version, proc)
    finally:
        proc.stop()


def test_trainer_serve_pins_the_version_and_check_serving_passes(served: Served) -> None:
    """`trainer serve` serves the pinned version; the chart's helm test (`trainer check-serving`) gets rows with the
    documented columns and a 400 naming a non-image."""
    url = served.url
    assert f"serving models:/{MODEL}/{served.version} (pinned from alias @champion)" in served.proc.tail()
    image = base64.b64encode(generated(128)).decode()
    split = {"columns": ["image"], "data": [[image]]}
    status, body = http_json("POST", f"{url}/invocations", {"dataframe_split": split, "params": LOW})
    assert status == 200, body
    assert body["predictions"] and set(body["predictions"][0]) == set(COLUMNS)
    bad = {"columns": ["image"], "data": [[image], [base64.b64encode(b"not an image").decode()]]}
    status, body = http_json("POST", f"{url}/invocations", {"dataframe_split": bad})
    assert status == 400, body
    assert "image row 1: not a decodable JPEG or PNG image" in body["message"]
    check = subprocess.run(trainer_cmd("check-serving", "--url", url), env=trainer_env(), capture_output=True,
                           text=True, timeout=300)  # fmt: skip
    assert check.returncode == 0, check.stdout + check.stderr
    assert "detections with columns image_index, xmin" in check.stdout


def test_documented_curl_examples_score_a_photo_over_500_kb(served: Served, tmp_path: Path) -> None:
    """The curl examples of README, docs/ and NOTES.txt, run by bash as written (only the port-forward's address
    becomes the server's) on a JPEG of more than 500 KB: Linux refuses one argument over 128 KiB, so an image inlined
    into the command line fails where a photo is ordinary."""
    rng = np.random.default_rng(3)
    photo = jpeg(Image.fromarray(rng.integers(0, 256, (768, 1024, 3), dtype=np.uint8)))  # noise: barely compresses
    assert len(photo) >= 500_000
    (tmp_path / "street.jpg").write_bytes(photo)
    show_status = "curl() { command curl -w '\\n%{http_code}' \"$@\"; }\n"  # the documented curl, plus its HTTP status
    examples = scoring_examples()
    assert len(examples) >= 4
    for where, script in examples:
        (tmp_path / "payload.json").unlink(missing_ok=True)
        script = script.replace("localhost:8080", served.url.removeprefix("http://"))
        result = subprocess.run(["bash", "-c", show_status + script], cwd=tmp_path, capture_output=True, text=True,
                                timeout=300)  # fmt: skip
        assert result.returncode == 0, f"{where}: {result.stderr[-2000:]}"
        body, _, status = result.stdout.rpartition("\n")
        assert status == "200", f"{where}: {status} {body[:2000]}"
        predictions = json.loads(body)["predictions"]  # rows of detections (none at conf 0.4 from a 2-epoch model)
        assert isinstance(predictions, list) and all(set(row) == set(COLUMNS) for row in predictions), body[:2000]
        sent = json.loads((tmp_path / "payload.json").read_text())
        assert base64.b64decode(sent["dataframe_split"]["data"][0][0]) == photo, where  # the whole photo went


def test_trainer_predict_prints_json_lines(trained: Trained, tmp_path: Path) -> None:
    paths = []
    for seed in (7, 8):
        paths.append(tmp_path / f"shapes-{seed}.jpg")
        paths[-1].write_bytes(generated(128, seed=seed))
    predict = ["predict", "--mlflow-uri", trained.server.url, "--model", URI, "--conf", "0.001", "--max-det", "50"]
    result = subprocess.run(trainer_cmd(*predict, *map(str, paths)), env=trainer_env(), capture_output=True,
                            text=True, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert lines and {line["image"] for line in lines} <= set(map(str, paths))
    assert set(lines[0]) == {"image", *COLUMNS}
    assert f"trainer: {len(lines)} detections in 2 images" in result.stderr

    (tmp_path / "notes.jpg").write_text("not an image")
    bad = subprocess.run(trainer_cmd(*predict, str(paths[0]), str(tmp_path / "notes.jpg")), env=trainer_env(),
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert bad.returncode == 2
    assert bad.stderr.strip() == f"trainer: error: {tmp_path / 'notes.jpg'}: not a decodable JPEG or PNG image"
    assert bad.stdout == ""


def test_postgres_and_s3_model_loads_by_alias(postgres_s3_training: Training, s3: S3) -> None:
    import mlflow

    trained = registered(postgres_s3_training, "pg-s3")
    server = trained.server
    version = MlflowClient(server.url).get_model_version_by_alias(MODEL, "champion")
    keys = s3.keys("mlflow-shared")  # the model's files went through the server into the bucket
    model_id = version.source.removeprefix("models:/")
    assert any(k.endswith(f"models/{model_id}/artifacts/MLmodel") for k in keys), keys
    with tracking_uri(server.url):
        found = mlflow.pyfunc.load_model(URI).predict(pd.DataFrame({"image": [generated(128)]}), params=LOW)
    expected = yolov5_reference(trained.weights, [generated(128)], size=128, **LOW)
    np.testing.assert_allclose(found[COLUMNS[1:6]].to_numpy(float), expected[COLUMNS[1:6]].to_numpy(float), atol=1e-3)
