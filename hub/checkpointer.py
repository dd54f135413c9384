"""Signed checkpoints of the audit log at an interval, written to a file and published
retained on MQTT (the wiring of hub/domains/audit/checkpoint.py into a running worker).

    cp = Checkpointer(db, ring, interval=300, path="/mnt/worm/audit.json",
                      publish=lambda payload: client.publish(topic, payload, 1, retain=True))
    cp.tick()        # from the worker's loop: makes one when due, else does nothing

Several workers may tick at once: each checkpoint is made in a transaction and the table
keeps one per seq, so they agree; whichever publishes last publishes the newest.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any, Callable

from hub.errors import HubError

log = logging.getLogger("hub.audit")


class Checkpointer:
    def __init__(self, db, ring: Any, interval: float, path: str = "",
                 publish: Callable[[bytes], Any] | None = None,
                 clock: Callable[[], float] = time.time):
        self.db, self.ring, self.interval = db, ring, interval
        self.path, self.publish, self.clock = path, publish, clock
        self._next = 0.0  # monotonic time of the next look

    def tick(self, now: float | None = None) -> dict[str, Any] | None:
        """Make, export and publish a checkpoint if one is due; return it (or None)."""
        from hub.domains.audit import checkpoint

        if self.interval <= 0:
            return None
        now = time.monotonic() if now is None else now
        if now < self._next:
            return None
        self._next = now + min(self.interval, 10.0)
        try:
            with self.db.transaction() as tx:
                if not checkpoint.due(tx, self.clock, self.interval):
                    return None
                cp = checkpoint.make(tx, self.clock, self.ring)
        except HubError as err:
            log.warning("audit checkpoint not made: %s", err)
            return None
        self.export(cp)
        return cp

    def export(self, cp: dict[str, Any]) -> None:
        from hub.domains.audit import checkpoint

        if self.path:
            try:
                checkpoint.write_file(self.path, cp)
            except OSError as err:
                log.warning("audit checkpoint not written to %s: %s", self.path, err)
        if self.publish is not None:
            try:
                self.publish(json.dumps(cp, sort_keys=True).encode())
            except (OSError, RuntimeError, ValueError) as err:
                log.warning("audit checkpoint not published: %s", err)
        log.info("audit checkpoint", extra={"seq": cp["checkpoint"]["seq"],
                                            "kid": cp["sig"]["kid"]})
