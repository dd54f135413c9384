"""How ESC/POS printer families differ: one row per family, looked up by name, never branched on.

Sources per row are in README.md ("Model table"). A row says which status bits the family leaves
undefined, whether it answers GS I, and how it behaves in power save: `wake` is the byte sent to
a printer that accepted the connection but did not answer, `wake_delay_s` how long it needs
before it answers. A printer that answers only after the wake byte was asleep; one that answers
neither way is offline. Rows without a wake byte cannot tell sleep from a hang: silence is
offline for them.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Model:
    """One printer family's differences from the Epson TM reference."""

    name: str
    vendor: str
    # Bits that mean nothing on this family, by DLE EOT n; decoded as "not reported".
    undefined: dict[int, int] = field(default_factory=dict)
    # Which DLE EOT requests to send; some emulations answer only 1 and 4.
    requests: tuple[int, ...] = (1, 2, 3, 4)
    gs_i_text: bool = True       # answers GS I 65 (firmware) and 67 (model) as 5F ... 00
    gs_i_id: bool = True         # answers GS I 1 (model id) and 3 (ROM version) with one byte
    wake: bytes | None = b"\x00"  # NUL: any received data ends power save, NUL prints nothing
    wake_delay_s: float = 0.3
    # Maintenance counters it answers with GS g 2 (PROTOCOLS.md section 8); () for none.
    counters: tuple[int, ...] = ()
    note: str = ""


MODELS: dict[str, Model] = {m.name: m for m in (
    Model("epson-tm", "Epson", undefined={3: 0x04}, counters=(148, 149, 178, 198),
          note="TM-T88IV and later, T90, T20, m30 (thermal): n=3 b2 (mechanical error) belongs "
               "to impact models and is ignored here; power save ends on received data; GS g 2 "
               "counters 148/149/178/198 (TM-T90 and TM-L90 specifications). A TM-T88III does not "
               "answer GS g 2: use epson-tm-legacy"),
    Model("epson-tm-legacy", "Epson", undefined={3: 0x04},
          note="TM-T88III, TM-L60II: as epson-tm, without GS g 2 (the ESC/POS reference lists "
               "them among the printers not featuring it)"),
    Model("epson-tm-impact", "Epson",
          note="TM-U220/U295: n=3 b2 is a mechanical (carriage) error"),
    Model("bixolon", "Bixolon", undefined={1: 0x60}, gs_i_id=False,
          note="SRP-350/330II: n=1 b5/b6 undefined; GS I answers 65/66/67/69 only"),
    Model("citizen", "Citizen", undefined={1: 0x60, 3: 0x04},
          note="CT-S/CBM1000: n=3 b2 is the black-mark sensor, not an error"),
    Model("star-escpos", "Star", undefined={1: 0x60, 3: 0x04}, gs_i_text=False, wake=None,
          note="Star TSP in ESC/POS emulation only (Star mode has no DLE EOT, "
               "python-escpos #434); no documented power-save wake, so silence is offline"),
    Model("generic", "", undefined={1: 0x60, 3: 0x04}, gs_i_text=True, gs_i_id=False,
          note="unknown ESC/POS printer: only the bits every manual agrees on"),
)}

DEFAULT_MODEL = "epson-tm"


def get(name: str) -> Model:
    """Return a model row by name (KeyError names the known ones)."""
    try:
        return MODELS[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; known: {', '.join(MODELS)}") from None
