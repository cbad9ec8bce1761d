"""Checkpoints: a stop signal never cuts a .pt in half, and a cut-off .pt is recognised (and never uploaded)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from trainer.checkpoints import incomplete, is_complete

torch = pytest.importorskip("torch")

# Saves a checkpoint whose pickling sends the process SIGTERM half-way: the worst moment for a stop to land.
SAVE_WHILE_STOPPED = textwrap.dedent(
    """\
    import os, signal, sys, torch
    from trainer import checkpoints

    class StopMidway:
        def __reduce__(self):
            os.kill(os.getpid(), signal.SIGTERM)
            return (dict, ())

    if sys.argv[2] == "guarded":
        checkpoints.guard_saves(torch)
    torch.save({"a": torch.zeros(1_000_000), "stop": StopMidway(), "b": torch.ones(1_000_000)}, sys.argv[1])
    print("unreachable: SIGTERM's default action ends the process")
    """
)


def save_while_stopped(path: Path, mode: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", SAVE_WHILE_STOPPED, str(path), mode], capture_output=True, text=True,
                          timeout=120)  # fmt: skip


def test_a_finished_save_is_complete_and_a_cut_off_one_is_not(tmp_path: Path) -> None:
    good = tmp_path / "weights" / "best.pt"
    good.parent.mkdir()
    torch.save({"w": torch.zeros(1000)}, good)
    cut = tmp_path / "weights" / "last.pt"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    (tmp_path / "results.csv").write_text("epoch\n")
    assert is_complete(good)
    assert not is_complete(cut)
    assert is_complete(tmp_path / "results.csv")  # only weight files are judged
    assert incomplete(tmp_path) == [cut]


def test_sigterm_during_a_guarded_save_lands_after_the_write(tmp_path: Path) -> None:
    path = tmp_path / "last.pt"
    result = save_while_stopped(path, "guarded")
    assert result.returncode == -15, result.stderr  # the stop still happens ...
    assert "unreachable" not in result.stdout  # ... right after the save
    assert is_complete(path)  # ... and the checkpoint is whole
    assert set(torch.load(path, weights_only=False)) == {"a", "stop", "b"}


def test_sigterm_during_a_plain_save_cuts_the_file(tmp_path: Path) -> None:
    """The failure the guard prevents (shows the test above can tell the two apart)."""
    path = tmp_path / "last.pt"
    assert save_while_stopped(path, "plain").returncode == -15
    assert not is_complete(path)
