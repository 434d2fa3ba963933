"""The ``skcgcnn`` command line: ``fit``, ``predict``, ``models``, ``tune`` and ``demo``.

Each command lives in a module of its own (its parser and its ``run``); this
module assembles them and turns the library's errors into one line and an
exit status. Nothing a Python user would want lives here.
"""

from __future__ import annotations

import argparse
import functools
import signal
import sys
import warnings
from contextlib import contextmanager

from . import demo, fit, predict, tune
from ._common import HelpWithDefaults

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``skcgcnn`` command."""
    from .. import __version__

    parser = argparse.ArgumentParser(prog="skcgcnn", description="Crystal graph convolutional neural networks.")
    parser.add_argument("--version", action="version", version=f"skcgcnn {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser = functools.partial(sub.add_parser, formatter_class=HelpWithDefaults)
    fit.add_parser(sub)
    predict.add_parsers(sub)
    tune.add_parser(sub)
    demo.add_parser(sub)
    return parser


@contextmanager
def _each_warning_once():
    """Warnings as plain lines of the command's output (so a run's log keeps them), each distinct one once.

    Python's own display would name the console script's line as their place and repeat a warning raised in
    every epoch.
    """
    seen = set()

    def show(message, category, filename, lineno, file=None, line=None):
        if str(message) not in seen:
            seen.add(str(message))
            print(f"warning: {message}")

    with warnings.catch_warnings():
        warnings.simplefilter("always", UserWarning)  # repeats are dropped here, by text, not by place
        warnings.showwarning = show
        yield


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    from contextlib import redirect_stdout

    from ..runs import Tee, exit_status, stop_on_signals

    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    # Tee: no colour codes in redirected output.
    with stop_on_signals() as received, redirect_stdout(Tee(sys.stdout)), _each_warning_once():
        args.received_signals = received
        try:
            return args.func(args)
        except (ValueError, TypeError, OSError) as exc:
            print(f"skcgcnn: error: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("skcgcnn: interrupted", file=sys.stderr)
            return exit_status(received[-1] if received else signal.SIGINT)
