"""STAND-IN (helper K) for helper U's hub.domains.access, with U's names (Actor, authorize,
system_actor, local_actor) and U's action names (tickets.read, tickets.write, devices.act,
approvals.decide), so that tickets and approvals run before U's branch is merged. U's module
replaces this file on merge; nothing here is meant to survive it.

One difference to settle on merge (docs/approvals.md): this stand-in lets a regional manager
and a store manager decide approvals inside their scope (the issue: "the approver must hold a
role and scope covering the store"); U's matrix, as of its branch today, gives
approvals.decide to hq-admin only. The tests of approvals hold under both.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hub.errors import Forbidden

ROLES = ("hq-admin", "it-operator", "regional-manager", "store-manager", "auditor")
SYSTEM_ROLE, LOCAL_ROLE = "system", "local-admin"
ALL, SCOPED = "all", "scoped"
ACTIONS = ("tickets.read", "tickets.write", "devices.act", "approvals.decide")
MATRIX = {
    "hq-admin": {a: ALL for a in ACTIONS},
    "it-operator": {"tickets.read": ALL, "tickets.write": ALL, "devices.act": ALL},
    "regional-manager": {"tickets.read": SCOPED, "approvals.decide": SCOPED},
    "store-manager": {"tickets.read": SCOPED, "approvals.decide": SCOPED},
    "auditor": {"tickets.read": ALL},
    SYSTEM_ROLE: {a: ALL for a in ACTIONS},
    LOCAL_ROLE: {a: ALL for a in ACTIONS},
}


@dataclass(frozen=True)
class Actor:
    """Who acts: a user, the hub itself ("system"), or a local administrator ("local")."""

    kind: str            # "user" | "system" | "local"
    name: str
    role: str
    regions: frozenset[str] = field(default_factory=frozenset)
    stores: frozenset[str] = field(default_factory=frozenset)


def system_actor(name: str = "edge-hub") -> Actor:
    return Actor("system", name, SYSTEM_ROLE)


def local_actor(name: str) -> Actor:
    return Actor("local", name, LOCAL_ROLE)


def authorize(actor: Actor, action: str, store: str | None = None,
              region: str | None = None) -> None:
    """Raise Forbidden unless the actor's role allows the action on that store/region."""
    if action not in ACTIONS:
        raise Forbidden(f"unknown action {action!r}")
    cell = MATRIX.get(actor.role, {}).get(action)
    if cell == ALL:
        return
    if cell == SCOPED and ((store is not None and store in actor.stores)
                           or (region is not None and region in actor.regions)):
        return
    if cell is None:
        raise Forbidden(f"{actor.name} ({actor.role}) may not {action}")
    raise Forbidden(f"{actor.name} ({actor.role}) may not {action} there: outside its scope")


__all__ = ["Actor", "authorize", "system_actor", "local_actor", "ROLES"]
