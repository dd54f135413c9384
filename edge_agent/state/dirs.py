"""Is a state folder usable? Checked by `check-config` (without creating it) and by `run` (which
creates it first), so that a file, a read-only mount or the root of the file system is one line
naming `agent.state_dir`, never a traceback and never a database written into `/`.
"""

from __future__ import annotations

import os
from pathlib import Path


def is_root(value: str) -> bool:
    """True when a state_dir names the root of a file system (`/`, `//`, `/./`, `C:\\`)."""
    path = Path(os.path.abspath(value))
    return path == Path(path.anchor)


def check_value(value: str) -> str | None:
    """The config-time check of `agent.state_dir` (no I/O): refuse empty and root folders."""
    if not value.strip():
        return "must name a folder"
    if "\x00" in value:
        return "must not contain a NUL character"
    if is_root(value):
        return ("must not be the root of the file system: the agent writes its database, "
                "lock and journal there; use a folder of its own such as /var/lib/edge-agent")
    return None


def problem(state_dir: str | os.PathLike[str], create: bool = False) -> str | None:
    """Return why a state folder cannot be used, or None.

    With `create`, a missing folder (and its parents) is created first; without, it is enough
    that the nearest existing parent is a folder this process may write into.
    """
    text = os.fspath(state_dir)
    why = check_value(text)
    if why:
        return why
    path = Path(text)
    if create:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            return f"{text} exists and is not a folder"
        except OSError as err:
            return f"cannot create {text}: {err.strerror or err}"
    probe = path
    while not probe.exists():
        if probe.is_symlink():
            return f"{probe} is a dangling symbolic link"
        parent = probe.parent
        if parent == probe:
            break
        probe = parent
    if not probe.is_dir():
        return (f"{text} exists and is not a folder" if probe == path
                else f"{text} cannot be created: {probe} is not a folder")
    where = text if probe == path else f"{text} cannot be created: {probe}"
    try:
        st = os.statvfs(probe) if hasattr(os, "statvfs") else None
    except OSError:
        st = None
    if st is not None and st.f_flag & getattr(os, "ST_RDONLY", 1):
        return f"{where} is on a read-only mount"
    if not os.access(probe, os.W_OK | os.X_OK):
        return f"{where} is not writable by this user"
    # The permission bits can say yes where the kernel says no (root, ACLs, pseudo file
    # systems): try it, with a folder made and removed at once, which leaves nothing behind.
    import tempfile

    try:
        os.rmdir(tempfile.mkdtemp(prefix=".edge-agent-check-", dir=probe))
    except OSError as err:
        return f"{where} is not writable: {err.strerror or err}"
    return None
