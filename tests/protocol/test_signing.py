"""edge_protocol.signing and hub.keys: canonical bytes, Ed25519, key ids, rotation, the key ring."""

from __future__ import annotations

import json
import os
import stat

import pytest

from edge_protocol import signing
from edge_protocol.errors import ProtocolError, SignatureError
from hub.keys import KeyRing, KeyringError


def trusted(ring: KeyRing) -> dict[str, bytes]:
    return signing.trusted_keys(ring.public_keys().values())


def test_canonical_is_sorted_compact_utf8_and_refuses_floats():
    assert signing.canonical({"b": 1, "a": ["é", True, None]}) == \
        '{"a":["é",true,null],"b":1}'.encode()
    with pytest.raises(ValueError):
        signing.canonical({"x": 1.5})
    with pytest.raises(ValueError):
        signing.canonical({1: "non-string key"})


def test_a_ring_signs_and_verify_accepts_only_the_exact_bytes(tmp_path):
    ring = KeyRing.init(tmp_path / "keys")
    sig = ring.sign(b"hello")
    assert set(sig) == {"kid", "sig"} and sig["kid"] == ring.current
    signing.verify(b"hello", sig, trusted(ring))
    with pytest.raises(SignatureError) as err:
        signing.verify(b"hellO", sig, trusted(ring))
    assert err.value.code == "bad_signature" and isinstance(err.value, ProtocolError)
    other = KeyRing.init(tmp_path / "other")
    with pytest.raises(SignatureError) as err:
        signing.verify(b"hello", other.sign(b"hello"), trusted(ring))
    assert err.value.code == "unknown_key"
    # A forged signature under a trusted kid: 64 bytes that are not the signature.
    forged = {"kid": sig["kid"], "sig": signing.b64url(bytes(64))}
    with pytest.raises(SignatureError):
        signing.verify(b"hello", forged, trusted(ring))
    for bad in ({}, {"kid": sig["kid"]}, {"kid": "zz", "sig": sig["sig"]},
                {"kid": sig["kid"], "sig": "!!"}, "not a dict"):
        with pytest.raises(SignatureError):
            signing.verify(b"hello", bad, trusted(ring))


def test_private_key_is_0600_and_never_overwritten(tmp_path):
    ring = KeyRing.init(tmp_path / "k")
    pem = tmp_path / "k" / f"key-{ring.current}.pem"
    assert stat.S_IMODE(pem.stat().st_mode) == 0o600
    with pytest.raises(KeyringError):
        KeyRing.init(tmp_path / "k")
    os.chmod(pem, 0o644)
    with pytest.raises(KeyringError, match="readable by others"):
        KeyRing.load(tmp_path / "k")


def test_a_passphrase_encrypts_the_key(tmp_path):
    ring = KeyRing.init(tmp_path / "k", passphrase=b"correct horse")
    pem = (tmp_path / "k" / f"key-{ring.current}.pem").read_bytes()
    assert b"ENCRYPTED" in pem
    with pytest.raises(KeyringError, match="passphrase"):
        KeyRing.load(tmp_path / "k")
    with pytest.raises(KeyringError, match="passphrase"):
        KeyRing.load(tmp_path / "k", passphrase=b"wrong")
    again = KeyRing.load(tmp_path / "k", passphrase=b"correct horse")
    signing.verify(b"x", again.sign(b"x"), trusted(ring))


def test_rotation_keeps_both_keys_and_an_old_pin_follows_the_statement(tmp_path):
    ring = KeyRing.init(tmp_path / "k")
    pinned = trusted(ring)  # what an agent has in [trust]
    old = ring.current
    statement = ring.rotate()
    assert ring.current != old and set(ring.public_keys()) == {old, ring.current}
    reloaded = KeyRing.load(tmp_path / "k")
    assert reloaded.current == ring.current
    doc = reloaded.sign_document({"type": "x", "n": 1})
    assert doc["kid"] == ring.current and doc["endorse"] == [statement]
    with pytest.raises(SignatureError):
        signing.verify_document(doc, pinned)
    extended = signing.extend_trust(pinned, doc["endorse"])
    assert signing.verify_document(doc, extended) == ring.current
    # A statement endorsing an attacker's key, signed by a key nobody trusts, adds nothing.
    attacker = KeyRing.init(tmp_path / "evil")
    attacker.rotate()
    assert signing.extend_trust(pinned, attacker.rotations) == pinned
    # Tampering with the endorsed public key breaks the statement.
    bad = dict(statement, public=attacker.public_keys()[attacker.current])
    assert signing.extend_trust(pinned, [bad]) == pinned


def test_documents_cover_every_field_but_sig(tmp_path):
    ring = KeyRing.init(tmp_path / "k")
    doc = ring.sign_document({"type": "command", "store": "s1", "seq": 3})
    assert signing.verify_document(doc, trusted(ring)) == ring.current
    for field, value in (("store", "s2"), ("seq", 4), ("kid", "0" * 16)):
        with pytest.raises(SignatureError):
            signing.verify_document(dict(doc, **{field: value}), trusted(ring))
    with pytest.raises(SignatureError):
        signing.verify_document(dict(doc, extra=True), trusted(ring))


def test_ring_json_holds_no_private_key(tmp_path):
    ring = KeyRing.init(tmp_path / "k")
    text = (tmp_path / "k" / "ring.json").read_text()
    assert "PRIVATE" not in text
    meta = json.loads(text)
    assert meta["current"] == ring.current and "public" in meta["keys"][ring.current]


def test_keys_cli_init_show_rotate(tmp_path, cli):
    folder = str(tmp_path / "keys")
    r = cli("keys", "init", "--dir", folder, module="hub")
    assert r.returncode == 0, r.stderr
    r = cli("keys", "init", "--dir", folder, module="hub")
    assert r.returncode == 1 and "already" in r.stderr and "Traceback" not in r.stderr
    r = cli("keys", "show", "--dir", folder, "--json", module="hub")
    first = json.loads(r.stdout)
    assert len(first["keys"]) == 1 and first["trust_toml"].startswith("[trust]")
    r = cli("keys", "rotate", "--dir", folder, module="hub")
    assert r.returncode == 0, r.stderr
    shown = json.loads(cli("keys", "show", "--dir", folder, "--json", module="hub").stdout)
    assert len(shown["keys"]) == 2 and sum(k["current"] for k in shown["keys"]) == 1
    r = cli("keys", "show", "--dir", str(tmp_path / "none"), module="hub")
    assert r.returncode == 1 and "keys init" in r.stderr


def test_check_config_checks_the_pinned_hub_keys(tmp_path, cli):
    ring = KeyRing.init(tmp_path / "k")
    key = next(iter(ring.public_keys().values()))
    config = tmp_path / "agent.toml"
    base = f'[agent]\nstore = "s1"\nstate_dir = "{tmp_path}/s"\n[trust]\n'
    config.write_text(base + f'hub_keys = ["{key}"]\n')
    r = cli("check-config", str(config))
    assert r.returncode == 0 and f"trusts 1 hub key(s): {ring.current}" in r.stdout
    config.write_text(base + 'hub_keys = ["c2hvcnQ="]\n')
    r = cli("check-config", str(config))
    assert r.returncode == 2 and "trust.hub_keys" in r.stderr and "32 bytes" in r.stderr
    assert "Traceback" not in r.stderr
    config.write_text(base + "hub_keys = []\n")
    r = cli("check-config", str(config))
    assert r.returncode == 0 and "no hub key pinned" in r.stdout


def test_verify_takes_the_ring_s_base64_public_keys_too(tmp_path):
    """The audit checkpoints' verifier passes KeyRing.public_keys() (base64) as it is."""
    ring = KeyRing.init(tmp_path / "k", passphrase=b"pw")
    signing.verify(b"x", ring.sign(b"x"), ring.public_keys())
    assert KeyRing.load_public(tmp_path / "k") == ring.public_keys()  # no passphrase needed
    with pytest.raises(SignatureError):
        signing.verify(b"y", ring.sign(b"x"), ring.public_keys())
    with pytest.raises(KeyringError):
        KeyRing.load_public(tmp_path / "none")
