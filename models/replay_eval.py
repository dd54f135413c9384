"""Measure issue 10's targets through `edge-agent replay` and the real policy, on a held-out fleet.

A fleet drawn with another seed and the HELDOUT parameters (models/fleetsim.py) is written as
one store's readings (JSONL, time order) with each device's fate beside it. Each method is an
ONNX model with its card, run by the agent's own `edge-agent replay --json` in a subprocess:
- the health model, at the threshold chosen on validation devices;
- fixed thresholds (one limit per metric, the highest ratio to its limit is the score), at
  their natural threshold (a limit crossed) and at a threshold chosen as the model's;
- k-means distance (per device class, over the 99.5th percentile of training distances), the
  same two ways.
The baselines are small ONNX graphs built here, so they go through exactly the same scorer,
features, policy (hysteresis, hold, episodes, failed rules) and replay as the model. From the
alerts replay prints, with the fleet's truth:
- recall: failures with a precursor flagged by a predicted_failure raised 48 h to 14 days
  before them (of the failures observable: at least 9 days of readings before);
- predicted_failure raises per 100 device-weeks on devices that do not fail within 14 days
  (time within 14 days before a failure, and after it, is not counted);
- critical `failed` raises per 100 device-weeks on devices that never fail;
- predicted_failure raises per failure episode (raises in the 14 days before a failure, over
  the failures that had at least one).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from edge_agent.health import features as F
from models import fleetsim

DAY = 86400.0
WEEK = 7 * DAY
INTERVAL_S = 3600.0  # one health cycle per hour of reading time
FIXED_LIMITS = {"cutter_errors_per_day": 5.0, "printer_errors_per_day": 8.0,
                "overheats_per_day": 5.0, "jams_per_day": 3.0, "decode_errors_per_day": 40.0,
                "reconnects_per_day": 5.0, "host_temp_c": 75.0, "disk_pct": 90.0,
                "smart_bad_sectors": 50.0, "latency_ms": 200.0, "timeouts_per_day": 5.0,
                "stale_fraction": 0.25}
KMEANS_K = 8
KMEANS_PCTL = 99.5
TARGETS = {"recall_48h_14d": (">=", 0.70), "false_pf_per_100_dw": ("<=", 1.0),
           "failed_on_healthy_per_100_dw": ("<=", 1.0), "raises_per_episode": ("<=", 1.5)}


# ---------------------------------------------------------------- baselines as ONNX graphs

def _graph(nodes, inits, name):
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, len(F.NAMES)])
    y = helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 2])
    graph = helper.make_graph(nodes, name, [x], [y], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)],
                              producer_name="retail-edge-baseline")
    model.ir_version = 8
    return model.SerializeToString(deterministic=True)


def _const(name, array):
    from onnx import numpy_helper

    return numpy_helper.from_array(np.asarray(array, dtype=np.float32), name)


def _to_probabilities(nodes, inits, score):
    """p = s / (1 + s): a score of 1 (the natural threshold) is p = 0.5."""
    from onnx import helper

    inits += [_const("one", [1.0])]
    nodes += [helper.make_node("Add", [score, "one"], ["s1"]),
              helper.make_node("Div", [score, "s1"], ["p"]),
              helper.make_node("Sub", ["one", "p"], ["q"]),
              helper.make_node("Concat", ["q", "p"], ["probabilities"], axis=1)]


def fixed_onnx() -> bytes:
    """max over metrics of value / limit, as a probability."""
    from onnx import helper

    cols = [F.NAMES.index(n) for n in FIXED_LIMITS]
    inits = [helper.make_tensor("cols", 7, [len(cols)], cols),
             _const("limits", [list(FIXED_LIMITS.values())])]
    nodes = [helper.make_node("Gather", ["input", "cols"], ["picked"], axis=1),
             helper.make_node("Div", ["picked", "limits"], ["ratios"]),
             helper.make_node("ReduceMax", ["ratios"], ["score"], axes=[1], keepdims=1)]
    _to_probabilities(nodes, inits, "score")
    return _graph(nodes, inits, "fixed_thresholds")


def fixed_scores(X: np.ndarray) -> np.ndarray:
    cols = [F.NAMES.index(n) for n in FIXED_LIMITS]
    s = np.max(X[:, cols] / np.array(list(FIXED_LIMITS.values())), axis=1)
    return s / (1 + s)


def kmeans_fit(train_X: np.ndarray) -> dict:
    """Per class: standardization, centroids and the 99.5th percentile training distance."""
    from sklearn.cluster import KMeans

    out = {}
    cls_col = F.NAMES.index("device_class")
    for cls in np.unique(train_X[:, cls_col]):
        tr = train_X[train_X[:, cls_col] == cls][:, 1:].astype(np.float64)
        mu, sd = tr.mean(axis=0), tr.std(axis=0) + 1e-6
        km = KMeans(n_clusters=min(KMEANS_K, len(tr)), random_state=0, n_init=4).fit(
            (tr - mu) / sd)
        ref = np.percentile(km.transform((tr - mu) / sd).min(axis=1), KMEANS_PCTL)
        out[float(cls)] = (mu, sd, km.cluster_centers_, max(float(ref), 1e-6))
    return out


def kmeans_scores(fit: dict, X: np.ndarray) -> np.ndarray:
    s = np.zeros(len(X))
    for cls, (mu, sd, c, ref) in fit.items():
        mask = X[:, 0] == cls
        if mask.any():
            z = (X[mask][:, 1:] - mu) / sd
            d = np.sqrt(np.maximum(((z[:, None, :] - c[None]) ** 2).sum(axis=2), 0)).min(axis=1)
            s[mask] = d / ref
    return s / (1 + s)


def kmeans_onnx(fit: dict) -> bytes:
    """The same distance in ONNX: per class, masked by the class column, summed."""
    from onnx import helper

    width = len(F.NAMES)
    inits = [helper.make_tensor("c0", 7, [1], [0]), helper.make_tensor("c1", 7, [1], [1]),
             helper.make_tensor("cend", 7, [1], [width]), helper.make_tensor("ax1", 7, [1], [1]),
             _const("zero", [0.0])]
    nodes = [helper.make_node("Slice", ["input", "c0", "c1", "ax1"], ["cls"]),
             helper.make_node("Slice", ["input", "c1", "cend", "ax1"], ["feat"])]
    parts = []
    for i, (cls, (mu, sd, c, ref)) in enumerate(sorted(fit.items())):
        p = f"k{i}_"
        inits += [_const(p + "mu", [mu]), _const(p + "sd", [sd]), _const(p + "ct", c.T),
                  _const(p + "cn", [(c ** 2).sum(axis=1)]), _const(p + "two", [2.0]),
                  _const(p + "ref", [ref]), _const(p + "cls", [cls])]
        nodes += [helper.make_node("Sub", ["feat", p + "mu"], [p + "a"]),
                  helper.make_node("Div", [p + "a", p + "sd"], [p + "z"]),
                  helper.make_node("Mul", [p + "z", p + "z"], [p + "zz"]),
                  helper.make_node("ReduceSum", [p + "zz", "ax1"], [p + "zn"], keepdims=1),
                  helper.make_node("MatMul", [p + "z", p + "ct"], [p + "zc"]),
                  helper.make_node("Mul", [p + "zc", p + "two"], [p + "zc2"]),
                  helper.make_node("Sub", [p + "zn", p + "zc2"], [p + "b"]),
                  helper.make_node("Add", [p + "b", p + "cn"], [p + "d2"]),
                  helper.make_node("ReduceMin", [p + "d2"], [p + "m"], axes=[1], keepdims=1),
                  helper.make_node("Max", [p + "m", "zero"], [p + "m0"]),
                  helper.make_node("Sqrt", [p + "m0"], [p + "d"]),
                  helper.make_node("Div", [p + "d", p + "ref"], [p + "s"]),
                  helper.make_node("Equal", ["cls", p + "cls"], [p + "eq"]),
                  helper.make_node("Cast", [p + "eq"], [p + "mask"], to=1),
                  helper.make_node("Mul", [p + "s", p + "mask"], [p + "part"])]
        parts.append(p + "part")
    nodes.append(helper.make_node("Sum", parts, ["score"]))
    _to_probabilities(nodes, inits, "score")
    return _graph(nodes, inits, "kmeans_distance")


def write_model(folder: Path, name: str, blob: bytes, threshold: float, watch: float,
                note: str, class_thresholds: dict | None = None) -> Path:
    """Write an ONNX model and the card the agent's scorer checks."""
    digest = hashlib.sha256(blob).hexdigest()
    path = folder / f"{name}.onnx"
    path.write_bytes(blob)
    card = {"name": name, "version": f"{name}-{digest[:12]}", "sha256": digest,
            "format": {"onnx_opset": 15, "input": {"name": "input", "type": "float32",
                                                  "shape": [None, len(F.NAMES)]},
                       "outputs": {"probabilities": {"type": "float32", "shape": [None, 2]}}},
            "features": [{"name": f.name, "unit": f.unit, "doc": f.doc} for f in F.FEATURES],
            "threshold": round(float(threshold), 6), "watch_threshold": round(float(watch), 6),
            "note": note}
    if class_thresholds:
        card["class_thresholds"] = class_thresholds
    (folder / f"{name}.card.json").write_text(json.dumps(card, indent=2) + "\n")
    return path


# ---------------------------------------------------------------- replay and targets

def replay(readings: Path, model: Path) -> list[dict]:
    """Run `edge-agent replay --json` on the readings with a model; return the alert bodies."""
    cmd = [sys.executable, "-m", "edge_agent", "replay", str(readings), "--model", str(model),
           "--interval", str(INTERVAL_S), "--json"]
    env = dict(os.environ, TZ="UTC")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"replay failed ({proc.returncode}): {proc.stderr[-2000:]}")
    alerts = []
    for line in proc.stdout.splitlines():
        msg = json.loads(line)
        if msg["kind"] == "alert":
            alerts.append(msg["body"])
    return alerts


def _epoch(ts: str) -> float:
    from edge_agent.reading import parse_ts

    return parse_ts(ts).timestamp()


def targets(alerts: list[dict], truth: dict) -> dict:
    """The issue's four targets (and a few figures beside them) from replayed alerts."""
    pf: dict[str, list[float]] = {}
    failed: dict[str, list[float]] = {}
    for a in alerts:
        if a["state"] != "raised":
            continue
        if a["what"] == "predicted_failure":
            pf.setdefault(a["device"], []).append(_epoch(a["ts"]))
        elif a["what"] == "failed":
            failed.setdefault(a["device"], []).append(_epoch(a["ts"]))
    H, L = fleetsim.HORIZON_S, fleetsim.LEAD_MIN_S
    observable = caught = 0
    leads, per_episode = [], []
    false = 0
    eligible_s = healthy_s = 0.0
    failed_healthy = 0
    for dev, t in truth.items():
        f = t["fail_at"]
        start, end = t["start"], t["end"]
        raises = pf.get(dev, [])
        if f is None:
            eligible_s += end - start
            healthy_s += end - start
            false += len(raises)
            failed_healthy += len(failed.get(dev, []))
            continue
        eligible_s += max(0.0, min(end, f - H) - start)
        false += sum(1 for r in raises if not (r < f <= r + H))
        if f > end:
            continue
        window = [r for r in raises if f - H <= r < f]
        if window:
            per_episode.append(len(window))
        if t["precursor"] and f - start >= 9 * DAY:
            observable += 1
            ahead = [r for r in window if f - r >= L]
            if ahead:
                caught += 1
                leads.append((f - min(ahead)) / DAY)
    return {
        "recall_48h_14d": round(caught / observable, 3) if observable else 0.0,
        "failures_with_precursor": observable, "caught": caught,
        "median_lead_days": round(float(np.median(leads)), 2) if leads else 0.0,
        "false_pf_per_100_dw": round(100 * false / (eligible_s / WEEK), 3) if eligible_s else 0.0,
        "false_pf": false, "device_weeks": round(eligible_s / WEEK, 1),
        "failed_on_healthy_per_100_dw": round(100 * failed_healthy / (healthy_s / WEEK), 3)
        if healthy_s else 0.0,
        "failed_on_healthy": failed_healthy, "healthy_device_weeks": round(healthy_s / WEEK, 1),
        "raises_per_episode": round(float(np.mean(per_episode)), 3) if per_episode else 0.0,
        "episodes": len(per_episode),
    }


def met(m: dict) -> dict[str, bool]:
    return {k: (m[k] >= v if op == ">=" else m[k] <= v) for k, (op, v) in TARGETS.items()}


def evaluate(cfg, fit_ds, val_ds, blob: bytes, threshold: float, watch: float, say,
             class_thresholds: dict | None = None) -> dict:
    """Write the held-out fleet, replay every method through the agent, return the figures."""
    from models.train import choose_threshold

    devices = fleetsim.fleet(cfg.replay_seed, cfg.replay_devices, cfg.replay_days,
                             fleetsim.HELDOUT)
    km = kmeans_fit(fit_ds.X)
    methods = [("model", blob, threshold, watch, "the health model", class_thresholds)]
    for name, onnx_fn, score_fn in (("fixed_thresholds", fixed_onnx, fixed_scores),
                                    ("kmeans_distance", lambda: kmeans_onnx(km),
                                     lambda X: kmeans_scores(km, X))):
        b = onnx_fn()
        methods.append((name, b, 0.5, 0.25, "natural threshold: a limit crossed / the 99.5th "
                                            "percentile of training distances", None))
        val = score_fn(val_ds.X.astype(np.float64))
        candidates = np.unique(np.quantile(val, np.linspace(0.95, 1.0, 60)))
        thr, w, _ = choose_threshold(val_ds, val, candidates)
        methods.append((name + "_at_budget", b, min(float(thr), 1.0), min(float(w), 1.0),
                        "threshold within the budget on the training fleet's validation devices",
                        None))
    out = {"seed": cfg.replay_seed, "devices": cfg.replay_devices, "days": cfg.replay_days,
           "params": fleetsim.HELDOUT.name, "step_s": 1800.0, "interval_s": INTERVAL_S,
           "targets": {k: f"{op} {v}" for k, (op, v) in TARGETS.items()}, "methods": {}}
    with tempfile.TemporaryDirectory(prefix="edge-replay-eval-") as tmp:
        folder = Path(tmp)
        readings = folder / "fleet.jsonl"
        n = fleetsim.write_fleet(devices, str(readings), str(folder / "truth.json"), 1800.0)
        truth = json.loads((folder / "truth.json").read_text())
        out["readings"] = n
        modes: dict[str, int] = {}
        for t in truth.values():
            key = f"{t['cls']}:{t['mode'] or 'healthy'}"
            modes[key] = modes.get(key, 0) + 1
        out["fates"] = dict(sorted(modes.items()))
        for name, b, thr, w, note, by_class in methods:
            path = write_model(folder, name, b, thr, w, note, by_class)
            say(f"  replaying {n} readings with {name} (threshold {thr:.4g})")
            m = targets(replay(readings, path), truth)
            m["threshold"] = round(float(thr), 4)
            if by_class:
                m["class_thresholds"] = {c: v["threshold"] for c, v in by_class.items()}
            m["met"] = met(m)
            out["methods"][name] = m
            say(f"    {m}")
    return out


def main(argv: list[str] | None = None) -> int:
    """Replay the shipped model on the held-out fleet and print the figures (no retraining)."""
    import argparse

    from models import train

    parser = argparse.ArgumentParser(prog="python -m models.replay_eval", description=main.__doc__)
    parser.add_argument("--devices", type=int, default=train.TrainConfig.replay_devices)
    parser.add_argument("--seed", type=int, default=train.TrainConfig.replay_seed)
    args = parser.parse_args(argv)
    card = json.loads((train.ROOT / "models" / "device_health.card.json").read_text())
    devices = fleetsim.fleet(args.seed, args.devices, train.TrainConfig.replay_days,
                             fleetsim.HELDOUT)
    with tempfile.TemporaryDirectory(prefix="edge-replay-eval-") as tmp:
        folder = Path(tmp)
        fleetsim.write_fleet(devices, str(folder / "fleet.jsonl"), str(folder / "truth.json"),
                             1800.0)
        truth = json.loads((folder / "truth.json").read_text())
        m = targets(replay(folder / "fleet.jsonl", train.ROOT / "models" /
                           "device_health.onnx"), truth)
    m["met"] = met(m)
    print(json.dumps({"model": card["version"], **m}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
