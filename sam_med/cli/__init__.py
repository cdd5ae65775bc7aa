"""`sam-med` command line.

Each sub-command lives in its own module under ``sam_med.cli`` and exposes
``register(subparsers)`` (adds its parser and sets ``func``). Command modules
import heavy dependencies (torch, models) inside their run function so that
``sam-med --help`` stays fast.

Every error prints one line ``sam-med: error: <message>`` and exits with status
2 (errors that are not a :class:`sam_med.errors.SamMedError` are prefixed with
their type); ``--debug`` shows the traceback instead. Warnings raised by
libraries (pydicom, nibabel, numpy, torch) during a command are captured and
summarised in one ``sam-med: warning:`` line (``--debug`` prints them all).
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
import warnings

from ..errors import SamMedError

#: sub-command modules, in the order they appear in --help
COMMANDS = ["info", "segment", "demo", "evaluate", "finetune"]

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line usage error (exit 2) and numbers like ``-1e308`` read as numbers."""

    def __init__(self, *a, **kw) -> None:
        super().__init__(*a, **kw)
        self._negative_number_matcher = re.compile(r"^-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$|^-(inf|nan)$", re.I)

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"sam-med: error: {one_line(message)} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = _Parser(
        prog="sam-med",
        description="Promptable 3D segmentation of CT and MRI with Segment-Anything-style models.",
    )
    parser.add_argument("--version", action="version", version=f"sam-med {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            mod = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:  # command not built yet in this checkout
            if exc.name == f"{__name__}.{name}":
                continue
            raise
        mod.register(sub)
    return parser


def printable(text: str) -> str:
    """``text`` with control characters (terminal escape codes, ...) shown escaped."""
    return "".join(c if c.isprintable() or c == " " else c.encode("unicode_escape").decode("ascii") for c in str(text))


def one_line(text: str, limit: int = 2000) -> str:
    """``text`` on one line (whitespace runs collapsed, control characters such as terminal
    escape codes shown escaped), cut to ``limit`` characters."""
    flat = printable(" ".join(str(text).split()))
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _error_message(exc: BaseException) -> str:
    msg = one_line(str(exc))
    if isinstance(exc, (SamMedError, OSError)):
        return msg or exc.__class__.__name__
    return f"{exc.__class__.__name__}: {msg}" if msg else exc.__class__.__name__


def _report_warnings(caught: list, debug: bool) -> None:
    if not caught:
        return
    if debug:
        for w in caught:
            print(f"sam-med: warning: {w.category.__name__}: {one_line(w.message)}", file=sys.stderr)
        return
    first = caught[0]
    more = f" (+{len(caught) - 1} more; --debug shows all)" if len(caught) > 1 else ""
    print(f"sam-med: warning: {first.category.__name__}: {one_line(first.message, 200)}{more}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help / --version (0) or a usage error, already printed in one line
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    from ..io.atomic import sweep_stale

    sweep_stale()  # remove staging folders killed sam-med runs left (journals wait for their command)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        try:
            rc = args.func(args)
        except KeyboardInterrupt:
            print("sam-med: interrupted", file=sys.stderr)
            return 130
        except RecursionError as exc:  # before the generic handler: the message is uninformative
            if args.debug:
                raise
            print(f"sam-med: error: input nested too deeply ({exc.__class__.__name__})", file=sys.stderr)
            return EXIT_USAGE
        except Exception as exc:  # every error is one line and exit 2; --debug shows the traceback
            if args.debug:
                raise
            print(f"sam-med: error: {_error_message(exc)}", file=sys.stderr)
            return EXIT_USAGE
        else:
            if not args.debug:  # after an error, the error line is the only line
                _report_warnings(caught, False)
        finally:
            if args.debug:
                _report_warnings(caught, True)
    return int(rc or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
