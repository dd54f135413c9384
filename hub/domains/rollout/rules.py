"""Bundles, each store's desired state, and staged rollouts with health gates (docs/rollout.md).

Plain functions over (tx, clock). A rollout moves a bundle through its stages: each stage's
stores get the bundle in their signed desired state, soak, and then the gates compare the
updated stores with those not yet updated. A failed gate aborts the rollout and sends every
updated store back to the version it had (a signed rollback), with no person involved; an
inconclusive gate (too few device-days) keeps soaking, and after `inconclusive_soaks` extra
soaks pauses the rollout for a person. A stage marked for approval waits for one.
"""

from __future__ import annotations

import base64
import json
import math
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from edge_protocol import bundles as proto
from hub.domains import audit
from hub.domains.access import authorize, system_actor
from hub.errors import HubError, NotFound

Clock = Callable[[], float]
DAY = 86400.0


class RolloutError(HubError):
    """A rollout request that cannot be done (bad stages, wrong state)."""


# Bundles ------------------------------------------------------------------------------------

def create_bundle(tx: Any, clock: Clock, actor: Any, *, kind: str, name: str,
                  files: dict[str, bytes], ring: Any, version: int | None = None,
                  expires_s: float = 365 * DAY, min_agent: str = "0.0.0") -> dict[str, Any]:
    """Store a signed, content-addressed bundle (the same content twice is the same bundle)."""
    authorize(actor, "devices.act")
    data = proto.content(kind, files)
    sha = proto.sha256(data)
    tx.execute("SELECT kind, name, version FROM bundles WHERE sha256 = ?", (sha,))
    row = tx.fetchone()
    if row is not None:
        return {"sha256": sha, "kind": row[0], "name": row[1], "version": int(row[2]),
                "size": len(data), "existing": True}
    if version is None:
        tx.execute("SELECT COALESCE(MAX(version), 0) FROM bundles WHERE kind = ?", (kind,))
        version = int(tx.fetchone()[0]) + 1
    else:
        tx.execute("SELECT 1 FROM bundles WHERE kind = ? AND version = ?", (kind, version))
        if tx.fetchone():
            raise RolloutError(f"a {kind} bundle version {version} exists already")
    now = clock()
    manifest = ring.sign_document(proto.manifest(kind=kind, name=name, version=version,
                                                 data=data, issued=now,
                                                 expires=now + expires_s, min_agent=min_agent))
    tx.execute("INSERT INTO bundles (sha256, kind, name, version, size, manifest, content, actor,"
               " created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
               (sha, kind, name, version, len(data), json.dumps(manifest, sort_keys=True),
                base64.b64encode(data).decode("ascii"), actor.name, now))
    audit.record(tx, clock, actor, "bundles.create", f"bundle:{sha}",
                 {"kind": kind, "name": name, "version": version, "size": len(data)})
    return {"sha256": sha, "kind": kind, "name": name, "version": version, "size": len(data),
            "existing": False}


def get_bundle(tx: Any, ref: str) -> dict[str, Any]:
    """A bundle by its sha256 (or a unique prefix of it, at least 8 hex digits)."""
    if len(ref) < 8 or not all(c in "0123456789abcdef" for c in ref):
        raise NotFound(f"no bundle {ref[:64]!r} (give at least 8 hex digits of its sha256)")
    tx.execute("SELECT sha256, kind, name, version, size, manifest, created FROM bundles"
               " WHERE sha256 LIKE ?", (ref + "%",))
    rows = tx.fetchall()
    if len(rows) != 1:
        raise NotFound(f"no bundle {ref!r}" if not rows else f"{ref!r} is ambiguous")
    sha, kind, name, version, size, manifest, created = rows[0]
    return {"sha256": sha, "kind": kind, "name": name, "version": int(version),
            "size": int(size), "manifest": json.loads(manifest), "created": created}


def list_bundles(tx: Any) -> list[dict[str, Any]]:
    tx.execute("SELECT sha256, kind, name, version, size, created FROM bundles"
               " ORDER BY kind, version")
    return [{"sha256": s, "kind": k, "name": n, "version": int(v), "size": int(z),
             "created": c} for s, k, n, v, z, c in tx.fetchall()]


def contents_to_publish(tx: Any, limit: int = 16) -> list[tuple[str, bytes]]:
    tx.execute("SELECT sha256, content FROM bundles WHERE published IS NULL LIMIT ?", (limit,))
    return [(sha, base64.b64decode(c)) for sha, c in tx.fetchall()]


def content_published(tx: Any, clock: Clock, sha: str) -> None:
    tx.execute("UPDATE bundles SET published = ? WHERE sha256 = ?", (clock(), sha))


# Desired state ------------------------------------------------------------------------------

def assign(tx: Any, clock: Clock, ring: Any, store: str, region: str, kind: str,
           sha: str | None, rollback: bool = False, urgent: bool = False) -> int:
    """Set one kind of a store's desired state and re-sign it; return the new version."""
    tx.execute("SELECT version, model_sha, model_rollback, config_sha, config_rollback, urgent"
               " FROM desired WHERE store = ?", (store,))
    row = tx.fetchone()
    cur = {"model": (row[1], bool(row[2])), "config": (row[3], bool(row[4]))} if row else \
        {"model": (None, False), "config": (None, False)}
    cur[kind] = (sha, rollback)
    version = (int(row[0]) if row else 0) + 1
    entries = {}
    for k, (s, rb) in cur.items():
        if s is None:
            entries[k] = None
            continue
        tx.execute("SELECT manifest FROM bundles WHERE sha256 = ?", (s,))
        m = tx.fetchone()
        if m is None:
            raise NotFound(f"no bundle {s}")
        entries[k] = {"manifest": json.loads(m[0]), "rollback": rb}
    now = clock()
    doc = ring.sign_document(proto.desired_doc(store=store, region=region, version=version,
                                               issued=now, urgent=urgent, bundles=entries))
    payload = json.dumps(doc, separators=(",", ":"), sort_keys=True)
    params = (region, version, cur["model"][0], int(cur["model"][1]), cur["config"][0],
              int(cur["config"][1]), int(urgent), payload, now)
    if row is None:
        tx.execute("INSERT INTO desired (region, version, model_sha, model_rollback, config_sha,"
                   " config_rollback, urgent, payload, changed, store)"
                   " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", (*params, store))
    else:
        tx.execute("UPDATE desired SET region = ?, version = ?, model_sha = ?, model_rollback = ?,"
                   " config_sha = ?, config_rollback = ?, urgent = ?, payload = ?, changed = ?,"
                   " published = NULL WHERE store = ?", (*params, store))
    return version


def desired_sha(tx: Any, store: str, kind: str) -> str | None:
    tx.execute(f"SELECT {kind}_sha FROM desired WHERE store = ?", (store,))
    row = tx.fetchone()
    return row[0] if row else None


def desired_to_publish(tx: Any, limit: int = 500) -> list[tuple[str, str, int, bytes]]:
    tx.execute("SELECT store, region, version, payload FROM desired WHERE published IS NULL"
               " ORDER BY changed LIMIT ?", (limit,))
    return [(s, r, int(v), p.encode("utf-8")) for s, r, v, p in tx.fetchall()]


def desired_published(tx: Any, clock: Clock, store: str, version: int) -> None:
    tx.execute("UPDATE desired SET published = ? WHERE store = ? AND version = ?",
               (clock(), store, version))


def record_report(tx: Any, clock: Clock, store: str, body: dict[str, Any]) -> None:
    """A store's bundle result (cmd_result of type bundle)."""
    kind = body.get("kind")
    if kind not in proto.KINDS:
        return
    now = clock()
    sha = body.get("sha256") if isinstance(body.get("sha256"), str) else None
    tx.execute("INSERT INTO bundle_reports (store, kind, version, sha256, status, reason, detail,"
               " output, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (store, kind) DO"
               " UPDATE SET version = excluded.version, sha256 = excluded.sha256,"
               " status = excluded.status, reason = excluded.reason, detail = excluded.detail,"
               " output = excluded.output, at = excluded.at",
               (store, kind, body.get("bundle_version"), sha, body["status"], body.get("reason"),
                str(body.get("detail", ""))[:300], json.dumps(body.get("output") or {})[:4096],
                now))
    if sha is None:
        return
    if body["status"] == "applied":
        tx.execute("UPDATE rollout_stores SET applied = ? WHERE store = ? AND applied IS NULL AND"
                   " rollout IN (SELECT id FROM rollouts WHERE sha256 = ?)", (now, store, sha))
    elif body["status"] in ("failed", "rejected"):
        tx.execute("UPDATE rollout_stores SET failed = ? WHERE store = ? AND failed IS NULL AND"
                   " rollout IN (SELECT id FROM rollouts WHERE sha256 = ?)",
                   (body.get("reason") or body["status"], store, sha))


def reports(tx: Any, store: str) -> dict[str, dict[str, Any]]:
    tx.execute("SELECT kind, version, sha256, status, reason, at FROM bundle_reports"
               " WHERE store = ?", (store,))
    return {k: {"version": v, "sha256": s, "status": st, "reason": r, "at": at}
            for k, v, s, st, r, at in tx.fetchall()}


# Rollouts -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Gates:
    """When a stage passes (docs/rollout.md): defaults chosen for a chain's pilot stores."""

    max_apply_failures: int = 0         # stores that failed or refused the bundle
    max_restarts_per_store: float = 2.0  # agent restarts (births) per updated store in a soak
    max_alert_ratio: float = 1.5        # predicted_failure + failed alerts per device-day,
    min_excess_alerts: int = 3          # updated vs not updated: ratio above this, and at
    min_device_days: float = 1.0        # least this many extra alerts; fewer device-days:
    inconclusive_soaks: int = 3         # inconclusive (soak again, then pause)
    # Devices the updated stores' agents left without a model score (NaN, out of range, the
    # worker crashed or hung, no model...), per device-day: fails when above this limit, and
    # above this many times the stores not yet updated, and at least this many errors more
    # than their rate predicts. At the default 60 s scoring interval a device is scored 1,440
    # times a day: 5 is about a third of a percent of its scores.
    max_scoring_errors_per_device_day: float = 5.0
    max_scoring_error_ratio: float = 2.0
    min_excess_scoring_errors: int = 20


def parse_stages(text: str, stores: dict[str, str],
                 approvals: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """"pilot=s1,s2; north=region:north; chain" -> stages with their stores (each store in the
    first stage that names it)."""
    stages, taken = [], set()
    for part in (p.strip() for p in text.split(";")):
        if not part:
            continue
        name, sep, spec = part.partition("=")
        name = name.strip()
        if not sep:
            name, spec = (part, "chain") if part == "chain" else (part, "")
        if not proto.NAME.match(name) or not spec.strip():
            raise RolloutError(f"bad stage {part!r}: want NAME=store,store | NAME=region:R | chain")
        members: list[str] = []
        for target in (t.strip() for t in spec.split(",")):
            if target == "chain":
                members += sorted(stores)
            elif target.startswith("region:"):
                region = target[len("region:"):]
                found = sorted(s for s, r in stores.items() if r == region)
                if not found:
                    raise RolloutError(f"stage {name}: no store in region {region!r}")
                members += found
            elif target in stores:
                members.append(target)
            else:
                raise RolloutError(f"stage {name}: unknown store {target[:64]!r}")
        own = [s for s in dict.fromkeys(members) if s not in taken]
        taken.update(own)
        stages.append({"name": name, "stores": own, "approval": name in approvals})
    if not stages:
        raise RolloutError("no stages")
    missing = [a for a in approvals if a not in {s["name"] for s in stages}]
    if missing:
        raise RolloutError(f"--approval names no stage: {', '.join(missing)}")
    return stages


def start(tx: Any, clock: Clock, actor: Any, ring: Any, *, bundle: str, stages: str,
          stores: dict[str, str], soak_s: float, urgent: bool = False,
          approvals: tuple[str, ...] = (), gates: Gates = Gates(),
          sessions: dict[str, int] | None = None) -> dict[str, Any]:
    authorize(actor, "devices.act")
    b = get_bundle(tx, bundle)
    tx.execute("SELECT id FROM rollouts WHERE kind = ? AND state IN ('running', 'paused',"
               " 'awaiting_approval')", (b["kind"],))
    busy = tx.fetchone()
    if busy:
        raise RolloutError(f"rollout {busy[0]} of a {b['kind']} bundle is still going")
    if not 0 <= soak_s <= 30 * DAY:
        raise RolloutError("--soak must be 0 s .. 30 days")
    plan = parse_stages(stages, stores, approvals)
    rid = str(uuid.uuid4())
    now = clock()
    tx.execute("INSERT INTO rollouts (id, sha256, kind, version, stages, stage, state, soak_s,"
               " urgent, gates, actor, created)"
               " VALUES (?, ?, ?, ?, ?, 0, 'running', ?, ?, ?, ?, ?)",
               (rid, b["sha256"], b["kind"], b["version"], json.dumps(plan), soak_s, int(urgent),
                json.dumps(asdict(gates)), actor.name, now))
    audit.record(tx, clock, actor, "rollouts.start", f"rollout:{rid}",
                 {"bundle": b["sha256"], "kind": b["kind"], "version": b["version"],
                  "stages": [(s["name"], len(s["stores"])) for s in plan], "soak_s": soak_s})
    if plan[0]["approval"]:
        tx.execute("UPDATE rollouts SET state = 'awaiting_approval' WHERE id = ?", (rid,))
    else:
        _begin_stage(tx, clock, ring, rid, 0, stores, sessions or {})
    return status(tx, rid)


def _begin_stage(tx: Any, clock: Clock, ring: Any, rid: str, index: int,
                 stores: dict[str, str], sessions: dict[str, int]) -> None:
    r = _row(tx, rid)
    stage = r["stages"][index]
    now = clock()
    for store in stage["stores"]:
        previous = desired_sha(tx, store, r["kind"])
        tx.execute("INSERT INTO rollout_stores (rollout, store, region, stage, previous_sha,"
                   " assigned, sessions_at_start) VALUES (?, ?, ?, ?, ?, ?, ?)",
                   (rid, store, stores.get(store, "default"), index, previous, now,
                    sessions.get(store)))
        assign(tx, clock, ring, store, stores.get(store, "default"), r["kind"], r["sha256"],
               rollback=False, urgent=r["urgent"])
    tx.execute("UPDATE rollouts SET stage = ?, state = 'running', stage_started = ? WHERE id = ?",
               (index, now, rid))
    audit.record(tx, clock, system_actor(), "rollouts.stage", f"rollout:{rid}",
                 {"stage": stage["name"], "stores": len(stage["stores"])})


_RCOLS = ("id", "sha256", "kind", "version", "stages", "stage", "state", "stage_started",
          "soak_s", "urgent", "gates", "reason", "last_gate", "actor", "created", "finished")


def _row(tx: Any, rid: str) -> dict[str, Any]:
    tx.execute(f"SELECT {', '.join(_RCOLS)} FROM rollouts WHERE id = ?", (rid,))
    row = tx.fetchone()
    if row is None:
        raise NotFound(f"no rollout {rid[:64]!r}")
    d = dict(zip(_RCOLS, row))
    d["stages"] = json.loads(d["stages"])
    d["gates"] = json.loads(d["gates"])
    d["last_gate"] = json.loads(d["last_gate"]) if d["last_gate"] else None
    d["urgent"] = bool(d["urgent"])
    return d


def status(tx: Any, rid: str) -> dict[str, Any]:
    r = _row(tx, rid)
    tx.execute("SELECT store, stage, applied, failed, rolled_back FROM rollout_stores"
               " WHERE rollout = ? ORDER BY stage, store", (rid,))
    r["stores"] = [{"store": s, "stage": st, "applied": a is not None, "failed": f,
                    "rolled_back": rb is not None} for s, st, a, f, rb in tx.fetchall()]
    return r


def list_rollouts(tx: Any) -> list[dict[str, Any]]:
    tx.execute("SELECT id FROM rollouts ORDER BY created DESC LIMIT 50")
    return [status(tx, rid) for (rid,) in tx.fetchall()]


def control(tx: Any, clock: Clock, actor: Any, ring: Any, rid: str, action: str,
            stores: dict[str, str] | None = None, sessions: dict[str, int] | None = None) -> dict:
    """pause, resume, abort (rolls back), approve (the next stage) by a person."""
    authorize(actor, "devices.act")
    r = _row(tx, rid)
    state = r["state"]
    if action == "pause" and state == "running":
        tx.execute("UPDATE rollouts SET state = 'paused' WHERE id = ?", (rid,))
    elif action == "resume" and state == "paused":
        tx.execute("UPDATE rollouts SET state = 'running' WHERE id = ?", (rid,))
    elif action == "abort" and state in ("running", "paused", "awaiting_approval"):
        _abort(tx, clock, ring, rid, f"aborted by {actor.name}")
    elif action == "approve" and state == "awaiting_approval":
        if actor.name == r["actor"]:
            raise RolloutError("nobody approves their own rollout")
        nxt = r["stage"] + 1 if r["stage_started"] is not None else 0
        _begin_stage(tx, clock, ring, rid, nxt, stores or {}, sessions or {})
    else:
        raise RolloutError(f"cannot {action} a rollout that is {state}")
    audit.record(tx, clock, actor, f"rollouts.{action}", f"rollout:{rid}", {"was": state})
    return status(tx, rid)


def _abort(tx: Any, clock: Clock, ring: Any, rid: str, reason: str) -> None:
    r = _row(tx, rid)
    now = clock()
    tx.execute("SELECT store, region, previous_sha FROM rollout_stores WHERE rollout = ?"
               " AND rolled_back IS NULL", (rid,))
    for store, region, previous in tx.fetchall():
        # Back to the version it had, signed as a rollback (the agent refuses a lower version
        # otherwise). A store that had no bundle of this kind keeps the new one: there is
        # nothing signed to go back to (docs/rollout.md).
        if previous is not None:
            assign(tx, clock, ring, store, region, r["kind"], previous, rollback=True,
                   urgent=True)
        tx.execute("UPDATE rollout_stores SET rolled_back = ? WHERE rollout = ? AND store = ?",
                   (now, rid, store))
    tx.execute("UPDATE rollouts SET state = 'aborted', reason = ?, finished = ? WHERE id = ?",
               (reason, now, rid))
    audit.record(tx, clock, system_actor(), "rollouts.abort", f"rollout:{rid}",
                 {"reason": reason, "bundle": r["sha256"], "stage": r["stage"]})


# Gates ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Health:
    """What the fleet shows for a set of stores over a window (fleet_health computes it)."""

    device_days: float
    alerts: int          # predicted_failure and failed alerts raised in the window
    restarts: int        # new sessions (agent restarts and reconnections) since the stage began
    scoring_errors: int = 0  # devices left without a model score in the window (agent reports)
    scoring_reasons: dict = field(default_factory=dict)  # the same by reason


def evaluate(gates: Gates, *, updated: Health, baseline: Health, stores: int,
             failures: int) -> tuple[str, dict[str, Any]]:
    """'pass', 'fail' or 'inconclusive', with the figures that decided it."""
    figures: dict[str, Any] = {"apply_failures": failures, "restarts": updated.restarts,
                               "updated": asdict(updated), "baseline": asdict(baseline)}
    if failures > gates.max_apply_failures:
        return "fail", dict(figures, gate="apply_failures")
    if stores and updated.restarts / stores > gates.max_restarts_per_store:
        return "fail", dict(figures, gate="restarts")
    # Before the device-days check: an agent's own report that it could not score needs no
    # statistics of the devices, and a model that fails every score fails within hours.
    scoring = scoring_figures(gates, updated, baseline)
    figures["scoring_errors"] = scoring
    if scoring["failed"]:
        return "fail", dict(figures, gate="scoring_errors")
    if updated.device_days < gates.min_device_days or baseline.device_days < gates.min_device_days:
        return "inconclusive", dict(figures, gate="device_days")
    rate_u = _rate(updated)
    rate_b = _rate(baseline)
    expected = rate_b * updated.device_days if rate_b != float("inf") else float("inf")
    figures.update(rate_updated=round(rate_u, 4) if rate_u != float("inf") else "inf",
                   rate_baseline=round(rate_b, 4) if rate_b != float("inf") else "inf")
    if rate_u > gates.max_alert_ratio * rate_b and updated.alerts - expected >= \
            gates.min_excess_alerts:
        return "fail", dict(figures, gate="alert_rate")
    return "pass", figures


def _rate(h: Health) -> float:
    return _per_day(h.alerts, h.device_days)


def _per_day(count: int, device_days: float) -> float:
    if device_days > 0:
        return count / device_days
    return float("inf") if count else 0.0


def _shown(rate: float) -> float | str:
    """A figure for JSON: rounded, or "inf" / "-inf"."""
    if math.isfinite(rate):
        return round(rate, 4)
    return "inf" if rate > 0 else "-inf"


def scoring_figures(gates: Gates, updated: Health, baseline: Health) -> dict[str, Any]:
    """The scoring_errors gate: its value, its limits and whether it fails (docs/rollout.md).

    Fails when the updated stores' scoring errors per device-day are above the absolute limit,
    and above `max_scoring_error_ratio` times the stores not yet updated, and at least
    `min_excess_scoring_errors` more than the not-updated rate predicts for their device-days
    (so one batch lost to a busy machine does not abort a rollout)."""
    rate_u = _per_day(updated.scoring_errors, updated.device_days)
    rate_b = _per_day(baseline.scoring_errors, baseline.device_days)
    expected = rate_b * updated.device_days if rate_b != float("inf") else float("inf")
    excess = updated.scoring_errors - expected
    failed = (rate_u > gates.max_scoring_errors_per_device_day
              and rate_u > gates.max_scoring_error_ratio * rate_b
              and excess >= gates.min_excess_scoring_errors)
    return {"updated": updated.scoring_errors, "baseline": baseline.scoring_errors,
            "rate_updated": _shown(rate_u), "rate_baseline": _shown(rate_b),
            "limit": gates.max_scoring_errors_per_device_day,
            "ratio_limit": gates.max_scoring_error_ratio,
            "excess": _shown(excess),
            "min_excess": gates.min_excess_scoring_errors,
            "reasons": dict(updated.scoring_reasons), "failed": failed}


HealthFn = Callable[[Any, list[str], float, float, dict[str, int]], Health]


def running(tx: Any) -> bool:
    """Whether any rollout is running (a read: the worker asks before it writes)."""
    tx.execute("SELECT 1 FROM rollouts WHERE state = 'running' LIMIT 1")
    return tx.fetchone() is not None


def tick(tx: Any, clock: Clock, ring: Any, health: HealthFn, stores: dict[str, str],
         sessions: dict[str, int]) -> list[tuple[str, str]]:
    """Advance every running rollout whose stage has soaked: [(rollout id, what happened)]."""
    now = clock()
    # Several hub workers tick: on PostgreSQL the rows are locked, so one advances a rollout
    # at a time (SQLite serializes write transactions by itself).
    lock = " FOR UPDATE" if getattr(tx, "placeholder", "?") != "?" else ""
    tx.execute("SELECT id FROM rollouts WHERE state = 'running' ORDER BY id" + lock)
    out = []
    for (rid,) in tx.fetchall():
        r = _row(tx, rid)
        if r["stage_started"] is None:
            continue
        tx.execute("SELECT store, failed, sessions_at_start FROM rollout_stores"
                   " WHERE rollout = ?", (rid,))
        rows = tx.fetchall()
        failures = sum(1 for _, f, _ in rows if f)
        gates = Gates(**r["gates"])
        if failures > gates.max_apply_failures:  # no need to wait for the soak
            _abort(tx, clock, ring, rid, f"gate apply_failures: {failures} store(s) failed")
            out.append((rid, "aborted"))
            continue
        if now - r["stage_started"] < r["soak_s"]:
            continue
        updated = [s for s, _, _ in rows]
        starts = {s: sas for s, _, sas in rows if sas is not None}
        others = [s for s in stores if s not in set(updated)]
        since = r["stage_started"]
        u = health(tx, updated, since, now, starts)
        if others:
            b = health(tx, others, since, now, {})
        else:  # the last stage: the same stores over the same length of time before it
            b = health(tx, updated, since - (now - since), since, {})
        verdict, figures = evaluate(gates, updated=u, baseline=b, stores=len(updated),
                                    failures=failures)
        tx.execute("UPDATE rollouts SET last_gate = ? WHERE id = ?",
                   (json.dumps(dict(figures, verdict=verdict, at=now)), rid))
        if verdict == "fail":
            why = ""
            if figures["gate"] == "scoring_errors":
                sc = figures["scoring_errors"]
                why = (f": {sc['rate_updated']} scoring errors per device-day on the updated "
                       f"stores (limit {sc['limit']:g}; not updated {sc['rate_baseline']}; "
                       f"{sc['updated']} errors: "
                       + ", ".join(f"{k} {v}" for k, v in sc["reasons"].items())[:200] + ")")
            _abort(tx, clock, ring, rid, f"gate {figures['gate']} failed at stage "
                                         f"{r['stages'][r['stage']]['name']}{why}")
            out.append((rid, "aborted"))
        elif verdict == "inconclusive":
            extra = (now - r["stage_started"]) / max(r["soak_s"], 1.0)
            if extra >= 1 + gates.inconclusive_soaks:
                tx.execute("UPDATE rollouts SET state = 'paused', reason = ? WHERE id = ?",
                           ("inconclusive: too few device-days; resume or abort", rid))
                out.append((rid, "paused"))
        else:
            nxt = r["stage"] + 1
            audit.record(tx, clock, system_actor(), "rollouts.gate", f"rollout:{rid}",
                         dict(figures, stage=r["stages"][r["stage"]]["name"], verdict=verdict))
            if nxt >= len(r["stages"]):
                tx.execute("UPDATE rollouts SET state = 'done', finished = ? WHERE id = ?",
                           (now, rid))
                out.append((rid, "done"))
            elif r["stages"][nxt]["approval"]:
                tx.execute("UPDATE rollouts SET state = 'awaiting_approval' WHERE id = ?", (rid,))
                out.append((rid, "awaiting_approval"))
            else:
                _begin_stage(tx, clock, ring, rid, nxt, stores, sessions)
                out.append((rid, f"stage {r['stages'][nxt]['name']}"))
    return out
