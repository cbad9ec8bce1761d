"""`trainer serve`: one serving pod's process, pinned to one registered version.

With a version it runs MLflow's scoring server on `models:/NAME/VERSION` (never the alias itself: `mlflow models serve`
resolves an alias once, at start, so two pods started a minute apart could serve different versions). Without one
(the follower has not pinned any yet: no version holds the alias) it answers as a waiting server: `/ping` is 200, so
the pod is Ready and `helm install --wait` returns, and `/invocations` is a 503 that names what it waits for.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

log = logging.getLogger(__name__)


class ServeError(ValueError):
    """A bad flag or a version that is not in the registry; the message names it."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="registered model name")
    parser.add_argument("--alias", default="champion", help="the alias the version was pinned from (for the log) [champion]")
    parser.add_argument("--version", default="", help="registered version to serve; empty: wait for the follower to pin one")
    parser.add_argument("--host", default="0.0.0.0", help="address to listen on [0.0.0.0]")
    parser.add_argument("--port", type=int, default=8080, help="port to listen on [8080]")
    parser.add_argument("--workers", type=int, default=1, help="scoring-server workers, each with its own copy of the model [1]")
    parser.add_argument("--mlflow-uri", default=os.environ.get("MLFLOW_TRACKING_URI", ""),
                        help="MLflow tracking URI [env MLFLOW_TRACKING_URI]")  # fmt: skip


def scoring_server_argv(args: argparse.Namespace) -> list[str]:
    """`mlflow models serve` on the pinned version, with the packages of this image (no environment is built)."""
    return [sys.executable, "-m", "mlflow", "models", "serve", "--model-uri", f"models:/{args.model}/{args.version}",
            "--env-manager", "local", "--host", args.host, "--port", str(args.port), "--workers", str(args.workers)]  # fmt: skip


def check_version(args: argparse.Namespace) -> None:
    """The pinned version exists: a wrong pin is one line naming it, not the scoring server's stack trace."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    if not args.version.isdigit():
        raise ServeError(f"--version {args.version!r}: a registered version is a number")
    try:
        MlflowClient(args.mlflow_uri or None).get_model_version(args.model, args.version)
    except MlflowException as exc:
        first = (str(exc).strip().splitlines() or [exc.error_code])[0]
        raise ServeError(f"--model {args.model} --version {args.version}: {first}") from None


def serve(args: argparse.Namespace) -> None:
    """Replaces this process with the scoring server (its signals, exit code and log are the pod's)."""
    if args.workers < 1:
        raise ServeError(f"--workers {args.workers}: must be at least 1")
    if args.mlflow_uri:
        os.environ["MLFLOW_TRACKING_URI"] = args.mlflow_uri
    check_version(args)
    log.info("serving models:/%s/%s (pinned from alias @%s) on %s:%d", args.model, args.version, args.alias,
             args.host, args.port)  # fmt: skip
    logging.shutdown()
    argv = scoring_server_argv(args)
    # MLflow starts `uvicorn` by name: the one next to this interpreter, also when its folder is not on PATH
    bin_dir = os.path.dirname(sys.executable)
    os.environ["PATH"] = os.pathsep.join([bin_dir, os.environ.get("PATH", "")])
    os.execv(argv[0], argv)


def waiting_message(model: str, alias: str) -> str:
    return (f"no version of registered model '{model}' is served yet: the follower pins the one that alias "
            f"'{alias}' points at as soon as it exists")  # fmt: skip


def wait(args: argparse.Namespace) -> None:
    """The waiting server, until the pod is replaced by one with a pinned version (SIGTERM ends it)."""
    message = waiting_message(args.model, args.alias)

    class Handler(BaseHTTPRequestHandler):
        def _send(self, code: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            if self.path in ("/ping", "/health"):
                self._send(200, {"status": "waiting", "message": message})
            else:
                self._send(404, {"error_code": "ENDPOINT_NOT_FOUND", "message": f"no endpoint {self.path}"})

        def do_POST(self) -> None:  # noqa: N802
            if self.path == "/invocations":
                self._send(503, {"error_code": "MODEL_NOT_PINNED", "message": message})
            else:
                self._send(404, {"error_code": "ENDPOINT_NOT_FOUND", "message": f"no endpoint {self.path}"})

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - probes every 5 s: not logged
            pass

    log.info("waiting: %s", message)
    with ThreadingHTTPServer((args.host, args.port), Handler) as server:
        server.serve_forever()


def run(args: argparse.Namespace) -> None:
    if args.version:
        serve(args)
    else:
        wait(args)
