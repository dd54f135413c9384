"""Hub-to-store control messages: signed commands, their results, and signed feature flags.

A command (hub -> agent, `{prefix}/{region}/{store}/cmd`, QoS 1, not retained; it waits in the
store's persistent session while the store is offline):

    {"v": 1, "type": "command", "id": uuid, "store": str, "region": str, "device": str|null,
     "action": str, "args": {str: str|int|bool}, "issued": ts, "expires": ts, "seq": int,
     "kid": str, "sig": base64url, "endorse": [rotation statements]?}

The signature covers every field but sig and endorse (signing.signed_bytes). Flags (hub ->
agent, `{prefix}/{region}/{store}/flags`, QoS 1, retained):

    {"v": 1, "type": "flags", "store": str, "region": str, "version": int, "issued": ts,
     "flags": {name: bool}, "kid": str, "sig": base64url, "endorse": [...]?}

A result (agent -> hub through its outbox, envelope kind `cmd_result` on `.../cmd/result`):

    {"type": "command"|"flags", "command": uuid|null, "seq": int|null, "action": str|null,
     "status": done|failed|rejected|applied, "reason": str|null, "detail": str,
     "output": {...}, "rejects": {reason: count}, "flags_version": int|null, "ts": ts}

ACTIONS is the allow-list: each action names whether it needs a device and the schema of its
arguments. Every argument is bounded; strings match a pattern that leaves out shell
metacharacters (they are data, never a command line, and where the schema does not allow them
the command is refused). check_command() runs the checks that need no local state, in the
order the agent applies them: shape, signature, store, expiry; seq and id (state), action and
arguments (here, check_action), and local policy (the agent) come after.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Mapping

from edge_protocol import signing
from edge_protocol.errors import ProtocolError, SignatureError

VERSION = 1
MAX_COMMAND_BYTES = 16 * 1024     # a command payload larger than this is refused unread
MAX_ARGS_BYTES = 512              # canonical JSON of the arguments
MAX_ARGS = 8
MAX_LIFETIME_S = 7 * 86400        # expires - issued, at most
CLOCK_SKEW_S = 300.0              # a command issued this far in the agent's future is accepted
MAX_DETAIL = 300
MAX_OUTPUT_BYTES = 16 * 1024
MAX_FLAGS = 32
RESULT_KIND = "cmd_result"        # the envelope kind of results; topic .../cmd/result
FLAG_NAMES = ("scoring", "tickets", "remote_actions")  # default on; off is the kill switch
ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:\-]{0,63}\Z")
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")
REASON = re.compile(r"[a-z_]{1,40}\Z")
# Text a test receipt may print: letters, digits, space and . , : - _ / # only.
SAFE_TEXT = re.compile(r"[A-Za-z0-9 .,:_/#\-]{0,40}\Z")
STATUSES = ("done", "failed", "rejected", "applied")


class CommandError(ProtocolError):
    """A command refused; `code` is the reason it is counted by."""


@dataclass(frozen=True)
class Arg:
    """One argument: its type, and for strings a pattern, for integers a range."""

    kind: type
    pattern: re.Pattern | None = None
    lo: int = 0
    hi: int = 0
    doc: str = ""

    def check(self, name: str, value: Any) -> None:
        if self.kind is bool:
            if value is not True and value is not False:
                raise CommandError("bad_args", f"{name}: expected true or false")
        elif self.kind is int:
            if type(value) is not int or not self.lo <= value <= self.hi:
                raise CommandError("bad_args", f"{name}: expected an integer "
                                               f"{self.lo}..{self.hi}")
        elif self.kind is str:
            if not isinstance(value, str) or not (self.pattern and self.pattern.match(value)):
                raise CommandError("bad_args", f"{name}: not allowed (letters, digits, space "
                                               "and . , : _ / # - only, short)")
        else:  # pragma: no cover - ACTIONS uses only the three kinds
            raise CommandError("bad_args", f"{name}: unsupported type")


@dataclass(frozen=True)
class Action:
    """One allow-listed action: does it name a device (and which kinds), and its arguments."""

    name: str
    device: str  # "required", "optional" or "none"
    kinds: tuple[str, ...] = ()  # device kinds it applies to; () = any
    args: Mapping[str, Arg] = field(default_factory=dict)
    doc: str = ""
    impact: str = "low"  # "high": the hub may hold it for an approval


ACTIONS: dict[str, Action] = {a.name: a for a in (
    Action("repoll", "required", doc="poll a device now (a fresh reading)"),
    Action("test_print", "required", ("escpos",),
           {"force": Arg(bool, doc="print during trading hours too"),
            "text": Arg(str, SAFE_TEXT, doc="a line to print (40 safe characters)")},
           doc="print a short test receipt"),
    Action("recover", "required", ("escpos",),
           {"clear_buffer": Arg(bool, doc="DLE ENQ 2: also clear the receive buffer")},
           doc="recover a printer from a recoverable error (DLE ENQ 1)"),
    Action("reset", "required", ("escpos",), doc="reset a printer (DLE ENQ 2, then ESC @)",
           impact="high"),
    Action("reload_config", "none", doc="re-read the agent's config file"),
    Action("restart_agent", "none", doc="restart the agent's own service", impact="high"),
    Action("diagnostics", "optional", doc="collect a diagnostics snapshot"),
)}


# Timestamps ----------------------------------------------------------------------------------

def format_ts(epoch: float) -> str:
    dt = datetime.fromtimestamp(epoch, timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def parse_ts(text: Any, what: str = "ts") -> float:
    if not isinstance(text, str) or not 10 <= len(text) <= 40:
        raise CommandError("bad_message", f"{what}: expected an ISO 8601 time")
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as err:
        raise CommandError("bad_message", f"{what}: not an ISO 8601 time") from err
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


# Building (hub) ---------------------------------------------------------------------------

def check_action(action: Any, device: Any, args: Any) -> Action:
    """Check an action name, its device and its arguments against the allow-list."""
    if not isinstance(action, str) or action not in ACTIONS:
        shown = action[:40] if isinstance(action, str) else type(action).__name__
        raise CommandError("unknown_action", f"{shown!r} is not an allowed action")
    spec = ACTIONS[action]
    if device is not None and (not isinstance(device, str) or not ID.match(device)):
        raise CommandError("bad_args", "device: not a valid device id")
    if spec.device == "required" and device is None:
        raise CommandError("bad_args", f"{action} needs a device")
    if spec.device == "none" and device is not None:
        raise CommandError("bad_args", f"{action} takes no device")
    if not isinstance(args, dict):
        raise CommandError("bad_args", "args: expected an object")
    if len(args) > MAX_ARGS:
        raise CommandError("args_too_large", f"{len(args)} arguments > {MAX_ARGS}")
    try:
        size = len(signing.canonical(args))
    except ValueError as err:
        raise CommandError("bad_args", str(err)) from err
    if size > MAX_ARGS_BYTES:
        raise CommandError("args_too_large", f"{size} bytes of arguments > {MAX_ARGS_BYTES}")
    for name, value in args.items():
        if name not in spec.args:
            raise CommandError("bad_args", f"{str(name)[:40]!r}: not an argument of {action}")
        spec.args[name].check(name, value)
    return spec


def command_doc(*, cmd_id: str, store: str, region: str, device: str | None, action: str,
                args: Mapping[str, Any], issued: float, expires: float, seq: int) -> dict:
    """The unsigned command (the hub signs it with KeyRing.sign_document)."""
    check_action(action, device, dict(args))
    if not UUID.match(cmd_id) or not ID.match(store) or not ID.match(region):
        raise CommandError("bad_message", "id, store or region malformed")
    if not 0 < expires - issued <= MAX_LIFETIME_S:
        raise CommandError("bad_message", f"expiry must be within {MAX_LIFETIME_S} s of issue")
    return {"v": VERSION, "type": "command", "id": cmd_id, "store": store, "region": region,
            "device": device, "action": action, "args": dict(args),
            "issued": format_ts(issued), "expires": format_ts(expires), "seq": seq}


def flags_doc(*, store: str, region: str, version: int, issued: float,
              flags: Mapping[str, bool]) -> dict:
    if not ID.match(store) or not ID.match(region) or type(version) is not int or version < 1:
        raise CommandError("bad_message", "store, region or version malformed")
    if len(flags) > MAX_FLAGS or not all(isinstance(k, str) and REASON.match(k)
                                         and isinstance(v, bool) for k, v in flags.items()):
        raise CommandError("bad_message", "flags: names and booleans only")
    return {"v": VERSION, "type": "flags", "store": store, "region": region, "version": version,
            "issued": format_ts(issued), "flags": dict(flags)}


def encode(doc: Mapping[str, Any]) -> bytes:
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


# Checking (agent) ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Command:
    id: str
    store: str
    region: str
    device: str | None
    action: str
    args: dict
    issued: float
    expires: float
    seq: int
    kid: str


def peek_id(payload: bytes) -> tuple[str | None, int | None, str | None]:
    """Best effort (id, seq, action) of a refused payload, for the reject report."""
    try:
        data = json.loads(payload[:MAX_COMMAND_BYTES]) if len(payload) <= MAX_COMMAND_BYTES \
            else None
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None, None, None
    if not isinstance(data, dict):
        return None, None, None
    cid = data.get("id") if isinstance(data.get("id"), str) and UUID.match(data["id"]) else None
    seq = data.get("seq") if type(data.get("seq")) is int and 0 <= data["seq"] < 2**63 else None
    action = data.get("action")
    action = action if isinstance(action, str) and action in ACTIONS else None
    return cid, seq, action


def _load(payload: bytes, kind: str) -> dict:
    if len(payload) > MAX_COMMAND_BYTES:
        raise CommandError("oversized", f"{len(payload)} bytes > {MAX_COMMAND_BYTES}")
    try:
        data = json.loads(payload.decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as err:
        raise CommandError("not_json", str(err)[:120]) from err
    if not isinstance(data, dict):
        raise CommandError("bad_message", "not a JSON object")
    if data.get("v") != VERSION or data.get("type") != kind:
        raise CommandError("bad_message", f"not a version {VERSION} {kind}")
    return data


def _verify(data: dict, trusted: Mapping[str, bytes]) -> str:
    endorse = data.get("endorse")
    keys = trusted
    if endorse is not None:
        if not isinstance(endorse, list):
            raise CommandError("bad_message", "endorse: expected a list")
        keys = signing.extend_trust(trusted, [e for e in endorse if isinstance(e, dict)])
    try:
        return signing.verify_document(data, keys)
    except SignatureError as err:
        raise CommandError(err.code, err.detail) from err


def check_command(payload: bytes, *, store: str, trusted: Mapping[str, bytes],
                  now: float) -> Command:
    """Shape, signature against a trusted key, this store, not expired: or CommandError."""
    data = _load(payload, "command")
    kid = _verify(data, trusted)
    if data.get("store") != store:
        shown = data.get("store") if isinstance(data.get("store"), str) else "?"
        raise CommandError("wrong_store", f"for store {shown[:64]!r}")
    issued = parse_ts(data.get("issued"), "issued")
    expires = parse_ts(data.get("expires"), "expires")
    if expires <= now:
        raise CommandError("expired", f"expired {now - expires:.0f} s ago")
    if issued > now + CLOCK_SKEW_S:
        raise CommandError("not_yet_valid", f"issued {issued - now:.0f} s in the future")
    if expires - issued > MAX_LIFETIME_S:
        raise CommandError("bad_message", "lifetime too long")
    cid, seq = data.get("id"), data.get("seq")
    if not isinstance(cid, str) or not UUID.match(cid):
        raise CommandError("bad_message", "id: not a UUID")
    if type(seq) is not int or not 0 < seq < 2**63:
        raise CommandError("bad_message", "seq: expected a positive integer")
    region = data.get("region")
    if not isinstance(region, str) or not ID.match(region):
        raise CommandError("bad_message", "region: not an id")
    return Command(cid, store, region, data.get("device"), data.get("action"),
                   data.get("args"), issued, expires, seq, kid)


@dataclass(frozen=True)
class Flags:
    store: str
    version: int
    issued: float
    flags: dict
    kid: str


def check_flags(payload: bytes, *, store: str, trusted: Mapping[str, bytes]) -> Flags:
    data = _load(payload, "flags")
    kid = _verify(data, trusted)
    if data.get("store") != store:
        raise CommandError("wrong_store", "flags for another store")
    version, flags = data.get("version"), data.get("flags")
    if type(version) is not int or not 0 < version < 2**63:
        raise CommandError("bad_message", "version: expected a positive integer")
    if not isinstance(flags, dict) or len(flags) > MAX_FLAGS:
        raise CommandError("bad_message", "flags: expected an object")
    clean = {k: v for k, v in flags.items()
             if isinstance(k, str) and REASON.match(k) and isinstance(v, bool)}
    if len(clean) != len(flags):
        raise CommandError("bad_message", "flags: names and booleans only")
    return Flags(store, version, parse_ts(data.get("issued"), "issued"), clean, kid)


def check_result(body: Any) -> dict:
    """Validate a cmd_result body from a store (the hub's side)."""
    if not isinstance(body, dict):
        raise ProtocolError("bad_body", "expected an object")
    typ, status = body.get("type"), body.get("status")
    if typ not in ("command", "flags", "bundle") or status not in STATUSES:
        raise ProtocolError("bad_body", "type or status")
    cid = body.get("command")
    if cid is not None and (not isinstance(cid, str) or not UUID.match(cid)):
        raise ProtocolError("bad_body", "command: not a UUID")
    for key in ("seq", "flags_version", "bundle_version"):
        v = body.get(key)
        if v is not None and (type(v) is not int or not 0 <= v < 2**63):
            raise ProtocolError("bad_body", f"{key}: expected an integer")
    reason = body.get("reason")
    if reason is not None and (not isinstance(reason, str) or not REASON.match(reason)):
        raise ProtocolError("bad_body", "reason: expected a short code")
    if not isinstance(body.get("detail", ""), str):
        raise ProtocolError("bad_body", "detail: expected a string")
    rejects = body.get("rejects", {})
    if not isinstance(rejects, dict) or len(rejects) > 64 or not all(
            isinstance(k, str) and REASON.match(k) and type(v) is int and 0 <= v < 2**63
            for k, v in rejects.items()):
        raise ProtocolError("bad_body", "rejects: expected {reason: count}")
    if not isinstance(body.get("output", {}), dict):
        raise ProtocolError("bad_body", "output: expected an object")
    return body


__all__ = ["ACTIONS", "Action", "Arg", "Command", "CommandError", "Flags", "FLAG_NAMES",
           "check_action", "check_command", "check_flags", "check_result", "command_doc",
           "flags_doc", "encode", "format_ts", "parse_ts", "peek_id", "RESULT_KIND"]
