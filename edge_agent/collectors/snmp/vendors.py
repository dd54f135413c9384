"""Printer makers' differences as table rows: enterprise number, sysDescr patterns, level codes."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Mapping

ENTERPRISES = "1.3.6.1.4.1."


@dataclass(frozen=True)
class Vendor:
    """One maker's row: how to read its sysDescr and which supply levels it means differently."""

    name: str | None
    enterprises: tuple[int, ...] = ()
    # Named groups vendor/model/firmware/serial, matched against sysDescr.
    descr: re.Pattern[str] | None = None
    # True when sysDescr names the model better than hrDeviceDescr (which some makers fill with
    # a generic engine name, such as Konica Minolta's "Generic 28C-1").
    model_from_descr: bool = False
    # Supply or tray levels that this maker uses outside the Printer-MIB's -1/-2/-3.
    level_codes: Mapping[int, str] = field(default_factory=dict)
    # Text a maker appends to every supply description that is not part of its name.
    description_noise: re.Pattern[str] | None = None

    def parse(self, descr: str | None) -> dict[str, str]:
        """Return what the sysDescr pattern finds (vendor, model, firmware, serial)."""
        if not descr or self.descr is None:
            return {}
        m = self.descr.search(descr)
        if not m:
            return {}
        found = {k: v.strip() for k, v in m.groupdict().items() if v and v.strip()}
        if "vendor" in found:
            found["vendor"] = BRANDS.get(found["vendor"].upper(), found["vendor"])
        return found

    def clean_description(self, text: str) -> str:
        """Drop a maker's noise from a supply description."""
        if self.description_noise is None:
            return text
        return self.description_noise.sub("", text).strip() or text


def _rx(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.IGNORECASE)


GENERIC = Vendor(None)
# Brand names as their makers write them, for brands read from sysDescr in capitals.
BRANDS = {"RICOH": "Ricoh", "LANIER": "Lanier", "NRG": "NRG", "SAVIN": "Savin",
          "GESTETNER": "Gestetner"}

VENDORS: tuple[Vendor, ...] = (
    Vendor("HP", (11,), _rx(r"SN:(?P<serial>[A-Z0-9]{6,})")),
    Vendor("Brother", (2435,), _rx(r"Firmware Ver\.?\s*(?P<firmware>[\w.]+)")),
    Vendor("Canon", (1602,), _rx(r"^Canon\s+(?P<model>[^/]+?)\s*(/|$)")),
    # Ricoh sells the same machines as Lanier, NRG, Savin and Gestetner: the brand is the first
    # word of sysDescr, then the model, then the firmware ("RICOH MP C2503 1.35 / ...").
    # LibreNMS notes that they report -100 for "almost empty" (normalised to 0 %).
    Vendor("Ricoh", (367,), _rx(r"^(?P<vendor>RICOH|LANIER|NRG|SAVIN|Gestetner)\s+"
                                r"(?P<model>[^/]+?)\s+(?P<firmware>\d[\d.]*)\s*/"),
           model_from_descr=True, level_codes={-100: "low"}),
    Vendor("Samsung", (236,), _rx(r"^Samsung\s+(?P<model>[^;]+?)(\s+Series)?\s*;\s*"
                                  r"(?P<firmware>[^;]+)"), model_from_descr=True),
    Vendor("Xerox", (253,), _rx(r"^Xerox\s+(?P<model>[^;]+?)\s*;\s*(SS|System)\s+"
                                r"(?P<firmware>[\d.]+)"), model_from_descr=True),
    Vendor("FUJIFILM", (297,), _rx(r"^(FUJIFILM|FUJI XEROX)\s+(?P<model>[^;]+?)\s*(;|$)"),
           model_from_descr=True),
    Vendor("Konica Minolta", (18334,), _rx(r"^KONICA MINOLTA\s+(?P<model>.+)$"),
           model_from_descr=True),
    Vendor("Sharp", (2385,), _rx(r"^SHARP\s+(?P<model>\S+)"), model_from_descr=True),
    Vendor("Epson", (1248,)),
    Vendor("Kyocera", (1347,)),
    Vendor("Dell", (674,)),
    Vendor("Lexmark", (641,), _rx(r"^Lexmark\s+(?P<model>\S+)\s+version\s+(?P<firmware>\S+)")),
    Vendor("OKI", (2001,)),
    Vendor("Toshiba", (1129,), _rx(r"^TOSHIBA\s+(?P<model>.+)$"), model_from_descr=True),
    Vendor("Zebra", (10642, 683)),
)
_BY_ENTERPRISE = {e: v for v in VENDORS for e in v.enterprises}


@lru_cache(maxsize=256)
def vendor_for(object_id: str | None) -> Vendor:
    """Return the maker's row for a sysObjectID, or the generic row."""
    if object_id and object_id.startswith(ENTERPRISES):
        number = object_id[len(ENTERPRISES):].split(".", 1)[0]
        if number.isdigit() and int(number) in _BY_ENTERPRISE:
            return _BY_ENTERPRISE[int(number)]
    return GENERIC
