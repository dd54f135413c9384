"""The fuzz targets: one function per parser of outside input, taking the fuzzer's bytes.

A target raises only on a bug: the parser's own refusal (WireError, BerError, ConfigError,
ReadingError, ProtocolError) is the expected answer to bad input and is caught here; anything
else escaping, or an invariant below failing (an AssertionError), is a crash the campaign
reports. These functions need no atheris: `tests/test_fuzz_corpus.py` replays every file of
fuzz/corpus/<target>/ through them in `make test`, and fuzz/run.py hands them to atheris.

Targets:
    escpos_status   DLE EOT reply framing, the trust rule, decoding to the vocabulary
    escpos_text     GS I text and one-byte replies
    escpos_gs_g2    GS g 2 maintenance counter replies: a hook, active once the parser exists
    scanner_text    the suffix framer (CR/LF/CRLF, Honeywell menu replies), fed in pieces
    scanner_ssi     the SSI packet framer, fed in pieces
    snmp_ber        the SNMP v1/v2c GetResponse decoder
    toml_config     the agent's TOML config loader (check-config, run, SIGHUP)
    replay_line     `edge-agent replay`'s line parser
    wire_decode     the protocol decoder and every body check (edge_protocol.decode), on a
                    fixed clock so that the corpus's timestamps stay plausible
    hub_ingest_sqlite    a batch of MQTT messages from several stores through the hub's decoder
    hub_ingest_postgres  and its batch writer (commit or split, quarantine), into a real
                         database; properties checked per input (fuzz/hub_ingest.py)
    hub_api              whole requests through the hub API's ASGI app in-process, on a
                         temporary SQLite hub database (fuzz/hub_api.py)
"""

from __future__ import annotations

from typing import Callable

MAX_LEN = 4096  # inputs are capped here: the parsers bound their own input well below that


def _pieces(data: bytes) -> list[bytes]:
    """Cut input into reads the way a port delivers them: the first byte seeds the cut sizes."""
    if not data:
        return []
    seed, rest = data[0], data[1:]
    out, i, step = [], 0, 0
    while i < len(rest):
        step = (seed + 7 * step + 1) % 17 + 1
        out.append(rest[i:i + step])
        i += step
    return out


def escpos_status(data: bytes) -> None:
    from edge_agent.collectors.escpos import protocol as p
    from edge_agent.collectors.escpos.models import MODELS
    from edge_agent.reading import validate_values

    scan = p.find_status_reply(data)
    assert 0 <= scan.used <= len(data)
    assert scan.garbage + scan.flow + 4 * scan.asb_blocks <= len(data)
    if scan.reply is not None:
        assert p.is_status_reply(scan.reply) and data[scan.used - 1] == scan.reply
        assert not scan.need_more
    trailing = p.trailing_garbage(data[scan.used:])
    assert 0 <= trailing <= len(data) - scan.used
    # The collector's rule (a reply is trusted only with no byte around it that fits no
    # reply): a trusted reply's input holds nothing but status bytes, flow and ASB blocks.
    if scan.reply is not None and scan.garbage == 0 and trailing == 0 and not scan.asb_blocks:
        assert all(b in (p.XON, p.XOFF) for b in data[:scan.used - 1])
    # Four replies as four requests would get them: each byte of the input a reply; the last
    # byte picks the model row and the drawer setting (one decode an input keeps it fast).
    replies = {n: b for n, b in zip(p.STATUS_REQUESTS, data[:4]) if p.is_status_reply(b)}
    pick = data[-1] if data else 0
    models = list(MODELS.values())
    model = models[pick % len(models)]
    drawer = ("low", "high", "none")[(pick // len(models)) % 3]
    values = p.to_values(p.decode(replies, model.undefined), drawer)
    assert validate_values(values) == [], (values, validate_values(values))
    assert values["device.status"] in ("ok", "warning", "error")
    p.status_bytes(replies.items())


def escpos_text(data: bytes) -> None:
    from edge_agent.collectors.escpos import protocol as p

    scan = p.find_text_reply(data)
    assert 0 <= scan.used <= len(data)
    if scan.text is not None:
        assert len(scan.text) <= p.GS_I_TEXT_MAX
        assert all(0x20 <= ord(c) < 0x7F for c in scan.text), scan.text
        assert not scan.need_more
    for b in data[:8]:
        got = p.parse_id_byte(b)
        assert got is None or (got == b and b & 0x90 == 0)


def escpos_gs_g2(data: bytes) -> None:
    """Hook for the GS g 2 (maintenance counter) reply parser, which is not on this branch.

    When `edge_agent.collectors.escpos.protocol` grows it, name it in GS_G2_PARSER below and
    the campaign fuzzes it; until then this target checks nothing (and says so in its figures).
    """
    from edge_agent.collectors.escpos import protocol as p
    from edge_agent.errors import ProtocolError

    parser = getattr(p, GS_G2_PARSER, None)
    if parser is None:
        return
    try:
        parser(data)
    except (ProtocolError, ValueError):
        pass


GS_G2_PARSER = "parse_gs_g2_reply"


def _framer_events(framer, data: bytes) -> None:
    for piece in _pieces(data):
        events = framer.feed(piece)
        for kind, detail in events:
            assert kind in ("scan", "malformed", "reply"), kind
            if kind == "scan":
                assert isinstance(detail, int) and 0 <= detail <= framer.max_frame
            else:
                assert isinstance(detail, str) and len(detail) < 400
        assert framer.buffered <= framer.max_frame, (framer.buffered, framer.max_frame)


def scanner_text(data: bytes) -> None:
    from edge_agent.collectors.scanner.protocol import TextFramer

    if not data:
        return
    head = data[0]
    framer = TextFramer(suffix=("cr", "lf", "crlf")[head % 3], symbology=_symbology(head // 3),
                        max_frame=4 + head % 64, honeywell_replies=bool(head & 0x80))
    _framer_events(framer, data[1:])


def _symbology(n: int) -> str:
    from edge_agent.collectors.scanner.protocol import SYMBOLOGIES

    names = sorted(SYMBOLOGIES)
    return names[n % len(names)]


def scanner_ssi(data: bytes) -> None:
    from edge_agent.collectors.scanner.protocol import SsiFramer, ssi_parse
    from edge_agent.errors import ProtocolError

    if not data:
        return
    framer = SsiFramer(symbology=_symbology(data[0]), max_frame=258 + data[0])
    _framer_events(framer, data[1:])
    assert framer.acks_due >= 0
    try:
        packet = ssi_parse(data[1:])
    except ProtocolError:
        return
    assert 0 <= packet.opcode <= 255


def snmp_ber(data: bytes) -> None:
    from edge_agent.collectors.snmp import ber

    try:
        request_id, status, index, varbinds = ber.decode_response(data)
    except ber.BerError:
        return
    for value in (request_id, status, index):
        assert isinstance(value, int) and -(1 << 71) <= value < (1 << 71)
    assert len(varbinds) <= len(data) // 4
    for oid, value in varbinds:
        parts = oid.split(".")
        assert len(parts) >= 2 and all(x.isdigit() for x in parts), oid
        assert value is None or isinstance(value, (int, bytes, str))


def toml_config(data: bytes) -> None:
    from edge_agent.config import parse_text
    from edge_agent.errors import ConfigError

    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return  # load_config refuses non-UTF-8 files before parsing
    try:
        config = parse_text(text, "fuzz.toml")
    except ConfigError as err:
        assert err.problems and all(str(p) for p in err.problems)
        return
    assert config.agent.store
    assert len({d.id for d in config.devices}) == len(config.devices)


def replay_line(data: bytes) -> None:
    from edge_agent.cli.replay import parse_line
    from edge_agent.errors import ReadingError
    from edge_agent.reading import validate

    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return  # replay reads its file as UTF-8 text, with errors reported per line
    try:
        reading = parse_line(text, None)
    except ReadingError as err:
        assert str(err)
        return
    assert validate(reading) == [], validate(reading)
    reading.to_json()


# The clock the protocol target decodes against: the seeds' timestamps are of this day, and a
# fixed clock keeps them plausible (within the skew) whenever the corpus is replayed.
FUZZ_CLOCK_EPOCH = 1796450400.0  # 2026-12-05T06:00:00Z


def wire_decode(data: bytes) -> None:
    import edge_protocol as wire

    def clock() -> float:
        return FUZZ_CLOCK_EPOCH

    try:
        env = wire.decode(data, clock=clock)
    except wire.ProtocolError as err:
        assert err.code and isinstance(str(err), str)
        return
    assert env.kind in wire.UP_KINDS and 0 <= env.seq <= wire.MAX_INT
    # On its own topic it decodes the same; on another kind's topic it is refused as such.
    assert wire.decode(data, wire.topic(env.region, env.store, env.kind), clock=clock) == env
    other = "event" if env.kind != "event" else "alert"
    try:
        wire.decode(data, wire.topic(env.region, env.store, other), clock=clock)
        raise AssertionError("an envelope was accepted on another kind's topic")
    except wire.ProtocolError as err:
        assert err.code == "topic_mismatch", err
    # What the decoder accepted, encoded again, is accepted again and means the same.
    assert wire.decode(wire.encode(env._asdict()), clock=clock) == env


def hub_ingest_sqlite(data: bytes) -> None:
    from fuzz.hub_ingest import check

    check(data, "sqlite")


def hub_ingest_postgres(data: bytes) -> None:
    from fuzz.hub_ingest import check

    check(data, "postgresql")


def hub_api(data: bytes) -> None:
    from fuzz.hub_api import check

    check(data)


TARGETS: dict[str, Callable[[bytes], None]] = {
    "escpos_status": escpos_status,
    "escpos_text": escpos_text,
    "escpos_gs_g2": escpos_gs_g2,
    "scanner_text": scanner_text,
    "scanner_ssi": scanner_ssi,
    "snmp_ber": snmp_ber,
    "toml_config": toml_config,
    "replay_line": replay_line,
    "wire_decode": wire_decode,
    "hub_ingest_sqlite": hub_ingest_sqlite,
    "hub_ingest_postgres": hub_ingest_postgres,
    "hub_api": hub_api,
}

# Targets that need a PostgreSQL server (127.0.0.1:5432, trust auth, user postgres).
NEEDS_POSTGRES = {"hub_ingest_postgres"}
