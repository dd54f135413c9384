"""STAND-IN (helper C, until helper U's access domain is merged; U's version replaces this
file whole): the Actor and authorize() names of the domain contract, with just enough of a
matrix for commands and flags ("devices.act")."""

from __future__ import annotations

from dataclasses import dataclass, field

from hub.errors import HubError

KINDS = ("user", "system", "local")
SYSTEM_ROLE = "system"
LOCAL_ROLE = "local-admin"
_ALLOWED = {"hq-admin": {"devices.act", "keys.manage", "fleet.read"},
            "it-operator": {"devices.act", "fleet.read"},
            SYSTEM_ROLE: {"devices.act", "fleet.read"},
            LOCAL_ROLE: {"devices.act", "keys.manage", "fleet.read"}}


class Forbidden(HubError):
    """Role or scope does not allow the action."""


@dataclass(frozen=True)
class Actor:
    kind: str
    name: str
    role: str
    regions: frozenset[str] = field(default_factory=frozenset)
    stores: frozenset[str] = field(default_factory=frozenset)

    def describe(self) -> dict:
        return {"kind": self.kind, "name": self.name, "role": self.role,
                "regions": sorted(self.regions), "stores": sorted(self.stores)}


def system_actor(name: str = "edge-hub") -> Actor:
    return Actor("system", name, SYSTEM_ROLE)


def local_actor(name: str) -> Actor:
    return Actor("local", name, LOCAL_ROLE)


def authorize(actor: Actor, action: str, store: str | None = None,
              region: str | None = None) -> None:
    if action in _ALLOWED.get(actor.role, set()):
        return
    if store is not None and store in actor.stores and action == "fleet.read":
        return
    raise Forbidden(f"{actor.role} {actor.name} may not {action}")
