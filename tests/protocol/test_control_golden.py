"""The control plane's golden messages: the hub's builders reproduce them byte for byte (same
fields, same test key: Ed25519 is deterministic) and the agent's checks accept them."""

from __future__ import annotations

import json

import pytest

import controlgolden as g
from edge_protocol import bundles, commands
from hub.control import decode_result


def golden(name: str) -> dict:
    return json.loads((g.FOLDER / f"{name}.json").read_text())


@pytest.mark.parametrize("name", ["command", "flags", "desired", "cmd_result",
                                  "bundle_content"])
def test_the_builders_reproduce_each_golden_message(name):
    assert g.build()[name] == golden(name)


def test_the_agent_accepts_the_golden_command_flags_and_desired_state():
    ring = g.GoldenRing()
    raw = json.dumps(golden("command")).encode()
    cmd = commands.check_command(raw, store=g.STORE, trusted=ring.trusted(), now=g.ISSUED + 1)
    assert (cmd.seq, cmd.action, cmd.device) == (42, "test_print", "receipt-1")
    assert commands.check_action(cmd.action, cmd.device, cmd.args).name == "test_print"
    with pytest.raises(commands.CommandError) as err:
        commands.check_command(raw, store=g.STORE, trusted=ring.trusted(), now=g.ISSUED + 601)
    assert err.value.code == "expired"
    f = commands.check_flags(json.dumps(golden("flags")).encode(), store=g.STORE,
                             trusted=ring.trusted())
    assert f.version == 3 and f.flags["scoring"] is False
    d = bundles.check_desired(json.dumps(golden("desired")).encode(), store=g.STORE,
                              trusted=ring.trusted())
    m = bundles.check_manifest(d.bundles["config"]["manifest"], ring.trusted(),
                               now=g.ISSUED + 1, agent_version="0.1.0")
    content = golden("bundle_content")
    assert m.sha256 == content["sha256"]
    files = bundles.unpack(content["content"].encode(), m)
    assert files == {"agent.toml": b'[agent]\nstore = "store-0001"\n'}


def test_the_hub_accepts_the_golden_result_on_its_topic():
    env = golden("cmd_result")
    region, store, env_id, body = decode_result(
        json.dumps(env).encode(), f"edge/v1/{env['region']}/{env['store']}/cmd/result",
        "edge/v1")
    assert (region, store, env_id) == ("eu-west", "store-0001", env["id"])
    assert body == env["body"]
