"""Walking the audit chain: intact, or the first entry edited, inserted, deleted or reordered.

The walk reads entries in seq order and keeps the last good one. At the first entry that does
not follow from it, it looks at that entry and the next to say what happened:

    edited      the entry's content no longer matches its hash (or its hash was recomputed
                and the next entry still records the old one)
    deleted     a seq is missing, or the entries after a removed one were renumbered
    inserted    an entry chains from the one before its predecessor
    reordered   an entry's content hashes only under another seq, and the entry it chained
                from now comes after it

Then the head row must name the last entry, and each signed checkpoint (from the database, and
any given from outside, such as a file) must be signed by a trusted key and match the entry at
its seq: a checkpoint beyond the last entry means the tail was cut.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Iterable

from hub.domains.audit.log import canonical, entry_hash
from hub.domains.audit.schema import GENESIS
from hub.errors import TamperError


@dataclass
class Report:
    """What a successful verification covered."""

    entries: int = 0
    head_seq: int = 0
    head_hash: str = GENESIS
    checkpoints: list[dict[str, Any]] = field(default_factory=list)


def _hash_at(row: dict[str, Any], seq: int) -> str:
    return entry_hash(row["prev_hash"], {**row, "seq": seq})


def walk(rows: Iterable[dict[str, Any]], want: set[int] | None = None,
         hash_at: dict[int, str] | None = None) -> Report:
    """Verify a chain of entries (as stored) in seq order; raise TamperError at the first fault.

    The hashes of the seqs in `want` (checkpoints' seqs) are put in `hash_at`.
    """
    it = iter(rows)
    report = Report()
    want = want or set()
    prev_seq, prev_hash, prevprev_hash = 0, GENESIS, None
    row = next(it, None)
    while row is not None:
        nxt = next(it, None)
        seq = row["seq"]
        self_ok = _hash_at(row, seq) == row["hash"]
        if self_ok and seq == prev_seq + 1 and row["prev_hash"] == prev_hash:
            report.entries += 1
            if seq in want and hash_at is not None:
                hash_at[seq] = row["hash"]
            prevprev_hash, prev_hash, prev_seq = prev_hash, row["hash"], seq
            row = nxt
            continue
        _fault(row, nxt, self_ok, prev_seq, prev_hash, prevprev_hash)
    report.head_seq, report.head_hash = prev_seq, prev_hash
    return report


def _fault(row: dict, nxt: dict | None, self_ok: bool, prev_seq: int, prev_hash: str,
           prevprev_hash: str | None) -> None:
    seq = row["seq"]
    expected = prev_seq + 1
    if self_ok:
        if seq > expected:
            gone = str(expected) if seq == expected + 1 else f"{expected}-{seq - 1}"
            raise TamperError(f"audit entry {gone} deleted (seq {gone} missing before {seq})")
        if seq < expected:  # cannot happen in seq order unless seqs were rewritten
            raise TamperError(f"audit entry {seq} reordered (seq {seq} after {prev_seq})")
        if prevprev_hash is not None and row["prev_hash"] == prevprev_hash:
            raise TamperError(f"audit entry {prev_seq} inserted (entry {seq} chains from "
                              f"entry {prev_seq - 1})")
        culprit = prev_seq if prev_seq else seq
        raise TamperError(f"audit entry {culprit} edited (its hash does not match what entry "
                          f"{seq} recorded)" if prev_seq else
                          f"audit entry {seq} edited (it does not start the chain)")
    moved = next((s for s in (seq - 1, seq + 1, seq - 2, seq + 2, seq - 3, seq + 3)
                  if s > 0 and _hash_at(row, s) == row["hash"]), None)
    if moved is not None:
        if moved < seq and row["prev_hash"] == prevprev_hash:
            raise TamperError(f"audit entry {prev_seq} inserted (entry {seq} was written "
                              f"as {moved} and chains from entry {prev_seq - 1})")
        if nxt is not None and nxt["hash"] == row["prev_hash"]:
            raise TamperError(f"audit entry {seq} reordered (it was written as {moved}; "
                              f"entry {nxt['seq']} comes before it)")
        if moved > seq:
            raise TamperError(f"audit entry {seq} deleted (the entries after it were "
                              f"renumbered: entry {seq} now holds entry {moved})")
        raise TamperError(f"audit entry {seq} reordered (it was written as {moved})")
    if nxt is not None and nxt["seq"] == seq + 1 and row["prev_hash"] != prev_hash \
            and _hash_at(nxt, seq) == nxt["hash"] and nxt["prev_hash"] == prev_hash:
        raise TamperError(f"audit entry {seq} inserted (entry {seq + 1} was written as {seq} "
                          f"and chains from entry {prev_seq})")
    raise TamperError(f"audit entry {seq} edited (its content does not match its hash)")


def check_head(report: Report, head_seq: int, head_hash: str) -> None:
    """The head row must name the last entry the walk verified."""
    if head_seq > report.head_seq:
        gone = f"{report.head_seq + 1}-{head_seq}" if head_seq > report.head_seq + 1 \
            else str(head_seq)
        raise TamperError(f"audit entry {gone} deleted (tail cut: the head says {head_seq} "
                          f"entries, the log ends at {report.head_seq})")
    if head_seq < report.head_seq:
        raise TamperError(f"audit entry {head_seq + 1} inserted (the head says {head_seq} "
                          f"entries, the log has {report.head_seq})")
    if head_hash != report.head_hash:
        raise TamperError(f"audit entry {head_seq} edited (its hash is not the head's)")


def checkpoint_body(seq: int, digest: str, ts: str) -> dict[str, Any]:
    """What a checkpoint signs."""
    return {"v": 1, "log": "edge-hub audit", "seq": int(seq), "hash": digest, "ts": ts}


def parse_checkpoint(data: Any) -> dict[str, Any]:
    """Check an exported checkpoint ({"checkpoint": body, "sig": {...}}) field by field."""
    if not isinstance(data, dict) or not isinstance(data.get("checkpoint"), dict) \
            or not isinstance(data.get("sig"), dict):
        raise TamperError("not a checkpoint: expected {\"checkpoint\": {...}, \"sig\": {...}}")
    body = data["checkpoint"]
    seq, digest, ts = body.get("seq"), body.get("hash"), body.get("ts")
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0 \
            or not isinstance(digest, str) or len(digest) != 64 or not isinstance(ts, str) \
            or body != checkpoint_body(seq, digest, ts):
        raise TamperError("not a checkpoint: malformed fields")
    return {"seq": seq, "hash": digest, "ts": ts, "sig": data["sig"]}


def check_checkpoint(cp: dict[str, Any], hash_at: dict[int, str], report: Report,
                     trusted: dict[str, str] | None, where: str) -> None:
    """One checkpoint: signed by a trusted key, and matching the entry at its seq."""
    try:  # the keys contract's verifier (helper C); the stand-in in hub/keys.py until then
        from edge_protocol.signing import verify
    except ImportError:
        from hub.keys import verify

    if trusted is not None:
        try:
            verify(canonical(checkpoint_body(cp["seq"], cp["hash"], cp["ts"])), cp["sig"],
                   trusted)
        except Exception as err:  # SignatureError from either implementation
            raise TamperError(f"checkpoint {where} at entry {cp['seq']}: signature does not "
                              f"verify ({err})") from err
    if cp["seq"] > report.head_seq:
        gone = f"{report.head_seq + 1}-{cp['seq']}" if cp["seq"] > report.head_seq + 1 \
            else str(cp["seq"])
        raise TamperError(f"audit entry {gone} deleted (tail cut behind checkpoint {where} "
                          f"at entry {cp['seq']}; the log ends at {report.head_seq})")
    if cp["seq"] and hash_at.get(cp["seq"]) != cp["hash"]:
        raise TamperError(f"audit entry {cp['seq']} or an earlier one rewritten or deleted "
                          f"(its hash differs from checkpoint {where}, signed {cp['ts']})")
    report.checkpoints.append({"seq": cp["seq"], "ts": cp["ts"], "kid": cp["sig"].get("kid"),
                               "from": where})


def load_checkpoint_file(path: str) -> dict[str, Any]:
    """Read an exported checkpoint file."""
    try:
        with open(path, "rb") as f:
            raw = f.read(65537)
    except OSError as err:
        raise TamperError(f"cannot read checkpoint {path}: {err.strerror or err}") from err
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        raise TamperError(f"checkpoint {path} is not JSON") from err
    return parse_checkpoint(data)
