"""The broker templates work: a real Mosquitto on the rendered config and ACL, over TLS with
client certificates, lets each store publish only under its own topics and each regional
manager read only its own region's alerts."""

from __future__ import annotations

import datetime
import ipaddress
import os
import queue
import subprocess
import sys
import threading

import pytest

from brokers import MOSQUITTO
from conftest import ROOT, free_port
from wait import PATIENCE_S

sys.path.insert(0, str(ROOT / "packaging" / "mosquitto"))
import render  # noqa: E402  (the shipped script, not a copy)

mqtt = pytest.importorskip("paho.mqtt.client")


def make_pki(folder):
    """A CA, the broker's certificate for 127.0.0.1 and one client certificate per name."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def name(cn):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def save(stem, key, cert):
        (folder / f"{stem}.key").write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
        (folder / f"{stem}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(name("test CA")).issuer_name(name("test CA"))
          .public_key(ca_key.public_key()).serial_number(1)
          .not_valid_before(now - datetime.timedelta(days=1))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    save("ca", ca_key, ca)

    def issue(stem, cn, server=False):
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (x509.CertificateBuilder().subject_name(name(cn)).issuer_name(ca.subject)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(days=1))
                   .not_valid_after(now + datetime.timedelta(days=1)))
        if server:
            builder = builder.add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        save(stem, key, builder.sign(ca_key, hashes.SHA256()))

    issue("server", "broker", server=True)
    for cn in ("hub-1", "store-0001", "store-0100", "rm-alice"):
        issue(cn, cn)


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    folder = tmp_path_factory.mktemp("broker")
    make_pki(folder)
    acl = folder / "acl"
    acl.write_text(render.render_acl("hub-1", [("eu-west", "store-0001"),
                                               ("us-east", "store-0100")],
                                     [("eu-west", "rm-alice")]))
    port = free_port()
    conf = folder / "mosquitto.conf"
    conf.write_text(render.render_conf({
        "acl_file": str(acl), "port": str(port), "ca_file": str(folder / "ca.crt"),
        "cert_file": str(folder / "server.crt"), "key_file": str(folder / "server.key"),
        "persistence_dir": str(folder)}).replace(f"listener {port}", f"listener {port} 127.0.0.1")
        + f"log_dest file {folder}/mosquitto.log\n"
        # As root, mosquitto would switch to its own user, who cannot read pytest's 0700 tmp.
        + ("user root\n" if os.geteuid() == 0 else ""))
    proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        probe = connect(folder, port, "hub-1", wait_fail=proc)
        probe.disconnect()
        probe.loop_stop()
        yield folder, port
    finally:
        proc.kill()
        proc.wait(5)
        proc.stderr.close()


def connect(folder, port, user, wait_fail=None):
    """Connect over TLS with `user`'s certificate; return the running client."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"t-{user}",
                         protocol=mqtt.MQTTv5)
    client.tls_set(ca_certs=str(folder / "ca.crt"), certfile=str(folder / f"{user}.crt"),
                   keyfile=str(folder / f"{user}.key"))
    client.inbox = queue.Queue()
    client.subacks = queue.Queue()
    client.pubacks = {}
    client.puback_seen = threading.Event()
    client.on_message = lambda c, u, m: c.inbox.put((m.topic, m.payload))
    client.on_subscribe = lambda c, u, mid, codes, props: c.subacks.put([int(x.value)
                                                                          for x in codes])
    connected = threading.Event()
    client.on_connect = lambda c, u, f, rc, p: connected.set()
    for _ in range(100):  # The broker may still be starting; connect errors are retried.
        try:
            client.connect("127.0.0.1", port)
            break
        except OSError:
            if wait_fail is not None and wait_fail.poll() is not None:
                raise RuntimeError(wait_fail.stderr.read().decode())
            threading.Event().wait(0.1)
    client.loop_start()
    assert connected.wait(10), f"{user} could not connect"
    return client


def subscribe(client, topic) -> int:
    client.subscribe(topic, qos=1)
    return client.subacks.get(timeout=PATIENCE_S)[0]


# Mosquitto grants every SUBSCRIBE and applies `read` rules to each message it delivers, so the
# test is what arrives. After the message under test, the same publisher sends a sentinel the
# reader may receive; messages on one connection arrive in order, so once the sentinel is in,
# the message under test has either arrived or been withheld.
SENTINELS = {("store-0001", "hub-1"): "edge/v1/eu-west/store-0001/cmd",
             ("rm-alice", "hub-1"): "edge/v1/alerts/eu-west/store-0001",
             ("hub-1", "store-0001"): "edge/v1/eu-west/store-0001/alert"}


@pytest.mark.parametrize("case, reader, topic_filter, writer, topic, delivered", [
    ("a store reads its own commands",
     "store-0001", "edge/v1/+/+/cmd", "hub-1", "edge/v1/eu-west/store-0001/cmd", True),
    ("a store does not get another store's commands",
     "store-0001", "edge/v1/+/+/cmd", "hub-1", "edge/v1/us-east/store-0100/cmd", False),
    ("a store does not get another store's config, even subscribed to everything",
     "store-0001", "#", "hub-1", "edge/v1/us-east/store-0100/config", False),
    ("a regional manager gets its region's alerts",
     "rm-alice", "edge/v1/alerts/#", "hub-1", "edge/v1/alerts/eu-west/store-0001", True),
    ("a regional manager does not get another region's alerts",
     "rm-alice", "edge/v1/alerts/#", "hub-1", "edge/v1/alerts/us-east/store-0100", False),
    ("a regional manager does not get commands",
     "rm-alice", "#", "hub-1", "edge/v1/eu-west/store-0001/cmd", False),
    ("the hub gets every store's telemetry",
     "hub-1", "edge/v1/+/+/telemetry", "store-0001", "edge/v1/eu-west/store-0001/telemetry", True),
    ("hub workers get the stream through a shared subscription",
     "hub-1", "$share/hub/edge/v1/+/+/#", "store-0001", "edge/v1/eu-west/store-0001/event", True),
])
def test_deliveries_follow_the_acl(broker, case, reader, topic_filter, writer, topic, delivered):
    folder, port = broker
    sentinel = SENTINELS[(reader, writer)]
    rd = connect(folder, port, reader)
    wr = connect(folder, port, writer)
    try:
        subscribe(rd, topic_filter)
        subscribe(rd, sentinel)
        wr.publish(topic, b"x", qos=1).wait_for_publish(10)
        wr.publish(sentinel, b"sentinel", qos=1).wait_for_publish(10)
        seen = set()
        while sentinel not in seen:
            seen.add(rd.inbox.get(timeout=PATIENCE_S)[0])
        assert (topic in seen) is delivered, case
    finally:
        for c in (rd, wr):
            c.disconnect()
            c.loop_stop()


def test_a_store_publishes_only_under_its_own_topics(broker):
    folder, port = broker
    hub = connect(folder, port, "hub-1")
    store = connect(folder, port, "store-0001")
    try:
        assert subscribe(hub, "edge/v1/+/+/alert") < 0x80
        # In order, on one connection: the forged one first, then its own.
        store.publish("edge/v1/us-east/store-0100/alert", b"forged", qos=1).wait_for_publish(10)
        store.publish("edge/v1/eu-west/store-0001/alert", b"own", qos=1).wait_for_publish(10)
        topic, payload = hub.inbox.get(timeout=PATIENCE_S)
        assert (topic, payload) == ("edge/v1/eu-west/store-0001/alert", b"own")
        assert hub.inbox.empty()
    finally:
        for c in (hub, store):
            c.disconnect()
            c.loop_stop()


def test_the_renderer_refuses_names_that_would_widen_the_acl():
    result = subprocess.run([sys.executable, str(ROOT / "packaging/mosquitto/render.py"), "acl",
                             "--hub", "hub-1", "--store", "eu-west/#"],
                            capture_output=True, text=True)
    assert result.returncode != 0 and "bad store" in result.stderr
