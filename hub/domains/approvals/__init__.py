"""Human approvals: an action that needs one waits here until the right people approve it.

A request is bound to the SHA-256 of its exact action (canonical JSON of the action's name and
payload): the approver approves that hash, which the CLI and API show, so a payload changed
after it was seen (or edited in the database) cannot be approved. Rules, each checked in
approve():

- the request is pending and not past `expires` (default 24 h; an expired one is marked so);
- the approver is not the requester (no self-approval) and has not voted on it already;
- the approver's role may decide approvals and its scope covers the request's store (or
  region); a chain-wide action needs a chain-wide role;
- a chain-wide action needs two distinct approvers; anything else one. One denial denies.
Every request, approval, denial, expiry and outcome is written to the audit log in the same
transaction. Running an approved action is the app's business (hub/ticketing/actions.py): it takes
`runnable()` rows, checks the hash again, runs, then calls `record_outcome()`.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Callable, Mapping

from hub.domains import audit
from hub.domains.access import Actor, authorize, system_actor
from hub.errors import Conflict, Forbidden, NotFound

SYSTEM = system_actor()   # the hub acting on its own

Clock = Callable[[], float]
DEFAULT_TTL_S = 24 * 3600.0
MAX_PAYLOAD = 16 * 1024
_COLS = ("id", "action", "payload", "payload_hash", "store", "region", "chain_wide",
         "required", "requester", "requester_kind", "status", "created", "expires", "decided",
         "outcome", "published")


def canonical(action: str, payload: Mapping[str, Any]) -> bytes:
    """The exact bytes an approval is bound to: sorted keys, no spaces, UTF-8."""
    return json.dumps({"action": action, "payload": payload}, sort_keys=True,
                      separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def action_hash(action: str, payload: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical(action, payload)).hexdigest()


def _row(tx, request_id: int) -> dict[str, Any]:
    tx.execute(f"SELECT {', '.join(_COLS)} FROM approval_requests WHERE id = ?", (request_id,))
    r = tx.fetchone()
    if r is None:
        raise NotFound(f"unknown approval request {request_id} (see `edge-hub approvals list`)")
    return dict(zip(_COLS, r))


def request(tx, clock: Clock, actor: Actor, action: str, payload: Mapping[str, Any], *,
            store: str | None = None, region: str | None = None, chain_wide: bool = False,
            ttl_s: float = DEFAULT_TTL_S) -> int:
    """Ask for an action to be approved; return the request's id."""
    if not action or len(action) > 100 or not action.replace("_", "").replace(".", "").isalnum():
        raise ValueError("action: letters, digits, '_' and '.' only, at most 100")
    if not chain_wide and store is None and region is None:
        raise ValueError("a request names its store or region, or is chain_wide")
    authorize(actor, "devices.act", store=store, region=region)   # may ask for it at all
    blob = canonical(action, payload)
    if len(blob) > MAX_PAYLOAD:
        raise ValueError(f"payload: at most {MAX_PAYLOAD} bytes")
    now = clock()
    tx.execute("INSERT INTO approval_requests (action, payload, payload_hash, store, region,"
               " chain_wide, required, requester, requester_kind, status, created, expires)"
               " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?)",
               (action, json.dumps(payload, sort_keys=True, separators=(",", ":")),
                hashlib.sha256(blob).hexdigest(), store, region, int(chain_wide),
                2 if chain_wide else 1, actor.name, actor.kind, now, now + ttl_s))
    tx.execute("SELECT MAX(id) FROM approval_requests WHERE requester = ? AND created = ?",
               (actor.name, now))
    rid = int(tx.fetchone()[0])
    audit.record(tx, clock, actor, "approval.request", f"approval:{rid}",
                 {"action": action, "hash": hashlib.sha256(blob).hexdigest(), "store": store,
                  "region": region, "chain_wide": chain_wide, "payload": dict(payload)})
    return rid


def _check_open(tx, clock: Clock, r: dict[str, Any]) -> None:
    if r["status"] != "pending":
        raise Conflict(f"approval request {r['id']} is {r['status']}, not pending")
    if clock() > r["expires"]:
        _expire_one(tx, clock, r["id"])
        raise Conflict(f"approval request {r['id']} has expired")


def _check_scope(actor: Actor, r: dict[str, Any]) -> None:
    if r["chain_wide"]:
        authorize(actor, "approvals.decide")
    else:
        authorize(actor, "approvals.decide", store=r["store"], region=r["region"])


def _intact(r: dict[str, Any]) -> bool:
    return action_hash(r["action"], json.loads(r["payload"])) == r["payload_hash"]


def approve(tx, clock: Clock, actor: Actor, request_id: int, seen_hash: str,
            reason: str = "", source: str | None = None) -> dict[str, Any]:
    """Approve the action whose hash the approver saw; return the request as it is now.
    `source` (api:ADDRESS, cli:HOST) goes in the audit entry.

    Raises Forbidden (self-approval, role, scope), Conflict (not pending, expired, the hash
    differs from the one seen or from the payload stored, a second vote), NotFound.
    """
    r = _row(tx, request_id)
    if actor.kind not in ("user", "local"):
        raise Forbidden("only a person approves an action")
    if actor.name == r["requester"]:
        raise Forbidden(f"{actor.name} requested this action and cannot approve it")
    _check_scope(actor, r)
    _check_open(tx, clock, r)
    if seen_hash != r["payload_hash"]:
        raise Conflict("the action is not the one you saw (its hash differs): show it again")
    if not _intact(r):
        audit.record(tx, clock, SYSTEM, "approval.tampered", f"approval:{request_id}",
                     {"stored_hash": r["payload_hash"]})
        raise Conflict("the stored action no longer matches its hash: refused")
    tx.execute("SELECT decision FROM approval_votes WHERE request_id = ? AND approver = ?",
               (request_id, actor.name))
    if tx.fetchone():
        raise Conflict(f"{actor.name} has already decided on request {request_id}")
    now = clock()
    tx.execute("INSERT INTO approval_votes (request_id, approver, role, decision, reason, at)"
               " VALUES (?, ?, ?, 'approve', ?, ?)",
               (request_id, actor.name, actor.role, reason[:500], now))
    tx.execute("SELECT COUNT(*) FROM approval_votes WHERE request_id = ?"
               " AND decision = 'approve'", (request_id,))
    votes = int(tx.fetchone()[0])
    done = votes >= r["required"]
    if done:
        tx.execute("UPDATE approval_requests SET status = 'approved', decided = ?"
                   " WHERE id = ? AND status = 'pending'", (now, request_id))
    audit.record(tx, clock, actor, "approval.approve", f"approval:{request_id}",
                 {"hash": seen_hash, "reason": reason[:500], "votes": votes,
                  "required": r["required"], "approved": done}, source)
    return show(tx, request_id)


def deny(tx, clock: Clock, actor: Actor, request_id: int, reason: str,
         source: str | None = None) -> dict[str, Any]:
    """Deny a request (the requester may withdraw its own); a reason is required. `source`
    goes in the audit entry."""
    if not reason.strip():
        raise ValueError("deny needs a reason")
    r = _row(tx, request_id)
    if actor.name != r["requester"]:
        _check_scope(actor, r)
    _check_open(tx, clock, r)
    now = clock()
    tx.execute("INSERT INTO approval_votes (request_id, approver, role, decision, reason, at)"
               " VALUES (?, ?, ?, 'deny', ?, ?) ON CONFLICT (request_id, approver) DO UPDATE"
               " SET decision = 'deny', reason = excluded.reason, at = excluded.at",
               (request_id, actor.name, actor.role, reason[:500], now))
    tx.execute("UPDATE approval_requests SET status = 'denied', decided = ? WHERE id = ?",
               (now, request_id))
    audit.record(tx, clock, actor, "approval.deny", f"approval:{request_id}",
                 {"reason": reason[:500]}, source)
    return show(tx, request_id)


def _expire_one(tx, clock: Clock, request_id: int) -> None:
    tx.execute("UPDATE approval_requests SET status = 'expired', decided = ? WHERE id = ?"
               " AND status = 'pending'", (clock(), request_id))
    if tx.rowcount:
        audit.record(tx, clock, SYSTEM, "approval.expire", f"approval:{request_id}", None)


def expire(tx, clock: Clock) -> list[int]:
    """Mark every pending request past its expiry expired; return their ids."""
    tx.execute("SELECT id FROM approval_requests WHERE status = 'pending' AND expires < ?",
               (clock(),))
    ids = [int(r[0]) for r in tx.fetchall()]
    for rid in ids:
        _expire_one(tx, clock, rid)
    return ids


def prune(tx, before: float) -> int:
    """Forget requests decided (denied, expired, executed, failed) before `before`; the audit
    log keeps what happened. Keeps the tables bounded."""
    tx.execute("DELETE FROM approval_votes WHERE request_id IN (SELECT id FROM"
               " approval_requests WHERE status IN ('denied', 'expired', 'executed', 'failed')"
               " AND decided < ?)", (before,))
    tx.execute("DELETE FROM approval_requests WHERE status IN ('denied', 'expired', 'executed',"
               " 'failed') AND decided < ?", (before,))
    return tx.rowcount


def runnable(tx, limit: int = 100) -> list[dict[str, Any]]:
    """Approved requests whose action has not run yet, oldest first."""
    tx.execute(f"SELECT {', '.join(_COLS)} FROM approval_requests WHERE status = 'approved'"
               " ORDER BY id LIMIT ?", (limit,))
    out = [dict(zip(_COLS, r)) for r in tx.fetchall()]
    for r in out:
        r["intact"] = _intact(r)
        r["payload"] = json.loads(r["payload"])
    return out


def start_run(tx, request_id: int) -> bool:
    """Take an approved request for running (in the transaction that runs it): False if
    another hub worker took it first, so an action runs once however many workers there are."""
    tx.execute("UPDATE approval_requests SET status = 'running' WHERE id = ?"
               " AND status = 'approved'", (request_id,))
    return tx.rowcount == 1


def record_outcome(tx, clock: Clock, request_id: int, ok: bool, detail: Any,
                   actor: Actor = SYSTEM) -> None:
    tx.execute("UPDATE approval_requests SET status = ?, outcome = ? WHERE id = ?"
               " AND status IN ('approved', 'running')",
               ("executed" if ok else "failed", json.dumps(detail, default=str)[:2000],
                request_id))
    if tx.rowcount:
        audit.record(tx, clock, actor, "approval.outcome", f"approval:{request_id}",
                     {"ok": ok, "detail": detail})


def show(tx, request_id: int) -> dict[str, Any]:
    r = _row(tx, request_id)
    r["payload"] = json.loads(r["payload"])
    r["chain_wide"] = bool(r["chain_wide"])
    tx.execute("SELECT approver, role, decision, reason, at FROM approval_votes"
               " WHERE request_id = ? ORDER BY at, approver", (request_id,))
    r["votes"] = [dict(zip(("approver", "role", "decision", "reason", "at"), v))
                  for v in tx.fetchall()]
    return r


def list_requests(tx, *, pending_only: bool = False, limit: int = 500) -> list[dict[str, Any]]:
    sql = f"SELECT {', '.join(_COLS)} FROM approval_requests"
    if pending_only:
        sql += " WHERE status = 'pending'"
    tx.execute(sql + " ORDER BY id DESC LIMIT ?", (limit,))
    out = [dict(zip(_COLS, r)) for r in tx.fetchall()]
    for r in out:
        r["payload"] = json.loads(r["payload"])
        r["chain_wide"] = bool(r["chain_wide"])
    return out


def visible_to(actor: Actor, r: Mapping[str, Any]) -> bool:
    """Whether an actor may see a request (its read scope covers the store or region)."""
    try:
        if r["chain_wide"]:
            authorize(actor, "tickets.read")
        else:
            authorize(actor, "tickets.read", store=r["store"], region=r["region"])
    except Forbidden:
        return False
    return True


def to_publish(tx, clock: Clock, limit: int = 200) -> list[dict[str, Any]]:
    """Pending requests not yet published (for edge/v1/approvals/{region}/{store}); marks them."""
    tx.execute(f"SELECT {', '.join(_COLS)} FROM approval_requests WHERE status = 'pending'"
               " AND published IS NULL ORDER BY id LIMIT ?", (limit,))
    now = clock()
    out = []
    for r in [dict(zip(_COLS, row)) for row in tx.fetchall()]:
        # Conditional: of two hub workers, one publishes each request.
        tx.execute("UPDATE approval_requests SET published = ? WHERE id = ?"
                   " AND published IS NULL", (now, r["id"]))
        if tx.rowcount == 1:
            r["payload"] = json.loads(r["payload"])
            out.append(r)
    return out


__all__ = ["request", "approve", "deny", "expire", "prune", "runnable", "start_run", "record_outcome", "show",
           "list_requests", "action_hash", "canonical", "to_publish", "visible_to"]
