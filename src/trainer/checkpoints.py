"""Checkpoint integrity: YOLOv5's .pt files are never half-written when training stops, and never uploaded so.

torch.save writes a zip archive whose central directory comes last, so a file cut off mid-write does not open as
a zip: a cheap test that needs no torch import in the uploading process.
"""

from __future__ import annotations

import os
import signal
import zipfile
from pathlib import Path
from typing import Any, Callable


def is_complete(path: Path) -> bool:
    """A weight file that torch.save finished (a readable zip archive); other files are never judged."""
    if path.suffix != ".pt":
        return True
    try:
        with zipfile.ZipFile(path) as archive:
            return bool(archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def guard_saves(module: Any) -> None:
    """Wraps module.save (torch.save) so that SIGTERM waits until the checkpoint being written is complete.

    A handler, not a signal mask: torch's worker threads would still take a process-directed signal. Outside a save
    the signal ends the process at once, as SIGTERM's default action did.
    """
    save: Callable[..., Any] = module.save
    if getattr(save, "_trainer_guarded", False):
        return
    state = {"saving": 0, "pending": 0}

    def on_sigterm(signum: int, frame: object) -> None:
        if state["saving"]:
            state["pending"] = signum
        else:
            _default_action(signum)

    def guarded(*args: Any, **kwargs: Any) -> Any:
        state["saving"] += 1
        try:
            return save(*args, **kwargs)
        finally:
            state["saving"] -= 1
            if state["pending"] and not state["saving"]:
                _default_action(state["pending"])

    guarded._trainer_guarded = True  # type: ignore[attr-defined]
    module.save = guarded
    signal.signal(signal.SIGTERM, on_sigterm)


def _default_action(signum: int) -> None:
    """Ends the process the way the signal's default action does (the parent reads the exit status)."""
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def incomplete(root: Path) -> list[Path]:
    """Weight files under root that were cut off mid-write (e.g. the process was SIGKILLed while saving)."""
    return sorted(p for p in root.rglob("*.pt") if p.is_file() and not is_complete(p))
