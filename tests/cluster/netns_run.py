"""Run a plan of processes inside a fresh network + mount namespace (`unshare -n -m python netns_run.py PLAN`).

The namespace has only a loopback interface, so nothing can reach the network, fixed ports (5000, 5432, 9000) never
collide with the machine's, and /etc/hosts is replaced (bind mount, private to the namespace) by one that maps the
chart's Service DNS names to 127.0.0.1. Plan (JSON):
  {"hosts": [names], "workdir": dir, "result": file,
   "steps": [{"kind": "daemon"|"run", "process": {name, argv, env, cwd, files}, "user": optional,
              "ready": {"tcp": port} | {"argv": [...]} (daemons), "timeout": seconds}]}
Steps run in order; a `run` step must exit 0. The result file gets one entry per step (rc, log). Every process it
started is stopped (its own process group, SIGTERM then SIGKILL) before this script exits, also on SIGTERM.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path


def setup_namespace(hosts: list[str], workdir: Path) -> None:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    hosts_file = workdir / "hosts"
    hosts_file.write_text("127.0.0.1 localhost\n" + "".join(f"127.0.0.1 {h}\n" for h in hosts))
    subprocess.run(["mount", "--bind", str(hosts_file), "/etc/hosts"], check=True)
    # proof for the log: no interface but loopback
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
    assert all(": lo:" in line for line in links.splitlines()), links


def start(step: dict, workdir: Path) -> tuple[subprocess.Popen, Path]:
    proc = step["process"]
    for path, content in proc.get("files", {}).items():
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(content)
    log = workdir / "logs" / f"{proc['name']}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    argv = proc["argv"]
    if step.get("user"):
        argv = [shutil.which("runuser") or "/usr/sbin/runuser", "-u", step["user"], "--", *argv]
    with log.open("ab") as out:
        popen = subprocess.Popen(argv, env=proc["env"], cwd=proc["cwd"], stdout=out, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    return popen, log


def ready(step: dict, popen: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + step.get("timeout", 120)
    check = step["ready"]
    while time.monotonic() < deadline:
        if popen.poll() is not None:
            raise RuntimeError(f"{step['process']['name']} exited with {popen.returncode}:\n{tail(log)}")
        try:
            if "tcp" in check:
                socket.create_connection(("127.0.0.1", check["tcp"]), timeout=2).close()
                return
            if subprocess.run(check["argv"], env=step["process"]["env"], capture_output=True, timeout=30).returncode == 0:
                return
        except (OSError, subprocess.TimeoutExpired):
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{step['process']['name']} not ready after {step.get('timeout', 120)}s:\n{tail(log)}")


def tail(log: Path, lines: int = 40) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def stop(popen: subprocess.Popen) -> None:
    if popen.poll() is not None:
        return
    try:
        os.killpg(popen.pid, signal.SIGTERM)
        popen.wait(20)
    except subprocess.TimeoutExpired:
        os.killpg(popen.pid, signal.SIGKILL)
        popen.wait(10)
    except ProcessLookupError:
        pass


def main(plan_path: str) -> int:
    # SIGTERM (the test giving up) unwinds through the finally below, which stops every daemon
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    plan = json.loads(Path(plan_path).read_text())
    workdir = Path(plan["workdir"])
    results: list[dict] = []
    started: list[subprocess.Popen] = []
    rc = 0
    try:
        setup_namespace(plan["hosts"], workdir)
        for step in plan["steps"]:
            t0 = time.monotonic()
            popen, log = start(step, workdir)
            started.append(popen)
            entry = {"name": step["process"]["name"], "kind": step["kind"], "log": str(log)}
            results.append(entry)
            if step["kind"] == "daemon":
                ready(step, popen, log)
            else:
                try:
                    entry["rc"] = popen.wait(step.get("timeout", 600))
                except subprocess.TimeoutExpired:
                    stop(popen)
                    entry["rc"] = "timeout"
                if entry["rc"] != 0:
                    entry["tail"] = tail(log)
                    rc = 1
                    break
            entry["seconds"] = round(time.monotonic() - t0, 1)
    except Exception as exc:  # noqa: BLE001 - reported to the test
        results.append({"name": "netns_run", "error": str(exc)})
        rc = 1
    except SystemExit:
        results.append({"name": "netns_run", "error": "terminated"})
        rc = 143
    finally:
        for popen in reversed(started):
            stop(popen)
        Path(plan["result"]).write_text(json.dumps(results, indent=1))
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
