"""Signed commands and feature flags from the hub, on the agent's side (docs/commands.md).

    state.py    seq high-water mark, ids seen, refusals by reason, the command log, flags
    actions.py  the allow-listed actions, one async function each (never a shell string)

The sync client hands every message on the store's `cmd`, `flags`, `config` and bundle topics
to `Controller.on_message` (on the event loop) with a receipt; a bounded queue feeds the intake
worker, which records each message durably and only then marks its receipt done, which lets
the client send the PUBACK (edge_agent/sync/acks.py: in arrival order). It checks each
command in this order and stops at the first failure, counting it by reason:

    1. size, JSON, shape               oversized, not_json, bad_message
    2. signature against a pinned key  no_trusted_key, unknown_key, bad_signature
       (or one a pinned key endorsed through a signed rotation)
    3. names this store                wrong_store
    4. not expired, not from the future  expired, not_yet_valid
    5. seq above the highest taken,    replayed_seq, replayed_id
       id unseen (persisted, one transaction, before the action runs)
    6. action allow-listed, arguments  unknown_action, bad_args, args_too_large,
       within their schema, device      unknown_device
       known and of the right kind
    7. local policy                    remote_actions_off (flag), trading_hours
                                       (test print while trading, unless force=true)

A command that passes is recorded as taken and pending in the same transaction as step 5 and
acknowledged; a second worker, the executor, runs the pending commands one at a time (so a
slow action holds up neither the intake nor the PUBACKs), checking expiry and local policy
again, marking the command started (committed) before its action, and commits its result to
the outbox (`cmd_result`, topic .../cmd/result) with the log row and the end of its pending
entry in one transaction, so the result survives an outage. At start, a pending command that
was never started runs; one that was started when the agent died is reported `failed`,
reason `interrupted`, and not run again (at most once). A copy the broker sends again (DUP)
of a command already taken is acknowledged without a second result or a refusal.

Refusals are counted in the state database, shown by `edge-agent status`, and reported to
the hub (one by one up to [control].rejects_reported_per_hour, the counts with every report).

EDGE_AGENT_TEST_KILL (tests only; docs/commands.md) makes the agent SIGKILL itself at one
point of a command's way: `cmd-received` (before any check or record), `cmd-recorded` (taken
and pending, before the PUBACK) or `cmd-started` (marked started, before the action); or of a
bundle's: `bundle-wanted` (a desired state naming a bundle recorded, before its PUBACK and
before the content is asked for).
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import logging
import os
import signal
import time
from typing import Any, Callable

from edge_protocol import commands as proto
from edge_protocol import signing, topics
from edge_protocol.errors import SignatureError

from edge_agent.control import actions, state

log = logging.getLogger(__name__)

QUEUE_MAX = 32          # messages waiting for the worker; more are refused as "busy"
PENDING_MAX = 32        # accepted commands waiting to run; more are refused as "busy"
FAILS_MAX = 3           # a message whose handling raised this often is refused ("error")
RETRY_S = 1.0           # before trying a pending command again after a failed commit
FAULT_ENV = "EDGE_AGENT_TEST_KILL"
FAULT_POINTS = ("cmd-received", "cmd-recorded", "cmd-started", "bundle-wanted")
ACTION_TIMEOUT_S = 30.0
PRE_AUTH = ("oversized", "not_json", "bad_message", "no_trusted_key", "unknown_key",
            "bad_signature", "bad_key", "wrong_store", "busy")


class Controller:
    """Checks, runs and reports the hub's commands; holds the flags in force."""

    def __init__(self, agent: Any):  # edge_agent.agent.Agent (not imported: no cycle)
        self.agent = agent
        cfg = agent.config
        self.store, self.region = cfg.agent.store, cfg.agent.region
        self.settings = cfg.control
        self.prefix = cfg.sync.prefix
        self.pinned = signing.trusted_keys(cfg.trust.hub_keys)
        self.trusted: dict[str, bytes] = dict(self.pinned)
        self.flags: dict[str, bool] = {}
        self.flags_version = 0
        # (kind, payload, topic, receipt, dup): the receipt's done() lets the PUBACK go.
        self._queue: collections.deque[tuple[str, bytes, str, Any, bool]] = collections.deque()
        self._wake: asyncio.Event | None = None
        self._runs: collections.deque[dict[str, Any]] = collections.deque()  # pending entries
        self._run_wake: asyncio.Event | None = None
        self._waiters: dict[str, asyncio.Future[str]] = {}  # command id -> its final status
        self._fails: collections.OrderedDict[str, int] = collections.OrderedDict()
        self.redelivered = 0   # copies of taken commands acknowledged again (DUP), not refused
        fault = os.environ.get(FAULT_ENV, "")
        self.fault = fault if fault in FAULT_POINTS else None
        self._reported: collections.deque[float] = collections.deque()
        self.after_result: Callable[[], None] | None = None
        self.executed: collections.Counter[str] = collections.Counter()  # action -> runs
        self.refused: collections.Counter[str] = collections.Counter()   # reason -> count
        self.ready = False
        self.clock: Callable[[], float] = time.time
        from edge_agent.control.bundles import Bundles

        self.bundles = Bundles(self)

    # The sync client's hook ------------------------------------------------------------------

    def topics(self, prefix: str) -> list[str]:
        return [topics.cmd_topic(self.region, self.store, prefix),
                topics.flags_topic(self.region, self.store, prefix),
                topics.config_topic(self.region, self.store, prefix)] + self.bundles.topics(prefix)

    def subscribe(self, topic: str) -> None:
        client = getattr(self.agent, "sync_client", None)
        if client is not None:
            client.subscribe(topic)

    def unsubscribe(self, topic: str) -> None:
        client = getattr(self.agent, "sync_client", None)
        if client is not None:
            client.unsubscribe(topic)

    def on_message(self, topic: str, payload: bytes, retained: bool = False,
                   receipt: Any = None, dup: bool = False) -> None:
        """Take one message from the cmd, flags, config or a bundle topic (event loop).

        `receipt` (edge_agent.sync.acks.Receipt, or None) is marked done once the message is
        recorded, or durably refused, and failed when it cannot be: then the client drops the
        connection without its PUBACK and the broker sends it again. `dup`: the broker's DUP
        flag (it sent this message before, and had no PUBACK for it)."""
        own = f"{self.prefix}/{self.region}/{self.store}/"
        if topic.startswith(f"{self.prefix}/bundles/"):
            kind = "content"
        elif topic.startswith(own):
            kind = {"cmd": "cmd", "flags": "flags", "config": "desired"}.get(topic[len(own):])
        else:
            kind = None
        if kind is None or (kind != "cmd" and not payload):
            # Not ours, or a retained document cleared (keep what is in force): nothing to record.
            _done(receipt)
            return
        if len(self._queue) >= QUEUE_MAX:
            self._spawn(self._refuse_busy(kind, bytes(payload), receipt))
            return
        self._queue.append((kind, bytes(payload), topic, receipt, dup))
        if self._wake is not None:
            self._wake.set()

    async def _refuse_busy(self, kind: str, payload: bytes, receipt: Any) -> None:
        try:
            await self._reject(kind, payload, "busy", "too many commands at once")
        except Exception:
            log.exception("control could not record a refusal", extra={"kind": kind})
            _fail(receipt)
            return
        _done(receipt)

    def flag(self, name: str) -> bool:
        return self.flags.get(name, True)

    # The worker ------------------------------------------------------------------------------

    async def run(self) -> None:
        agent = self.agent
        learned = await agent._db(state.learned_keys, agent.db)
        for kid, text in learned.items():
            try:
                self.trusted.setdefault(kid, signing.public_from_text(text))
            except SignatureError:
                continue
        doc = await agent._db(state.load_flags, agent.db)
        if doc:
            self._apply_flags(doc.get("flags") or {}, int(doc.get("version") or 0))
            log.info("flags restored", extra={"version": self.flags_version,
                                              "off": ",".join(self.off()) or "-"})
        await self.bundles.restore()
        self._wake = asyncio.Event()
        self._run_wake = asyncio.Event()
        await self._resume_pending()
        executor = asyncio.get_running_loop().create_task(self._execute_loop())
        self.ready = True
        if not self.pinned:
            log.warning("no hub keys pinned in [trust]: every command and flag is refused")
        try:
            await self._intake_loop()
        finally:
            executor.cancel()
            try:
                await executor
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - stopping
                pass

    async def _intake_loop(self) -> None:
        while True:
            while self._queue:
                kind, payload, topic, receipt, dup = self._queue.popleft()
                try:
                    if kind == "cmd":
                        await self.take_command(payload, dup)
                    elif kind == "flags":
                        await self.handle_flags(payload)
                    elif kind == "desired":
                        await self.bundles.handle_desired(payload)
                    else:
                        await self.bundles.handle_content(topic.rsplit("/", 1)[-1], payload)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("control message failed; not acknowledged", extra={
                        "kind": kind})
                    await self._failed(kind, payload, receipt)
                    continue
                _done(receipt)
            self._wake.clear()
            try:
                await self.bundles.apply_deferred()
                await self.bundles.ask_again()  # wanted contents that have not come
            except Exception:
                log.exception("staged or wanted bundle work failed")
            if not self._queue:
                try:  # bundles staged during trading hours are looked at twice a minute
                    await asyncio.wait_for(self._wake.wait(), 30.0)
                except asyncio.TimeoutError:
                    pass

    async def _failed(self, kind: str, payload: bytes, receipt: Any) -> None:
        """A message whose handling raised (the state database locked or full, a bug): no
        PUBACK, so the broker sends it again after the client reconnects. The same message
        failing FAILS_MAX times (across connections) is refused as `error`, if that refusal
        can be recorded, so one poison message cannot hold the link in a reconnect loop."""
        key = hashlib.sha256(payload).hexdigest()
        fails = self._fails.pop(key, 0) + 1
        self._fails[key] = fails
        while len(self._fails) > QUEUE_MAX:
            self._fails.popitem(last=False)
        if fails >= FAILS_MAX:
            try:
                await self._reject(kind, payload, "error", f"handling failed {fails} times")
            except Exception:
                log.exception("control could not record a refusal", extra={"kind": kind})
            else:
                del self._fails[key]
                _done(receipt)
                return
        _fail(receipt)

    def _crash_at(self, point: str) -> None:
        """The test fault hook (EDGE_AGENT_TEST_KILL): die here as a power cut would."""
        if self.fault == point:
            log.critical("test fault: killing the agent", extra={"point": point})
            os.kill(os.getpid(), signal.SIGKILL)

    def off(self) -> list[str]:
        return sorted(k for k, v in self.flags.items() if not v)

    # Commands ----------------------------------------------------------------------------

    async def handle_command(self, payload: bytes, dup: bool = False) -> str:
        """Take one command and wait for its end; return its final status or the refusal
        reason ('redelivered' for a DUP copy of one already taken)."""
        status = await self.take_command(payload, dup, wait=True)
        if status != "accepted":
            return status
        cid = proto.peek_id(payload)[0]
        waiter = self._waiters.get(cid)
        if waiter is None:
            return status
        try:
            return await waiter
        finally:
            self._waiters.pop(cid, None)

    async def take_command(self, payload: bytes, dup: bool = False, wait: bool = False) -> str:
        """Check one command and record it (taken and pending) or its refusal: durably, since
        its PUBACK follows. Return 'accepted', 'redelivered' or the refusal reason."""
        agent, now = self.agent, self.clock()
        self._crash_at("cmd-received")
        if not self.pinned:
            return await self._reject("cmd", payload, "no_trusted_key",
                                      "no hub key pinned in [trust]")
        keys = self._keys_for(payload)
        try:
            cmd = proto.check_command(payload, store=self.store, trusted=keys, now=now)
        except proto.CommandError as err:
            return await self._reject("cmd", payload, err.code, err.detail)
        await self._learn(keys, cmd.kid)
        refusal = self._refusal(cmd)
        if refusal is None and len(self._runs) >= PENDING_MAX:
            refusal = ("busy", f"{PENDING_MAX} commands waiting to run")
        if refusal is None:
            entry = {"cmd": _command_doc(cmd), "started": False}
            why = await agent._db(state.consume, agent.db, cmd.id, cmd.seq, cmd.expires, now,
                                  entry)
        else:
            why = await agent._db(state.replay, agent.db, cmd.id, cmd.seq)
        if why == "replayed_id" and dup:
            # The broker's copy of a command this agent took before it could send the PUBACK
            # (it died, or the link dropped): acknowledge it; its result, if any, is in the
            # outbox already, or comes from the pending run.
            self.redelivered += 1
            log.info("command redelivered; already taken", extra={"command": cmd.id,
                                                                  "seq": cmd.seq})
            return "redelivered"
        if why:
            return await self._reject("cmd", payload, why, f"seq {cmd.seq}", cmd=cmd)
        if refusal is not None:
            # It passed 1-5: it consumes its seq, in the refusal's transaction.
            return await self._reject("cmd", payload, refusal[0], refusal[1], cmd=cmd,
                                      take=(cmd.id, cmd.seq, cmd.expires, now))
        log.info("command accepted", extra={"command": cmd.id, "seq": cmd.seq,
                                            "action": cmd.action, "device": cmd.device or "-"})
        self._crash_at("cmd-recorded")
        if wait:
            self._waiters[cmd.id] = asyncio.get_running_loop().create_future()
        self._runs.append(entry)
        if self._run_wake is not None:
            self._run_wake.set()
        return "accepted"

    def _refusal(self, cmd: proto.Command) -> tuple[str, str] | None:
        """Steps 6 and 7: the action, its arguments and device, local policy."""
        try:
            spec = proto.check_action(cmd.action, cmd.device, cmd.args)
            if cmd.device is not None:
                dev = self.agent.config.device(cmd.device)
                if dev is None:
                    raise proto.CommandError("unknown_device", "not a device of this store")
                if spec.kinds and dev.kind not in spec.kinds:
                    raise proto.CommandError("bad_args", f"{cmd.action} does not apply to a "
                                                         f"{dev.kind} device")
        except proto.CommandError as err:
            return err.code, err.detail
        return self._policy(cmd)

    # The executor ------------------------------------------------------------------------

    async def _resume_pending(self) -> None:
        """At start: commands taken before the last stop and not finished."""
        agent = self.agent
        for entry in await agent._db(state.load_pending, agent.db):
            try:
                cmd = proto.Command(**entry["cmd"])
            except TypeError:
                log.error("unreadable pending command dropped", extra={"entry": str(entry)[:200]})
                cid = entry["cmd"].get("id")
                await agent._db(_transaction, agent.db,
                                lambda db, cid=cid: state.finish_pending(db, cid))
                continue
            if entry.get("started"):
                # It was running when the agent died: whether its action took effect is
                # unknown, so it is not run again; the hub learns it was cut short.
                log.warning("command interrupted by the agent's stop; not run again",
                            extra={"command": cmd.id, "action": cmd.action})
                await self._result(_result_body(cmd, "failed", "interrupted",
                                                "the agent stopped while it ran", {}),
                                   cmd.device, also=_finish(cmd.id))
                continue
            log.info("command taken before a restart; running it", extra={"command": cmd.id,
                                                                           "seq": cmd.seq})
            self._runs.append(entry)

    async def _execute_loop(self) -> None:
        while True:
            while self._runs:
                entry = self._runs[0]
                status = "failed"
                try:
                    status = await self._execute(proto.Command(**entry["cmd"]), entry)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    # The state database refused a commit. Not started yet: try again (a few
                    # times; it stays pending in the database for the next start anyway).
                    # Started: the action may have acted, so it is not run again here; the
                    # next start reports it `interrupted`.
                    entry["tries"] = entry.get("tries", 0) + 1
                    again = not entry.get("started") and entry["tries"] < FAILS_MAX
                    log.exception("command could not be run or recorded", extra={
                        "command": entry["cmd"].get("id"), "again": again})
                    if again:
                        await asyncio.sleep(RETRY_S)
                        continue
                if self._runs and self._runs[0] is entry:
                    self._runs.popleft()
                waiter = self._waiters.get(entry["cmd"].get("id"))
                if waiter is not None and not waiter.done():
                    waiter.set_result(status)
            self._run_wake.clear()
            if not self._runs:
                await self._run_wake.wait()

    async def _execute(self, cmd: proto.Command, entry: dict[str, Any] | None = None) -> str:
        """Run one taken command and commit its result (ending its pending entry)."""
        agent, now = self.agent, self.clock()
        if now >= cmd.expires:
            return await self._reject("cmd", b"", "expired", "expired before it could run",
                                      cmd=cmd, also=_finish(cmd.id))
        policy = self._policy(cmd)  # again: a flag or the hours may have changed meanwhile
        if policy:
            return await self._reject("cmd", b"", policy[0], policy[1], cmd=cmd,
                                      also=_finish(cmd.id))
        await agent._db(state.start_pending, agent.db, cmd.id)
        if entry is not None:
            entry["started"] = True
        self._crash_at("cmd-started")
        self.executed[cmd.action] += 1
        status, reason, detail, output = "done", None, "", {}
        try:
            output = await asyncio.wait_for(
                actions.ACTIONS[cmd.action](agent, cmd.device, cmd.args), ACTION_TIMEOUT_S)
        except actions.ActionFailed as err:
            status, reason, detail = "failed", err.reason, err.detail
        except asyncio.TimeoutError:
            status, reason, detail = "failed", "timeout", f"over {ACTION_TIMEOUT_S:g} s"
        except asyncio.CancelledError:
            raise
        except Exception as err:  # a bug in an action: report it, keep running
            log.exception("action raised", extra={"action": cmd.action})
            status, reason, detail = "failed", "error", f"{type(err).__name__}"
        row_seq = await self._result(_result_body(cmd, status, reason, detail, output),
                                     cmd.device, also=_finish(cmd.id))
        log.info("command " + status, extra={"command": cmd.id, "action": cmd.action,
                                             "reason": reason or "-"})
        hook, self.after_result = self.after_result, None
        if hook is not None:
            done = hook(row_seq)  # restart_agent: waits for its result to leave, then stops
            if asyncio.iscoroutine(done):
                await done
        return status

    def _policy(self, cmd: proto.Command) -> tuple[str, str] | None:
        if not self.flag("remote_actions"):
            return "remote_actions_off", "remote actions are switched off for this store"
        if cmd.action == "test_print" and not cmd.args.get("force"):
            lt = time.localtime(self.clock())
            if self.settings.trading(lt.tm_hour * 60 + lt.tm_min):
                return "trading_hours", (f"no test print during trading hours "
                                         f"({self.settings.trading_hours}) unless force=true")
        return None

    def _keys_for(self, payload: bytes) -> dict[str, bytes]:
        """Trusted keys, plus any a pinned key endorses in the message's rotation statements."""
        if b'"endorse"' not in payload or len(payload) > proto.MAX_COMMAND_BYTES:
            return self.trusted
        try:
            import json

            endorse = json.loads(payload).get("endorse")
        except (ValueError, AttributeError, UnicodeDecodeError, RecursionError):
            return self.trusted
        if not isinstance(endorse, list):
            return self.trusted
        return signing.extend_trust(self.trusted, [e for e in endorse if isinstance(e, dict)])

    async def _learn(self, keys: dict[str, bytes], kid: str) -> None:
        new = {k: v for k, v in keys.items() if k not in self.trusted}
        if kid in new:  # a message signed by a rotated key verified: remember the chain
            self.trusted.update(new)
            await self.agent._db(state.learn_keys, self.agent.db,
                                 {k: signing.public_to_text(v) for k, v in new.items()},
                                 self.clock())
            log.info("hub key learned through a signed rotation", extra={"kid": kid})

    # Flags -------------------------------------------------------------------------------

    async def handle_flags(self, payload: bytes) -> str:
        if not self.pinned:
            return await self._reject("flags", payload, "no_trusted_key",
                                      "no hub key pinned in [trust]")
        keys = self._keys_for(payload)
        try:
            doc = proto.check_flags(payload, store=self.store, trusted=keys)
        except proto.CommandError as err:
            return await self._reject("flags", payload, err.code, err.detail)
        await self._learn(keys, doc.kid)
        if doc.version == self.flags_version:
            return "unchanged"  # the retained copy again, on a reconnect
        if doc.version < self.flags_version:
            return await self._reject("flags", payload, "stale_flags",
                                      f"version {doc.version} < {self.flags_version}")
        self._apply_flags(doc.flags, doc.version)
        saved = {"version": doc.version, "flags": doc.flags, "kid": doc.kid,
                 "issued": proto.format_ts(doc.issued), "applied": proto.format_ts(self.clock())}
        body = {"type": "flags", "command": None, "seq": None, "action": None,
                "status": "applied", "reason": None, "flags_version": doc.version,
                "detail": "off: " + (",".join(self.off()) or "none"),
                "output": {"flags": doc.flags}, "verified": True}
        await self._result(body, None, also=lambda db: state.save_flags(db, saved))
        log.info("flags applied", extra={"version": doc.version,
                                         "off": ",".join(self.off()) or "-"})
        return "applied"

    def _apply_flags(self, flags: dict, version: int) -> None:
        self.flags = {k: bool(v) for k, v in flags.items() if isinstance(v, bool)}
        self.flags_version = version

    # Reporting ---------------------------------------------------------------------------

    async def _reject(self, kind: str, payload: bytes, reason: str, detail: str,
                      cmd: proto.Command | None = None,
                      take: tuple[str, int, float, float] | None = None,
                      also: Callable[[Any], None] | None = None) -> str:
        agent, now = self.agent, self.clock()
        self.refused[reason] += 1
        cid, seq, action = (cmd.id, cmd.seq, cmd.action) if cmd else proto.peek_id(payload)
        if cmd is not None and action not in proto.ACTIONS:
            action = None
        log.warning(("command" if kind == "cmd" else kind) + " refused",
                    extra={"reason": reason, "detail": detail[:200], "command": cid or "-"})

        def write(db):
            if take is not None:  # the command's id and seq, taken with its refusal
                state.take(db, *take)
            if also is not None:
                also(db)
            state.count_reject(db, reason, detail, now)
            state.log_row(db, command=cid, seq=seq, action=action,
                          device=cmd.device if cmd and isinstance(cmd.device, str) else None,
                          status="rejected", reason=reason, detail=detail, now=now)

        while self._reported and self._reported[0] < now - 3600:
            self._reported.popleft()
        if len(self._reported) >= self.settings.rejects_reported_per_hour:
            await agent._db(_transaction, agent.db, write)
            return reason
        self._reported.append(now)
        body = {"type": {"cmd": "command", "flags": "flags"}.get(kind, "bundle"),
                "command": cid, "seq": seq,
                "action": action, "status": "rejected", "reason": reason,
                "detail": detail[:proto.MAX_DETAIL], "output": {},
                "verified": cmd is not None and reason not in PRE_AUTH}
        await self._result(body, None, also=write)
        return reason

    async def _result(self, body: dict, device: str | None,
                      also: Callable[[Any], None] | None = None) -> int:
        """Commit a result to the outbox; return its outbox seq."""
        agent, now = self.agent, self.clock()

        def commit(db):
            # enqueue_many serializes the envelope before its transaction: count this refusal
            # into the figures it carries by hand; the row itself is written inside.
            rejects = state.rejects(db)
            if body["status"] == "rejected":
                rejects[body["reason"]] = rejects.get(body["reason"], 0) + 1
            body["rejects"] = rejects
            body["ts"] = proto.format_ts(now)
            body.setdefault("flags_version", self.flags_version or None)

            def inside(db):
                if also is not None:
                    also(db)
                if body["type"] == "command" and body["status"] != "rejected":
                    state.log_row(db, command=body["command"], seq=body["seq"],
                                  action=body["action"], device=device, status=body["status"],
                                  reason=body["reason"], detail=body["detail"], now=now)

            return agent.outbox.enqueue_many([(proto.RESULT_KIND, dict(body))],
                                             also=inside)[0].seq

        return await agent._db(commit, agent.db)

    def _spawn(self, coro) -> None:
        asyncio.get_running_loop().create_task(coro)


def _done(receipt: Any) -> None:
    if receipt is not None:
        receipt.done()


def _fail(receipt: Any) -> None:
    if receipt is not None:
        receipt.fail()


def _finish(cmd_id: str) -> Callable[[Any], None]:
    return lambda db: state.finish_pending(db, cmd_id)


def _command_doc(cmd: proto.Command) -> dict[str, Any]:
    return {"id": cmd.id, "store": cmd.store, "region": cmd.region, "device": cmd.device,
            "action": cmd.action, "args": dict(cmd.args), "issued": cmd.issued,
            "expires": cmd.expires, "seq": cmd.seq, "kid": cmd.kid}


def _result_body(cmd: proto.Command, status: str, reason: str | None, detail: str,
                 output: dict) -> dict[str, Any]:
    return {"type": "command", "command": cmd.id, "seq": cmd.seq, "action": cmd.action,
            "status": status, "reason": reason, "detail": detail, "output": _bounded(output),
            "verified": True}


def _transaction(db, fn) -> None:
    db.execute("BEGIN IMMEDIATE")
    try:
        fn(db)
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


def _bounded(output: dict) -> dict:
    """Keep an action's output within MAX_OUTPUT_BYTES: scalars only, long text cut."""
    import json

    out: dict[str, Any] = {}
    size = 0
    for key, value in list(output.items())[:64]:
        if isinstance(value, float):
            value = round(value, 3)
        elif not isinstance(value, (int, bool, str)) and value is not None:
            value = str(value)
        if isinstance(value, str):
            value = value[:300]
        size += len(json.dumps({str(key)[:64]: value}))
        if size > proto.MAX_OUTPUT_BYTES:
            break
        out[str(key)[:64]] = value
    return out


async def control_service(agent: Any) -> None:
    """The agent service: run the controller's worker until cancelled."""
    await agent.control.run()
