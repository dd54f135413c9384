"""The checkpointer a worker runs: a checkpoint when the log grew and the interval passed,
written to its file and published; none otherwise."""

from __future__ import annotations

import json

from accesskit import ADMIN, migrated
from hub.app import Checkpointer
from hub.domains import audit
from hub.keys import KeyRing


def test_checkpoints_at_an_interval_to_a_file_and_a_publisher(tmp_path):
    db = migrated(str(tmp_path / "hub.db"))
    ring = KeyRing.init(tmp_path / "keys")
    now = [1_764_900_000.0]
    published = []
    cp = Checkpointer(db, ring, 60, str(tmp_path / "cp.json"), published.append,
                      clock=lambda: now[0])
    assert cp.tick(0) is None  # an empty log: nothing to sign
    with db.transaction() as tx:
        audit.record(tx, lambda: now[0], ADMIN, "users.add", "user:a")
    made = cp.tick(100)
    assert made["checkpoint"]["seq"] == 1
    assert json.loads((tmp_path / "cp.json").read_text()) == made
    assert json.loads(published[0]) == made
    with db.transaction() as tx:
        audit.record(tx, lambda: now[0], ADMIN, "users.add", "user:b")
    now[0] += 30
    assert cp.tick(200) is None  # grown, but the interval has not passed
    now[0] += 31
    assert cp.tick(300)["checkpoint"]["seq"] == 2
    assert audit.verify(db, trusted=ring.public_keys(),
                        external=[("file", audit.load_checkpoint_file(
                            str(tmp_path / "cp.json")))]).head_seq == 2
    db.close()
