"""Every MQTT topic of the protocol, built and parsed here and nowhere else.

Topics (prefix configurable, default `edge/v1`):
    {prefix}/{region}/{store}/{kind}       kind in birth, death, telemetry, decision, alert, event
    {prefix}/{region}/{store}/cmd          hub to agent (signed); results on .../cmd/result
    {prefix}/{region}/{store}/config       hub to agent (signed, retained)
    {prefix}/{region}/{store}/flags        hub to agent (signed, retained)
    {prefix}/hub/state                     hub online/offline (retained)
    {prefix}/alerts/{region}/{store}       the hub's alert feed for regional managers
    {prefix}/approvals/{region}/{store}    the hub's approvals feed
    {prefix}/bundles/{sha256}              bundle contents (hub to agents, retained)
"""

from __future__ import annotations

import functools
import re

from edge_protocol.errors import ProtocolError

DEFAULT_PREFIX = "edge/v1"
UP_KINDS = ("birth", "death", "telemetry", "decision", "alert", "event")
# The kinds a hub's priority lane subscribes to: they must not wait behind telemetry.
PRIORITY_KINDS = ("alert", "decision", "birth", "death")
# Hub-to-agent topic tails under a store's topic, and hub-wide first levels: never ingested.
DOWN_KINDS = ("cmd", "config", "flags")
HUB_LEVELS = ("hub", "alerts", "approvals", "bundles")
ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:\-]{0,63}\Z")


def topic(region: str, store: str, kind: str, prefix: str = DEFAULT_PREFIX) -> str:
    """Return the topic a store publishes one kind of message on."""
    return f"{prefix}/{region}/{store}/{kind}"


def cmd_topic(region: str, store: str, prefix: str = DEFAULT_PREFIX) -> str:
    return f"{prefix}/{region}/{store}/cmd"


def cmd_result_topic(region: str, store: str, prefix: str = DEFAULT_PREFIX) -> str:
    return f"{prefix}/{region}/{store}/cmd/result"


def config_topic(region: str, store: str, prefix: str = DEFAULT_PREFIX) -> str:
    return f"{prefix}/{region}/{store}/config"


def flags_topic(region: str, store: str, prefix: str = DEFAULT_PREFIX) -> str:
    return f"{prefix}/{region}/{store}/flags"


def hub_state_topic(prefix: str = DEFAULT_PREFIX) -> str:
    return f"{prefix}/hub/state"


def bundle_topic(sha256: str, prefix: str = DEFAULT_PREFIX) -> str:
    return f"{prefix}/bundles/{sha256}"


def alert_feed_topic(region: str, store: str, prefix: str = DEFAULT_PREFIX) -> str:
    return f"{prefix}/alerts/{region}/{store}"


def approvals_feed_topic(region: str, store: str, prefix: str = DEFAULT_PREFIX) -> str:
    return f"{prefix}/approvals/{region}/{store}"


def shared_subscription(prefix: str = DEFAULT_PREFIX, group: str = "hub") -> str:
    """The MQTT v5 shared subscription hub workers use to split the stores' stream."""
    return f"$share/{group}/{prefix}/+/+/#"


def store_filter(prefix: str = DEFAULT_PREFIX) -> str:
    """The plain subscription of a single hub worker (brokers without shared subscriptions)."""
    return f"{prefix}/+/+/#"


def priority_filters(prefix: str = DEFAULT_PREFIX, group: str = "hub") -> list[str]:
    """The priority lane's shared subscriptions: alerts, decisions, births, deaths."""
    return [f"$share/{group}-priority/{prefix}/+/+/{kind}" for kind in PRIORITY_KINDS]


@functools.lru_cache(maxsize=65536)  # a consumer sees the same topics again and again
def parse_topic(name: str, prefix: str = DEFAULT_PREFIX) -> tuple[str, str, str]:
    """Split a store's topic into (region, store, kind); raise ProtocolError if it is not one."""
    if not name.startswith(prefix + "/"):
        raise ProtocolError("bad_topic", name[:200])
    parts = name[len(prefix) + 1:].split("/")
    if len(parts) != 3 or parts[0] in HUB_LEVELS:
        raise ProtocolError("bad_topic", name[:200])
    region, store, kind = parts
    if not ID.match(region) or not ID.match(store):
        raise ProtocolError("bad_topic", name[:200])
    if kind not in UP_KINDS:
        raise ProtocolError("unknown_kind", kind[:40])
    return region, store, kind


def is_store_topic(name: str, prefix: str = DEFAULT_PREFIX) -> bool:
    """True for a topic stores publish on (valid or not); False for the hub's own and
    hub-to-agent topics (feeds, state, cmd, config, flags), which ingest leaves alone."""
    rest = name[len(prefix) + 1:] if name.startswith(prefix + "/") else ""
    parts = rest.split("/")
    if len(parts) < 3 or parts[0] in HUB_LEVELS:
        return False
    return parts[2] not in DOWN_KINDS


__all__ = ["DEFAULT_PREFIX", "UP_KINDS", "PRIORITY_KINDS", "DOWN_KINDS", "HUB_LEVELS", "ID",
           "topic", "cmd_topic", "cmd_result_topic", "config_topic", "flags_topic",
           "hub_state_topic", "bundle_topic", "alert_feed_topic", "approvals_feed_topic",
           "shared_subscription", "store_filter", "priority_filters", "parse_topic",
           "is_store_topic"]
