"""Poll one network printer: pysnmp's asyncio hlapi (one SnmpEngine per loop) plus a fast GET path.

A poll reads little: the status OIDs in one GET every poll, the supplies, trays, page counter and
alert table every `supplies_every` polls, and the identity once (again every `identity_every`
polls and after a reboot). The first poll learns the table rows with bounded walks; later polls
GET only the known rows. Walks, SNMPv3 and the first poll go through pysnmp; the steady-state
v1/v2c GETs go through ber.py on one UDP socket per loop, because pysnmp's general machinery
costs 1.5-2.5 ms of CPU a request (docs/benchmarks.md). Library errors are translated into
DeviceError here, at one boundary.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import weakref
from pathlib import Path
from typing import Any

from pysnmp.hlapi.v3arch import asyncio as hlapi
from pyasn1.type import univ

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

_AUTH = {"NONE": hlapi.USM_AUTH_NONE, "MD5": hlapi.USM_AUTH_HMAC96_MD5,
         "SHA": hlapi.USM_AUTH_HMAC96_SHA, "SHA224": hlapi.USM_AUTH_HMAC128_SHA224,
         "SHA256": hlapi.USM_AUTH_HMAC192_SHA256, "SHA384": hlapi.USM_AUTH_HMAC256_SHA384,
         "SHA512": hlapi.USM_AUTH_HMAC384_SHA512}
_PRIV = {"NONE": hlapi.USM_PRIV_NONE, "DES": hlapi.USM_PRIV_CBC56_DES,
         "3DES": hlapi.USM_PRIV_CBC168_3DES, "AES": hlapi.USM_PRIV_CFB128_AES,
         "AES192": hlapi.USM_PRIV_CFB192_AES, "AES256": hlapi.USM_PRIV_CFB256_AES}

# One engine per event loop, shared by every SNMP device on it (pysnmp keeps one UDP socket
# and one dispatcher per engine); closed when the last device on that loop closes.
_engines: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, list]" = weakref.WeakKeyDictionary()


class _NoMibCompiler:
    """Stand in for pysmi's MIB compiler: OIDs here are numeric, no MIB is ever compiled.

    When pysmi is installed (snmpsim needs it), pysnmp builds its parser on the first request of
    every engine: 2-3 CPU-seconds and tens of MB for nothing, since lookupMib=False.
    """

    def compile(self, *names, **kwargs):
        return {name: "missing" for name in names}


def _numeric_mib_view():
    from pysnmp.smi import builder, view

    mib_builder = builder.MibBuilder()
    mib_builder.set_mib_compiler(_NoMibCompiler(), str(Path(builder.__file__).parent / "mibs"))
    return view.MibViewController(mib_builder)


def acquire_engine() -> hlapi.SnmpEngine:
    """Return this event loop's shared SnmpEngine, creating it on first use."""
    loop = asyncio.get_running_loop()
    entry = _engines.get(loop)
    if entry is None:
        engine = hlapi.SnmpEngine()
        # The key pysnmp's hlapi looks up (hlapi/varbinds.py, MibViewControllerManager).
        engine.cache["mibViewController"] = _numeric_mib_view()
        entry = _engines[loop] = [engine, 0]
    entry[1] += 1
    return entry[0]


def release_engine(engine: hlapi.SnmpEngine) -> None:
    """Give back a reference; the last one closes the engine's dispatcher."""
    for loop, entry in list(_engines.items()):
        if entry[0] is engine:
            entry[1] -= 1
            if entry[1] <= 0:
                del _engines[loop]
                with contextlib.suppress(Exception):
                    engine.close_dispatcher()
            return


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
                  timeout: float, retries: int, pdu_type: int = ber.GET_REQUEST):
        """Send one GET (resent `retries` times); return (status, index, [(oid, value)])."""
        self.next_id = (self.next_id + 1) % 0x7FFFFFFF
        request_id = self.next_id
        packet = ber.get_request(version, community, request_id, wanted, pdu_type)
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


def plain(value: Any) -> protocol.RawValue:
    """Turn a pysnmp value into int, bytes, str (an OID) or None (no such object, NULL)."""
    if value is None or isinstance(value, univ.Null):
        return None  # noSuchObject, noSuchInstance and endOfMibView are NULL subtypes.
    try:
        if not value.isValue:
            return None
        if isinstance(value, univ.ObjectIdentifier):
            return ".".join(str(x) for x in value.asTuple())
        if isinstance(value, univ.OctetString):
            return value.asOctets()
        if isinstance(value, univ.Integer):
            return int(value)
    except Exception:  # A value pysnmp decoded but cannot represent is simply absent.
        return None
    return None


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
        self._engine: hlapi.SnmpEngine | None = None
        self._auth: Any = None
        self._context: Any = None
        self._target: Any = None
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
        self._types: dict[str, Any] = {}
        self._gets: UdpGets | None = None
        self._addr: tuple | None = None  # resolved (ip, port) for the fast v1/v2c GETs

    @property
    def _where(self) -> str:
        return f"{self.options.host}:{self.options.port}"

    async def open(self) -> None:
        """Take the loop's engine and build the credentials; no network I/O."""
        if self._invalid or self._engine is not None:
            return
        o = self.options
        self._engine = acquire_engine()
        if o.version == "3":
            self._auth = hlapi.UsmUserData(
                o.user, o.auth_key or None, o.priv_key or None,
                authProtocol=_AUTH[o.auth],
                privProtocol=_PRIV[o.priv] if o.auth != "NONE" else hlapi.USM_PRIV_NONE)
        else:
            self._auth = hlapi.CommunityData(o.community, mpModel=0 if o.version == "1" else 1)
        self._context = hlapi.ContextData(contextName=o.context.encode()) if o.context \
            else hlapi.ContextData()

    async def close(self) -> None:
        """Give the engine and the socket back; safe to call twice."""
        if self._engine is not None:
            release_engine(self._engine)
            self._engine = None
        if self._gets is not None:
            release_gets(self._gets)
            self._gets = None
        self._target = self._addr = None

    async def poll(self) -> Reading:
        """Read what is due this poll; a printer that does not answer gives a stale reading."""
        started = time.monotonic()
        if self._invalid:
            return self.stale(self._invalid, {"device.status": "unknown"})
        if self._engine is None:
            await self.open()
        try:
            if self._target is None:
                self._target = await self._make_target()
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
        return self.ok(values, started)

    async def _make_target(self):
        o = self.options
        try:
            target = await hlapi.UdpTransportTarget.create((o.host, o.port), timeout=o.timeout,
                                                           retries=o.retries)
        except Exception as err:  # pysnmp wraps name-resolution failures in its own error
            raise DeviceError(f"cannot resolve {o.host!r}: {err}") from err
        if o.version != "3":
            try:
                infos = await asyncio.get_running_loop().getaddrinfo(
                    o.host, o.port, family=socket.AF_INET, type=socket.SOCK_DGRAM)
            except OSError as err:
                raise DeviceError(f"cannot resolve {o.host!r}: {err}") from err
            self._addr = tuple(infos[0][4][:2])
            if self._gets is None:
                self._gets = await acquire_gets()
        return target

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
        if self._gets is not None and self._addr is not None:
            o = self.options
            answer = await self._gets.get(self._addr, 0 if o.version == "1" else 1,
                                          o.community.encode(), [oids.PRT_ALERT_SEVERITY],
                                          o.timeout, o.retries, ber.GET_NEXT_REQUEST)
            if answer is None:
                raise self._fail("timeout")
            status, _, varbinds = answer
            if status or not varbinds or not varbinds[0][0].startswith(
                    oids.PRT_ALERT_SEVERITY + "."):
                return {}
            return await self._walk(oids.PRT_ALERT_TABLE)
        try:
            ei, es, _eidx, vbs = await hlapi.next_cmd(
                self._engine, self._auth, self._target, self._context,
                self._type(oids.PRT_ALERT_SEVERITY), lookupMib=False)
        except Exception as err:
            raise DeviceError(f"SNMP request to {self._where} failed: "
                              f"{type(err).__name__}: {err}") from err
        if ei:
            raise self._fail(ei)
        if es or not vbs or not str(vbs[0][0]).startswith(oids.PRT_ALERT_SEVERITY + "."):
            return {}
        return await self._walk(oids.PRT_ALERT_TABLE)

    def _type(self, oid: str):
        # A resolved ObjectType is reused: pysnmp skips resolving it again (a large CPU saving).
        t = self._types.get(oid)
        if t is None:
            if len(self._types) > 4096:
                self._types.clear()
            t = self._types[oid] = hlapi.ObjectType(hlapi.ObjectIdentity(oid))
        return t

    def _fail(self, indication: Any) -> DeviceError:
        text = str(indication)
        if "timeout" in text.lower() or "no snmp response" in text.lower():
            o = self.options
            return DeviceTimeout(f"no SNMP answer from {self._where} within {o.timeout:g} s "
                                 f"({o.retries} retries)")
        return DeviceError(f"SNMP error from {self._where}: {text}")

    async def _get(self, wanted: list[str]) -> dict[str, protocol.RawValue]:
        """GET OIDs in chunks; a missing one is None (v1 agents refuse it: drop it, ask again)."""
        out: dict[str, protocol.RawValue] = {}
        for start in range(0, len(wanted), MAX_VARBINDS):
            pending = list(wanted[start:start + MAX_VARBINDS])
            while pending:
                if self._gets is not None and self._addr is not None:
                    if await self._fast_get(pending, out):
                        break
                    continue
                try:
                    ei, es, eidx, vbs = await hlapi.get_cmd(
                        self._engine, self._auth, self._target, self._context,
                        *(self._type(o) for o in pending), lookupMib=False)
                except Exception as err:
                    raise DeviceError(f"SNMP request to {self._where} failed: "
                                      f"{type(err).__name__}: {err}") from err
                if ei:
                    raise self._fail(ei)
                if es:
                    index = int(eidx)
                    if int(es) == _NO_SUCH_NAME and 0 < index <= len(pending):
                        out[pending.pop(index - 1)] = None
                        continue
                    raise ProtocolError(f"{self._where} answered {es.prettyPrint()} "
                                        f"at varbind {index}")
                _keep_asked(pending, [(str(n), plain(v)) for n, v in vbs], out)
                break
        return out

    async def _fast_get(self, pending: list[str], out: dict) -> bool:
        """One v1/v2c GET through ber.py; False when an OID was dropped and must be asked again."""
        o = self.options
        try:
            answer = await self._gets.get(self._addr, 0 if o.version == "1" else 1,
                                          o.community.encode(), pending, o.timeout, o.retries)
        except (ber.BerError, OSError) as err:
            raise DeviceError(f"SNMP request to {self._where} failed: {err}") from err
        if answer is None:
            raise self._fail("timeout")
        status, index, varbinds = answer
        if status:
            if status == _NO_SUCH_NAME and 0 < index <= len(pending):
                out[pending.pop(index - 1)] = None
                return False
            raise ProtocolError(f"{self._where} answered error-status {status} "
                                f"at varbind {index}")
        _keep_asked(pending, varbinds, out)
        return True

    async def _walk(self, root: str) -> dict[str, protocol.RawValue]:
        """Walk one subtree, stopping at its end, at the bound, or on the first error."""
        limit = WALK_LIMIT.get(root, 500)
        out: dict[str, protocol.RawValue] = {}
        prefix = root + "."
        if self.options.version == "1":
            walker = hlapi.walk_cmd(self._engine, self._auth, self._target, self._context,
                                    self._type(root), lexicographicMode=False, lookupMib=False)
        else:
            walker = hlapi.bulk_walk_cmd(self._engine, self._auth, self._target, self._context,
                                         0, BULK_REPETITIONS, self._type(root),
                                         lexicographicMode=False, lookupMib=False)
        try:
            async with contextlib.aclosing(walker) as rows:
                async for ei, es, _eidx, vbs in rows:
                    if ei:
                        raise self._fail(ei)
                    if es:
                        break  # v1 ends a walk with noSuchName; anything else ends it too.
                    for name, value in vbs:
                        key = str(name)
                        if not key.startswith(prefix):
                            return out
                        out[key] = plain(value)
                    if len(out) >= limit:
                        log.warning("snmp walk stopped at its bound",
                                    extra={"device": self.device.id, "root": root,
                                           "limit": limit})
                        break
        except DeviceError:
            raise
        except Exception as err:
            raise DeviceError(f"SNMP walk of {root} on {self._where} failed: "
                              f"{type(err).__name__}: {err}") from err
        return out
