"""Keep a scanner's serial port open, count what it sends, ask it for a heartbeat, reconnect."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Callable

from edge_agent.blocking import run_blocking
from edge_agent.collectors.base import Collector
from edge_agent.collectors.scanner import vendors
from edge_agent.errors import DeviceError
from edge_agent.reading import Reading

log = logging.getLogger(__name__)

READ_CHUNK = 4096


class SerialTransport:
    """A serial port opened by pyserial, read and written without ever blocking the loop.

    On POSIX the port's descriptor is non-blocking and read through loop.add_reader, so an idle
    scanner costs no thread. Where the loop has no add_reader (Windows' proactor) reads run on
    the device-I/O pool with a short pyserial timeout.
    """

    def __init__(self, port: str, baudrate: int):
        import serial  # Imported only when a scanner is configured.

        try:
            self.serial = serial.Serial(port, baudrate, timeout=0.2, write_timeout=1.0,
                                        exclusive=True)
        except (serial.SerialException, OSError, ValueError) as err:
            raise DeviceError(f"cannot open {port}: {_why(err)}") from err
        try:
            self.fd: int | None = self.serial.fileno()
            os.set_blocking(self.fd, False)
        except (AttributeError, OSError, ValueError):
            self.fd = None

    async def read(self) -> bytes:
        """Return the next bytes from the port; raise DeviceError when the port went away."""
        loop = asyncio.get_running_loop()
        if self.fd is None:
            return await run_blocking(self._read_blocking)
        while True:
            ready = loop.create_future()
            try:
                loop.add_reader(self.fd, lambda: ready.done() or ready.set_result(None))
            except NotImplementedError:
                self.fd = None
                return await run_blocking(self._read_blocking)
            try:
                await ready
            finally:
                loop.remove_reader(self.fd)
            try:
                data = os.read(self.fd, READ_CHUNK)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError as err:
                raise DeviceError(f"port lost: {_why(err)}") from err
            if not data:
                # pyserial sets VMIN=0, so an idle tty reads b"" too; but readable and empty
                # means the device went away (pyserial's own test for a disconnect).
                raise DeviceError("port closed (device unplugged)")
            return data

    def _read_blocking(self) -> bytes:
        import serial

        try:
            return self.serial.read(max(1, min(READ_CHUNK, self.serial.in_waiting)))
        except (serial.SerialException, OSError) as err:
            raise DeviceError(f"port lost: {_why(err)}") from err

    async def write(self, data: bytes) -> None:
        """Send a few bytes (a heartbeat, an ACK); raise DeviceError if the port refuses them."""
        try:
            if self.fd is None:
                await run_blocking(self.serial.write, data)
                return
            sent = os.write(self.fd, data)
        except Exception as err:  # OSError, or pyserial's SerialException off POSIX.
            raise DeviceError(f"cannot write to the port: {_why(err)}") from err
        if sent != len(data):
            raise DeviceError("the port accepted only part of a heartbeat")

    def close(self) -> None:
        """Close the port; safe to call twice."""
        try:
            self.serial.close()
        except Exception:  # A port whose device vanished may fail to close; it is gone anyway.
            pass


def _why(err: BaseException) -> str:
    code = getattr(err, "errno", None)
    if isinstance(code, int) and code > 0:
        return os.strerror(code)  # pyserial repeats the port in its message; the cause suffices.
    return (getattr(err, "strerror", None) or str(err) or type(err).__name__).strip()


Opener = Callable[[str, int], SerialTransport]


class ScannerCollector(Collector):
    """A bar code scanner on a serial port (a stream device: the port stays open)."""

    kind = "scanner"

    def __init__(self, device, opener: Opener = SerialTransport):
        super().__init__(device)
        self.opener = opener
        self.vendor = vendors.HEARTBEATS[self.options.heartbeat]
        self.transport: SerialTransport | None = None
        self.framer = None
        self.reads = 0
        self.decode_errors = 0
        self.reconnects = 0
        self.last_scan: float | None = None  # time.monotonic() of the last good scan
        self.heartbeat = "off" if self.vendor.query is None else "missing"
        self.lost_reason: str | None = "not opened yet"
        self._ever_connected = False
        self._tasks: list[asyncio.Task] = []
        self._answered = asyncio.Event()
        self._first_heartbeat = asyncio.Event()

    async def open(self) -> None:
        await self._connect()

    async def _connect(self) -> str | None:
        """Open the port and start reading; return why it failed, or None."""
        opts = self.options
        try:
            self.transport = await run_blocking(self.opener, opts.port, opts.baudrate)
        except DeviceError as err:
            self.lost_reason = str(err)
            return self.lost_reason
        self.framer = self.vendor.framer(suffix=opts.suffix, symbology=opts.symbology,
                                         max_frame=opts.max_frame)
        if self._ever_connected:
            self.reconnects += 1
            log.info("scanner reconnected", extra={"device": self.device.id, "port": opts.port,
                                                   "reconnects": self.reconnects})
        self._ever_connected = True
        self.lost_reason = None
        self._first_heartbeat.clear()
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._read_loop(), name=f"scanner-read:{self.device.id}")]
        if self.vendor.query is not None:
            self._tasks.append(loop.create_task(self._heartbeat_loop(),
                                                name=f"scanner-heartbeat:{self.device.id}"))
        return None

    async def _read_loop(self) -> None:
        transport = self.transport
        try:
            while True:
                data = await transport.read()
                for kind, detail in self.framer.feed(data):
                    if kind == "scan":
                        self.reads += 1
                        self.last_scan = time.monotonic()
                    elif kind == "malformed":
                        self.decode_errors += 1
                        log.debug("malformed frame", extra={"device": self.device.id,
                                                            "why": detail})
                    elif kind == "reply":
                        self._answered.set()
                if self.vendor.ack_scans is not None:
                    while self.framer.acks_due:
                        self.framer.acks_due -= 1
                        await transport.write(self.vendor.ack_scans)
        except DeviceError as err:
            self._lost(str(err))
        except Exception as err:  # A bug, not the device: say so, and let the next poll reopen.
            log.exception("scanner reader failed", extra={"device": self.device.id})
            self._lost(f"collector error: {type(err).__name__}: {err}")

    async def _heartbeat_loop(self) -> None:
        opts = self.options
        try:
            while True:
                self._answered.clear()
                await self.transport.write(self.vendor.query)
                try:
                    await asyncio.wait_for(self._answered.wait(), opts.heartbeat_timeout)
                    if self.heartbeat == "missing" and self._first_heartbeat.is_set():
                        log.info("scanner answers its heartbeat again",
                                 extra={"device": self.device.id})
                    self.heartbeat = "ok"
                except asyncio.TimeoutError:
                    if self.heartbeat != "missing" or not self._first_heartbeat.is_set():
                        log.warning("scanner does not answer its heartbeat",
                                    extra={"device": self.device.id,
                                           "vendor": opts.heartbeat})
                    self.heartbeat = "missing"
                self._first_heartbeat.set()
                await asyncio.sleep(opts.heartbeat_interval)
        except DeviceError as err:
            self._lost(str(err))
        except Exception as err:  # A bug, not the device: say so, and let the next poll reopen.
            log.exception("scanner heartbeat failed", extra={"device": self.device.id})
            self._lost(f"collector error: {type(err).__name__}: {err}")

    def _lost(self, reason: str) -> None:
        """Forget a port that went away; the next poll tries to open it again."""
        if self.transport is None:
            return
        log.warning("scanner port lost", extra={"device": self.device.id, "reason": reason})
        self.lost_reason = reason
        self.transport.close()
        self.transport = None
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current:
                task.cancel()
        self._tasks = []
        if self.vendor.query is not None:
            self.heartbeat = "missing"

    async def poll(self) -> Reading:
        started = time.monotonic()
        if self.transport is None:
            why = await self._connect()
            if why is not None:
                return self.stale(why, self._values("offline"))
        if self.vendor.query is not None and not self._first_heartbeat.is_set():
            # Right after (re)connecting, wait for the first heartbeat so the reading says
            # whether the scanner answers, not merely that the port opened.
            try:
                await asyncio.wait_for(self._first_heartbeat.wait(),
                                       self.options.heartbeat_timeout + 0.1)
            except asyncio.TimeoutError:
                pass
        if self.transport is None:
            return self.stale(self.lost_reason or "port lost", self._values("offline"))
        status = "error" if self.heartbeat == "missing" else "ok"
        return self.ok(self._values(status), started)

    def _values(self, status: str) -> dict:
        age = None if self.last_scan is None else round(time.monotonic() - self.last_scan, 3)
        return {"device.status": status,
                "scanner.connected": self.transport is not None,
                "scanner.reads": self.reads,
                "scanner.decode_errors": self.decode_errors,
                "scanner.reconnects": self.reconnects,
                "scanner.last_scan_age_s": age,
                "scanner.heartbeat": self.heartbeat}

    async def close(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self.transport is not None:
            self.transport.close()
            self.transport = None
