"""`sam-med` command line.

Each sub-command lives in its own module under ``sam_med.cli`` and exposes
``register(subparsers)`` (adds its parser and sets ``func``). Command modules
import heavy dependencies (torch, models) inside their run function so that
``sam-med --help`` stays fast.

Errors derived from :class:`sam_med.errors.SamMedError` (and missing files)
print one line ``sam-med: error: <message>`` and exit with status 2; ``--debug``
shows the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from ..errors import SamMedError

#: sub-command modules, in the order they appear in --help
COMMANDS = ["info", "segment", "demo", "evaluate", "finetune"]

EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(
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


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        rc = args.func(args)
    except (SamMedError, FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError) as exc:
        if args.debug:
            raise
        msg = str(exc) or exc.__class__.__name__
        print(f"sam-med: error: {msg}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("sam-med: interrupted", file=sys.stderr)
        return 130
    return int(rc or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
