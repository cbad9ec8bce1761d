"""The training child process (YOLOv5, or torchrun with its ranks): started in its own process group, its output
teed to the console and the log file, stopped on SIGTERM/SIGINT. Below both the tracked run (runner) and a worker
node's life (distributed.launch), which is why it is a module of its own."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Mapping

if TYPE_CHECKING:
    from trainer.training.reporting import ResultsWatcher

log = logging.getLogger(__name__)

POLL_SECONDS = 0.5  # how often results.csv is checked: bounds the metric latency
STOP_GRACE_SECONDS = 20  # time YOLOv5 gets to exit on SIGTERM before it is killed


class Tee:
    """Writes the child's output to our stdout (kubectl logs) and to the log file that is uploaded."""

    def __init__(self, path: Path, console: BinaryIO) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("ab")
        self._console = console
        self._lock = threading.Lock()

    def write(self, chunk: bytes, console: bool = True) -> None:
        with self._lock:
            for out in (self._console, self._file) if console else (self._file,):
                out.write(chunk)
                out.flush()

    def close(self) -> None:
        self._file.close()


class Signals:
    """Turns SIGTERM/SIGINT into a stop request that the main loop acts on."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> "Signals":
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]

    def _handle(self, signum: int, frame: object) -> None:
        if self.received is None:
            log.warning("received %s: stopping training, uploading what exists", signal.Signals(signum).name)
            self.received = signum


class Child:
    """YOLOv5 (or torchrun with its ranks) in its own process group. It reports the device it chose, then waits for
    `go` to train (global rank 0 only: the ranks of worker nodes start at once)."""

    def __init__(self, command: list[str], env: Mapping[str, str], tee: Tee, handshake: Path) -> None:
        handshake.unlink(missing_ok=True)
        self._handshake = handshake
        env = dict(env, PYTHONUNBUFFERED="1", TRAINER_HANDSHAKE=str(handshake))
        self._proc = subprocess.Popen(
            command, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )  # fmt: skip
        self._pump = threading.Thread(target=_pump, args=(self._proc.stdout, tee), daemon=True)
        self._pump.start()

    def device(self, signals: Signals) -> tuple[str, bool] | None:
        """The child's (device, CUDA available) once it has imported torch; None if it stopped first."""
        while self._proc.poll() is None and signals.received is None:
            if self._handshake.exists():
                report = json.loads(self._handshake.read_text())
                return report["device"], report["gpu"]
            time.sleep(0.05)
        return None

    def go(self) -> None:
        if self._proc.poll() is None and self._proc.stdin is not None:
            try:
                self._proc.stdin.write(b"go\n")
                self._proc.stdin.close()
            except BrokenPipeError:
                pass  # it has exited; wait() reports how

    def wait(self, watcher: ResultsWatcher | None, signals: Signals) -> int:
        """Streams until the child exits, logging each epoch as it lands; SIGTERM/SIGINT stop it."""
        stop_sent: float | None = None
        while self._proc.poll() is None:
            if watcher is not None:
                watcher.poll()
            if signals.received is not None:
                if stop_sent is None:
                    self.stop()
                    stop_sent = time.monotonic()
                elif time.monotonic() - stop_sent > STOP_GRACE_SECONDS:
                    self.stop(force=True)
            try:  # waiting on the child (not sleeping) notices its exit at once
                self._proc.wait(timeout=POLL_SECONDS)
            except subprocess.TimeoutExpired:
                pass
        self._pump.join(timeout=10)
        if watcher is not None:
            watcher.poll()
        return self._proc.returncode

    def stop(self, force: bool = False) -> None:
        if self._proc.poll() is None:
            os.killpg(self._proc.pid, signal.SIGKILL if force else signal.SIGTERM)
            if force:
                self._proc.wait()


def _pump(stream: BinaryIO, tee: Tee) -> None:
    while chunk := os.read(stream.fileno(), 65536):
        tee.write(chunk)


