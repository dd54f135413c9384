"""Evaluate the health model against two baselines on a held-out fleet; write docs/model.md.

Baselines, run on the same held-out rows and through the same hysteresis policy:
- fixed thresholds, as SNMP monitoring templates ship them (one limit per metric, alert when
  any is crossed);
- an unsupervised per-metric anomaly detector of the kind edge agents ship: k-means on the
  standardized features of the training fleet (per device class), alert when the distance to
  the nearest centroid passes its 99.5th percentile on training rows.
"""

from __future__ import annotations

import numpy as np

from edge_agent.health import features as F

# Limits a monitoring template would set (per day over the last 24 h, or current levels);
# the same limits as the replayed baseline (models/replay_eval.py).
from models.replay_eval import FIXED_LIMITS  # noqa: E402

KMEANS_K = 8
KMEANS_PCTL = 99.5


def fixed_scores(X: np.ndarray) -> np.ndarray:
    """Highest ratio of a metric to its limit: 1.0 or more is an alert."""
    cols = [F.NAMES.index(n) for n in FIXED_LIMITS]
    limits = np.array(list(FIXED_LIMITS.values()))
    return np.max(X[:, cols] / limits, axis=1).astype(np.float64)


def kmeans_scores(train_X: np.ndarray, X: np.ndarray) -> np.ndarray:
    """Distance to the nearest k-means centroid over its training 99.5th percentile, by class."""
    from sklearn.cluster import KMeans

    out = np.zeros(len(X))
    cls_col = F.NAMES.index("device_class")
    for cls in np.unique(train_X[:, cls_col]):
        tr = train_X[train_X[:, cls_col] == cls][:, 1:]
        mu, sd = tr.mean(axis=0), tr.std(axis=0) + 1e-6
        km = KMeans(n_clusters=min(KMEANS_K, len(tr)), random_state=0, n_init=4).fit((tr - mu) / sd)
        ref = np.percentile(km.transform((tr - mu) / sd).min(axis=1), KMEANS_PCTL)
        mask = X[:, cls_col] == cls
        if mask.any():
            d = km.transform((X[mask][:, 1:] - mu) / sd).min(axis=1)
            out[mask] = d / max(ref, 1e-9)
    return out


def ranking(y: np.ndarray, scores: np.ndarray) -> dict:
    """PR-AUC (average precision) and the precision at 80% recall, row by row."""
    from sklearn.metrics import average_precision_score, precision_recall_curve

    if y.sum() == 0:
        return {"pr_auc": 0.0, "precision_at_80_recall": 0.0}
    p, r, _ = precision_recall_curve(y, scores)
    at80 = float(p[r >= 0.8].max()) if (r >= 0.8).any() else 0.0
    return {"pr_auc": round(float(average_precision_score(y, scores)), 4),
            "precision_at_80_recall": round(at80, 4)}


def compare(train, held, model_scores: np.ndarray, threshold: float, watch: float,
            validation=None, by_class: dict | None = None) -> dict:
    """Metrics of the model and both baselines on the held-out rows.

    Each baseline runs at its natural threshold (1.0: a limit crossed, or the 99.5th
    percentile) and, with validation rows, also at a threshold chosen exactly as the model's
    (the same false-alert budget on the same validation devices): a like-for-like comparison.
    """
    from models.train import alert_timeline, choose_threshold, operating_point

    out = {"base_rate": round(float(held.y.mean()), 4) if len(held.y) else 0.0}
    baselines = {"fixed_thresholds": lambda X: fixed_scores(X),
                 "kmeans_distance": lambda X: kmeans_scores(train.X, X)}
    runs = [("model", model_scores, threshold, watch)]
    for name, fn in baselines.items():
        scores = fn(held.X)
        runs.append((name, scores, 1.0, 0.5))
        if validation is not None and len(validation.y):
            val = fn(validation.X)
            candidates = np.unique(np.quantile(val, np.linspace(0.95, 1.0, 60)))
            thr, w, _ = choose_threshold(validation, val, candidates)
            runs.append((name + "_at_budget", scores, thr, w))
    for name, scores, thr, w in runs:
        m = ranking(held.y, scores)
        m.update(operating_point(held, alert_timeline(
            held, scores, thr, w, by_class=by_class if name == "model" else None)))
        m["threshold"] = round(float(thr), 4)
        out[name] = m
    return out


def report(card: dict) -> str:
    """The evaluation report, as Markdown."""
    m = card["metrics"]
    rows = [("PR-AUC (rows)", "pr_auc"), ("precision at 80% recall", "precision_at_80_recall"),
            ("failures caught (of observable)", "recall_of_failures"),
            ("median lead time, days (caught 2-14 days ahead)", "median_lead_days"),
            ("false alerts per 100 device-weeks", "false_alerts_per_100_device_weeks"),
            ("alert threshold", "threshold")]
    names = ("model", "fixed_thresholds", "kmeans_distance")
    lines = [
        "# Device health model: evaluation",
        "",
        "Written by `python -m models.train` (do not edit by hand). Model "
        f"`{card['version']}`; {card['estimator']['n_estimators']} trees of depth "
        f"{card['estimator']['max_depth']} on {len(card['features'])} features; label: fails "
        "within the next 14 days. Every feature reads only names a collector emits "
        "(tests/agent/health/test_model_parity.py). Trained on "
        + " and ".join([f"{card['training']['config']['devices']} devices of the "
                        f"`{card['training']['params']['name']}` draw (75% fitted on)"]
                       + [f"{m['devices']} devices of the `{m['params']['name']}` draw (seed "
                          f"{m['seed']})" for m in card["training"].get("mix", [])])
        + f": {card['training']['rows']} rows, {card['training']['positives']} positive.",
        "",
        f"Held-out fleet: seed {card['heldout']['seed']}, {card['heldout']['devices']} devices, "
        f"parameter draw `{card['heldout']['params']['name']}` (other onsets, precursor "
        "strengths, noise and distractor rates than training), "
        f"{card['heldout']['rows']} rows of which {card['heldout']['positives']} positive "
        f"(base rate {m['base_rate']}). Every method runs through the agent's hysteresis "
        "policy on the same rows (one every 6 hours per device).",
        "",
        "| metric | model | fixed thresholds (SNMP-template style) | k-means distance |",
        "| --- | --- | --- | --- |",
    ]
    for label, key in rows:
        lines.append(f"| {label} | " + " | ".join(str(m[n][key]) for n in names) + " |")
    budget = [n for n in ("fixed_thresholds_at_budget", "kmeans_distance_at_budget") if n in m]
    if budget:
        lines += [
            "",
            "The same, with each baseline's threshold chosen within the false-alert budget "
            "(the lowest one at or under 0.8 per 100 device-weeks on the training fleet's "
            "validation devices; one threshold for all classes, where the model's are chosen "
            "per class and on five more validation fleets, see Threshold):",
            "",
            "| metric | model | fixed thresholds, at budget | k-means distance, at budget |",
            "| --- | --- | --- | --- |",
        ]
        for label, key in rows[2:]:
            lines.append(f"| {label} | " + " | ".join(str(m[n][key]) for n in
                                                     ["model"] + budget) + " |")
    mo = m["model"]
    lines += [
        "",
        f"Failures observable on the held-out fleet: {mo['failures']} (a device that failed "
        "after at least a week of rows); device-weeks observed: "
        f"{mo['device_weeks']}. A false alert is a `predicted_failure` raised on a device that "
        "does not fail within the next 14 days; of the model's "
        f"{mo['false_alerts']}, {mo['early_alerts']} were early rather than wrong (the device "
        "failed 14 to 28 days later).",
        "",
        "## Threshold",
        "",
    ]
    by_class = card.get("class_thresholds") or {}
    if by_class:
        lines += [
            "Decision thresholds by device class: "
            + ", ".join(f"{c} {v['threshold']} (watch {v['watch_threshold']})"
                        for c, v in by_class.items())
            + f"; one threshold for every class {card['threshold']} (watch "
            f"{card['watch_threshold']}); hysteresis {card['hysteresis']}. "
            f"{card['threshold_method']}",
            ""]
        val = card.get("validation") or {}
        if val.get("class_thresholds") and val.get("one_threshold"):
            lines += [
                "On the validation fleets (" + "; ".join(val.get("fleets", [])) + "):",
                "",
                "| validation | recall 48 h-14 d | false predictions per 100 device-weeks |",
                "| --- | --- | --- |"]
            for label, key in (("thresholds by class", "class_thresholds"),
                               ("one threshold", "one_threshold")):
                v = val[key]
                lines.append(f"| {label} | {v['recall_48h_14d']} ({v['caught']} of "
                             f"{v['failures_with_precursor']}) | {v['false_pf_per_100_dw']} "
                             f"({v['false_pf']} on {v['device_weeks']} device-weeks) |")
            lines.append("")
    else:
        lines += [
            f"Decision threshold {card['threshold']} (watch {card['watch_threshold']}, "
            f"hysteresis {card['hysteresis']}): {card['threshold_method']}",
            ""]
    lines += replay_section(card.get("replay"))
    lead_ok = fa_ok = True
    rp = (card.get("replay") or {}).get("methods", {}).get("model")
    if rp:
        lead_ok = rp["met"]["recall_48h_14d"]
        fa_ok = rp["met"]["false_pf_per_100_dw"]
    lines += ["", "## Against the baselines, row by row (the row-based held-out fleet above)",
              ""]
    beats = []
    for n in ("fixed_thresholds", "kmeans_distance"):
        b = m[n]
        better = (mo["pr_auc"] > b["pr_auc"]
                  and mo["false_alerts_per_100_device_weeks"]
                  <= max(b["false_alerts_per_100_device_weeks"], 1.0))
        beats.append(better)
        text = ("the model is better at its natural threshold (higher PR-AUC, no more false "
                "alerts)." if better else
                "the model does NOT beat it on both PR-AUC and false alerts.")
        at = m.get(n + "_at_budget")
        if at:
            fewer = at["false_alerts_per_100_device_weeks"] < \
                mo["false_alerts_per_100_device_weeks"]
            more = at["recall_of_failures"] >= mo["recall_of_failures"]
            text += (f" At the same budget it raises {'fewer' if fewer else 'as many or more'} "
                     f"false alerts ({at['false_alerts_per_100_device_weeks']}) and catches "
                     f"{'as many or more' if more else 'fewer'} failures "
                     f"({at['recall_of_failures']:.0%}, lead {at['median_lead_days']} days).")
            if fewer and not more:
                text += (" The model's false-alert rate moves more from the training draw to "
                         "the held-out one than the baselines' does.")
        lines.append(f"- Against {n.replace('_', ' ')}: " + text)
    lines += ["", "## Reading the comparison", ""]
    for n in ("fixed_thresholds", "kmeans_distance") + tuple(budget):
        b = m[n]
        label = n.replace("_", " ")
        lines.append(
            f"- {label}: PR-AUC {b['pr_auc']} against the model's {mo['pr_auc']}; it catches "
            f"{b['recall_of_failures']:.0%} of failures (model {mo['recall_of_failures']:.0%}) "
            f"with a median lead of {b['median_lead_days']} days (model "
            f"{mo['median_lead_days']}), at {b['false_alerts_per_100_device_weeks']} false "
            f"alerts per 100 device-weeks (model {mo['false_alerts_per_100_device_weeks']}).")
    lines += [
        "",
        "The baselines catch failures by alerting on much more: fixed limits fire on every "
        "distractor that crosses them (a bad paper roll, a hot day, an ISP hiccup), and the "
        "k-means detector on anything rare, harmful or not; neither knows wear against rated "
        "life. The model trades some recall for an alert rate a store can act on. Sudden "
        "failures (no precursor) are beyond every method; rule alerts report them when they "
        "happen.",
    ]
    if not (lead_ok and fa_ok):
        lines += ["", "Where a target is not met on the held-out fleet, it is said above with "
                      "its figure. The held-out draw is deliberately harder than training "
                      "(weaker and shorter and longer precursors, more bad weeks, hot spells "
                      "and noise), and the thresholds were chosen on validation fleets, not "
                      "on it: until fleet data exists they cannot be tuned on the fleet they "
                      "will run on."]
    lines += ["", "## Known limits", ""] + [f"- {x}" for x in card["limits"]]
    lines.append("")
    return "\n".join(lines)


TARGET_ROWS = (("failures with a precursor flagged 48 h to 14 days ahead", "recall_48h_14d",
                "at least 0.70"),
               ("predicted_failure per 100 device-weeks, no failure within 14 days",
                "false_pf_per_100_dw", "at most 1"),
               ("critical failed per 100 device-weeks, devices that never fail",
                "failed_on_healthy_per_100_dw", "at most 1"),
               ("predicted_failure raises per failure episode", "raises_per_episode",
                "at most 1.5"),
               ("median lead of caught failures, days", "median_lead_days", ""),
               ("threshold", "threshold", ""))


def replay_section(replay: dict | None) -> list[str]:
    """The targets of issue 10, measured through `edge-agent replay` (models/replay_eval.py)."""
    lines = ["## Against the targets, through `edge-agent replay`", ""]
    if not replay:
        return lines + ["Not measured for this model (a `--small` training run)."]
    methods = replay["methods"]
    names = [n for n in ("model", "fixed_thresholds", "fixed_thresholds_at_budget",
                         "kmeans_distance", "kmeans_distance_at_budget") if n in methods]
    mo = methods["model"]
    lines += [
        f"A fleet none of the above saw: seed {replay['seed']}, {replay['devices']} devices x "
        f"{replay['days']:g} days, parameter draw `{replay['params']}`, a reading every "
        f"{replay['step_s']:g} s per device shaped as the collectors shape it "
        f"({replay['readings']} readings), one store. Each method is an ONNX model run by "
        f"`edge-agent replay --json --interval {replay['interval_s']:g}` with the real policy "
        "(features, hysteresis, hold, one episode, failed rules, attention); the baselines are "
        "ONNX graphs of the same scores (models/replay_eval.py). Fates: "
        + ", ".join(f"{k} {v}" for k, v in replay["fates"].items()) + ".",
        "",
        "| target | goal | " + " | ".join(n.replace("_", " ") for n in names) + " |",
        "| --- | --- |" + " --- |" * len(names),
    ]
    def cell(method: dict, key: str) -> str:
        if key == "threshold" and method.get("class_thresholds"):
            return ", ".join(f"{c} {v}" for c, v in method["class_thresholds"].items())
        return str(method.get(key))

    for label, key, goal in TARGET_ROWS:
        lines.append(f"| {label} | {goal} | "
                     + " | ".join(cell(methods[n], key) for n in names) + " |")
    lines += ["", f"Counts for the model: {mo['caught']} of {mo['failures_with_precursor']} "
                  f"failures with a precursor caught; {mo['false_pf']} predictions on "
                  f"{mo['device_weeks']} device-weeks without a failure within 14 days; "
                  f"{mo['failed_on_healthy']} `failed` on {mo['healthy_device_weeks']} "
                  f"device-weeks of devices that never fail; {mo['episodes']} failure "
                  "episodes with at least one prediction.", ""]
    for key, (label_key) in (("recall_48h_14d", "recall"),
                             ("false_pf_per_100_dw", "predictions without a failure"),
                             ("failed_on_healthy_per_100_dw", "failed on healthy devices"),
                             ("raises_per_episode", "raises per episode")):
        ok = mo["met"][key]
        lines.append(f"- {label_key}: {'met' if ok else 'NOT met'} ({mo[key]}).")
    return lines


def main(argv: list[str] | None = None) -> int:
    """Rewrite docs/model.md from a model card, without retraining."""
    import argparse
    import json
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    parser = argparse.ArgumentParser(prog="python -m models.evaluate", description=main.__doc__)
    parser.add_argument("--card", default=str(root / "models" / "device_health.card.json"))
    parser.add_argument("--report", default=str(root / "docs" / "model.md"))
    args = parser.parse_args(argv)
    Path(args.report).write_text(report(json.loads(Path(args.card).read_text())))
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
