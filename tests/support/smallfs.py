"""A small real file system a test can fill: tmpfs mounted on a temporary folder.

    def test_x(small_tmpfs):
        state_dir = small_tmpfs.path / "state"
        ...
        small_tmpfs.fill()     # write a filler file until the kernel says ENOSPC
        small_tmpfs.free()     # remove it

Mounting takes root (or CAP_SYS_ADMIN): the fixture skips, saying why, when the test does not
run as root or the mount is refused (a container without the capability); it unmounts in a
finalizer, lazily if a process the test started still holds a file there.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

SIZE = "8m"  # room for the agent's database and WAL at the start of a test, little more


class SmallFs:
    def __init__(self, path: Path):
        self.path = path
        self.filler = path / "filler"

    def fill(self) -> int:
        """Fill the file system with a filler file until ENOSPC; return the bytes written."""
        written = 0
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            for size in (1 << 16, 4096, 512, 1):
                chunk = b"\0" * size
                while True:
                    try:
                        written += os.write(fd, chunk)
                    except OSError as err:
                        if err.errno != errno.ENOSPC:
                            raise
                        break
        finally:
            os.close(fd)
        return written

    def free(self) -> None:
        self.filler.unlink(missing_ok=True)

    def available(self) -> int:
        st = os.statvfs(self.path)
        return st.f_bavail * st.f_frsize


@pytest.fixture
def small_tmpfs():
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs takes root: not root")
    folder = Path(tempfile.mkdtemp(prefix="smallfs-"))
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SIZE},mode=0755", "tmpfs",
                           str(folder)], capture_output=True, text=True)
    if done.returncode != 0:
        shutil.rmtree(folder, ignore_errors=True)
        pytest.skip(f"mount -t tmpfs refused: {done.stderr.strip() or done.returncode}")
    try:
        yield SmallFs(folder)
    finally:
        if subprocess.run(["umount", str(folder)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(folder)], capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)
