"""edge_protocol.commands: the checks a command goes through, in their order, and the
allow-list's argument schemas (every shell metacharacter refused where text is allowed)."""

from __future__ import annotations

import json
import time

import pytest
from hypothesis import given, settings, strategies as st

from controlkit import forge, signed_command
from edge_agent.config import ControlSection
from edge_protocol import commands as proto
from edge_protocol import signing
from hub.keys import KeyRing


@pytest.fixture(scope="module")
def ring(tmp_path_factory):
    return KeyRing.init(tmp_path_factory.mktemp("k") / "keys")


def check(ring, doc, store="store-0001", now=None):
    trusted = signing.trusted_keys(ring.public_keys().values())
    data = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    return proto.check_command(data, store=store, trusted=trusted,
                               now=time.time() if now is None else now)


def code(ring, doc, **kw) -> str:
    with pytest.raises(proto.CommandError) as err:
        check(ring, doc, **kw)
    return err.value.code


def test_the_signature_is_checked_before_store_and_expiry(ring):
    old = time.time() - 1000
    expired_elsewhere = signed_command(ring, store="store-0002", seq=1, issued=old,
                                       expires=old + 10)
    assert code(ring, forge(expired_elsewhere)) == "bad_signature"
    assert code(ring, expired_elsewhere) == "wrong_store"
    assert code(ring, signed_command(ring, seq=1, issued=old, expires=old + 10)) == "expired"
    future = time.time() + 3600
    assert code(ring, signed_command(ring, seq=1, issued=future)) == "not_yet_valid"
    ok = check(ring, signed_command(ring, seq=7, args={"text": "hi"}))
    assert ok.seq == 7 and ok.store == "store-0001"


def test_shape_errors_come_first(ring):
    assert code(ring, b"x" * (proto.MAX_COMMAND_BYTES + 1)) == "oversized"
    assert code(ring, b"{not json") == "not_json"
    assert code(ring, b"[]") == "bad_message"
    assert code(ring, {"v": 2, "type": "command"}) == "bad_message"
    doc = signed_command(ring, seq=1)
    assert code(ring, {k: v for k, v in doc.items() if k != "sig"}) == "bad_signature"
    # Fields the signature covers cannot be changed, including the endorsement-free kid.
    assert code(ring, dict(doc, seq=2)) == "bad_signature"
    assert code(ring, dict(doc, kid="0" * 16)) == "unknown_key"


@pytest.mark.parametrize("text", [
    "a;b", "$(id)", "`id`", "a|b", "a&b", "a>b", "a<b", "x\ny", "'q'", '"q"', "a\\b", "~root",
    "*", "?", "{a,b}", "!1", "a\x00b", "é", "%n",
])
def test_shell_metacharacters_in_text_are_refused(text):
    with pytest.raises(proto.CommandError) as err:
        proto.check_action("test_print", "p1", {"text": text})
    assert err.value.code == "bad_args"


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60))
def test_whatever_text_passes_the_schema_has_no_shell_metacharacter(text):
    try:
        proto.check_action("test_print", "p1", {"text": text})
    except proto.CommandError:
        return
    assert not set(text) & set(";&|$`<>\\\"'(){}[]*?~!\n\r\t\x00%=")
    assert len(text) <= 40


def test_arguments_are_bounded_and_typed():
    ok = proto.check_action("recover", "p1", {"clear_buffer": True})
    assert ok.name == "recover"
    for action, device, args, want in (
            ("recover", "p1", {"clear_buffer": "yes"}, "bad_args"),
            ("recover", "p1", {"unknown": 1}, "bad_args"),
            ("test_print", "p1", {f"k{i}": 1 for i in range(9)}, "args_too_large"),
            ("test_print", "p1", {"text": "A" * 600}, "args_too_large"),
            ("test_print", "p1", {"force": 1}, "bad_args"),
            ("repoll", None, {}, "bad_args"),
            ("repoll", "../etc", {}, "bad_args"),
            ("reload_config", "p1", {}, "bad_args"),
            ("sh", None, {}, "unknown_action"),
            ({"a": 1}, None, {}, "unknown_action")):
        with pytest.raises(proto.CommandError) as err:
            proto.check_action(action, device, args)
        assert err.value.code == want, (action, args)


def test_trading_hours_cover_midnight_and_empty_means_never():
    day = ControlSection(trading_hours="08:00-21:00")
    assert day.trading(8 * 60) and day.trading(20 * 60 + 59) and not day.trading(21 * 60)
    night = ControlSection(trading_hours="22:00-06:00")
    assert night.trading(23 * 60) and night.trading(60) and not night.trading(12 * 60)
    assert not ControlSection().trading(12 * 60)
    assert ControlSection(trading_hours="00:00-24:00").trading(0)


def test_a_command_signed_by_a_rotated_key_verifies_through_its_endorsement(tmp_path):
    ring = KeyRing.init(tmp_path / "k")
    pinned = signing.trusted_keys(ring.public_keys().values())
    ring.rotate()
    doc = signed_command(ring, seq=1)
    assert "endorse" in doc
    cmd = proto.check_command(json.dumps(doc).encode(), store="store-0001", trusted=pinned,
                              now=time.time())
    assert cmd.kid == ring.current
    # Without the endorsement the new key is unknown to an agent pinning only the old one.
    bare = {k: v for k, v in doc.items() if k != "endorse"}
    with pytest.raises(proto.CommandError) as err:
        proto.check_command(json.dumps(bare).encode(), store="store-0001", trusted=pinned,
                            now=time.time())
    assert err.value.code == "unknown_key"
