"""Byte pipes to a printer, TCP, serial (non-blocking fd or pool reads) and USB, behind one seam.

The collector talks only to the Transport interface, so tests swap in a fake one at this seam
(a USB bus cannot exist on a test machine). Received bytes go to a bounded Inbox; `flush()`
discards what arrived before a request, so a late or unsolicited byte is never taken for the
answer to the next one.
"""

from __future__ import annotations

import asyncio
import os
import sys
from abc import ABC, abstractmethod

from edge_agent.errors import DeviceError

INBOX_MAX = 4096  # A printer answers single bytes; more than this unread is noise to drop.


class Inbox:
    """Bytes received and not yet read, bounded, with a way to wait for more."""

    def __init__(self, limit: int = INBOX_MAX):
        self.limit = limit
        self.data = bytearray()
        self.dropped = 0
        self.closed: BaseException | str | None = None
        self._event = asyncio.Event()

    def feed(self, data: bytes) -> None:
        self.data += data
        if len(self.data) > self.limit:
            extra = len(self.data) - self.limit
            del self.data[:extra]
            self.dropped += extra
        self._event.set()

    def close(self, why: BaseException | str) -> None:
        self.closed = why
        self._event.set()

    def take(self) -> bytes:
        out = bytes(self.data)
        self.data.clear()
        self._event.clear()
        return out

    async def read(self, timeout: float) -> bytes:
        """Return buffered bytes, waiting up to `timeout` for some; b"" when none came."""
        if not self.data:
            if self.closed is not None:
                raise DeviceError(f"connection closed: {self.closed}")
            self._event.clear()
            try:
                await asyncio.wait_for(self._event.wait(), max(timeout, 0.0))
            except asyncio.TimeoutError:
                return b""
            if not self.data and self.closed is not None:
                raise DeviceError(f"connection closed: {self.closed}")
        return self.take()


class Transport(ABC):
    """A byte pipe to one printer."""

    where = ""

    @property
    @abstractmethod
    def is_open(self) -> bool:
        """True while the pipe can carry bytes."""

    @abstractmethod
    async def open(self, timeout: float) -> None:
        """Connect or open the port; raise DeviceError naming why not."""

    @abstractmethod
    async def write(self, data: bytes) -> None:
        """Send bytes; raise DeviceError if the pipe broke."""

    @abstractmethod
    async def read(self, timeout: float) -> bytes:
        """Return received bytes, waiting up to `timeout`; b"" when none came."""

    @abstractmethod
    async def flush(self) -> int:
        """Discard bytes received so far (stale replies, ASB); return how many."""

    @abstractmethod
    async def close(self) -> None:
        """Release the pipe; safe to call twice."""


class _InboxTransport(Transport):
    """A transport whose bytes arrive by callback into an Inbox (TCP, serial fd)."""

    def __init__(self) -> None:
        self.inbox: Inbox | None = None

    async def read(self, timeout: float) -> bytes:
        if self.inbox is None:
            raise DeviceError("not open")
        return await self.inbox.read(timeout)

    async def flush(self) -> int:
        if self.inbox is None:
            return 0
        if self.inbox.closed is not None and not self.inbox.data:
            raise DeviceError(f"connection closed: {self.inbox.closed}")
        return len(self.inbox.take())


class _TcpProtocol(asyncio.Protocol):
    def __init__(self, inbox: Inbox):
        self.inbox = inbox

    def data_received(self, data: bytes) -> None:
        self.inbox.feed(data)

    def eof_received(self) -> bool:
        self.inbox.close("printer closed the connection")
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.inbox.close(exc or "connection lost")


class TcpTransport(_InboxTransport):
    """Raw TCP (port 9100). An asyncio Protocol rather than streams: bytes land in our bounded
    Inbox as they arrive, so flushing stale input needs no read with a zero timeout."""

    def __init__(self, host: str, port: int):
        super().__init__()
        self.host, self.port = host, port
        self.where = f"{host}:{port}"
        self._transport: asyncio.Transport | None = None

    @property
    def is_open(self) -> bool:
        return (self._transport is not None and not self._transport.is_closing()
                and self.inbox is not None and self.inbox.closed is None)

    async def open(self, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        inbox = Inbox()
        try:
            transport, _ = await asyncio.wait_for(
                loop.create_connection(lambda: _TcpProtocol(inbox), self.host, self.port),
                timeout)
        except asyncio.TimeoutError as err:
            raise DeviceError(f"no TCP connection to {self.where} within {timeout:g} s") from err
        except OSError as err:
            raise DeviceError(f"cannot connect to {self.where}: {err.strerror or err}") from err
        self._transport, self.inbox = transport, inbox

    async def write(self, data: bytes) -> None:
        if not self.is_open:
            raise DeviceError("connection closed")
        self._transport.write(data)

    async def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None


class SerialTransport(_InboxTransport):
    """A serial port through pyserial (settings, exclusive lock), read on a non-blocking fd
    watched by the event loop, so a silent printer never holds a thread."""

    def __init__(self, device: str, baudrate: int):
        super().__init__()
        self.device, self.baudrate = device, baudrate
        self.where = device
        self._serial = None
        self._fd: int | None = None

    @property
    def is_open(self) -> bool:
        return self._fd is not None and self.inbox is not None and self.inbox.closed is None

    async def open(self, timeout: float) -> None:
        from edge_agent.blocking import run_blocking

        try:
            import serial
        except ImportError as err:
            raise DeviceError("pyserial is not installed") from err
        try:
            # dsrdtr off: python-escpos turns it on, and a port without DSR then blocks writes.
            port = await asyncio.wait_for(run_blocking(
                serial.Serial, self.device, self.baudrate, timeout=0, write_timeout=0,
                rtscts=False, dsrdtr=False, exclusive=True), timeout)
        except asyncio.TimeoutError as err:
            raise DeviceError(f"opening {self.device} took over {timeout:g} s") from err
        except (serial.SerialException, OSError, ValueError) as err:
            raise DeviceError(f"cannot open {self.device}: {err}") from err
        self._serial, self._fd, self.inbox = port, port.fileno(), Inbox()
        asyncio.get_running_loop().add_reader(self._fd, self._readable)

    def _readable(self) -> None:
        try:
            data = os.read(self._fd, 4096)
        except BlockingIOError:
            return
        except OSError as err:
            self._detach(err)
            return
        if not data:
            self._detach("port closed")
            return
        self.inbox.feed(data)

    def _detach(self, why) -> None:
        if self._fd is not None:
            try:
                asyncio.get_running_loop().remove_reader(self._fd)
            except (RuntimeError, ValueError):
                pass
        if self.inbox is not None:
            self.inbox.close(why)

    async def write(self, data: bytes) -> None:
        if not self.is_open:
            raise DeviceError("port closed")
        try:
            written = os.write(self._fd, data)
        except BlockingIOError as err:
            raise DeviceError("output blocked (flow control held by the printer?)") from err
        except OSError as err:
            self._detach(err)
            raise DeviceError(f"write to {self.device} failed: {err.strerror or err}") from err
        if written != len(data):
            raise DeviceError(f"wrote {written} of {len(data)} bytes to {self.device}")

    async def close(self) -> None:
        if self._fd is not None:
            self._detach("closed")
            self._fd = None
        if self._serial is not None:
            try:
                self._serial.close()
            except (OSError, Exception):  # noqa: BLE001 - pyserial raises its own on a dead port
                pass
            self._serial = None


class SerialPoolTransport(Transport):
    """A serial port read with short blocking reads on the device-I/O pool: for platforms whose
    event loop cannot watch a serial port (Windows COM ports). Each read holds a worker for at
    most READ_SLICE_S, so a silent printer never holds one for long."""

    READ_SLICE_S = 0.05

    def __init__(self, device: str, baudrate: int):
        self.device, self.baudrate = device, baudrate
        self.where = device
        self._serial = None

    @property
    def is_open(self) -> bool:
        return self._serial is not None

    async def open(self, timeout: float) -> None:
        from edge_agent.blocking import run_blocking

        try:
            import serial
        except ImportError as err:
            raise DeviceError("pyserial is not installed") from err
        extra = {"exclusive": True} if os.name == "posix" else {}
        try:
            self._serial = await asyncio.wait_for(run_blocking(
                serial.Serial, self.device, self.baudrate, timeout=self.READ_SLICE_S,
                write_timeout=1.0, rtscts=False, dsrdtr=False, **extra), timeout)
        except asyncio.TimeoutError as err:
            raise DeviceError(f"opening {self.device} took over {timeout:g} s") from err
        except (serial.SerialException, OSError, ValueError) as err:
            raise DeviceError(f"cannot open {self.device}: {err}") from err

    async def _call(self, fn, *args):
        from edge_agent.blocking import run_blocking

        if self._serial is None:
            raise DeviceError("port closed")
        try:
            return await run_blocking(fn, *args)
        except Exception as err:  # serial.SerialException, OSError: the port went away
            await self.close()
            raise DeviceError(f"{self.device}: {err}") from err

    async def write(self, data: bytes) -> None:
        await self._call(self._serial.write, data)

    async def read(self, timeout: float) -> bytes:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(timeout, 0.0)
        while True:
            data = await self._call(self._serial.read, 256)
            if data or loop.time() >= deadline:
                return bytes(data)

    async def flush(self) -> int:
        waiting = await self._call(lambda: self._serial.in_waiting)
        await self._call(self._serial.reset_input_buffer)
        return int(waiting or 0)

    async def close(self) -> None:
        port, self._serial = self._serial, None
        if port is not None:
            try:
                port.close()
            except Exception:  # noqa: BLE001 - pyserial raises its own on a dead port
                pass


class UsbTransport(Transport):
    """A USB printer-class device through pyusb, blocking calls on the device-I/O pool with
    millisecond timeouts. Not testable here (no USB bus): tests use a fake transport."""

    READ_MS_MIN = 10

    def __init__(self, vid: str, pid: str):
        self.vid, self.pid = int(vid, 16), int(pid, 16)
        self.where = f"usb {vid}:{pid}"
        self._dev = None
        self._in = self._out = None

    @property
    def is_open(self) -> bool:
        return self._dev is not None

    async def open(self, timeout: float) -> None:
        from edge_agent.blocking import run_blocking

        try:
            import usb.core
            import usb.util
        except ImportError as err:
            raise DeviceError("pyusb is not installed (pip install pyusb) for USB printers") from err
        try:
            dev = await asyncio.wait_for(run_blocking(self._claim, usb), timeout)
        except asyncio.TimeoutError as err:
            raise DeviceError(f"opening {self.where} took over {timeout:g} s") from err
        except (usb.core.USBError, usb.core.NoBackendError, ValueError) as err:
            raise DeviceError(f"cannot open {self.where}: {err}") from err
        self._dev = dev

    def _claim(self, usb):
        dev = usb.core.find(idVendor=self.vid, idProduct=self.pid)
        if dev is None:
            raise ValueError("no such device on the USB bus")
        try:
            if dev.is_kernel_driver_active(0):
                dev.detach_kernel_driver(0)  # usblp holds the interface otherwise
        except (NotImplementedError, usb.core.USBError):
            pass
        dev.set_configuration()
        intf = dev.get_active_configuration()[(0, 0)]
        direction = usb.util.endpoint_direction
        self._out = usb.util.find_descriptor(
            intf, custom_match=lambda e: direction(e.bEndpointAddress) == usb.util.ENDPOINT_OUT)
        self._in = usb.util.find_descriptor(
            intf, custom_match=lambda e: direction(e.bEndpointAddress) == usb.util.ENDPOINT_IN)
        if self._out is None or self._in is None:
            raise ValueError("no bulk IN/OUT endpoints (not a printer interface?)")
        return dev

    async def write(self, data: bytes) -> None:
        from edge_agent.blocking import run_blocking

        try:
            await run_blocking(self._out.write, data, 1000)
        except Exception as err:  # usb.core.USBError; pyusb is imported lazily
            raise DeviceError(f"USB write failed: {err}") from err

    async def read(self, timeout: float) -> bytes:
        from edge_agent.blocking import run_blocking

        ms = max(self.READ_MS_MIN, int(timeout * 1000))
        try:
            return bytes(await run_blocking(self._in.read, 64, ms))
        except Exception as err:
            if type(err).__name__ == "USBTimeoutError" or getattr(err, "errno", None) == 110:
                return b""
            raise DeviceError(f"USB read failed: {err}") from err

    async def flush(self) -> int:
        dropped = 0
        for _ in range(8):  # Bounded: a device that streams forever is not answering us.
            data = await self.read(self.READ_MS_MIN / 1000)
            if not data:
                break
            dropped += len(data)
        return dropped

    async def close(self) -> None:
        if self._dev is not None:
            try:
                import usb.util

                usb.util.dispose_resources(self._dev)
            except Exception:  # noqa: BLE001 - closing a vanished device
                pass
            self._dev = None


def make_transport(options) -> Transport:
    """Build the transport a `[devices.escpos]` table asks for."""
    if options.transport == "tcp":
        return TcpTransport(options.host, options.port)
    if options.transport == "serial":
        if sys.platform == "win32":  # pragma: no cover - the loop cannot watch COM ports
            return SerialPoolTransport(options.device, options.baudrate)
        return SerialTransport(options.device, options.baudrate)
    return UsbTransport(options.vid, options.pid)
