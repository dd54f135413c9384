"""What a ticket says: the store, the device, what happened since when, why the hub thinks so,
the likely cause and the part to prepare, and a hint for the store.

The text is built when the intent is made and stored with it, so a ticket delivered hours later
says what was known when the alert came. Only named fields go in: device facts (model, serial,
firmware, location), the decision's provenance and the last readings of vocabulary names. No
customer or payment data: nothing the agent sends carries any, and `scrub()` removes card-like
digit runs from free text anyway (a defence, tested, not a licence to send such text).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Mapping

# Reading names a ticket may quote (the vocabulary's own prefixes); anything else is left out.
_READING_PREFIXES = ("device.", "printer.", "tray.", "supply.", "scanner.", "usb.", "host.",
                     "poll.")
_MAX_READINGS = 20
_MAX_LINE = 300


@dataclass(frozen=True)
class Cause:
    """The likely cause, the part or action to prepare, and the hint for the store."""

    cause: str
    part: str
    action: str      # an action name from the policy's tiers (dispatch_technician, ...)
    hint: str


# (device kind, alert what) -> Cause; "*" matches any what of that kind.
CAUSES: Mapping[tuple[str, str], Cause] = {
    ("escpos", "cutter_error"): Cause("autocutter blade worn or jammed", "autocutter unit",
                                      "dispatch_technician",
                                      "switch to the back printer until the cutter is replaced"),
    ("escpos", "paper_jam"): Cause("paper dust or a torn roll in the paper path",
                                   "paper-path cleaning kit", "order_part",
                                   "open the cover, remove the torn paper, reload the roll"),
    ("escpos", "failed"): Cause("print head or controller failure", "print head",
                                "replace_device", "switch to the back printer"),
    ("escpos", "predicted_failure"): Cause("print head or autocutter wearing out",
                                           "print head and autocutter unit",
                                           "dispatch_technician",
                                           "nothing to do now; keep the back printer ready"),
    ("escpos", "*"): Cause("receipt printer fault", "receipt printer spare",
                           "dispatch_technician", "switch to the back printer"),
    ("snmp", "*"): Cause("network printer fault (fuser, drum or paper path)",
                         "fuser and paper-path cleaning kit", "dispatch_technician",
                         "print to the office printer meanwhile"),
    ("scanner", "*"): Cause("scanner cable or connector worn", "scanner cable",
                            "dispatch_technician", "use the handheld scanner at the next lane"),
    ("usb", "*"): Cause("USB cable or port loose", "USB cable", "dispatch_technician",
                        "reseat the cable; use the next lane meanwhile"),
    ("host", "disk_full"): Cause("register disk filling up (logs, updates)", "register disk",
                                 "remote_reset", "move customers to the next register"),
    ("host", "*"): Cause("register disk or PC hardware", "register disk", "replace_device",
                         "move customers to the next register"),
}
UNKNOWN_CAUSE = Cause("unknown: see the readings", "none identified", "dispatch_technician",
                      "use another device of the same kind if the store has one")


def cause_for(kind: str | None, what: str) -> Cause:
    return CAUSES.get((kind or "", what)) or CAUSES.get((kind or "", "*")) or UNKNOWN_CAUSE


_DIGITS = re.compile(r"(?:\d[ -]?){13,19}")


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def scrub(text: str) -> str:
    """Printable, bounded text with card-number-like digit runs replaced."""
    def repl(m: re.Match) -> str:
        digits = re.sub(r"\D", "", m.group(0))
        return "[redacted]" if 13 <= len(digits) <= 19 and _luhn(digits) else m.group(0)

    text = "".join(c if c.isprintable() else " " for c in str(text))
    return _DIGITS.sub(repl, text)[:_MAX_LINE]


@dataclass(frozen=True)
class DeviceFacts:
    """What the hub knows of a device (from the fleet tables; the app layer fills it in)."""

    kind: str | None = None
    model: str | None = None
    serial: str | None = None
    firmware: str | None = None
    location: str | None = None
    readings: Mapping[str, Any] = field(default_factory=dict)
    readings_ts: str | None = None


def _num(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3f}".rstrip("0").rstrip(".")
    return str(v)


def render(*, store: str, region: str, device: str, what: str, severity: str, since: str,
           kind: str, priority: str, correlation: str, facts: DeviceFacts,
           decision: Mapping[str, Any] | None, explanation: list[str],
           hint: str | None, tiers: Mapping[str, str], previous: str | None = None
           ) -> dict[str, Any]:
    """The ticket's text: a summary line and titled sections of lines (each connector lays
    them out in its own format: plain text, ADF paragraphs, a JSON object)."""
    cause = cause_for(facts.kind, what)
    dev_kind = facts.kind or "device"
    summary = scrub(f"[{store}] {device} ({dev_kind}): {what.replace('_', ' ')}")[:160]
    sections: list[tuple[str, list[str]]] = []
    dev = [f"Store: {store} (region {region})",
           f"Device: {device}, {dev_kind}"
           + (f", model {facts.model}" if facts.model else "")
           + (f", serial {facts.serial}" if facts.serial else "")
           + (f", firmware {facts.firmware}" if facts.firmware else ""),
           f"Where: {facts.location or 'not recorded'}"]
    sections.append(("Device", dev))
    sections.append(("What happened", [f"{what.replace('_', ' ')} ({severity}) since {since}"]
                     + [f"- {e}" for e in explanation[:10]]))
    prov: list[str] = []
    if decision:
        d = decision
        prov.append(f"Decision: {d.get('decision')}, model {d.get('model') or 'rules only'}")
        if d.get("score") is not None:
            prov.append(f"Score {_num(d.get('score'))} against threshold "
                        f"{_num(d.get('threshold'))}")
        for e in list(d.get("explanation") or [])[:10]:
            prov.append(f"- {e}")
        feats = d.get("features") or {}
        if isinstance(feats, Mapping) and feats:
            prov.append("Features: " + ", ".join(
                f"{k}={_num(v)}" for k, v in sorted(feats.items())[:_MAX_READINGS]))
    else:
        prov.append("Decision: a rule on the device's own report (no model score)")
    readings = {k: v for k, v in sorted(facts.readings.items())
                if isinstance(k, str) and k.startswith(_READING_PREFIXES)
                and isinstance(v, (str, int, float, bool))}
    if readings:
        prov.append("Last readings" + (f" at {facts.readings_ts}" if facts.readings_ts else "")
                    + ": " + ", ".join(f"{k}={_num(v)}"
                                       for k, v in list(readings.items())[:_MAX_READINGS]))
    sections.append(("Why the hub thinks so", prov))
    tier = tiers.get(cause.action, "recommend")
    tier_words = {"automatic": "done automatically", "approval": "needs approval",
                  "recommend": "recommendation only"}[tier]
    sections.append(("Likely cause and what to prepare",
                     [f"Likely cause: {cause.cause}", f"Part or action: {cause.part}",
                      f"Next step: {cause.action.replace('_', ' ')} ({tier_words})"]))
    sections.append(("For the store", [hint or cause.hint]))
    meta = [f"Ticket type: {kind}, priority {priority}", f"Correlation key: {correlation}"]
    if previous:
        meta.append(f"Follows the earlier ticket {previous} for the same problem")
    sections.append(("Hub", meta))
    return {"summary": summary,
            "sections": [[scrub(title), [scrub(line) for line in lines]]
                         for title, lines in sections],
            "cause": {"cause": cause.cause, "part": cause.part, "action": cause.action,
                      "tier": tier}}


def plain(text: Mapping[str, Any]) -> str:
    """The sections as plain text (ServiceNow, Zendesk, webhook)."""
    out = []
    for title, lines in text["sections"]:
        out.append(f"{title}:")
        out.extend(f"  {line}" for line in lines)
    return "\n".join(out)
