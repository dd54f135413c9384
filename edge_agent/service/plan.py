"""Install steps that say what they do: `--dry-run` prints them, a real install runs them."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from edge_agent.errors import EdgeError


class InstallError(EdgeError):
    """A service install, uninstall or status step could not be done."""


@dataclass
class Step:
    """One action: `says` is what --dry-run prints; `run` does it."""

    says: str
    run: Callable[[], None] | None = None


def command(argv: Sequence[str], ok_codes: tuple[int, ...] = (0,)) -> Step:
    """A step that runs a command (never through a shell)."""
    argv = [str(a) for a in argv]

    def run() -> None:
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        except (OSError, subprocess.TimeoutExpired) as err:
            raise InstallError(f"cannot run {argv[0]}: {err}") from err
        if done.returncode not in ok_codes:
            detail = (done.stderr or done.stdout).strip().splitlines()
            raise InstallError(f"`{shlex.join(argv)}` failed (exit {done.returncode})"
                               + (f": {detail[-1]}" if detail else ""))

    return Step(shlex.join(argv) if os.name != "nt" else subprocess.list2cmdline(argv), run)


def write_file(path: Path, text: str, mode: int | None = 0o644, *,
               keep_existing: bool = False,
               group: str | None = None) -> Step:
    """A step that writes a text file (or keeps one that is already there)."""
    if keep_existing and path.exists():
        return Step(f"keep existing {path}")

    def run() -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".new")
            tmp.write_text(text, encoding="utf-8")
            if mode is not None and os.name != "nt":
                os.chmod(tmp, mode)
                if group is not None:
                    import grp

                    os.chown(tmp, 0, grp.getgrnam(group).gr_gid)
            os.replace(tmp, path)  # Atomic: a half-written unit or config is never seen.
        except (OSError, KeyError) as err:
            raise InstallError(f"cannot write {path}: {err}") from err

    owner = f", owner root:{group}" if group else ""
    shown = f" (mode {mode:04o}{owner})" if mode is not None else ""
    return Step(f"write {path}{shown}", run)


def make_dir(path: Path, mode: int = 0o755) -> Step:
    """A step that creates a folder with its parents."""
    def run() -> None:
        try:
            path.mkdir(parents=True, exist_ok=True, mode=mode)
        except OSError as err:
            raise InstallError(f"cannot create {path}: {err}") from err

    return Step(f"create folder {path}", run)


def remove_file(path: Path) -> Step:
    """A step that removes a file if it is there."""
    def run() -> None:
        try:
            path.unlink(missing_ok=True)
        except OSError as err:
            raise InstallError(f"cannot remove {path}: {err}") from err

    return Step(f"remove {path}", run)


def note(text: str) -> Step:
    """A line printed in the plan that does nothing."""
    return Step(f"note: {text}")


@dataclass
class Plan:
    """Steps in order, with the problems that stop a real run (not root, no systemd)."""

    steps: list[Step] = field(default_factory=list)
    blockers: list[str] = field(default_factory=list)

    def execute(self, dry_run: bool, out=None) -> int:
        """Print each step; run it unless dry_run. Return the exit code."""
        out = out or sys.stdout
        if dry_run:
            print("dry run: nothing will be changed; these are the steps:", file=out)
            for problem in self.blockers:
                print(f"  (a real run would stop here: {problem})", file=out)
        elif self.blockers:
            raise InstallError("; ".join(self.blockers))
        for step in self.steps:
            print(f"- {step.says}", file=out, flush=True)
            if not dry_run and step.run is not None:
                step.run()
        return 0
