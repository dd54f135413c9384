"""ServiceNow: incidents through the Table API, one per problem by `correlation_id`.

    create    POST  /api/now/table/incident  short_description, description, urgency, impact,
                    correlation_id (our key), correlation_display ("retail-edge"),
                    assignment_group (the route's), category "hardware"
    find      GET   /api/now/table/incident?sysparm_query=correlation_id=KEY^ORDERBYDESC
                    sys_created_on&sysparm_fields=sys_id,number,state,close_code&sysparm_limit=1
                    (the Table API addresses records only by sys_id)
    comment   PATCH /api/now/table/incident/{sys_id}  work_notes
    resolve   PATCH same  state 6, close_code, close_notes (both required to resolve)
    reopen    GET its state first: 7 Closed -> refused "closed" (the hub opens a linked new
              one); 8 Canceled or a won't-fix close code -> refused "wontfix"; else PATCH
              state 2 (In Progress) and work_notes
Auth: basic (username + password) or OAuth client credentials (POST /oauth_token.do, then
Bearer; the token is kept until a minute before it expires, and dropped on a 401).
Facts and sources: ../shared/GOVERNANCE.md section 1; docs/tickets.md.
"""

from __future__ import annotations

import time
from urllib.parse import quote

import httpx

from hub.connectors.base import (ConfigError, HttpConnector, Permanent, Result, Retryable,
                                 base_url, field, plain, read_secret, setting, text_field)

SYS_ID = r"[0-9a-f]{32}"
NUMBER = r"[A-Z]{2,10}[0-9]{4,12}"
STATE = r"[0-9]{1,2}"
URGENCY = {"critical": ("1", "1"), "high": ("1", "2"), "medium": ("2", "2"), "low": ("3", "3")}


class ServiceNow(HttpConnector):
    type = "servicenow"

    def configure(self) -> None:
        s, p = self.settings, self.path
        self.url = base_url(s, p)
        self.mode = setting(s, "auth", p, str, "basic", ("basic", "oauth"))
        if self.mode == "basic":
            self.username = setting(s, "username", p)
            self.password = read_secret(s, "password", p)
        else:
            self.client_id = setting(s, "client_id", p)
            self.client_secret = read_secret(s, "client_secret", p)
        self.table = setting(s, "table", p, str, "incident")
        if not self.table.replace("_", "").isalnum():
            raise ConfigError(f"{p}.table: letters, digits and _ only")
        self.close_code = setting(s, "close_code", p, str, "Solved Remotely (Permanently)")
        self.wontfix_codes = tuple(setting(s, "wontfix_close_codes", p, list,
                                           ["Not Solved (Too Costly)",
                                            "Not Solved (Not Reproducible)"]))
        self.caller_id = setting(s, "caller_id", p, str, "")
        self.category = setting(s, "category", p, str, "hardware")
        self._token: tuple[str, float] | None = None

    # Auth ------------------------------------------------------------------------------------

    def auth(self) -> httpx.Auth | None:
        if self.mode == "basic":
            return httpx.BasicAuth(self.username, self.password.reveal())
        return _Bearer(self._bearer())

    def _bearer(self) -> str:
        if self._token and self._token[1] > time.monotonic():
            return self._token[0]
        assert self.client is not None
        try:
            resp = self.client.post(f"{self.url}/oauth_token.do", data={
                "grant_type": "client_credentials", "client_id": self.client_id,
                "client_secret": self.client_secret.reveal()})
        except httpx.HTTPError as err:
            raise Retryable(f"{self.name}: token request failed: {type(err).__name__}") from err
        if resp.status_code in (400, 401, 403):
            from hub.connectors.base import AuthFailed
            raise AuthFailed(f"{self.name}: OAuth client credentials refused "
                             f"(HTTP {resp.status_code})", 300)
        if resp.status_code != 200:
            raise Retryable(f"{self.name}: token request HTTP {resp.status_code}", None)
        body = self.json(resp, "token")
        token = text_field(body, "access_token", r"[A-Za-z0-9._~+/=-]{8,4096}", "token",
                           maxlen=4096)
        ttl = field(body, "expires_in", (int, float), "token", optional=True) or 1800
        self._token = (token, time.monotonic() + max(30.0, min(float(ttl), 86400.0) - 60))
        return token

    def auth_failed(self) -> None:
        self._token = None

    # Calls -------------------------------------------------------------------------------------

    def _table(self) -> str:
        return f"{self.url}/api/now/table/{self.table}"

    def _result(self, body, what: str) -> Result:
        rec = field(body, "result", dict, what)
        sys_id = text_field(rec, "sys_id", SYS_ID, f"{what}.result")
        number = text_field(rec, "number", NUMBER, f"{what}.result", optional=True)
        state = text_field(rec, "state", STATE, f"{what}.result", optional=True)
        return Result(key=number, ref=sys_id, state=state,
                      url=f"{self.url}/nav_to.do?uri={self.table}.do%3Fsys_id%3D{sys_id}")

    def check(self) -> None:
        self.request("GET", self._table(), params={"sysparm_limit": "1",
                                                   "sysparm_fields": "sys_id"})

    def find(self, correlation: str, intent) -> Result | None:
        resp = self.request("GET", self._table(), params={
            "sysparm_query": f"correlation_id={correlation}^ORDERBYDESCsys_created_on",
            "sysparm_fields": "sys_id,number,state,close_code", "sysparm_limit": "1"})
        rows = field(self.json(resp, "find"), "result", list, "find")
        if not rows:
            return None
        return self._result({"result": rows[0]}, "find")

    def create(self, intent) -> Result:
        b = intent.body
        urgency, impact = URGENCY.get(b.get("priority"), ("2", "2"))
        record = {"short_description": b["text"]["summary"], "description": plain(b["text"]),
                  "urgency": urgency, "impact": impact, "correlation_id": intent.correlation,
                  "correlation_display": "retail-edge", "category": self.category}
        if b.get("route", {}).get("assignment_group"):
            record["assignment_group"] = b["route"]["assignment_group"]
        if self.caller_id:
            record["caller_id"] = self.caller_id
        resp = self.request("POST", self._table(), json=record,
                            params={"sysparm_fields": "sys_id,number,state"}, ok=(200, 201))
        return self._result(self.json(resp, "create"), "create")

    def _patch(self, ref: str, record: dict, what: str) -> Result:
        resp = self.request("PATCH", f"{self._table()}/{quote(ref, safe='')}", json=record,
                            params={"sysparm_fields": "sys_id,number,state"}, ok=(200,))
        return self._result(self.json(resp, what), what)

    def comment(self, intent, ref: str) -> Result:
        return self._patch(ref, {"work_notes": intent.body["text"]}, "comment")

    def resolve(self, intent, ref: str) -> Result:
        return self._patch(ref, {"state": "6", "close_code": self.close_code,
                                 "close_notes": intent.body["text"]}, "resolve")

    def reopen(self, intent, ref: str) -> Result:
        resp = self.request("GET", f"{self._table()}/{quote(ref, safe='')}",
                            params={"sysparm_fields": "sys_id,number,state,close_code"},
                            ok=(200,))
        body = self.json(resp, "reopen")
        now = self._result(body, "reopen")
        code = field(body["result"], "close_code", str, "reopen.result", optional=True)
        if now.state == "8" or (now.state in ("6", "7") and code in self.wontfix_codes):
            return Result(key=now.key, url=now.url, ref=now.ref, state=now.state,
                          refused="wontfix")
        if now.state == "7":
            return Result(key=now.key, url=now.url, ref=now.ref, state=now.state,
                          refused="closed")
        return self._patch(ref, {"state": "2", "work_notes": intent.body["text"]}, "reopen")


class _Bearer(httpx.Auth):
    def __init__(self, token: str):
        self._token = token

    def auth_flow(self, request):
        request.headers["Authorization"] = f"Bearer {self._token}"
        yield request


__all__ = ["ServiceNow", "Permanent"]
