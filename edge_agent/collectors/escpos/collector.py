"""Poll an ESC/POS printer: flush, DLE EOT 1-4 one at a time, GS I once until a poll fails."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Callable

from edge_agent.collectors.base import Collector
from edge_agent.collectors.escpos import models, protocol
from edge_agent.collectors.escpos.transport import Transport, make_transport
from edge_agent.errors import DeviceError, DeviceTimeout, ProtocolError
from edge_agent.reading import Reading

log = logging.getLogger(__name__)

READ_MAX = 256  # Bytes read for one reply before we call it noise rather than an answer.
RECONNECT_AFTER_SILENT_POLLS = 3


class EscposCollector(Collector):
    """One receipt printer."""

    kind = "escpos"

    def __init__(self, device, transport_factory: Callable[[object], Transport] = make_transport):
        super().__init__(device)
        self.model = models.get(self.options.model)
        self.transport_factory = transport_factory
        self.transport: Transport | None = None
        # Asked once, and again after a failed poll (the printer may have been swapped).
        self.identity: dict[str, str] | None = None
        # Most network printers take one TCP client at a time: by default a TCP connection
        # lasts one poll, so the POS can print between polls. A serial or USB port stays open.
        connection = self.options.connection
        self.keep_open = connection == "kept" or (connection == "auto"
                                                  and self.options.transport != "tcp")
        self.flushed = 0   # stale bytes discarded before requests, since start
        self.garbage = 0   # bytes that fit no reply, since start
        self.silent_polls = 0
        # A poll and a remote command (test print, recovery) never share the port at once.
        self._io_lock = asyncio.Lock()
        # Maintenance counters (GS g 2): the last values read and when to read them next
        # (the first poll after start reads them).
        self.counters: dict[int, int] = {}
        self.counters_due = 0.0
        # Error onsets seen since start (counted on every poll, for the health features).
        self.events = {"printer.cutter_errors": 0, "printer.error_count": 0,
                       "printer.overheats": 0}
        self._was: dict[str, bool] = {}

    async def open(self) -> None:
        try:
            await self._connect()
        except DeviceError as err:
            # Not an error yet: the first poll reports it as a stale reading with the reason.
            log.info("printer not reachable at start", extra={"device": self.device.id,
                                                             "reason": str(err)})

    async def poll(self) -> Reading:
        async with self._io_lock:
            return await self._poll()

    async def send(self, data: bytes) -> None:
        """Write bytes between polls (edge_agent/control: test print, DLE ENQ recovery)."""
        async with self._io_lock:
            try:
                if self.transport is None or not self.transport.is_open:
                    await self._drop()
                    await self._connect()
                await self.transport.write(data)
            finally:
                if not self.keep_open:
                    await self._drop()

    async def _poll(self) -> Reading:
        started = time.monotonic()
        try:
            if self.transport is None or not self.transport.is_open:
                await self._drop()
                await self._connect()
            replies, asleep = await self._statuses()
            if self.options.identify and self.identity is None:
                self.identity = await self._identify()
        except DeviceTimeout as err:
            # A kept connection survives a few silences (a late reply is flushed before the
            # next request); after that it is reconnected, in case it is half-open.
            self.silent_polls += 1
            self.identity = None  # Whatever answers next may be another printer.
            if not self.keep_open or self.silent_polls >= RECONNECT_AFTER_SILENT_POLLS:
                await self._drop()
            return self.stale(str(err), {"device.status": "offline"})
        except DeviceError as err:
            self.identity = None
            await self._drop()
            return self.stale(str(err), {"device.status": "offline"})
        self.silent_polls = 0
        status = protocol.decode(replies, self.model.undefined)
        values = protocol.to_values(status, self.options.drawer_open_when)
        # The status poll is complete: its latency does not include the counters.
        values["poll.latency_ms"] = round((time.monotonic() - started) * 1000.0, 3)
        if asleep and values["device.status"] == "ok":
            values["device.status"] = "asleep"
        values.update(self.identity or {})
        self._count_events(values)
        if self._counters_due():
            values.update(await self._read_counters())
        if not self.keep_open:
            await self._drop()
        return self.ok(values)

    def _count_events(self, values: dict) -> None:
        """Count error onsets (a state that was not there at the previous poll)."""
        for name, now in (("printer.cutter_errors", values.get("printer.cutter") == "error"),
                          ("printer.error_count",
                           values.get("printer.error") in ("recoverable", "unrecoverable")),
                          ("printer.overheats", values.get("printer.overheat") is True)):
            if now and not self._was.get(name, False):
                self.events[name] += 1
            self._was[name] = now
        values.update(self.events)

    def _counters_due(self) -> bool:
        return bool(self.options.counters and self.model.counters
                    and time.monotonic() >= self.counters_due)

    async def _read_counters(self) -> dict:
        """Read the model's GS g 2 counters after the status poll; a silent, partial or garbled
        answer skips that counter (the status reading stands), and all are tried again at the
        next interval."""
        read: dict[int, int] = {}
        for n in self.model.counters:
            try:
                value = await self._ask_counter(n)
            except ProtocolError as err:
                log.debug("bad GS g 2 answer", extra={"device": self.device.id, "counter": n,
                                                      "reason": str(err)})
                continue
            except DeviceError as err:
                # Silent (or gone): the next counter will not be answered either.
                log.debug("no GS g 2 answer", extra={"device": self.device.id, "counter": n,
                                                     "reason": str(err)})
                break
            read[n] = value
        self.counters_due = time.monotonic() + (self.options.counters_interval if read
                                                else min(600.0, self.options.counters_interval))
        self.counters.update(read)
        return protocol.counter_values(read)

    async def _ask_counter(self, n: int) -> int:
        self.flushed += await self.transport.flush()
        await self.transport.write(protocol.counter_request(n))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.options.reply_timeout
        buf = b""
        while loop.time() < deadline:
            buf += await self.transport.read(deadline - loop.time())
            scan = protocol.find_counter_reply(buf)
            if scan.value is not None:
                return scan.value
            if scan.invalid or len(buf) > READ_MAX:
                self.garbage += len(buf)
                raise ProtocolError(f"GS g 2 {n}: reply is not 0x5F digits NUL "
                                    f"({buf[:16].hex()})")
        if buf:
            raise ProtocolError(f"GS g 2 {n}: partial reply ({buf[:16].hex()})")
        raise DeviceTimeout(f"no reply to GS g 2 {n}")

    async def close(self) -> None:
        await self._drop()

    async def _connect(self) -> None:
        transport = self.transport_factory(self.options)
        await transport.open(self.options.connect_timeout)
        self.transport = transport

    async def _drop(self) -> None:
        if self.transport is not None:
            transport, self.transport = self.transport, None
            try:
                await transport.close()
            except (DeviceError, OSError) as err:
                log.debug("close failed", extra={"device": self.device.id, "error": str(err)})

    async def _statuses(self) -> tuple[dict[int, int], bool]:
        """Ask each DLE EOT request of the model; wake a silent printer once if the model can."""
        asleep = False
        requests = self.model.requests
        try:
            first = await self._ask(requests[0])
        except DeviceTimeout as err:
            if not (self.options.wake and self.model.wake):
                raise
            await self.transport.write(self.model.wake)
            await asyncio.sleep(self.model.wake_delay_s)
            try:
                first = await self._ask(requests[0])
            except DeviceTimeout:
                raise DeviceTimeout(f"{err}, nor after the wake byte") from err
            asleep = True
        replies = {requests[0]: first}
        for n in requests[1:]:
            replies[n] = await self._ask(n)
        return replies, asleep

    async def _ask(self, n: int) -> int:
        """Send DLE EOT n and return its reply byte; raise DeviceTimeout or ProtocolError."""
        t = self.transport
        self.flushed += await t.flush()
        await t.write(protocol.status_request(n))
        timeout = self.options.reply_timeout
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        pending, garbage, seen = b"", 0, 0
        while True:
            chunk = await t.read(deadline - loop.time())
            if not chunk:
                if loop.time() < deadline:
                    continue
                self.garbage += garbage
                if garbage:
                    raise ProtocolError(f"no status reply to DLE EOT {n}: {garbage} byte(s) "
                                        "that fit no reply (wrong baud rate or model?)")
                raise DeviceTimeout(f"no reply to DLE EOT {n} within {timeout:g} s")
            seen += len(chunk)
            data = pending + chunk
            scan = protocol.find_status_reply(data)
            if scan.reply is not None:
                # A reply among bytes that fit no reply is noise that happens to look like one
                # (issue 15): the poll is stale, never a fresh reading of random states.
                garbage += scan.garbage + protocol.trailing_garbage(data[scan.used:])
                self.garbage += garbage
                if garbage:
                    raise ProtocolError(f"reply to DLE EOT {n} among {garbage} byte(s) that "
                                        "fit no reply (break the fixed bits of DLE EOT): "
                                        "not trusted (wrong baud rate, model or device?)")
                # Status bytes after the reply (late answers) are dropped by the next flush.
                return scan.reply
            garbage += scan.garbage
            pending = (pending + chunk)[scan.used:] if scan.need_more else b""
            if seen > READ_MAX:
                self.garbage += garbage
                raise ProtocolError(f"{seen} bytes after DLE EOT {n} and none a status reply")

    async def _identify(self) -> dict[str, str]:
        """Ask GS I for model and firmware; a printer that does not answer simply has none."""
        found: dict[str, str] = {}
        try:
            if self.model.gs_i_text:
                for n, name in ((protocol.GS_I_MODEL, "device.model"),
                                (protocol.GS_I_FIRMWARE, "device.firmware")):
                    text = await self._ask_text(n)
                    if text:
                        found[name] = text
            if self.model.gs_i_id and "device.model" not in found:
                model_id = await self._ask_byte(protocol.GS_I_MODEL_ID)
                if model_id is not None:
                    found["device.model"] = f"{self.model.vendor or 'ESC/POS'} id 0x{model_id:02X}"
                rom = await self._ask_byte(protocol.GS_I_ROM)
                if rom is not None and "device.firmware" not in found:
                    found["device.firmware"] = f"rom 0x{rom:02X}"
        except DeviceTimeout as err:
            log.debug("no GS I answer", extra={"device": self.device.id, "reason": str(err)})
        return found

    async def _ask_text(self, n: int) -> str | None:
        self.flushed += await self.transport.flush()
        await self.transport.write(protocol.gs_i_request(n))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.options.reply_timeout
        buf = b""
        while loop.time() < deadline:
            buf += await self.transport.read(deadline - loop.time())
            scan = protocol.find_text_reply(buf)
            if not scan.need_more:
                return scan.text
        if buf:
            log.debug("partial GS I reply", extra={"device": self.device.id, "n": n,
                                                   "bytes": buf[:32].hex()})
            return None
        raise DeviceTimeout(f"no reply to GS I {n}")

    async def _ask_byte(self, n: int) -> int | None:
        self.flushed += await self.transport.flush()
        await self.transport.write(protocol.gs_i_request(n))
        data = await self.transport.read(self.options.reply_timeout)
        if not data:
            raise DeviceTimeout(f"no reply to GS I {n}")
        return protocol.parse_id_byte(data[0])
