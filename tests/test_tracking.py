"""Retries around MLflow calls and the one-line error text they log."""

from __future__ import annotations

import time

import pytest

from trainer.tracking import first_line, retry


def test_retry_rides_out_failures_without_a_message() -> None:
    calls = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError()  # requests/urllib3 errors can have an empty message
        return "ok"

    assert retry("logging", flaky, time.monotonic() + 5, interval=0.01) == "ok"
    assert len(calls) == 3


def test_retry_gives_up_at_the_deadline() -> None:
    def down() -> None:
        raise ConnectionError("connection refused")

    with pytest.raises(ConnectionError):
        retry("logging", down, time.monotonic() + 0.05, interval=0.01)


@pytest.mark.parametrize(
    ("exc", "text"),
    [(ConnectionError(), "ConnectionError"), (ValueError("bad\ndetails"), "bad"), (RuntimeError("x" * 500), "x" * 300)],
)
def test_first_line(exc: BaseException, text: str) -> None:
    assert first_line(exc) == text
