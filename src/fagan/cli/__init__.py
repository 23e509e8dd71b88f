"""The ``fagan`` command line.

Each sub-command lives in its own module of this package and exposes ``register(subparsers)``,
which adds its parser and sets ``func`` to a callable ``(argparse.Namespace) -> int``. Heavy
imports (torch, nibabel) happen inside those functions so that ``fagan --help`` is instant.

User errors (``ValueError``, including :class:`fagan.FaganError`) and operating-system errors
(a missing file, a read-only folder, a full disk) are printed as a single ``fagan: error: ...``
line on stderr with exit status 2; nothing else is caught. SIGTERM and SIGHUP stop a command as
Ctrl-C does, so the temporary files of unfinished outputs are removed on the way out.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
from collections.abc import Sequence

from fagan import __version__

# Sub-command modules, in the order ``fagan --help`` lists them.
COMMANDS: tuple[str, ...] = (
    "models",
    "prepare",
    "upscale",
    "demo",
    "train",
    "evaluate",
    "experiment",
    "bench",
    "export",
)


class _OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line on stderr and exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(prog="fagan", description="MRI super-resolution with FA-GAN.")
    parser.add_argument("--version", action="version", version=f"fagan {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_OneLineParser)
    sub.required = True
    for name in COMMANDS:
        importlib.import_module(f"fagan.cli.{name}").register(sub)
    return parser


class _Terminated(KeyboardInterrupt):
    """Raised by the SIGTERM/SIGHUP handler, so that cleanup runs as it does for Ctrl-C."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _terminate(signum: int, frame: object) -> None:
    raise _Terminated(signum)


def main(argv: Sequence[str] | None = None) -> int:
    # Idle OpenMP threads sleep instead of spinning: on a CPU shared with other work, spinning
    # threads made inference 1.5x slower (BENCHMARKS.md). Set before torch is first imported.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    args = build_parser().parse_args(argv)
    # Only while the command runs: a signal after it (PyTorch joining its data-loader workers at
    # exit, say) must not raise into an atexit callback, and a caller's own handlers come back.
    previous = {signum: signal.signal(signum, _terminate) for signum in (signal.SIGTERM, signal.SIGHUP)}
    try:
        return int(args.func(args) or 0)
    except (ValueError, OSError) as exc:
        message = " ".join(str(exc).split()) or type(exc).__name__
        print(f"fagan: error: {message}", file=sys.stderr)
        return 2
    except _Terminated as exc:
        print(f"fagan: stopped by {signal.Signals(exc.signum).name}", file=sys.stderr)
        return 128 + exc.signum
    except KeyboardInterrupt:
        print("fagan: interrupted", file=sys.stderr)
        return 130
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
