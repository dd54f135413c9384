"""Poll one network printer: v1/v2c through ber.py on one UDP socket per loop, v3 through pysnmp.

A poll reads little: the status OIDs in one GET every poll, the supplies, trays, page counter and
alert table every `supplies_every` polls, and the identity once (again every `identity_every`
polls and after a reboot). The first poll learns the table rows with bounded walks; later polls
GET only the known rows. Every v1/v2c request (GET, and the walks' GETNEXT or GETBULK) goes
through ber.py, so a v1/v2c-only agent never imports pysnmp (~40 MB of RSS, and 1.5-2.5 ms of CPU
a request: docs/benchmarks.md); SNMPv3 goes through v3.py, imported on the first v3 device.
Errors are translated into DeviceError here and in v3.py.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import socket
import time
import weakref
from typing import Any

from edge_agent.collectors.base import Collector
from edge_agent.collectors.snmp import ber, oids, protocol
from edge_agent.collectors.snmp.config import problems
from edge_agent.errors import DeviceError, DeviceTimeout, ProtocolError
from edge_agent.reading import Reading

log = logging.getLogger(__name__)

# Varbinds in one GET: small enough for agents that only accept 484-byte messages.
MAX_VARBINDS = 20
# Rows one bulk request asks for, and the most varbinds a walk may return before it stops.
BULK_REPETITIONS = 25
WALK_LIMIT = {oids.HR_PRINTER_TABLE: 64, oids.PRINTER_MIB: 3000, oids.PRT_ALERT_TABLE: 200}
_NO_SUCH_NAME = 2


class UdpGets(asyncio.DatagramProtocol):
    """One UDP socket per event loop for the v1/v2c GETs of every printer (see ber.py)."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.pending: dict[int, tuple[tuple, asyncio.Future]] = {}
        self.users = 0
        self.next_id = int.from_bytes(os.urandom(3), "big")

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        try:
            request_id, status, index, varbinds = ber.decode_response(data)
        except ber.BerError:
            return  # Not an answer to us (or garbage): the request times out and retries.
        entry = self.pending.get(request_id)
        if entry is None or tuple(addr[:2]) != entry[0] or entry[1].done():
            return
        entry[1].set_result((status, index, varbinds))

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP errors on an unconnected socket: the request times out.

    async def get(self, addr: tuple, version: int, community: bytes, wanted: list[str],
                  timeout: float, retries: int, pdu_type: int = ber.GET_REQUEST,
                  repetitions: int = 0):
        """Send one request (resent `retries` times); return (status, index, [(oid, value)])."""
        self.next_id = (self.next_id + 1) % 0x7FFFFFFF
        request_id = self.next_id
        packet = ber.get_request(version, community, request_id, wanted, pdu_type, repetitions)
        future = asyncio.get_running_loop().create_future()
        self.pending[request_id] = (addr, future)
        try:
            for _ in range(retries + 1):
                self.transport.sendto(packet, addr)
                try:
                    return await asyncio.wait_for(asyncio.shield(future), timeout)
                except asyncio.TimeoutError:
                    continue
            return None
        finally:
            del self.pending[request_id]


_gets: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, UdpGets]" = weakref.WeakKeyDictionary()


async def acquire_gets() -> UdpGets:
    """Return this event loop's shared GET socket, opening it on first use."""
    loop = asyncio.get_running_loop()
    gets = _gets.get(loop)
    if gets is None or gets.transport is None or gets.transport.is_closing():
        _, gets = await loop.create_datagram_endpoint(UdpGets, local_addr=("0.0.0.0", 0))
        _gets[loop] = gets
    gets.users += 1
    return gets


def release_gets(gets: UdpGets) -> None:
    """Give back a reference; the last one closes the socket."""
    gets.users -= 1
    if gets.users <= 0 and gets.transport is not None:
        gets.transport.close()


def _oid_key(oid: str) -> tuple[int, ...] | None:
    try:
        return tuple(int(p) for p in oid.split("."))
    except (AttributeError, ValueError):
        return None


def take_walk_rows(root: str, after: str, varbinds: list, out: dict, limit: int) -> str | None:
    """Keep a walk answer's rows under `root` in `out`; return the OID to go on from, or None.

    The walk is over at the first OID outside the subtree, at one that does not come after the
    last (an agent going in circles, or v2c's endOfMibView repeating the asked OID), at an
    empty answer, or when `out` holds `limit` rows.
    """
    prefix = root + "."
    last = _oid_key(after)
    if last is None:
        return None
    for item in varbinds:
        try:
            name, value = item
        except (TypeError, ValueError):
            return None
        if not isinstance(name, str) or not name.startswith(prefix):
            return None
        key = _oid_key(name)
        if key is None or key <= last:
            return None
        if not (value is None or isinstance(value, (int, bytes, str))) or isinstance(value, bool):
            value = None  # Only plain values are kept (see protocol.RawValue).
        out[name], last, after = value, key, name
        if len(out) >= limit:
            return None
    return after if varbinds else None


def _keep_asked(asked: list[str], varbinds, out: dict) -> None:
    """Keep the answers to what was asked (an OID left unanswered is None) and nothing else."""
    # So a confused or hostile agent cannot grow what the collector holds.
    wanted = set(asked)
    for oid in asked:
        out[oid] = None
    for name, value in varbinds:
        if name in wanted:
            out[name] = value


class SnmpCollector(Collector):
    """One network printer."""

    kind = "snmp"

    def __init__(self, device):
        super().__init__(device)
        self._invalid = "; ".join(str(p) for p in problems(self.options))
        self._layout: protocol.Layout | None = None
        self._raw: dict[str, protocol.RawValue] = {}
        self._alerts: dict = {}
        self._polls = 0  # good polls since the layout was learned
        # What the last learn found: the OIDs worth asking (those the printer answered) and the
        # values that only change when the rows are learned again or the supplies are read.
        self._status_oids: list[str] = []
        self._supply_oids: list[str] = []
        self._identity: dict = {}
        self._supplies: dict = {}
        self._uptime: tuple[int, float] | None = None  # (ticks, time.monotonic())
        self._v3: Any = None  # a v3.Session (pysnmp) for SNMPv3 devices
        self._gets: UdpGets | None = None  # the loop's socket, for v1/v2c devices
        self._addr: tuple | None = None  # resolved (ip, port) for v1/v2c
        self._trends = protocol.Trends()
        self._rates: dict = {}

    @property
    def _where(self) -> str:
        return f"{self.options.host}:{self.options.port}"

    async def open(self) -> None:
        """For SNMPv3, import pysnmp (on a thread) and build the credentials; no network I/O."""
        if self._invalid or self.options.version != "3" or self._v3 is not None:
            return
        try:
            module = await asyncio.to_thread(importlib.import_module,
                                             "edge_agent.collectors.snmp.v3")
        except ImportError as err:
            raise DeviceError(f"SNMPv3 needs pysnmp, which cannot be imported: {err}") from err
        self._v3 = module.Session(self.options, self._where, self._fail)

    async def close(self) -> None:
        """Give the engine and the socket back; safe to call twice."""
        if self._v3 is not None:
            self._v3.close()
            self._v3 = None
        if self._gets is not None:
            release_gets(self._gets)
            self._gets = None
        self._addr = None

    async def poll(self) -> Reading:
        """Read what is due this poll; a printer that does not answer gives a stale reading."""
        started = time.monotonic()
        if self._invalid:
            return self.stale(self._invalid, {"device.status": "unknown"})
        try:
            await self._connect()
            if self._relearn_due():
                await self._learn()
            else:
                await self._refresh()
        except DeviceTimeout as err:
            return self.stale(str(err), {"device.status": "offline"})
        except DeviceError as err:
            return self.stale(str(err), {"device.status": "unknown"})
        self._polls += 1
        values = dict(self._identity)
        values.update(protocol.status(self._raw, self._layout))
        values.update(self._supplies)
        if self._layout.printer_mib:
            values.update(self._alerts)
        values.update(self._rates)
        values.update(self._trends.count(values))
        return self.ok(values, started)

    async def _connect(self) -> None:
        """Resolve the printer's address and take the loop's socket (or pysnmp target), once."""
        o = self.options
        if o.version == "3":
            if self._v3 is None:
                await self.open()
            await self._v3.connect()
            return
        if self._addr is None:
            try:
                infos = await asyncio.get_running_loop().getaddrinfo(
                    o.host, o.port, family=socket.AF_INET, type=socket.SOCK_DGRAM)
            except OSError as err:
                raise DeviceError(f"cannot resolve {o.host!r}: {err}") from err
            self._addr = tuple(infos[0][4][:2])
        if self._gets is None:
            self._gets = await acquire_gets()

    def _relearn_due(self) -> bool:
        every = self.options.identity_every
        return self._layout is None or (every > 0 and self._polls >= every)

    async def _learn(self) -> None:
        """Read the identity and learn the rows with bounded walks (first poll, then rarely)."""
        identity = [*oids.IDENTITY, f"{oids.HR_DEVICE_DESCR}.1", f"{oids.HR_DEVICE_STATUS}.1"]
        raw = await self._get(identity)
        raw.update(await self._walk(oids.HR_PRINTER_TABLE))
        raw.update(await self._walk(oids.PRINTER_MIB))
        layout = protocol.learn(raw)
        extra = [o for o in layout.status_oids() if o not in raw]
        if layout.hr_index is not None:
            extra += [o for o in (f"{oids.HR_DEVICE_DESCR}.{layout.hr_index}",) if o not in raw]
        raw.update(await self._get(extra))
        self._raw, self._layout, self._polls = raw, layout, 0
        # A printer does not start answering an OID it lacked at learn time (a new cartridge
        # or firmware comes with a re-learn): asking only for what it answered keeps each
        # request small. sysUpTime stays: it is how a poll knows the printer is there.
        self._status_oids = [o for o in layout.status_oids()
                             if o == oids.SYS_UPTIME or raw.get(o) is not None]
        self._supply_oids = [o for o in layout.supply_oids() if raw.get(o) is not None]
        self._identity = protocol.identity(raw, layout)
        self._supplies = protocol.supplies(raw, layout) if self._has_rows(layout) else {}
        self._alerts = protocol.alerts(raw)
        self._note_uptime(raw.get(oids.SYS_UPTIME))
        log.info("snmp device learned", extra={
            "device": self.device.id, "hr_index": layout.hr_index,
            "printer_mib": layout.printer_mib, "supplies": len(layout.supplies),
            "trays": len(layout.trays), "varbinds": len(raw)})

    async def _refresh(self) -> None:
        """GET the status (and, when due, the supplies and alert table) of the known rows."""
        layout = self._layout
        supplies_due = self._polls % self.options.supplies_every == 0 and bool(
            self._supply_oids or layout.printer_mib)
        wanted = self._status_oids + (self._supply_oids if supplies_due else [])
        got = await self._get(wanted)
        self._raw.update(got)
        if supplies_due:
            self._supplies = protocol.supplies(self._raw, layout)
            self._rates = self._trends.supply_values(time.monotonic(), self._supplies)
            if layout.printer_mib:
                self._alerts = protocol.alerts(await self._alert_rows())
        if self._note_uptime(got.get(oids.SYS_UPTIME)):
            log.info("snmp device rebooted; learning its rows again",
                     extra={"device": self.device.id})
            self._layout = None
            await self._learn()

    def _note_uptime(self, value: protocol.RawValue) -> bool:
        """Remember sysUpTime; return True when it says the printer rebooted since last time."""
        ticks = protocol.as_int(value)
        if ticks is None or ticks < 0:
            return False
        now = time.monotonic()
        before, self._uptime = self._uptime, (ticks, now)
        return before is not None and protocol.rebooted(before[0], ticks, now - before[1])

    @staticmethod
    def _has_rows(layout: protocol.Layout) -> bool:
        return bool(layout.supplies or layout.trays or layout.markers)

    async def _alert_rows(self) -> dict[str, protocol.RawValue]:
        """Walk the alert table only when one GETNEXT shows it has a row (it is usually empty)."""
        status, _, varbinds = await self._request([oids.PRT_ALERT_SEVERITY],
                                                  ber.GET_NEXT_REQUEST)
        if status or not varbinds or not isinstance(varbinds[0][0], str) \
                or not varbinds[0][0].startswith(oids.PRT_ALERT_SEVERITY + "."):
            return {}
        return await self._walk(oids.PRT_ALERT_TABLE)

    def _fail(self, indication: Any) -> DeviceError:
        text = str(indication)
        if "timeout" in text.lower() or "no snmp response" in text.lower():
            o = self.options
            return DeviceTimeout(f"no SNMP answer from {self._where} within {o.timeout:g} s "
                                 f"({o.retries} retries)")
        return DeviceError(f"SNMP error from {self._where}: {text}")

    async def _request(self, wanted: list[str], pdu_type: int = ber.GET_REQUEST,
                       repetitions: int = 0) -> tuple[int, int, list]:
        """One request, v3 through pysnmp, else through ber.py: (status, index, varbinds)."""
        if self._v3 is not None:
            return await self._v3.request(wanted, next_=pdu_type == ber.GET_NEXT_REQUEST)
        o = self.options
        try:
            answer = await self._gets.get(self._addr, 0 if o.version == "1" else 1,
                                          o.community.encode(), wanted, o.timeout, o.retries,
                                          pdu_type, repetitions)
        except (ber.BerError, OSError) as err:
            raise DeviceError(f"SNMP request to {self._where} failed: {err}") from err
        if answer is None:
            raise self._fail("timeout")
        return answer

    async def _get(self, wanted: list[str]) -> dict[str, protocol.RawValue]:
        """GET OIDs in chunks; a missing one is None (v1 agents refuse it: drop it, ask again)."""
        out: dict[str, protocol.RawValue] = {}
        for start in range(0, len(wanted), MAX_VARBINDS):
            pending = list(wanted[start:start + MAX_VARBINDS])
            while pending:
                status, index, varbinds = await self._request(pending)
                if status:
                    if status == _NO_SUCH_NAME and 0 < index <= len(pending):
                        out[pending.pop(index - 1)] = None
                        continue
                    raise ProtocolError(f"{self._where} answered error-status {status} "
                                        f"at varbind {index}")
                _keep_asked(pending, varbinds, out)
                break
        return out

    async def _walk(self, root: str) -> dict[str, protocol.RawValue]:
        """Walk one subtree, stopping at its end, at the bound, or on the first error."""
        limit = WALK_LIMIT.get(root, 500)
        if self._v3 is not None:
            out, bounded = await self._v3.walk(root, limit, BULK_REPETITIONS)
        else:
            out = {}
            after: str | None = root
            v1 = self.options.version == "1"
            # Every answer the walk goes on from adds a row, so limit + 1 requests end it.
            for _ in range(limit + 1):
                status, _, varbinds = await self._request(
                    [after], ber.GET_NEXT_REQUEST if v1 else ber.GET_BULK_REQUEST,
                    0 if v1 else BULK_REPETITIONS)
                if status:
                    break  # v1 ends a walk with noSuchName; anything else ends it too.
                after = take_walk_rows(root, after, varbinds, out, limit)
                if after is None:
                    break
            bounded = len(out) >= limit
        if bounded:
            log.warning("snmp walk stopped at its bound",
                        extra={"device": self.device.id, "root": root, "limit": limit})
        return out
