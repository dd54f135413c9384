"""STAND-IN (helper K) for helper U's hub.domains.access: the Actor and authorize() of the
domain contract, so that tickets and approvals can be written and tested before U's branch is
merged. U's module replaces this file on merge; nothing here is meant to survive it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hub.errors import Forbidden

ROLES = ("hq-admin", "it-operator", "regional-manager", "store-manager", "auditor")


@dataclass(frozen=True)
class Actor:
    """Who does something: a user, the system itself, or a local administrator (--db)."""

    kind: str            # "user" | "system" | "local"
    name: str
    role: str = ""
    regions: frozenset[str] = field(default_factory=frozenset)
    stores: frozenset[str] = field(default_factory=frozenset)


SYSTEM = Actor("system", "hub", "system")

# action -> roles allowed (stand-in matrix, limited to what tickets and approvals ask).
_ALLOWED = {
    "tickets.read": {"hq-admin", "it-operator", "regional-manager", "store-manager", "auditor"},
    "tickets.retry": {"hq-admin", "it-operator"},
    "approvals.read": {"hq-admin", "it-operator", "regional-manager", "store-manager", "auditor"},
    "approvals.request": {"hq-admin", "it-operator", "regional-manager", "store-manager"},
    "approvals.decide": {"hq-admin", "it-operator", "regional-manager", "store-manager"},
}
_CHAIN_WIDE = {"hq-admin", "it-operator"}  # roles whose scope is the whole chain


def authorize(actor: Actor, action: str, store: str | None = None,
              region: str | None = None) -> None:
    """Raise Forbidden unless the actor's role allows the action on that store/region."""
    if actor.kind in ("system", "local"):
        return
    if actor.role not in _ALLOWED.get(action, set()):
        raise Forbidden(f"{actor.name}: role {actor.role or '-'} may not {action}")
    if actor.role in _CHAIN_WIDE or actor.role == "auditor":
        return
    if store is None and region is None:
        raise Forbidden(f"{actor.name}: {action} on the whole chain needs a chain-wide role")
    if actor.role == "regional-manager":
        if region is None or region not in actor.regions:
            raise Forbidden(f"{actor.name}: region {region!r} is outside its scope")
        return
    if store is None or store not in actor.stores:
        raise Forbidden(f"{actor.name}: store {store!r} is outside its scope")


__all__ = ["Actor", "SYSTEM", "authorize", "ROLES"]
