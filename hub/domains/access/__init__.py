"""Who may do what: actors, roles, scopes, and the one check every action goes through.

    actor = Actor("user", "ann", "regional-manager", regions=frozenset({"north"}))
    authorize(actor, "alerts.ack", store="s1", region="north")   # or raises Forbidden

The permission matrix is in matrix.py (one place; docs/access.md shows it). Scope: a scoped
role acts on a store when the store is in its stores or the store's region in its regions;
callers pass the store's region with the store (from the fleet tables). An action with neither
store nor region means the whole chain: only roles with ALL on it pass. Lists are filtered with
`scope(actor)` instead, so a regional manager's fleet view shows its regions only.

Users and tokens are in users.py (imported on use: it records audit entries).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hub.domains.access.matrix import (ACTIONS, ALL, LOCAL_ROLE, MATRIX, ROLES, SCOPED,
                                       SCOPED_ROLES, SYSTEM_ROLE, cell)
from hub.errors import Forbidden

KINDS = ("user", "system", "local")


@dataclass(frozen=True)
class Actor:
    """Who acts: a user (by API token), the hub itself ("system"), or a local administrator
    on the hub host ("local", through --db)."""

    kind: str
    name: str
    role: str
    regions: frozenset[str] = field(default_factory=frozenset)
    stores: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"actor kind must be one of {KINDS}, got {self.kind!r}")
        if self.role not in MATRIX:
            raise ValueError(f"unknown role {self.role!r}")

    def describe(self) -> dict:
        """The actor as the audit log records it."""
        return {"kind": self.kind, "name": self.name, "role": self.role,
                "regions": sorted(self.regions), "stores": sorted(self.stores)}


def system_actor(name: str = "edge-hub") -> Actor:
    """The hub acting on its own (the decision that caused it goes in the audit detail)."""
    return Actor("system", name, SYSTEM_ROLE)


def local_actor(name: str) -> Actor:
    """An administrator on the hub host, working on the database directly (--db)."""
    return Actor("local", name, LOCAL_ROLE)


def in_scope(actor: Actor, store: str | None = None, region: str | None = None) -> bool:
    """Whether a store (with its region) or a region is inside the actor's scope."""
    if store is not None and store in actor.stores:
        return True
    return region is not None and region in actor.regions


def allows(actor: Actor, action: str, store: str | None = None,
           region: str | None = None) -> bool:
    """Whether the matrix lets the actor do the action there (authorize() without raising)."""
    if action not in ACTIONS:
        return False
    c = cell(actor.role, action)
    if c == ALL:
        return True
    if c == SCOPED:
        return in_scope(actor, store, region)
    return False


def authorize(actor: Actor, action: str, store: str | None = None,
              region: str | None = None) -> None:
    """Raise Forbidden unless the actor's role allows the action, there."""
    if action not in ACTIONS:  # a typo in a caller must not become an open door
        raise Forbidden(f"unknown action {action!r}")
    if allows(actor, action, store, region):
        return
    where = (f" on store {store}" if store else "") + (f" in region {region}" if region else "")
    if cell(actor.role, action) is None:
        raise Forbidden(f"{actor.name} ({actor.role}) may not {action}")
    raise Forbidden(f"{actor.name} ({actor.role}) may not {action}{where or ' chain-wide'}: "
                    "outside its scope")


@dataclass(frozen=True)
class Scope:
    """What a scoped actor may see of an action: its regions and stores (lists filter by it)."""

    regions: frozenset[str]
    stores: frozenset[str]

    def admits(self, store: str, region: str) -> bool:
        return store in self.stores or region in self.regions


def scope(actor: Actor, action: str) -> Scope | None:
    """None when the actor may do the action chain-wide; its Scope when only inside it.

    Raises Forbidden when the role may not do the action at all.
    """
    c = cell(actor.role, action) if action in ACTIONS else None
    if c == ALL:
        return None
    if c == SCOPED:
        return Scope(actor.regions, actor.stores)
    raise Forbidden(f"{actor.name} ({actor.role}) may not {action}")


__all__ = ["Actor", "Scope", "authorize", "allows", "scope", "in_scope", "system_actor",
           "local_actor", "ROLES", "ACTIONS", "MATRIX", "ALL", "SCOPED", "SCOPED_ROLES",
           "SYSTEM_ROLE", "LOCAL_ROLE", "KINDS"]
