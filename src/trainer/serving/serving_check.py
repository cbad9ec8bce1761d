"""`trainer check-serving --url URL`: the chart's `helm test` of serving, as a client sees it.

It posts one generated image to `/invocations` and expects rows with the documented columns, then a non-image and
expects a 400 that names the problem. A server still waiting for its first version (503, no version holds the alias
yet) is reported and passes: there is nothing to serve yet, and the tracking test says whether training works.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import urllib.error
import urllib.request

from trainer.model.detector_model import COLUMNS


class CheckFailed(Exception):
    """Serving answered wrongly; the message says how."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", required=True, help="the serving Service, e.g. http://NAME-serving.NS.svc.cluster.local:8080")
    parser.add_argument("--timeout", type=float, default=120, help="seconds for one request [120]")


def generated_jpeg(size: int = 128) -> bytes:
    """A synthetic scene like the synthetic dataset's (no file to ship, nothing to download)."""
    import numpy as np

    from trainer.training.dataset import _sample

    image, _ = _sample(np.random.default_rng(0), size)
    out = io.BytesIO()
    image.save(out, format="JPEG")
    return out.getvalue()


def post(url: str, body: dict, timeout: float) -> tuple[int, dict]:
    req = urllib.request.Request(f"{url.rstrip('/')}/invocations", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")  # fmt: skip
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        text = exc.read().decode(errors="replace")
        try:
            return exc.code, json.loads(text)
        except ValueError:
            return exc.code, {"message": text[:300]}


def request(images: list[str], **params: float) -> dict:
    return {"dataframe_split": {"columns": ["image"], "data": [[i] for i in images]}, "params": params}


def check(url: str, timeout: float) -> str:
    """One line on success ("waiting ..." or the rows found); CheckFailed otherwise."""
    image = base64.b64encode(generated_jpeg()).decode()
    # a barely trained model is unsure of everything: a low threshold still gives rows whose columns can be checked
    code, body = post(url, request([image], conf=0.001, max_det=20), timeout)
    if code == 503 and body.get("error_code") == "MODEL_NOT_PINNED":
        return f"waiting, nothing to check yet: {body.get('message')}"
    if code != 200:
        raise CheckFailed(f"POST /invocations with an image answered {code}: {body.get('message', body)}")
    rows = body.get("predictions")
    if not isinstance(rows, list) or not rows:
        raise CheckFailed(f"POST /invocations gave no detections even at conf 0.001: {str(body)[:300]}")
    wrong = [r for r in rows if list(r) != list(COLUMNS)]
    if wrong:
        raise CheckFailed(f"rows have the columns {list(wrong[0])}, expected {list(COLUMNS)}")
    code, body = post(url, request([base64.b64encode(b"not an image").decode()]), timeout)
    if code != 400 or "image" not in str(body.get("message", "")):
        raise CheckFailed(f"a non-image answered {code} {str(body)[:300]}, expected 400 naming the image")
    return f"{len(rows)} detections with columns {', '.join(COLUMNS)}; a non-image is a 400"


def run(args: argparse.Namespace) -> int:
    try:
        print(f"check-serving: {check(args.url, args.timeout)}")
    except (CheckFailed, OSError) as exc:
        print(f"helm test FAILED at serving ({args.url}): {exc}")
        return 1
    return 0
