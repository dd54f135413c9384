"""A generic webhook: each intent POSTed as JSON, signed with HMAC-SHA256.

    POST URL  {"v": 1, "id": "<key>:<intent>", "action": create|comment|resolve|reopen,
               "correlation": KEY, "ticket": {store, region, device, what, kind, priority,
               tags, route}, "text": {summary, sections} | "note"}
    headers   X-Retail-Edge-Timestamp: <unix seconds>
              X-Retail-Edge-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>
              Idempotency-Key: <key>:<intent>   (the receiver drops a repeat)
A 2xx answer may carry {"key": ..., "url": ...} (both checked); anything else is ignored.
The receiver should check the signature and refuse timestamps older than a few minutes.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time

from hub.connectors.base import (HttpConnector, Result, base_url, read_secret, setting,
                                 text_field)


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, timestamp.encode() + b"." + body,
                                hashlib.sha256).hexdigest()


class Webhook(HttpConnector):
    type = "webhook"

    def configure(self) -> None:
        s, p = self.settings, self.path
        self.url = base_url(s, p)
        self.secret = read_secret(s, "secret", p)
        self.link = setting(s, "link", p, str, "")   # e.g. https://tickets/{key}

    def _post(self, intent, payload: dict) -> Result:
        b = intent.body
        idem = f"{intent.correlation}:{intent.id}"
        payload = {"v": 1, "id": idem, "action": intent.action,
                   "correlation": intent.correlation, **payload}
        body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
        ts = str(int(time.time()))
        resp = self.request("POST", self.url, content=body, headers={
            "Content-Type": "application/json", "Idempotency-Key": idem,
            "X-Retail-Edge-Timestamp": ts,
            "X-Retail-Edge-Signature": sign(self.secret.reveal().encode(), ts, body)})
        key = None
        if resp.content and resp.headers.get("content-type", "").startswith("application/json"):
            try:
                answer = resp.json()
            except ValueError:
                answer = None
            if isinstance(answer, dict):
                key = text_field(answer, "key", r"[A-Za-z0-9._:-]{1,100}", "answer",
                                 optional=True)
        key = key or b.get("key") or intent.external_key
        return Result(key=key, ref=key or intent.correlation,
                      url=self.link.replace("{key}", key) if self.link and key else None)

    def create(self, intent) -> Result:
        b = intent.body
        return self._post(intent, {"ticket": {k: b.get(k) for k in (
            "store", "region", "device", "what", "kind", "priority", "tags", "route",
            "severity", "since")}, "text": b["text"],
            "previous": intent.previous})

    def comment(self, intent, ref: str) -> Result:
        return self._post(intent, {"note": intent.body["text"]})

    resolve = comment
    reopen = comment

    def find(self, correlation: str, intent) -> Result | None:
        # The receiver de-duplicates by Idempotency-Key; the reference is our own key.
        if intent is not None and intent.action != "create":
            return Result(ref=correlation)
        return None


__all__ = ["Webhook", "sign"]
