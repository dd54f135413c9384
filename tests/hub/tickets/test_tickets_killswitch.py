"""The `tickets` kill switch (docs/commands.md, issue 14) on SQLite and PostgreSQL: with
`edge-hub flags set tickets=off` for a store (or its region, or the chain), that store's alerts
make no ticket intent at the hub; other stores' do, and switching it back on works again."""

from __future__ import annotations

import edge_protocol as wire
import pytest

from hubkit import alert_body, birth_body, envelope
from hub.app import open_store
from hub.domains.access import local_actor
from hub.domains.flags import rules as flags
from hub.domains.tickets.policy import parse
from hub.ingest.writer import apply as ingest_apply
from hub.keys import KeyRing
from hub.ticketing import on_transitions

POLICY = parse({"families": [{"what": "paper_out", "ticket": "incident", "priority": "high"}],
                "routes": [{"connector": "hook"}],
                "connectors": {"hook": {"type": "webhook", "url": "http://127.0.0.1:9/x"}}})
REGIONS = {"s1": "north", "s2": "north", "s3": "south"}


class Clock:
    def __init__(self, t: float = 1_800_000_000.0):
        self.t = t

    def __call__(self) -> float:
        self.t += 1
        return self.t


@pytest.fixture
def db(hub_db):
    store = open_store(hub_db)
    yield store
    store.close()


def alerts(db, seq: int, state: str = "raised", device: str = "p1") -> int:
    """A paper_out alert from each store's p1, through ingest and the ticket rules; the
    intents made."""
    envs = []
    for store, region in REGIONS.items():
        if seq == 1:
            envs.append(envelope("birth", birth_body(1, ("p1", "p9")), store=store,
                                 region=region, seq=0))
        envs.append(envelope("alert", alert_body(state, device=device), store=store,
                             region=region, seq=seq))
    decoded = [wire.decode(wire.encode(e)) for e in envs]
    with db.transaction() as tx:
        db.insert_new_messages(tx, [(e.id, e.store, e.region, e.seq, e.kind, e.ts, 1.0, "{}")
                                    for e in decoded])
        transitions = ingest_apply(db, tx, decoded, 1000.0 + seq)
        return on_transitions(tx, Clock(), POLICY, transitions)


def tickets_of(db) -> set[str]:
    with db.read() as tx:
        tx.execute("SELECT DISTINCT t.store FROM tickets t JOIN ticket_intents i"
                   " ON i.ticket_id = t.id")
        return {r[0] for r in tx.fetchall()}


def switch(db, ring, scope: str, value: bool) -> None:
    with db.transaction() as tx:
        flags.set_flag(tx, Clock(), local_actor("ann"), scope, "tickets", value, ring,
                       region_of=REGIONS)


def test_a_store_with_tickets_off_gets_no_ticket_and_the_others_do(db, tmp_path):
    ring = KeyRing.init(tmp_path / "keys")
    switch(db, ring, "store:s1", False)
    switch(db, ring, "region:south", False)
    assert alerts(db, 1) == 1           # s2's ticket only
    assert tickets_of(db) == {"s2"}
    switch(db, ring, "store:s1", True)  # back on: s1's next alert opens its ticket
    alerts(db, 2, "cleared")
    assert alerts(db, 3) >= 1
    assert tickets_of(db) == {"s1", "s2"}
    # Off for the whole chain (s1's own "on" set back to off): a new problem on every store's
    # other printer, which would open three tickets, makes no intent at all.
    switch(db, ring, "store:s1", False)
    switch(db, ring, "chain", False)
    assert alerts(db, 4, device="p9") == 0
    switch(db, ring, "chain", True)
    switch(db, ring, "region:south", True)
    switch(db, ring, "store:s1", True)
    assert alerts(db, 5, "cleared", device="p9") == 0   # nothing open for p9 to comment on
    assert alerts(db, 6, device="p9") == 3               # on again: a ticket each
