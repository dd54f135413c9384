"""The audit log: one append-only, hash-chained record of every change of state.

    seq = record(tx, clock, actor, "alerts.ack", "alert:3f2a...", {"store": "s1"}, "api:10.0.0.5")

`record` runs in the caller's transaction, so an action and its entry commit together or not
at all. `verify(db)` walks the chain and raises TamperError naming the first entry edited,
inserted, deleted or reordered, or a tail cut behind a checkpoint. Checkpoints (checkpoint.py)
sign the head with the hub's key. docs/audit.md says what is recorded and how to verify.
"""

from __future__ import annotations

from typing import Any, Iterable

from hub.domains.audit import checkpoint
from hub.domains.audit.log import (canonical, entries, entry_hash, format_ts, head, iter_raw,
                                  parse_since, record)
from hub.domains.audit.schema import MIGRATIONS
from hub.domains.audit.verify import (Report, check_checkpoint, check_head,
                                      load_checkpoint_file, parse_checkpoint, walk)


def verify(db: Any, trusted: dict[str, str] | None = None,
           external: Iterable[tuple[str, dict[str, Any]]] = ()) -> Report:
    """Verify the whole log of a store, its head, its stored checkpoints and `external` ones
    ((where, parsed checkpoint) pairs, such as a file's). Signatures are checked when
    `trusted` keys are given. Raise TamperError at the first fault."""
    with db.read() as tx:
        head_seq, head_hash = head(tx)
        inside = checkpoint.stored(tx)
    cps = [(f"file {w}" if not w.startswith(("file", "mqtt")) else w, cp)
           for w, cp in external] + [("in the database", cp) for cp in inside]
    want = {cp["seq"] for _, cp in cps}
    hash_at: dict[int, str] = {}
    report = walk(iter_raw(db), want, hash_at)
    # An outside checkpoint proves more than the head row (which lives in the same database):
    # check them first, so a cut tail is reported as such.
    for where, cp in cps:
        check_checkpoint(cp, hash_at, report, trusted, where)
    check_head(report, head_seq, head_hash)
    return report


__all__ = ["MIGRATIONS", "record", "entries", "verify", "walk", "head", "iter_raw", "canonical",
           "entry_hash", "format_ts", "checkpoint", "Report", "parse_checkpoint",
           "load_checkpoint_file", "check_head", "parse_since"]
