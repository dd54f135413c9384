"""Commands to stores: issue (signed, per-store seq), approve, claim for publishing, delivered,
results, expiry. Plain functions over (tx, clock); every change of state is audited in the
same transaction.

Status: awaiting_approval (a high-impact action) -> queued (signed, seq allocated) -> sending
(a hub worker claimed it) -> delivered (the broker took it for the store's persistent session)
-> done | failed | rejected (the agent's result), or expired (no result before its expiry).
A result only moves a command that is not finished yet, from the store it was sent to, and
only when the agent verified the command (a refusal of a forged copy changes nothing).
"""

from __future__ import annotations

import json
import uuid
from typing import Any, Callable

from edge_protocol import commands as proto
from hub.domains import audit
from hub.domains.access import authorize
from hub.errors import HubError, NotFound

Clock = Callable[[], float]
OPEN = ("awaiting_approval", "queued", "sending", "delivered")
FINAL = ("done", "failed", "rejected", "expired")
HIGH_IMPACT = frozenset(a.name for a in proto.ACTIONS.values() if a.impact == "high")
_COLUMNS = ("id", "store", "region", "device", "action", "args", "seq", "kid", "created",
            "expires_s", "issued", "expires", "status", "reason", "detail", "output",
            "actor", "approved_by", "delivered", "finished", "result_at")


class ApprovalError(HubError):
    """An approval that is not allowed (own request, not awaiting approval)."""


def _row(r: tuple) -> dict[str, Any]:
    d = dict(zip(_COLUMNS, r))
    d["args"] = json.loads(d["args"]) if d["args"] else {}
    d["output"] = json.loads(d["output"]) if d["output"] else {}
    return d


def get(tx: Any, cmd_id: str) -> dict[str, Any]:
    tx.execute(f"SELECT {', '.join(_COLUMNS)} FROM commands WHERE id = ?", (cmd_id,))
    r = tx.fetchone()
    if r is None:
        raise NotFound(f"no command {cmd_id[:64]!r}")
    return _row(r)


def list_commands(tx: Any, store: str | None = None, limit: int = 50,
                  scope: Any = None) -> list[dict[str, Any]]:
    """The newest commands first, at most `limit` (1-1000); only one store's with `store`, and
    only those inside `scope` (an access Scope: its regions and stores) when given."""
    where, params = (["store = ?"], [store]) if store else ([], [])
    if scope is not None:
        regions, stores = sorted(scope.regions), sorted(scope.stores)
        inside = ([f"region IN ({', '.join('?' * len(regions))})"] if regions else []) + \
            ([f"store IN ({', '.join('?' * len(stores))})"] if stores else [])
        where.append("(" + " OR ".join(inside) + ")" if inside else "1 = 0")
        params += regions + stores
    clause = ("WHERE " + " AND ".join(where)) if where else ""
    tx.execute(f"SELECT {', '.join(_COLUMNS)} FROM commands {clause} ORDER BY created DESC"
               f" LIMIT ?", (*params, max(1, min(limit, 1000))))
    return [_row(r) for r in tx.fetchall()]


def _next_seq(tx: Any, store: str) -> int:
    tx.execute("INSERT INTO command_seq (store, seq) VALUES (?, 0) ON CONFLICT (store) DO NOTHING",
               (store,))
    tx.execute("UPDATE command_seq SET seq = seq + 1 WHERE store = ?", (store,))
    tx.execute("SELECT seq FROM command_seq WHERE store = ?", (store,))
    return int(tx.fetchone()[0])


def _sign(tx: Any, clock: Clock, row: dict[str, Any], ring: Any) -> dict[str, Any]:
    now = clock()
    seq = _next_seq(tx, row["store"])
    doc = proto.command_doc(cmd_id=row["id"], store=row["store"], region=row["region"],
                            device=row["device"], action=row["action"], args=row["args"],
                            issued=now, expires=now + row["expires_s"], seq=seq)
    signed = ring.sign_document(doc)
    tx.execute("UPDATE commands SET seq = ?, kid = ?, issued = ?, expires = ?, payload = ?,"
               " status = 'queued' WHERE id = ?",
               (seq, signed["kid"], now, now + row["expires_s"],
                proto.encode(signed).decode("utf-8"), row["id"]))
    return dict(row, seq=seq, kid=signed["kid"], issued=now, expires=now + row["expires_s"],
                status="queued")


def issue(tx: Any, clock: Clock, actor: Any, *, store: str, region: str | None, device: str | None,
          action: str, args: dict[str, Any], expires_s: float, ring: Any,
          approvals: Callable[..., Any] | None = None,
          source: str | None = None) -> dict[str, Any]:
    """Create a command: checked against the allow-list, audited, signed and queued, or held
    for an approval when the action is high-impact (`approvals`, when given, is told).
    `source` is where the request came from, for the audit log (api:ADDRESS, cli:HOST)."""
    if not region:
        raise NotFound(f"store {store[:64]!r} has not reported yet; give its region "
                       "(--region)")
    authorize(actor, "devices.act", store=store, region=region)
    proto.check_action(action, device, args)
    if not 0 < expires_s <= proto.MAX_LIFETIME_S:
        raise proto.CommandError("bad_message", f"expiry must be 1 s .. {proto.MAX_LIFETIME_S} s")
    if not proto.ID.match(store) or not proto.ID.match(region):
        raise proto.CommandError("bad_message", "store or region: not a valid id")
    now = clock()
    row = {"id": str(uuid.uuid4()), "store": store, "region": region, "device": device,
           "action": action, "args": dict(args), "seq": None, "kid": None, "created": now,
           "expires_s": float(expires_s), "issued": None, "expires": None,
           "status": "awaiting_approval", "reason": None, "detail": None, "output": {},
           "actor": actor.name, "approved_by": None, "delivered": None, "finished": None,
           "result_at": None}
    tx.execute("INSERT INTO commands (id, store, region, device, action, args, created,"
               " expires_s, status, actor) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
               (row["id"], store, region, device, action, json.dumps(args, sort_keys=True),
                now, float(expires_s), "awaiting_approval", actor.name))
    detail = {"store": store, "region": region, "device": device, "action": action,
              "args": args, "expires_s": expires_s}
    if action in HIGH_IMPACT:
        audit.record(tx, clock, actor, "commands.request", f"command:{row['id']}", detail,
                     source)
        if approvals is not None:  # hub.control.request_approval: the approvals domain
            row["approval"] = approvals(tx, clock, actor, row, detail)
        return row
    row = _sign(tx, clock, row, ring)
    audit.record(tx, clock, actor, "commands.issue", f"command:{row['id']}",
                 dict(detail, seq=row["seq"], kid=row["kid"]), source)
    return row


def release(tx: Any, clock: Clock, cmd_id: str, ring: Any, approved_by: str) -> dict[str, Any]:
    """Sign and queue a command held for approval once the approvals domain approved it (the
    app checks the approval: its hash, its approvers' roles and scope)."""
    row = get(tx, cmd_id)
    if row["status"] != "awaiting_approval":
        raise ApprovalError(f"command {cmd_id} is {row['status']}, not awaiting approval")
    tx.execute("UPDATE commands SET approved_by = ? WHERE id = ?", (approved_by[:200], cmd_id))
    from hub.domains.access import system_actor

    row = _sign(tx, clock, dict(row, approved_by=approved_by), ring)
    audit.record(tx, clock, system_actor(), "commands.approve", f"command:{cmd_id}",
                 {"store": row["store"], "action": row["action"], "seq": row["seq"],
                  "approved_by": approved_by})
    return row


def approve(tx: Any, clock: Clock, actor: Any, cmd_id: str, ring: Any) -> dict[str, Any]:
    """Release a high-impact command held for approval (nobody approves their own)."""
    row = get(tx, cmd_id)
    if row["status"] != "awaiting_approval":
        raise ApprovalError(f"command {cmd_id} is {row['status']}, not awaiting approval")
    if actor.name == row["actor"]:
        raise ApprovalError("nobody approves their own request")
    authorize(actor, "devices.act", store=row["store"], region=row["region"])
    tx.execute("UPDATE commands SET approved_by = ? WHERE id = ?", (actor.name, cmd_id))
    row = _sign(tx, clock, dict(row, approved_by=actor.name), ring)
    audit.record(tx, clock, actor, "commands.approve", f"command:{cmd_id}",
                 {"store": row["store"], "action": row["action"], "seq": row["seq"]})
    return row


# The hub worker's side ------------------------------------------------------------------------

def work_waiting(tx: Any, clock: Clock) -> bool:
    """Whether claim() has anything to do (a read: the worker asks before it writes)."""
    tx.execute("SELECT 1 FROM commands WHERE status = 'queued' OR (status IN ('sending',"
               " 'delivered') AND expires < ?) LIMIT 1", (clock(),))
    return tx.fetchone() is not None


def claim(tx: Any, clock: Clock, owner: str, limit: int = 100) -> list[tuple[str, str, str, bytes]]:
    """Take queued commands to publish: [(id, region, store, payload)]; expire stale ones."""
    expire(tx, clock)
    tx.execute("SELECT id, region, store, payload FROM commands WHERE status = 'queued'"
               " ORDER BY store, seq LIMIT ?", (limit,))
    rows = tx.fetchall()
    out = []
    for cid, region, store, payload in rows:
        tx.execute("UPDATE commands SET status = 'sending', owner = ? WHERE id = ?"
                   " AND status = 'queued'", (owner, cid))
        if tx.rowcount == 1:
            out.append((cid, region, store, payload.encode("utf-8")))
    return out


def unclaim(tx: Any, cmd_ids: list[str]) -> None:
    """Put back commands whose publish failed (the connection went)."""
    for cid in cmd_ids:
        tx.execute("UPDATE commands SET status = 'queued', owner = NULL WHERE id = ?"
                   " AND status = 'sending'", (cid,))


def delivered(tx: Any, clock: Clock, cmd_id: str) -> None:
    """The broker acknowledged the publish. The agent's result may have come first (it is
    recorded by another thread): the time is kept, the status moves only from sending."""
    tx.execute("UPDATE commands SET delivered = ? WHERE id = ? AND delivered IS NULL",
               (clock(), cmd_id))
    tx.execute("UPDATE commands SET status = 'delivered' WHERE id = ? AND status = 'sending'",
               (cmd_id,))


def expire(tx: Any, clock: Clock) -> int:
    """Commands past their expiry without a result: expired (the agent refuses them anyway)."""
    now = clock()
    tx.execute("SELECT id, store FROM commands WHERE status IN ('queued', 'sending', 'delivered')"
               " AND expires < ?", (now,))
    rows = tx.fetchall()
    from hub.domains.access import system_actor

    for cid, store in rows:
        tx.execute("UPDATE commands SET status = 'expired', finished = ? WHERE id = ?",
                   (now, cid))
        audit.record(tx, clock, system_actor(), "commands.expire", f"command:{cid}",
                     {"store": store, "reason": "no result before its expiry"})
    return len(rows)


def record_result(tx: Any, clock: Clock, store: str, region: str, body: dict[str, Any],
                  envelope_id: str | None = None) -> str:
    """Take a cmd_result from a store (body checked by proto.check_result); return what it did:
    'updated', 'ignored' (finished already, another store's, or unverified) or 'counted'."""
    from hub.domains.access import system_actor

    now = clock()
    for reason, count in (body.get("rejects") or {}).items():
        tx.execute("INSERT INTO command_rejects (store, reason, count, at) VALUES (?, ?, ?, ?)"
                   " ON CONFLICT (store, reason) DO UPDATE SET count = excluded.count,"
                   " at = excluded.at", (store, reason, count, now))
    if body.get("type") != "command":
        return "counted"
    cid = body.get("command")
    outcome = "counted"
    if cid is not None and body.get("verified") is True:
        tx.execute("UPDATE commands SET status = ?, reason = ?, detail = ?, output = ?,"
                   " finished = ?, result_at = ? WHERE id = ? AND store = ? AND status IN"
                   " ('queued', 'sending', 'delivered')",
                   (body["status"], body.get("reason"), str(body.get("detail", ""))[:300],
                    json.dumps(body.get("output") or {}, sort_keys=True)[:16384], now, now,
                    cid, store))
        outcome = "updated" if tx.rowcount == 1 else "ignored"
    audit.record(tx, clock, system_actor(),
                 "commands.refused" if body["status"] == "rejected" else "commands.result",
                 f"command:{cid}" if cid else f"store:{store}",
                 {"store": store, "region": region, "status": body["status"],
                  "reason": body.get("reason"), "action": body.get("action"),
                  "seq": body.get("seq"), "applied": outcome, "envelope": envelope_id},
                 source=f"store:{store}")
    return outcome


def rejects(tx: Any, store: str | None = None) -> dict[str, dict[str, int]]:
    """{store: {reason: count}} as the stores last reported."""
    where, params = ("WHERE store = ?", (store,)) if store else ("", ())
    tx.execute(f"SELECT store, reason, count FROM command_rejects {where} ORDER BY store, reason",
               params)
    out: dict[str, dict[str, int]] = {}
    for s, reason, count in tx.fetchall():
        out.setdefault(s, {})[reason] = int(count)
    return out
