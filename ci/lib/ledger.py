"""The time ledger of `make setup` and `make test`: where a run's wall time went, against the suite's budget.

Scripts add rows as they go (`ledger.py add STAGE PART SECONDS`, or `time STAGE PART -- CMD...`, which runs CMD and
adds its wall time); `make test` ends with `ledger.py report`: each stage's wall time and its parts, the slowest tests
(from pytest's JUnit XML files), the total, and an `OVER BUDGET` line for each figure past its budget. The run still
passes: the budgets are targets for the suite's design (docs/testing.md), not assertions.

Usage: ledger.py reset                      start a new ledger (ci/setup.sh: the first step of make setup/test)
       ledger.py add machine cold|warm 0    how the run began (ci/setup.sh: cold = an empty Go build cache)
       ledger.py add STAGE PART SECONDS     record one row (PART "-": the stage's own wall time)
       ledger.py time STAGE [PART] -- CMD   run CMD, record its wall time as STAGE's (or its PART's), exit with its status
       ledger.py report [JUNIT.xml ...]     print the table
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

LEDGER = Path(os.environ.get("MLFLOW_STACK_LEDGER", Path(__file__).resolve().parents[2] / ".work/ledger/times.tsv"))
# Budgets in seconds on a fresh 2-core machine (issue 32; docs/testing.md "Time budget"). A cold run is one that
# began with an empty Go build cache (ci/setup.sh records `machine cold`), as on a fresh machine.
# The chart tests and the images build run side by side, and so do the two pytest runs (ci/test.sh): each pair has the
# sum of its members' budgets (chart 4 + images 4; pytest 15 + e2e 12).
BUDGETS = {"setup": 12 * 60, "chart + images": 8 * 60, "pytest + e2e": 27 * 60}
TOTAL_COLD, TOTAL_WARM = 50 * 60, 35 * 60
SLOWEST, TEST_BUDGET = 15, 90  # seconds; e2e tests are exempt (each is a whole install)


def add(stage: str, part: str, seconds: float) -> None:
    LEDGER.parent.mkdir(parents=True, exist_ok=True)
    with LEDGER.open("a") as f:
        f.write(f"{time.time():.0f}\t{stage}\t{part}\t{seconds:.0f}\n")


def rows() -> list[tuple[float, str, str, float]]:
    if not LEDGER.exists():
        return []
    out = []
    for line in LEDGER.read_text().splitlines():
        end, stage, part, seconds = line.split("\t")
        out.append((float(end), stage, part, float(seconds)))
    return out


def tests(junit_files: list[str]) -> list[tuple[float, str, str]]:
    """(seconds, test id, file) of every test case, setup and teardown included (pytest's JUnit `time`)."""
    out = []
    for path in junit_files:
        if not Path(path).exists():
            continue
        for case in ET.parse(path).iter("testcase"):
            name = f"{case.get('classname', '')}::{case.get('name', '')}"
            out.append((float(case.get("time", 0)), name, Path(path).stem))
    return sorted(out, reverse=True)


def mmss(seconds: float) -> str:
    return f"{int(seconds) // 60:d}:{int(seconds) % 60:02d}"


def report(junit_files: list[str]) -> list[str]:
    recorded = rows()
    lines, over = ["", "=== time ledger (ci/lib/ledger.py; budgets: docs/testing.md#time-budget)"], []
    if not recorded:
        return lines + ["(nothing recorded)"]
    walls = {stage: seconds for _, stage, part, seconds in recorded if part == "-"}
    cold = ("machine", "cold", 0) in {(stage, part, seconds) for _, stage, part, seconds in recorded}
    for stage in dict.fromkeys(stage for _, stage, _, _ in recorded if stage != "machine"):  # in the order recorded
        wall, budget = walls.get(stage), BUDGETS.get(stage)
        lines.append(f"{stage:<16} {mmss(wall) if wall is not None else 'unfinished':>7}"
                     + (f"   (budget {mmss(budget)})" if budget else ""))
        lines += [f"  {part:<50} {mmss(secs):>7}" for _, s, part, secs in recorded if s == stage and part != "-"]
        if budget and wall is not None and wall > budget:
            over.append(f"OVER BUDGET: {stage} took {mmss(wall)}, budget {mmss(budget)}")
    start = min(end - seconds for end, _, _, seconds in recorded)
    total = max(end for end, *_ in recorded) - start
    budget = TOTAL_COLD if cold else TOTAL_WARM
    lines.append(f"{'total':<16} {mmss(total):>7}   ({'cold' if cold else 'warm'}: budget {mmss(budget)})")
    if total > budget:
        over.append(f"OVER BUDGET: the whole run took {mmss(total)}, budget {mmss(budget)} ({'cold' if cold else 'warm'})")
    timed = tests(junit_files)
    if timed:
        lines.append(f"slowest {min(SLOWEST, len(timed))} of {len(timed)} tests:")
        lines += [f"  {mmss(seconds):>7}  {name}" for seconds, name, _ in timed[:SLOWEST]]
    over += [f"OVER BUDGET: {name} took {seconds:.1f} s, budget {TEST_BUDGET} s (a non-e2e test)"
             for seconds, name, source in timed if seconds > TEST_BUDGET and source != "e2e"]
    return lines + over


def main(argv: list[str]) -> int:
    match argv:
        case ["reset"]:
            LEDGER.unlink(missing_ok=True)
        case ["add", stage, part, seconds]:
            add(stage, part, float(seconds))
        case ["time", stage, "--", *cmd] | ["time", stage, _, "--", *cmd] if cmd:
            part = argv[2] if argv[2] != "--" else "-"
            start = time.monotonic()
            rc = subprocess.call(cmd)
            add(stage, part, time.monotonic() - start)
            return rc
        case ["report", *junit]:
            print("\n".join(report(junit)))
        case _:
            print(__doc__, file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
