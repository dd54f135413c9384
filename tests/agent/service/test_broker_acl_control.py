"""The broker ACL template and the control plane, against a real Mosquitto with TLS client
certificates: a store account cannot publish on another store's command topic (nor on its
own), reads only its own flags, and publishes its results where the hub reads them."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from testenv import ROOT, free_port
from brokers import MOSQUITTO
from test_broker_templates import connect, make_pki, subscribe
from wait import PATIENCE_S

sys.path.insert(0, str(ROOT / "packaging" / "mosquitto"))
import render  # noqa: E402

HUB, STORE_A, STORE_B = "hub-1", "store-0001", "store-0100"
A_CMD = "edge/v1/eu-west/store-0001/cmd"
B_CMD = "edge/v1/us-east/store-0100/cmd"


@pytest.fixture(scope="module", params=["packaging template", "edge-hub acl render"])
def broker(request, tmp_path_factory):
    """Mosquitto with the ACL from packaging/mosquitto's template, or from the hub's own
    generator (hub.domains.access.broker.render_acl, `edge-hub acl render`)."""
    folder = tmp_path_factory.mktemp("acl-control")
    make_pki(folder)
    acl = folder / "acl"
    stores = [("eu-west", STORE_A), ("us-east", STORE_B)]
    if request.param == "packaging template":
        acl.write_text(render.render_acl(HUB, stores, [("eu-west", "rm-alice")]))
    else:
        from hub.domains.access.broker import render_acl

        acl.write_text(render_acl([(s, r) for r, s in stores], [], hub_user=HUB))
    port = free_port()
    conf = folder / "mosquitto.conf"
    conf.write_text(render.render_conf({
        "acl_file": str(acl), "port": str(port), "ca_file": str(folder / "ca.crt"),
        "cert_file": str(folder / "server.crt"), "key_file": str(folder / "server.key"),
        "persistence_dir": str(folder)}).replace(f"listener {port}", f"listener {port} 127.0.0.1")
        + f"log_dest file {folder}/mosquitto.log\n"
        + ("user root\n" if os.geteuid() == 0 else ""))
    proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        probe = connect(folder, port, HUB, wait_fail=proc)
        probe.disconnect()
        probe.loop_stop()
        yield folder, port
    finally:
        proc.kill()
        proc.wait(5)
        proc.stderr.close()


def _close(*clients):
    for c in clients:
        c.disconnect()
        c.loop_stop()


def _seen_until(reader, sentinel: str) -> set[str]:
    seen: set[str] = set()
    while sentinel not in seen:
        seen.add(reader.inbox.get(timeout=PATIENCE_S)[0])
    return seen


@pytest.mark.parametrize("writer, topic", [
    (STORE_A, B_CMD),                                    # another store's command topic
    (STORE_A, A_CMD),                                    # its own: only the hub writes commands
    (STORE_A, "edge/v1/us-east/store-0100/flags"),      # another store's flags
    (STORE_A, "edge/v1/eu-west/store-0001/flags"),      # its own flags
    (STORE_A, "edge/v1/us-east/store-0100/cmd/result"),  # results in another store's name
])
def test_a_store_account_cannot_publish_commands_or_flags(broker, writer, topic):
    folder, port = broker
    # The store the message would reach (or the hub, for a result) listens; the hub sends a
    # sentinel on the same topic family after it, which the listener may read.
    target = STORE_B if "store-0100" in topic else STORE_A
    if topic.endswith("/cmd/result"):
        target, listen, sentinel_writer, sentinel = (
            HUB, "edge/v1/+/+/cmd/result", STORE_B, "edge/v1/us-east/store-0100/cmd/result")
    else:
        listen, sentinel_writer, sentinel = topic, HUB, topic
    reader = connect(folder, port, target)
    # One account, one client id: a store writing on its own topic reads on the same link.
    forger = reader if target == writer else connect(folder, port, writer)
    sender = connect(folder, port, sentinel_writer)
    try:
        assert subscribe(reader, listen) < 0x80
        info = forger.publish(topic, b"forged", qos=1)
        info.wait_for_publish(10)
        sender.publish(sentinel, b"sentinel", qos=1).wait_for_publish(10)
        got = []
        while True:
            t, payload = reader.inbox.get(timeout=PATIENCE_S)
            got.append(payload)
            if payload == b"sentinel":
                break
        assert b"forged" not in got, f"{writer} published on {topic}"
    finally:
        _close(*{id(c): c for c in (reader, forger, sender)}.values())


def test_a_store_reads_only_its_own_flags_and_commands(broker):
    folder, port = broker
    reader = connect(folder, port, STORE_A)
    hub = connect(folder, port, HUB)
    try:
        assert subscribe(reader, "#") < 0x80
        for topic in ("edge/v1/us-east/store-0100/flags", B_CMD,
                      "edge/v1/eu-west/store-0001/flags", A_CMD):
            hub.publish(topic, b"x", qos=1).wait_for_publish(10)
        seen = _seen_until(reader, A_CMD)
        assert "edge/v1/eu-west/store-0001/flags" in seen
        assert "edge/v1/us-east/store-0100/flags" not in seen and B_CMD not in seen
    finally:
        _close(reader, hub)


def test_results_reach_the_hub_through_its_shared_subscription(broker):
    folder, port = broker
    hub = connect(folder, port, HUB)
    store = connect(folder, port, STORE_A)
    try:
        assert subscribe(hub, "$share/hub-cmd/edge/v1/+/+/cmd/result") < 0x80
        store.publish("edge/v1/eu-west/store-0001/cmd/result", b"r", qos=1).wait_for_publish(10)
        assert hub.inbox.get(timeout=PATIENCE_S) == ("edge/v1/eu-west/store-0001/cmd/result", b"r")
    finally:
        _close(hub, store)
