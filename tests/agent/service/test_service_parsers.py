"""Untrusted text the service code reads never crashes it: environment, systemctl, ACL ids."""

from __future__ import annotations

import sys

from hypothesis import given, strategies as st

from conftest import ROOT
from edge_agent.service import linux, notify

sys.path.insert(0, str(ROOT / "packaging" / "mosquitto"))
import render  # noqa: E402

texts = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=60)


@given(socket=texts, usec=texts, pid=texts)
def test_any_notify_environment_gives_a_notifier_or_none_never_an_error(socket, usec, pid):
    env = {"NOTIFY_SOCKET": socket, "WATCHDOG_USEC": usec, "WATCHDOG_PID": pid}
    n = notify.Notifier(env)
    assert n.watchdog_s is None or n.watchdog_s > 0
    assert n.enabled == (socket.startswith("/") or socket.startswith("@"))


@given(st.lists(st.tuples(texts, texts), max_size=10))
def test_systemctl_show_output_parses_into_its_keys(pairs):
    lines = [f"{k}={v}" for k, v in pairs if "=" not in k and "\n" not in k + v
             and "\r" not in k + v and k]
    parsed = linux.parse_show("\n".join(lines))
    for line in lines:
        key, _, value = line.partition("=")
        assert key in parsed


@given(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.:\-]{0,20}", fullmatch=True),
       st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.:\-]{0,20}", fullmatch=True))
def test_a_rendered_store_block_grants_only_that_store_and_region(region, store):
    acl = render.render_acl("hub-1", [(region, store)], [])
    block = acl.split(f"user {store}\n", 1)[1]
    for line in block.splitlines():
        if line.startswith("topic "):
            topic = line.split()[-1]
            if topic == "edge/v1/bundles/+":
                # Bundle contents: shared by the chain, signed and content-addressed
                # (docs/commands.md); read only.
                assert line.split()[1] == "read"
                continue
            assert topic == "edge/v1/hub/state" or topic.startswith(f"edge/v1/{region}/{store}/")
            assert "#" not in topic and "+" not in topic


@given(texts)
def test_unit_quoting_keeps_one_argument_one_word(arg):
    quoted = linux._unit_quote(arg)
    assert quoted == arg or (quoted.startswith('"') and quoted.endswith('"'))
