"""`edge-hub fleet` for a chain: a line a region, then only the stores that need attention.

The same dict comes from the API (`GET /v1/fleet`) and, with --db, from hub/app.py's scoped
views with a local actor, so both print the same thing.
"""

from __future__ import annotations

import time
from typing import Any

from edge_common.output import escape, table


def _ago(ts: float | None) -> str:
    if ts is None:
        return "-"
    seconds = max(0.0, time.time() - ts)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit} ago"
    return f"{seconds:.0f}s ago"


def _state(online: bool | None) -> str:
    return "unknown" if online is None else "online" if online else "OFFLINE"


def render(view: dict[str, Any], rejects: dict[str, int] | None = None) -> str:
    total, regions, stores = view["total"], view["regions"], view["stores"]
    if not total["stores"]:
        return "no stores have reported yet" + (f" in region {escape(view['region'])}"
                                                if view.get("region") else "")
    rows = [(r["region"], r["stores"], r["online"], r["offline"], r["unknown"], r["at_risk"],
             r["open_alerts"], r["critical_alerts"], r["attention"]) for r in regions]
    lines = [table(("REGION", "STORES", "ONLINE", "OFFLINE", "UNKNOWN", "DEVICES AT RISK",
                    "OPEN ALERTS", "CRITICAL", "NEED ATTENTION"), rows)]
    unknown = total["unknown"]
    lines.append(f"\n{total['stores']} stores in {len(regions)} regions: {total['online']} "
                 f"online, {total['offline']} offline"
                 + (f", {unknown} not yet born" if unknown else "")
                 + f"; {total['at_risk']} devices at risk, {total['critical_alerts']} "
                   "critical alerts open")
    if stores:
        what = "every store" if view["listed"] == "all" else \
            f"stores needing attention ({total['attention']}; --all lists every store)"
        lines.append(f"\n{what}" + (f", first {len(stores)}" if view.get("truncated") else "")
                     + ":")
        lines.append(table(("REGION", "STORE", "STATE", "SINCE", "LAST SEEN", "DEVICES",
                            "AT RISK", "OPEN ALERTS", "WHY"),
                           [(s["region"], s["store"], _state(s["online"]), _ago(s["since"]),
                             _ago(s["last_seen"]), s["devices"], s["at_risk"],
                             s["open_alerts"], ", ".join(s["attention"]) or "-")
                            for s in stores]))
    elif view["listed"] == "attention":
        lines.append("\nno store needs attention")
    if rejects:
        lines.append("rejected messages: "
                     + ", ".join(f"{escape(k)} {v}" for k, v in rejects.items()))
    return "\n".join(lines)
