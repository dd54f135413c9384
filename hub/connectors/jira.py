"""Jira Cloud (REST v3) and Jira Service Management: one issue per problem by a dedup label.

    create    POST /rest/api/3/issue  project, issuetype, summary, labels [our key, tags...],
              priority (by name, optional), description in ADF
              (JSM mode: POST /rest/servicedeskapi/request with serviceDeskId, requestTypeId,
              requestFieldValues {summary, description (text), labels})
    find      POST /rest/api/3/search/jql  labels = "KEY" ORDER BY created DESC, fields named
              (the old /search was removed); search is eventually consistent, so after a lost
              answer a miss is looked up again `lookup_rounds` times, `settle_s` apart, before
              the issue is created again (a duplicate is what jiralert users complain about)
    comment   POST /rest/api/3/issue/{key}/comment  {"body": ADF}
    resolve   GET  /rest/api/3/issue/{key}/transitions?expand=transitions.fields, the first
              whose name is in `resolve_transitions`; POST it with the resolution when the
              screen has that field, and the note as a comment update
    reopen    GET  the issue's resolution first: one of `wontfix_resolutions` -> refused
              "wontfix"; else the first transition named in `reopen_transitions`
Auth: basic (email + API token) or bearer (a personal access token or OAuth 2.0 token).
Facts and sources: ../shared/GOVERNANCE.md section 1; docs/tickets.md.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx

from hub.connectors.base import (ConfigError, HttpConnector, NotYet, Permanent, Result,
                                 base_url, field, read_secret, setting, text_field)

KEY = r"[A-Z][A-Z0-9_]{0,20}-[0-9]{1,12}"
ID = r"[0-9]{1,20}"
NAME = r"[^\x00-\x1f]{1,100}"


def adf(text: dict[str, Any] | str) -> dict[str, Any]:
    """Atlassian Document Format: a heading and a paragraph (lines joined by hard breaks)
    per section, or one paragraph for a plain string."""
    def para(lines: list[str]) -> dict[str, Any]:
        content: list[dict[str, Any]] = []
        for i, line in enumerate(lines):
            if i:
                content.append({"type": "hardBreak"})
            if line:
                content.append({"type": "text", "text": line})
        return {"type": "paragraph", "content": content}

    if isinstance(text, str):
        return {"type": "doc", "version": 1, "content": [para(text.split("\n"))]}
    content: list[dict[str, Any]] = []
    for title, lines in text["sections"]:
        content.append({"type": "heading", "attrs": {"level": 3},
                        "content": [{"type": "text", "text": title}]})
        content.append(para(list(lines)))
    return {"type": "doc", "version": 1, "content": content}


def _label(tag: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in tag)[:255]


class Jira(HttpConnector):
    type = "jira"

    def configure(self) -> None:
        s, p = self.settings, self.path
        self.url = base_url(s, p)
        self.mode = setting(s, "auth", p, str, "basic", ("basic", "bearer"))
        if self.mode == "basic":
            self.email = setting(s, "email", p)
        self.token = read_secret(s, "token", p)
        self.flavour = setting(s, "flavour", p, str, "jira", ("jira", "jsm"))
        self.project = setting(s, "project", p, str, "")
        self.issue_types = dict(setting(s, "issue_types", p, dict,
                                        {"incident": "Bug", "maintenance": "Task",
                                         "task": "Task"}))
        self.priorities = dict(setting(s, "priorities", p, dict,
                                       {"critical": "Highest", "high": "High",
                                        "medium": "Medium", "low": "Low"}))
        self.set_priority = setting(s, "set_priority", p, bool, True)
        self.resolve_transitions = tuple(setting(s, "resolve_transitions", p, list,
                                                 ["Done", "Resolve Issue", "Resolve"]))
        self.reopen_transitions = tuple(setting(s, "reopen_transitions", p, list,
                                                ["Reopen", "Reopen Issue", "To Do",
                                                 "Back to To Do"]))
        self.resolution = setting(s, "resolution", p, str, "Done")
        self.wontfix = tuple(setting(s, "wontfix_resolutions", p, list,
                                     ["Won't Do", "Won't Fix", "Declined"]))
        self.lookup_rounds = setting(s, "lookup_rounds", p, int, 2)
        self.settle_s = float(setting(s, "settle_s", p, (int, float), 30))
        if self.flavour == "jsm":
            self.service_desk = str(setting(s, "service_desk_id", p, (str, int)))
            self.request_type = str(setting(s, "request_type_id", p, (str, int)))
        elif not self.project:
            raise ConfigError(f"{p}.project: missing (or give each route a project)")

    def auth(self) -> httpx.Auth | None:
        if self.mode == "basic":
            return httpx.BasicAuth(self.email, self.token.reveal())
        return _Bearer(self.token.reveal())

    def _issue(self, key: str) -> str:
        return f"{self.url}/rest/api/3/issue/{quote(key, safe='')}"

    def _res(self, key: str, state: str | None = None, refused: str | None = None) -> Result:
        return Result(key=key, ref=key, url=f"{self.url}/browse/{key}", state=state,
                      refused=refused)

    def check(self) -> None:
        self.request("GET", f"{self.url}/rest/api/3/myself", ok=(200,))

    def find(self, correlation: str, intent) -> Result | None:
        jql = f'labels = "{correlation}" ORDER BY created DESC'
        resp = self.request("POST", f"{self.url}/rest/api/3/search/jql", ok=(200,), json={
            "jql": jql, "fields": ["status", "resolution"], "maxResults": 1})
        issues = field(self.json(resp, "find"), "issues", list, "find")
        if not issues:
            if intent is not None and intent.action == "create" \
                    and intent.attempts <= self.lookup_rounds:
                # Search is eventually consistent: a fresh issue may be missing from it yet.
                raise NotYet(f"{self.name}: not found by its label yet; looking again "
                             "before creating it again", self.settle_s)
            return None
        key = text_field(issues[0], "key", KEY, "find.issues[0]")
        return self._res(key, self._status(issues[0], "find.issues[0]"))

    def _status(self, issue: Any, what: str) -> str | None:
        fields = field(issue, "fields", dict, what, optional=True) or {}
        status = field(fields, "status", dict, f"{what}.fields", optional=True)
        if status is None:
            return None
        return text_field(status, "name", NAME, f"{what}.fields.status", optional=True)

    def create(self, intent) -> Result:
        b = intent.body
        labels = [intent.correlation] + [_label(t) for t in b.get("tags", [])][:10]
        if self.flavour == "jsm":
            from hub.connectors.base import plain
            resp = self.request("POST", f"{self.url}/rest/servicedeskapi/request", ok=(200, 201),
                                json={"serviceDeskId": self.service_desk,
                                      "requestTypeId": self.request_type,
                                      "requestFieldValues": {
                                          "summary": b["text"]["summary"],
                                          "description": plain(b["text"]),
                                          "labels": labels}})
            key = text_field(self.json(resp, "create"), "issueKey", KEY, "create")
            return self._res(key)
        fields: dict[str, Any] = {
            "project": {"key": b.get("route", {}).get("project") or self.project},
            "issuetype": {"name": self.issue_types.get(b.get("kind"), "Task")},
            "summary": b["text"]["summary"], "labels": labels,
            "description": adf(b["text"])}
        if self.set_priority and b.get("priority") in self.priorities:
            fields["priority"] = {"name": self.priorities[b["priority"]]}
        resp = self.request("POST", f"{self.url}/rest/api/3/issue", ok=(200, 201),
                            json={"fields": fields})
        body = self.json(resp, "create")
        text_field(body, "id", ID, "create")
        return self._res(text_field(body, "key", KEY, "create"))

    def comment(self, intent, ref: str) -> Result:
        self.request("POST", f"{self._issue(ref)}/comment", ok=(200, 201),
                     json={"body": adf(intent.body["text"])})
        return self._res(ref)

    def _transitions(self, ref: str) -> list[dict[str, Any]]:
        resp = self.request("GET", f"{self._issue(ref)}/transitions", ok=(200,),
                            params={"expand": "transitions.fields"})
        out = []
        for i, t in enumerate(field(self.json(resp, "transitions"), "transitions", list,
                                    "transitions")[:100]):
            tid = text_field(t, "id", ID, f"transitions[{i}]")
            name = text_field(t, "name", NAME, f"transitions[{i}]")
            fields = field(t, "fields", dict, f"transitions[{i}]", optional=True) or {}
            to = field(t, "to", dict, f"transitions[{i}]", optional=True) or {}
            out.append({"id": tid, "name": name, "fields": set(fields),
                        "to": to.get("name") if isinstance(to.get("name"), str) else None})
        return out

    def _apply(self, ref: str, names: tuple[str, ...], note: str,
               resolution: str | None) -> Result:
        wanted = [n.casefold() for n in names]
        available = self._transitions(ref)
        pick = None
        for name in wanted:
            pick = next((t for t in available if t["name"].casefold() == name), None)
            if pick:
                break
        if pick is None:
            # Already there (or a workflow without it): say it in a comment, change nothing.
            self.request("POST", f"{self._issue(ref)}/comment", ok=(200, 201),
                         json={"body": adf(note + " (no transition named "
                                           + " / ".join(names) + " is available)")})
            return self._res(ref)
        payload: dict[str, Any] = {"transition": {"id": pick["id"]},
                                   "update": {"comment": [{"add": {"body": adf(note)}}]}}
        if resolution and "resolution" in pick["fields"]:
            payload["fields"] = {"resolution": {"name": resolution}}
        self.request("POST", f"{self._issue(ref)}/transitions", ok=(204, 200), json=payload)
        return self._res(ref, pick["to"] or pick["name"])

    def resolve(self, intent, ref: str) -> Result:
        return self._apply(ref, self.resolve_transitions, intent.body["text"], self.resolution)

    def reopen(self, intent, ref: str) -> Result:
        resp = self.request("GET", self._issue(ref), ok=(200,),
                            params={"fields": "status,resolution"})
        issue = self.json(resp, "reopen")
        fields = field(issue, "fields", dict, "reopen")
        res = field(fields, "resolution", dict, "reopen.fields", optional=True)
        name = text_field(res, "name", NAME, "reopen.fields.resolution",
                          optional=True) if res else None
        if name and name.casefold() in {w.casefold() for w in self.wontfix}:
            return self._res(ref, self._status(issue, "reopen"), refused="wontfix")
        return self._apply(ref, self.reopen_transitions, intent.body["text"], None)


class _Bearer(httpx.Auth):
    def __init__(self, token: str):
        self._token = token

    def auth_flow(self, request):
        request.headers["Authorization"] = f"Bearer {self._token}"
        yield request


__all__ = ["Jira", "adf", "Permanent"]
