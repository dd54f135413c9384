"""ESC/POS status bytes to shared-vocabulary values: requests, reply framing and decoding; no I/O.

Sources (see ../../../docs and PROTOCOLS.md section 1): Epson TM-U220A/TM-L60II/TM-U295 and
Bixolon SRP-350 manuals for DLE EOT; Citizen CBM1000 appendix 3 for telling replies apart;
TM-J2000 spec p.469 for GS I.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

DLE, EOT, ENQ, GS = 0x10, 0x04, 0x05, 0x1D
XON, XOFF = 0x11, 0x13
NUL = 0x00

# DLE EOT n: n=1 printer, 2 offline cause, 3 error cause, 4 roll paper sensor.
STATUS_REQUESTS = (1, 2, 3, 4)
# GS I n: 1 model id, 2 type, 3 ROM version (one byte each); 65 firmware, 66 maker, 67 model,
# 68 serial (0x5F, ASCII, 0x00).
GS_I_MODEL_ID, GS_I_TYPE, GS_I_ROM = 1, 2, 3
GS_I_FIRMWARE, GS_I_MAKER, GS_I_MODEL, GS_I_SERIAL = 65, 66, 67, 68
GS_I_TEXT_MAX = 80  # Longer "text" is a misread stream, not a model name.

# What one received byte is (Citizen CBM1000 App.3): a DLE EOT reply is 0xx1xx10, the first
# byte of an ASB block 0xx1xx00, XON 0x11, XOFF 0x13; ASB bytes 2-4, GS I and GS r are 0xx0xxxx.
STATUS, ASB_HEAD, XON_BYTE, XOFF_BYTE, OTHER = "status", "asb", "xon", "xoff", "other"


def status_request(n: int) -> bytes:
    """Return the DLE EOT n real-time status request."""
    if n not in range(1, 256):
        raise ValueError(f"DLE EOT n must be 1-255, got {n}")
    return bytes((DLE, EOT, n))


def gs_i_request(n: int) -> bytes:
    """Return the GS I n printer-ID request."""
    if n not in range(0, 256):
        raise ValueError(f"GS I n must be 0-255, got {n}")
    return bytes((GS, ord("I"), n))


def recover_request(clear_buffer: bool = False) -> bytes:
    """Return DLE ENQ 1 (recover from a recoverable error and restart) or 2 (and clear buffers)."""
    return bytes((DLE, ENQ, 2 if clear_buffer else 1))


def is_status_reply(b: int) -> bool:
    """True when a byte has the fixed bits of every DLE EOT reply: (b & 0x93) == 0x12."""
    return (b & 0x93) == 0x12


def classify(b: int) -> str:
    """Say what a received byte can be: status, asb (an ASB block's head), xon, xoff or other."""
    masked = b & 0x93
    if masked == 0x12:
        return STATUS
    if masked == 0x10:
        return ASB_HEAD
    if b == XON:
        return XON_BYTE
    if b == XOFF:
        return XOFF_BYTE
    return OTHER


@dataclass
class Scan:
    """The outcome of looking for one DLE EOT reply in received bytes."""

    reply: int | None = None      # the status byte, when one was found
    used: int = 0                 # bytes consumed up to and including the reply
    asb_blocks: int = 0           # complete unsolicited ASB blocks skipped
    flow: int = 0                 # XON/XOFF bytes skipped
    garbage: int = 0              # bytes that fit no reply
    need_more: bool = False       # the bytes end inside an ASB block


def find_status_reply(data: bytes) -> Scan:
    """Find the first DLE EOT reply in `data`, skipping ASB blocks, XON/XOFF and garbage.

    Never raises: any byte string gives a Scan. A 4-byte ASB block whose head is the last bytes
    received sets `need_more`; the caller reads on and scans again.
    """
    scan = Scan()
    i, n = 0, len(data)
    while i < n:
        kind = classify(data[i])
        if kind == STATUS:
            scan.reply, scan.used = data[i], i + 1
            return scan
        if kind == ASB_HEAD:
            if n - i < 4:
                scan.need_more, scan.used = True, i
                return scan
            # ASB bytes 2-4 are 0xx0xxxx; if they are not, the head was garbage.
            if all((b & 0x90) == 0 for b in data[i + 1:i + 4]):
                scan.asb_blocks += 1
                i += 4
                continue
            scan.garbage += 1
        elif kind in (XON_BYTE, XOFF_BYTE):
            scan.flow += 1
        else:
            scan.garbage += 1
        i += 1
    scan.used = n
    return scan


@dataclass
class TextScan:
    """The outcome of looking for one GS I text reply (0x5F, ASCII, 0x00) in received bytes."""

    text: str | None = None
    used: int = 0
    need_more: bool = False
    invalid: bool = False


def find_text_reply(data: bytes) -> TextScan:
    """Find a GS I 65-69 reply in `data`; flow-control bytes before it are skipped."""
    i = 0
    while i < len(data) and data[i] in (XON, XOFF):
        i += 1
    if i == len(data):
        return TextScan(need_more=True, used=i)
    if data[i] != 0x5F:
        return TextScan(invalid=True, used=len(data))
    end = data.find(b"\x00", i + 1)
    if end < 0:
        if len(data) - i - 1 > GS_I_TEXT_MAX:
            return TextScan(invalid=True, used=len(data))
        return TextScan(need_more=True, used=i)
    raw = data[i + 1:end]
    if len(raw) > GS_I_TEXT_MAX or not all(0x20 <= b < 0x7F for b in raw):
        return TextScan(invalid=True, used=end + 1)
    return TextScan(text=raw.decode("ascii").strip() or None, used=end + 1, invalid=not raw.strip())


# GS g 2 m nL nH: read an Epson maintenance counter (PROTOCOLS.md section 8). Cumulative
# counters (never reset): 148 line feeds, 149 head energizing count, 178 autocutter operations,
# 198 operating hours. The reply is 0x5F, 1-10 ASCII digits, NUL; an unsupported counter is not
# answered, and the printer ignores real-time commands while it answers.
COUNTER_LINE_FEEDS, COUNTER_HEAD_ENERGIZING, COUNTER_CUTS, COUNTER_HOURS = 148, 149, 178, 198
COUNTERS = (COUNTER_LINE_FEEDS, COUNTER_HEAD_ENERGIZING, COUNTER_CUTS, COUNTER_HOURS)
COUNTER_DIGITS_MAX = 10
# One line feed is 30 dots of paper feed; the TM-T88/T90 feed pitch is 1/180 inch per dot
# (their specifications), so a line is 30/180 inch = 4.2333 mm of paper under the head.
MM_PER_LINE = 30 / 180 * 25.4


def counter_request(n: int) -> bytes:
    """Return GS g 2 for maintenance counter n (0-65535)."""
    if n not in range(0, 65536):
        raise ValueError(f"counter must be 0-65535, got {n}")
    return bytes((GS, ord("g"), 0x32, 0x00, n & 0xFF, n >> 8))


@dataclass
class CounterScan:
    """The outcome of looking for one GS g 2 reply (0x5F, digits, NUL) in received bytes."""

    value: int | None = None
    used: int = 0
    need_more: bool = False
    invalid: bool = False


def find_counter_reply(data: bytes) -> CounterScan:
    """Find a GS g 2 reply in `data`; never raises.

    Flow control (XON/XOFF) and whole ASB blocks sent before the reply are skipped. Anything
    else before the header, a non-digit, an empty value or more than 10 digits is invalid; a
    reply not yet ended by NUL needs more bytes.
    """
    i, n = 0, len(data)
    while i < n:
        b = data[i]
        if b in (XON, XOFF):
            i += 1
            continue
        if classify(b) == ASB_HEAD:
            if n - i < 4:
                return CounterScan(used=i, need_more=True)
            if all((x & 0x90) == 0 for x in data[i + 1:i + 4]):
                i += 4
                continue
        break
    if i == n:
        return CounterScan(used=i, need_more=True)
    if data[i] != 0x5F:
        return CounterScan(used=n, invalid=True)
    j = i + 1
    while j < n and 0x30 <= data[j] <= 0x39 and j - i - 1 < COUNTER_DIGITS_MAX:
        j += 1
    digits = data[i + 1:j]
    if j == n:
        return CounterScan(used=i, need_more=True)
    if data[j] != NUL or not digits:
        return CounterScan(used=n, invalid=True)
    return CounterScan(value=int(digits), used=j + 1)


def counter_values(counters: dict[int, int]) -> dict[str, object]:
    """Map read counters onto the vocabulary: raw counters, head_km, cut_count, hours."""
    values: dict[str, object] = {f"printer.counter.{n}": v for n, v in sorted(counters.items())}
    if COUNTER_LINE_FEEDS in counters:
        values["printer.head_km"] = round(counters[COUNTER_LINE_FEEDS] * MM_PER_LINE / 1e6, 4)
    if COUNTER_CUTS in counters:
        values["printer.cut_count"] = counters[COUNTER_CUTS]
    if COUNTER_HOURS in counters:
        values["printer.operating_hours"] = counters[COUNTER_HOURS]
    return values


def parse_id_byte(b: int) -> int | None:
    """Return a GS I 1-3 one-byte reply (0xx0xxxx), or None when the byte cannot be one."""
    return b if (b & 0x90) == 0 else None


# Bits of each DLE EOT reply, by request (Epson TM spec; PROTOCOLS.md section 1).
B2, B3, B5, B6 = 0x04, 0x08, 0x20, 0x40


@dataclass(frozen=True)
class Status:
    """The four DLE EOT replies decoded into flags; None where a request was not answered."""

    drawer_pin_high: bool | None = None
    offline: bool | None = None
    waiting_recovery: bool | None = None
    feed_button: bool | None = None
    cover_open: bool | None = None
    feeding: bool | None = None
    paper_stop: bool | None = None
    error: bool | None = None
    mechanical: bool | None = None
    cutter_error: bool | None = None
    unrecoverable: bool | None = None
    auto_recoverable: bool | None = None
    paper_near_end: bool | None = None
    paper_end: bool | None = None
    raw: dict[int, int] = field(default_factory=dict, compare=False)


def decode(replies: dict[int, int], undefined: dict[int, int] | None = None) -> Status:
    """Decode DLE EOT replies {n: byte} into flags; bits a model leaves undefined give None."""
    undefined = undefined or {}

    def bit(n: int, mask: int) -> bool | None:
        if n not in replies or undefined.get(n, 0) & mask:
            return None
        return bool(replies[n] & mask)

    def pair(n: int, mask: int) -> bool | None:
        # Near-end and end are two bits each (sensors on either side); either one counts.
        if n not in replies or undefined.get(n, 0) & mask == mask:
            return None
        return bool(replies[n] & mask & ~undefined.get(n, 0))

    return Status(
        drawer_pin_high=bit(1, B2), offline=bit(1, B3), waiting_recovery=bit(1, B5),
        feed_button=bit(1, B6),
        cover_open=bit(2, B2), feeding=bit(2, B3), paper_stop=bit(2, B5), error=bit(2, B6),
        mechanical=bit(3, B2), cutter_error=bit(3, B3), unrecoverable=bit(3, B5),
        auto_recoverable=bit(3, B6),
        paper_near_end=pair(4, B2 | B3), paper_end=pair(4, B5 | B6),
        raw=dict(replies),
    )


def to_values(status: Status, drawer_open_when: str = "low") -> dict[str, object]:
    """Map decoded flags onto the shared vocabulary, with device.status the worst condition.

    `drawer_open_when` says which level of kick-out connector pin 3 means an open drawer (it
    depends on the drawer's switch), or "none" to not report the drawer.
    """
    values: dict[str, object] = {}
    if status.offline is not None:
        values["printer.online"] = not status.offline
    if status.cover_open is not None:
        values["printer.cover"] = "open" if status.cover_open else "closed"
    if status.paper_end or status.paper_stop:
        values["printer.paper"] = "out"
    elif status.paper_near_end:
        values["printer.paper"] = "near_end"
    elif status.paper_end is not None or status.paper_near_end is not None:
        values["printer.paper"] = "ok"
    if status.cutter_error is not None:
        values["printer.cutter"] = "error" if status.cutter_error else "ok"
    if status.unrecoverable:
        values["printer.error"] = "unrecoverable"
    elif status.cutter_error or status.auto_recoverable or status.mechanical or status.error:
        # An error the offline-cause byte reports but the error-cause byte does not explain is
        # still an error; call it recoverable until the printer says otherwise.
        values["printer.error"] = "recoverable"
    elif any(f is not None for f in (status.unrecoverable, status.cutter_error,
                                     status.auto_recoverable, status.error)):
        values["printer.error"] = "none"
    if status.mechanical is not None:
        values["printer.mechanical"] = "error" if status.mechanical else "ok"
    if status.auto_recoverable is not None:
        values["printer.overheat"] = bool(status.auto_recoverable)
    if status.drawer_pin_high is not None and drawer_open_when in ("high", "low"):
        is_open = status.drawer_pin_high == (drawer_open_when == "high")
        values["printer.drawer"] = "open" if is_open else "closed"
    values["device.status"] = overall(values)
    return values


def overall(values: dict[str, object]) -> str:
    """Return device.status for printer values: error, warning or ok."""
    if (values.get("printer.error") in ("recoverable", "unrecoverable")
            or values.get("printer.paper") == "out" or values.get("printer.cover") == "open"
            or values.get("printer.cutter") == "error"):
        return "error"
    if values.get("printer.paper") == "near_end" or values.get("printer.online") is False:
        # Offline with no cause named (FEED held, waiting for recovery) passes by itself.
        return "warning"
    return "ok"


def status_bytes(replies: Iterable[tuple[int, int]]) -> str:
    """Format replies for logs and reasons: '1=16 2=12 3=12 4=12'."""
    return " ".join(f"{n}={b:02X}" for n, b in replies)
