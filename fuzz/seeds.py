"""Write the seed inputs of each target into fuzz/corpus/<target>/seed-*: one valid example of
each message form, so the fuzzer starts from inside the formats instead of finding them.

`python -m fuzz.seeds` (idempotent; the campaign adds the inputs it finds that reach new code).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "fuzz" / "corpus"


def seeds() -> dict[str, list[bytes]]:
    from edge_agent.collectors.scanner import protocol as sp
    from edge_agent.collectors.snmp import ber

    out: dict[str, list[bytes]] = {}
    # ESC/POS: replies as printers send them (fixtures: tests/fixtures/escpos/*.json).
    out["escpos_status"] = [b"\x16", b"\x12\x12\x12\x12", b"\x14\x00\x00\x0f\x11\x16",
                            b"\x16\x7e", b"\x00\xff\x41\x72", b"\x1e\x12\x12\x7e"]
    for path in sorted((ROOT / "tests" / "fixtures" / "escpos").glob("*.json")):
        for reply in json.loads(path.read_text())["exchanges"].values():
            out["escpos_status"].append(bytes.fromhex(reply))
    out["escpos_text"] = [b"\x5fTM-T88V\x00", b"\x11\x5f30.01 ESC/POS\x00", b"\x5f", b"\x20"]
    out["escpos_gs_g2"] = [b"\x5f" + b"12345" + b"\x00"]
    # Scanners: a scan with each suffix, a Honeywell menu reply, SSI packets.
    out["scanner_text"] = [b"\x00" + b"4006381333931\r", b"\x01" + b"ABC-123\n",
                           b"\x02" + b"0123456789012\r\n", b"\x80" + b"232BAD3\x06.",
                           b"\x83" + b"\x1d01095011010209171719050810ABCD1234\r"]
    out["scanner_ssi"] = [b"\x00" + sp.ssi_build(op, data, source=sp.SSI_SCANNER)
                          for op, data in ((sp.DECODE_DATA, b"\x0b4006381333931"),
                                           (sp.CMD_ACK, b""), (sp.CMD_NAK, b"\x01"),
                                           (sp.REPLY_REVISION, b"NBRSVAAC"))]
    # SNMP: GetResponses with each value type.
    def response(varbinds: list[tuple[str, int, bytes]], version: int = 1) -> bytes:
        vbs = b"".join(ber._tlv(0x30, ber._tlv(0x06, ber.encode_oid(o)) + ber._tlv(t, v))
                       for o, t, v in varbinds)
        pdu = ber._tlv(ber.GET_RESPONSE, ber._integer(7) + ber._integer(0) + ber._integer(0)
                       + ber._tlv(0x30, vbs))
        return ber._tlv(0x30, ber._integer(version) + ber._tlv(0x04, b"public") + pdu)

    out["snmp_ber"] = [
        response([("1.3.6.1.2.1.1.3.0", 0x43, b"\x01\x02\x03")]),
        response([("1.3.6.1.2.1.25.3.5.1.2.1", 0x04, b"\x80"),
                  ("1.3.6.1.2.1.43.11.1.1.9.1.1", 0x02, b"\xfe"),
                  ("1.3.6.1.2.1.1.2.0", 0x06, ber.encode_oid("1.3.6.1.4.1.11.2.3.9.1")),
                  ("1.3.6.1.2.1.1.5.0", 0x80, b""), ("1.3.6.1.2.1.4.20.1.1", 0x40,
                                                      b"\x0a\x00\x00\x07")], version=0),
        ber.get_request(1, b"public", 9, ["1.3.6.1.2.1.1.1.0"]),
    ]
    # TOML: the shipped example config and small ones.
    example = (ROOT / "agent.example.toml").read_bytes()
    out["toml_config"] = [
        example,
        b'[agent]\nstore = "s1"\nstate_dir = "/var/lib/edge-agent"\n[[devices]]\nid = "r1"\n'
        b'kind = "escpos"\n[devices.escpos]\nhost = "10.0.0.7"\n',
        b'[agent]\nstore = "s1"\n[sync]\nenabled = true\nhost = "hub"\ntls = false\n'
        b'[[devices]]\nid = "p"\nkind = "snmp"\n[devices.snmp]\nhost = "10.0.0.9"\n',
        b'[agent]\nstore = "s1"\nx = [[[[{a = 1}]]]]\n',
    ]
    # Replay lines: readings as the agent writes them.
    out["replay_line"] = [
        b'{"device":"receipt-1","kind":"escpos","ts":"2026-11-22T15:00:00.000Z","values":'
        b'{"device.status":"ok","printer.paper":"near_end","poll.errors":0},"stale":false,'
        b'"reason":null}',
        b'{"device":"h","kind":"host","ts":"2026-11-22T15:00:01Z","values":{"host.cpu_pct":'
        b'12.5},"stale":true,"reason":"timeout"}',
    ]
    # Envelopes of each kind (docs/protocol.md).
    env = {"v": 1, "id": "01a244d8-6b78-775b-a6ec-b402c941ec77", "seq": 1, "store": "store-1",
           "region": "r1", "ts": "2026-12-05T06:00:00.000Z"}
    bodies = {
        "telemetry": {"readings": [json.loads(out["replay_line"][0])]},
        "alert": {"alert": "d:paper_out", "device": "d", "what": "paper_out", "state": "raised",
                  "severity": "critical", "since": "2026-12-05T06:00:00.000Z",
                  "ts": "2026-12-05T06:00:00.000Z", "explanation": [], "decision": None},
        "decision": {"device": "d", "decision": "watch", "previous": "ok", "score": 0.5,
                     "threshold": 0.78, "model": "m-1", "features": {"a": 1.0},
                     "explanation": ["x"], "ts": "2026-12-05T06:00:00.000Z"},
        "event": {"event": "outbox_drops", "drops": {"telemetry": {"count": 1, "bytes": 9}},
                  "total": {"telemetry": {"count": 1, "bytes": 9}}},
        "birth": {"session": 3, "inventory": [{"id": "d", "kind": "escpos"}]},
        "death": {"session": 3},
    }
    out["wire_decode"] = [json.dumps({**env, "kind": kind, "body": body},
                                     separators=(",", ":")).encode()
                          for kind, body in bodies.items()]
    out.update(hub_seeds())
    return out


def hub_seeds() -> dict[str, list[bytes]]:
    """The hub harnesses read their bytes as choices (fuzz/draw.py): all zeros is an ordinary
    valid input. Seeds: one valid message of each kind, a batch of duplicates, and inputs drawn
    from a fixed pseudo-random sequence that each decode to a new mix of kinds and reasons."""
    import random

    from edge_protocol import UP_KINDS
    from edge_protocol.errors import ProtocolError
    from edge_protocol.timestamps import DEFAULT_SKEW
    from fuzz import hub_api, hub_ingest
    from hub.ingest.decode import make_decoder

    ingest = [bytes([0, 0, 0, hub_ingest.UP.index(k)]) for k in UP_KINDS] + [bytes([5])]
    decode = make_decoder("edge/v1", hub_ingest._clock, DEFAULT_SKEW)
    rng, seen = random.Random(15), set()
    for _ in range(3000):
        data = bytes(rng.getrandbits(8) for _ in range(rng.randint(8, 600)))
        mix = set()
        for name, payload, ignored in hub_ingest.batch(data):
            try:
                mix.add(decode(payload, name).kind)
            except ProtocolError as err:
                mix.add(err.code)
        if frozenset(mix) not in seen and len(ingest) < 40:
            seen.add(frozenset(mix))
            ingest.append(data)
    return {"hub_ingest_sqlite": ingest, "hub_ingest_postgres": list(ingest),
            "hub_api": hub_api.seeds()}


def write() -> dict[str, int]:
    counts = {}
    for target, items in seeds().items():
        folder = CORPUS / target
        folder.mkdir(parents=True, exist_ok=True)
        for data in items:
            (folder / f"seed-{hashlib.sha1(data).hexdigest()[:16]}").write_bytes(data)
        counts[target] = len(items)
    return counts


if __name__ == "__main__":
    for name, n in write().items():
        print(f"{name}: {n} seeds")
