"""The hub's retained state (edge_protocol/golden/hub/): the hub's encoder reproduces both
golden states byte for byte, and the agent's decoder (new, and as old agents read it: a
boolean `online`, extra keys ignored) takes the held state for offline."""

from __future__ import annotations

import json

import pytest

from edge_protocol import GOLDEN_DIR, WireError, decode_hub_state, encode_hub_state

FOLDER = GOLDEN_DIR / "hub"
TS, WORKER = "2026-12-05T11:00:00.000Z", "edge-hub-host1"


def golden(name: str) -> bytes:
    return (FOLDER / f"{name}.json").read_bytes().rstrip(b"\n")


def test_the_encoder_reproduces_the_golden_states():
    assert encode_hub_state(True, TS, WORKER) == golden("state_online")
    assert encode_hub_state(False, TS, WORKER, "database") == golden("state_held")


def test_the_held_state_reads_as_offline_with_its_reason():
    state = decode_hub_state(golden("state_held"))
    assert state["online"] is False and state["reason"] == "database"
    assert state["worker"] == WORKER
    assert "reason" not in decode_hub_state(golden("state_online"))
    # What an agent from before the field checks: `online` a boolean, nothing else.
    old = json.loads(golden("state_held"))
    assert isinstance(old["online"], bool) and old["online"] is False


@pytest.mark.parametrize("reason", [7, "", "x" * 65, "data\nbase", ["database"]])
def test_a_malformed_reason_is_refused(reason):
    raw = json.dumps({"v": 1, "online": True, "ts": TS, "worker": WORKER, "reason": reason})
    with pytest.raises(WireError) as err:
        decode_hub_state(raw.encode())
    assert err.value.code == "bad_hub_state"


def test_an_unknown_reason_is_kept_and_still_offline():
    raw = json.dumps({"v": 1, "online": False, "ts": TS, "worker": WORKER, "reason": "disk"})
    assert decode_hub_state(raw.encode())["reason"] == "disk"


@pytest.mark.parametrize("online, reason", [(True, "database"), (False, "disk")])
def test_the_encoder_refuses_a_reason_it_does_not_define(online, reason):
    with pytest.raises(ValueError):
        encode_hub_state(online, TS, WORKER, reason)
