"""One agent per state folder: an advisory lock that also tells `status` whether one is running."""

from __future__ import annotations

import os
from pathlib import Path

from edge_agent.errors import StateError

LOCK_NAME = "agent.lock"


class StateLock:
    """Hold an exclusive lock on <state_dir>/agent.lock for the agent's lifetime."""

    def __init__(self, state_dir: str | Path):
        self.path = Path(state_dir) / LOCK_NAME
        self._fh = None

    def acquire(self) -> None:
        """Take the lock or raise StateError if another agent holds it."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fh = open(self.path, "a+")
        except OSError as err:
            raise StateError(f"cannot open the lock file {self.path}: "
                             f"{err.strerror or err}") from err
        try:
            _lock(fh)
        except OSError as err:
            fh.close()
            raise StateError(f"another agent is running on {self.path.parent} "
                             f"(pid {holder(self.path.parent) or '?'})") from err
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        self._fh = fh

    def release(self) -> None:
        """Release the lock."""
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def holder(state_dir: str | Path) -> int | None:
    """Return the pid of the agent holding the lock on a state folder, or None if none does."""
    path = Path(state_dir) / LOCK_NAME
    try:
        fh = open(path, "a+")
    except OSError:
        return None
    try:
        try:
            _lock(fh)
        except OSError:
            fh.seek(0)
            text = fh.read().strip()
            return int(text) if text.isascii() and text.isdigit() else -1
        _unlock(fh)
        return None
    finally:
        fh.close()


if os.name == "nt":  # pragma: no cover - Windows
    import msvcrt

    def _lock(fh) -> None:
        fh.seek(0)
        msvcrt.locking(fh.fileno(), msvcrt.LK_NBLCK, 1)

    def _unlock(fh) -> None:
        fh.seek(0)
        msvcrt.locking(fh.fileno(), msvcrt.LK_UNLCK, 1)
else:
    import fcntl

    def _lock(fh) -> None:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)

    def _unlock(fh) -> None:
        fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
