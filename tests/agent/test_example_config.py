"""agent.example.toml documents every key the agent knows, with its real default."""

from __future__ import annotations

import dataclasses
import re
import sys
import typing

from edge_agent import collectors
from edge_agent.config import AgentConfig, DeviceConfig, load_config

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

from conftest import ROOT

EXAMPLE = ROOT / "agent.example.toml"
KEY = re.compile(r"^(#\s*)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.+)$")


def documented_keys():
    """Map each section of the example to {key: (commented, value text, doc above)}."""
    sections: dict[str, dict[str, tuple[bool, str, bool]]] = {}
    section, doc_above = "", False
    for line in EXAMPLE.read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("##"):
            doc_above = True
            continue
        header = re.match(r"^\[\[?([A-Za-z0-9_.]+)\]\]?$", stripped)
        if header:
            section, doc_above = header.group(1), False
            continue
        m = KEY.match(stripped)
        if m:
            keys = sections.setdefault(section, {})
            keys.setdefault(m.group(2), (bool(m.group(1)), m.group(3), doc_above))
        doc_above = False
    return sections


def classes():
    """Map each example section to the config class that reads it."""
    resolved = typing.get_type_hints(AgentConfig)
    out = {name: tp for name, tp in resolved.items() if dataclasses.is_dataclass(tp)}
    out["devices"] = DeviceConfig
    for kind in collectors.names():
        out[f"devices.{kind}"] = collectors.get(kind).Config
    # A table inside a section ([scoring.escalate]) is a section of its own.
    for name, tp in list(out.items()):
        for f_name, f_tp in typing.get_type_hints(tp).items():
            if dataclasses.is_dataclass(f_tp):
                out[f"{name}.{f_name}"] = f_tp
    return out


def _is_table(cls, name: str) -> bool:
    return dataclasses.is_dataclass(typing.get_type_hints(cls).get(name))


def test_example_config_is_valid():
    config = load_config(EXAMPLE)
    assert config.devices, "the example should configure at least one device"


def test_every_config_key_is_documented_in_the_example_with_its_default():
    sections = documented_keys()
    problems = []
    for section, cls in classes().items():
        keys = sections.get(section)
        if keys is None:
            problems.append(f"[{section}] is missing from agent.example.toml")
            continue
        for f in dataclasses.fields(cls):
            if f.name in ("options",) or _is_table(cls, f.name):
                continue
            if f.name not in keys:
                problems.append(f"{section}.{f.name} is not in agent.example.toml")
                continue
            commented, value_text, doc = keys[f.name]
            if not doc:
                problems.append(f"{section}.{f.name} has no '##' line explaining it")
            if commented:
                value = tomllib.loads(f"v = {value_text}")["v"]
                default = f.default
                if isinstance(default, tuple):
                    default = list(default)
                if value != default:
                    problems.append(f"{section}.{f.name}: example shows {value!r}, "
                                    f"default is {default!r}")
    assert not problems, "\n".join(problems)


def test_every_key_in_the_example_is_one_the_agent_knows():
    sections = documented_keys()
    known = classes()
    problems = []
    for section, keys in sections.items():
        cls = known.get(section)
        if cls is None:
            problems.append(f"[{section}] is not a config section")
            continue
        names = {f.name for f in dataclasses.fields(cls)}
        problems += [f"{section}.{k} is not a config key" for k in keys if k not in names]
    assert not problems, "\n".join(problems)
