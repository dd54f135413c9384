"""The agent's controller inside a real Agent (its state database, outbox and scheduler; no
broker): refusals beyond the hourly report budget are counted but not reported one by one; a
bundle that arrives during trading hours waits for them to end unless it is urgent; messages
are acknowledged only once recorded; commands and bundles wanted before a stop are taken up
again after the restart."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
from datetime import datetime

import pytest

from controlkit import forge, signed_command
from wait import wait_until
from edge_agent.agent import Agent
from edge_agent.config import load_config
from edge_protocol import bundles
from hub.keys import KeyRing


class InProcess:
    """A real Agent on an event loop in a background thread (sync off)."""

    def __init__(self, tmp_path, ring, control: str, clock=None):
        keys = ", ".join(f'"{k}"' for k in ring.public_keys().values())
        self.config = tmp_path / "agent.toml"
        self.config.write_text(
            f'[agent]\nstore = "store-0001"\nregion = "eu-west"\nstate_dir = "{tmp_path}/s"\n'
            f"[scoring]\nenabled = false\n[trust]\nhub_keys = [{keys}]\n[control]\n{control}\n"
            '[[devices]]\nid = "register"\nkind = "host"\ninterval = 0.5\n')
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.agent = Agent(load_config(self.config), self.config)
        if clock is not None:  # the controller's wall clock from its start (trading hours)
            self.agent.control.clock = clock
        self.call(self.agent.start())
        deadline = time.monotonic() + 30
        while not self.agent.control.ready:
            assert time.monotonic() < deadline, "the controller did not start"
            time.sleep(0.02)

    def call(self, coro, timeout: float = 30.0):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def outbox_results(self) -> list[dict]:
        db = sqlite3.connect(self.agent.config.state_path)
        try:
            rows = db.execute("SELECT payload FROM outbox WHERE kind = 'cmd_result' ORDER BY seq")
            return [json.loads(p)["body"] for (p,) in rows]
        finally:
            db.close()

    def close(self) -> None:
        self.call(self.agent.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture
def ring(tmp_path):
    return KeyRing.init(tmp_path / "keys")


def test_refusals_past_the_hourly_budget_are_counted_not_reported_one_by_one(tmp_path, ring):
    a = InProcess(tmp_path, ring, "rejects_reported_per_hour = 2")
    try:
        for seq in range(1, 6):
            payload = json.dumps(forge(signed_command(ring, seq=seq))).encode()
            assert a.call(a.agent.control.handle_command(payload)) == "bad_signature"
        results = a.outbox_results()
        assert len(results) == 2
        assert [r["rejects"]["bad_signature"] for r in results] == [1, 2]
        assert all(r["status"] == "rejected" and r["verified"] is False for r in results)
        # The next report (a valid command's result) carries every refusal counted.
        ok = json.dumps(signed_command(ring, seq=9, device="register", action="repoll")).encode()
        assert a.call(a.agent.control.handle_command(ok)) == "done"
        assert a.outbox_results()[-1]["rejects"] == {"bad_signature": 5}
    finally:
        a.close()


def _local(hour: int, minute: int = 0) -> float:
    now = datetime.now()
    return now.replace(hour=hour, minute=minute, second=0, microsecond=0).timestamp()


def desired(ring, sha_manifest: dict, version: int, urgent: bool) -> bytes:
    doc = ring.sign_document(bundles.desired_doc(
        store="store-0001", region="eu-west", version=version, issued=time.time(),
        urgent=urgent, bundles={"model": None,
                                "config": {"manifest": sha_manifest, "rollback": False}}))
    return json.dumps(doc).encode()


def config_bundle(ring, text: str, version: int) -> tuple[dict, bytes]:
    data = bundles.content("config", {"agent.toml": text.encode()})
    m = ring.sign_document(bundles.manifest(kind="config", name="agent", version=version,
                                            data=data, issued=time.time(),
                                            expires=time.time() + 3 * 86400))
    return m, data


@pytest.mark.parametrize("urgent", [False, True])
def test_a_bundle_waits_for_trading_hours_to_end_unless_urgent(tmp_path, ring, urgent):
    a = InProcess(tmp_path, ring, 'trading_hours = "08:00-21:00"')
    control = a.agent.control
    try:
        control.clock = lambda: _local(12)  # trading
        text = a.config.read_text() + '\n[[devices]]\nid = "till-2"\nkind = "host"\n'
        m, data = config_bundle(ring, text, 1)
        assert a.call(control.bundles.handle_desired(desired(ring, m, 1, urgent))) == "accepted"
        got = a.call(control.bundles.handle_content(m["sha256"], data))
        if urgent:
            assert got == "applied" and "till-2" in a.config.read_text()
            return
        assert got == "deferred" and "till-2" not in a.config.read_text()
        a.call(control.bundles.apply_deferred())  # still trading: nothing
        assert "till-2" not in a.config.read_text()
        control.clock = lambda: _local(22)  # closed
        a.call(control.bundles.apply_deferred())
        assert "till-2" in a.config.read_text()
        assert a.outbox_results()[-1]["status"] == "applied"
    finally:
        a.close()


# Acknowledgement (docs/commands.md, "Delivery"): a message's receipt is marked done, which
# lets the sync client send its PUBACK, only once the controller has committed it.

class Receipt:
    """What the sync client hands the controller with a message (edge_agent/sync/acks.py);
    done() looks at the state database, from another connection, at the moment it is called."""

    def __init__(self, look=None):
        self.look = look
        self.state: str | None = None
        self.seen = None

    def done(self) -> None:
        self.seen = self.look() if self.look else None
        self.state = self.state or "done"

    def fail(self) -> None:
        self.state = self.state or "failed"


def _read(a, sql: str, *args):
    db = sqlite3.connect(f"file:{a.agent.config.state_path}?mode=ro", uri=True, timeout=10)
    try:
        return db.execute(sql, args).fetchall()
    finally:
        db.close()


def _deliver(a, payload: bytes, receipt: Receipt, dup: bool = False, kind: str = "cmd") -> None:
    from edge_protocol import topics

    ctl = a.agent.control
    if kind.startswith("content:"):  # the bundle whose SHA-256 follows
        topic = topics.bundle_topic(kind.split(":", 1)[1], ctl.prefix)
    else:
        topic = {"cmd": topics.cmd_topic, "flags": topics.flags_topic,
                 "desired": topics.config_topic}[kind](ctl.region, ctl.store, ctl.prefix)
    a.loop.call_soon_threadsafe(lambda: ctl.on_message(topic, payload, receipt=receipt, dup=dup))
    wait_until(lambda: receipt.state, what="the receipt to be done or failed")


def test_a_command_is_acknowledged_only_after_it_is_committed_taken_and_pending(tmp_path, ring):
    a = InProcess(tmp_path, ring, "")
    try:
        doc = signed_command(ring, seq=3, device="register", action="repoll")
        r = Receipt(lambda: (_read(a, "SELECT id, seq FROM control_seen"),
                             _read(a, "SELECT value FROM meta WHERE key = 'control.high_seq'")))
        _deliver(a, json.dumps(doc).encode(), r)
        assert r.state == "done"
        assert r.seen == ([(doc["id"], 3)], [("3",)])
        wait_until(lambda: [b for b in a.outbox_results() if b["command"] == doc["id"]],
                   what="the command's result")
        assert a.agent.control.executed["repoll"] == 1
        assert _read(a, "SELECT value FROM meta WHERE key = 'control.pending'") == [("[]",)]
        # A refusal is acknowledged after it is counted (and its report committed).
        r2 = Receipt(lambda: _read(a, "SELECT count FROM control_rejects"
                                      " WHERE reason = 'bad_signature'"))
        _deliver(a, json.dumps(forge(signed_command(ring, seq=4))).encode(), r2)
        assert r2.state == "done" and r2.seen == [(1,)]
        # Flags: acknowledged after the document is saved.
        flags = ring.sign_document({"v": 1, "type": "flags", "store": "store-0001",
                                    "version": 1, "flags": {"scoring": False},
                                    "issued": "2026-12-01T00:00:00Z"})
        r3 = Receipt(lambda: _read(a, "SELECT value FROM meta WHERE key = 'control.flags'"))
        _deliver(a, json.dumps(flags).encode(), r3, kind="flags")
        assert r3.state == "done" and '"scoring":false' in r3.seen[0][0]
    finally:
        a.close()


def test_a_redelivered_copy_of_a_taken_command_runs_once_and_reports_once(tmp_path, ring):
    a = InProcess(tmp_path, ring, "")
    try:
        payload = json.dumps(signed_command(ring, seq=5, device="register",
                                            action="repoll")).encode()
        assert a.call(a.agent.control.handle_command(payload)) == "done"
        # The broker's copy (DUP: it had no PUBACK): acknowledged, not run, not refused.
        r = Receipt()
        _deliver(a, payload, r, dup=True)
        assert r.state == "done"
        assert a.agent.control.redelivered == 1
        # The same bytes published again (no DUP) are a replay: refused and counted.
        assert a.call(a.agent.control.handle_command(payload)) == "replayed_id"
        results = a.outbox_results()
        assert [b["status"] for b in results] == ["done", "rejected"]
        assert a.agent.control.executed["repoll"] == 1
        assert dict(_read(a, "SELECT reason, count FROM control_rejects")) == {"replayed_id": 1}
        # A DUP copy of a command never seen is an ordinary first delivery.
        fresh = json.dumps(signed_command(ring, seq=6, device="register",
                                          action="repoll")).encode()
        assert a.call(a.agent.control.handle_command(fresh, dup=True)) == "done"
    finally:
        a.close()


def test_a_command_that_cannot_be_recorded_is_not_acknowledged_and_runs_once_later(tmp_path,
                                                                                   ring):
    a = InProcess(tmp_path, ring, "")
    try:
        a.call(a.agent._db(lambda db: db.execute("PRAGMA busy_timeout = 50"), a.agent.db))
        payload = json.dumps(signed_command(ring, seq=7, device="register",
                                            action="repoll")).encode()
        lock = sqlite3.connect(a.agent.config.state_path, timeout=10)
        lock.execute("BEGIN IMMEDIATE")  # another writer holds the database
        try:
            r = Receipt()
            _deliver(a, payload, r)
        finally:
            lock.execute("ROLLBACK")
            lock.close()
        assert r.state == "failed"  # no PUBACK: the client drops the link, the broker resends
        assert _read(a, "SELECT id FROM control_seen") == []
        assert a.agent.control.executed["repoll"] == 0
        again = Receipt()
        _deliver(a, payload, again, dup=True)  # the broker's copy on the next connection
        assert again.state == "done"
        wait_until(lambda: a.outbox_results(), what="the command's result")
        assert [b["status"] for b in a.outbox_results()] == ["done"]
        assert a.agent.control.executed["repoll"] == 1
    finally:
        a.close()


def test_pending_commands_run_after_a_restart_and_started_ones_are_reported_interrupted(
        tmp_path, ring):
    from edge_agent.control import _command_doc
    from edge_agent.control import state as cstate
    from edge_protocol import commands as proto

    a = InProcess(tmp_path, ring, "")
    a.close()
    path = a.agent.config.state_path
    cmds = []
    for seq, action in ((11, "repoll"), (12, "diagnostics")):
        doc = signed_command(ring, seq=seq, device="register", action=action)
        cmds.append(proto.check_command(json.dumps(doc).encode(), store="store-0001",
                                        trusted=_trusted(ring), now=time.time()))
    db = sqlite3.connect(path, isolation_level=None)
    try:
        for cmd in cmds:
            assert cstate.consume(db, cmd.id, cmd.seq, cmd.expires, time.time(),
                                  {"cmd": _command_doc(cmd), "started": False}) is None
        # The first was running when the agent died; the second never started.
        cstate.start_pending(db, cmds[0].id)
    finally:
        db.close()
    b = InProcess(tmp_path, ring, "")
    try:
        wait_until(lambda: len(b.outbox_results()) == 2, what="both results after the start")
        by_id = {r["command"]: r for r in b.outbox_results()}
        assert (by_id[cmds[0].id]["status"], by_id[cmds[0].id]["reason"]) == \
            ("failed", "interrupted")
        assert by_id[cmds[1].id]["status"] == "done"
        assert b.agent.control.executed == {"diagnostics": 1}
        assert _read(b, "SELECT value FROM meta WHERE key = 'control.pending'") == [("[]",)]
    finally:
        b.close()


def _trusted(ring) -> dict:
    from edge_protocol import signing

    return signing.trusted_keys(list(ring.public_keys().values()))


# Bundles wanted and not applied (docs/rollout.md, "A stop between the desired state and the
# swap"): recorded with the desired state, sought again after a restart, applied without a new
# desired version.

def _bundles_meta(a) -> dict:
    rows = _read(a, "SELECT value FROM meta WHERE key = 'control.bundles'")
    return json.loads(rows[0][0]) if rows else {}


def _status(a) -> tuple[dict, str]:
    """`edge-agent status` (its --json document's control part, and its text) from the disk."""
    from edge_agent.cli.status import collect, control_line

    config = load_config(a.config)
    doc = collect(config)
    return doc["control"], control_line(doc["control"], config)


def _with_device(a, name: str) -> str:
    return a.config.read_text() + f'\n[[devices]]\nid = "{name}"\nkind = "host"\n'


def test_a_bundle_wanted_when_the_agent_stopped_is_fetched_and_applied_after_the_restart(
        tmp_path, ring, caplog):
    from edge_protocol import topics

    a = InProcess(tmp_path, ring, "")
    m, data = config_bundle(ring, _with_device(a, "till-2"), 1)
    content_topic = topics.bundle_topic(m["sha256"], a.agent.control.prefix)
    retained = desired(ring, m, 4, urgent=False)
    try:
        # The desired state is acknowledged once the bundle it names is recorded as wanted.
        r = Receipt(lambda: _bundles_meta(a))
        _deliver(a, retained, r, kind="desired")
        assert r.state == "done"
        assert r.seen["desired_version"] == 4
        assert r.seen["wanted"]["config"]["sha256"] == m["sha256"]
        assert "config" not in r.seen  # nothing applied
        assert content_topic in a.agent.control.topics(a.agent.control.prefix)
    finally:
        a.close()  # stopped before the content arrives
    control, text = _status(a)
    assert control["desired_version"] == 4 and control["bundles"]["config"] is None
    wanted = control["wanted"]["config"]
    assert (wanted["version"], wanted["sha256"], wanted["desired_version"]) == \
        (1, m["sha256"], 4)
    assert wanted["staged"] is None and "manifest" not in wanted
    assert f"bundle config v1 ({m['sha256'][:12]}) wanted (desired state v4)" in text
    assert "waiting for its content" in text

    b = InProcess(tmp_path, ring, "")
    try:
        ctl = b.agent.control
        # Sought again: asked for at start, and subscribed on every connection from now on.
        assert content_topic in ctl.topics(ctl.prefix)
        assert ctl.bundles.wanted["config"].asks >= 1
        assert any("fetching it again" in rec.getMessage() for rec in caplog.records)
        # The retained desired state again (same version): nothing new, and still wanted.
        again = Receipt()
        _deliver(b, retained, again, kind="desired")
        assert again.state == "done"
        assert b.call(ctl.bundles.handle_desired(retained)) == "unchanged"
        assert "config" in _bundles_meta(b)["wanted"]
        # The content (the retained copy the subscription brings): applied, and acknowledged
        # once applied and recorded, with no new desired version.
        got = Receipt(lambda: _bundles_meta(b))
        _deliver(b, data, got, kind=f"content:{m['sha256']}")
        assert got.state == "done"
        assert got.seen["wanted"] == {} and got.seen["config"]["version"] == 1
        assert got.seen["desired_version"] == 4
        assert "till-2" in b.config.read_text()
        assert content_topic not in ctl.topics(ctl.prefix)
        applied = [r for r in b.outbox_results() if r["type"] == "bundle"]
        assert [(r["status"], r["bundle_version"]) for r in applied] == [("applied", 1)]
        control, text = _status(b)
        assert control["wanted"] == {} and control["bundles"]["config"]["version"] == 1
        assert "wanted" not in text and "bundles: config v1" in text
    finally:
        b.close()



@pytest.mark.parametrize("damaged", [False, True])
def test_a_bundle_staged_for_after_trading_hours_survives_a_restart(tmp_path, ring, damaged):
    """Content staged during trading hours (acknowledged as deferred) is applied after them by
    the next start, from its staged copy; a staged copy that no longer matches its manifest is
    fetched again instead."""
    from edge_protocol import topics

    hours = 'trading_hours = "08:00-21:00"'
    a = InProcess(tmp_path, ring, hours, clock=lambda: _local(12))
    m, data = config_bundle(ring, _with_device(a, "till-2"), 1)
    try:
        ctl = a.agent.control
        assert a.call(ctl.bundles.handle_desired(desired(ring, m, 1, False))) == "accepted"
        assert a.call(ctl.bundles.handle_content(m["sha256"], data)) == "deferred"
        staged = _bundles_meta(a)["wanted"]["config"]["staged"]
        assert staged and "till-2" not in a.config.read_text()
    finally:
        a.close()
    assert "staged, applies after trading hours" in _status(a)[1]
    if damaged:
        (tmp_path / staged / "agent.toml").write_text("[agent]\n")
    b = InProcess(tmp_path, ring, hours, clock=lambda: _local(12))
    try:
        ctl = b.agent.control
        content_topic = topics.bundle_topic(m["sha256"], ctl.prefix)
        if damaged:
            assert ctl.bundles.wanted["config"].staged is None
            assert content_topic in ctl.topics(ctl.prefix)  # fetched again
            assert b.call(ctl.bundles.handle_content(m["sha256"], data)) == "deferred"
        else:
            assert ctl.bundles.wanted["config"].staged == staged
            assert content_topic not in ctl.topics(ctl.prefix)  # nothing to fetch
        b.call(ctl.bundles.apply_deferred())  # still trading
        assert "till-2" not in b.config.read_text()
        ctl.clock = lambda: _local(22)
        b.call(ctl.bundles.apply_deferred())
        assert "till-2" in b.config.read_text()
        assert _bundles_meta(b)["wanted"] == {}
        assert _bundles_meta(b)["config"]["version"] == 1
        assert [r["status"] for r in b.outbox_results() if r["type"] == "bundle"] == ["applied"]
    finally:
        b.close()


def test_a_newer_desired_state_replaces_the_bundle_still_wanted_of_its_kind(tmp_path, ring):
    """Wanted v1, then a desired state naming v2 before v1's content came: v1's content is no
    longer applied when it arrives (it would go backwards after v2), v2's is."""
    a = InProcess(tmp_path, ring, "")
    try:
        ctl = a.agent.control
        m1, d1 = config_bundle(ring, _with_device(a, "till-2"), 1)
        m2, d2 = config_bundle(ring, _with_device(a, "till-3"), 2)
        assert a.call(ctl.bundles.handle_desired(desired(ring, m1, 1, False))) == "accepted"
        assert a.call(ctl.bundles.handle_desired(desired(ring, m2, 2, False))) == "accepted"
        assert _bundles_meta(a)["wanted"]["config"]["version"] == 2
        assert a.call(ctl.bundles.handle_content(m1["sha256"], d1)) == "unwanted"
        assert a.call(ctl.bundles.handle_content(m2["sha256"], d2)) == "applied"
        text = a.config.read_text()
        assert "till-3" in text and "till-2" not in text
    finally:
        a.close()


def test_a_start_asks_for_a_wanted_bundle_a_bounded_number_of_times(tmp_path, ring):
    """The content does not come: the agent asks again on a backoff (its clock set by the
    test), at most FETCH_TRIES times, and its status says so."""
    from edge_agent.control.state import FETCH_TRIES

    a = InProcess(tmp_path, ring, "")
    try:
        ctl = a.agent.control
        now = [0.0]
        ctl.bundles.mono = lambda: now[0]
        m, _ = config_bundle(ring, _with_device(a, "till-2"), 1)
        assert a.call(ctl.bundles.handle_desired(desired(ring, m, 1, False))) == "accepted"
        assert ctl.bundles.wanted["config"].asks == 1
        a.call(ctl.bundles.ask_again())  # not due yet
        assert ctl.bundles.wanted["config"].asks == 1
        gaps = []
        for _ in range(FETCH_TRIES + 3):
            due = ctl.bundles.wanted["config"].next_ask
            gaps.append(due - now[0])
            now[0] = due
            a.call(ctl.bundles.ask_again())
        assert ctl.bundles.wanted["config"].asks == FETCH_TRIES
        assert gaps[:4] == [30.0, 60.0, 120.0, 240.0] and max(gaps) == 900.0
        assert _bundles_meta(a)["wanted"]["config"]["asks"] == FETCH_TRIES
        assert f"asked {FETCH_TRIES} times; asks again on the next connection" in _status(a)[1]
    finally:
        a.close()


def test_a_wanted_bundle_whose_manifest_expired_during_a_stop_is_refused_at_the_start(
        tmp_path, ring):
    a = InProcess(tmp_path, ring, "")
    try:
        m, _ = config_bundle(ring, _with_device(a, "till-2"), 1)  # expires in 3 days
        assert a.call(a.agent.control.bundles.handle_desired(
            desired(ring, m, 1, False))) == "accepted"
    finally:
        a.close()
    b = InProcess(tmp_path, ring, "", clock=lambda: time.time() + 4 * 86400)
    try:
        assert b.agent.control.bundles.wanted == {}
        assert _bundles_meta(b)["wanted"] == {}
        (r,) = [r for r in b.outbox_results() if r["type"] == "bundle"]
        assert (r["status"], r["reason"], r["bundle_version"], r["sha256"]) == \
            ("rejected", "expired", 1, m["sha256"])
    finally:
        b.close()


def test_a_staged_bundle_whose_apply_keeps_raising_is_given_up_after_a_few_rounds(tmp_path,
                                                                                  ring, caplog):
    from edge_agent.control.bundles import APPLY_TRIES

    a = InProcess(tmp_path, ring, 'trading_hours = "08:00-21:00"', clock=lambda: _local(12))
    try:
        ctl = a.agent.control
        m, data = config_bundle(ring, _with_device(a, "till-2"), 1)
        assert a.call(ctl.bundles.handle_desired(desired(ring, m, 1, False))) == "accepted"
        assert a.call(ctl.bundles.handle_content(m["sha256"], data)) == "deferred"
        staged = ctl.bundles.wanted["config"].staged
        (tmp_path / staged / "agent.toml").unlink()  # the staged copy lost under the agent
        ctl.clock = lambda: _local(22)
        for _ in range(APPLY_TRIES):  # (the worker's own rounds may take some of these)
            a.call(ctl.bundles.apply_deferred())
        assert ctl.bundles.wanted == {} and _bundles_meta(a)["wanted"] == {}
        raised = [r for r in caplog.records if r.getMessage().startswith(
            "staged bundle could not be applied")]
        assert len(raised) == APPLY_TRIES
        (r,) = [r for r in a.outbox_results() if r["type"] == "bundle"]
        assert (r["status"], r["reason"]) == ("failed", "error")
        assert "till-2" not in a.config.read_text()
    finally:
        a.close()
