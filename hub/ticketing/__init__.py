"""Tickets and approvals inside a hub worker: the layer between ingest and hub.app that joins
the tickets and approvals domains, the connectors and the delivery worker.

    delivery.py   the delivery worker (leases, backoff, Retry-After, breaker, catch-up)
    actions.py    approval requests for ticket actions, and running them once approved

    on_transitions(tx, clock, policy, transitions)   called by ingest in the transaction that
                                                     stores the alerts: their intents (and
                                                     approval requests) commit with them
    TicketService(db, policy, owner, publish)        the delivery worker thread, approved
                                                     actions, and pending approvals published
                                                     on {prefix}/approvals/{region}/{store}
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any, Callable, Sequence

from edge_protocol import topics
from hub.connectors import ConfigError, build
from hub.domains import approvals
from hub.domains.tickets import rules
from hub.domains.tickets.policy import TicketPolicy
from hub.domains.tickets.text import DeviceFacts
from hub.ticketing import actions
from hub.ticketing.delivery import DeliverySettings, Worker
from hub.errors import HubError, StoreError
from hub.store import Store

log = logging.getLogger("hub.tickets")

CHAIN = "_chain"   # the approvals feed's region and store for chain-wide requests


def load_policy(path: str | None) -> TicketPolicy:
    """The [tickets] table of a TOML file (`serve --tickets FILE`, which takes the place of the
    hub config's [tickets] table: policy_from_config)."""
    if not path:
        return TicketPolicy(enabled=False)
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as err:
        raise ConfigError(f"--tickets: cannot read {path}: {err.strerror or err}") from err
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"--tickets: {path}: {err}") from err
    from hub.domains.tickets.policy import parse

    return parse(data.get("tickets", {}))


def policy_from_config(config) -> TicketPolicy:
    """The [tickets] table of the hub config (HubConfig.tickets) as a policy; a mistake is a
    ConfigError naming its key path (`tickets.families[0].priority`) and the file."""
    from hub.domains.tickets.policy import PolicyError, parse
    from hub.errors import ConfigError as HubConfigError, Problem

    table = getattr(config, "tickets", None) or {}
    if not table:
        return TicketPolicy(enabled=False)
    try:
        return parse(table)
    except PolicyError as err:
        path, sep, why = str(err).partition(": ")
        raise HubConfigError([Problem(path if sep else "tickets", why if sep else str(err))],
                          getattr(config, "source", "")) from err


def approvals_topic(region: str | None, store: str | None, prefix: str = "edge/v1") -> str:
    """{prefix}/approvals/{region}/{store} (edge_protocol.topics); chain-wide requests go to
    {prefix}/approvals/_chain/_chain. A regional manager subscribes to .../approvals/REGION/#."""
    return topics.approvals_feed_topic(region or CHAIN, store or CHAIN, prefix)


def _facts(tx, store: str, device: str) -> DeviceFacts:
    """What the fleet tables know of a device: its kind and newest reading."""
    tx.execute("SELECT kind, ts, vals FROM devices WHERE store = ? AND device = ?",
               (store, device))
    row = tx.fetchone()
    if row is None:
        return DeviceFacts()
    kind, ts, vals = row
    try:
        values = json.loads(vals) if vals else {}
    except ValueError:
        values = {}
    if not isinstance(values, dict):
        values = {}

    def s(name: str) -> str | None:
        v = values.get(name)
        return v[:100] if isinstance(v, str) else None
    return DeviceFacts(kind=kind, model=s("device.model"), serial=s("device.serial"),
                       firmware=s("device.firmware"), location=s("device.location"),
                       readings=values, readings_ts=ts)


def event_of(env: Any, facts: DeviceFacts) -> rules.AlertEvent:
    """An AlertEvent from a validated alert envelope (edge_agent.wire / edge_protocol)."""
    b = env.body
    decision = b.get("decision") if isinstance(b.get("decision"), dict) else None
    return rules.AlertEvent(env.store, env.region, b["device"], b["what"], b["state"],
                            b["since"], b["ts"], env.seq, b["severity"],
                            tuple(b["explanation"]), decision, facts)


def on_transitions(tx, clock: Callable[[], float], policy: TicketPolicy,
                   transitions: Sequence[Any]) -> int:
    """Apply alert transitions (in seq order) to tickets; return the intents made."""
    if not policy.enabled:
        return 0
    from hub.domains.flags import rules as flags

    made = 0
    switched: dict[str, bool] = {}   # the `tickets` kill switch, read once a store a batch
    for env in transitions:
        if policy.rule_for(env.body["what"]) is None:
            continue
        if env.store not in switched:
            switched[env.store] = flags.is_on(tx, env.store, "tickets",
                                              getattr(env, "region", None))
            if not switched[env.store]:
                log.info("tickets: switched off for store %s: its alerts open no ticket",
                         env.store)
        if not switched[env.store]:
            continue   # `edge-hub flags set tickets=off`: no ticket, comment or resolve
        out = rules.on_alert(tx, clock, policy,
                             event_of(env, _facts(tx, env.store, env.body["device"])))
        made += len(out.intents)
        for ask in out.approvals:
            if policy.tier(ask["action"]) == "approval":
                actions.request_for_ticket(tx, clock, ask)
    return made


def hook(policy: TicketPolicy) -> Callable[[Any, Sequence[Any]], int]:
    """The ingest writer's on_transitions for this policy (runs in the batch's transaction)."""
    def on(tx, transitions):
        return on_transitions(tx, time.time, policy, transitions)
    return on


def build_connectors(policy: TicketPolicy) -> dict[str, Any]:
    """init() every connector the policy names; a ConfigError names the bad key."""
    made = {}
    for spec in policy.connectors:
        made[spec.name] = build(spec)
    return made


class TicketService:
    """The delivery worker plus a slower loop for approvals (run, expire, publish)."""

    def __init__(self, db: Store, policy: TicketPolicy, owner: str,
                 publish: Callable[[str, bytes], None] | None = None,
                 prefix: str = "edge/v1", settings: DeliverySettings | None = None,
                 connectors: dict[str, Any] | None = None,
                 clock: Callable[[], float] = time.time):
        self.db = db
        self.policy = policy
        self.publish = publish
        self.prefix = prefix
        self.clock = clock
        self.worker = Worker(db, policy, connectors if connectors is not None
                             else build_connectors(policy), owner,
                             settings or policy.delivery, clock)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> "TicketService":
        self.worker.start()
        self._thread = threading.Thread(target=self._run, name="hub-approvals", daemon=True)
        self._thread.start()
        return self

    def step(self) -> None:
        actions.run_approved(self.db, self.clock)
        if self.publish is None:
            return
        with self.db.transaction() as tx:
            pending = approvals.to_publish(tx, self.clock)
        for r in pending:
            self.publish(approvals_topic(r["region"], r["store"], self.prefix), json.dumps({
                "v": 1, "id": r["id"], "action": r["action"], "store": r["store"],
                "region": r["region"], "chain_wide": bool(r["chain_wide"]),
                "required": r["required"], "hash": r["payload_hash"],
                "payload": r["payload"], "requester": r["requester"],
                "expires": r["expires"]}, separators=(",", ":")).encode())

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            try:
                self.step()
            except StoreError as err:
                log.error("approvals loop cannot reach the database", extra={"error": str(err)})
            except Exception:
                log.exception("the approvals loop failed")
                self.worker.failed.set()
                return

    @property
    def failed(self) -> threading.Event:
        return self.worker.failed

    def stats(self) -> dict[str, Any]:
        return dict(self.worker.counts)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self.worker.stop()


__all__ = ["on_transitions", "TicketService", "approvals_topic", "build_connectors",
           "ConfigError", "HubError"]
