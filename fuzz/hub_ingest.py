"""The hub's batch writer, through the decoder, on SQLite and on PostgreSQL (issue 15).

One input is one batch of MQTT messages from several stores: `batch()` reads the fuzzer's bytes
as choices (fuzz/draw.py) and builds each message's topic and payload, mostly well-formed
envelopes with fields taken at and across the protocol's bounds, sometimes raw or spliced bytes.
`check()` then does what a hub worker does with them (hub.ingest: the decoder of
hub.ingest.decode, with its fixed clock and the default skew, on the network thread; then
hub.ingest.writer.commit_or_split with the ticket rules of tickets.example.toml plugged in, as
`serve` does) against a real database, and checks, for every input:

- the writer never raises (commit_or_split raises only when the database itself is unusable,
  which it never is here);
- every accepted message (decoded into an envelope) is stored once, its payload kept as
  received, or quarantined with a reason; a second message with an id already stored counts
  as a duplicate; no accepted id is lost;
- every rejected message is counted under its reason code in the `rejects` table, exactly;
- the counts the writer returns add up to the batch (stored + duplicates + quarantined +
  rejected + ignored);
- the database stays usable: a valid message that follows commits and is stored.

State between inputs: one database for the process (schema made once). On SQLite (a file in a
temporary folder, tmpfs where there is one, WAL as in production) every table the writer
touches is emptied after each input. On PostgreSQL each input runs inside one outer transaction
that is rolled back afterwards: psycopg turns the writer's own transactions into savepoints,
which fail and roll back the same way, and nothing is left behind (nothing to delete, no commit
to wait for); the database is created once for the process (`fuzz_hub_<pid>_<hex>`) and
dropped at exit. libFuzzer ends its processes without running atexit: fuzz/campaign.py drops
those databases and removes those folders after a hub target's run.
"""

from __future__ import annotations

import atexit
import json
import os
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from fuzz.draw import Draw

ROOT = Path(__file__).resolve().parent.parent
FUZZ_CLOCK_EPOCH = 1796450400.0  # 2026-12-05T06:00:00Z, as fuzz.targets
PG_ADMIN = os.environ.get("FUZZ_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")
PG_PREFIX = "fuzz_hub_"
MAX_MESSAGES = 12


# Pools: the ordinary value first, then the edges ------------------------------------------

STORES = ("s1", "s2", "s3", "store-0001", "S1", "s1.", "a" * 64)
REGIONS = ("r1", "r2", "north")
IDS = ("01a244d8-6b78-775b-a6ec-b402c941ec71", "01a244d8-6b78-775b-a6ec-b402c941ec72",
       "01a244d8-6b78-775b-a6ec-b402c941ec73", "01a244d8-6b78-775b-a6ec-b402c941ec74")
DEVICES = ("p1", "p2", "d", "scanner-1", "a" * 64, "x.y:z-1", "P1")
KINDS = ("escpos", "scanner", "snmp", "host", "k" * 64)
WHATS = ("paper_out", "failed", "predicted_failure", "offline", "cover_open", "w" * 64)
INTS = (1, 0, 2, 7, 41, -1, 2**31 - 1, 2**31, 2**32, 2**53 - 1, 2**53, 2**53 + 1, 2**63 - 1,
        2**63, 2**64 - 1, 10**30, -2**63, -2**63 - 1, 1.0, True, "1", None, 3.5)
FLOATS = (0.5, 0.0, -0.0, 1.0, 0.78, 1e308, -1e308, 5e-324, 2**53 + 1, 2**63, 2**64, 10**400,
          float("nan"), float("inf"), None, True, "0.5", 1e-300)
TEXTS = ("ok", "", "a" * 200, "a" * 1000, "a" * 1001, "\x00", "\x1b[2J", "\u202e", "\ud800",
         "é", "\U0001F600" * 300, "'; DROP TABLE messages;--", "\\", "%s", "?", "\ufffe",
         "line\r\nforged", "\u0085", "\u2028")
SKEWED = (0.0, -60.0, -86400.0, 3599.0, 3601.0, -400 * 86400.0 + 1, -400 * 86400.0 - 1,
          -10 * 365 * 86400.0 + 1, -10 * 365 * 86400.0 - 1, 1e-3, -1e-3, 86400.0 * 365 * 73)
TS_FORMATS = ("{}.{:03d}Z", "{}Z", "{}.{:03d}+00:00", "{}.{:03d}+14:00", "{}.{:03d}-12:00",
              "{}.{:03d}000000Z", "{}.{:03d}z", "{}.{:03d}")
ODD_TS = ("not-a-time", "", "2099-01-01T00:00:00Z", "0001-01-01T00:00:00Z",
          "9999-12-31T23:59:59.999999Z", "2026-12-05T06:00:60Z", "2026-02-30T00:00:00Z",
          "2026-12-05 06:00:00Z", "2026-12-05T06:00:00.000+23:59", "2026-W49-6T06:00:00Z",
          "20261205T060000Z", "2026-12-05T06:00:00.000Z" + " " * 30, "1e9", "+002026-12-05")
VALUE_NAMES = ("device.status", "printer.paper", "printer.cover", "poll.errors",
               "host.cpu_pct", "scanner.scans", "snmp.supply.<n>.level", "x.unknown", "")
VALUES = ("ok", "warning", "error", "offline", "near_end", "closed", 0, 12.5, -1, 2**63,
          1e308, None, True, "", "\x00", [], {}, "v" * 1001)
UP = ("telemetry", "alert", "decision", "birth", "death", "event")


_TS_CACHE: dict = {}


def _ts(d: Draw) -> Any:
    """A timestamp: mostly plausible spellings at the skew's edges, sometimes anything."""
    from datetime import datetime, timezone

    choice = d.byte()
    if choice < 200:
        offset = d.pick(SKEWED) if choice % 4 else 0.0
        offset += d.uint(3) - (1 << 23) if d.chance(32) else 0
        fmt = d.pick(TS_FORMATS)
        key = (offset, fmt)
        text = _TS_CACHE.get(key)
        if text is None:
            try:
                when = datetime.fromtimestamp(FUZZ_CLOCK_EPOCH + offset, timezone.utc)
                text = fmt.format(when.strftime("%Y-%m-%dT%H:%M:%S"), when.microsecond // 1000)
            except (OverflowError, OSError, ValueError):
                text = "9999-12-31T23:59:59Z"
            if len(_TS_CACHE) > 4096:
                _TS_CACHE.clear()
            _TS_CACHE[key] = text
        return text
    if choice < 240:
        return d.pick(ODD_TS)
    return d.pick((d.text(50), 1796450400, None, 1.5, [], {}))


def _id(d: Draw, pool: tuple) -> Any:
    c = d.byte()
    if c < 220:
        return pool[c % len(pool)]
    return d.pick((d.text(70), "", None, 7))


def _text(d: Draw) -> Any:
    c = d.byte()
    return TEXTS[c % len(TEXTS)] if c < 230 else d.text(80)


def _num(d: Draw, pool: tuple) -> Any:
    c = d.byte()
    if c < 200:
        return pool[c % len(pool)]
    if c < 230:
        return d.uint(8) - (1 << 63) if c & 1 else d.uint(4)
    return d.float64()


def _values(d: Draw) -> dict:
    out = {}
    for _ in range(d.byte() % 5):
        name = d.pick(VALUE_NAMES).replace("<n>", str(d.byte() % 3)) if d.byte() < 230 \
            else d.text(40)
        out[name] = d.pick(VALUES) if d.byte() < 200 else _num(d, FLOATS)
    return out or {"device.status": "ok"}


def _decision(d: Draw) -> dict:
    body = {"device": _id(d, DEVICES),
            "decision": d.pick(("watch", "ok", "predicted_failure", "failed", "bogus", None)),
            "previous": d.pick(("ok", None, "watch", "failed", "x")),
            "score": _num(d, FLOATS), "threshold": _num(d, FLOATS),
            "model": d.pick(("m-1", None, "device_health-3872b4285766")) if d.byte() < 200
            else _text(d),
            "features": {d.pick(("a", "paper_low_rate", "b<1>", "")): _num(d, FLOATS)
                         for _ in range(d.byte() % 3)},
            "explanation": [_text(d) for _ in range(d.byte() % 3)], "ts": _ts(d)}
    return body


def _body(d: Draw, kind: str) -> Any:
    if kind == "telemetry":
        return {"readings": [
            {"device": _id(d, DEVICES), "kind": _id(d, KINDS), "ts": _ts(d),
             "values": _values(d), "stale": d.pick((False, True, None, 0)),
             "reason": d.pick((None, "timeout")) if d.byte() < 200 else _text(d)}
            for _ in range(1 + d.byte() % 4)]}
    if kind == "decision":
        return _decision(d)
    if kind == "alert":
        device, what = _id(d, DEVICES), _id(d, WHATS)
        body = {"alert": f"{device}:{what}" if d.byte() < 220 else _id(d, DEVICES),
                "device": device, "what": what,
                "state": d.pick(("raised", "cleared", "open", None)),
                "severity": d.pick(("critical", "warning", "info", "fatal")),
                "since": _ts(d), "ts": _ts(d),
                "explanation": [_text(d) for _ in range(d.byte() % 3)],
                "decision": None if d.byte() < 180 else _decision(d)}
        if d.chance(64):
            body["family"] = d.pick(("failed", "attention", "predicted_failure", "x"))
            body["audience"] = d.pick(("store", "region", "central_it", "y"))
            body["escalated"] = d.pick((True, False, None, 1))
            body["escalated_after_s"] = _num(d, FLOATS)
        if d.chance(32):
            body["supersedes"] = {"alert": f"{device}:predicted_failure", "since": _ts(d),
                                  "lead_s": _num(d, FLOATS)}
        return body
    if kind in ("birth", "death"):
        body = {"session": _num(d, INTS)}
        if d.chance(160):
            body["instance"] = d.pick(("0193a000-0c2e-7d10-9a4b-3c5d6e7f8a9b",
                                       "0193a000-0c2e-7d10-9a4b-3c5d6e7f8a9c")) \
                if d.byte() < 220 else _id(d, DEVICES)
        if kind == "birth":
            body["inventory"] = [{"id": _id(d, DEVICES), "kind": _id(d, KINDS)}
                                 for _ in range(d.byte() % 4)]
            for name in ("agent_version", "model_version", "config_hash"):
                if d.chance(128):
                    body[name] = _text(d)
            if d.chance(128):
                body["last_seq"] = _num(d, INTS)
            if d.chance(48):
                body["capabilities"] = {"wire": 1, "collectors": {"escpos": ["device.status"]}}
        return body
    if kind == "event":
        body = {"event": d.pick(("outbox_drops", "outbox_dropped", "x")) if d.byte() < 220
                else _text(d)}
        if d.chance(128):
            body["drops"] = {"telemetry": {"count": _num(d, INTS), "bytes": _num(d, INTS)}}
        return body
    return d.pick(({}, [], None, "x"))


def message(d: Draw, default_seq: int) -> tuple[str, bytes, bool]:
    """One MQTT message: (topic, payload, ignored). `ignored`: a topic the consumer does not
    ingest (the hub's own feed), which reaches the writer as an item with neither envelope
    nor error (hub.bus.consumer)."""
    from edge_protocol import topics

    mode = d.byte()
    kind = d.pick(UP) if d.byte() < 240 else d.pick(("cmd_result", "bogus", ""))
    store, region = _id(d, STORES), d.pick(REGIONS)
    env: dict[str, Any] = {
        "v": 1 if d.byte() < 230 else d.pick((True, 1.0, 2, "1", None, 0)),
        "id": d.pick(IDS) if d.byte() < 200 else d.pick((
            f"{d.uint(4):08x}-6b78-775b-a6ec-{d.uint(6):012x}", _text(d),
            "01A244D8-6B78-775B-A6EC-B402C941EC71", None)),
        "seq": default_seq if d.byte() < 160 else _num(d, INTS),
        "store": store, "region": region, "ts": _ts(d), "kind": kind,
        "body": _body(d, kind)}
    if d.chance(16):
        del env[d.pick(tuple(env))]
    if d.chance(16):
        env[d.pick(("extra", "x", "V", "body "))] = _text(d)
    # The topic: the envelope's own, mostly; else another store's, kind's, or none at all.
    t_store, t_region, t_kind = (store, region, kind) if d.byte() < 220 else (
        _id(d, STORES), d.pick(REGIONS), d.pick(UP))
    name = topics.topic(str(t_region), str(t_store), str(t_kind))
    ignored = False
    if d.chance(12):
        name = d.pick(("edge/v1/hub/state", "edge/v1/alerts/r1/s1", "edge/v1/r1/s1/cmd",
                       "edge/v1/r1/s1", "other/v1/r1/s1/telemetry", name + "/x", "",
                       "edge/v1/r1/+/telemetry"))
        ignored = not name.startswith("edge/v1/") or name.startswith("edge/v1/hub/") \
            or name.startswith("edge/v1/alerts/") or name.endswith("/cmd")
    try:
        text = json.dumps(env, ensure_ascii=d.chance(128), separators=(",", ":"))
    except (ValueError, TypeError):
        text = "{}"
    payload = text.encode("utf-8", "surrogatepass")
    if mode >= 240:
        payload = d.blob(200)  # raw bytes
    elif mode >= 224:  # a few bytes spliced in
        at = d.uint(2) % (len(payload) + 1)
        payload = payload[:at] + d.blob(8) + payload[at + d.byte() % 4:]
    return name, payload, ignored


def batch(data: bytes) -> list[tuple[str, bytes, bool]]:
    d = Draw(data)
    n = 1 + d.byte() % MAX_MESSAGES
    return [message(d, i + 1) for i in range(n)]


# The databases ----------------------------------------------------------------------------

class _Db:
    """One database for the process, its schema made once, emptied (or rolled back) per input."""

    def __init__(self, kind: str):
        from hub import ticketing
        from hub.app import open_store

        self.kind = kind
        if kind == "sqlite":
            base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) \
                else None
            self.folder = tempfile.mkdtemp(prefix=f"fuzz-hub-{os.getpid()}-", dir=base)
            self.url = str(Path(self.folder) / "hub.db")
        else:
            self.url = _create_pg()
        self.db = open_store(self.url)
        atexit.register(self.close)
        with self.db.read() as tx:
            if kind == "sqlite":
                tx.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            else:
                tx.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            self.tables = sorted(r[0] for r in tx.fetchall() if r[0] != "schema_versions")
            # Rows the migrations made (the audit log's head): put back after each input.
            self.initial = {}
            for name in self.tables:
                tx.execute(f"SELECT * FROM {name}")
                rows = tx.fetchall()
                if rows:
                    self.initial[name] = rows
        self.resets = 0
        self.written = [t for t in INGEST_TABLES if t in self.tables]
        self.policy = ticketing.load_policy(str(ROOT / "tickets.example.toml"))
        self.hook = ticketing.hook(self.policy)

    def close(self) -> None:
        import shutil

        try:
            self.db.close()
        except Exception:  # noqa: BLE001 - at exit
            pass
        if self.kind == "sqlite":
            shutil.rmtree(self.folder, ignore_errors=True)
        else:
            drop_pg(self.url.rsplit("/", 1)[1])

    def reset(self) -> None:
        """Empty the tables ingest writes (cheaper than all of them); every 64th time every
        table, and a table found with rows joins the list for good."""
        self.resets += 1
        full = self.resets % 64 == 0
        with self.db.transaction() as tx:
            if full:
                for name in self.tables:
                    if name not in self.written:
                        tx.execute(f"SELECT COUNT(*) FROM {name}")
                        if tx.fetchone()[0]:
                            self.written.append(name)
            for name in self.tables if full else self.written:
                tx.execute(f"DELETE FROM {name}")
            for name, rows in self.initial.items():
                marks = ", ".join("?" * len(rows[0]))
                tx.executemany(f"INSERT INTO {name} VALUES ({marks})", rows)


def _create_pg() -> str:
    import uuid

    import psycopg

    name = f"{PG_PREFIX}{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return PG_ADMIN.rsplit("/", 1)[0] + "/" + name


def drop_pg(name: str) -> None:
    import psycopg

    try:
        with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    except psycopg.Error:
        pass


def drop_leftover_pg() -> list[str]:
    """Drop the fuzz databases of runs that did not exit cleanly (a crash exits at once)."""
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5) as conn:
        names = [r[0] for r in conn.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE %s", (PG_PREFIX + "%",))]
    mine = f"{PG_PREFIX}{os.getpid()}_"
    names = [n for n in names if not n.startswith(mine)]
    for name in names:
        drop_pg(name)
    return names


# The tables the ingest path writes (fleet, alerts, quarantine, tickets, approvals and their
# audit entries), emptied after each input; any other found written is added (_Db.reset).
INGEST_TABLES = ("messages", "stores", "devices", "rejects", "quarantine", "alerts", "feed",
                 "tickets", "ticket_intents", "ticket_problems", "approval_requests",
                 "approval_votes", "audit_log", "audit_head", "audit_checkpoints")

def remove_leftover_dirs() -> list[str]:
    """Remove the temporary folders (fuzz-hub-<pid>-*, fuzz-api-<pid>-*) of fuzz processes
    that are gone: libFuzzer ends a process without running its atexit."""
    import shutil

    gone = []
    for base in {"/dev/shm", tempfile.gettempdir()}:
        for path in Path(base).glob("fuzz-[ha][up][bi]-*"):
            parts = path.name.split("-")
            if len(parts) < 4 or not parts[2].isdigit() or parts[2] == str(os.getpid()):
                continue
            try:
                os.kill(int(parts[2]), 0)
                continue  # still running
            except ProcessLookupError:
                pass
            except PermissionError:
                continue
            shutil.rmtree(path, ignore_errors=True)
            gone.append(str(path))
    return gone


_DBS: dict[str, _Db] = {}


def database(kind: str) -> _Db:
    if kind not in _DBS:
        _DBS[kind] = _Db(kind)
    return _DBS[kind]


# One input --------------------------------------------------------------------------------

def _clock() -> float:
    return FUZZ_CLOCK_EPOCH


def check(data: bytes, kind: str) -> None:
    """Decode and write one fuzzed batch into the `kind` database; assert the properties."""
    from edge_protocol.errors import ProtocolError
    from edge_protocol.timestamps import DEFAULT_SKEW
    from hub.bus.consumer import Item
    from hub.ingest.decode import make_decoder

    msgs = batch(data)
    decode = make_decoder("edge/v1", _clock, DEFAULT_SKEW)
    items = []
    for i, (name, payload, ignored) in enumerate(msgs):
        received = FUZZ_CLOCK_EPOCH + i / 1000.0
        if ignored:
            items.append(Item(i, 1, name, None, None, received, b""))
            continue
        try:
            env, err = decode(payload, name), None
        except ProtocolError as e:
            env, err = None, e
        items.append(Item(i, 1, name, env, err, received, payload if env is not None else b""))
    h = database(kind)
    if kind == "sqlite":
        try:
            _write_and_check(h, items)
        finally:
            h.reset()
        return
    import psycopg

    # One outer transaction, rolled back: the writer's transactions become savepoints.
    with h.db._lock, h.db.db.transaction():
        _write_and_check(h, items)
        raise psycopg.Rollback()


def _write_and_check(h: _Db, items: list) -> None:
    from hub.ingest.writer import commit_or_split

    done = commit_or_split(h.db, items, _clock, h.hook)
    accepted = [it for it in items if it.env is not None]
    errors = Counter(it.error.code for it in items if it.error is not None)
    ignored = sum(1 for it in items if it.env is None and it.error is None)
    ids = sorted({it.env.id for it in accepted})
    with h.db.read() as tx:
        stored = _rows(tx, "SELECT id, store, region, seq, kind, ts, envelope FROM messages"
                           " WHERE id IN ({})", ids)
        quarantined = _rows(tx, "SELECT id, reason, times FROM quarantine WHERE id IN ({})",
                            ids)
        tx.execute("SELECT COUNT(*) FROM messages")
        n_messages = tx.fetchone()[0]
        tx.execute("SELECT reason, count FROM rejects")
        rejects = dict(tx.fetchall())
    stored_by_id = {r[0]: r for r in stored}
    q_by_id = {r[0]: r for r in quarantined}
    # No accepted message is lost: each id is stored or quarantined with a reason.
    for it in accepted:
        env = it.env
        row = stored_by_id.get(env.id)
        q = q_by_id.get(env.id)
        assert row is not None or q is not None, f"accepted message {env.id} lost"
        if q is not None:
            assert q[1], f"quarantined {env.id} without a reason"
        if row is not None and row[6] == it.raw.decode():
            assert row[1:6] == (env.store, env.region, env.seq, env.kind, env.ts), row
    # Stored once: ids are unique in messages; an accepted payload that is not the one stored
    # under its id is a duplicate of an earlier one (by id) or is quarantined.
    assert len(stored) == len(stored_by_id)
    kept = {(r[0], r[6]) for r in stored}
    for it in accepted:
        if (it.env.id, it.raw.decode()) not in kept:
            assert it.env.id in stored_by_id or it.env.id in q_by_id, it.env.id
    assert n_messages == len(stored) == done.stored, (n_messages, len(stored), done.stored)
    # Every reject counted by its reason, exactly once.
    assert rejects == dict(errors), (rejects, dict(errors))
    assert dict(done.rejected) == dict(errors), (done.rejected, errors)
    # The writer's counts add up to the batch.
    total = done.stored + done.duplicates + len(done.quarantined) + sum(done.rejected.values())
    assert total + ignored == len(items), (total, ignored, len(items), done)
    assert all(reason for _, reason in done.quarantined)
    # The database stays usable: a valid message that follows commits and is stored.
    _follow_up(h)


def _rows(tx, sql: str, ids: list[str]) -> list[tuple]:
    if not ids:
        return []
    tx.execute(sql.format(", ".join("?" * len(ids))), ids)
    return tx.fetchall()


_FOLLOW = None


def _follow_up(h: _Db) -> None:
    from hub.bus.consumer import Item
    from hub.ingest.decode import make_decoder
    from edge_protocol.timestamps import DEFAULT_SKEW
    from hub.ingest.writer import commit_or_split

    global _FOLLOW
    if _FOLLOW is None:
        env = {"v": 1, "id": "01a244d8-6b78-775b-a6ec-b402c941ecff", "seq": 1,
               "store": "follow-up", "region": "r9", "ts": "2026-12-05T06:00:00.000Z",
               "kind": "telemetry", "body": {"readings": [
                   {"device": "p1", "kind": "escpos", "ts": "2026-12-05T06:00:00.000Z",
                    "values": {"device.status": "ok"}, "stale": False, "reason": None}]}}
        _FOLLOW = ("edge/v1/r9/follow-up/telemetry", json.dumps(env).encode())
    topic, payload = _FOLLOW
    env = make_decoder("edge/v1", _clock, DEFAULT_SKEW)(payload, topic)
    done = commit_or_split(h.db, [Item(0, 1, topic, env, None, FUZZ_CLOCK_EPOCH + 1, payload)],
                           _clock, h.hook)
    assert done.stored == 1 and not done.quarantined, done
    with h.db.read() as tx:
        tx.execute("SELECT COUNT(*) FROM messages WHERE id = ?", (env.id,))
        assert tx.fetchone()[0] == 1

