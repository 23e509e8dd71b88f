"""``fagan.cli.main`` holds SIGTERM and SIGHUP only while its command runs."""

from __future__ import annotations

import signal

import pytest

from fagan.cli import main


def _mine(signum: int, frame: object) -> None:  # a caller's own handler
    raise AssertionError("not called")


@pytest.mark.parametrize(
    "argv", [["models", "--scale", "2"], ["upscale", "/no/such.nii", "-o", "x.nii", "--scale", "2"]]
)
def test_the_callers_handlers_come_back(argv, capsys) -> None:
    saved = {s: signal.signal(s, _mine) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        main(argv)  # a success and a one-line error
        assert signal.getsignal(signal.SIGTERM) is _mine
        assert signal.getsignal(signal.SIGHUP) is _mine
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)
