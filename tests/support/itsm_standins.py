"""Stand-in servers for the ITSM tools, written from the vendors' documentation.

The real ServiceNow, Jira, Zendesk and PagerDuty services cannot be reached from here. Each
class below is a local HTTP server that implements the documented behaviour of the calls our
connectors use, as ../shared/GOVERNANCE.md section 1 records it with its sources (ServiceNow
Table API and /oauth_token.do; Jira REST v3 issue, search/jql, comment, transitions; Zendesk
tickets with external_id, Idempotency-Key, follow-ups; PagerDuty Events v2 with dedup_key).
They are stand-ins, not the products: where a product does more, they do only what we call.

Faults are injected per request: `server.fail(fault, method=None, path=None, times=1)` with
fault one of
    ("status", 401|429|500|503, retry_after or None)   answer that status
    ("timeout", seconds)                              hold the request, then drop it unanswered
    ("lost",)                                         do the work, then drop the answer
    ("slow", seconds)                                 do the work, wait, then answer
Every request is recorded in `server.log` as (method, path, json body or None, headers).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import re
import socket
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


class _Drop(Exception):
    """Close the connection without an answer."""


class StandIn:
    """A threaded local HTTP server with fault injection; subclasses route requests."""

    def __init__(self, auth: str):
        self.expected_auth = auth          # the exact Authorization header accepted
        self.lock = threading.RLock()
        self.log: list[tuple[str, str, Any, dict]] = []
        self.faults: list[dict[str, Any]] = []
        self.down = False                  # True: every request gets 503
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def setup(self):
                super().setup()
                # Headers and body leave in two writes: without this, Nagle's algorithm
                # and the client's delayed ACK hold each answer ~40 ms on keep-alive.
                self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def _handle(self):
                outer._dispatch(self)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def start(self) -> "StandIn":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def fail(self, fault: tuple, method: str | None = None, path: str | None = None,
             times: int = 1) -> None:
        with self.lock:
            self.faults.append({"fault": fault, "method": method, "path": path, "times": times})

    def requests(self, method: str | None = None, path: str | None = None) -> list:
        with self.lock:
            return [r for r in self.log if (method is None or r[0] == method)
                    and (path is None or re.search(path, r[1]))]

    def _take_fault(self, method: str, path: str) -> tuple | None:
        with self.lock:
            for f in self.faults:
                if (f["method"] in (None, method)) and (f["path"] is None
                                                        or re.search(f["path"], path)):
                    f["times"] -= 1
                    if f["times"] <= 0:
                        self.faults.remove(f)
                    return f["fault"]
        return None

    def _dispatch(self, h: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(h.path)
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        ctype = h.headers.get("Content-Type", "")
        body: Any = None
        if raw and ctype.startswith("application/json"):
            body = json.loads(raw)
        elif raw:
            body = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        headers = {k.lower(): v for k, v in h.headers.items()}
        with self.lock:
            self.log.append((h.command, parts.path, body, headers))
        fault = self._take_fault(h.command, parts.path)
        try:
            if self.down:
                self._send(h, 503, {"error": "down"})
                return
            if fault and fault[0] == "status":
                extra = {"Retry-After": str(fault[2])} if fault[2] is not None else {}
                self._send(h, fault[1], {"error": f"injected {fault[1]}"}, extra)
                return
            if fault and fault[0] == "timeout":
                time.sleep(fault[1])
                raise _Drop
            if not self.authorized(h.command, parts.path, headers):
                self._send(h, 401, {"error": "unauthorized"})
                return
            status, answer, extra = self.route(h.command, parts.path, query, body, raw, headers)
            if fault and fault[0] == "lost":
                raise _Drop
            if fault and fault[0] == "slow":
                time.sleep(fault[1])
            self._send(h, status, answer, extra)
        except _Drop:
            h.close_connection = True
            try:
                h.connection.shutdown(2)
            except OSError:
                pass

    def authorized(self, method: str, path: str, headers: dict) -> bool:
        return headers.get("authorization") == self.expected_auth

    @staticmethod
    def _send(h, status: int, answer: Any, extra: dict | None = None) -> None:
        data = b"" if answer is None else json.dumps(answer).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        for k, v in (extra or {}).items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(data)

    def route(self, method, path, query, body, raw, headers) -> tuple[int, Any, dict]:
        raise NotImplementedError


def basic(user: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode()


class ServiceNowStandIn(StandIn):
    """Table API incidents: POST, GET with sysparm_query correlation_id, GET/PATCH by sys_id.
    Resolving (state 6) or closing (7) without close_code and close_notes is refused, as the
    instance's data policy does. /oauth_token.do grants client_credentials tokens."""

    def __init__(self, user="hub", password="pw", client_id=None, client_secret=None):
        super().__init__(basic(user, password))
        self.incidents: dict[str, dict[str, Any]] = {}
        self.numbers = itertools.count(10001)
        self.oauth = (client_id, client_secret) if client_id else None
        self.tokens: set[str] = set()

    def authorized(self, method, path, headers):
        if path == "/oauth_token.do":
            return True
        auth = headers.get("authorization", "")
        return auth == self.expected_auth or (auth.startswith("Bearer ")
                                              and auth[7:] in self.tokens)

    def route(self, method, path, query, body, raw, headers):
        with self.lock:
            if path == "/oauth_token.do" and method == "POST":
                if not self.oauth or body.get("grant_type") != "client_credentials" or \
                        (body.get("client_id"), body.get("client_secret")) != self.oauth:
                    return 401, {"error": "access_denied"}, {}
                token = uuid.uuid4().hex
                self.tokens.add(token)
                return 200, {"access_token": token, "token_type": "Bearer",
                             "expires_in": 1799}, {}
            m = re.fullmatch(r"/api/now/table/incident(?:/([0-9a-f]{32}))?", path)
            if not m:
                return 404, {"error": {"message": "no such table"}}, {}
            sys_id = m.group(1)
            fields = query.get("sysparm_fields")

            def view(rec):
                return {k: v for k, v in rec.items()
                        if not fields or k in fields.split(",")}

            if method == "POST" and not sys_id:
                sid = uuid.uuid4().hex
                rec = {"sys_id": sid, "number": f"INC{next(self.numbers):07d}", "state": "1",
                       "close_code": "", "work_notes": [], "sys_created_on": time.time(),
                       **{k: v for k, v in body.items() if k != "work_notes"}}
                self.incidents[sid] = rec
                return 201, {"result": view(rec)}, {"Location": f"{self.url}{path}/{sid}"}
            if method == "GET" and not sys_id:
                q = query.get("sysparm_query", "")
                cm = re.match(r"correlation_id=([^^]*)", q)
                rows = [r for r in self.incidents.values()
                        if not cm or r.get("correlation_id") == cm.group(1)]
                if "active=true" in q:
                    rows = [r for r in rows if r["state"] not in ("6", "7", "8")]
                rows.sort(key=lambda r: -r["sys_created_on"])
                limit = int(query.get("sysparm_limit", "10000"))
                return 200, {"result": [view(r) for r in rows[:limit]]}, {}
            rec = self.incidents.get(sys_id or "")
            if rec is None:
                return 404, {"error": {"message": "No Record found"}}, {}
            if method == "GET":
                return 200, {"result": view(rec)}, {}
            if method in ("PATCH", "PUT"):
                new = dict(body)
                if new.get("state") in ("6", "7") and not (
                        (new.get("close_code") or rec.get("close_code"))
                        and (new.get("close_notes") or rec.get("close_notes"))):
                    return 403, {"error": {"message": "Data Policy Exception: close code and "
                                           "close notes are mandatory"}}, {}
                if "work_notes" in new:
                    rec["work_notes"].append(new.pop("work_notes"))
                rec.update(new)
                return 200, {"result": view(rec)}, {}
            return 405, {"error": {"message": "method not allowed"}}, {}


class JiraStandIn(StandIn):
    """Jira Cloud REST v3: create issue, search/jql by label (optionally lagging, as the real
    search is eventually consistent), comment, transitions by workflow (To Do -> Done with a
    resolution -> To Do via Reopen), get issue fields."""

    WORKFLOW = {"To Do": [("11", "Start", "In Progress"), ("31", "Done", "Done")],
                "In Progress": [("31", "Done", "Done")],
                "Done": [("41", "Reopen", "To Do")]}

    def __init__(self, email="hub@example.com", token="tok", search_lag: int = 0):
        super().__init__(basic(email, token))
        self.issues: dict[str, dict[str, Any]] = {}
        self.seq = itertools.count(1)
        self.search_lag = search_lag   # searches a new issue stays invisible to

    def route(self, method, path, query, body, raw, headers):
        with self.lock:
            if path == "/rest/api/3/myself":
                return 200, {"accountId": "1"}, {}
            if path == "/rest/api/3/issue" and method == "POST":
                f = body["fields"]
                if f.get("description", {}).get("type") != "doc":
                    return 400, {"errors": {"description": "Operation value must be an "
                                            "Atlassian Document"}}, {}
                n = next(self.seq)
                key = f"{f['project']['key']}-{n}"
                self.issues[key] = {"id": str(10000 + n), "key": key, "fields": f,
                                    "status": "To Do", "resolution": None, "comments": [],
                                    "hidden": self.search_lag}
                return 201, {"id": str(10000 + n), "key": key,
                             "self": f"{self.url}/rest/api/3/issue/{10000 + n}"}, {}
            if path == "/rest/api/3/search/jql" and method == "POST":
                m = re.match(r'labels = "([^"]+)"', body.get("jql", ""))
                found = []
                for issue in sorted(self.issues.values(), key=lambda i: -int(i["id"])):
                    if m and m.group(1) in issue["fields"].get("labels", []):
                        if issue["hidden"] > 0:
                            issue["hidden"] -= 1
                            continue
                        found.append(issue)
                found = found[:body.get("maxResults", 50)]
                return 200, {"issues": [self._view(i) for i in found], "isLast": True}, {}
            m = re.fullmatch(r"/rest/api/3/issue/([A-Z]+-\d+)(/comment|/transitions)?", path)
            if not m or m.group(1) not in self.issues:
                return 404, {"errorMessages": ["Issue does not exist"]}, {}
            issue = self.issues[m.group(1)]
            if m.group(2) == "/comment" and method == "POST":
                issue["comments"].append(body["body"])
                return 201, {"id": str(len(issue["comments"]))}, {}
            if m.group(2) == "/transitions" and method == "GET":
                return 200, {"transitions": [
                    {"id": i, "name": n, "to": {"name": to},
                     "fields": {"resolution": {"required": True}} if to == "Done" else {}}
                    for i, n, to in self.WORKFLOW[issue["status"]]]}, {}
            if m.group(2) == "/transitions" and method == "POST":
                tid = body["transition"]["id"]
                step = next((s for s in self.WORKFLOW[issue["status"]] if s[0] == tid), None)
                if step is None:
                    return 400, {"errorMessages": ["Transition id is not valid"]}, {}
                if step[2] == "Done":
                    res = body.get("fields", {}).get("resolution")
                    if not res:
                        return 400, {"errors": {"resolution": "Resolution is required."}}, {}
                    issue["resolution"] = res["name"]
                else:
                    issue["resolution"] = None
                issue["status"] = step[2]
                for c in body.get("update", {}).get("comment", []):
                    issue["comments"].append(c["add"]["body"])
                return 204, None, {}
            if method == "GET" and not m.group(2):
                return 200, self._view(issue), {}
            return 405, {"errorMessages": ["method not allowed"]}, {}

    def _view(self, issue):
        return {"id": issue["id"], "key": issue["key"],
                "fields": {"status": {"name": issue["status"]},
                           "resolution": {"name": issue["resolution"]}
                           if issue["resolution"] else None}}


class ZendeskStandIn(StandIn):
    """Zendesk tickets: create (Idempotency-Key: the same key and body give the same ticket),
    list by external_id, show, update (a closed ticket cannot be updated: 422), follow-ups
    with via_followup_source_id that inherit the tags."""

    def __init__(self, email="hub@example.com", token="tok"):
        super().__init__(basic(f"{email}/token", token))
        self.tickets: dict[int, dict[str, Any]] = {}
        self.ids = itertools.count(4711)
        self.idem: dict[str, tuple[str, int]] = {}

    def route(self, method, path, query, body, raw, headers):
        with self.lock:
            if path == "/api/v2/users/me.json":
                return 200, {"user": {"id": 1}}, {}
            if path == "/api/v2/tickets.json" and method == "POST":
                key = headers.get("idempotency-key")
                digest = hashlib.sha256(raw).hexdigest()
                if key in self.idem:
                    if self.idem[key][0] != digest:
                        return 400, {"error": "IdempotentRequestError"}, {}
                    return 201, {"ticket": self.tickets[self.idem[key][1]]}, \
                        {"x-idempotency-lookup": "hit"}
                t = dict(body["ticket"])
                tid = next(self.ids)
                comment = t.pop("comment", {})
                src = t.pop("via_followup_source_id", None)
                tags = list(t.get("tags", []))
                if src is not None:
                    if src not in self.tickets or self.tickets[src]["status"] != "closed":
                        return 422, {"error": "RecordInvalid"}, {}
                    tags = sorted(set(tags) | set(self.tickets[src]["tags"]))
                ticket = {"id": tid, "status": "new", "tags": tags, "comments": [comment],
                          "via": {"source": {"rel": "follow_up", "from": {"ticket_id": src}}}
                          if src else None, **{k: v for k, v in t.items() if k != "tags"}}
                self.tickets[tid] = ticket
                if key:
                    self.idem[key] = (digest, tid)
                return 201, {"ticket": ticket}, {}
            if path == "/api/v2/tickets.json" and method == "GET":
                ext = query.get("external_id")
                return 200, {"tickets": [t for t in self.tickets.values()
                                         if t.get("external_id") == ext],
                             "next_page": None}, {}
            m = re.fullmatch(r"/api/v2/tickets/(\d+)\.json", path)
            if not m or int(m.group(1)) not in self.tickets:
                return 404, {"error": "RecordNotFound"}, {}
            t = self.tickets[int(m.group(1))]
            if method == "GET":
                return 200, {"ticket": t}, {}
            if method == "PUT":
                if t["status"] == "closed":
                    return 422, {"error": "RecordInvalid",
                                 "description": "Status: closed prevents ticket update"}, {}
                new = dict(body["ticket"])
                if "comment" in new:
                    t["comments"].append(new.pop("comment"))
                t.update(new)
                if t["status"] == "new":
                    t["status"] = "open"
                return 200, {"ticket": t}, {}
            return 405, {"error": "method not allowed"}, {}


class PagerDutyStandIn(StandIn):
    """Events API v2: trigger/acknowledge/resolve by dedup_key; a trigger for a resolved key
    opens a new alert; acknowledge/resolve for a key with no open alert are dropped."""

    def __init__(self, routing_key="R" * 32):
        super().__init__("")
        self.routing_key = routing_key
        self.alerts: list[dict[str, Any]] = []

    def authorized(self, method, path, headers):
        return True   # the routing key in the body is the credential

    def route(self, method, path, query, body, raw, headers):
        with self.lock:
            if path != "/v2/enqueue" or method != "POST":
                return 404, {"status": "invalid path"}, {}
            if body.get("routing_key") != self.routing_key:
                return 400, {"status": "invalid event", "message": "Event object is invalid",
                             "errors": ["Invalid routing key"]}, {}
            action, key = body.get("event_action"), body.get("dedup_key") or uuid.uuid4().hex
            open_ = next((a for a in self.alerts if a["dedup_key"] == key
                          and a["status"] != "resolved"), None)
            if action == "trigger":
                if open_ is None:
                    self.alerts.append({"dedup_key": key, "status": "triggered",
                                        "events": [body["payload"]]})
                else:
                    open_["events"].append(body["payload"])
            elif action in ("acknowledge", "resolve") and open_ is not None:
                open_["status"] = "resolved" if action == "resolve" else "acknowledged"
            return 202, {"status": "success", "message": "Event processed",
                         "dedup_key": key}, {}


class WebhookReceiver(StandIn):
    """A receiver for the generic webhook: checks the HMAC signature, drops repeats by
    Idempotency-Key, answers {"key": ...} on a create."""

    def __init__(self, secret: bytes = b"s3cret"):
        super().__init__("")
        self.secret = secret
        self.received: list[dict[str, Any]] = []
        self.seen: set[str] = set()
        self.bad_signatures = 0

    def authorized(self, method, path, headers):
        return True

    def route(self, method, path, query, body, raw, headers):
        ts = headers.get("x-retail-edge-timestamp", "")
        want = "sha256=" + hmac.new(self.secret, ts.encode() + b"." + raw,
                                    hashlib.sha256).hexdigest()
        if not hmac.compare_digest(want, headers.get("x-retail-edge-signature", "")):
            with self.lock:
                self.bad_signatures += 1
            return 401, {"error": "bad signature"}, {}
        with self.lock:
            key = headers.get("idempotency-key")
            if key not in self.seen:
                self.seen.add(key)
                self.received.append(body)
        return 200, {"key": f"WH-{body['correlation'][-6:]}"}, {}
