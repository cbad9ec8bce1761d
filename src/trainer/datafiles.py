"""Where `--data`, `--hyp` and `--cfg` are found: one rule for the trainer's checks, its records and YOLOv5.

YOLOv5 7.0.14 (PyPI) resolves a relative `path:` of a dataset yaml against its own package folder but downloads into
`./datasets`, so its stock `coco128.yaml` (`path: ../datasets/coco128`) downloads to one place and trains from
another. The trainer resolves the yaml itself by the rule of Ultralytics (YOLOv5's successor), hands YOLOv5 a copy
with an absolute `path:`, and points YOLOv5's download folder at the datasets root, so downloads land where training
looks:
- the datasets root is `$YOLOv5_DATASETS_DIR`, else `./datasets` in the working directory (the chart sets it to the
  dataset volume's mount path, else the Job's /workspace/datasets);
- a relative `path:` is relative to the datasets root; YOLOv5's own form `../datasets/NAME` means NAME there;
- no `path:` means the yaml's own folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import yaml

from trainer.config import ConfigError, TrainConfig

DATASETS_DIR_ENV = "YOLOv5_DATASETS_DIR"  # YOLOv5's own variable for its download folder
SEARCHED = ("data", "models", "utils")
LEGACY_PREFIX = "../datasets/"  # YOLOv5's yamls: the repository's sibling folder `datasets`, i.e. its download folder  # the folders YOLOv5's check_file() searches for a bare file name


@dataclass(frozen=True)
class DataSpec:
    source: Path  # the yaml as given or as YOLOv5 ships it
    spec: dict[str, Any]  # its content, `path` made absolute

    @property
    def root(self) -> Path:
        return Path(self.spec["path"])

    def splits(self, name: str) -> list[Path]:
        """The folders (or list files) of a split, as YOLOv5 resolves them (with its `../` fallback)."""
        value = self.spec.get(name)
        items = value if isinstance(value, list) else [value] if isinstance(value, str) and value else []
        found = []
        for item in items:
            path = (self.root / item).resolve()
            if not path.exists() and item.startswith("../"):
                path = (self.root / item[3:]).resolve()
            found.append(path)
        return found

    def present(self) -> bool:
        """True when YOLOv5 would train without a download: every `val:` entry exists."""
        vals = self.splits("val")
        return bool(vals) and all(p.exists() for p in vals)

    def download_dir(self) -> Path:
        """Where YOLOv5 must unzip a `download:` (its archives hold the dataset's folder) to fill `path`."""
        return self.root.parent

    def write(self, dest: Path) -> Path:
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(yaml.safe_dump(self.spec, sort_keys=False, allow_unicode=True))
        return dest


def shipped(name: str, yolov5_root: Path) -> list[Path]:
    """Files YOLOv5 ships under this bare name (what check_file() would pick), e.g. coco128.yaml, yolov5n.yaml."""
    return sorted(p for d in SEARCHED for p in (yolov5_root / d).rglob(name) if p.is_file())


def datasets_root(env: Mapping[str, str], cwd: Path | None = None) -> Path:
    return ((cwd or Path.cwd()) / (env.get(DATASETS_DIR_ENV) or "datasets")).absolute()


def _is_url(value: str) -> bool:
    return "://" in value


def find(flag: str, value: str, yolov5_root: Path) -> Path | None:
    """The local file, else the one file YOLOv5 ships of that name; None for a URL or ''. ConfigError if neither."""
    if not value or _is_url(value):
        return None
    path = Path(value)
    if path.is_file():
        return path.absolute()
    if path.name == value:  # a bare name: YOLOv5 searches its own folders
        matches = shipped(value, yolov5_root)
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise ConfigError(f"{flag} {value}: YOLOv5 ships several files of that name; give a path")
        raise ConfigError(f"{flag} {value}: no such file, and YOLOv5 ships none of that name{_examples(flag, yolov5_root)}")
    raise ConfigError(f"{flag} {value}: no such file")


def _examples(flag: str, yolov5_root: Path) -> str:
    folder = {"--data": "data", "--hyp": "data/hyps", "--cfg": "models"}.get(flag, "")
    names = sorted(p.name for p in (yolov5_root / folder).glob("*.yaml")) if folder else []
    return f" (it ships {', '.join(names)})" if names else ""


def load(data: str, yolov5_root: Path, env: Mapping[str, str]) -> DataSpec | None:
    """The dataset yaml resolved by the rule above; None for a URL (YOLOv5 fetches it). ConfigError names --data."""
    source = find("--data", data, yolov5_root)
    if source is None:
        return None
    try:
        spec = yaml.safe_load(source.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"--data {data}: not a readable yaml file ({str(exc).splitlines()[0]})") from None
    if not isinstance(spec, dict):
        raise ConfigError(f"--data {data}: expected a mapping with train:, val: and names:")
    missing = [key for key in ("train", "val", "names") if not spec.get(key)]
    if missing:
        raise ConfigError(f"--data {data}: missing {', '.join(k + ':' for k in missing)}")
    given = str(spec.get("path") or "")
    path = datasets_root(env) / given.removeprefix(LEGACY_PREFIX) if given else source.parent  # an absolute one wins
    return DataSpec(source, {**spec, "path": str(path.resolve())})


def check(config: TrainConfig, yolov5_root: Path, env: Mapping[str, str]) -> None:
    """Refuses, naming the flag, a --data/--hyp/--cfg that neither exists nor is one of YOLOv5's own files."""
    for flag, value in (("--hyp", config.hyp), ("--cfg", config.cfg)):
        find(flag, value, yolov5_root)
    load(config.data, yolov5_root, env)
