"""Config and model bundles on the agent: verify, stage, validate, swap atomically, keep the
last good one, refuse a lower version unless a signed rollback names it.

The hub's desired state arrives retained on the store's `config` topic; each bundle it names
is fetched from its content-addressed topic `{prefix}/bundles/{sha256}`, checked against the
signed manifest (size, SHA-256, kind, files), written to `<state_dir>/bundles/<kind>/<sha>/`,
validated (a config passes the config check and keeps the store's identity and hub keys; a
model passes its card check and scores the devices' current windows with finite values in
[0, 1]: a shadow run whose figures are reported), then swapped in: a model by loading it into
the running scorer (the previous one keeps scoring if the load fails) and recording it as
current, a config by replacing the config file in one rename (the old one kept as
`<file>.last-good`) and reloading, restored if the reload refuses it.

What is wanted and what is applied are both in the state database (meta `control.bundles`,
one JSON document, docs/rollout.md):

    {"desired_version": N,                      the last desired state recorded
     "model": {version, sha256, path, last_good, ...} | absent,      applied, by kind
     "config": {...} | absent,
     "wanted": {kind: {manifest, rollback, urgent, desired_version,   recorded with the
                       since, staged, asks, ...}}}                    desired state

A desired state is recorded (its version and the bundles it names that differ from the applied
ones, as `wanted`) in one transaction before its PUBACK. A bundle leaves `wanted` in the
transaction that records it applied (with its `cmd_result`), or failed or refused. So a stop
at any point between the desired state and the swap leaves it wanted, and the next start seeks
it again (re-subscribing to its content, or applying the copy it staged) without a new desired
version. While the content does not come, the agent asks the broker again (re-subscribing,
which makes it resend the retained content) at most FETCH_TRIES times per start, 30 s apart and
then doubling, and on every new connection; `edge-agent status` says what it waits for.
Applied versions are reported in every birth, in `edge-agent status` and in a `cmd_result` of
type `bundle`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import os
import shutil
import time
from pathlib import Path
from typing import Any

from edge_protocol import bundles as proto
from edge_protocol import topics
from edge_protocol.commands import CommandError

from edge_agent.control.state import FETCH_TRIES
from edge_agent.control.state import load_bundles as load_state
from edge_agent.control.state import save_bundles as save_state

log = logging.getLogger(__name__)
FETCH_FIRST_S = 30.0    # the first ask again after this; then twice as long each time
FETCH_MAX_S = 900.0     # at most this apart
APPLY_TRIES = 3         # rounds a staged bundle whose apply raised is tried in


@dataclasses.dataclass(frozen=True)
class Want:
    """A bundle the desired state names and the agent has not applied yet."""

    m: proto.Manifest
    rollback: bool
    urgent: bool
    desired_version: int
    since: float                 # when the desired state naming it was recorded (wall clock)
    staged: str | None = None    # its folder, when the content is staged waiting for hours
    asks: int = 0                # times this start asked the broker for its content
    next_ask: float = 0.0        # monotonic; not saved

    def doc(self) -> dict[str, Any]:
        return {"manifest": self.m.doc, "kind": self.m.kind, "name": self.m.name,
                "version": self.m.version, "sha256": self.m.sha256, "rollback": self.rollback,
                "urgent": self.urgent, "desired_version": self.desired_version,
                "since": self.since, "staged": self.staged, "asks": self.asks}


def _doc(state: dict[str, Any], wanted: dict[str, Want]) -> dict[str, Any]:
    """The document saved as meta `control.bundles`."""
    return {**state, "wanted": {k: w.doc() for k, w in wanted.items()}}


class Bundles:
    """The bundle half of the controller. Every method runs on the controller's intake worker
    (or before it starts), one at a time."""

    def __init__(self, controller: Any):  # edge_agent.control.Controller
        self.c = controller
        self.agent = controller.agent
        self.state: dict[str, Any] = {}       # applied bundles by kind, and desired_version
        self.wanted: dict[str, Want] = {}     # kind -> the bundle wanted and not applied yet
        self.mono = time.monotonic            # the re-ask schedule's clock (tests set it)
        self._errors: dict[str, int] = {}     # sha -> rounds its staged apply raised

    @property
    def folder(self) -> Path:
        return Path(self.agent.config.agent.state_dir) / "bundles"

    def versions(self) -> dict[str, int | None]:
        return {k: (self.state.get(k) or {}).get("version") for k in proto.KINDS}

    def model_path(self) -> str | None:
        return (self.state.get("model") or {}).get("path")

    def topics(self, prefix: str) -> list[str]:
        """The contents still to fetch (subscribed again on every new connection)."""
        return [topics.bundle_topic(w.m.sha256, prefix) for w in self.wanted.values()
                if w.staged is None]

    async def restore(self) -> None:
        """At start: the applied bundles, and what was wanted and not applied when the agent
        stopped: a staged copy that still matches its manifest is applied (or waits for the
        end of trading hours); anything else is fetched again."""
        from edge_agent import __version__

        doc = await self.agent._db(load_state, self.agent.db)
        saved = doc.pop("wanted", None)
        self.state = doc
        path = self.model_path()
        if path:
            self.agent.model_override = path
        if not isinstance(saved, dict) or not saved:
            return
        c, wanted, dropped = self.c, {}, []
        for kind, entry in saved.items():
            entry = entry if isinstance(entry, dict) else {}
            try:
                if kind not in proto.KINDS:
                    raise CommandError("bad_message", "unknown kind")
                m = proto.check_manifest(entry.get("manifest"), c.trusted, now=c.clock(),
                                         agent_version=__version__)
                if m.kind != kind:
                    raise CommandError("bad_message", "manifest of another kind")
            except CommandError as err:
                dropped.append((kind, entry, err))
                continue
            staged = await asyncio.to_thread(self._staged_copy, m)
            wanted[kind] = Want(m, entry.get("rollback") is True, entry.get("urgent") is True,
                                _int(entry.get("desired_version")), _float(entry.get("since")),
                                staged=str(staged) if staged else None)
        self.wanted = wanted
        for kind, entry, err in dropped:  # each refusal commits the document without it
            await self._report(kind, None, "rejected", err.code,
                               f"wanted before the restart: {err.detail}",
                               save=_doc(self.state, self.wanted),
                               ident=(_int(entry.get("version")) or None,
                                      entry.get("sha256") if isinstance(entry.get("sha256"),
                                                                        str) else None))
        for kind, w in wanted.items():
            log.warning("bundle wanted before the restart and not applied; " +
                        ("applying the staged copy" if w.staged else "fetching it again"),
                        extra={"kind": kind, "version": w.m.version,
                               "sha256": w.m.sha256[:16], "desired_version": w.desired_version})
        # Saved as found now (staged or not; asks start again from zero on each start).
        await self.agent._db(save_state, self.agent.db, _doc(self.state, self.wanted))
        await self.ask_again()

    # The desired state -------------------------------------------------------------------

    async def handle_desired(self, payload: bytes) -> str:
        """Record a new desired state: its version, and what it names that is not applied,
        as wanted (one transaction, before the PUBACK); then ask for the contents."""
        from edge_agent import __version__

        c = self.c
        if not c.pinned:
            return await c._reject("bundle", payload, "no_trusted_key", "no hub key pinned")
        try:
            desired = proto.check_desired(payload, store=c.store, trusted=c.trusted)
        except CommandError as err:
            return await c._reject("bundle", payload, err.code, err.detail)
        if desired.version <= _int(self.state.get("desired_version")):
            return "unchanged"  # the retained copy again; what it wants is recorded already
        wanted: dict[str, Want] = {}
        now = c.clock()
        for kind in proto.KINDS:
            entry = desired.bundles.get(kind)
            if entry is None:
                continue  # nothing wanted of this kind: a wanted one not applied is dropped
            try:
                m = proto.check_manifest(entry["manifest"], c.trusted, now=now,
                                         agent_version=__version__)
            except CommandError as err:
                await self._report(kind, None, "rejected", err.code, err.detail)
                continue
            if m.kind != kind:
                await self._report(kind, m, "rejected", "bad_message", "manifest of another kind")
                continue
            current = self.state.get(kind) or {}
            if current.get("sha256") == m.sha256:
                continue
            if m.version <= _int(current.get("version")) and not entry["rollback"]:
                await self._report(kind, m, "rejected", "downgrade",
                                   f"v{m.version} is not above v{current.get('version')} and "
                                   "no signed rollback names it")
                continue
            old = self.wanted.get(kind)
            if old is not None and old.m.sha256 == m.sha256:  # still wanted: keep its progress
                wanted[kind] = dataclasses.replace(old, rollback=entry["rollback"],
                                                   urgent=desired.urgent,
                                                   desired_version=desired.version)
            else:
                wanted[kind] = Want(m, entry["rollback"], desired.urgent, desired.version, now)
        state = dict(self.state, desired_version=desired.version)
        await self.agent._db(save_state, self.agent.db, _doc(state, wanted))
        if wanted:
            c._crash_at("bundle-wanted")  # recorded; not acknowledged, content not asked for
        before, self.state, self.wanted = self.wanted, state, wanted
        for kind, w in before.items():
            if kind not in wanted or wanted[kind].m.sha256 != w.m.sha256:
                log.info("bundle no longer wanted", extra={"kind": kind, "version": w.m.version})
                c.unsubscribe(topics.bundle_topic(w.m.sha256, c.prefix))
        for kind, w in wanted.items():
            if kind not in before or before[kind].m.sha256 != w.m.sha256:
                log.info("bundle wanted", extra={"kind": kind, "version": w.m.version,
                                                 "sha256": w.m.sha256[:16]})
        await self.ask_again()
        return "accepted"

    async def ask_again(self) -> None:
        """Ask the broker for each wanted content not staged whose time has come: subscribing
        (again) makes it send the retained copy. At most FETCH_TRIES asks per start; a new
        connection subscribes to every wanted content anyway (Controller.topics)."""
        now, asked = self.mono(), False
        for kind, w in list(self.wanted.items()):
            if w.staged is not None or w.asks >= FETCH_TRIES or now < w.next_ask:
                continue
            self.c.subscribe(topics.bundle_topic(w.m.sha256, self.c.prefix))
            asks = w.asks + 1
            self.wanted[kind] = dataclasses.replace(
                w, asks=asks, next_ask=now + min(FETCH_FIRST_S * 2 ** (asks - 1), FETCH_MAX_S))
            asked = True
            if asks > 1:
                log.info("bundle content asked for again", extra={
                    "kind": kind, "version": w.m.version, "asks": asks,
                    "last": asks >= FETCH_TRIES})
        if asked:  # saved for `edge-agent status` only: a failed save changes nothing else
            try:
                await self.agent._db(save_state, self.agent.db, _doc(self.state, self.wanted))
            except Exception:
                log.exception("could not save how often a bundle was asked for")

    # Content -------------------------------------------------------------------------------

    async def handle_content(self, sha: str, payload: bytes) -> str:
        kind = next((k for k, w in self.wanted.items() if w.m.sha256 == sha), None)
        if kind is None or not payload:
            return "unwanted"
        w = self.wanted[kind]
        try:
            files = proto.unpack(payload, w.m)
        except CommandError as err:
            return await self._drop(kind, "rejected", err.code, err.detail)
        folder = await asyncio.to_thread(self._stage, w.m, files)
        if not w.urgent and self._trading():
            if w.staged is None:
                staged = dict(self.wanted, **{kind: dataclasses.replace(w, staged=str(folder))})
                await self.agent._db(save_state, self.agent.db, _doc(self.state, staged))
                self.wanted = staged
                self.c.unsubscribe(topics.bundle_topic(sha, self.c.prefix))
            log.info("bundle staged; applies after trading hours",
                     extra={"kind": kind, "version": w.m.version})
            return "deferred"
        return await self._apply(kind, w, folder)

    async def apply_deferred(self) -> None:
        """Staged bundles whose time has come (trading hours over, or urgent now). One whose
        apply raised (not a refusal: the disk, the state database) is tried again on the
        worker's next round, and given up as `failed` (reason `error`) after APPLY_TRIES."""
        for kind, w in list(self.wanted.items()):
            if w.staged is None or not (w.urgent or not self._trading()):
                continue
            try:
                await self._apply(kind, w, Path(w.staged))
            except asyncio.CancelledError:
                raise
            except Exception as err:
                tries = self._errors[w.m.sha256] = self._errors.get(w.m.sha256, 0) + 1
                log.exception("staged bundle could not be applied", extra={
                    "kind": kind, "version": w.m.version, "tries": tries})
                if tries >= APPLY_TRIES and self.wanted.get(kind) is w:
                    del self._errors[w.m.sha256]
                    await self._drop(kind, "failed", "error",
                                     f"applying raised {tries} times: {type(err).__name__}")
            else:
                self._errors.pop(w.m.sha256, None)

    def _trading(self) -> bool:
        lt = time.localtime(self.c.clock())
        return self.c.settings.trading(lt.tm_hour * 60 + lt.tm_min)

    def _staged_folder(self, m: proto.Manifest) -> Path:
        return self.folder / m.kind / m.sha256[:32]

    def _stage(self, m: proto.Manifest, files: dict[str, bytes]) -> Path:
        final = self._staged_folder(m)
        if final.exists():
            if self._staged_copy(m) is not None:
                return final  # staged before a stop (or the last good one): the same bytes
            shutil.rmtree(final)
        tmp = final.with_name(final.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for name, data in files.items():
            with open(tmp / name, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, final)
        return final

    def _staged_copy(self, m: proto.Manifest) -> Path | None:
        """The staged folder of a bundle, if its files are still exactly the bundle's content
        (the same canonical bytes the manifest's size and SHA-256 name)."""
        folder = self._staged_folder(m)
        try:
            files = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
            data = proto.content(m.kind, files)
            proto.unpack(data, m)
        except (OSError, ValueError, CommandError):
            return None
        return folder

    async def _drop(self, kind: str, status: str, reason: str | None, detail: str) -> str:
        """A wanted bundle failed or was refused: report it and stop wanting it (one commit)."""
        w = self.wanted[kind]
        wanted = {k: v for k, v in self.wanted.items() if k != kind}
        got = await self._report(kind, w.m, status, reason, detail,
                                 save=_doc(self.state, wanted))
        self.wanted = wanted
        self.c.unsubscribe(topics.bundle_topic(w.m.sha256, self.c.prefix))
        return got

    async def _apply(self, kind: str, w: Want, folder: Path) -> str:
        m = w.m
        try:
            if m.kind == "model":
                output = await self._apply_model(m, folder)
            else:
                output = await self._apply_config(m, folder)
        except CommandError as err:
            return await self._drop(kind, "failed", err.code, err.detail)
        previous = self.state.get(kind) or {}
        state = dict(self.state)
        state[kind] = {"version": m.version, "sha256": m.sha256, "name": m.name,
                       "path": output.pop("path", None), "applied": time.time(),
                       "rollback": w.rollback,
                       "last_good": {k: previous.get(k) for k in
                                     ("version", "sha256", "name", "path")}
                       if previous else None}
        wanted = {k: v for k, v in self.wanted.items() if k != kind}
        got = await self._report(kind, m, "applied", None,
                                 "rolled back" if w.rollback else "", output,
                                 save=_doc(state, wanted))
        self.state, self.wanted = state, wanted
        self.c.unsubscribe(topics.bundle_topic(m.sha256, self.c.prefix))
        log.info("bundle applied", extra={"kind": kind, "version": m.version,
                                          "rollback": w.rollback})
        return got

    async def _apply_model(self, m: proto.Manifest, folder: Path) -> dict[str, Any]:
        from edge_agent.health import features as F
        from edge_agent.health.scorer import ModelError, Scorer

        onnx = next(folder.glob("*.onnx"))
        shadow = Scorer()
        loop = asyncio.get_running_loop()
        if not await loop.run_in_executor(None, shadow.load, str(onnx)):
            raise CommandError("invalid_model", (shadow.error or "refused")[:200])
        engine = getattr(self.agent, "health", None)
        scores: list[float] = []
        if engine is not None:
            devices = sorted(d for d in engine.last if d in engine.features.windows)
            vectors = [F.finite(v) for v in engine.features.vectors(devices, time.time())]
            try:
                scores = await loop.run_in_executor(None, shadow.score, vectors)
            except (ValueError, ModelError) as err:
                raise CommandError("invalid_model", f"shadow scoring failed: {err}") from err
        if not all(isinstance(s, float) and math.isfinite(s) and 0.0 <= s <= 1.0
                   for s in scores):
            raise CommandError("invalid_model", "shadow scores outside [0, 1]")
        if engine is not None:
            if not await loop.run_in_executor(None, engine.scorer.load, str(onnx)):
                raise CommandError("invalid_model", (engine.scorer.error or "")[:200])
        self.agent.model_override = str(onnx)
        return {"path": str(onnx), "model": shadow.version, "shadow_devices": len(scores),
                "shadow_mean": round(sum(scores) / len(scores), 4) if scores else None,
                "shadow_max": round(max(scores), 4) if scores else None}

    async def _apply_config(self, m: proto.Manifest, folder: Path) -> dict[str, Any]:
        from edge_agent.config import parse_text
        from edge_agent.errors import ConfigError

        agent = self.agent
        text = (folder / "agent.toml").read_text(encoding="utf-8")
        try:
            new = parse_text(text, "bundle")
        except ConfigError as err:
            raise CommandError("invalid_config", "; ".join(str(p) for p in err.problems)[:200])
        cur = agent.config
        if (new.agent.store, new.agent.region) != (cur.agent.store, cur.agent.region):
            raise CommandError("invalid_config", "a bundle cannot change the store or region")
        if not new.trust.hub_keys:
            raise CommandError("invalid_config", "a bundle cannot remove the pinned hub keys")
        if agent.config_path is None:
            raise CommandError("no_config_file", "the agent runs without a config file")
        path = agent.config_path
        last_good = path.with_name(path.name + ".last-good")
        tmp = path.with_name(path.name + ".bundle.tmp")
        old = path.read_bytes()

        def swap() -> None:
            if old == text.encode("utf-8"):
                # Swapped in before a stop that came before its record: the file already is
                # this bundle, and `.last-good` still holds the one before it.
                return
            with open(tmp, "wb") as f:
                f.write(text.encode("utf-8"))
                f.flush()
                os.fsync(f.fileno())
            with open(last_good, "wb") as f:
                f.write(old)
            os.replace(tmp, path)

        await asyncio.to_thread(swap)
        if not agent.reload():
            os.replace(last_good, path)
            agent.reload()
            raise CommandError("config_rejected", "the reload refused it; the old file is back")
        return {"path": str(path), "devices": len(agent.config.devices)}

    async def _report(self, kind: str, m: proto.Manifest | None, status: str,
                      reason: str | None, detail: str, output: dict | None = None,
                      save: dict[str, Any] | None = None,
                      ident: tuple[int | None, str | None] = (None, None)) -> str:
        """Commit a `cmd_result` of type bundle, with `save` (the whole `control.bundles`
        document) in the same transaction when given."""
        c = self.c
        if status == "rejected":
            c.refused[reason] += 1
        body = {"type": "bundle", "command": None, "seq": None, "action": None,
                "status": status, "reason": reason, "detail": detail[:300],
                "output": output or {}, "verified": True, "kind": kind,
                "bundle_version": m.version if m else ident[0],
                "sha256": m.sha256 if m else ident[1]}
        from edge_agent.control import state as cstate  # noqa: PLC0415 (count_reject, log_row)

        def also(db):
            if save is not None:
                save_state(db, save)
            if status == "rejected":
                cstate.count_reject(db, reason, detail, c.clock())
            cstate.log_row(db, command=None, seq=None, action=f"bundle:{kind}", device=None,
                           status=status, reason=reason, detail=detail, now=c.clock())

        await c._result(body, None, also=also)
        return status if status != "rejected" else reason


def _int(value: Any) -> int:
    return value if type(value) is int else 0


def _float(value: Any) -> float:
    return float(value) if type(value) in (int, float) and math.isfinite(value) else 0.0
