"""The ticket policy: which alert families open tickets, where they go, what needs approval.

This is the `[tickets]` section of the hub configuration (hub/config.py holds it as
`HubConfig.tickets`; `parse()` turns the TOML table into it, naming the key path of any
mistake). Everything is a frozen dataclass: the rules read it, never change it.

    [tickets]
    repeat_comment_s = 3600        # at most one comment a ticket per hour for repeats/clears
    resolve_on_clear = true
    resolve_after_s = 900          # a clear must hold 15 min before the ticket is resolved
    reopen_within_s = 604800       # a recurrence within 7 days of resolving reopens the ticket

    [[tickets.families]]
    what = "failed"                # the alert's `what`
    ticket = "incident"            # incident | maintenance | task | none
    priority = "high"              # critical | high | medium | low
    tags = ["failed"]

    [[tickets.routes]]             # first match wins; none matches: the ticket is not delivered
    connector = "servicenow"       # a [tickets.connectors.NAME] table
    regions = ["north"]            # empty: every region
    stores = ["flagship-*"]        # a store group as shell patterns; empty: every store
    assignment_group = "Store IT North"
    project = "OPS"
    brand = ""

    [tickets.actions]              # per-action tier: automatic | approval | recommend
    open_ticket = "automatic"
    dispatch_technician = "approval"

    [tickets.connectors.servicenow]
    type = "servicenow"            # the rest is the connector's own (docs/tickets.md)
    url = "https://example.service-now.com"
"""

from __future__ import annotations

import fnmatch
import hashlib
import types
from dataclasses import dataclass, field
from typing import Any, Mapping

from hub.errors import HubError

TICKET_KINDS = ("incident", "maintenance", "task", "none")
PRIORITIES = ("critical", "high", "medium", "low")
TIERS = ("automatic", "approval", "recommend")
CONNECTOR_TYPES = ("servicenow", "jira", "zendesk", "pagerduty", "webhook")


class PolicyError(HubError):
    """A mistake in the [tickets] section; the message starts with the key path."""


@dataclass(frozen=True)
class FamilyRule:
    """What an alert family (the alert's `what`) does: which ticket, at which priority."""

    what: str
    ticket: str = "incident"
    priority: str = "medium"
    tags: tuple[str, ...] = ()
    family: str = ""     # the problem family in the fingerprint; empty: `what` itself

    @property
    def problem(self) -> str:
        return self.family or self.what


@dataclass(frozen=True)
class Route:
    """Where a store's tickets go: the first route whose regions and store group match."""

    connector: str
    regions: tuple[str, ...] = ()
    stores: tuple[str, ...] = ()
    assignment_group: str = ""
    project: str = ""
    brand: str = ""

    def matches(self, store: str, region: str) -> bool:
        if self.regions and region not in self.regions:
            return False
        return not self.stores or any(fnmatch.fnmatchcase(store, p) for p in self.stores)


@dataclass(frozen=True)
class ConnectorSpec:
    """One outside system: a name, its type and its own settings (checked by its init())."""

    name: str
    type: str
    settings: Mapping[str, Any] = field(default_factory=lambda: types.MappingProxyType({}))


@dataclass(frozen=True)
class DeliveryPolicy:
    """[tickets.delivery]: how the delivery worker leases, retries and breaks circuits."""

    lease_s: float = 120.0
    batch: int = 10
    backoff_base_s: float = 1.0
    backoff_max_s: float = 300.0
    jitter: float = 0.2
    breaker_failures: int = 5
    breaker_open_s: float = 30.0
    idle_s: float = 0.2
    tick_every_s: float = 5.0


_DELIVERY_LIMITS = {"lease_s": (5, 3600), "batch": (1, 500), "backoff_base_s": (0.01, 600),
                    "backoff_max_s": (0.1, 86400), "jitter": (0, 1),
                    "breaker_failures": (1, 1000), "breaker_open_s": (0.1, 3600),
                    "idle_s": (0.01, 10), "tick_every_s": (0.1, 3600)}


DEFAULT_FAMILIES = (
    FamilyRule("failed", "incident", "high", ("failed",)),
    FamilyRule("predicted_failure", "maintenance", "low", ("predicted_failure",)),
    FamilyRule("offline", "incident", "medium", ("offline",)),
    FamilyRule("disk_full", "incident", "medium", ("disk_full",)),
    FamilyRule("cutter_error", "task", "low", ("cutter_error",)),
)

DEFAULT_ACTIONS = types.MappingProxyType({
    "open_ticket": "automatic",
    "comment": "automatic",
    "resolve": "automatic",
    "dispatch_technician": "approval",
    "replace_device": "approval",
    "remote_reset": "approval",
    "order_part": "recommend",
})


@dataclass(frozen=True)
class TicketPolicy:
    """The [tickets] section."""

    enabled: bool = True
    families: tuple[FamilyRule, ...] = DEFAULT_FAMILIES
    routes: tuple[Route, ...] = ()
    actions: Mapping[str, str] = field(default_factory=lambda: DEFAULT_ACTIONS)
    connectors: tuple[ConnectorSpec, ...] = ()
    repeat_comment_s: float = 3600.0
    resolve_on_clear: bool = True
    resolve_after_s: float = 900.0
    reopen_within_s: float = 7 * 86400.0
    max_attempts_age_s: float = 3 * 86400.0   # an intent undelivered this long is given up
    keep_done_s: float = 30 * 86400.0         # delivered or cancelled intents kept this long
    store_hints: Mapping[str, str] = field(default_factory=lambda: types.MappingProxyType({}))
    delivery: DeliveryPolicy = field(default_factory=DeliveryPolicy)

    def rule_for(self, what: str) -> FamilyRule | None:
        for rule in self.families:
            if rule.what == what:
                return rule if rule.ticket != "none" else None
        return None

    def route_for(self, store: str, region: str) -> Route | None:
        for route in self.routes:
            if route.matches(store, region):
                return route
        return None

    def tier(self, action: str) -> str:
        return self.actions.get(action, "recommend")

    def connector(self, name: str) -> ConnectorSpec | None:
        return next((c for c in self.connectors if c.name == name), None)


def fingerprint(store: str, device: str, family: str) -> str:
    """The stable fingerprint of one problem: the same store, device and family, ever."""
    return hashlib.sha256(f"retail-edge\0{store}\0{device}\0{family}".encode()).hexdigest()


def correlation(fp: str, generation: int) -> str:
    """The correlation key of one ticket of a problem (a later ticket gets generation + 1).

    Letters, digits and dashes only, 48 characters: fits a Jira label, a ServiceNow
    correlation_id (100), a Zendesk external_id and a PagerDuty dedup_key (255).
    """
    return f"retail-edge-{fp[:32]}-{generation}"


# Parsing the TOML table ----------------------------------------------------------------------

def _str(v: Any, path: str, choices: tuple[str, ...] = (), *, empty: bool = True) -> str:
    if not isinstance(v, str):
        raise PolicyError(f"{path}: expected a string")
    if not empty and not v:
        raise PolicyError(f"{path}: must not be empty")
    if choices and v not in choices:
        raise PolicyError(f"{path}: {v[:40]!r} is not one of {', '.join(choices)}")
    if len(v) > 200 or any(ord(c) < 32 for c in v):
        raise PolicyError(f"{path}: at most 200 printable characters")
    return v


def _strs(v: Any, path: str) -> tuple[str, ...]:
    if not isinstance(v, list):
        raise PolicyError(f"{path}: expected a list of strings")
    return tuple(_str(x, f"{path}[{i}]", empty=False) for i, x in enumerate(v))


def _num(v: Any, path: str, lo: float, hi: float) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo <= v <= hi:
        raise PolicyError(f"{path}: expected a number from {lo:g} to {hi:g}")
    return float(v)


def _bool(v: Any, path: str) -> bool:
    if not isinstance(v, bool):
        raise PolicyError(f"{path}: expected true or false")
    return v


def _table(v: Any, path: str, known: tuple[str, ...] | None) -> Mapping[str, Any]:
    if not isinstance(v, dict):
        raise PolicyError(f"{path}: expected a table")
    if known is not None:
        for key in v:
            if key not in known:
                raise PolicyError(f"{path}.{key}: unknown key (known: {', '.join(known)})")
    return v


def parse(data: Mapping[str, Any] | None, path: str = "tickets") -> TicketPolicy:
    """Build the policy from the [tickets] TOML table; PolicyError names the bad key's path."""
    if data is None:
        return TicketPolicy()
    t = _table(data, path, ("enabled", "families", "routes", "actions", "connectors",
                            "repeat_comment_s", "resolve_on_clear", "resolve_after_s",
                            "reopen_within_s", "max_attempts_age_s", "keep_done_s",
                            "store_hints",
                            "delivery"))
    kw: dict[str, Any] = {}
    if "enabled" in t:
        kw["enabled"] = _bool(t["enabled"], f"{path}.enabled")
    for key, hi in (("repeat_comment_s", 30 * 86400.0), ("resolve_after_s", 30 * 86400.0),
                    ("reopen_within_s", 365 * 86400.0), ("max_attempts_age_s", 30 * 86400.0),
                    ("keep_done_s", 3650 * 86400.0)):
        if key in t:
            kw[key] = _num(t[key], f"{path}.{key}", 0, hi)
    if "resolve_on_clear" in t:
        kw["resolve_on_clear"] = _bool(t["resolve_on_clear"], f"{path}.resolve_on_clear")
    if "families" in t:
        if not isinstance(t["families"], list):
            raise PolicyError(f"{path}.families: expected an array of tables")
        fams = []
        for i, f in enumerate(t["families"]):
            p = f"{path}.families[{i}]"
            f = _table(f, p, ("what", "ticket", "priority", "tags", "family"))
            if "what" not in f:
                raise PolicyError(f"{p}.what: missing")
            fams.append(FamilyRule(
                _str(f["what"], f"{p}.what", empty=False),
                _str(f.get("ticket", "incident"), f"{p}.ticket", TICKET_KINDS),
                _str(f.get("priority", "medium"), f"{p}.priority", PRIORITIES),
                _strs(f.get("tags", []), f"{p}.tags"),
                _str(f.get("family", ""), f"{p}.family")))
        whats = [f.what for f in fams]
        for i, w in enumerate(whats):
            if w in whats[:i]:
                raise PolicyError(f"{path}.families[{i}].what: {w!r} appears twice")
        kw["families"] = tuple(fams)
    connectors = []
    if "connectors" in t:
        for name, c in _table(t["connectors"], f"{path}.connectors", None).items():
            p = f"{path}.connectors.{name}"
            c = _table(c, p, None)
            if "type" not in c:
                raise PolicyError(f"{p}.type: missing (one of {', '.join(CONNECTOR_TYPES)})")
            connectors.append(ConnectorSpec(
                _str(name, p, empty=False), _str(c["type"], f"{p}.type", CONNECTOR_TYPES),
                types.MappingProxyType({k: v for k, v in c.items() if k != "type"})))
    kw["connectors"] = tuple(connectors)
    if "routes" in t:
        if not isinstance(t["routes"], list):
            raise PolicyError(f"{path}.routes: expected an array of tables")
        routes = []
        for i, r in enumerate(t["routes"]):
            p = f"{path}.routes[{i}]"
            r = _table(r, p, ("connector", "regions", "stores", "assignment_group", "project",
                              "brand"))
            if "connector" not in r:
                raise PolicyError(f"{p}.connector: missing")
            name = _str(r["connector"], f"{p}.connector", empty=False)
            if name not in {c.name for c in connectors}:
                raise PolicyError(f"{p}.connector: no [{path}.connectors.{name}] table")
            routes.append(Route(name, _strs(r.get("regions", []), f"{p}.regions"),
                                _strs(r.get("stores", []), f"{p}.stores"),
                                _str(r.get("assignment_group", ""), f"{p}.assignment_group"),
                                _str(r.get("project", ""), f"{p}.project"),
                                _str(r.get("brand", ""), f"{p}.brand")))
        kw["routes"] = tuple(routes)
    if "actions" in t:
        actions = dict(DEFAULT_ACTIONS)
        for k, v in _table(t["actions"], f"{path}.actions", None).items():
            actions[k] = _str(v, f"{path}.actions.{k}", TIERS)
        kw["actions"] = types.MappingProxyType(actions)
    if "store_hints" in t:
        hints = {k: _str(v, f"{path}.store_hints.{k}")
                 for k, v in _table(t["store_hints"], f"{path}.store_hints", None).items()}
        kw["store_hints"] = types.MappingProxyType(hints)
    if "delivery" in t:
        d = _table(t["delivery"], f"{path}.delivery", tuple(_DELIVERY_LIMITS))
        vals: dict[str, Any] = {}
        for key, (lo, hi) in _DELIVERY_LIMITS.items():
            if key in d:
                v = _num(d[key], f"{path}.delivery.{key}", lo, hi)
                vals[key] = int(v) if key in ("batch", "breaker_failures") else v
        kw["delivery"] = DeliveryPolicy(**vals)
    return TicketPolicy(**kw)
