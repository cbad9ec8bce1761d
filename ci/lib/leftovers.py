"""Processes a test run left running: every process whose environment carries the run's marker.

ci/test.sh exports MLFLOW_STACK_TEST_RUN=<unique value> before its first stage; every process it starts, however
deep (pytest's servers, ci/node's kubelet and containerd, a gpg-agent that gpg forked), inherits it, and the exported
value is in /proc/PID/environ of each of them but not of test.sh itself. A process that started earlier, or for
another run, is never reported.

    python3 ci/lib/leftovers.py [GRACE_SECONDS]   list them and exit 1 if some are still there after the grace
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

MARKER = "MLFLOW_STACK_TEST_RUN"


def marked(value: str) -> list[tuple[int, str]]:
    """(pid, command line) of the processes other than this one whose environment has MARKER=value."""
    needle = f"{MARKER}={value}".encode()
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            if needle not in (proc / "environ").read_bytes().split(b"\0"):
                continue
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:  # gone meanwhile, or a kernel thread
            continue
        found.append((int(proc.name), cmdline[:200] or f"[{(proc / 'comm').read_text().strip()}]"))
    return sorted(found)


def main(argv: list[str]) -> int:
    value = os.environ.get(MARKER, "")
    if not value:
        print(f"leftovers: {MARKER} is not set", file=sys.stderr)
        return 2
    deadline = time.monotonic() + (float(argv[1]) if len(argv) > 1 else 10.0)  # processes that are still exiting
    while (left := marked(value)) and time.monotonic() < deadline:
        time.sleep(0.5)
    for pid, cmdline in left:
        print(f"leftovers: still running, started by this test run: pid {pid}: {cmdline}", file=sys.stderr)
    return 1 if left else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
