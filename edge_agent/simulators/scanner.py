"""A serial bar code scanner on a pty: scans, malformed frames, heartbeats answered or not, unplug."""

from __future__ import annotations

import asyncio
import os
import tty
from pathlib import Path

from edge_agent.collectors.scanner import protocol

# Honeywell menu settings the simulator knows, as a scanner would answer a `?` query.
HONEYWELL_MENU = {b"232BAD": b"5", b"BEPLVL": b"1"}
# A real bar code: EAN-13 4006381333931 has a valid check digit.
GOOD_CODE = "4006381333931"
SSI_CODE_TYPE_EAN13 = 0x0B


class ScannerSimulator:
    """One simulated scanner: vendor none (plain suffix frames), honeywell or zebra (SSI)."""

    def __init__(self, vendor: str = "none", suffix: str = "cr", link: str | os.PathLike | None = None,
                 answering: bool = True):
        if vendor not in ("none", "honeywell", "zebra"):
            raise ValueError(f"unknown vendor {vendor!r}")
        self.vendor = vendor
        self.suffix = protocol.SUFFIXES[suffix]
        self.link = Path(link) if link is not None else None
        self.answering = answering  # False: heartbeats are read but ignored (a wedged scanner)
        self.heartbeats_seen = 0
        self.acks_seen = 0
        self.path: str | None = None
        self._master: int | None = None
        self._slave: int | None = None
        self._inbox = bytearray()

    @property
    def plugged(self) -> bool:
        """True while the pty exists."""
        return self._master is not None

    async def start(self) -> str:
        """Create the pty and return the path a collector opens (the link, if one was given)."""
        master, slave = os.openpty()
        # Raw: no echo of heartbeats back to the host, no CR to LF translation of frames.
        tty.setraw(slave)
        tty.setraw(master)
        os.set_blocking(master, False)
        self._master, self._slave = master, slave
        self.path = os.ttyname(slave)
        asyncio.get_running_loop().add_reader(master, self._on_readable)
        if self.link is not None:
            tmp = self.link.with_name(self.link.name + ".new")
            tmp.unlink(missing_ok=True)
            tmp.symlink_to(self.path)
            tmp.replace(self.link)  # Atomically, as udev re-points /dev/serial/by-id/ names.
            return str(self.link)
        return self.path

    async def stop(self) -> None:
        """Close the pty; the host's reads fail as when the cable is pulled. Safe to call twice."""
        await self.unplug()

    async def unplug(self) -> None:
        """Pull the cable: close the pty master and remove the link."""
        if self._master is not None:
            asyncio.get_running_loop().remove_reader(self._master)
            os.close(self._master)
            self._master = None
        if self._slave is not None:
            os.close(self._slave)
            self._slave = None
        if self.link is not None:
            self.link.unlink(missing_ok=True)

    async def replug(self) -> str:
        """Plug the scanner back in: a new pty behind the same link."""
        await self.unplug()
        return await self.start()

    def scan(self, code: str = GOOD_CODE) -> None:
        """Send one good scan."""
        data = code.encode("ascii")
        if self.vendor == "zebra":
            self._send(protocol.ssi_build(protocol.DECODE_DATA, bytes([SSI_CODE_TYPE_EAN13]) + data,
                                          source=protocol.SSI_SCANNER))
        else:
            self._send(data + self.suffix)

    def malformed(self, kind: str = "junk") -> None:
        """Send one malformed frame: "junk" (line noise) or "check_digit" (a misread EAN-13)."""
        if self.vendor == "zebra":
            packet = bytearray(protocol.ssi_build(protocol.DECODE_DATA, b"\x0b" + GOOD_CODE.encode(),
                                                  source=protocol.SSI_SCANNER))
            packet[-1] ^= 0xFF  # A corrupted checksum, as line noise would leave it.
            self._send(bytes(packet))
        elif kind == "check_digit":
            self._send(GOOD_CODE[:-1].encode() + b"2" + self.suffix)
        else:
            self._send(b"\x00\xff\x13noise" + self.suffix)

    def _send(self, data: bytes) -> None:
        if self._master is None:
            raise RuntimeError("the simulated scanner is unplugged")
        os.write(self._master, data)

    def _on_readable(self) -> None:
        try:
            data = os.read(self._master, 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            return
        self._inbox += data
        del self._inbox[:-1024]  # Bounded: a host that sends garbage cannot grow it.
        if self.vendor == "honeywell":
            self._answer_honeywell()
        elif self.vendor == "zebra":
            self._answer_ssi()

    def _answer_honeywell(self) -> None:
        while True:
            start = self._inbox.find(protocol.HONEYWELL_PREFIX)
            if start < 0:
                return
            body = self._inbox[start + len(protocol.HONEYWELL_PREFIX):]
            ends = [i for i in (body.find(b"."), body.find(b"!")) if i >= 0]
            if not ends:
                return
            end = min(ends)
            command, terminator = bytes(body[:end]), bytes(body[end:end + 1])
            del self._inbox[:start + len(protocol.HONEYWELL_PREFIX) + end + 1]
            self.heartbeats_seen += 1
            if not self.answering:
                continue
            tag = command[:6]
            if command.endswith(b"?") and tag in HONEYWELL_MENU:
                self._send(tag + HONEYWELL_MENU[tag] + bytes([protocol.ACK]) + terminator)
            else:
                self._send(command + bytes([protocol.ENQ]) + terminator)

    def _answer_ssi(self) -> None:
        while self._inbox:
            length = self._inbox[0]
            if length < 4:
                del self._inbox[:1]
                continue
            if len(self._inbox) < length + 2:
                return
            raw = bytes(self._inbox[:length + 2])
            try:
                packet = protocol.ssi_parse(raw)
            except protocol.ProtocolError:
                del self._inbox[:1]
                continue
            del self._inbox[:length + 2]
            if packet.opcode == protocol.CMD_ACK:
                self.acks_seen += 1
            elif packet.opcode == protocol.REQUEST_REVISION:
                self.heartbeats_seen += 1
                if self.answering:
                    self._send(protocol.ssi_build(protocol.REPLY_REVISION, b"SIM-SSI 1.0",
                                                  source=protocol.SSI_SCANNER))


def register(subparsers) -> None:
    """Add `scanner` to `edge-agent simulate`."""
    p = subparsers.add_parser("scanner", help="a serial bar code scanner on a pty",
                              description="Run a simulated serial scanner on a pty and print the "
                                          "path to open (scanner+serial://PATH).")
    p.add_argument("--vendor", choices=("none", "honeywell", "zebra"), default="none",
                   help="heartbeat protocol it answers (default none)")
    p.add_argument("--suffix", choices=tuple(protocol.SUFFIXES), default="cr",
                   help="suffix after each bar code (default cr)")
    p.add_argument("--link", help="also make this symlink to the pty, as /dev/serial/by-id/ does")
    p.add_argument("--every", type=float, default=2.0,
                   help="seconds between good scans; 0 for none (default 2)")
    p.add_argument("--malformed-every", type=int, default=0, metavar="N",
                   help="make every Nth frame malformed (default 0: never)")
    p.add_argument("--count", type=int, default=0, help="stop after this many frames (0: run on)")
    p.add_argument("--silent", action="store_true", help="ignore heartbeats (a wedged scanner)")
    p.set_defaults(func=run)


def run(args) -> int:
    """Run the simulator until interrupted or --count frames were sent."""
    from edge_agent.errors import ConfigError

    if args.every < 0 or args.malformed_every < 0 or args.count < 0:
        raise ConfigError("--every, --malformed-every and --count must be >= 0")
    return asyncio.run(_serve(args))


async def _serve(args) -> int:
    sim = ScannerSimulator(args.vendor, args.suffix, args.link, answering=not args.silent)
    path = await sim.start()
    print(f"scanner simulator ({args.vendor}) on {path}: "
          f"edge-agent probe scanner+serial://{path}?heartbeat={args.vendor}", flush=True)
    sent = 0
    try:
        while not args.count or sent < args.count:
            if args.every <= 0:
                await asyncio.sleep(3600)
                continue
            await asyncio.sleep(args.every)
            sent += 1
            if args.malformed_every and sent % args.malformed_every == 0:
                sim.malformed()
            else:
                sim.scan()
    finally:
        await sim.stop()
    return 0
