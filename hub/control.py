"""The hub worker's control plane, wired over the commands, flags and rollout domains.

Above the domains and below hub.app (its own layer in .importlinter): it joins what the
domains own with the fleet's tables (which stores exist, their regions and sessions, their
devices and alerts) and drives the MQTT link in hub/bus/control.py:

- every POLL_S it claims queued commands and publishes each at QoS 1 on the store's cmd topic;
  the broker's PUBACK marks it delivered (the store's persistent session holds it while the
  store is offline, until it expires);
- it publishes each store's signed flags document and desired state that changed, and bundle
  contents, retained, at QoS 1;
- it takes `{prefix}/+/+/cmd/result` (as `$share/{group}-cmd/...` when workers share the
  stream), checks each result field by field, records it in one transaction (the command's
  status, the store's refusal counts, the flags version or bundle applied, the audit entry)
  and only then acknowledges it, so a result is never lost to a hub crash;
- every ROLLOUT_EVERY_S it runs the rollouts' gates (when this worker holds the key ring).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable

from edge_protocol import commands as proto
from edge_protocol import topics
from edge_protocol.errors import ProtocolError
from hub.errors import Conflict, HubError, Invalid, StoreError
from hub.domains import fleet
from hub.domains.commands import rules as commands
from hub.domains.flags import rules as flags
from hub.domains.rollout import rules as rollout

log = logging.getLogger("hub.control")

POLL_S = 0.1
ROLLOUT_EVERY_S = 1.0
MAX_RESULT_BYTES = 64 * 1024
CLAIM_MAX = 500
DAY = 86400.0


# The fleet, as the control plane reads it (the fleet domain's tables, read only) -------------

def known_stores(tx: Any) -> dict[str, str]:
    """store -> region for every store the hub has heard from."""
    tx.execute("SELECT store, region FROM stores")
    return {s: r for s, r in tx.fetchall()}


def command_region(tx: Any, store: str, given: str | None = None) -> str | None:
    """The region a command for `store` goes to: the one the hub knows from the store's birth;
    `given` (the caller's --region) only for a store not seen yet, and refused when it names
    another region than the known one (the command would go to a topic no store reads)."""
    tx.execute("SELECT region FROM stores WHERE store = ?", (store,))
    row = tx.fetchone()
    known = row[0] if row else None
    if known and given and given != known:
        raise Invalid(f"store {store} is in region {known}, not {given}")
    return known or given


def rollout_refusal(err: rollout.RolloutError, starting: bool = False) -> HubError:
    """A refusal of the rollout domain as the API and the CLI report it: a rollout of the kind
    still going, or a state that does not allow the action, is a Conflict (409, exit 1); any
    other refusal of a start request (stages, approvals, soak) is Invalid (400, exit 2)."""
    if not starting or "still going" in str(err):
        return Conflict(str(err))
    return Invalid(str(err))


def store_sessions(tx: Any) -> dict[str, int]:
    tx.execute("SELECT store, birth_session FROM stores")
    return {s: int(b) for s, b in tx.fetchall() if b is not None and b >= 0}


def fleet_health(tx: Any, stores: list[str], since: float, until: float,
                 sessions: dict[str, int]) -> rollout.Health:
    """Device-days, predicted_failure + failed alerts raised, new sessions, and devices left
    without a model score (the agents' scoring_errors events), for some stores."""
    if not stores:
        return rollout.Health(0.0, 0, 0)
    marks = ",".join("?" * len(stores))
    tx.execute(f"SELECT COUNT(*) FROM devices WHERE store IN ({marks})", stores)
    devices = int(tx.fetchone()[0])
    tx.execute(f"SELECT COUNT(*) FROM alerts WHERE store IN ({marks}) AND what IN"
               f" ('predicted_failure', 'failed') AND since >= ? AND since < ?",
               (*stores, proto.format_ts(since), proto.format_ts(until)))
    alerts = int(tx.fetchone()[0])
    restarts = 0
    if sessions:
        tx.execute(f"SELECT store, birth_session FROM stores WHERE store IN ({marks})", stores)
        for store, session in tx.fetchall():
            start = sessions.get(store)
            if start is not None and session is not None and session > start:
                restarts += int(session) - int(start)
    errors, reasons = fleet.scoring_errors(tx, stores, since, until)
    return rollout.Health(devices * max(0.0, until - since) / DAY, alerts, restarts, errors,
                          reasons)


def store_control(db: Any, store: str) -> dict[str, Any]:
    """The store's flags document, bundles and command refusals (for `edge-hub store`)."""
    with db.read() as tx:
        return {"flags": flags.for_store(tx, store),
                "command_rejects": commands.rejects(tx, store).get(store, {}),
                "bundles": rollout.reports(tx, store)}


# Approvals (hub.domains.approvals) --------------------------------------------------------

def request_approval(tx: Any, clock: Callable[[], float], actor: Any, row: dict,
                     detail: dict) -> int:
    """A high-impact command becomes an approval request (its hash binds the exact command)."""
    from hub.domains import approvals

    payload = {"command": row["id"], "store": row["store"], "region": row["region"],
               "device": row["device"], "action": row["action"], "args": row["args"],
               "expires_s": row["expires_s"]}
    return approvals.request(tx, clock, actor, f"command.{row['action']}", payload,
                             store=row["store"], region=row["region"])


def approval_of(tx: Any, cmd_id: str) -> int:
    """The approval request of a held command (hub.errors.NotFound if there is none)."""
    from hub.errors import NotFound

    # Patterns as parameters: a literal % in SQL text is a placeholder to psycopg.
    tx.execute("SELECT id FROM approval_requests WHERE action LIKE ? AND payload LIKE ?"
               " ORDER BY id DESC", ("command.%", f'%"command":"{cmd_id}"%'))
    row = tx.fetchone()
    if row is None:
        raise NotFound(f"no approval request for command {cmd_id[:64]!r}")
    return int(row[0])


def approve_command(db: Any, clock: Callable[[], float], actor: Any, cmd_id: str,
                    ring: Any) -> dict:
    """Approve a held command through the approvals domain (its rules: not the requester, a
    role and scope that decide approvals, the hash of the exact command), then release it."""
    from hub.domains import approvals

    with db.transaction() as tx:
        rid = approval_of(tx, cmd_id)
        seen = approvals.show(tx, rid)["payload_hash"]
        approvals.approve(tx, clock, actor, rid, seen)
    release_approved(db, clock, ring)
    with db.read() as tx:
        return commands.get(tx, cmd_id)


def release_approved(db: Any, clock: Callable[[], float], ring: Any) -> int:
    """Sign and queue the commands whose approval requests were approved; record each outcome.

    Only `command.*` requests: the ticketing worker runs the others."""
    from hub.domains import approvals

    with db.read() as tx:
        ready = [r for r in approvals.runnable(tx) if r["action"].startswith("command.")]
    n = 0
    for r in ready:
        with db.transaction() as tx:
            if not approvals.start_run(tx, r["id"]):
                continue  # another hub worker took it
            if not r["intact"]:
                approvals.record_outcome(tx, clock, r["id"], False,
                                         "the stored action does not match its hash")
                continue
            voters = ", ".join(v["approver"] for v in approvals.show(tx, r["id"])["votes"]
                               if v["decision"] == "approve")
            try:
                row = commands.release(tx, clock, str(r["payload"].get("command")), ring,
                                       voters or "approvals")
            except (commands.ApprovalError, HubError) as err:
                approvals.record_outcome(tx, clock, r["id"], False, str(err))
            else:
                approvals.record_outcome(tx, clock, r["id"], True,
                                         {"command": row["id"], "seq": row["seq"]})
        n += 1
    return n


# Results from stores -----------------------------------------------------------------------

def parse_result_topic(name: str, prefix: str) -> tuple[str, str]:
    """(region, store) of `{prefix}/{region}/{store}/cmd/result`, or ProtocolError."""
    if not name.startswith(prefix + "/"):
        raise ProtocolError("bad_topic", name[:200])
    parts = name[len(prefix) + 1:].split("/")
    if (len(parts) != 4 or parts[2:] != ["cmd", "result"] or not proto.ID.match(parts[0])
            or not proto.ID.match(parts[1])):
        raise ProtocolError("bad_topic", name[:200])
    return parts[0], parts[1]


def decode_result(payload: bytes, topic: str, prefix: str) -> tuple[str, str, str, dict]:
    """(region, store, envelope id, body) of a result envelope, checked field by field."""
    region, store = parse_result_topic(topic, prefix)
    if len(payload) > MAX_RESULT_BYTES:
        raise ProtocolError("oversized", f"{len(payload)} bytes")
    try:
        env = json.loads(payload.decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as err:
        raise ProtocolError("not_json", str(err)[:120]) from err
    if not isinstance(env, dict) or env.get("v") != proto.VERSION:
        raise ProtocolError("bad_envelope", "not a version 1 envelope")
    if env.get("kind") != proto.RESULT_KIND:
        raise ProtocolError("unknown_kind", str(env.get("kind"))[:40])
    if env.get("store") != store or env.get("region") != region:
        raise ProtocolError("topic_mismatch", "envelope of another store")
    env_id = env.get("id")
    if not isinstance(env_id, str) or not proto.UUID.match(env_id):
        raise ProtocolError("bad_envelope", "id: not a UUID")
    return region, store, env_id, proto.check_result(env.get("body"))


def record(tx: Any, clock: Callable[[], float], store: str, region: str, body: dict,
           env_id: str) -> str:
    """One result into the domains it concerns, in the caller's transaction."""
    outcome = commands.record_result(tx, clock, store, region, body, env_id)
    if body["type"] == "flags" and body["status"] == "applied" and body.get("flags_version"):
        flags.applied(tx, clock, store, body["flags_version"])
    if body["type"] == "bundle":
        rollout.record_report(tx, clock, store, body)
    return outcome


# The worker's loop -------------------------------------------------------------------------

@dataclass
class CommanderSettings:
    host: str = "127.0.0.1"
    port: int = 1883
    client_id: str = "edge-hub"
    prefix: str = "edge/v1"
    shared: bool = True
    mqtt5: bool = True
    keepalive: int = 30
    group: str = "hub"


class Commander:
    """Publishes commands, flags and bundles, records results, runs rollouts' gates."""

    def __init__(self, db: Any, settings: CommanderSettings,
                 clock: Callable[[], float] = time.time, ring: Any = None):
        from hub.bus.control import ControlLink

        self.db = db
        self.s = settings
        self.clock = clock
        self.ring = ring  # re-signs desired states for rollouts (None: no rollouts here)
        self.owner = f"{settings.client_id}-cmd"
        filt = f"{settings.prefix}/+/+/cmd/result"
        self.link = ControlLink(settings.host, settings.port, self.owner,
                                f"$share/{settings.group}-cmd/{filt}" if settings.shared
                                else filt, mqtt5=settings.mqtt5, keepalive=settings.keepalive,
                                queue_max=CLAIM_MAX * 4, on_result=self._on_result,
                                on_lost=self._on_lost)
        self._pending: dict[int, tuple[str, Any]] = {}  # mid -> (kind, ref)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._rollout_at = 0.0
        self.stats: Counter[str] = Counter()

    def start(self) -> "Commander":
        self.link.start()
        self._thread = threading.Thread(target=self._run, name="commander", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self.link.stop()

    # paho's thread ---------------------------------------------------------------------

    def _on_lost(self) -> None:
        with self._lock:
            lost = [ref for kind, ref in self._pending.values() if kind == "cmd"]
            self._pending.clear()
        if lost:
            with self.db.transaction() as tx:
                commands.unclaim(tx, lost)

    def _on_result(self, topic: str, payload: bytes) -> bool:
        if not topic.endswith("/cmd/result"):
            # amqtt (the embedded broker) also hands this link the retained hub state.
            self.stats["ignored"] += 1
            return True
        try:
            region, store, env_id, body = decode_result(payload, topic, self.s.prefix)
        except ProtocolError as err:
            self.stats[f"rejected.{err.code}"] += 1
            log.warning("result rejected", extra={"code": err.code, "detail": err.detail[:120]})
            return True  # it would fail again
        try:
            with self.db.transaction() as tx:
                outcome = record(tx, self.clock, store, region, body, env_id)
        except Exception:
            log.exception("could not record a result", extra={"store": store})
            return False  # not acknowledged: redelivered after a reconnect
        self.stats[f"result.{body['status']}"] += 1
        self.stats[f"outcome.{outcome}"] += 1
        return True

    # The publishing thread -------------------------------------------------------------

    def _run(self) -> None:
        failures = 0  # rounds failed in a row because the database is away
        logged = float("-inf")
        while not self._stop.wait(POLL_S):
            if not self.link.connected.is_set():
                continue
            try:
                self._round()
            except StoreError as err:
                # The database away (a restart): ten rounds a second would each log a
                # traceback. One line, then one a minute, and one when it works again.
                failures += 1
                if failures == 1 or time.monotonic() - logged >= 60.0:
                    logged = time.monotonic()
                    log.error("commander round failed; will retry",
                              extra={"error": str(err)[:300], "failures": failures})
                continue
            except Exception:
                log.exception("commander round failed")
                continue
            if failures:
                log.info("commander rounds work again", extra={"failures": failures})
                failures = 0

    def _round(self) -> None:
        acks = self.link.acks()
        with self._lock:
            done = [self._pending.pop(mid) for mid in acks if mid in self._pending]
        if done:
            with self.db.transaction() as tx:
                for kind, ref in done:
                    if kind == "cmd":
                        commands.delivered(tx, self.clock, ref)
                        self.stats["delivered"] += 1
                    elif kind == "flags":
                        flags.published(tx, self.clock, *ref)
                    elif kind == "content":
                        rollout.content_published(tx, self.clock, ref)
                    else:
                        rollout.desired_published(tx, self.clock, *ref)
        # Reads first: an idle worker takes no write lock (SQLite has one writer: ingest's).
        with self.db.read() as tx:
            waiting_cmds = commands.work_waiting(tx, self.clock)
            rolling = self.ring is not None and rollout.running(tx)
        claimed = []
        if waiting_cmds:
            with self.db.transaction() as tx:
                claimed = commands.claim(tx, self.clock, self.owner, CLAIM_MAX)
        for cid, region, store, payload in claimed:
            self._send(topics.cmd_topic(region, store, self.s.prefix), payload, ("cmd", cid))
        with self._lock:
            waiting = {(kind, ref) for kind, ref in self._pending.values()}
        with self.db.read() as tx:
            docs = flags.to_publish(tx, CLAIM_MAX)
            contents = rollout.contents_to_publish(tx)
            desired = rollout.desired_to_publish(tx, CLAIM_MAX)
        for store, region, version, payload in docs:
            if ("flags", (store, version)) not in waiting:
                self._send(topics.flags_topic(region, store, self.s.prefix), payload,
                           ("flags", (store, version)), retain=True)
        for sha, data in contents:  # before any desired state that names them
            if ("content", sha) not in waiting:
                self._send(topics.bundle_topic(sha, self.s.prefix), data, ("content", sha),
                           retain=True)
        for store, region, version, payload in desired:
            if ("desired", (store, version)) not in waiting:
                self._send(topics.config_topic(region, store, self.s.prefix), payload,
                           ("desired", (store, version)), retain=True)
        if self.ring is not None and time.monotonic() - self._rollout_at >= ROLLOUT_EVERY_S:
            release_approved(self.db, self.clock, self.ring)  # approved high-impact commands
        if rolling and time.monotonic() - self._rollout_at >= ROLLOUT_EVERY_S:
            self._rollout_at = time.monotonic()
            with self.db.transaction() as tx:
                stores, sessions = known_stores(tx), store_sessions(tx)
                for rid, what in rollout.tick(tx, self.clock, self.ring, fleet_health,
                                              stores, sessions):
                    log.warning("rollout " + what, extra={"rollout": rid})

    def _send(self, topic: str, payload: bytes, ref: tuple[str, Any],
              retain: bool = False) -> None:
        # Only this thread publishes and reads acks, so the PUBACK of this mid is handled in a
        # later round, after _pending knows it.
        mid = self.link.publish(topic, payload, retain)
        if mid is not None:
            with self._lock:
                self._pending[mid] = ref
            self.stats["published"] += 1
        elif ref[0] == "cmd":
            with self.db.transaction() as tx:
                commands.unclaim(tx, [ref[1]])


def start_commander(db: Any, settings: Any, ring: Any = None) -> Commander:
    """The control plane beside ingest in one worker (hub.app.serve starts it). Rollouts
    re-sign desired states: they advance when the worker holds the key ring (given, or
    opened from $EDGE_HUB_KEYS / the default folder)."""
    if ring is None:
        try:
            from hub.keys import KeyRing, KeyringError, default_dir, passphrase_from

            ring = KeyRing.load(default_dir(), passphrase_from(None))
        except KeyringError as err:
            log.info("rollouts not advanced by this worker", extra={"why": str(err)})
    return Commander(db, CommanderSettings(
        host=settings.host, port=settings.port, client_id=settings.client_id,
        prefix=settings.prefix, shared=settings.shared, mqtt5=settings.mqtt5,
        keepalive=settings.keepalive, group=settings.group), ring=ring).start()
