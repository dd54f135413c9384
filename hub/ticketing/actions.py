"""Actions that need approval, and running them once approved (above the domains: it joins
the approvals domain to the domains that act).

    request_for_ticket(tx, clock, ask)   an action a ticket's cause table names, at tier
                                         "approval", becomes an approval request
    run_approved(db, clock)              every approved request whose hash still matches runs
                                         in one transaction with its outcome's audit entry

What runs today: dispatch_technician, replace_device, order_part and remote_reset add the
approved dispatch request to the problem's ticket (a comment the ITSM receives). A remote reset
becomes a signed command once the signed commands of the commands domain exist; until then it
is a request in the ticket for the store's IT.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Mapping

from hub.domains import approvals
from hub.domains.access import system_actor
from hub.domains.tickets import rules as tickets
from hub.errors import NotFound

SYSTEM = system_actor()   # the hub acting on its own
from hub.store import Store

log = logging.getLogger("hub.actions")

Clock = Callable[[], float]
KEEP_DECIDED_S = 90 * 86400.0   # decided requests kept this long (the audit log keeps all)

_WORDS = {"dispatch_technician": "Dispatch a technician",
          "replace_device": "Replace the device",
          "order_part": "Order the part",
          "remote_reset": "Reset the device remotely"}


def request_for_ticket(tx, clock: Clock, ask: Mapping[str, Any],
                       ttl_s: float = approvals.DEFAULT_TTL_S) -> int:
    """Turn a tickets.rules.Outcome approval ask into a request (the system asks)."""
    payload = {"ticket": ask["ticket"], "store": ask["store"], "device": ask["device"],
               "part": ask.get("part"), "cause": ask.get("cause")}
    return approvals.request(tx, clock, SYSTEM, ask["action"], payload, store=ask["store"],
                             region=ask.get("region"), ttl_s=ttl_s)


def _run(tx, clock: Clock, r: Mapping[str, Any]) -> Any:
    p = r["payload"]
    if r["action"] in _WORDS and isinstance(p.get("ticket"), int):
        voters = ", ".join(v["approver"] for v in approvals.show(tx, r["id"])["votes"]
                           if v["decision"] == "approve")
        text = (f"{_WORDS[r['action']]}: {p.get('part') or 'see the ticket'} for "
                f"{p.get('device')} at {p.get('store')} (likely cause: {p.get('cause')})."
                f" Approved by {voters} (approval #{r['id']}, action hash "
                f"{r['payload_hash'][:16]}).")
        intent = tickets.add_note(tx, clock, p["ticket"], text, SYSTEM)
        return {"ticket": p["ticket"], "intent": intent}
    raise ValueError(f"no runner for the action {r['action']!r}")


def run_approved(db: Store, clock: Clock) -> int:
    """Run approved actions; return how many ran (or failed, each recorded with its outcome)."""
    with db.transaction() as tx:
        approvals.expire(tx, clock)
        approvals.prune(tx, clock() - KEEP_DECIDED_S)
        # Approved commands (`command.*`) are signed and queued by the control plane
        # (hub.control.release_approved), which holds the hub's key.
        ready = [r for r in approvals.runnable(tx) if not r["action"].startswith("command.")]
    n = 0
    for r in ready:
        with db.transaction() as tx:
            if not approvals.start_run(tx, r["id"]):
                continue   # another hub worker runs it
            if not r["intact"]:
                approvals.record_outcome(tx, clock, r["id"], False,
                                         "the stored action does not match its hash")
                continue
            try:
                detail = _run(tx, clock, r)   # checks before it writes: nothing half-done
            except (ValueError, NotFound) as err:
                approvals.record_outcome(tx, clock, r["id"], False, str(err))
            else:
                approvals.record_outcome(tx, clock, r["id"], True, detail)
        n += 1
    return n
