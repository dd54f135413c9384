"""The hub API's request checks, through whole requests, in-process (issue 15).

One input is one HTTP request: `request()` reads the fuzzer's bytes as choices (fuzz/draw.py):
a route of hub/api/app.py (or a path of none), a method, path parameters, query parameters
(the route's own and others, repeated, empty), the Authorization header (a token of each role,
a revoked one, none, malformed), the content type and length (right, wrong, missing, not a
number, huge) and a body (a JSON object of the fields the routes read, with values across
their types and bounds, or raw bytes), sent in one or several chunks. `check()` calls the API's
ASGI application directly (no socket, no server: scope, receive and send as uvicorn would give
them) over a temporary SQLite hub database with a small fleet, one user per role, a revoked
user, a signing key ring and a pending approval request, and checks, for every input:

- no exception escapes the application (Starlette re-raises what its 500 handler answered);
- the status is below 500: a malformed request is a 4xx, never a 500 (nor a 503: the key ring
  is there and the database is reachable, so a 503 would be a request that broke a query);
- every 4xx or 5xx is problem details: application/problem+json, a JSON object whose `status`
  is the response's, with `title` and `detail` text, and no Python traceback in it;
- a request answered 4xx wrote nothing (the connection's change counter did not move).

A request that did change the database (a valid one: a user added, an alert acknowledged, a
flag set) is undone by copying a pristine copy of the database back, so every input starts
from the same state and the corpus replays the same in `make test`.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import os
import shutil
import sqlite3
import tempfile
import urllib.parse
from pathlib import Path
from typing import Any

from fuzz.draw import Draw

FUZZ_CLOCK_EPOCH = 1796450400.0

ROUTES = (  # (method, path with {} for each parameter)
    ("GET", "/v1/health"), ("GET", "/v1/openapi.json"), ("GET", "/v1/me"),
    ("GET", "/v1/fleet"), ("GET", "/v1/stores/{}"), ("GET", "/v1/devices"),
    ("GET", "/v1/alerts"), ("POST", "/v1/alerts/{}/ack"), ("GET", "/v1/rejects"),
    ("GET", "/v1/audit"), ("GET", "/v1/audit/verify"), ("GET", "/v1/users"),
    ("POST", "/v1/users"), ("GET", "/v1/users/{}"), ("POST", "/v1/users/{}/disable"),
    ("POST", "/v1/users/{}/rotate-token"), ("POST", "/v1/commands"),
    ("GET", "/v1/commands/{}"), ("POST", "/v1/commands/{}/approve"), ("GET", "/v1/flags"),
    ("POST", "/v1/flags"), ("GET", "/v1/tickets"), ("GET", "/v1/tickets/{}"),
    ("GET", "/v1/approvals"), ("GET", "/v1/approvals/{}"),
    ("POST", "/v1/approvals/{}/approve"), ("POST", "/v1/approvals/{}/deny"),
    ("GET", "/v1/bundles"), ("GET", "/v1/rollouts"), ("POST", "/v1/rollouts"),
    ("GET", "/v1/rollouts/{}"), ("POST", "/v1/rollouts/{}/pause"),
    ("POST", "/v1/rollouts/{}/resume"), ("POST", "/v1/rollouts/{}/abort"),
    ("POST", "/v1/rollouts/{}/approve"),
    ("GET", "/"), ("GET", "/v1"), ("GET", "/v1/"), ("GET", "/v2/fleet"),
    ("GET", "/v1/stores/{}/x"), ("GET", "//v1/fleet"), ("GET", "/v1/fleet/"),
)
# What each route reads: its query keys and body fields (hub/api/app.py), drawn more often.
ROUTE_QUERY = {"/v1/fleet": ("region", "all", "limit"),
               "/v1/devices": ("at_risk", "region", "store", "limit"),
               "/v1/alerts": ("open", "region", "store", "limit"),
               "/v1/audit": ("since", "actor", "store", "after", "limit"),
               "/v1/tickets": ("open", "store", "limit"), "/v1/approvals": ("pending", "limit")}
ROUTE_FIELDS = {"/v1/users": ("name", "role", "regions", "stores"),
                "/v1/commands": ("store", "action", "device", "args", "expires_s"),
                "/v1/flags": ("name", "value", "scope"),
                "/v1/approvals/{}/approve": ("reason", "hash"),
                "/v1/approvals/{}/deny": ("reason",),
                "/v1/rollouts": ("bundle", "stages", "soak_s", "urgent", "approval", "gates")}
# A valid body for each route that takes one: one field of it replaced by a drawn value gets
# the fuzzer past the first check, into the domain's own.
VALID = {"/v1/users": {"name": "new-user", "role": "auditor", "regions": [], "stores": []},
         "/v1/commands": {"store": "s1", "action": "test_print", "device": "p1",
                          "args": {"force": True, "text": "hello"}, "expires_s": 600},
         "/v1/flags": {"name": "scoring", "value": False, "scope": "store:s1"},
         "/v1/approvals/{}/approve": {"reason": "ok"},
         "/v1/approvals/{}/deny": {"reason": "no"},
         "/v1/rollouts": {"bundle": "0123456789abcdef", "stages": "pilot=s1; chain",
                          "soak_s": 60, "urgent": False, "approval": [],
                          "gates": {"min_stores": 1}}}
FIELD_VALUES_EXTRA = ("test_print", "repoll", "reset", "reload_config", "restart_agent",
                      "diagnostics", "recover", "region:south", "store:s3", "p2", "x1", "r1",
                      {"force": "yes"}, {"text": "\x1b[2J"}, {"clear_buffer": True}, 604801,
                      "it-operator", "regional-manager", ["south"], ["s3", "s3"])
METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "get", "")
USERS = {"admin": ("hq-admin", [], []), "ops": ("it-operator", [], []),
         "north-rm": ("regional-manager", ["north"], []),
         "s3-sm": ("store-manager", [], ["s3"]), "audit": ("auditor", [], []),
         "gone": ("it-operator", [], [])}
QUERY_KEYS = ("limit", "region", "store", "all", "open", "at_risk", "since", "actor", "after",
              "pending", "x", "", "LIMIT", "limit[]")
SEGMENTS = ("s1", "s3", "north", "admin", "gone", "nobody", "", "0", "1", "18446744073709551616",
            "999999999999999999", "0000000000000000001", "-1", "1e3", "00000000-0000-7000-8000-"
            "000000000000", "00000000-0000-7000-8000-00000000000G", "a" * 64, "a" * 65, "..",
            "%2e%2e", "%00", "%ff", "%c0%af", "%e2%80%ae", "%0d%0a", "s1%2F..",
            "0123456789ab", "0123456789AB", "%C3%A9")
VALUES = ("1", "true", "false", "", "0", "100000", "100001", "-1", "north", "s1", "yes", "no",
          "2026-12-05T06:00:00Z", "7d", "1h", "x", "a" * 64, "a" * 65, "%00", "%ff", "1e9",
          "999999999999", "9999999999999", "%C3%A9", "%0a", "4611686018427387904",
          "0001-01-01T00:00:00%2B01:00", "9999-12-31T23:59:59-01:00", "2026-13-01")
FIELDS = ("name", "role", "regions", "stores", "store", "action", "device", "args",
          "expires_s", "value", "scope", "reason", "hash", "bundle", "stages", "soak_s",
          "urgent", "approval", "gates", "x", "")
FIELD_VALUES = ("s1", "new-user", "hq-admin", "auditor", "store-manager", "restart", "print_test",
                "p1", "scoring", "tickets", "chain", "region:north", "store:s1", "store:nowhere",
                "", " ", "\x00", "\ud800", "\u202e", "a" * 64, "a" * 5000, "0" * 64, "0" * 8,
                "s1=s1; rest=chain", "chain", 0, 1, -1, 2**63, 10**400, 1e308, -0.0, 0.5, True,
                False, None, [], ["s1"], ["north", 1], {}, {"x": 1}, {"min_stores": 1},
                {"min_stores": -1}, {"max_failed_pct": 1e308}, [[[[[]]]]], {"a": {"b": {}}})
TOKENS = ("admin", "ops", "north-rm", "s3-sm", "audit", "gone", None, "eh_", "eh_" + "0" * 40,
          "garbage", "")
CTYPES = ("application/json", "application/json; charset=utf-8", None, "text/plain",
          "APPLICATION/JSON", "application/json;", "multipart/form-data; boundary=x",
          "application/problem+json", "\x00")


_SAFE = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in "?#")


def _ascii(text: str, safe: str = _SAFE) -> str:
    """What reaches the application: a request target is ASCII (a server refuses other bytes
    before the app), everything else percent-encoded, lone surrogates as their bytes."""
    return urllib.parse.quote(text.encode("utf-8", "surrogatepass"), safe=safe)


def _segment(d: Draw, pools: dict) -> str:
    c = d.byte()
    if c < 120:
        return d.pick(pools["live"])
    if c < 230:
        return d.pick(SEGMENTS)
    return _ascii(d.text(40), "") if d.chance(200) else _ascii(d.text(20))


def _value(d: Draw, depth: int = 0) -> Any:
    c = d.byte()
    if c < 200 or depth > 3:
        return FIELD_VALUES[c % len(FIELD_VALUES)]
    if c < 220:
        return d.text(30)
    if c < 235:
        return d.uint(8) - (1 << 63)
    if c < 245:
        return [_value(d, depth + 1) for _ in range(d.byte() % 4)]
    return {d.pick(FIELDS): _value(d, depth + 1) for _ in range(d.byte() % 4)}


def request(data: bytes, pools: dict) -> dict[str, Any]:
    """One request: method, raw path, query string, headers and the body's chunks."""
    d = Draw(data)
    method, path = d.pick(ROUTES)
    own_query, own_fields = ROUTE_QUERY.get(path, QUERY_KEYS), ROUTE_FIELDS.get(path, FIELDS)
    if d.chance(16):
        method = d.pick(METHODS)
    while "{}" in path:
        path = path.replace("{}", _segment(d, pools), 1)
    if d.chance(8):
        path = "/" + _ascii(d.text(30))
    query = []
    for _ in range(d.byte() % 4):
        c = d.byte()
        key = d.pick(own_query) if c < 180 else d.pick(QUERY_KEYS) if c < 230 else d.text(10)
        value = d.pick(VALUES) if d.byte() < 220 else d.text(20)
        query.append(f"{_ascii(key, '%')}={_ascii(value, '%')}")
    qs = "&".join(query)
    if d.chance(8):
        qs = d.pick(("a", "=", "&&", "limit", "limit=1&limit=2", "%", "limit=%zz")) \
            if d.byte() < 200 else _ascii(d.text(20), _SAFE + "?")
    headers: list[tuple[bytes, bytes]] = []
    token = d.pick(TOKENS)
    if token is not None:
        value = pools["tokens"].get(token, token)
        scheme = d.pick(("Bearer ", "bearer ", "Basic ", "Bearer", "Bearer  ", ""))
        headers.append((b"authorization", (scheme + value).encode("utf-8", "surrogateescape")))
    body = b""
    if method in ("POST", "PUT", "PATCH") or d.chance(8):
        template = next((v for k, v in VALID.items() if path.startswith(k.split("{}")[0])
                         and path.endswith(k.split("{}")[-1])), None)
        c = d.byte()
        if template is not None and c < 100:
            doc = dict(template)
            for _ in range(d.byte() % 3):
                key = d.pick(tuple(doc) + ("x",))
                if d.chance(32):
                    doc.pop(key, None)
                else:
                    doc[key] = d.pick(FIELD_VALUES_EXTRA) if d.chance(128) else _value(d)
            body = json.dumps(doc, ensure_ascii=d.chance(128)).encode("utf-8", "surrogatepass")
        elif c < 230:
            doc = {d.pick(own_fields) if d.byte() < 220 else d.pick(FIELDS): _value(d)
                   for _ in range(d.byte() % 7)}
            if d.chance(32):
                doc = _value(d)
            try:
                body = json.dumps(doc, ensure_ascii=d.chance(128)).encode(
                    "utf-8", "surrogatepass")
            except (ValueError, TypeError, RecursionError):
                body = b"{}"
            if d.chance(16):  # a duplicate key, NaN, a byte spliced in
                at = d.uint(2) % (len(body) + 1)
                body = body[:at] + d.pick((b'"name":1,', b"NaN", b"\xff", b"]", b"{" * 40,
                                           b"\\ud800", b"1e999", b"\x00")) + body[at:]
        else:
            body = d.blob(200)
    ctype = d.pick(CTYPES) if body or d.chance(64) else None
    if ctype is not None:
        headers.append((b"content-type", ctype.encode()))
    length = d.pick(("right", "right", "right", "none", "wrong", "huge", "text", "negative"))
    if length != "none" and (body or d.chance(64)):
        headers.append((b"content-length", {
            "right": str(len(body)), "wrong": str(max(0, len(body) - 1)),
            "huge": "99999999999999999999", "text": "12a", "negative": "-1"}[length].encode()))
    if d.chance(16):
        headers.append((d.pick((b"x-forwarded-for", b"host", b"authorization", b"content-type")),
                        d.blob(40)))
    cut = 1 + d.byte() % 3
    step = max(1, len(body) // cut)
    chunks = [body[i:i + step] for i in range(0, len(body), step)] or [b""]
    return {"method": method, "path": path, "query": qs, "headers": headers, "chunks": chunks}


# The application and its database ------------------------------------------------------------

class _Hub:
    def __init__(self) -> None:
        import hub.app
        from hub.api.app import create_app
        from hub.config import parse_text
        from hub.keys import KeyRing

        base = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
        self.folder = Path(tempfile.mkdtemp(prefix=f"fuzz-api-{os.getpid()}-", dir=base))
        atexit.register(shutil.rmtree, self.folder, True)
        self.db = hub.app.open_store(str(self.folder / "hub.db"))
        KeyRing.init(self.folder / "keys")
        config = parse_text(
            f'[keys]\ndirectory = "{self.folder / "keys"}"\n'
            "[limits]\nrate_per_s = 100000\nrate_burst = 100000\n"
            "[api]\nfleet_cache_s = 0\n")
        self.tokens = _seed(self.db)
        with self.db.read() as tx:
            tx.execute("SELECT id FROM alerts ORDER BY id")
            alerts = [r[0] for r in tx.fetchall()]
        self.pools = {"tokens": self.tokens,
                      "live": ("s1", "s3", "admin", "gone", *alerts, "1")}
        self.app = create_app(self.db, config, clock=lambda: FUZZ_CLOCK_EPOCH)
        self.loop = asyncio.new_event_loop()
        # A pending approval request (id 1): an operator's high-impact command, through the API.
        body = b'{"store": "s1", "action": "reset", "device": "p1"}'
        status = self.loop.run_until_complete(_call(self.app, {
            "method": "POST", "path": "/v1/commands", "query": "", "chunks": [body],
            "headers": [(b"authorization", b"Bearer " + self.tokens["ops"].encode()),
                        (b"content-type", b"application/json")]}))[0]
        assert status == 201, status
        self.pristine = sqlite3.connect(":memory:")
        with self.db._lock:
            self.db.db.backup(self.pristine)

    def restore(self) -> None:
        with self.db._lock:
            self.pristine.backup(self.db.db)
        self.app.state.api.fleet_cache = type(self.app.state.api.fleet_cache)(0)

    def changes(self) -> int:
        return self.db.db.total_changes


def _seed(db) -> dict[str, str]:
    """A fleet in two regions (s1, s2 north; s3 south) with alerts, and one user per role."""
    import edge_protocol as wire
    from hub.domains.access import local_actor
    from hub.domains.access.users import add_user, disable_user
    from hub.ingest.writer import apply

    ts = "2026-12-05T06:00:00.000Z"

    def env(kind, body, store, region, seq):
        return {"v": 1, "id": wire.uuid7(), "seq": seq, "store": store, "region": region,
                "ts": ts, "kind": kind, "body": body}

    def alert(device, what):
        return {"alert": f"{device}:{what}", "device": device, "what": what,
                "state": "raised", "severity": "critical", "since": ts, "ts": ts,
                "explanation": ["seeded"], "decision": None}

    def birth(session, devices):
        return {"session": session, "inventory": [{"id": d, "kind": "escpos"} for d in devices]}

    envs = [env("birth", birth(1, ("p1", "p2")), "s1", "north", 0),
            env("telemetry", {"readings": [{"device": "p1", "kind": "escpos", "ts": ts,
                                            "values": {"device.status": "ok"},
                                            "stale": False, "reason": None}]},
                "s1", "north", 1),
            env("alert", alert("p2", "paper_out"), "s1", "north", 2),
            env("birth", birth(4, ("r1",)), "s2", "north", 0),
            env("birth", birth(1, ("x1",)), "s3", "south", 0),
            env("alert", alert("x1", "cover_open"), "s3", "south", 3)]
    decoded = [wire.decode(wire.encode(e)) for e in envs]
    with db.transaction() as tx:
        db.insert_new_messages(tx, [(e.id, e.store, e.region, e.seq, e.kind, e.ts, 1.0, "{}")
                                    for e in decoded])
        apply(db, tx, decoded, FUZZ_CLOCK_EPOCH)
    tokens = {}
    root = local_actor("fuzz")
    with db.transaction() as tx:
        for name, (role, regions, stores) in USERS.items():
            _, tokens[name] = add_user(tx, lambda: FUZZ_CLOCK_EPOCH, root, name, role,
                                       regions=regions, stores=stores)
        disable_user(tx, lambda: FUZZ_CLOCK_EPOCH, root, "gone")
    return tokens


_HUB: list[_Hub] = []
STATS: dict = {}


def hub() -> _Hub:
    if not _HUB:
        _HUB.append(_Hub())
    return _HUB[0]


async def _call(app, req: dict) -> tuple[int, dict[str, str], bytes]:
    raw_path = req["path"].encode("ascii")
    scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"},
             "http_version": "1.1", "method": req["method"], "scheme": "http",
             # As uvicorn: the path percent-decoded, the raw path as sent.
             "path": urllib.parse.unquote(raw_path.decode("latin-1")), "raw_path": raw_path,
             "query_string": req["query"].encode("ascii"),
             "root_path": "", "headers": req["headers"], "client": ("127.0.0.1", 40000),
             "server": ("127.0.0.1", 8080), "state": {}}
    chunks = list(req["chunks"])
    sent: dict[str, Any] = {"status": None, "headers": {}, "body": b""}

    async def receive():
        if chunks:
            chunk = chunks.pop(0)
            return {"type": "http.request", "body": chunk, "more_body": bool(chunks)}
        return {"type": "http.disconnect"}

    async def send(message):
        if message["type"] == "http.response.start":
            sent["status"] = message["status"]
            sent["headers"] = {k.decode("latin-1").lower(): v.decode("latin-1")
                               for k, v in message.get("headers", [])}
        elif message["type"] == "http.response.body":
            sent["body"] += message.get("body", b"")

    await app(scope, receive, send)
    return sent["status"], sent["headers"], sent["body"]


def check(data: bytes) -> None:
    """Send one fuzzed request to the API; assert the properties above."""
    h = hub()
    req = request(data, h.pools)
    before = h.changes()
    STATS[req["method"]] = STATS.get(req["method"], 0) + 1
    try:
        status, headers, body = h.loop.run_until_complete(_call(h.app, req))
        STATS[status] = STATS.get(status, 0) + 1
    finally:
        changed = h.changes() != before
        if changed:
            h.restore()
    where = f"{req['method']} {req['path'][:80]!r}?{req['query'][:80]!r}"
    assert status is not None, f"{where}: no response"
    assert status < 500, f"{where}: {status} {body[:300]!r}"
    assert b"Traceback" not in body, f"{where}: a traceback in the answer"
    if status >= 400:
        assert headers.get("content-type") == "application/problem+json", (where, headers)
        doc = json.loads(body) if req["method"] != "HEAD" else None
        if doc is not None:
            assert isinstance(doc, dict) and doc.get("status") == status, (where, doc)
            assert isinstance(doc.get("title"), str) and isinstance(doc.get("detail"), str)
        assert not changed, f"{where}: answered {status} but wrote to the database"


def seeds() -> list[bytes]:
    """One request to each route (the route picked, then all-zero choices: its own method, the
    live names, no query, an admin's token, an empty JSON object for a body), and requests
    from a fixed pseudo-random sequence that each got a status not seen for their route (a 201
    or 200 among them, which the fuzzer seldom finds from nothing)."""
    import random

    out = [bytes([i]) for i in range(len(ROUTES))]
    h, rng, seen = hub(), random.Random(15), set()
    for _ in range(6000):
        i = rng.randrange(len(ROUTES))
        data = bytes([i]) + bytes(rng.getrandbits(8) for _ in range(rng.randint(4, 120)))
        req = request(data, h.pools)
        before = h.changes()
        status = h.loop.run_until_complete(_call(h.app, req))[0]
        if h.changes() != before:
            h.restore()
        if (i, status) not in seen:
            seen.add((i, status))
            out.append(data)
    return out
