"""Zendesk Support: one ticket per problem by `external_id`, created with an Idempotency-Key.

    create    POST /api/v2/tickets.json  {"ticket": {subject, comment {body, public false},
              external_id (our key), tags, priority, type, group_id?, brand_id?}} with the
              header Idempotency-Key: our key (a repeated create returns the same ticket)
    find      GET  /api/v2/tickets.json?external_id=KEY  (the newest)
    comment   PUT  /api/v2/tickets/{id}.json  {"ticket": {"comment": {body, public false}}}
    resolve   PUT  same with "status": "solved"
    reopen    GET  the ticket first: tagged `wontfix_tag` -> refused "wontfix"; status closed
              (which Zendesk never reopens) -> a follow-up ticket, POST with
              via_followup_source_id (it inherits the tags), and the hub goes on with it;
              else PUT "status": "open" with the note
Auth: API token (email/token + token, basic) or an OAuth bearer token.
Facts and sources: ../shared/GOVERNANCE.md section 1; docs/tickets.md.
"""

from __future__ import annotations

from typing import Any

import httpx

from hub.connectors.base import (HttpConnector, Result, base_url, field, plain, read_secret,
                                 setting, text_field)

ID = r"[0-9]{1,20}"
STATUS = r"new|open|pending|hold|solved|closed"
PRIORITY = {"critical": "urgent", "high": "high", "medium": "normal", "low": "low"}
TYPE = {"incident": "incident", "maintenance": "task", "task": "task"}


class Zendesk(HttpConnector):
    type = "zendesk"

    def configure(self) -> None:
        s, p = self.settings, self.path
        self.url = base_url(s, p)
        self.mode = setting(s, "auth", p, str, "token", ("token", "bearer"))
        if self.mode == "token":
            self.email = setting(s, "email", p)
        self.token = read_secret(s, "token", p)
        self.wontfix_tag = setting(s, "wontfix_tag", p, str, "wont_fix")

    def auth(self) -> httpx.Auth | None:
        if self.mode == "token":
            return httpx.BasicAuth(f"{self.email}/token", self.token.reveal())
        return _Bearer(self.token.reveal())

    def _res(self, ticket: Any, what: str, refused: str | None = None) -> Result:
        tid = text_field(ticket, "id", ID, what)
        status = text_field(ticket, "status", STATUS, what, optional=True)
        return Result(key=tid, ref=tid, url=f"{self.url}/agent/tickets/{tid}", state=status,
                      refused=refused)

    def check(self) -> None:
        self.request("GET", f"{self.url}/api/v2/users/me.json", ok=(200,))

    def find(self, correlation: str, intent) -> Result | None:
        resp = self.request("GET", f"{self.url}/api/v2/tickets.json", ok=(200,),
                            params={"external_id": correlation})
        tickets = field(self.json(resp, "find"), "tickets", list, "find")
        best = None
        for i, t in enumerate(tickets[:100]):
            r = self._res(t, f"find.tickets[{i}]")
            if best is None or int(r.ref) > int(best.ref):
                best = r
        return best

    def _ticket(self, body: dict[str, Any], idem: str, what: str) -> Result:
        resp = self.request("POST", f"{self.url}/api/v2/tickets.json", ok=(200, 201),
                            json={"ticket": body}, headers={"Idempotency-Key": idem})
        return self._res(field(self.json(resp, what), "ticket", dict, what), f"{what}.ticket")

    def create(self, intent) -> Result:
        b = intent.body
        ticket: dict[str, Any] = {
            "subject": b["text"]["summary"],
            "comment": {"body": plain(b["text"]), "public": False},
            "external_id": intent.correlation,
            "tags": ["retail_edge"] + [t for t in b.get("tags", [])][:10],
            "priority": PRIORITY.get(b.get("priority"), "normal"),
            "type": TYPE.get(b.get("kind"), "task")}
        route = b.get("route") or {}
        for key, target in (("assignment_group", "group_id"), ("brand", "brand_id")):
            if str(route.get(key, "")).isdigit():
                ticket[target] = int(route[key])
        return self._ticket(ticket, intent.correlation, "create")

    def _put(self, ref: str, ticket: dict[str, Any], what: str) -> Result:
        resp = self.request("PUT", f"{self.url}/api/v2/tickets/{int(ref)}.json", ok=(200,),
                            json={"ticket": ticket})
        return self._res(field(self.json(resp, what), "ticket", dict, what), f"{what}.ticket")

    def comment(self, intent, ref: str) -> Result:
        return self._put(ref, {"comment": {"body": intent.body["text"], "public": False}},
                         "comment")

    def resolve(self, intent, ref: str) -> Result:
        return self._put(ref, {"status": "solved",
                               "comment": {"body": intent.body["text"], "public": False}},
                         "resolve")

    def reopen(self, intent, ref: str) -> Result:
        resp = self.request("GET", f"{self.url}/api/v2/tickets/{int(ref)}.json", ok=(200,))
        ticket = field(self.json(resp, "reopen"), "ticket", dict, "reopen")
        now = self._res(ticket, "reopen.ticket")
        tags = field(ticket, "tags", list, "reopen.ticket", optional=True) or []
        if self.wontfix_tag in tags:
            return Result(key=now.key, url=now.url, ref=now.ref, state=now.state,
                          refused="wontfix")
        if now.state == "closed":
            # Closed tickets are never reopened in Zendesk: a follow-up continues it.
            subject = field(ticket, "subject", str, "reopen.ticket", optional=True) or ""
            return self._ticket({"via_followup_source_id": int(ref),
                                 "subject": ("Follow-up: " + subject)[:150],
                                 "comment": {"body": intent.body["text"], "public": False},
                                 "external_id": intent.correlation},
                                f"{intent.correlation}-followup-{intent.id}", "followup")
        return self._put(ref, {"status": "open",
                               "comment": {"body": intent.body["text"], "public": False}},
                         "reopen")


class _Bearer(httpx.Auth):
    def __init__(self, token: str):
        self._token = token

    def auth_flow(self, request):
        request.headers["Authorization"] = f"Bearer {self._token}"
        yield request


__all__ = ["Zendesk"]
