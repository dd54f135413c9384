"""Ingest: the stores' stream decoded (edge_protocol) and committed in batches into the domains.

    decode.py   envelope and typed-body checks on the network thread: a hostile message is
                rejected and counted by reason before it reaches the writer
    writer.py   one batch, one transaction: fleet, alert instances, feed rows, reject counts;
                a batch that will not commit is split to quarantine the message that breaks it

`Ingest` is one hub worker's consumer (hub.bus.consumer.Consumer) with those two plugged in
and the alert feed's router. Acknowledgements go to the broker only after the commit.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from edge_protocol.timestamps import DEFAULT_SKEW, Clock, Skew
from hub.bus.consumer import Consumer, ConsumerSettings, Handoff, Item, Outgoing
from hub.domains import alerts
from hub.ingest.decode import make_decoder
from hub.ingest.writer import commit_or_split
from hub.store import Store

log = logging.getLogger("hub.ingest")


@dataclass
class Settings(ConsumerSettings):
    """How one ingest worker connects, batches, routes alerts and judges timestamps."""

    flaps: alerts.FlapPolicy = field(default_factory=alerts.FlapPolicy)
    skew: Skew = DEFAULT_SKEW
    # The ticket policy (hub.domains.tickets.TicketPolicy) and the hook hub.app's caller plugs
    # in (hub.ticketing.on_transitions): alert transitions -> ticket intents, in the batch's
    # transaction. None: no tickets.
    tickets: Any = None
    on_transitions: Optional[Callable[[Any, list], int]] = None
    # The hold ([ingest] hold_stores_after): a worker whose writer has not committed for this
    # long says "not accepting" on the hub's state (reason "database"), so stores keep their
    # rows instead of filling the broker's bounded queue for this worker (hub.app.Hub).
    hold_after_s: float = 5.0


class Ingest(Consumer):
    """One hub worker: an MQTT consumer, a batching writer and the alert router."""

    def __init__(self, db: Store, settings: Settings,
                 will: tuple[str, bytes] | None = None,
                 on_connected: Callable[["Ingest"], None] | None = None,
                 on_birth: Callable[[], None] | None = None,
                 clock: Clock = time.time,
                 on_ready: Callable[["Ingest"], None] | None = None):
        self.db = db
        self.clock = clock
        self.router = alerts.Router(db, settings.client_id, settings.flaps, settings.prefix)
        self.decode = make_decoder(settings.prefix, clock, settings.skew)  # type: ignore
        super().__init__(settings, will, on_connected, on_birth, on_ready)

    def feed_step(self) -> list[Outgoing]:
        return self.router.step()  # type: ignore[return-value]

    def feed_mark_sent(self, keys: list[str]) -> None:
        self.router.mark_sent(keys)

    def feed_held(self) -> int:
        return self.router.held

    def commit(self, batch: list[Item]) -> int:
        """Store one batch in one transaction; return how many alert transitions it had."""
        done = commit_or_split(self.db, batch, self.clock, self.s.on_transitions)
        for item, reason in done.quarantined:
            self.counts["quarantined"] += 1
            n = self.counts["quarantined"]
            if n <= 100 or n % 1000 == 0:  # each one logged, then every 1000th of a flood
                env = item.env
                log.error("a message broke its batch's commit; quarantined, the rest committed",
                          extra={"id": env.id if env else None, "topic": item.topic[:200],
                                 "reason": reason[:300], "quarantined": n})
        for code, n in done.rejected.items():
            before = self.rejects[code]
            self.rejects[code] += n
            # Log the first of each reason and then every 1000th: counted, not noise.
            if before == 0 or before // 1000 != self.rejects[code] // 1000:
                item = done.last[code]
                log.warning("message rejected", extra={
                    "reason": code, "detail": item.error.detail[:200],
                    "topic": item.topic[:200], "count": self.rejects[code]})
        self.counts["received"] += done.received
        self.counts["stored"] += done.stored
        self.counts["duplicates"] += done.duplicates
        self.counts["readings"] += done.readings
        if done.ticket_intents:
            self.counts["ticket_intents"] += done.ticket_intents
        return done.routed


__all__ = ["Settings", "Ingest", "Handoff", "Item", "Outgoing"]
