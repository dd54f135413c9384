"""The API's OpenAPI 3.1 description, written out here (tests check it names every route)."""

from __future__ import annotations

from typing import Any

from hub import __version__
from hub.domains.access import ROLES

_PROBLEM = {"description": "problem details (RFC 9457)",
            "content": {"application/problem+json": {"schema": {"$ref":
                                                                "#/components/schemas/Problem"}}}}


def _q(name: str, kind: str, doc: str) -> dict[str, Any]:
    schema = {"boolean": {"type": "boolean"}, "integer": {"type": "integer", "minimum": 0},
              "name": {"$ref": "#/components/schemas/Name"},
              "time": {"type": "string", "format": "date-time"}}[kind]
    return {"name": name, "in": "query", "required": False, "description": doc,
            "schema": schema}


def _p(name: str, doc: str, pattern: str | None = None) -> dict[str, Any]:
    schema = {"type": "string", "pattern": pattern} if pattern else \
        {"$ref": "#/components/schemas/Name"}
    return {"name": name, "in": "path", "required": True, "description": doc, "schema": schema}


def _op(summary: str, action: str | None, params=(), body: str | None = None,
        ok: int = 200, errors=(400, 401, 403, 429),
        body_required: bool = True) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "parameters": list(params),
                          "responses": {str(ok): {"description": "done",
                                                  "content": {"application/json": {}}}}}
    for status in errors:
        op["responses"][str(status)] = _PROBLEM
    if action:
        op["description"] = f"Needs `{action}` (docs/access.md)."
    else:
        op["security"] = []
    if body:
        op["requestBody"] = {"required": body_required, "content": {"application/json": {
            "schema": {"$ref": f"#/components/schemas/{body}"}}}}
    return op


ALERT_ID = r"^[0-9a-f]{12}$"
INT_ID = r"^[0-9]{1,18}$"
ROLLOUT_ID = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
COMMAND_ID = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"


def paths() -> dict[str, dict[str, Any]]:
    region = _q("region", "name", "only this region (inside the caller's scope)")
    store_q = _q("store", "name", "only this store")
    limit = _q("limit", "integer", "at most this many rows (limits.list_max)")
    return {
        "/v1/health": {"get": _op("Liveness", None, errors=())},
        "/v1/openapi.json": {"get": _op("This description", None, errors=())},
        "/v1/me": {"get": _op("The caller: name, role, scope", "a valid token",
                              errors=(401, 429))},
        "/v1/fleet": {"get": _op(
            "Stores summarised by region, and the stores that need attention "
            "(offline, devices at risk, critical alerts); all=true lists every store",
            "fleet.read", [region, _q("all", "boolean", "list every store"),
                           _q("limit", "integer", "stores listed at most (default 100)")])},
        "/v1/stores/{store}": {"get": _op("One store: state, devices, open alerts, seq gaps",
                                          "fleet.read", [_p("store", "store id")],
                                          errors=(400, 401, 403, 404, 429))},
        "/v1/devices": {"get": _op("Devices with their latest reading and decision",
                                   "fleet.read", [_q("at_risk", "boolean", "only at risk"),
                                                  region, store_q, limit])},
        "/v1/alerts": {"get": _op("Alerts raised and cleared, newest first", "alerts.read",
                                  [_q("open", "boolean", "only raised ones"), region, store_q,
                                   limit])},
        "/v1/alerts/{alert_id}/ack": {"post": _op(
            "Acknowledge an alert", "alerts.ack",
            [_p("alert_id", "alert id (12 hex digits)", ALERT_ID)],
            errors=(400, 401, 403, 404, 429))},
        "/v1/rejects": {"get": _op("Rejected messages by reason (chain-wide)", "fleet.read")},
        "/v1/audit": {"get": _op("Audit entries in seq order", "audit.read", [
            _q("since", "time", "from this time on"), _q("actor", "name", "only this actor"),
            store_q, _q("after", "integer", "after this seq (a cursor)"), limit])},
        "/v1/audit/verify": {"get": _op("Walk the audit chain: ok, or the first bad entry",
                                        "audit.read")},
        "/v1/users": {"get": _op("Users (never their tokens)", "users.read"),
                      "post": _op("Add a user; the answer holds its token, shown once",
                                  "users.manage", body="NewUser", ok=201,
                                  errors=(400, 401, 403, 409, 413, 415, 429))},
        "/v1/users/{name}": {"get": _op("One user", "users.read", [_p("name", "user name")],
                                        errors=(400, 401, 403, 404, 429))},
        "/v1/users/{name}/disable": {"post": _op(
            "Disable a user: its tokens get 401 from now on", "users.manage",
            [_p("name", "user name")], errors=(400, 401, 403, 404, 429))},
        "/v1/users/{name}/rotate-token": {"post": _op(
            "Revoke a user's tokens and return a new one", "users.manage",
            [_p("name", "user name")], errors=(400, 401, 403, 404, 409, 429))},
        "/v1/commands": {"get": _op(
            "Commands, newest first, inside the caller's scope (docs/commands.md)",
            "fleet.read", [store_q, _q("limit", "integer", "at most this many (default 50, "
                                                           "at most 1000)")]),
                         "post": _op(
            "Send a signed command to a store (docs/commands.md); high-impact actions wait "
            "for an approval", "devices.act", body="NewCommand", ok=201,
            errors=(400, 401, 403, 404, 413, 415, 429, 503))},
        "/v1/commands/{command_id}": {"get": _op(
            "A command: queued, delivered, done, failed, rejected or expired, with its result",
            "fleet.read", [_p("command_id", "command id (a UUID)", COMMAND_ID)],
            errors=(400, 401, 403, 404, 429))},
        "/v1/commands/{command_id}/approve": {"post": _op(
            "Approve a high-impact command someone else requested", "devices.act",
            [_p("command_id", "command id (a UUID)", COMMAND_ID)],
            errors=(400, 401, 403, 404, 409, 429, 503))},
        "/v1/flags": {"get": _op("Feature flags set, by scope", "fleet.read"),
                      "post": _op("Set a flag (scoring, tickets, remote_actions) on or off "
                                  "for the chain, a region or a store; the answer names the "
                                  "setting and the stores that get a new signed flags "
                                  "document: {name, value, scope, changed}", "devices.act",
                                  body="FlagSetting",
                                  errors=(400, 401, 403, 404, 413, 415, 429, 503))},
        "/v1/tickets": {"get": _op(
            "Tickets the hub opened in the chain's ITSM, newest first, with their ITSM key, "
            "state and deliveries (inside the caller's scope)", "tickets.read",
            [_q("open", "boolean", "only open or cleared ones"), store_q, limit])},
        "/v1/tickets/{ticket_id}": {"get": _op(
            "One ticket and its delivery intents", "tickets.read",
            [_p("ticket_id", "ticket id", INT_ID)], errors=(400, 401, 403, 404, 429))},
        "/v1/tickets/{ticket_id}/retry": {"post": _op(
            "Queue a ticket's failed deliveries again, due now (audited as ticket.retry): "
            "{ticket, requeued}; no body, or {}", "tickets.write",
            [_p("ticket_id", "ticket id", INT_ID)], errors=(400, 401, 403, 404, 413, 415, 429))},
        "/v1/approvals": {"get": _op(
            "Approval requests, newest first, inside the caller's scope (docs/approvals.md)",
            "tickets.read", [_q("pending", "boolean", "only pending ones"), limit])},
        "/v1/approvals/{approval_id}": {"get": _op(
            "One approval request: the action, its hash, its votes", "tickets.read",
            [_p("approval_id", "approval request id", INT_ID)],
            errors=(400, 401, 403, 404, 429))},
        "/v1/approvals/{approval_id}/approve": {"post": _op(
            "Approve the action whose hash you saw (without hash: as stored now); refused "
            "for the requester (403), outside scope (403), not pending, expired or a "
            "changed action (409)", "approvals.decide",
            [_p("approval_id", "approval request id", INT_ID)], body="Approve",
            errors=(400, 401, 403, 404, 409, 413, 415, 429), body_required=False)},
        "/v1/approvals/{approval_id}/deny": {"post": _op(
            "Deny a request (its requester may withdraw it); a reason is required",
            "approvals.decide", [_p("approval_id", "approval request id", INT_ID)],
            body="Deny", errors=(400, 401, 403, 404, 409, 413, 415, 429))},
        "/v1/bundles": {"get": _op("Bundles uploaded (edge-hub bundle add): kind, name, "
                                   "version, sha256, size", "rollouts.read")},
        "/v1/rollouts": {
            "get": _op("The last 50 rollouts, newest first, with stages, state, last gate and "
                       "stores assigned", "rollouts.read"),
            "post": _op("Start a staged rollout of an uploaded bundle (docs/rollout.md)",
                        "devices.act", body="NewRollout", ok=201,
                        errors=(400, 401, 403, 404, 409, 413, 415, 429, 503))},
        "/v1/rollouts/{rollout_id}": {"get": _op(
            "One rollout", "rollouts.read", [_p("rollout_id", "rollout id (a UUID)", ROLLOUT_ID)],
            errors=(400, 401, 403, 404, 429))},
        **{f"/v1/rollouts/{{rollout_id}}/{action}": {"post": _op(
            doc, "devices.act", [_p("rollout_id", "rollout id (a UUID)", ROLLOUT_ID)],
            errors=(400, 401, 403, 404, 409, 429) + ((503,) if action in ("abort", "approve")
                                                     else ()))}
           for action, doc in (
               ("pause", "Pause a running rollout (no stage moves, no gate is judged)"),
               ("resume", "Resume a paused rollout"),
               ("abort", "Abort a rollout: every updated store is rolled back to its last "
                         "good bundle"),
               ("approve", "Let a rollout waiting for approval begin its next stage (not its "
                           "starter)"))},
    }


def document(config: Any = None) -> dict[str, Any]:
    url = getattr(getattr(config, "api", None), "public_url", "") or "/"
    return {
        "openapi": "3.1.0",
        "info": {"title": "Retail Edge hub API", "version": __version__,
                 "description": "Fleet state, alerts, users and the audit log of a retail "
                                "chain's hub. Every answer is scoped by the caller's role "
                                "(docs/access.md)."},
        "servers": [{"url": url}],
        "security": [{"bearer": []}],
        "paths": paths(),
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "an API token (eh_...) from "
                                                          "edge-hub users add"}},
            "schemas": {
                "Name": {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,63}$"},
                "NewUser": {"type": "object", "additionalProperties": False,
                            "required": ["name", "role"],
                            "properties": {"name": {"$ref": "#/components/schemas/Name"},
                                           "role": {"enum": list(ROLES)},
                                           "regions": {"type": "array", "items": {
                                               "$ref": "#/components/schemas/Name"}},
                                           "stores": {"type": "array", "items": {
                                               "$ref": "#/components/schemas/Name"}}}},
                "NewCommand": {"type": "object", "additionalProperties": False,
                               "required": ["store", "action"],
                               "properties": {
                                   "store": {"$ref": "#/components/schemas/Name"},
                                   "device": {"$ref": "#/components/schemas/Name"},
                                   "region": {"$ref": "#/components/schemas/Name",
                                              "description": "the store's region, only for "
                                                             "a store the hub has not seen "
                                                             "yet (another region than the "
                                                             "known one is 400)"},
                                   "action": {"enum": ["repoll", "test_print", "recover",
                                                       "reset", "reload_config",
                                                       "restart_agent", "diagnostics"]},
                                   "args": {"type": "object", "maxProperties": 8},
                                   "expires_s": {"type": "number", "exclusiveMinimum": 0,
                                                 "maximum": 604800}}},
                "FlagSetting": {"type": "object", "additionalProperties": False,
                                "required": ["name", "value", "scope"],
                                "properties": {
                                    "name": {"enum": ["scoring", "tickets",
                                                      "remote_actions"]},
                                    "value": {"type": "boolean"},
                                    "scope": {"type": "string", "pattern":
                                              r"^(chain|region:.+|store:.+)$"}}},
                "Approve": {"type": "object", "additionalProperties": False,
                            "properties": {"reason": {"type": "string", "maxLength": 500},
                                           "hash": {"type": "string",
                                                    "pattern": "^[0-9a-f]{64}$"}}},
                "Deny": {"type": "object", "additionalProperties": False,
                         "required": ["reason"],
                         "properties": {"reason": {"type": "string", "minLength": 1,
                                                   "maxLength": 500}}},
                "NewRollout": {"type": "object", "additionalProperties": False,
                               "required": ["bundle", "stages"],
                               "properties": {
                                   "bundle": {"type": "string",
                                              "pattern": "^[0-9a-f]{8,64}$"},
                                   "stages": {"type": "string", "maxLength": 4096,
                                              "description": "pilot=s1,s2; north=region:"
                                                             "north; chain"},
                                   "soak_s": {"type": "number", "minimum": 0,
                                              "maximum": 2592000},
                                   "urgent": {"type": "boolean"},
                                   "approval": {"type": "array", "items": {
                                       "$ref": "#/components/schemas/Name"}},
                                   "gates": {"type": "object", "additionalProperties": {
                                       "type": "number", "minimum": 0}}}},
                "Problem": {"type": "object", "required": ["type", "title", "status"],
                            "properties": {"type": {"type": "string"},
                                           "title": {"type": "string"},
                                           "status": {"type": "integer"},
                                           "detail": {"type": "string"},
                                           "instance": {"type": "string"}}},
            },
        },
    }
