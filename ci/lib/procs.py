"""Process bookkeeping shared by ci/cluster and ci/node: start daemons, stop exactly those, wait for readiness.

Each started process is one line "name pid starttime" in STATE/pids; the start time (field 22 of /proc/PID/stat)
guards against PID reuse, so a stop only ever signals a process this harness started, even from a later invocation.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


class Failure(Exception):
    """A step of `up` failed; the message says which and why (the entry point logs it and exits 1)."""


def start_time(pid: int) -> str:
    """Field 22 of /proc/PID/stat, "" for no such process or a zombie (it has exited)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return ""
    return "" if fields[0] in ("Z", "X") else fields[19]


def ok(*cmd: str | Path, timeout: float = 15) -> bool:
    """The command exits 0 (output discarded): a readiness probe."""
    try:
        return subprocess.run([str(c) for c in cmd], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, timeout=timeout, cwd=ROOT).returncode == 0  # fmt: skip
    except subprocess.TimeoutExpired:
        return False


def sh(*cmd: str | Path, input: str | None = None, env: dict[str, str] | None = None, cwd: Path = ROOT) -> str:
    """Run a command, return its stdout; a failure raises Failure with its stderr."""
    proc = subprocess.run([str(c) for c in cmd], input=input, capture_output=True, text=True, env=env, cwd=cwd)
    if proc.returncode != 0:
        raise Failure(f"{' '.join(map(str, cmd[:3]))} ... failed (rc={proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return proc.stdout


class Procs:
    """The daemons of one harness (the cluster's or the node's), recorded in STATE/pids, logs in RUN/log."""

    def __init__(self, state: Path, log: logging.Logger, prefix: Sequence[str] = ()):
        self.state, self.log, self.prefix = state, log, list(prefix)
        self.run_dir: Path | None = None
        self._children: dict[int, subprocess.Popen] = {}  # ours in this invocation: polled, so exits are reaped

    @property
    def pids_file(self) -> Path:
        return self.state / "pids"

    def entries(self) -> list[tuple[str, int, str]]:
        if not self.pids_file.exists():
            return []
        out = []
        for line in self.pids_file.read_text().splitlines():
            name, pid, st = (line.split() + ["", "", ""])[:3]
            if pid.isdigit():
                out.append((name, int(pid), st))
        return out

    def alive(self, pid: int, st: str) -> bool:
        child = self._children.get(pid)
        if child is not None and child.poll() is not None:
            return False
        return bool(st) and start_time(pid) == st

    def new_run(self, prefix: str, start: Callable[[Path], None], teardown: Callable[[], None]) -> Path:
        """A fresh temp dir for this run (recorded in STATE/rundir, with an empty STATE/pids), then START(dir); when
        that fails, TEARDOWN() stops what it started before the error goes on."""
        run = Path(tempfile.mkdtemp(prefix=prefix))
        (self.state / "rundir").write_text(f"{run}\n")
        self.pids_file.write_text("")
        self.run_dir = run
        try:
            start(run)
        except BaseException:
            self.log.info("up failed, tearing down")
            teardown()
            raise
        return run

    def start(self, name: str, *cmd: str | Path) -> None:
        """Daemonised (own session, stdin from /dev/null, output to RUN/log/NAME.log, no inherited fds) so `up` can
        return, a caller capturing our output is not held open, and the lock is released when `up` exits."""
        assert self.run_dir is not None
        with open(self.run_dir / "log" / f"{name}.log", "wb") as out:
            child = subprocess.Popen([*self.prefix, *map(str, cmd)], stdin=subprocess.DEVNULL, stdout=out,
                                     stderr=subprocess.STDOUT, start_new_session=True, cwd=ROOT)  # fmt: skip
        self._children[child.pid] = child
        with open(self.pids_file, "a") as f:
            f.write(f"{name} {child.pid} {start_time(child.pid)}\n")

    def stop(self, entries: Sequence[tuple[str, int, str]]) -> None:
        """SIGTERM, up to 10 s to exit, then SIGKILL."""
        for _, pid, st in entries:
            if self.alive(pid, st):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while any(self.alive(pid, st) for _, pid, st in entries) and time.monotonic() < deadline:
            time.sleep(0.1)
        for name, pid, st in entries:
            if self.alive(pid, st):
                self.log.info("%s (pid %d) ignored SIGTERM for 10s: SIGKILL", name, pid)
                os.kill(pid, signal.SIGKILL)

    def all_alive(self, count: int) -> bool:
        entries = self.entries()
        return len(entries) == count and all(self.alive(pid, st) for _, pid, st in entries)

    def first_exited(self) -> str | None:
        return next((f"{name} (pid {pid}) exited" for name, pid, st in self.entries() if not self.alive(pid, st)),
                    None)  # fmt: skip

    def wait_for(self, what: str, seconds: float, probe: Callable[[], bool]) -> None:
        """Poll PROBE every 0.25 s while every recorded process lives; Failure with the logs' tails otherwise."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if probe():
                return
            if exited := self.first_exited():
                self.log.info("%s", exited)
                break
            time.sleep(0.25)
        raise Failure(f"{what} not ready after {seconds:g}s; logs in {self.run_dir}/log "
                      f"(copied to {self.state}/last-logs):{self.tail_logs()}")  # fmt: skip

    def tail_logs(self, lines: int = 15) -> str:
        out = []
        for f in sorted((self.run_dir / "log").glob("*.log")) if self.run_dir else []:
            out += [f"\n--- {f}", *f.read_text(errors="replace").splitlines()[-lines:]]
        return "\n".join(out)

    def keep_logs(self) -> None:
        """RUN/log -> STATE/last-logs (a failed run's logs outlive its temp dir)."""
        if self.run_dir and (self.run_dir / "log").is_dir():
            shutil.rmtree(self.state / "last-logs", ignore_errors=True)
            shutil.copytree(self.run_dir / "log", self.state / "last-logs")


def main(log: logging.Logger, usage: str, commands: dict[str, Callable[[list[str]], int | None]],
         argv: list[str]) -> int:
    """Run the command argv[0] names with the rest (usage and exit 2 for another); a Failure is one ERROR line, exit 1."""
    if not argv or argv[0] not in commands:
        print(f"usage: {usage}", file=sys.stderr)
        return 2
    try:
        return commands[argv[0]](argv[1:]) or 0
    except Failure as e:
        log.error("ERROR: %s", e)
        return 1


def logger(name: str) -> logging.Logger:
    """'== NAME: message' on stderr, the harness's one output style."""
    log = logging.getLogger(name)
    if not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(f"== {name}: %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False
    return log
