"""Champion/challenger: point an alias at a new model version only when its run's metric beats the current holder's.

Several trainings may finish at once, and MLflow's alias update is a plain write (no compare-and-set), so a
promoter that decided on an old read could overwrite a better version. Each promoter therefore
  1. marks its version as a candidate for the alias (version tag `promotion.<alias>.started`),
  2. repeatedly reads the holder and every candidate still in flight, computes the best of them, writes the alias
     if it is not there yet, and reads again, until a read shows the alias on that best version,
  3. marks its version done and tags it with the outcome (`promotion.<alias>`: both values).
The last write to the alias is followed by its writer's read, which finds it already on the best of the versions
in flight (or writes again), so the alias ends on the best of them whatever the order. Versions whose promotion
ended before ours began are not candidates any more (a rollback of the alias by hand stays), nor are ones whose
promoter vanished long ago.
"""

from __future__ import annotations

import logging
import math
import random
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from trainer.tracking import is_transient, retry

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion
    from mlflow.tracking import MlflowClient

log = logging.getLogger(__name__)

MODES = ("max", "min")
STALE_SECONDS = 3600  # a candidate whose promoter started this long ago and never finished is ignored
MAX_ROUNDS = 50


@dataclass(frozen=True)
class Decision:
    promoted: bool
    holder: str | None  # the version the alias ends on
    message: str  # one line for the log and the version tag


def _started_key(alias: str) -> str:
    return f"promotion.{alias}.started"


def _done_key(alias: str) -> str:
    return f"promotion.{alias}.done"


def outcome_key(alias: str) -> str:
    return f"promotion.{alias}"


def _score(value: float | None, mode: str) -> float:
    """Higher is better; a missing or NaN metric loses to any value."""
    if value is None or math.isnan(value):
        return -math.inf
    return value if mode == "max" else -value


def promote(client: MlflowClient, name: str, version: str, alias: str, metric: str, mode: str,
            deadline: float, now: Callable[[], float] = time.time) -> Decision:  # fmt: skip
    """Points `alias` of model `name` at `version` if its run's `metric` beats the holder's (mode max: higher wins)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    version = str(version)

    def call(what: str, action: Callable[[], object]) -> object:
        return retry(what, action, deadline, interval=1.0, transient=is_transient)

    metrics: dict[str, float | None] = {}  # run id -> metric; a finished run's metrics do not change

    def value_of(v: ModelVersion) -> float | None:
        if v.run_id not in metrics:
            run = call("reading a version's run", lambda: client.get_run(v.run_id)) if v.run_id else None
            metrics[v.run_id] = run.data.metrics.get(metric) if run is not None else None
        return metrics[v.run_id]

    started_ms = int(now() * 1000)
    call("marking the promotion candidate",
         lambda: client.set_model_version_tag(name, version, _started_key(alias), str(started_ms)))  # fmt: skip
    ended_before = {str(v.version) for v in _versions(client, name, call)
                    if _done_key(alias) in v.tags and str(v.version) != version}
    original = _holder(client, name, alias, call)

    decision: Decision | None = None
    try:
        for _ in range(MAX_ROUNDS):
            holder = _holder(client, name, alias, call)
            versions = _versions(client, name, call)
            cutoff_ms = int((now() - STALE_SECONDS) * 1000)
            candidates = [
                v for v in versions
                if str(v.version) in (version, holder) or (
                    _started_key(alias) in v.tags and str(v.version) not in ended_before
                    and _done_key(alias) not in v.tags and int(v.tags[_started_key(alias)]) >= cutoff_ms)
            ]  # fmt: skip
            # Best metric wins; on a tie the holder stays, then the older version.
            best = str(max(candidates, key=lambda v: (_score(value_of(v), mode), str(v.version) == holder,
                                                      -int(v.version))).version)  # fmt: skip
            if best == holder:
                break
            call("setting the alias", lambda: client.set_registered_model_alias(name, alias, best))
            time.sleep(random.uniform(0.1, 0.4))  # let racing writers land before the re-read
        else:
            log.warning("promotion of @%s did not settle after %d rounds", alias, MAX_ROUNDS)
        final = _holder(client, name, alias, call)
        decision = _describe(client, name, version, alias, metric, final, original, value_of, call)
        return decision
    finally:
        done = {_done_key(alias): str(int(now() * 1000))}
        if decision is not None:
            done[outcome_key(alias)] = decision.message
        try:  # best effort: a candidate left unfinished is ignored after STALE_SECONDS
            for key, value in done.items():
                call("tagging the version", lambda: client.set_model_version_tag(name, version, key, value))
        except Exception as exc:  # noqa: BLE001 - the decision stands; only its record is missing
            log.warning("could not tag version %s with the promotion outcome: %s", version, exc)


def _versions(client: MlflowClient, name: str, call: Callable[[str, Callable[[], object]], object]) -> list[ModelVersion]:
    return list(call("listing versions", lambda: client.search_model_versions(f"name='{name}'")))  # type: ignore[arg-type]


def _holder(client: MlflowClient, name: str, alias: str, call: Callable[[str, Callable[[], object]], object]) -> str | None:
    from mlflow.exceptions import MlflowException

    def read() -> str | None:
        try:
            return str(client.get_model_version_by_alias(name, alias).version)
        except MlflowException as exc:
            if exc.error_code in {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"}:  # no such alias yet
                return None
            raise

    return call("reading the alias", read)  # type: ignore[return-value]


def _describe(client: MlflowClient, name: str, version: str, alias: str, metric: str, final: str | None,
              original: str | None, value_of: Callable[[ModelVersion], float | None],
              call: Callable[[str, Callable[[], object]], object]) -> Decision:  # fmt: skip
    def value(v: str | None) -> float | None:
        return value_of(call("reading a version", lambda: client.get_model_version(name, v))) if v else None

    mine = value(version)
    if final == version:
        against = f"version {original}'s {value(original)}" if original and original != version else "no holder"
        return Decision(True, final, f"@{alias} -> version {version}: {metric} {mine} beats {against}")
    return Decision(False, final, f"@{alias} stays on version {final}: {metric} {mine} of version {version} "
                                  f"does not beat version {final}'s {value(final)}")  # fmt: skip
