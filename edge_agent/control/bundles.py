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
`<file>.last-good`) and reloading, restored if the reload refuses it. Applied versions live
in the state database (meta `control.bundles`) and are reported in every birth, in
`edge-agent status` and in a `cmd_result` of type `bundle`.
"""

from __future__ import annotations

import asyncio
import json
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

from edge_agent.control.state import load_bundles as load_state
from edge_agent.control.state import save_bundles as save_state

log = logging.getLogger(__name__)
PENDING_MAX = 4


class Bundles:
    """The bundle half of the controller."""

    def __init__(self, controller: Any):  # edge_agent.control.Controller
        self.c = controller
        self.agent = controller.agent
        self.state: dict[str, Any] = {}
        self.pending: dict[str, tuple[proto.Manifest, bool, bool]] = {}  # sha -> (m, rb, urgent)
        self.staged: dict[str, tuple[proto.Manifest, bool, bool, dict]] = {}  # waiting (trading)

    @property
    def folder(self) -> Path:
        return Path(self.agent.config.agent.state_dir) / "bundles"

    def versions(self) -> dict[str, int | None]:
        return {k: (self.state.get(k) or {}).get("version") for k in proto.KINDS}

    def model_path(self) -> str | None:
        return (self.state.get("model") or {}).get("path")

    def topics(self, prefix: str) -> list[str]:
        return [topics.bundle_topic(sha, prefix) for sha in self.pending]

    async def restore(self) -> None:
        self.state = await self.agent._db(load_state, self.agent.db)
        path = self.model_path()
        if path:
            self.agent.model_override = path

    # The desired state -------------------------------------------------------------------

    async def handle_desired(self, payload: bytes) -> str:
        c = self.c
        if not c.pinned:
            return await c._reject("bundle", payload, "no_trusted_key", "no hub key pinned")
        try:
            desired = proto.check_desired(payload, store=c.store, trusted=c.trusted)
        except CommandError as err:
            return await c._reject("bundle", payload, err.code, err.detail)
        if desired.version <= int(self.state.get("desired_version") or 0):
            return "unchanged"
        self.state["desired_version"] = desired.version
        from edge_agent import __version__

        for kind, entry in desired.bundles.items():
            if entry is None:
                continue
            try:
                m = proto.check_manifest(entry["manifest"], c.trusted, now=c.clock(),
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
            if m.version <= int(current.get("version") or 0) and not entry["rollback"]:
                await self._report(kind, m, "rejected", "downgrade",
                                   f"v{m.version} is not above v{current.get('version')} and "
                                   "no signed rollback names it")
                continue
            if len(self.pending) >= PENDING_MAX:
                await self._report(kind, m, "rejected", "busy", "too many bundles pending")
                continue
            self.pending[m.sha256] = (m, entry["rollback"], desired.urgent)
            c.subscribe(topics.bundle_topic(m.sha256, c.prefix))
            log.info("bundle wanted", extra={"kind": kind, "version": m.version,
                                             "sha256": m.sha256[:16]})
        await self.agent._db(save_state, self.agent.db, self.state)
        return "accepted"

    # Content -------------------------------------------------------------------------------

    async def handle_content(self, sha: str, payload: bytes) -> str:
        entry = self.pending.pop(sha, None)
        if entry is None or not payload:
            return "unwanted"
        self.c.unsubscribe(topics.bundle_topic(sha, self.c.prefix))
        m, rollback, urgent = entry
        try:
            files = proto.unpack(payload, m)
        except CommandError as err:
            return await self._report(m.kind, m, "rejected", err.code, err.detail)
        folder = await asyncio.to_thread(self._stage, m, files)
        if not urgent and self._trading():
            self.staged[sha] = (m, rollback, urgent, {"folder": str(folder)})
            log.info("bundle staged; applies after trading hours",
                     extra={"kind": m.kind, "version": m.version})
            return "deferred"
        return await self._apply(m, rollback, folder)

    async def apply_deferred(self) -> None:
        if not self.staged or self._trading():
            return
        for sha, (m, rollback, _, extra) in list(self.staged.items()):
            del self.staged[sha]
            await self._apply(m, rollback, Path(extra["folder"]))

    def _trading(self) -> bool:
        lt = time.localtime(self.c.clock())
        return self.c.settings.trading(lt.tm_hour * 60 + lt.tm_min)

    def _stage(self, m: proto.Manifest, files: dict[str, bytes]) -> Path:
        final = self.folder / m.kind / m.sha256[:32]
        if final.exists():
            return final
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

    async def _apply(self, m: proto.Manifest, rollback: bool, folder: Path) -> str:
        try:
            if m.kind == "model":
                output = await self._apply_model(m, folder)
            else:
                output = await self._apply_config(m, folder)
        except CommandError as err:
            return await self._report(m.kind, m, "failed", err.code, err.detail)
        previous = self.state.get(m.kind) or {}
        self.state[m.kind] = {"version": m.version, "sha256": m.sha256, "name": m.name,
                              "path": output.pop("path", None), "applied": time.time(),
                              "rollback": rollback,
                              "last_good": {k: previous.get(k) for k in
                                            ("version", "sha256", "name", "path")}
                              if previous else None}
        log.info("bundle applied", extra={"kind": m.kind, "version": m.version,
                                          "rollback": rollback})
        return await self._report(m.kind, m, "applied", None,
                                  "rolled back" if rollback else "", output, save=True)

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
                      save: bool = False) -> str:
        c = self.c
        if status == "rejected":
            c.refused[reason] += 1
        body = {"type": "bundle", "command": None, "seq": None, "action": None,
                "status": status, "reason": reason, "detail": detail[:300],
                "output": output or {}, "verified": True, "kind": kind,
                "bundle_version": m.version if m else None,
                "sha256": m.sha256 if m else None}
        state = dict(self.state)
        from edge_agent.control import state as cstate  # noqa: PLC0415 (count_reject, log_row)

        def also(db):
            if save:
                save_state(db, state)
            if status == "rejected":
                cstate.count_reject(db, reason, detail, c.clock())
            cstate.log_row(db, command=None, seq=None, action=f"bundle:{kind}", device=None,
                           status=status, reason=reason, detail=detail, now=c.clock())

        await c._result(body, None, also=also)
        return status if status != "rejected" else reason
