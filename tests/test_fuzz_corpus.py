"""Replay every input of the fuzz corpus (fuzz/corpus/<target>/) through its target.

The corpus holds the seeds and what the atheris campaigns (`make fuzz`) found that reached new
code, including each input that once crashed a parser (named regress-*): a regression brings
its crash back here, in `make test`, without atheris.

The hub's targets (fuzz/hub_ingest.py, fuzz/hub_api.py) check their properties on every input
here too: the batch writer on a temporary SQLite database, and on a PostgreSQL database of its
own when the server runs on 127.0.0.1:5432 (else that target is skipped, as the other
PostgreSQL tests are); the API on a temporary SQLite hub database.
"""

from __future__ import annotations

import pytest

from conftest import ROOT
from fuzz.targets import MAX_LEN, NEEDS_POSTGRES, TARGETS

CORPUS = ROOT / "fuzz" / "corpus"
FILES = sorted(p for p in CORPUS.glob("*/*") if p.is_file())


def test_every_target_has_a_corpus_and_every_corpus_a_target():
    assert {p.name for p in CORPUS.iterdir() if p.is_dir()} == set(TARGETS)
    assert all(any((CORPUS / name).iterdir()) for name in TARGETS)


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_the_corpus_replays_through_its_target_without_a_crash(target):
    if target in NEEDS_POSTGRES:
        from hubkit import pg_reachable

        if not pg_reachable():
            pytest.skip("PostgreSQL is not running on 127.0.0.1:5432 (trust auth, user postgres)")
    files = [p for p in FILES if p.parent.name == target]
    for path in files:
        data = path.read_bytes()
        try:
            TARGETS[target](data[:MAX_LEN])
        except Exception as err:  # name the input that broke, for the report
            raise AssertionError(f"{path.relative_to(ROOT)}: {type(err).__name__}: {err}") from err


def test_the_corpus_stays_small():
    assert sum(p.stat().st_size for p in FILES) < 2_000_000
