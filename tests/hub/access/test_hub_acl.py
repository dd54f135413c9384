"""`edge-hub acl render` against a real Mosquitto: people log in with their name and API token,
a regional manager's account reads exactly its regions' alert feeds, a store manager's its
stores', a disabled user cannot log in, and hostile names never reach the ACL."""

from __future__ import annotations

import queue
import uuid

import paho.mqtt.client as mqtt
import pytest

from apikit import hub_with_fleet
from brokers import Mosquitto
from conftest import run_cli
from hub.domains.access.broker import render_acl
from hub.errors import Conflict, Invalid
from wait import PATIENCE_S

HUB_SECRET = "hub-broker-secret"


def hub(*args: str):
    return run_cli(*args, module="hub")


def connect(broker, user, password, on_message=None):
    """A connected client, or the CONNACK's reason code when the broker refused it."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                         client_id=f"t-{uuid.uuid4().hex[:8]}", protocol=mqtt.MQTTv5)
    client.username_pw_set(user, password)
    result: queue.Queue = queue.Queue()
    client.on_connect = lambda c, u, f, rc, p: result.put(rc)
    if on_message:
        client.on_message = on_message
    client.connect(broker.host, broker.port, 30)
    client.loop_start()
    rc = result.get(timeout=PATIENCE_S)
    if rc.is_failure:
        client.loop_stop()
        return rc
    return client


def subscribe_all(broker, user, token):
    got: queue.Queue = queue.Queue()
    client = connect(broker, user, token, lambda c, u, m: got.put(m.topic))
    done: queue.Queue = queue.Queue()
    client.on_subscribe = lambda *a: done.put(True)
    client.subscribe([("edge/v1/alerts/#", 1), ("edge/v1/approvals/#", 1)])
    done.get(timeout=PATIENCE_S)
    return client, got


def drain(q: queue.Queue, wait: float = 1.0) -> set[str]:
    out = set()
    try:
        while True:
            out.add(q.get(timeout=wait))
    except queue.Empty:
        return out


@pytest.fixture
def rendered(tmp_path):
    db_path = str(tmp_path / "hub.db")
    db, tokens = hub_with_fleet(db_path)
    db.close()
    secret = tmp_path / "hub.secret"
    secret.write_text(HUB_SECRET + "\n")
    config = tmp_path / "hub.toml"
    config.write_text(f"[broker]\nusername = \"hub\"\npassword_file = \"{secret}\"\n")
    acl, pw = tmp_path / "acl", tmp_path / "passwd"
    out = hub("acl", "render", "--db", db_path, "--config", str(config), "-o", str(acl),
              "--passwords", str(pw))
    assert out.returncode == 0, out.stderr
    assert "3 stores, 5 users" in out.stdout
    return db_path, tokens, acl, pw, config


def test_the_rendered_acl_grants_each_account_exactly_its_feeds(rendered, tmp_path):
    _, tokens, acl, pw, _ = rendered
    assert (pw.stat().st_mode & 0o077) == 0
    text = acl.read_text()
    assert "user north-rm\ntopic read edge/v1/alerts/north/#\n" \
           "topic read edge/v1/approvals/north/#\n" in text
    assert "user s3-sm\ntopic read edge/v1/alerts/+/s3\n" in text
    broker = Mosquitto(tmp_path / "broker", allow_anonymous=False, acl=text,
                       extra_conf=f"password_file {pw}").start()
    try:
        rm, rm_got = subscribe_all(broker, "north-rm", tokens["north-rm"])
        sm, sm_got = subscribe_all(broker, "s3-sm", tokens["s3-sm"])
        ops, ops_got = subscribe_all(broker, "ops", tokens["ops"])
        feed = connect(broker, "hub", HUB_SECRET)
        for topic in ("edge/v1/alerts/north/s1", "edge/v1/alerts/north/s2",
                      "edge/v1/alerts/south/s3", "edge/v1/approvals/north",
                      "edge/v1/approvals/south"):
            feed.publish(topic, b'{"v": 1}', qos=1).wait_for_publish(10)
        # A manager cannot publish on the feed: nobody receives this one.
        rm.publish("edge/v1/alerts/north/s1x", b"forged", qos=1).wait_for_publish(10)
        assert drain(rm_got) == {"edge/v1/alerts/north/s1", "edge/v1/alerts/north/s2",
                                 "edge/v1/approvals/north"}
        assert drain(sm_got, 0.2) == {"edge/v1/alerts/south/s3"}
        assert drain(ops_got, 0.2) == {"edge/v1/alerts/north/s1", "edge/v1/alerts/north/s2",
                                       "edge/v1/alerts/south/s3", "edge/v1/approvals/north",
                                       "edge/v1/approvals/south"}
        assert connect(broker, "north-rm", "eh_wrong").is_failure
        assert connect(broker, "nobody", tokens["north-rm"]).is_failure
        for c in (rm, sm, ops, feed):
            c.disconnect()
            c.loop_stop()
    finally:
        broker.kill()


def test_a_disabled_user_is_left_out_of_the_next_render(rendered, tmp_path):
    db_path, tokens, _, _, config = rendered
    assert hub("users", "disable", "north-rm", "--db", db_path).returncode == 0
    acl, pw = tmp_path / "acl2", tmp_path / "pw2"
    out = hub("acl", "render", "--db", db_path, "--config", str(config), "-o", str(acl),
              "--passwords", str(pw))
    assert out.returncode == 0, out.stderr
    assert "north-rm" not in acl.read_text() and "north-rm" not in pw.read_text()
    broker = Mosquitto(tmp_path / "broker", allow_anonymous=False, acl=acl.read_text(),
                       extra_conf=f"password_file {pw}").start()
    try:
        assert connect(broker, "north-rm", tokens["north-rm"]).is_failure
    finally:
        broker.kill()


@pytest.mark.parametrize("stores, users, error", [
    ([("s1\ntopic readwrite #", "north")], [], Invalid),
    ([("s1", "north/#")], [], Invalid),
    ([("+", "north")], [], Invalid),
    ([], [{"name": "a", "role": "regional-manager", "regions": ["#"], "stores": []}], Invalid),
    ([("s1", "north")], [{"name": "s1", "role": "auditor", "regions": [], "stores": []}],
     Conflict),
    ([("hub", "north")], [], Conflict),
])
def test_names_that_would_widen_or_break_the_acl_are_refused(stores, users, error):
    with pytest.raises(error):
        render_acl(stores, users)


def test_the_hub_worker_logs_in_with_the_configs_account(rendered, tmp_path):
    from hubkit import HubProcess

    db_path, tokens, acl, pw, config = rendered
    broker = Mosquitto(tmp_path / "broker", allow_anonymous=False, acl=acl.read_text(),
                       extra_conf=f"password_file {pw}").start()
    worker = HubProcess(broker, db_path, "hub-acl", "--config", str(config),
                        log_path=tmp_path / "hub.log").start()
    try:
        worker.wait_connected()  # subscribed: the broker took the hub's name and password
        state = connect(broker, "hub", HUB_SECRET)
        got: queue.Queue = queue.Queue()
        state.on_message = lambda c, u, m: got.put(m.payload)
        state.subscribe("edge/v1/hub/state", qos=1)
        assert b'"online":true' in got.get(timeout=PATIENCE_S).replace(b" ", b"")
        state.disconnect()
        state.loop_stop()
    finally:
        assert worker.terminate() == 0, worker.log()
        broker.kill()
    wrong = tmp_path / "wrong.toml"
    wrong.write_text(config.read_text().replace("[broker]", "[broker]\ntls = true"))
    out = hub("serve", "--db", db_path, "--config", str(wrong))
    assert out.returncode == 2 and "tls" in out.stderr and "Traceback" not in out.stderr
