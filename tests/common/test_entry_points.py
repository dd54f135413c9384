"""The console scripts: a library of the other half's extra missing is one line naming the
extra to install, not a traceback; any other missing module is a bug and still raises."""

from __future__ import annotations

import pytest

from edge_agent.cli import entry as agent_entry
from hub.cli import entry as hub_entry

CASES = {
    "the agent without onnxruntime": (agent_entry, "edge_agent.cli.main", "onnxruntime",
                                      "pip install 'retail-edge[agent]'"),
    "the agent without pysnmp's submodule": (agent_entry, "edge_agent.cli.main", "pysnmp.hlapi",
                                             "pip install 'retail-edge[agent]'"),
    "the hub without paho": (hub_entry, "hub.cli", "paho", "pip install 'retail-edge[hub]'"),
    "the hub without amqtt": (hub_entry, "hub.cli", "amqtt", "pip install 'retail-edge[hub]'"),
}


@pytest.mark.parametrize("entry, cli, missing, advice", CASES.values(), ids=CASES.keys())
def test_a_missing_library_of_the_extra_names_the_extra(entry, cli, missing, advice,
                                                         monkeypatch, capsys):
    def main():
        raise ModuleNotFoundError(f"No module named {missing!r}", name=missing)

    monkeypatch.setattr(f"{cli}.main", main)
    assert entry.main() == 1
    err = capsys.readouterr().err
    assert f"{missing!r} is not installed" in err and advice in err


@pytest.mark.parametrize("entry, cli", [(agent_entry, "edge_agent.cli.main"),
                                        (hub_entry, "hub.cli")])
def test_any_other_missing_module_is_a_bug_and_raises(entry, cli, monkeypatch):
    def main():
        raise ModuleNotFoundError("No module named 'edge_agent.typo'", name="edge_agent.typo")

    monkeypatch.setattr(f"{cli}.main", main)
    with pytest.raises(ModuleNotFoundError):
        entry.main()
