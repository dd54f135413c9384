"""The health cycle, without I/O: readings into features, one scoring batch, policy, bodies.

The agent's service and `edge-agent replay` both drive a HealthEngine, so a replay decides
exactly what the agent would have decided. It never needs the network.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from dataclasses import replace
from typing import Any

from edge_protocol.bodies import MAX_REASONS, MAX_SEQ, SCORING_ERRORS_EVENT

from edge_agent.health import features as F
from edge_agent.health.policy import (DeviceHealth, Escalation, Thresholds, decide, note_reading,
                                      parse_hours, zone_offset)
from edge_agent.health.scorer import Scorer
from edge_agent.reading import Reading

# A rate feature and the trend feature that says whether it is rising.
RISING = {"cutter_errors_per_day": ("cutter_errors_trend", 0.5),
          "printer_errors_per_day": ("printer_errors_trend", 0.5),
          "overheats_per_day": ("overheats_trend", 0.5),
          "decode_errors_per_day": ("decode_errors_trend", 2.0),
          "reconnects_per_day": ("reconnects_trend", 0.5),
          "host_temp_c": ("host_temp_trend_c", 1.0),
          "disk_pct": ("disk_trend_pct_per_day", 0.2),
          "smart_bad_sectors": ("smart_bad_trend", 0.5),
          "latency_ms": ("latency_trend_ratio", 1.5),
          "timeouts_per_day": ("timeouts_trend", 1.0)}
_IDX = {n: i for i, n in enumerate(F.NAMES)}


class HealthEngine:
    """Feature windows, the scorer and each device's health, for one store."""

    def __init__(self, settings: Any, scorer: Scorer | None = None):
        self.settings = settings
        self.scorer = scorer or Scorer()
        self.features = F.FeatureStore()
        self.last: dict[str, Reading] = {}
        self.health: dict[str, DeviceHealth] = {}
        self.cycles = 0
        self.last_cycle: float | None = None
        # The hub's "scoring" flag (a kill switch): off means rule alerts only, no model score.
        self.model_allowed: Any = lambda: True
        self._zone: tuple | None = None
        # Devices that went without a model score in a cycle, by reason (SCORING_ERROR_REASONS):
        # since the state database was made (saved with the windows, so a restart keeps it),
        # and not yet reported to the hub in a scoring_errors event.
        self.errors_total: Counter[str] = Counter()
        self.errors_unreported: Counter[str] = Counter()
        self._reported_at: float | None = None
        self._last_report_quiet = True

    @property
    def model_version(self) -> str | None:
        """The version of the model scoring now (None: not scoring)."""
        return self.scorer.version

    def observe(self, reading: Reading) -> None:
        """Take one reading (a Recorder observer: cheap, never blocks)."""
        self.features.observe(reading)
        note_reading(self.health.setdefault(reading.device, DeviceHealth()), reading)
        prev = self.last.get(reading.device)
        if prev is None or reading.ts >= prev.ts:
            self.last[reading.device] = reading

    def limits(self) -> Thresholds:
        """Thresholds from the config, or the model card's where the config says 0."""
        s = self.settings
        card = self.scorer.model.card if self.scorer.model else {}
        threshold = s.threshold or float(card.get("threshold", 0.5))
        watch = s.watch or float(card.get("watch_threshold", threshold / 2))
        esc = getattr(s, "escalate", None)
        escalation = Escalation(**{k: getattr(esc, k) for k in Escalation.__dataclass_fields__
                                   if hasattr(esc, k)}) if esc is not None else Escalation()
        if self._zone is None or self._zone[0] != getattr(s, "timezone", ""):
            self._zone = (getattr(s, "timezone", ""), zone_offset(getattr(s, "timezone", "")))
        return Thresholds(threshold, min(watch, threshold), s.hysteresis, s.failed_after,
                          s.offline_after, s.hold, mech_polls=getattr(s, "mech_polls", 3),
                          escalation=escalation,
                          trading=parse_hours(getattr(s, "trading_hours", "07:00-22:00")),
                          utc_offset=self._zone[1], clear=getattr(s, "clear", 0.0) or None)

    def limits_by_class(self) -> dict[float, Thresholds]:
        """The policy's settings for each device class code.

        A card may carry per-class thresholds (`class_thresholds`: a printer, a scanner and a
        register do not cost the same false alert for the same recall); a class it does not
        name, or a card with one threshold, uses the card's threshold. A threshold (or watch
        level) set in the config is the store's choice and applies to every class.
        """
        base = self.limits()
        s = self.settings
        card = self.scorer.model.card if self.scorer.model else {}
        by_class = card.get("class_thresholds")
        out: dict[float, Thresholds] = {}
        if not isinstance(by_class, dict):
            return out
        for name, levels in by_class.items():
            code = F.CLASS_CODES.get(name)
            if code is None or not isinstance(levels, dict):
                continue
            threshold = s.threshold or float(levels.get("threshold", base.threshold))
            watch = s.watch or float(levels.get("watch_threshold", threshold / 2))
            out[code] = replace(base, threshold=threshold, watch=min(watch, threshold))
        return out

    def forget(self, keep: set[str]) -> None:
        """Drop devices no longer configured."""
        self.features.forget(keep)
        for dev in [d for d in self.last if d not in keep]:
            del self.last[dev]
            self.health.pop(dev, None)

    def cycle(self, now: float) -> tuple[list[dict], list[dict]]:
        """Run features, one scoring batch and the policy for every device; return bodies."""
        devices = sorted(d for d in self.last if d in self.features.windows)
        vectors = [F.finite(v) for v in self.features.vectors(devices, now)]
        scores: list[float | None] = [None] * len(devices)
        if devices and self.model_allowed():
            if self.scorer.model is not None:
                scored, errors = self.scorer.score_checked(vectors)
                scores = scored or scores
                self.note_errors(errors)
            elif getattr(self.settings, "enabled", True):
                # Scoring is on and allowed, but no model loads: rules only for every device.
                self.note_errors(Counter(no_model=len(devices)))
        base = self.limits()
        by_class = self.limits_by_class()
        limits = [by_class.get(v[0], base) for v in vectors]
        explanations = self._explain(vectors, scores, limits)
        decisions, alerts = [], []
        model = self.scorer.version
        for i, dev in enumerate(devices):
            health = self.health.setdefault(dev, DeviceHealth())
            feats = dict(zip(F.NAMES, vectors[i]))
            body, raised = decide(dev, health, self.last.get(dev), scores[i], feats,
                                  explanations.get(i, []), model, limits[i], now)
            if body is not None:
                decisions.append(body)
            alerts.extend(raised)
        self.cycles += 1
        self.last_cycle = now
        return decisions, alerts

    def _explain(self, vectors: list[list[float]], scores: list[float | None],
                 limits: list[Thresholds]) -> dict[int, list[str]]:
        """Name the features that raise each watched device's score most, in words.

        A feature's contribution is how much the score drops when that feature alone is set to
        the fleet's healthy median (from the card): one extra batch for the watched devices.
        """
        k = self.settings.explain
        model = self.scorer.model
        if not k or model is None:
            return {}
        refs = model.card.get("reference")
        if not isinstance(refs, dict):
            return {}
        watched = [i for i, s in enumerate(scores)
                   if s is not None and s >= limits[i].watch - limits[i].hysteresis]
        rows, owners = [], []
        for i in watched:
            # Compare with healthy devices of the same class (a scanner has no print head).
            ref = refs.get(str(int(vectors[i][0])))
            if not isinstance(ref, list) or len(ref) != len(F.NAMES):
                continue
            for j in range(1, len(F.NAMES)):  # the device class is not a cause
                if vectors[i][j] != ref[j]:
                    row = list(vectors[i])
                    row[j] = ref[j]
                    rows.append(row)
                    owners.append((i, j))
        if not rows:
            return {}
        # Explanations only: a failed batch here names no features and is not counted.
        alt, _ = self.scorer.score_checked(rows)
        contrib: dict[int, list[tuple[float, int]]] = {}
        for (i, j), s in zip(owners, alt):
            if s is None:
                continue
            gain = scores[i] - s  # type: ignore[operator]
            if gain > 0.02:  # below this a feature barely moves the score
                contrib.setdefault(i, []).append((gain, j))
        out = {}
        for i, items in contrib.items():
            items.sort(reverse=True)
            words = []
            for gain, j in items[:k]:
                name = F.NAMES[j]
                trend = RISING.get(name)
                rising = bool(trend and vectors[i][_IDX[trend[0]]] >= trend[1])
                words.append(F.describe(j, vectors[i][j], rising))
            out[i] = words
        return out

    # Scoring errors --------------------------------------------------------------------------

    def note_errors(self, errors: Counter[str]) -> None:
        """Count devices that went without a model score (bounded: the reasons are a fixed
        set, each count stops at the protocol's maximum)."""
        for reason, n in errors.items():
            if n <= 0 or (reason not in self.errors_total
                          and len(self.errors_total) >= MAX_REASONS):
                continue
            self.errors_total[reason] = min(MAX_SEQ, self.errors_total[reason] + n)
            self.errors_unreported[reason] = min(MAX_SEQ, self.errors_unreported[reason] + n)

    def error_report(self, now: float, every: float, force: bool = False) -> dict | None:
        """The body of a scoring_errors event when one is due, else None.

        Due when errors are unreported and the last report was `every` seconds ago, or carried
        no errors (so the first errors after a quiet spell go at once, a steady stream at most
        once every `every` seconds); `force` (the service's start) sends one even with nothing
        new, so the hub has the totals this run counts from."""
        pending = +self.errors_unreported
        if not force:
            if not pending:
                return None
            if (self._reported_at is not None and not self._last_report_quiet
                    and now - self._reported_at < every):
                return None
        body = {"event": SCORING_ERRORS_EVENT, "errors": dict(sorted(pending.items())),
                "total": dict(sorted((+self.errors_total).items())),
                "model": self.scorer.version}
        self.errors_unreported.clear()
        self._reported_at = now
        self._last_report_quiet = not pending
        return body

    def errors_doc(self) -> str:
        """The counters as saved in the state database (meta `scoring_errors`)."""
        return json.dumps({"total": dict(+self.errors_total),
                           "unreported": dict(+self.errors_unreported)}, sort_keys=True)

    def restore_errors(self, text: str) -> None:
        """Take back the counters a previous run saved (ignore a damaged value)."""
        try:
            doc = json.loads(text)
            for key, counter in (("total", self.errors_total),
                                 ("unreported", self.errors_unreported)):
                counter.clear()
                for reason, n in list(doc.get(key, {}).items())[:MAX_REASONS]:
                    if isinstance(reason, str) and isinstance(n, int) and n > 0:
                        counter[reason] = min(MAX_SEQ, n)
        except (ValueError, TypeError, AttributeError):
            self.errors_total.clear()
            self.errors_unreported.clear()

    def save(self, db: sqlite3.Connection, now: float) -> None:
        """Persist changed windows and every device's health (database thread)."""
        self.features.save(db, now)
        rows = [(dev, h.decision, h.score, json.dumps(h.alerts), json.dumps(h.to_dict()), now)
                for dev, h in self.health.items()]
        if rows:
            db.execute("BEGIN IMMEDIATE")
            try:
                db.execute("DELETE FROM health WHERE device NOT IN (%s)"
                           % ",".join("?" * len(rows)), [r[0] for r in rows])
                db.executemany(
                    "INSERT INTO health (device, decision, score, alerts, body, updated)"
                    " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(device) DO UPDATE SET"
                    " decision = excluded.decision, score = excluded.score,"
                    " alerts = excluded.alerts, body = excluded.body,"
                    " updated = excluded.updated", rows)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def load(self, db: sqlite3.Connection) -> int:
        """Restore windows and health saved by a previous run; return devices restored."""
        n = self.features.load(db)
        try:
            row = db.execute("SELECT value FROM meta WHERE key = 'scoring_errors'").fetchone()
        except sqlite3.OperationalError:
            row = None
        if row:
            self.restore_errors(row[0])
        for dev, body in db.execute("SELECT device, body FROM health"):
            try:
                self.health[dev] = DeviceHealth.from_dict(json.loads(body))
            except (ValueError, TypeError, AttributeError):
                continue
        return n

    def state(self) -> dict[str, Any]:
        """Scoring state for `status`."""
        st = self.scorer.state()
        st.update({"enabled": bool(self.settings.enabled), "cycles": self.cycles,
                   "last_cycle": self.last_cycle, "devices": len(self.features.windows),
                   "switched_off": not self.model_allowed(),
                   "errors": dict(sorted((+self.errors_total).items()))})
        return st
