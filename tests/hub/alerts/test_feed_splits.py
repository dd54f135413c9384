"""The flap router over every batch split of a flap sequence, with a transaction and a clock.

Ingest commits transitions in batches whose boundaries depend on timing; the feed must tell
the same story wherever they fall. Each case below runs one sequence of transitions of one
alert through `alerts.record` (the ingest transaction's part) and `Router.step` (the feed
worker's), batch by batch, for every way of cutting the sequence into batches, then steps once
more after the flap has been stable. No MQTT: the domain's rules on SQLite and PostgreSQL.
"""

from __future__ import annotations

import itertools
import json
from datetime import datetime, timezone

import pytest

from edge_protocol.envelope import Envelope
from edge_protocol.timestamps import format_ts
from hub.domains import alerts
from hub.domains.alerts.schema import MIGRATIONS
from hub.store import open_store

POLICY = alerts.FlapPolicy(max_flaps=3, window_s=600.0, stable_s=60.0)
GAP_S = 2.0  # between two transitions at the store; far below stable_s

# name: the states in order (R raised, C cleared). Each raise opens a new instance (its own
# since); each clear closes the instance before it.
SEQUENCES = {
    "seven transitions ending raised": "RCRCRCR",
    "eight ending cleared": "RCRCRCRC",
    "four, one over the limit, ending cleared": "RCRC",
    "five, ending raised": "RCRCR",
    "three, at the limit: not flapping": "RCR",
}
STATE = {"R": "raised", "C": "cleared"}


def splits(n: int):
    """Every way to cut n transitions into consecutive non-empty batches (2^(n-1) of them)."""
    for cuts in itertools.product((False, True), repeat=n - 1):
        sizes, size = [], 1
        for cut in cuts:
            if cut:
                sizes.append(size)
                size = 0
            size += 1
        yield (*sizes, size)


class Clock:
    def __init__(self, now: float):
        self.now = now

    def __call__(self) -> float:
        return self.now


def transitions(store: str, states: str, t0: float) -> list[tuple[Envelope, float]]:
    """Envelopes of the sequence and when each happened at the store."""
    out, since = [], None
    for i, code in enumerate(states):
        at = t0 + i * GAP_S
        ts = format_ts(datetime.fromtimestamp(at, timezone.utc))
        if code == "R":
            since = ts
        body = {"alert": "p1:paper_out", "device": "p1", "what": "paper_out",
                "state": STATE[code], "severity": "critical", "since": since, "ts": ts,
                "explanation": ["printer.paper = out on p1"], "decision": None}
        out.append((Envelope(1, f"{store}-{i}", i + 1, store, "r1", ts, "alert", body), at))
    return out


def run(db, store: str, states: str, sizes: tuple[int, ...], t0: float) -> list[dict]:
    """Commit the sequence batch by batch, stepping the router after each commit as the feed
    worker does, then once after the flap has been stable; return the feed's messages."""
    clock = Clock(t0)
    router = alerts.Router(db, "worker-1", POLICY, clock=clock)
    sent: list[dict] = []

    def step():
        out = router.step()
        router.mark_sent([o.key for o in out])  # the broker's PUBACKs
        sent.extend(json.loads(o.payload) for o in out)

    items = transitions(store, states, t0)
    i = 0
    for size in sizes:
        batch = items[i:i + size]
        i += size
        clock.now = batch[-1][1] + 0.5  # committed half a second after its last transition
        with db.transaction() as tx:
            alerts.record(tx, [env for env, _ in batch], clock.now)
        step()
    clock.now += POLICY.stable_s + 1
    step()
    with db.read() as tx:
        tx.execute("SELECT COUNT(*) FROM feed WHERE store = ? AND status NOT IN"
                   " ('sent', 'superseded')", (store,))
        assert tx.fetchone()[0] == 0, "every row sent or superseded once the flap is stable"
    return [m for m in sent if m["store"] == store]


def expected(states: str, sizes: tuple[int, ...]) -> list[tuple[str, bool]]:
    """(state, flapping marker) of each feed message, from the rule in docs/protocol.md:
    batches committed while the alert has at most max_flaps transitions in the window go out
    as they are; once it has more, what is pending is held until stable and collapsed into its
    latest state, which is sent with the `flapping` marker even when that state is the one
    last sent (the feed learns the alert flapped), unless the alert ends cleared and the feed
    never showed it."""
    out: list[tuple[str, bool]] = []
    done = 0
    for size in sizes:
        if done + size > POLICY.max_flaps:
            break
        out += [(STATE[c], False) for c in states[done:done + size]]
        done += size
    if done < len(states) and (out or states[-1] == "R"):
        out.append((STATE[states[-1]], True))
    return out


@pytest.fixture
def db(hub_db):
    store = open_store(hub_db, migrations=MIGRATIONS)
    yield store
    store.close()


@pytest.mark.parametrize("states", SEQUENCES.values(), ids=SEQUENCES.keys())
def test_every_batch_split_of_a_flap_tells_the_feed_the_same_story(db, states):
    flaps = len(states) > POLICY.max_flaps
    for n, sizes in enumerate(splits(len(states))):
        store = f"s-{states}-{n}"
        sent = run(db, store, states, sizes, t0=1.8e9 + n * 10 * POLICY.window_s)
        case = f"{states} cut as {sizes}: {[(m['state'], bool(m['flapping'])) for m in sent]}"

        assert [(m["state"], bool(m["flapping"])) for m in sent] == expected(states, sizes), case
        # Whatever the split: the feed ends in the alert's final state (nothing sent counts as
        # cleared), messages come in seq order, never more than max_flaps + 1 of them, and a
        # state repeats only to say the alert flapped.
        final = sent[-1]["state"] if sent else "cleared"
        assert final == STATE[states[-1]], case
        assert [m["seq"] for m in sent] == sorted(m["seq"] for m in sent), case
        assert len(sent) <= POLICY.max_flaps + 1, case
        assert all(a["state"] != b["state"] or b["flapping"] for a, b in zip(sent, sent[1:])), \
            case
        if flaps and sent:
            assert sent[-1]["flapping"] == {"transitions": len(states),
                                            "window_s": POLICY.window_s}, case
        if flaps and states[-1] == "R":
            assert sent and sent[-1]["flapping"], f"the feed never learned it flapped: {case}"
        if not flaps:
            assert [m["state"] for m in sent] == [STATE[c] for c in states], case
            assert not any(m["flapping"] for m in sent), case


def test_the_split_table_covers_every_split():
    assert sorted(splits(3)) == [(1, 1, 1), (1, 2), (2, 1), (3,)]
    assert len(set(splits(8))) == 2 ** 7
