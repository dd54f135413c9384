"""edge_common.output: untrusted text made safe for a terminal, in every table cell."""

from __future__ import annotations

import pytest

from edge_common.output import escape, table

CASES = {
    "ESC clearing the screen": ("\x1b[2J", "\\e[2J"),
    "BEL": ("a\x07", "a\\a"),
    "CR LF forging a row": ("p1\r\nfake  ok", "p1\\r\\nfake  ok"),
    "NUL": ("p\x001", "p\\01"),
    "backspace": ("ok\x08\x08no", "ok\\b\\bno"),
    "DEL and a C1 control": ("\x7f\x9b", "\\x7f\\x9b"),
    "right-to-left override": ("abc\u202efed", "abc\\u202efed"),
    "bidi isolate": ("\u2066x\u2069", "\\u2066x\\u2069"),
    "zero-width space": ("a\u200bb", "a\\u200bb"),
    "plain text is unchanged": ("store-0001 ok", "store-0001 ok"),
    "accents and emoji are printable": ("caf\u00e9 \u2615", "caf\u00e9 \u2615"),
}


@pytest.mark.parametrize("raw,shown", CASES.values(), ids=CASES.keys())
def test_escape_makes_control_and_bidi_characters_visible(raw, shown):
    assert escape(raw) == shown


def test_a_table_escapes_every_cell_so_no_row_can_be_forged():
    out = table(("DEVICE", "STATUS"), [("p1\r\nforged", "ok\x1b[2J"), ("p2", None)], width=80)
    lines = out.splitlines()
    assert len(lines) == 3  # header and two rows: the CR/LF did not make a fourth
    assert "\x1b" not in out and "\r" not in out
    assert "p1\\r\\nforged" in lines[1] and lines[2].split() == ["p2", "-"]
