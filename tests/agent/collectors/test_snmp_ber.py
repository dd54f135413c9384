"""The v1/v2c GET codec, checked against pysnmp's own encoder and decoder as the reference."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st
from pyasn1.codec.ber import decoder, encoder
from pysnmp.proto import api, rfc1902

from edge_agent.collectors.snmp import ber
from edge_agent.collectors.snmp.v3 import plain

V2C = api.PROTOCOL_MODULES[api.SNMP_VERSION_2C]
V1 = api.PROTOCOL_MODULES[api.SNMP_VERSION_1]

oids = st.builds(lambda a, b, rest: ".".join(str(x) for x in [a, b, *rest]),
                 st.integers(0, 2), st.integers(0, 39),
                 st.lists(st.integers(0, 2 ** 32 - 1), max_size=14))


def values():
    """Every value a v2c GET response may carry, as pysnmp objects."""
    return st.one_of(
        st.integers(-2 ** 31, 2 ** 31 - 1).map(rfc1902.Integer32),
        st.binary(max_size=300).map(rfc1902.OctetString),
        st.integers(0, 2 ** 32 - 1).map(rfc1902.Counter32),
        st.integers(0, 2 ** 32 - 1).map(rfc1902.Gauge32),
        st.integers(0, 2 ** 32 - 1).map(rfc1902.TimeTicks),
        st.integers(0, 2 ** 64 - 1).map(rfc1902.Counter64),
        st.binary(min_size=4, max_size=4).map(rfc1902.IpAddress),
        oids.map(rfc1902.ObjectName),
        st.sampled_from([V2C.Null(""), V2C.NoSuchObject(""), V2C.NoSuchInstance(""),
                         V2C.EndOfMibView("")]),
    )


def response(module, request_id, varbinds, status=0, index=0, community="public") -> bytes:
    pdu = module.GetResponsePDU()
    module.apiPDU.set_defaults(pdu)
    module.apiPDU.set_request_id(pdu, request_id)
    module.apiPDU.set_error_status(pdu, status)
    module.apiPDU.set_error_index(pdu, index)
    module.apiPDU.set_varbinds(pdu, varbinds)
    message = module.Message()
    module.apiMessage.set_defaults(message)
    module.apiMessage.set_community(message, community)
    module.apiMessage.set_pdu(message, pdu)
    return encoder.encode(message)


@settings(max_examples=150)
@given(st.integers(0, 2 ** 31 - 1), st.binary(min_size=1, max_size=40),
       st.lists(oids, min_size=1, max_size=20), st.sampled_from([0, 1]))
def test_a_get_request_decodes_with_pysnmp_to_what_was_asked(request_id, community, asked,
                                                             version):
    module = V1 if version == 0 else V2C
    packet = ber.get_request(version, community, request_id, asked)
    message, rest = decoder.decode(packet, asn1Spec=module.Message())
    assert rest == b""
    assert int(message["version"]) == version
    assert bytes(message["community"]) == community
    pdu = module.apiMessage.get_pdu(message)
    assert int(module.apiPDU.get_request_id(pdu)) == request_id
    assert [str(name) for name, _ in module.apiPDU.get_varbinds(pdu)] == asked


@settings(max_examples=200)
@given(st.integers(0, 2 ** 31 - 1), st.lists(st.tuples(oids, values()), max_size=12))
def test_a_response_encoded_by_pysnmp_decodes_to_the_same_plain_values(request_id, varbinds):
    data = response(V2C, request_id, varbinds)
    got_id, status, index, got = ber.decode_response(data)
    assert (got_id, status, index) == (request_id, 0, 0)
    assert got == [(oid, plain(value)) for oid, value in varbinds]


def test_a_v1_no_such_name_error_is_decoded_with_its_index():
    data = response(V1, 7, [("1.3.6.1.2.1.1.3.0", V1.Null(""))], status=2, index=1)
    assert ber.decode_response(data)[:3] == (7, 2, 1)


@given(st.binary(max_size=200))
def test_any_bytes_either_decode_or_raise_ber_error(data):
    try:
        ber.decode_response(data)
    except ber.BerError:
        pass


@given(st.lists(st.tuples(oids, values()), min_size=1, max_size=4), st.data())
def test_a_damaged_response_either_decodes_or_raises_ber_error(varbinds, data):
    packet = bytearray(response(V2C, 1, varbinds))
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(packet) - 1))
        packet[at] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(packet)))
    try:
        ber.decode_response(bytes(packet[:cut]))
    except ber.BerError:
        pass


BAD = {
    "a GetRequest is not a response": ber.get_request(1, b"public", 1, ["1.3.6.1.2.1.1.3.0"]),
    "an SNMPv3 message is refused": bytes.fromhex("300602010304014a"),
    "an empty datagram": b"",
    "a length running past the end": bytes.fromhex("3064020101"),
}


@pytest.mark.parametrize("data", BAD.values(), ids=BAD.keys())
def test_what_is_not_a_v1_or_v2c_response_is_refused(data):
    with pytest.raises(ber.BerError):
        ber.decode_response(data)
