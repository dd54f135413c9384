"""Train/serve parity: the fleet simulator speaks only as the collectors speak, and the
features read only what some collector declares (issue 10, item 3)."""

from __future__ import annotations

import random

import pytest

from edge_agent import collectors
from edge_agent.health import features as F
from edge_agent.reading import validate
from edge_protocol.vocabulary import lookup
from models import fleetsim


def declared(kind: str) -> set[str]:
    """Vocabulary patterns a collector declares, plus what the poll loop adds to every reading."""
    return set(collectors.get(kind).CAPABILITIES) | set(fleetsim.POLL_LOOP)


def pattern(name: str) -> str:
    entry = lookup(name)
    assert entry is not None, f"{name} is not in the vocabulary"
    return entry.pattern


@pytest.mark.parametrize("cls", ["printer", "scanner", "register"])
@pytest.mark.parametrize("mode", [None, "sudden", "draw"])
def test_the_simulator_emits_only_names_its_collector_declares(cls, mode):
    rng = random.Random(5)
    seen: set[str] = set()
    modes = [None] if mode is None else [mode] if mode != "draw" else \
        sorted(fleetsim.MODES[cls]) + ["sudden"]
    for m in modes:
        dev = fleetsim.make_device(rng, f"{cls}-x", cls, fleetsim.HELDOUT, fleetsim.EPOCH, 12.0,
                                   mode=m, fail_day=8.0 if m else None)
        assert fleetsim.KINDS[cls] == dev.kind
        for reading in dev.readings(1800.0):
            assert validate(reading) == [], reading
            seen.update(reading.values)
    allowed = declared(fleetsim.KINDS[cls])
    undeclared = sorted(n for n in seen if pattern(n) not in allowed)
    assert not undeclared, f"{cls} simulator emits names its collector does not declare"


def test_every_name_a_feature_reads_is_declared_by_some_collector():
    everything = set(fleetsim.POLL_LOOP)
    for kind in collectors.names():
        everything |= set(collectors.get(kind).CAPABILITIES)
    missing = sorted(n for n in F.READS if pattern(n) not in everything)
    assert not missing, f"features read names no collector emits: {missing}"


def test_the_parity_check_can_fail():
    # A name no collector declares is caught (the old simulator's printer.head_temp_c).
    assert pattern("printer.head_temp_c") not in declared("escpos")


def test_each_precursor_mode_moves_its_features_before_the_failure():
    rng = random.Random(11)
    idx = {n: i for i, n in enumerate(F.NAMES)}
    checks = {("printer", "cutter"): "cutter_errors_per_day",
              ("printer", "head"): "overheats_per_day",
              ("printer", "link"): "timeouts_per_day",
              ("scanner", "cable"): "reconnects_per_day",
              ("register", "fan"): "host_temp_trend_c",
              ("register", "disk_wear"): "smart_bad_trend",
              ("register", "disk_fill"): "disk_trend_pct_per_day"}
    for (cls, mode), feature in checks.items():
        values = {}
        for m in (mode, None):
            dev = fleetsim.make_device(rng, "d", cls, fleetsim.TRAIN, fleetsim.EPOCH, 30.0,
                                       mode=m, fail_day=28.0 if m else None)
            dev.onset, dev.peak, dev.episodes = 12 * fleetsim.DAY, 1.0, []
            w = F.DeviceWindows()
            at = fleetsim.EPOCH + 25.5 * fleetsim.DAY  # 2.5 days before the failure
            for r in dev.readings(1800.0):
                if r.ts.timestamp() > at:
                    break
                w.update(r)
            values[m] = w.vector(at)[idx[feature]]
        assert values[mode] > values[None], (cls, mode, feature, values)
