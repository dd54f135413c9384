"""The hub's HTTP API (Starlette, served by uvicorn): versioned JSON over the hub database.

    app = create_app(db, config)          # an ASGI app; hub/api/server.py serves it

Every path is under /v1. Every request but /v1/health and /v1/openapi.json carries
`Authorization: Bearer eh_...`; the token's user is the actor every read and change is
scoped by (the scoped views in hub/app.py, the access domain's matrix). Errors are problem details
(RFC 9457, application/problem+json): 400 a malformed request, 401 no or a revoked token, 403
outside the role or scope, 404, 405, 409, 413 a body over limits.max_body_bytes, 415, 429 over
the caller's rate (with Retry-After), 503 the database unreachable, 500 a bug (no detail).
"""

from __future__ import annotations

import json
import logging
import math
import re
import threading
import time
from collections import OrderedDict
from typing import Any, Awaitable, Callable

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from hub import __version__
from hub.config import HubConfig, check_id
from hub.errors import (Conflict, Forbidden, HubError, Invalid, NotFound, StoreError,
                        Unauthorized)

log = logging.getLogger("hub.api")

try:  # the hub extra brings orjson: 5-10x faster on a 10,000-store fleet answer
    import orjson

    def _dumps(data: Any) -> bytes:
        return orjson.dumps(data, default=str)
except ImportError:  # pragma: no cover - orjson is in the hub extra
    def _dumps(data: Any) -> bytes:
        return json.dumps(data, default=str, separators=(",", ":")).encode()


PROBLEM_BASE = "https://retail-edge.example/problems/"
STATUS = {Invalid: 400, Unauthorized: 401, Forbidden: 403, NotFound: 404, Conflict: 409,
          StoreError: 503}
TITLES = {400: "Bad request", 401: "Unauthorized", 403: "Forbidden", 404: "Not found",
          405: "Method not allowed", 409: "Conflict", 413: "Request body too large",
          415: "Unsupported media type", 429: "Too many requests", 500: "Internal error",
          503: "Service unavailable"}


class ApiError(Exception):
    """An HTTP error raised by the API layer itself (body too large, rate, media type)."""

    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None):
        super().__init__(detail)
        self.status, self.detail, self.headers = status, detail, headers or {}


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(_dumps(data), status_code=status, media_type="application/json",
                    headers=headers)


def problem(status: int, detail: str, instance: str = "",
            headers: dict[str, str] | None = None) -> Response:
    """An RFC 9457 problem details response."""
    title = TITLES.get(status, "Error")
    body = {"type": PROBLEM_BASE + title.lower().replace(" ", "-"), "title": title,
            "status": status, "detail": detail}
    if instance:
        body["instance"] = instance
    headers = dict(headers or {})
    if status == 401:
        headers.setdefault("WWW-Authenticate", 'Bearer realm="edge-hub"')
    return Response(json.dumps(body, ensure_ascii=True), status_code=status,
                    media_type="application/problem+json", headers=headers)


class RateLimiter:
    """A token bucket per caller, for at most `clients` callers (least recent forgotten)."""

    def __init__(self, rate: float, burst: int, clients: int):
        self.rate, self.burst, self.clients = rate, burst, clients
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, key: str, now: float | None = None) -> float:
        """0 when the request may go; else the seconds until it could."""
        now = time.monotonic() if now is None else now
        with self._lock:
            tokens, at = self._buckets.pop(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - at) * self.rate)
            wait = 0.0
            if tokens >= 1.0:
                tokens -= 1.0
            else:
                wait = (1.0 - tokens) / self.rate
            self._buckets[key] = (tokens, now)
            while len(self._buckets) > self.clients:
                self._buckets.popitem(last=False)
            return wait


# Request parsing: every outside input checked field by field -----------------------------------

def _name(value: str, what: str) -> str:
    why = check_id(value)
    if why:
        raise Invalid(f"{what}: {why}")
    return value


_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")


def _uuid(value: str, what: str = "command id") -> str:
    if not _UUID.match(value):
        raise Invalid(f"{what}: expected a UUID")
    return value


def _int_id(value: str, what: str) -> int:
    if not re.fullmatch(r"[0-9]{1,18}", value):
        raise Invalid(f"{what}: expected a positive integer")
    return int(value)


def _flag(request: Request, key: str) -> bool:
    value = request.query_params.get(key)
    if value is None:
        return False
    if value in ("1", "true", "yes", ""):
        return True
    if value in ("0", "false", "no"):
        return False
    raise Invalid(f"query {key}: expected true or false")


def _opt_name(request: Request, key: str) -> str | None:
    value = request.query_params.get(key)
    return None if value is None else _name(value, f"query {key}")


def _int(request: Request, key: str, default: int, lo: int, hi: int) -> int:
    value = request.query_params.get(key)
    if value is None:
        return default
    if not re.fullmatch(r"\d{1,12}", value) or not lo <= int(value) <= hi:
        raise Invalid(f"query {key}: expected an integer {lo}-{hi}")
    return int(value)


def _check_query(request: Request, allowed: set[str]) -> None:
    unknown = set(request.query_params.keys()) - allowed
    if unknown:
        raise Invalid(f"unknown query parameter {sorted(unknown)[0][:64]!r}")
    for key in request.query_params.keys():
        if len(request.query_params.getlist(key)) > 1:
            raise Invalid(f"query {key[:64]!r} given more than once")


async def read_json(request: Request, limit: int) -> dict[str, Any]:
    """The request's JSON object body, at most `limit` bytes, strictly parsed."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/json":
        raise ApiError(415, "send the body as application/json")
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > limit):
        raise ApiError(413, f"the body may be at most {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise ApiError(413, f"the body may be at most {limit} bytes")
    try:
        data = json.loads(body.decode("utf-8"), parse_constant=_no_constant,
                          parse_int=_bounded_int, parse_float=_finite_float,
                          object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        raise Invalid(f"the body is not valid JSON: {str(err)[:200]}") from err
    if not isinstance(data, dict):
        raise Invalid("the body must be a JSON object")
    why = _bad_text(data)
    if why:
        raise Invalid(f"the body has {why}")
    return data


def _bad_text(value: Any) -> str | None:
    """A string no column holds, anywhere in a parsed body (keys too): a NUL (PostgreSQL
    refuses it: a 503) or a lone surrogate escape like "\\ud800" (not UTF-8: the write
    raised, a 500). Checked once here, for every route. The body is bounded, so is the walk."""
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            if "\0" in v:
                return "a NUL character in a string"
            try:
                v.encode("utf-8")
            except UnicodeEncodeError:
                return "a lone UTF-16 surrogate in a string"
        elif isinstance(v, dict):
            stack.extend(v.keys())
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
    return None


async def _optional_json(request: Request, limit: int) -> dict[str, Any]:
    """The JSON object body, or {} when the request has none (no body, no content type)."""
    if not request.headers.get("content-type") and \
            request.headers.get("content-length", "0") == "0":
        return {}
    return await read_json(request, limit)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


MAX_JSON_INT = 2**63 - 1  # what a BIGINT column holds; a number a route turns into a float too


def _bounded_int(text: str) -> int:
    """Every integer of a body fits a signed 64-bit column (and a float, as some routes need):
    checked once here, not in each route (10**400 made float() raise: a 500)."""
    value = int(text)
    if not -MAX_JSON_INT - 1 <= value <= MAX_JSON_INT:
        raise ValueError(f"the number {text[:24]}... is outside the signed 64-bit range")
    return value


def _finite_float(text: str) -> float:
    """1e400 parses as infinity in Python's json: refused like the Infinity literal."""
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"the number {text[:24]} is too large")
    return value


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate key {k[:64]!r}")
        out[k] = v
    return out


def _fields(data: dict[str, Any], required: set[str], optional: set[str]) -> None:
    unknown = set(data) - required - optional
    if unknown:
        raise Invalid(f"unknown field {sorted(unknown)[0][:64]!r}")
    missing = required - set(data)
    if missing:
        raise Invalid(f"missing field {sorted(missing)[0]!r}")


def _str_list(data: dict[str, Any], key: str) -> list[str]:
    value = data.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise Invalid(f"{key} must be a list of names")
    return value


# The application -----------------------------------------------------------------------------

Handler = Callable[[Request, Any], Awaitable[Response]]


class Api:
    """The routes and what they share: the database, the config, the limiter, the clock."""

    def __init__(self, db, config: HubConfig, clock: Callable[[], float] = time.time):
        self.db = db
        self.config = config
        self.clock = clock
        lim = config.limits
        self.limiter = RateLimiter(lim.rate_per_s, lim.rate_burst, lim.rate_clients)
        self.flood = RateLimiter(lim.rate_per_s * 10, lim.rate_burst * 10, lim.rate_clients)
        self.max_body = lim.max_body_bytes
        self.list_max = lim.list_max
        from hub.app import FleetCache

        self.fleet_cache = FleetCache(config.api.fleet_cache_s)

    # plumbing -----------------------------------------------------------------------------

    def route(self, path: str, method: str, fn, *, auth: bool = True,
              query: set[str] = frozenset()) -> Route:
        allowed = set(query)

        async def endpoint(request: Request) -> Response:
            try:
                # Before authenticating: one address may flood at most ten callers' worth
                # (invalid tokens included); after: each user at limits.rate_per_s.
                self._limit("a:" + (request.client.host if request.client else "?"),
                            self.flood)
                _check_query(request, allowed)
                actor = await run_in_threadpool(self._actor, request) if auth else None
                if actor is not None:
                    self._limit("u:" + actor.name, self.limiter)
                return await fn(request, actor)
            except ApiError as err:
                return problem(err.status, err.detail, request.url.path, err.headers)
            except HubError as err:
                status = next((s for cls, s in STATUS.items() if isinstance(err, cls)), 500)
                if status == 500:
                    log.error("api: %s", err)
                    return problem(500, "the hub could not answer", request.url.path)
                if status == 503:
                    log.warning("api: %s", err)
                    return problem(503, "the hub database is not reachable", request.url.path,
                                   {"Retry-After": "5"})
                return problem(status, str(err), request.url.path)

        endpoint.__name__ = fn.__name__
        return Route(path, endpoint, methods=[method])

    def _limit(self, key: str, limiter: "RateLimiter") -> None:
        wait = limiter.take(key)
        if wait > 0:
            raise ApiError(429, "too many requests; slow down",
                           {"Retry-After": str(max(1, math.ceil(wait)))})

    def _actor(self, request: Request):
        from hub.domains.access.users import authenticate

        header = request.headers.get("authorization")
        if not header:
            raise Unauthorized("send Authorization: Bearer <API token>")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("send Authorization: Bearer <API token>")
        with self.db.read() as tx:
            return authenticate(tx, token.strip())

    def source(self, request: Request) -> str:
        return f"api:{request.client.host if request.client else '?'}"

    # endpoints ----------------------------------------------------------------------------

    async def health(self, request: Request, actor) -> Response:
        return json_response({"ok": True, "version": __version__})

    async def openapi(self, request: Request, actor) -> Response:
        from hub.api.openapi import document

        return json_response(document(self.config))

    async def me(self, request: Request, actor) -> Response:
        return json_response(actor.describe())

    async def fleet(self, request: Request, actor) -> Response:
        from hub import app

        region = _opt_name(request, "region")
        every = _flag(request, "all")
        limit = _int(request, "limit", min(100, self.list_max), 1, 100000)
        return json_response(await run_in_threadpool(
            lambda: app.fleet_summary(self.db, actor, region=region, all_stores=every,
                                      limit=limit, cache=self.fleet_cache)))

    async def store(self, request: Request, actor) -> Response:
        from hub import app

        store = _name(request.path_params["store"], "store")
        return json_response(await run_in_threadpool(app.scoped_store_detail, self.db, actor,
                                                     store))

    async def devices(self, request: Request, actor) -> Response:
        from hub import app

        kw = {"at_risk": _flag(request, "at_risk"), "region": _opt_name(request, "region"),
              "store": _opt_name(request, "store"),
              "limit": _int(request, "limit", self.list_max, 1, self.list_max)}
        return json_response(await run_in_threadpool(
            lambda: app.scoped_devices(self.db, actor, **kw)))

    async def alerts(self, request: Request, actor) -> Response:
        from hub import app

        kw = {"open_only": _flag(request, "open"), "region": _opt_name(request, "region"),
              "store": _opt_name(request, "store"),
              "limit": _int(request, "limit", self.list_max, 1, self.list_max)}
        return json_response(await run_in_threadpool(
            lambda: app.scoped_alerts(self.db, actor, **kw)))

    async def ack(self, request: Request, actor) -> Response:
        from hub import app

        alert_id = request.path_params["alert_id"]
        if not re.fullmatch(r"[0-9a-f]{12}", alert_id):
            raise Invalid("alert id: expected 12 hexadecimal digits")
        return json_response(await run_in_threadpool(
            app.ack_alert, self.db, actor, self.clock, alert_id, self.source(request)))

    async def rejects(self, request: Request, actor) -> Response:
        from hub import app

        return json_response(await run_in_threadpool(app.scoped_rejects, self.db, actor))

    async def audit_list(self, request: Request, actor) -> Response:
        from hub.domains import audit
        from hub.domains.access import authorize
        authorize(actor, "audit.read")
        kw = {"since": audit.parse_since(request.query_params.get("since")),
              "actor": _opt_name(request, "actor"), "store": _opt_name(request, "store"),
              "after": _int(request, "after", 0, 0, 1 << 62),
              "limit": _int(request, "limit", self.list_max, 1, self.list_max)}

        def run():
            with self.db.transaction() as tx:
                rows = audit.entries(tx, **kw)
                audit.record(tx, self.clock, actor, "audit.read", "audit",
                             {k: v for k, v in kw.items() if k != "limit" and v},
                             self.source(request))
            return rows
        return json_response(await run_in_threadpool(run))

    async def audit_verify(self, request: Request, actor) -> Response:
        from hub.domains import audit
        from hub.domains.access import authorize
        from hub.errors import TamperError

        authorize(actor, "audit.read")

        def run():
            try:
                report = audit.verify(self.db)
                out = {"ok": True, "entries": report.entries, "head_seq": report.head_seq,
                       "head_hash": report.head_hash, "checkpoints": report.checkpoints}
            except TamperError as err:
                out = {"ok": False, "fault": str(err)}
            with self.db.transaction() as tx:
                audit.record(tx, self.clock, actor, "audit.verify", "audit",
                             {"ok": out["ok"], "fault": out.get("fault")}, self.source(request))
            return out
        return json_response(await run_in_threadpool(run))

    async def users_list(self, request: Request, actor) -> Response:
        from hub.domains.access import authorize
        from hub.domains.access.users import list_users

        authorize(actor, "users.read")

        def run():
            with self.db.read() as tx:
                return list_users(tx, self.config.limits.users_max)
        return json_response(await run_in_threadpool(run))

    async def users_show(self, request: Request, actor) -> Response:
        from hub.domains.access import authorize
        from hub.domains.access.users import get_user

        authorize(actor, "users.read")
        name = _name(request.path_params["name"], "user name")

        def run():
            with self.db.read() as tx:
                return get_user(tx, name)
        return json_response(await run_in_threadpool(run))

    async def users_add(self, request: Request, actor) -> Response:
        from hub.domains.access import authorize
        from hub.domains.access.users import add_user

        authorize(actor, "users.manage")
        data = await read_json(request, self.max_body)
        _fields(data, {"name", "role"}, {"regions", "stores"})
        if not isinstance(data["name"], str) or not isinstance(data["role"], str):
            raise Invalid("name and role must be strings")
        regions, stores = _str_list(data, "regions"), _str_list(data, "stores")

        def run():
            with self.db.transaction() as tx:
                return add_user(tx, self.clock, actor, data["name"], data["role"],
                                regions=regions, stores=stores, source=self.source(request),
                                max_users=self.config.limits.users_max)
        user, token = await run_in_threadpool(run)
        return json_response({"token": token, "user": user}, 201,
                             {"Cache-Control": "no-store"})

    async def users_disable(self, request: Request, actor) -> Response:
        from hub.domains.access.users import disable_user

        name = _name(request.path_params["name"], "user name")

        def run():
            with self.db.transaction() as tx:
                return disable_user(tx, self.clock, actor, name, source=self.source(request))
        return json_response(await run_in_threadpool(run))

    async def users_rotate(self, request: Request, actor) -> Response:
        from hub.domains.access.users import rotate_token

        name = _name(request.path_params["name"], "user name")

        def run():
            with self.db.transaction() as tx:
                return rotate_token(tx, self.clock, actor, name, source=self.source(request))
        user, token = await run_in_threadpool(run)
        return json_response({"token": token, "user": user}, headers={"Cache-Control": "no-store"})

    # the control plane (docs/commands.md) ----------------------------------------------

    def _ring(self):
        """The hub's key ring (keys.directory or the default folder), opened once."""
        if getattr(self, "_key_ring", None) is None:
            from pathlib import Path

            from hub.keys import KeyRing, KeyringError, default_dir, passphrase_from

            directory = self.config.keys.directory or default_dir()
            try:
                passphrase = (Path(self.config.keys.passphrase_file).read_bytes().strip()
                              if self.config.keys.passphrase_file else passphrase_from(None))
                self._key_ring = KeyRing.load(directory, passphrase)
            except (KeyringError, OSError) as err:
                log.warning("api: no key ring: %s", err)
                raise ApiError(503, "this hub has no usable signing key (edge-hub keys init; "
                                    "keys.directory)") from err
        return self._key_ring

    async def command_issue(self, request: Request, actor) -> Response:
        from edge_protocol.commands import CommandError
        from hub.control import command_region, request_approval
        from hub.domains.commands import rules

        data = await read_json(request, self.max_body)
        _fields(data, {"store", "action"}, {"device", "args", "expires_s", "region"})
        store = _name(data["store"], "store") if isinstance(data["store"], str) else None
        if store is None or not isinstance(data["action"], str):
            raise Invalid("store and action must be strings")
        device = data.get("device")
        if device is not None and not isinstance(device, str):
            raise Invalid("device must be a string")
        given = data.get("region")   # only for a store the hub has not seen yet
        if given is not None and not isinstance(given, str):
            raise Invalid("region must be a string")
        if given is not None:
            _name(given, "region")
        args = data.get("args", {})
        expires = data.get("expires_s", 600)
        if not isinstance(args, dict) or isinstance(expires, bool) or \
                not isinstance(expires, (int, float)):
            raise Invalid("args must be an object and expires_s a number")
        ring = self._ring()

        def run():
            with self.db.transaction() as tx:
                region = command_region(tx, store, given)
                return rules.issue(tx, self.clock, actor, store=store, region=region,
                                   device=device, action=data["action"], args=args,
                                   expires_s=float(expires), ring=ring,
                                   approvals=request_approval, source=self.source(request))
        try:
            row = await run_in_threadpool(run)
        except CommandError as err:
            raise Invalid(f"{err.code}: {err.detail}") from err
        return json_response(row, 201)

    async def commands_list(self, request: Request, actor) -> Response:
        from hub.domains.access import scope
        from hub.domains.commands import rules

        sc = scope(actor, "fleet.read")   # None: the whole chain; else its regions and stores
        store = _opt_name(request, "store")
        limit = _int(request, "limit", 50, 1, min(1000, self.list_max))

        def run():
            with self.db.read() as tx:
                return rules.list_commands(tx, store=store, limit=limit, scope=sc)
        return json_response(await run_in_threadpool(run))

    def _command(self, actor, cmd_id: str, action: str | None = None) -> dict:
        from hub.domains.access import authorize
        from hub.domains.commands import rules

        with self.db.read() as tx:
            row = rules.get(tx, cmd_id)
        authorize(actor, "fleet.read", store=row["store"], region=row["region"])
        return row

    async def command_show(self, request: Request, actor) -> Response:
        cmd_id = _uuid(request.path_params["command_id"])
        return json_response(await run_in_threadpool(self._command, actor, cmd_id))

    async def command_approve(self, request: Request, actor) -> Response:
        from hub.domains.commands import rules

        cmd_id = _uuid(request.path_params["command_id"])
        await run_in_threadpool(self._command, actor, cmd_id)
        ring = self._ring()

        from hub.control import approve_command

        try:  # through the approvals domain (its rules), then signed and queued
            return json_response(await run_in_threadpool(
                approve_command, self.db, self.clock, actor, cmd_id, ring))
        except rules.ApprovalError as err:
            raise ApiError(409, str(err)) from err

    async def flags_show(self, request: Request, actor) -> Response:
        from hub.domains.access import authorize
        from hub.domains.flags import rules as flags

        authorize(actor, "fleet.read")

        def run():
            with self.db.read() as tx:
                return flags.overview(tx)
        return json_response(await run_in_threadpool(run))

    async def flags_set(self, request: Request, actor) -> Response:
        from hub.control import known_stores
        from hub.domains.flags import rules as flags

        data = await read_json(request, self.max_body)
        _fields(data, {"name", "value", "scope"}, set())
        if not isinstance(data["name"], str) or not isinstance(data["scope"], str) or \
                not isinstance(data["value"], bool):
            raise Invalid("name and scope must be strings, value true or false")
        ring = self._ring()

        def run():
            with self.db.transaction() as tx:
                return flags.set_flag(tx, self.clock, actor, data["scope"], data["name"],
                                      data["value"], ring, region_of=known_stores(tx),
                                      source=self.source(request))
        try:
            changed = await run_in_threadpool(run)
        except ValueError as err:
            raise Invalid(str(err)) from err
        return json_response({"name": data["name"], "value": data["value"],
                              "scope": data["scope"], "changed": changed})

    # tickets and approvals (docs/tickets.md, docs/approvals.md) ----------------------

    async def tickets_list(self, request: Request, actor) -> Response:
        from hub.domains.access import scope
        from hub.domains.tickets import rules as tickets

        sc = scope(actor, "tickets.read")   # Forbidden for a role without it
        open_only, store = _flag(request, "open"), _opt_name(request, "store")
        limit = _int(request, "limit", self.list_max, 1, self.list_max)

        def run():
            with self.db.read() as tx:
                rows = tickets.list_tickets(tx, open_only=open_only, store=store,
                                            limit=limit if sc is None else self.list_max * 10)
            if sc is not None:
                rows = [r for r in rows if sc.admits(r["store"], r["region"])][:limit]
            return rows
        return json_response(await run_in_threadpool(run))

    async def tickets_show(self, request: Request, actor) -> Response:
        from hub.domains.access import authorize
        from hub.domains.tickets import rules as tickets

        tid = _int_id(request.path_params["ticket_id"], "ticket id")

        def run():
            with self.db.read() as tx:
                t = tickets.show(tx, tid)
            authorize(actor, "tickets.read", store=t["store"], region=t["region"])
            return t
        return json_response(await run_in_threadpool(run))

    async def tickets_retry(self, request: Request, actor) -> Response:
        from hub.domains.access import authorize, scope
        from hub.domains.tickets import rules as tickets

        scope(actor, "tickets.write")   # Forbidden for a role without it, before any lookup
        tid = _int_id(request.path_params["ticket_id"], "ticket id")
        _fields(await _optional_json(request, self.max_body), set(), set())   # {} at most
        source = self.source(request)

        def run():
            with self.db.transaction() as tx:
                t = tickets.show(tx, tid)
                authorize(actor, "tickets.write", store=t["store"], region=t["region"])
                n = tickets.retry(tx, self.clock, tid, actor, source=source)
            return {"ticket": tid, "requeued": n}
        return json_response(await run_in_threadpool(run))

    def _expire_approvals(self) -> None:
        from hub.domains import approvals

        with self.db.transaction() as tx:   # an expired request says so, and is audited
            approvals.expire(tx, self.clock)

    async def approvals_list(self, request: Request, actor) -> Response:
        from hub.domains import approvals
        from hub.domains.access import scope

        scope(actor, "tickets.read")   # Forbidden for a role that may read none
        pending = _flag(request, "pending")
        limit = _int(request, "limit", self.list_max, 1, self.list_max)

        def run():
            self._expire_approvals()
            with self.db.read() as tx:
                rows = approvals.list_requests(tx, pending_only=pending,
                                               limit=self.list_max * 10)
            return [r for r in rows if approvals.visible_to(actor, r)][:limit]
        return json_response(await run_in_threadpool(run))

    def _approval(self, tx, actor, rid: int) -> dict:
        from hub.domains import approvals
        from hub.domains.access import authorize

        r = approvals.show(tx, rid)
        if not approvals.visible_to(actor, r):
            if r["chain_wide"]:
                authorize(actor, "tickets.read")
            authorize(actor, "tickets.read", store=r["store"], region=r["region"])
        return r

    async def approvals_show(self, request: Request, actor) -> Response:
        rid = _int_id(request.path_params["approval_id"], "approval id")

        def run():
            self._expire_approvals()
            with self.db.read() as tx:
                return self._approval(tx, actor, rid)
        return json_response(await run_in_threadpool(run))

    async def approvals_approve(self, request: Request, actor) -> Response:
        from hub.domains import approvals

        rid = _int_id(request.path_params["approval_id"], "approval id")
        data = await _optional_json(request, self.max_body)
        _fields(data, set(), {"reason", "hash"})
        reason, seen = data.get("reason", ""), data.get("hash")
        if not isinstance(reason, str) or (seen is not None and not (
                isinstance(seen, str) and re.fullmatch(r"[0-9a-f]{64}", seen))):
            raise Invalid("reason must be a string and hash 64 hexadecimal digits")

        source = self.source(request)

        def run():
            with self.db.transaction() as tx:
                self._approval(tx, actor, rid)
                # Without a hash: the action as stored now, read in this same transaction
                # (as `edge-hub approvals approve` without --hash).
                h = seen or approvals.show(tx, rid)["payload_hash"]
                return approvals.approve(tx, self.clock, actor, rid, h, reason, source=source)
        return json_response(await run_in_threadpool(run))

    async def approvals_deny(self, request: Request, actor) -> Response:
        from hub.domains import approvals

        rid = _int_id(request.path_params["approval_id"], "approval id")
        data = await read_json(request, self.max_body)
        _fields(data, {"reason"}, set())
        reason = data["reason"]
        if not isinstance(reason, str) or not reason.strip():
            raise Invalid("deny needs a reason (a non-empty string)")

        source = self.source(request)

        def run():
            with self.db.transaction() as tx:
                self._approval(tx, actor, rid)
                return approvals.deny(tx, self.clock, actor, rid, reason, source=source)
        return json_response(await run_in_threadpool(run))

    # bundles and rollouts (docs/rollout.md) -----------------------------------------

    async def bundles_list(self, request: Request, actor) -> Response:
        from hub.domains.access import authorize
        from hub.domains.rollout import rules as rollout

        authorize(actor, "rollouts.read")

        def run():
            with self.db.read() as tx:
                return rollout.list_bundles(tx)
        return json_response(await run_in_threadpool(run))

    async def rollouts_list(self, request: Request, actor) -> Response:
        from hub.domains.access import authorize
        from hub.domains.rollout import rules as rollout

        authorize(actor, "rollouts.read")

        def run():
            with self.db.read() as tx:
                return rollout.list_rollouts(tx)
        return json_response(await run_in_threadpool(run))

    async def rollouts_show(self, request: Request, actor) -> Response:
        from hub.domains.access import authorize
        from hub.domains.rollout import rules as rollout

        authorize(actor, "rollouts.read")
        rid = _uuid(request.path_params["rollout_id"], "rollout id")

        def run():
            with self.db.read() as tx:
                return rollout.status(tx, rid)
        return json_response(await run_in_threadpool(run))

    async def rollouts_start(self, request: Request, actor) -> Response:
        import dataclasses

        from hub.control import known_stores, rollout_refusal, store_sessions
        from hub.domains.access import authorize
        from hub.domains.rollout import rules as rollout

        authorize(actor, "devices.act")
        data = await read_json(request, self.max_body)
        _fields(data, {"bundle", "stages"}, {"soak_s", "urgent", "approval", "gates"})
        bundle, stages = data["bundle"], data["stages"]
        if not isinstance(bundle, str) or not re.fullmatch(r"[0-9a-f]{8,64}", bundle):
            raise Invalid("bundle: expected 8 to 64 hexadecimal digits of its sha256")
        if not isinstance(stages, str) or not stages.strip() or len(stages) > 4096:
            raise Invalid("stages: expected \"NAME=store,store; NAME=region:R; chain\"")
        soak = data.get("soak_s", 24 * 3600)
        urgent = data.get("urgent", False)
        if isinstance(soak, bool) or not isinstance(soak, (int, float)) or \
                not isinstance(urgent, bool):
            raise Invalid("soak_s must be a number of seconds and urgent true or false")
        approval = tuple(_str_list(data, "approval"))
        gates_in = data.get("gates", {})
        known = {f.name: f.type for f in dataclasses.fields(rollout.Gates)}
        if not isinstance(gates_in, dict) or any(
                k not in known or isinstance(v, bool) or not isinstance(v, (int, float))
                or v < 0 or ("float" not in str(known[k]) and not isinstance(v, int))
                for k, v in gates_in.items()):
            raise Invalid(f"gates: an object of {', '.join(known)}, each a number >= 0")
        gates = rollout.Gates(**gates_in)
        ring = self._ring()

        def run():
            with self.db.transaction() as tx:
                return rollout.start(tx, self.clock, actor, ring, bundle=bundle, stages=stages,
                                     stores=known_stores(tx), soak_s=float(soak),
                                     urgent=urgent, approvals=approval, gates=gates,
                                     sessions=store_sessions(tx))
        try:
            return json_response(await run_in_threadpool(run), 201)
        except rollout.RolloutError as err:   # 409 a rollout still going, else 400
            raise rollout_refusal(err, starting=True) from err

    async def rollouts_control(self, request: Request, actor) -> Response:
        from hub.control import known_stores, rollout_refusal, store_sessions
        from hub.domains.access import authorize
        from hub.domains.rollout import rules as rollout

        authorize(actor, "devices.act")
        rid = _uuid(request.path_params["rollout_id"], "rollout id")
        action = request.url.path.rsplit("/", 1)[1]   # one route per action, this function
        # Pausing and resuming sign nothing: they work on a hub without its key ring.
        ring = self._ring() if action in ("abort", "approve") else None

        def run():
            with self.db.transaction() as tx:
                return rollout.control(tx, self.clock, actor, ring, rid, action,
                                       known_stores(tx), store_sessions(tx))
        try:
            return json_response(await run_in_threadpool(run))
        except rollout.RolloutError as err:   # a state that does not allow it: 409
            raise rollout_refusal(err) from err

    def routes(self) -> list[Route]:
        r = self.route
        return [
            r("/v1/health", "GET", self.health, auth=False),
            r("/v1/openapi.json", "GET", self.openapi, auth=False),
            r("/v1/me", "GET", self.me),
            r("/v1/fleet", "GET", self.fleet, query={"region", "all", "limit"}),
            r("/v1/stores/{store}", "GET", self.store),
            r("/v1/devices", "GET", self.devices, query={"at_risk", "region", "store", "limit"}),
            r("/v1/alerts", "GET", self.alerts, query={"open", "region", "store", "limit"}),
            r("/v1/alerts/{alert_id}/ack", "POST", self.ack),
            r("/v1/rejects", "GET", self.rejects),
            r("/v1/audit", "GET", self.audit_list,
              query={"since", "actor", "store", "after", "limit"}),
            r("/v1/audit/verify", "GET", self.audit_verify),
            r("/v1/users", "GET", self.users_list),
            r("/v1/users", "POST", self.users_add),
            r("/v1/users/{name}", "GET", self.users_show),
            r("/v1/users/{name}/disable", "POST", self.users_disable),
            r("/v1/users/{name}/rotate-token", "POST", self.users_rotate),
            r("/v1/commands", "GET", self.commands_list, query={"store", "limit"}),
            r("/v1/commands", "POST", self.command_issue),
            r("/v1/commands/{command_id}", "GET", self.command_show),
            r("/v1/commands/{command_id}/approve", "POST", self.command_approve),
            r("/v1/flags", "GET", self.flags_show),
            r("/v1/flags", "POST", self.flags_set),
            r("/v1/tickets", "GET", self.tickets_list, query={"open", "store", "limit"}),
            r("/v1/tickets/{ticket_id}", "GET", self.tickets_show),
            r("/v1/tickets/{ticket_id}/retry", "POST", self.tickets_retry),
            r("/v1/approvals", "GET", self.approvals_list, query={"pending", "limit"}),
            r("/v1/approvals/{approval_id}", "GET", self.approvals_show),
            r("/v1/approvals/{approval_id}/approve", "POST", self.approvals_approve),
            r("/v1/approvals/{approval_id}/deny", "POST", self.approvals_deny),
            r("/v1/bundles", "GET", self.bundles_list),
            r("/v1/rollouts", "GET", self.rollouts_list),
            r("/v1/rollouts", "POST", self.rollouts_start),
            r("/v1/rollouts/{rollout_id}", "GET", self.rollouts_show),
            *(r(f"/v1/rollouts/{{rollout_id}}/{action}", "POST", self.rollouts_control)
              for action in ("pause", "resume", "abort", "approve")),
        ]


def create_app(db, config: HubConfig | None = None,
               clock: Callable[[], float] = time.time) -> Starlette:
    """The API as an ASGI application over an open hub database (migrated by the caller)."""
    api = Api(db, config or HubConfig(), clock)

    async def http_error(request: Request, exc: HTTPException) -> Response:
        return problem(exc.status_code, exc.detail if isinstance(exc.detail, str)
                       else TITLES.get(exc.status_code, "error"), request.url.path)

    async def crash(request: Request, exc: Exception) -> Response:
        log.exception("api: unexpected error on %s", request.url.path)
        return problem(500, "the hub could not answer", request.url.path)

    app = Starlette(routes=api.routes(),
                    exception_handlers={HTTPException: http_error, Exception: crash})
    app.state.api = api
    return app
