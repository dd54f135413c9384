"""A simulated ESC/POS receipt printer on TCP or a pty, with faults, power save and wear.

`PrinterEngine` is the printer without I/O (bytes in, timed replies out); `PrinterSimulator`
serves it on an asyncio TCP server and/or a pty pair (the collector opens the slave path).
It answers DLE EOT 1-4, GS I 1-3/65-68, DLE ENQ (recovery) and GS a (ASB), and can be told,
through methods or text commands (`command("cover open")`), to open its cover, run near the end
of its paper or out of it, jam its cutter, sleep, stop answering, send garbage, partial, late or
stale replies, and wear out over simulated time.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from dataclasses import dataclass, field

DLE, EOT, ENQ, GS = 0x10, 0x04, 0x05, 0x1D
LINE_MM = 30 / 180 * 25.4  # one GS g 2 "line feed": 30 dots at 1/180 inch
QUEUE_MAX = 64  # Replies waiting to be sent; a printer's own buffer is small too.


@dataclass
class Identity:
    """What the printer says about itself through GS I."""

    model: str = "TM-T88V"
    firmware: str = "30.01 ESC/POS"
    maker: str = "EPSON"
    serial: str = "SIM0001"
    model_id: int = 0x20
    rom: int = 0x0A


@dataclass
class Faults:
    """Everything the simulator can be told to do wrong."""

    cover_open: bool = False
    cutter_jammed: bool = False
    unrecoverable: bool = False
    overheated: bool = False
    feed_pressed: bool = False
    drawer_pin_high: bool = True
    asleep: bool = False
    hung: bool = False            # accept, read, never reply
    garbage: str = "off"          # off | before (noise, then the reply) | only (noise, no reply)
    partial: bool = False         # GS I text cut short; DLE EOT 3 and 4 unanswered
    late_s: float = 0.0           # every reply this much later
    stale: bool = False           # after each reply, an extra old status byte
    asb_noise: bool = False       # an ASB block and XON before each reply
    gs_i: bool = True             # answers GS I at all
    counters: str = "ok"          # GS g 2 replies: ok | garbage | partial | silent | none


@dataclass
class Wear:
    """Paper used and cutter/head wear over simulated time."""

    paper_m: float = 80.0            # roll length left
    roll_m: float = 80.0
    near_end_m: float = 8.0
    paper_m_per_hour: float = 0.0
    wear_per_hour: float = 0.0       # 0..1 of the way to worn out per simulated hour
    max_error_rate: float = 0.6      # chance of a recoverable error per status round when worn
    worn: float = 0.0                # current wear 0..1
    # Cumulative maintenance counters (GS g 2 148/149/178/198), advanced by simulated time.
    lines: int = 0
    energized: int = 0
    cuts: int = 0
    hours: float = 0.0
    cuts_per_hour: float = 0.0       # receipts cut per simulated hour
    rated_cuts: int = 2_000_000      # a worn cutter fails more often as cuts approach this


class PrinterEngine:
    """The printer's logic: feed it received bytes, get (delay, bytes) replies."""

    def __init__(self, identity: Identity | None = None, *, seed: int = 0,
                 time_scale: float = 0.0):
        self.identity = identity or Identity()
        self.faults = Faults()
        self.wear = Wear()
        self.rng = random.Random(seed)
        # Simulated seconds per real second (3600: an hour a second); advance() adds more.
        self.time_scale = time_scale
        self._t0 = time.monotonic()
        self._sim_offset = 0.0
        self._sim_seen = 0.0
        self._pending = b""
        self._asb = False
        self._round: set[str] = set()   # transient errors of the current status round
        # Power-save timer: with a value, the printer falls asleep after this many (real)
        # seconds without receiving a byte, as a real one does after its idle time.
        self.sleep_after_s: float | None = None
        self._last_rx = time.monotonic()
        self.received = 0
        self.requests = 0
        self.cuts = 0

    # Simulated time and wear.
    def sim_seconds(self) -> float:
        """Simulated seconds since the printer started."""
        return (time.monotonic() - self._t0) * self.time_scale + self._sim_offset

    def advance(self, seconds: float) -> None:
        """Let simulated time pass (paper used, parts worn)."""
        self._sim_offset += seconds
        self._age()

    def _age(self) -> None:
        now = self.sim_seconds()
        hours = max(0.0, now - self._sim_seen) / 3600.0
        self._sim_seen = now
        w = self.wear
        used = min(w.paper_m, hours * w.paper_m_per_hour)
        w.paper_m = max(0.0, w.paper_m - used)
        w.worn = min(1.0, w.worn + hours * w.wear_per_hour)
        w.lines += int(used * 1000.0 / LINE_MM)
        w.energized += int(used * 1000.0 / LINE_MM) * 30
        w.cuts += int(hours * w.cuts_per_hour)
        w.hours += hours

    @property
    def paper(self) -> str:
        """ok, near_end or out, from the paper left."""
        if self.wear.paper_m <= 0:
            return "out"
        return "near_end" if self.wear.paper_m <= self.wear.near_end_m else "ok"

    def set_paper(self, state: str) -> None:
        """Put in a full roll (ok), a nearly finished one (near_end), or none (out)."""
        w = self.wear
        w.paper_m = {"ok": w.roll_m, "near_end": w.near_end_m / 2, "out": 0.0}[state]

    # Status bytes.
    def _error(self) -> bool:
        f = self.faults
        return (f.cutter_jammed or f.unrecoverable or f.overheated
                or bool(self._round & {"cutter", "overheat"}))

    def status(self, n: int) -> int:
        """The DLE EOT n reply for the current state."""
        f, paper = self.faults, self.paper
        b = 0x12
        if n == 1:
            offline = f.cover_open or paper == "out" or self._error() or f.feed_pressed
            b |= (0x04 if f.drawer_pin_high else 0) | (0x08 if offline else 0)
            b |= 0x40 if f.feed_pressed else 0
        elif n == 2:
            b |= (0x04 if f.cover_open else 0) | (0x08 if f.feed_pressed else 0)
            b |= (0x20 if paper == "out" else 0) | (0x40 if self._error() else 0)
        elif n == 3:
            b |= 0x08 if (f.cutter_jammed or "cutter" in self._round) else 0
            b |= 0x20 if f.unrecoverable else 0
            b |= 0x40 if (f.overheated or "overheat" in self._round) else 0
        elif n == 4:
            b |= {"ok": 0, "near_end": 0x0C, "out": 0x6C}[paper]
        return b

    def _asb_block(self) -> bytes:
        s1, s3 = self.status(1), self.status(3)
        s4 = {"ok": 0, "near_end": 0x03, "out": 0x0F}[self.paper]
        # ASB byte 1 is 0xx1xx00: the DLE EOT 1 bits with bit 1 cleared; byte 2 the error bits.
        return bytes((s1 & ~0x02 | (0x20 if self.faults.cover_open else 0), s3 & 0x6C, s4, 0))

    def _new_round(self) -> None:
        """Start a status round: age the printer and roll its wear dice for transient errors."""
        self._age()
        self._round = set()
        # A cutter past 80% of its rated cuts errs more and more (at most a quarter of the
        # full wear's rate, so an error rarely lasts several polls): cutter errors only.
        by_cuts = 0.25 * min(1.0, max(0.0, (self.counter(178) or 0) / self.wear.rated_cuts
                                      - 0.8) / 0.2)
        if by_cuts and self.rng.random() < by_cuts * self.wear.max_error_rate:
            self._round.add("cutter")
        chance = self.wear.worn * self.wear.max_error_rate
        if chance and self.rng.random() < chance:
            self._round.add(self.rng.choice(("cutter", "overheat")))

    # Bytes in, replies out.
    def feed(self, data: bytes) -> list[tuple[float, bytes]]:
        """Take received bytes; return the replies, each with its delay in seconds."""
        self.received += len(data)
        f = self.faults
        now = time.monotonic()
        if self.sleep_after_s is not None and now - self._last_rx > self.sleep_after_s:
            f.asleep = True
        self._last_rx = now
        if f.hung:
            return []
        if f.asleep:
            # Power save: whatever arrives wakes the printer and is not executed.
            f.asleep = False
            self._pending = b""
            return []
        out: list[tuple[float, bytes]] = []
        buf = self._pending + data
        i = 0
        while i < len(buf):
            b = buf[i]
            if b == GS and len(buf) - i >= 2 and buf[i + 1] == ord("g"):
                if len(buf) - i < 6:
                    break
                answer = self._gs_g(buf[i + 2], buf[i + 4] | buf[i + 5] << 8)
                i += 6
                if answer:
                    out.extend(self._shape(answer, False))
                continue
            if b in (DLE, GS):
                if len(buf) - i < 3:
                    break
                cmd, n = buf[i + 1], buf[i + 2]
                reply = self._command(b, cmd, n, buf, i)
                if reply is None:
                    i += 1   # Not a command we know: print data.
                    continue
                used, answer = reply
                i += used
                if answer:
                    out.extend(self._shape(answer, cmd == EOT))
                continue
            i += 1
        self._pending = buf[i:][-16:]
        return out

    def _command(self, b: int, cmd: int, n: int, buf: bytes, i: int):
        if b == DLE and cmd == EOT:
            self.requests += 1
            if n == 1:
                self._new_round()
            if self.faults.partial and n in (3, 4):
                return 3, b""
            return 3, bytes((self.status(n),)) if n in (1, 2, 3, 4) else b""
        if b == DLE and cmd == ENQ:
            if n in (1, 2):
                self.faults.cutter_jammed = False
                self.faults.overheated = False
            return 3, b""
        if b == GS and cmd == ord("I"):
            return 3, self._gs_i(n)
        if b == GS and cmd == ord("a"):
            self._asb = bool(n)
            return 3, self._asb_block() if n else b""
        if b == GS and cmd == ord("V"):
            self.cuts += 1
            return (4 if n in (65, 66) else 3), b""
        return None

    def _gs_i(self, n: int) -> bytes:
        ident, f = self.identity, self.faults
        if not f.gs_i:
            return b""
        one = {1: ident.model_id, 49: ident.model_id, 2: 0x02, 50: 0x02, 3: ident.rom,
               51: ident.rom}
        if n in one:
            return bytes((one[n],))
        text = {65: ident.firmware, 66: ident.maker, 67: ident.model, 68: ident.serial}.get(n)
        if text is None:
            return b""
        raw = text.encode("ascii", "replace")
        if f.partial:
            return b"\x5f" + raw[: max(1, len(raw) // 2)]
        return b"\x5f" + raw + b"\x00"

    def counter(self, n: int) -> int | None:
        """A cumulative maintenance counter's value, or None when not supported."""
        self._age()
        w = self.wear
        return {148: w.lines, 149: w.energized, 178: w.cuts + self.cuts,
                198: int(w.hours)}.get(n)

    def _gs_g(self, m: int, n: int) -> bytes:
        """GS g 2 (m = 0x32): the counter as 0x5F, ASCII digits, NUL; nothing if unsupported."""
        mode = self.faults.counters
        if m != 0x32 or mode in ("silent", "none"):
            return b""
        value = self.counter(n)
        if value is None:
            return b""
        digits = str(value % 4_294_967_296).encode()
        if mode == "garbage":
            return b"\x5f" + digits[:1] + b"\xff\x41" + b"\x00"
        if mode == "partial":
            return b"\x5f" + digits[: max(1, len(digits) // 2)]
        return b"\x5f" + digits + b"\x00"

    def _shape(self, answer: bytes, is_status: bool) -> list[tuple[float, bytes]]:
        """Apply the reply faults (garbage, late, stale, ASB noise) to one answer."""
        f = self.faults
        noise = bytes(self.rng.choice((0x00, 0x01, 0x41, 0x84, 0xFF, 0x80, 0x0D))
                      for _ in range(3))
        if f.garbage == "only":
            return [(f.late_s, noise)]
        if f.garbage == "before":
            answer = noise + answer
        if f.asb_noise:
            answer = self._asb_block() + b"\x11" + answer
        if f.stale and is_status:
            # An old answer the host never read: a paper-out byte trailing the real reply.
            answer = answer + b"\x7e"
        return [(f.late_s, answer)]

    # Text control (stdin of `edge-agent simulate printer`, the demo's timeline).
    def command(self, text: str) -> str:
        """Apply a control command such as 'cover open', 'paper near_end' or 'late 2'."""
        words = text.strip().lower().split()
        if not words:
            return ""
        f = self.faults
        verb, arg = words[0], (words[1] if len(words) > 1 else "")
        on = arg in ("on", "open", "1", "true", "yes", "")
        try:
            if verb in SWITCHES:
                setattr(f, SWITCHES[verb], on)
            elif verb in SETS:
                setattr(f, *SETS[verb])
            elif verb == "cover":
                f.cover_open = arg == "open"
            elif verb == "drawer":
                f.drawer_pin_high = arg != "open"
            elif verb == "paper" and arg in ("ok", "near_end", "out"):
                self.set_paper(arg)
            elif verb in ("clear", "ok"):
                self.faults = Faults(drawer_pin_high=f.drawer_pin_high)
                if self.paper == "out":
                    self.set_paper("ok")
            elif verb == "garbage" and arg in ("off", "before", "only", "on"):
                f.garbage = "before" if arg == "on" else arg
            elif verb == "late":
                f.late_s = max(0.0, float(arg or 0))
            elif verb == "wear":
                self.wear.wear_per_hour = max(0.0, float(arg))
            elif verb == "counters" and arg in ("ok", "garbage", "partial", "silent", "none"):
                f.counters = arg
            elif verb == "cuts":
                self.wear.cuts = max(0, int(arg))
            elif verb == "cuts_per_hour":
                self.wear.cuts_per_hour = max(0.0, float(arg))
            elif verb == "advance":
                self.advance(max(0.0, float(arg)) * 3600.0)
            else:
                return f"unknown command {text.strip()!r}; {COMMANDS}"
        except ValueError:
            return f"not a number: {arg!r}"
        return "ok " + self.describe()

    def describe(self) -> str:
        """One line of state for people."""
        f = self.faults
        flags = [name for name, on in (("cover-open", f.cover_open), ("jam", f.cutter_jammed),
                                       ("fatal", f.unrecoverable), ("asleep", f.asleep),
                                       ("hung", f.hung), ("partial", f.partial),
                                       ("stale", f.stale), ("asb", f.asb_noise)) if on]
        if f.garbage != "off":
            flags.append(f"garbage-{f.garbage}")
        if f.late_s:
            flags.append(f"late-{f.late_s:g}s")
        return (f"paper={self.paper} ({self.wear.paper_m:.1f} m) worn={self.wear.worn:.2f} "
                f"{' '.join(flags) or 'healthy'}")


# Commands that turn a fault on or off ("hang", "hang off"), and ones that set one value.
SWITCHES = {"overheat": "overheated", "fatal": "unrecoverable", "hang": "hung",
            "partial": "partial", "stale": "stale", "asb": "asb_noise"}
SETS = {"jam": ("cutter_jammed", True), "sleep": ("asleep", True), "wake": ("asleep", False),
        "answer": ("hung", False)}
COMMANDS = ("commands: cover open|closed, paper ok|near_end|out, jam, overheat on|off, "
            "fatal on|off, clear, sleep, wake, hang, answer, garbage off|before|only, "
            "partial on|off, late SECONDS, stale on|off, asb on|off, drawer open|closed, "
            "wear PER_HOUR, advance HOURS, counters ok|garbage|partial|silent|none, cuts N, "
            "cuts_per_hour N")


@dataclass
class _Link:
    """One connection or pty: its outgoing queue and the task that sends it in order."""

    send: object
    queue: asyncio.Queue = field(default_factory=lambda: asyncio.Queue(QUEUE_MAX))
    task: asyncio.Task | None = None


class PrinterSimulator:
    """A simulated printer served on TCP (`start_tcp`) and/or a pty (`start_pty`)."""

    def __init__(self, identity: Identity | None = None, *, seed: int = 0,
                 time_scale: float = 0.0):
        self.engine = PrinterEngine(identity, seed=seed, time_scale=time_scale)
        self._server: asyncio.AbstractServer | None = None
        self._links: list[_Link] = []
        self._writers: list[asyncio.StreamWriter] = []
        self._pty: tuple[int, int] | None = None
        self.address: tuple[str, int] | None = None
        self.pty_path: str | None = None
        self.connections = 0

    # Control shortcuts.
    @property
    def faults(self) -> Faults:
        return self.engine.faults

    def command(self, text: str) -> str:
        return self.engine.command(text)

    async def start_tcp(self, host: str = "127.0.0.1", port: int = 0) -> tuple[str, int]:
        """Listen on host:port (0 picks a free port); return the address."""
        self._server = await asyncio.start_server(self._serve, host, port)
        self.address = self._server.sockets[0].getsockname()[:2]
        return self.address

    async def start_pty(self) -> str:
        """Open a pty pair; return the slave path the collector opens."""
        import tty

        master, slave = os.openpty()
        # Raw: no echo (our own DLE EOT would come back looking like an ASB block), no CR/LF
        # mangling. We keep the slave open so the master never sees EIO between clients.
        tty.setraw(slave)
        os.set_blocking(master, False)
        self._pty = (master, slave)
        self.pty_path = os.ttyname(slave)
        link = self._link(lambda data: self._pty_write(data))
        asyncio.get_running_loop().add_reader(master, self._pty_readable, link)
        return self.pty_path

    def _link(self, send) -> _Link:
        link = _Link(send)
        link.task = asyncio.get_running_loop().create_task(self._sender(link))
        self._links.append(link)
        return link

    async def _sender(self, link: _Link) -> None:
        while True:
            delay, data = await link.queue.get()
            if delay:
                await asyncio.sleep(delay)
            try:
                await link.send(data)
            except (OSError, ConnectionError):
                return

    def _queue(self, link: _Link, replies) -> None:
        for reply in replies:
            try:
                link.queue.put_nowait(reply)
            except asyncio.QueueFull:
                pass  # The printer's output buffer overflows; a real one loses bytes too.

    def _pty_readable(self, link: _Link) -> None:
        try:
            data = os.read(self._pty[0], 4096)
        except BlockingIOError:
            return
        except OSError:
            return  # EIO while no client has the slave open
        self._queue(link, self.engine.feed(data))

    async def _pty_write(self, data: bytes) -> None:
        if self._pty is None:
            return
        try:
            os.write(self._pty[0], data)
        except BlockingIOError:
            pass  # Nobody reads the slave and its buffer is full: the bytes are lost.

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.append(writer)

        async def send(data: bytes) -> None:
            writer.write(data)
            await writer.drain()

        link = self._link(send)
        try:
            while True:
                data = await reader.read(4096)
                if not data:
                    break
                self._queue(link, self.engine.feed(data))
        except (ConnectionError, OSError):
            pass
        finally:
            link.task.cancel()
            self._links.remove(link)
            if writer in self._writers:
                self._writers.remove(writer)
            writer.close()

    async def stop(self) -> None:
        """Close the server, every connection and the pty."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.close()
        for link in list(self._links):
            if link.task:
                link.task.cancel()
        tasks = [link.task for link in self._links if link.task]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self._links.clear()
        if self._pty is not None:
            master, slave = self._pty
            self._pty = None
            asyncio.get_running_loop().remove_reader(master)
            os.close(master)
            os.close(slave)


def register(sub) -> None:
    """Add `edge-agent simulate printer`."""
    p = sub.add_parser("printer", help="a simulated ESC/POS receipt printer",
                       description="Serve a simulated ESC/POS printer on TCP or a pty until "
                                   "Ctrl-C. Type commands on stdin to change it. " + COMMANDS)
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--tcp", type=int, metavar="PORT", help="listen on 127.0.0.1:PORT "
                       "(0 picks a free port)")
    where.add_argument("--pty", action="store_true", help="serve on a new pty; prints its path")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on with --tcp")
    p.add_argument("--model", default="TM-T88V", help="model name GS I 67 answers")
    p.add_argument("--set", action="append", default=[], metavar="COMMAND",
                   help="apply a command at start, such as --set 'paper near_end' (repeatable)")
    p.add_argument("--time-scale", type=float, default=0.0,
                   help="simulated seconds per real second, for wear (default 0: no ageing)")
    p.set_defaults(func=run)


def run(args) -> int:
    from edge_agent.errors import ConfigError

    if args.tcp is not None and not 0 <= args.tcp <= 65535:
        raise ConfigError(f"--tcp: {args.tcp} is not a port (0-65535)")
    if args.time_scale < 0:
        raise ConfigError("--time-scale: must be >= 0")
    try:
        return asyncio.run(_run(args))
    except KeyboardInterrupt:
        return 0


async def _run(args) -> int:
    import signal
    import sys

    from edge_agent.errors import ConfigError

    sim = PrinterSimulator(Identity(model=args.model), time_scale=args.time_scale)
    for text in args.set:
        result = sim.command(text)
        if not result.startswith("ok"):
            raise ConfigError(f"--set: {result}")
    try:
        if args.pty:
            where = await sim.start_pty()
            url = f"escpos+serial://{where}"
        else:
            host, port = await sim.start_tcp(args.host, args.tcp)
            where, url = f"{host}:{port}", f"escpos+tcp://{host}:{port}"
    except OSError as err:
        raise ConfigError(f"cannot listen: {err.strerror or err}") from err
    print(f"printer simulator on {where} ({url}); {sim.engine.describe()}", flush=True)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):
            pass

    def on_line() -> None:
        line = sys.stdin.readline()
        if not line:  # stdin closed: keep serving, stop listening to it
            loop.remove_reader(sys.stdin.fileno())
            return
        print(sim.command(line), flush=True)

    try:
        loop.add_reader(sys.stdin.fileno(), on_line)
    except (OSError, ValueError, NotImplementedError):
        pass
    try:
        await stop.wait()
    finally:
        try:
            loop.remove_reader(sys.stdin.fileno())
        except (OSError, ValueError, NotImplementedError):
            pass
        await sim.stop()
    return 0
