"""The hold (issue 15): a hub whose database is down tells the stores to keep their rows.

While `edge-hub serve` runs on a database that is down, its writer cannot commit; what stores
send waits, acknowledged by the broker, in the broker's bounded queue for the hub's session,
and past `max_queued_messages` Mosquitto drops messages the stores have already deleted. The
hub now says `online: false` with reason "database" once its writer has not committed for
`[ingest] hold_stores_after` seconds, and online again at its next commit; the agent's gate
holds the outbox meanwhile.

The end-to-end test runs a real Mosquitto (with the packaged queue bounds), a real agent
process and a real hub process on a private PostgreSQL server (tests/support/pgcluster.py;
the machine's shared server is never touched), stops the server under the running hub and
starts it again; every verdict waits on a real signal (the hub's state on the broker, the
agent's status and outbox, rows at the hub), never on a delay.

The rule for several workers sharing the one retained state is checked on its own below, on
a broker of the test's that delivers every publication to every worker in one order of the
test's choosing (hub.app.Hub's docstring; docs/sync.md, "Several workers").
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from types import SimpleNamespace

import psycopg
import pytest

import edge_protocol as wire
from agentproc import AgentProcess, outbox_rows, read_only
from brokers import Mosquitto
from hub.app import HOLD_REASON, Hub, open_store
from hub.ingest import Settings
from hubkit import HubProcess, Subscriber
from pgcluster import private_pg  # noqa: F401  (the fixture)
from testenv import ROOT, run_cli
from wait import wait_until

STORE, REGION = "store-hold", "r1"
TEMPLATE = ROOT / "packaging" / "mosquitto" / "mosquitto.conf.template"


def packaged_queue_bounds() -> str:
    """The packaged broker config's queue bounds, as lines for the test broker."""
    lines = [line for line in TEMPLATE.read_text().splitlines()
             if re.match(r"max_queued_(messages|bytes) \d+$", line)]
    assert len(lines) == 2, lines
    return "\n".join(lines)


def agent_toml(state_dir: Path, port: int) -> str:
    return (f'[agent]\nstore = "{STORE}"\nregion = "{REGION}"\nstate_dir = "{state_dir}"\n\n'
            "[telemetry]\nflush_interval = 0.05\n\n[scoring]\nenabled = false\n\n"
            f'[sync]\nenabled = true\nhost = "127.0.0.1"\nport = {port}\ntls = false\n'
            "connect_timeout = 5.0\nreconnect_min = 0.5\nreconnect_max = 2.0\n\n"
            '[[devices]]\nid = "register"\nkind = "host"\ninterval = 0.05\n')


def hub_rows(url: str) -> list[tuple[int, str]] | None:
    """(seq, id) of the store's outbox rows at the hub, one entry a row (None while the
    server is down)."""
    try:
        with psycopg.connect(url, connect_timeout=5) as conn:
            return [(r[0], r[1]) for r in conn.execute(
                "SELECT seq, id FROM messages WHERE store = %s"
                " AND kind NOT IN ('birth', 'death')", (STORE,))]
    except psycopg.OperationalError:
        return None


def hub_seqs(url: str) -> list[int] | None:
    rows = hub_rows(url)
    return None if rows is None else [seq for seq, _ in rows]


def last_seq(state_db: Path) -> int:
    db = read_only(state_db)
    try:
        row = db.execute("SELECT value FROM meta WHERE key = 'last_seq'").fetchone()
        return int(row[0]) if row else 0
    finally:
        db.close()


def test_a_hub_whose_database_is_down_holds_the_stores_and_loses_nothing(private_pg,
                                                                         tmp_path):
    broker = Mosquitto(tmp_path / "broker", extra_conf=packaged_queue_bounds()).start()
    url = private_pg.create_database("hub")
    open_store(url).close()  # the schema, before the hub and its server's outage
    hub_conf = tmp_path / "hub.toml"
    hub_conf.write_text("[ingest]\nhold_stores_after = 1.0\n")
    hub = HubProcess(broker, url, "hub-hold", "--config", str(hub_conf),
                     "--commit-give-up", "3600", log_path=tmp_path / "hub.log").start()
    state = Subscriber(broker, wire.hub_state_topic())
    state_dir = tmp_path / "state"
    config = tmp_path / "agent.toml"
    config.write_text(agent_toml(state_dir, broker.port))
    state_db = state_dir / "agent.db"
    agent = None

    def sync_status() -> dict:
        out = run_cli("status", "--config", str(config), "--json")
        return json.loads(out.stdout)["sync"] if out.returncode == 0 else {}

    def logs() -> str:
        agent_log = tmp_path / "agent.log"
        return (f"hub log:\n{hub.log()[-2500:]}\nagent log:\n"
                f"{agent_log.read_text(errors='replace')[-2500:] if agent_log.exists() else ''}"
                f"\nbroker log:\n{broker.log()[-1000:]}")

    try:
        hub.wait_connected()
        agent = AgentProcess(config, tmp_path / "agent.log")
        agent.wait_ready()
        wait_until(lambda: len(hub_seqs(url) or []) >= 10, what="rows at the hub",
                   detail=logs)
        assert state_db.exists()

        private_pg.stop("immediate")  # the server crashes under the running hub
        seen = len(state.bodies())
        held = wait_until(lambda: [b for b in state.bodies()[seen:] if b["online"] is False],
                          what="the hub's state saying not accepting", gone=hub._gone,
                          detail=logs)[0]
        assert held["reason"] == HOLD_REASON and held["worker"] == "hub-hold"
        wait_until(lambda: sync_status().get("hub_online") is False,
                   what="the agent's status: hub not live", detail=logs)
        assert sync_status()["connected"] is True
        # The agent stops draining: its outbox keeps what it commits from now on.
        start = last_seq(state_db)
        rows = wait_until(lambda: (r := outbox_rows(state_db)) and
                          len([s for s in r if s > start]) >= 20 and r,
                          what="the outbox keeping 20 new rows", gone=agent._gone,
                          detail=logs)
        assert all(s in rows for s in range(start + 1, max(rows) + 1)), "rows left the outbox"

        private_pg.start()
        seen = len(state.bodies())
        wait_until(lambda: any(b["online"] for b in state.bodies()[seen:]),
                   what="the hub's state online again", gone=hub._gone, detail=logs)
        wait_until(lambda: sync_status().get("hub_online") is True,
                   what="the agent's status: hub online", detail=logs)
        wait_until(lambda: not any(s <= max(rows) for s in outbox_rows(state_db)),
                   what="the held rows sent", gone=agent._gone, detail=logs)
    finally:
        if agent is not None:
            assert agent.stop() == 0
    try:
        left = outbox_rows(state_db)  # rows whose PUBACK the agent had not seen when it stopped
        committed = last_seq(state_db)
        expected = set(range(1, committed + 1)) - set(left)
        wait_until(lambda: expected <= set(hub_seqs(url) or []),
                   what="every row sent at the hub", gone=hub._gone, detail=logs)
        rows = hub_rows(url)
        seqs = [seq for seq, _ in rows]
        assert len(seqs) == len(set(seqs)), "a row twice at the hub"
        assert set(seqs) <= set(range(1, committed + 1))
        # A row still in the outbox may have reached the hub (its PUBACK not yet seen): with
        # the outbox's id, so its next sending is dropped there as a duplicate.
        for seq, env_id in rows:
            if seq in left:
                assert env_id == left[seq][0], seq
        assert hub.proc.poll() is None, "the hub exited"
        assert hub.terminate() == 0
        assert hub.stats()["holds"] >= 1
    finally:
        hub.kill()
        state.close()
        broker.kill()
    log = hub.log()
    assert "Traceback" not in log
    assert "commits go through again" in log
    # Nothing dropped at the broker (Mosquitto says so at notice level when a queue is full).
    assert "dropped" not in broker.log().lower()
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM quarantine").fetchone() == (0,)


# The rule for several workers -------------------------------------------------------------

class Bus:
    """A broker of the test's: every publication on the state topic goes, in one order the
    test picks, to every worker (itself included), and is kept as the retained state."""

    def __init__(self, rng: random.Random | None = None):
        self.rng = rng or random.Random(0)
        self.queue: list[bytes] = []
        self.lane_queue: list[bytes] = []  # the priority lane's: its own order against queue
        self.retained: dict | None = None
        self.workers: list[Hub] = []
        # Onlines a worker said over another's hold it had seen, other than on (re)connecting
        # (the one case the rule allows): each would let stores drain for a moment.
        self.over_holds = 0
        self.connecting = False

    def add(self, hub: Hub) -> Hub:
        def publisher(queue: list[bytes]):
            def publish(topic, payload, qos, retain):
                if (wire.decode_hub_state(payload)["online"] and hub._other_holds()
                        and not self.connecting):
                    self.over_holds += 1
                queue.append(payload)
            return publish

        hub.ingest.client.publish = publisher(self.queue)
        if hub.ingest.lane is not None:  # a hold goes out on both lanes
            hub.ingest.lane.publish = publisher(self.lane_queue)
        hub.ingest.client.subscribe = lambda *a, **k: None
        self.workers.append(hub)
        return hub

    def connect(self, hub: Hub) -> None:
        self.connecting = True
        try:
            hub._connected(hub.ingest)  # the bulk lane connected
            hub._ready(hub.ingest)      # and every lane's SUBACK came: the hub says its state
        finally:
            self.connecting = False

    def pending(self) -> int:
        return len(self.queue) + len(self.lane_queue)

    def deliver_one(self) -> None:
        queues = [q for q in (self.queue, self.lane_queue) if q]
        payload = self.rng.choice(queues).pop(0)
        self.retained = wire.decode_hub_state(payload)
        for hub in self.workers:
            hub._on_state(hub.ingest.client, None,
                          SimpleNamespace(payload=payload, qos=0, mid=0))

    def settle(self, bound: int = 200) -> int:
        n = 0
        while self.pending():
            self.deliver_one()
            n += 1
            assert n < bound, "the workers' states never settle"
        return n


@pytest.fixture(scope="module")
def idle_db(tmp_path_factory):
    """A database for workers that never commit (their states are what is tested)."""
    db = open_store(str(tmp_path_factory.mktemp("hold") / "hub.db"))
    yield db
    db.close()


def _worker(db, name: str) -> Hub:
    return Hub(db, Settings(host="127.0.0.1", port=1, client_id=name))


def _hold(hub: Hub) -> None:
    hub._hold(9.0, hub.ingest.committed)


def _release(hub: Hub) -> None:
    hub.ingest.committed += 1  # the writer committed a batch
    hub._release()


def test_workers_sharing_the_state_never_release_another_workers_hold(idle_db):
    """Random holds, releases, births answered and (re)connections of three workers, the bus
    delivering in between at random (300 seeded runs): once it settles, the retained state
    is a hold exactly while some worker holds, and online when none does."""
    for seed in range(300):
        rng = random.Random(seed)
        bus = Bus(rng)
        workers = [bus.add(_worker(idle_db, f"w{i}")) for i in range(3)]
        for w in workers:
            bus.connect(w)
        for _ in range(40):
            w = rng.choice(workers)
            action = rng.choice(("hold", "release", "connect", "birth", "deliver", "deliver"))
            if action == "hold" and not w.held:
                _hold(w)
            elif action == "release" and w.held:
                _release(w)
            elif action == "connect":
                bus.connect(w)
            elif action == "birth":
                w._say_state()  # a birth's answer (what _birth_seen runs, now or on its timer)
            for _ in range(rng.randint(0, bus.pending())):
                bus.deliver_one()
            if rng.random() < 0.3:
                bus.settle()
                check(bus, workers, seed)
        bus.settle()
        check(bus, workers, seed)
        for w in workers:  # the database back for all
            if w.held:
                _release(w)
                for _ in range(rng.randint(0, bus.pending())):
                    bus.deliver_one()
        bus.settle()
        assert bus.retained["online"] is True, (seed, bus.retained)
        assert bus.over_holds == 0, seed


def check(bus: Bus, workers: list[Hub], seed: int) -> None:
    holding = [w.settings.client_id for w in workers if w.held]
    state = bus.retained
    if holding:
        assert state["online"] is False and state.get("reason") == HOLD_REASON, \
            (seed, holding, state)
        assert state["worker"] in holding, (seed, holding, state)
    else:
        assert state["online"] is True, (seed, state)


def test_a_healthy_worker_does_not_answer_births_over_a_hold_but_answers_a_will(idle_db):
    bus = Bus()
    sick, well = bus.add(_worker(idle_db, "sick")), bus.add(_worker(idle_db, "well"))
    for w in (sick, well):
        w._connected(w.ingest)
        w._ready(w.ingest)
    bus.settle()
    _hold(sick)
    bus.settle()
    well._state_at = float("-inf")  # its last answer long ago: a birth is answered at once
    well._birth_seen()  # a store's birth: the healthy worker's answer must not say online
    assert bus.pending() == 0
    assert bus.retained["reason"] == HOLD_REASON and bus.retained["worker"] == "sick"
    # The sick worker dies: its Will (offline, no reason) goes out; the healthy one takes the
    # stores back.
    bus.workers.remove(sick)
    bus.queue.append(wire.encode_hub_state(False, "2026-12-05T11:00:00Z", "sick"))
    bus.settle()
    assert bus.retained["online"] is True and bus.retained["worker"] == "well"


def test_one_worker_holds_while_its_writer_stalls_and_says_online_at_its_next_commit(
        idle_db):
    """The watch thread (Hub._watch_commits) on the writer's attributes: stalled past
    hold_after_s -> the hold; the next commit -> online."""
    import threading
    import time

    bus = Bus()
    hub = bus.add(Hub(idle_db, Settings(host="127.0.0.1", port=1, client_id="one",
                                        hold_after_s=5.0)))
    hub._connected(hub.ingest)
    hub._ready(hub.ingest)
    bus.settle()
    hub.ingest.stalled_since = 100.0
    assert hub.ingest.stalled_s(now=104.9) < 5.0 <= hub.ingest.stalled_s(now=105.0)
    watcher = threading.Thread(target=hub._watch_commits, daemon=True)
    watcher.start()
    try:
        hub.ingest.stalled_since = time.monotonic() - 6.0  # a batch failing for 6 s
        wait_until(lambda: hub.held, what="the hold")
        bus.settle()
        assert bus.retained["online"] is False and bus.retained["reason"] == HOLD_REASON
        assert hub.ingest.counts["holds"] == 1
        hub.ingest.stalled_since = None  # the writer's next commit, as _write_loop records it
        hub.ingest.committed += 1
        wait_until(lambda: not hub.held, what="the release")
        bus.settle()
        assert bus.retained["online"] is True and "reason" not in bus.retained
        assert hub.ingest.counts["holds"] == 1
    finally:
        hub._watch_stop.set()
        watcher.join(5)
