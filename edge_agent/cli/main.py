"""Parse the command line and dispatch to the command modules of this package.

Each module here with a `register(subparsers)` function adds one command and sets `func`, which
takes the parsed arguments and returns the exit code: 0 done, 1 the work failed, 2 a user's
mistake (bad arguments, invalid config). A user's mistake never shows a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sqlite3
import sys

from edge_agent import __version__
from edge_agent.errors import ConfigError, EdgeError

from . import output


def build_parser() -> argparse.ArgumentParser:
    """Build the parser with every command module's subcommand."""
    parser = argparse.ArgumentParser(
        prog="edge-agent",
        description="Retail Edge store agent: watches receipt printers, network printers, "
                    "scanners and the register, predicts failures, and syncs with the hub.")
    parser.add_argument("--version", action="store_true", help="print versions and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    package = sys.modules[__package__]
    for mod in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        if mod.name in ("main", "output") or mod.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__package__}.{mod.name}")
        if hasattr(module, "register"):
            module.register(sub)
    return parser


def version_text() -> str:
    """Return the agent's version line(s): package, model, Python and libraries."""
    from edge_agent.versions import version_text as text

    return text("edge-agent", __version__)


def _not_utf8(argv: list[str]) -> int | None:
    """Return the 1-based position of the first argument that is not UTF-8 text, or None.

    Python hands such bytes over as lone surrogates; printed to a strict UTF-8 stream they raise,
    and stored in the state database or sent to the hub they would be refused later anyway.
    """
    for i, arg in enumerate(argv, start=1):
        try:
            arg.encode("utf-8")
        except UnicodeEncodeError:
            return i
    return None


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return the exit code."""
    try:
        return _main(sys.argv[1:] if argv is None else list(argv))
    except BrokenPipeError:
        # The reader went away (`edge-agent status | head -1`): stop quietly, as cat does, and
        # keep Python from reporting the failed flush of stdout at exit.
        _detach_stdout()
        return 0


def _detach_stdout() -> None:
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


def _main(argv: list[str]) -> int:
    bad = _not_utf8(argv)
    if bad is not None:
        shown = argv[bad - 1].encode("utf-8", "surrogateescape").decode("ascii", "backslashreplace")
        output.error(f"argument {bad} is not UTF-8 text: '{shown}'")
        return 2
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        print(version_text())
        return 0
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except ConfigError as err:
        return output.config_error(err)
    except EdgeError as err:
        output.error(str(err))
        return 1
    except sqlite3.Error as err:
        # The state database went bad under a command (a disk error, a damaged file).
        output.error(f"state database: {err}")
        return 1
    except KeyboardInterrupt:
        return 130
