"""Flags, environment variables and defaults of `trainer train`."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from trainer.cli import build_parser
from trainer.config import ConfigError, default_run_name, resolve

NOW = datetime(2026, 11, 26, 23, 5, 9, tzinfo=timezone.utc)
URI = {"MLFLOW_TRACKING_URI": "http://mlflow:5000"}


def parse(argv: list[str], env: dict[str, str] | None = None):
    args = build_parser().parse_args(["train", *argv])
    return resolve(args, {**URI, **(env or {})}, now=NOW)


def test_defaults_follow_the_reference_setup() -> None:
    config = parse([])
    assert config.experiment == "yolov5-coco128-demo"
    assert config.data == "coco128.yaml"
    assert config.device == "auto"
    assert config.run_name == "yolov5-coco128-20261126-230509"
    assert config.name == config.run_name  # YOLOv5 output folder named after the run
    assert config.mlflow_uri == "http://mlflow:5000"


def test_flag_beats_env_beats_default() -> None:
    assert parse([], {"TRAINER_EPOCHS": "7"}).epochs == 7
    assert parse(["--epochs", "9"], {"TRAINER_EPOCHS": "7"}).epochs == 9
    assert parse(["--mlflow-uri", "http://other:5000"]).mlflow_uri == "http://other:5000"
    assert parse([], {"MLFLOW_EXPERIMENT_NAME": "exp-b"}).experiment == "exp-b"
    assert parse(["--experiment", "exp-c"], {"MLFLOW_EXPERIMENT_NAME": "exp-b"}).experiment == "exp-c"


def test_every_yolov5_flag_has_an_env_twin() -> None:
    env = {"TRAINER_BATCH_SIZE": "4", "TRAINER_IMGSZ": "320", "TRAINER_WEIGHTS": "", "TRAINER_CFG": "yolov5n.yaml",
           "TRAINER_DEVICE": "cpu", "TRAINER_RUN_NAME": "r1", "TRAINER_REGISTER_MODEL": "m", "TRAINER_MODEL_ALIAS": "a",
           "TRAINER_SYSTEM_METRICS": "false", "TRAINER_EXTRA_ARGS": "--cos-lr --label-smoothing 0.1",
           "TRAINER_TAGS": "team=vision, ticket=ML-1"}
    config = parse([], env)
    assert (config.batch_size, config.imgsz, config.weights, config.cfg, config.device) == (4, 320, "", "yolov5n.yaml", "cpu")
    assert (config.run_name, config.register_model, config.model_alias) == ("r1", "m", "a")
    assert config.system_metrics is False
    assert config.extra_args == ["--cos-lr", "--label-smoothing", "0.1"]
    assert config.tag == {"team": "vision", "ticket": "ML-1"}


def test_tags_as_json_object_carry_commas_and_non_strings() -> None:
    """The chart passes training.tags as JSON: a comma in a value used to split it (exit 2)."""
    config = parse([], {"TRAINER_TAGS": '{"note": "a,b", "team": "vision", "round": 2, "final": true}'})
    assert config.tag == {"note": "a,b", "team": "vision", "round": "2", "final": "true"}


def test_repeated_tag_flags_and_passthrough_args() -> None:
    config = parse(["--tag", "a=1", "--tag", "b=2", "--", "--cos-lr"])
    assert config.tag == {"a": "1", "b": "2"}
    # one flag is one tag: its value keeps commas and '=' (env TRAINER_TAGS still splits k=v,k2=v2)
    assert parse(["--tag", "classes=car,person", "--tag", "expr=a=b"]).tag == {"classes": "car,person", "expr": "a=b"}
    assert config.extra_args == ["--cos-lr"]


@pytest.mark.parametrize(
    ("data", "expected"),
    [("coco128.yaml", "yolov5-coco128-20261126-230509"), ("/d/synth/data.yaml", "yolov5-synth-20261126-230509"),
     ("voc.yaml", "yolov5-voc-20261126-230509")],
)
def test_run_name_uses_dataset_and_utc_time(data: str, expected: str) -> None:
    assert default_run_name(data, NOW) == expected


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["--epochs", "0"], {}, "--epochs must be at least 1"),
        (["--epochs", "ten"], {}, "--epochs='ten' is not an integer"),
        ([], {"TRAINER_EPOCHS": "ten"}, "TRAINER_EPOCHS='ten' is not an integer"),
        (["--imgsz", "100"], {}, "--imgsz must be a multiple of 32"),
        (["--batch-size", "0"], {}, "--batch-size must be positive or -1"),
        (["--device", "gpu"], {}, "--device must be auto, cpu, or CUDA ids"),
        (["--optimizer", "sgd"], {}, "--optimizer must be one of SGD, Adam, AdamW"),
        (["--weights", ""], {}, "--weights '' (from scratch) needs --cfg"),
        (["--model-alias", "prod"], {}, "--model-alias needs --register-model"),
        (["--register-model", "m", "--model-alias", "champion-2_b"], {}, None),
        (["--data", "./missing/data.yaml"], {}, "--data ./missing/data.yaml: no such file"),
        (["--wait-timeout", "soon"], {}, "--wait-timeout='soon' is not a number"),
        ([], {"TRAINER_SYSTEM_METRICS": "maybe"}, "TRAINER_SYSTEM_METRICS='maybe' is not valid"),
        ([], {"TRAINER_TAGS": "novalue"}, "TRAINER_TAGS='novalue' is not valid (expected KEY=VALUE"),
        ([], {"TRAINER_TAGS": '{"a": 1'}, "TRAINER_TAGS='{\"a\": 1' is not valid (expected a JSON object"),
        (["--name", "a/b"], {}, "--name must be a plain folder name"),
        (["--register-model", "m", "--model-alias", "latest"], {}, "--model-alias 'latest' is reserved by MLflow"),
        (["--register-model", "m", "--model-alias", "v1"], {}, "--model-alias 'v1' is reserved by MLflow"),
        ([], {"TRAINER_REGISTER_MODEL": "m", "TRAINER_MODEL_ALIAS": "V12"}, "--model-alias 'V12' is reserved"),
        (["--register-model", "m", "--model-alias", "best model"], {}, "may only contain letters, digits"),
        (["--tag", "novalue"], {}, "--tag='novalue' is not valid (expected KEY=VALUE"),
    ],
)
def test_bad_values_name_the_field(argv: list[str], env: dict[str, str], message: str | None) -> None:
    if message is None:  # the good neighbour of a refused value
        parse(argv, env)
        return
    with pytest.raises(ConfigError) as err:
        parse(argv, env)
    assert message in str(err.value)


def test_tracking_uri_is_required() -> None:
    args = build_parser().parse_args(["train"])
    with pytest.raises(ConfigError, match="--mlflow-uri \\(or MLFLOW_TRACKING_URI\\) is required"):
        resolve(args, {}, now=NOW)


def test_sweep_and_variant_tag_the_run_and_name_it() -> None:
    from trainer.training.runner import run_tags

    config = parse(["--variant", "adam"], {"TRAINER_SWEEP": "optimizers"})
    assert (config.run_name, config.name) == ("adam", "adam")
    tags = run_tags(config, {})
    assert (tags["sweep"], tags["variant"]) == ("optimizers", "adam")
    assert parse(["--variant", "adam", "--run-name", "mine"]).run_name == "mine"
    plain = parse([])
    assert "sweep" not in run_tags(plain, {}) and "variant" not in run_tags(plain, {})
