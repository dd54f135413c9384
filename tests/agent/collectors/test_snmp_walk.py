"""v1/v2c walks through ber.py against hostile agents: whatever comes back, a poll ends in a reading."""

from __future__ import annotations

import asyncio
import dataclasses

from hypothesis import HealthCheck, given, settings, strategies as st

from edge_agent.collectors import device_from_url, snmp
from edge_agent.collectors.snmp import ber, oids
from edge_agent.collectors.snmp.collector import WALK_LIMIT, UdpGets, take_walk_rows
from edge_agent.reading import validate

ROOTS = [oids.HR_PRINTER_TABLE, oids.PRINTER_MIB, oids.PRT_ALERT_TABLE, oids.SYS_UPTIME,
         f"{oids.PRT_SUPPLY_LEVEL}.1", "1.3.6.1.2.1.25.3.5", "1.3.6.1.2.1.44"]

names = st.builds(lambda root, rest: ".".join([root, *map(str, rest)]), st.sampled_from(ROOTS),
                  st.lists(st.integers(0, 2 ** 32 - 1), max_size=4))
values = st.one_of(st.none(), st.integers(-2 ** 31, 2 ** 31 - 1), st.binary(max_size=40),
                   names)
varbinds = st.lists(st.tuples(names, values), max_size=30)


def _value(value) -> bytes:
    if value is None:
        return b"\x82\x00"  # endOfMibView
    if isinstance(value, int):
        return ber._integer(value)
    if isinstance(value, bytes):
        return ber._tlv(0x04, value)
    return ber._tlv(0x06, ber.encode_oid(value))


def encode_response(version: int, request_id: int, rows, status: int = 0) -> bytes:
    body = b"".join(ber._tlv(0x30, ber._tlv(0x06, ber.encode_oid(n)) + _value(v))
                    for n, v in rows)
    pdu = ber._tlv(ber.GET_RESPONSE, ber._integer(request_id) + ber._integer(status)
                   + ber._integer(0) + ber._tlv(0x30, body))
    return ber._tlv(0x30, ber._integer(version) + ber._tlv(0x04, b"public") + pdu)


def request_id(packet: bytes) -> tuple[int, int]:
    """(version, request id) of a request the collector sent."""
    start, end = ber._expect(packet, 0, len(packet), 0x30)
    s, e = ber._expect(packet, start, end, 0x02)
    version = ber._int(packet[s:e])
    _, e = ber._expect(packet, e, end, 0x04)
    _, pdu_start, pdu_end = ber._read(packet, e, end)
    s, e = ber._expect(packet, pdu_start, pdu_end, 0x02)
    return version, ber._int(packet[s:e])


# One answer: rows (maybe with an error status, maybe damaged at one byte) or any bytes.
answers = st.one_of(
    st.tuples(st.just("rows"), varbinds, st.sampled_from([0, 0, 0, 1, 2, 5]),
              st.none() | st.tuples(st.integers(0, 2000), st.integers(0, 255))),
    st.tuples(st.just("bytes"), st.binary(max_size=120), st.just(0), st.none()))


class HostileAgent(asyncio.DatagramProtocol):
    """A real UDP agent that answers request n with answers[n % len(answers)], forever."""

    def __init__(self, script) -> None:
        self.script, self.requests = script, 0

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        kind, payload, status, damage = self.script[self.requests % len(self.script)]
        self.requests += 1
        if kind == "bytes":
            self.transport.sendto(payload, addr)
            return
        version, rid = request_id(data)
        packet = bytearray(encode_response(version, rid, payload, status))
        if damage is not None and packet:
            packet[damage[0] % len(packet)] = damage[1]
        self.transport.sendto(bytes(packet), addr)


async def poll_hostile(script, polls: int, **options):
    """Poll a HostileAgent on a free port `polls` times: (readings, requests it got, collector)."""
    loop = asyncio.get_running_loop()
    transport, agent = await loop.create_datagram_endpoint(
        lambda: HostileAgent(script), local_addr=("127.0.0.1", 0))
    port = transport.get_extra_info("sockname")[1]
    device = device_from_url(f"snmp://public@127.0.0.1:{port}", id="hostile")
    device = dataclasses.replace(device, options=dataclasses.replace(device.options, **options))
    collector = snmp.create(device)
    await collector.open()
    try:
        readings = [await collector.poll() for _ in range(polls)]
    finally:
        await collector.close()
        transport.close()
    return readings, agent.requests, collector


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(answers, min_size=1, max_size=6), st.sampled_from(["1", "2c"]))
def test_a_hostile_or_broken_agent_never_makes_a_poll_raise_and_walks_stay_bounded(script,
                                                                                  version):
    readings, requests, collector = asyncio.run(
        poll_hostile(script, 2, version=version, timeout=0.05, retries=0))
    for reading in readings:
        assert validate(reading) == [], reading
    # Two polls: at most the identity GETs, two walks (each within its row bound plus one
    # request) and the GETs of what was learned; the alert walk is within its own bound.
    limits = sum(WALK_LIMIT.values()) + 3
    assert requests <= 2 * (limits + 10)
    assert len(collector._raw) <= limits + 40


@given(st.sampled_from(ROOTS), varbinds, st.integers(1, 40))
def test_walk_rows_are_kept_only_under_the_root_in_increasing_order_and_within_the_bound(
        root, rows, limit):
    out: dict = {}
    after = take_walk_rows(root, root, rows, out, limit)
    keys = [tuple(int(p) for p in k.split(".")) for k in out]
    assert all(k.startswith(root + ".") for k in out)
    assert keys == sorted(set(keys))
    assert len(out) <= limit
    assert after is None or after == list(out)[-1]


@given(st.binary(max_size=300))
def test_any_datagram_on_the_walk_socket_is_dropped_or_answers_a_request_without_raising(data):
    gets = UdpGets()
    gets.datagram_received(data, ("127.0.0.1", 1))
    assert gets.pending == {}


@given(st.sampled_from(ROOTS), varbinds, st.integers(0, 255), st.integers(0, 255))
def test_a_damaged_walk_answer_decodes_to_rows_the_walk_can_take_or_is_refused(root, rows,
                                                                             where, byte):
    packet = bytearray(encode_response(1, 7, rows))
    packet[where % len(packet)] = byte
    try:
        _, _, _, decoded = ber.decode_response(bytes(packet))
    except ber.BerError:
        return
    out: dict = {}
    take_walk_rows(root, root, decoded, out, 25)
    assert all(v is None or isinstance(v, (int, bytes, str)) for v in out.values())


def test_a_getbulk_request_is_refused_for_snmpv1():
    try:
        ber.get_request(0, b"public", 1, [oids.PRINTER_MIB], ber.GET_BULK_REQUEST, 25)
    except ber.BerError:
        return
    raise AssertionError("a v1 GETBULK was encoded")


def test_an_agent_that_answers_every_walk_with_the_same_row_ends_the_walk_at_once():
    row = (f"{oids.PRT_SUPPLY_LEVEL}.1.1", 50)
    script = [("rows", [row], 0, None)]

    (reading,), requests, _ = asyncio.run(poll_hostile(script, 1, timeout=0.5, retries=0))
    assert validate(reading) == [] and not reading.stale, reading.reason
    # Identity GET, hrPrinterTable walk (row outside it: over), Printer-MIB walk (the row,
    # then the same row again: over), then one GET of the status OIDs.
    assert requests <= 6
