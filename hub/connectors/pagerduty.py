"""PagerDuty Events API v2: one alert per problem by `dedup_key` (our correlation key).

    create, comment, reopen   POST /v2/enqueue  event_action "trigger", the same dedup_key:
                              PagerDuty folds it into the open alert (a repeat updates it)
    resolve                   POST /v2/enqueue  event_action "resolve"
    find                      none is needed: a trigger with the same dedup_key is itself
                              idempotent, so a create whose answer was lost is simply sent again
The answer is 202 {"status": "success", "dedup_key": ...}; 429 means the event was NOT taken
(about 120 events a minute per integration key): retried after the backoff. After a resolve, a
trigger opens a new alert, and acknowledge/resolve events for a resolved key are dropped.
Auth: the integration's routing key, from a file or the environment.
Facts and sources: ../shared/GOVERNANCE.md section 1; docs/tickets.md.
"""

from __future__ import annotations

from typing import Any

from hub.connectors.base import (HttpConnector, Permanent, Result, base_url, field, read_secret,
                                 setting, text_field)

SEVERITY = {"critical": "critical", "high": "error", "medium": "warning", "low": "info"}


class PagerDuty(HttpConnector):
    type = "pagerduty"

    def configure(self) -> None:
        s, p = self.settings, self.path
        self.url = base_url(s, p, "https://events.pagerduty.com")
        self.routing_key = read_secret(s, "routing_key", p)
        self.source = setting(s, "source", p, str, "retail-edge-hub")

    def _event(self, intent, action: str, summary: str, details: Any) -> Result:
        b = intent.body
        event: dict[str, Any] = {"routing_key": self.routing_key.reveal(),
                                 "event_action": action, "dedup_key": intent.correlation}
        if action == "trigger":
            event["payload"] = {
                "summary": summary[:1024], "source": b.get("store") or self.source,
                "severity": SEVERITY.get(b.get("priority"), "warning"),
                "component": b.get("device"), "group": b.get("store"),
                "class": b.get("what"), "custom_details": details}
        resp = self.request("POST", f"{self.url}/v2/enqueue", json=event, ok=(200, 202))
        body = self.json(resp, action)
        status = field(body, "status", str, action)
        if status != "success":
            raise Permanent(f"{self.name}: {action}: status {status[:40]!r}")
        key = text_field(body, "dedup_key", r"[^\x00-\x1f]{1,255}", action, optional=True)
        return Result(key=key or intent.correlation, ref=intent.correlation,
                      state="resolved" if action == "resolve" else "triggered")

    def create(self, intent) -> Result:
        t = intent.body["text"]
        return self._event(intent, "trigger", t["summary"],
                           {title: lines for title, lines in t["sections"]})

    def comment(self, intent, ref: str) -> Result:
        return self._event(intent, "trigger", intent.body.get("summary") or
                           intent.body["text"][:200], {"note": intent.body["text"]})

    def resolve(self, intent, ref: str) -> Result:
        return self._event(intent, "resolve", "", None)

    def reopen(self, intent, ref: str) -> Result:
        return self.comment(intent, ref)

    def find(self, correlation: str, intent) -> Result | None:
        # Nothing to look up: a trigger with the same dedup_key is idempotent, and for a
        # comment or resolve the reference is the key itself.
        if intent is not None and intent.action != "create":
            return Result(key=correlation, ref=correlation)
        return None


__all__ = ["PagerDuty"]
