"""Finds the downloads YOLOv5 would start for a configuration and checks, within seconds, that they can happen.

Offline, YOLOv5 only gives up on a missing `yolov5s.pt` or `coco128` after minutes of curl retries; air-gapped
clusters should instead get one line at once that names the flag and the offline alternative.
"""

from __future__ import annotations

import re
import socket
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

from trainer import datafiles
from trainer.config import ConfigError, TrainConfig

PROBE_SECONDS = 3.0  # per host: a reachable host answers a TCP connect far sooner
# Weight names attempt_download() fetches from the GitHub release assets (yolov5 7.0.14 utils/downloads.py).
RELEASE_WEIGHTS = re.compile(r"yolov5[nsmlx]6?(-cls|-seg)?\.pt")
RELEASE_HOST = "https://github.com"
_URL = re.compile(r"https?://[^\s'\"]+")


@dataclass(frozen=True)
class Download:
    flag: str  # the option whose value needs it
    value: str
    url: str  # a URL on the host that must be reachable
    fix: str  # the offline alternative, for the error line


def needed(config: TrainConfig, yolov5_root: Path, env: Mapping[str, str]) -> list[Download]:
    """The downloads YOLOv5 would attempt for these --weights and --data (nothing local is downloaded)."""
    found: list[Download] = []
    weights = config.weights
    if weights and not Path(weights).is_file():
        url = weights if _is_url(weights) else f"{RELEASE_HOST}/" if RELEASE_WEIGHTS.fullmatch(weights) else ""
        if url:
            found.append(Download("--weights", weights, url,
                                  "give a local .pt path, or train from scratch with --weights '' --cfg yolov5n.yaml"))  # fmt: skip
    data_fix = "give a local dataset yaml (e.g. from `trainer make-dataset DIR`; chart: training.dataset.synthetic=true)"
    for url in _dataset_urls(config.data, yolov5_root, env):
        found.append(Download("--data", config.data, url, data_fix))
    return found


def _is_url(value: str) -> bool:
    return value.startswith(("http://", "https://"))


def _dataset_urls(data: str, yolov5_root: Path, env: Mapping[str, str]) -> list[str]:
    """URLs YOLOv5's check_file()/check_dataset() would fetch: the yaml itself, or its `download:` when val is missing."""
    if _is_url(data):
        return [data]
    spec = datafiles.load(data, yolov5_root, env)  # the same paths YOLOv5 is given, so both agree on "present"
    if spec is None or spec.present() or not isinstance(spec.spec.get("download"), str):
        return []
    return _URL.findall(spec.spec["download"])[:1]  # the first URL: its host is the one that must answer


def reachable(url: str, timeout: float = PROBE_SECONDS) -> str:
    """'' when a TCP connection to the URL's host (or the configured proxy) opens within timeout, else why not."""
    parts = urllib.parse.urlsplit(url)
    proxy = urllib.request.getproxies().get(parts.scheme)
    if proxy and not urllib.request.proxy_bypass(parts.hostname or ""):
        parts = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    host, port = parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return ""
    except socket.gaierror as exc:
        return f"cannot resolve {host}: {exc.strerror or exc}"
    except OSError as exc:
        return f"cannot connect to {host}:{port}: {exc.strerror or exc}"


def check(config: TrainConfig, yolov5_root: Path, env: Mapping[str, str],
          probe: Callable[[str], str] = reachable) -> None:  # fmt: skip
    """Raises ConfigError naming the flag when a download the training needs cannot happen from here."""
    for item in needed(config, yolov5_root, env):
        why = probe(item.url)
        if why:
            host = urllib.parse.urlsplit(item.url).hostname
            raise ConfigError(f"{item.flag} {item.value} needs a download from {host}, which is unreachable ({why}): "
                              f"{item.fix}")  # fmt: skip
