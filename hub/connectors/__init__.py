"""The outside systems the hub talks to, one module each, and the only users of httpx.

    base.py        lifecycle (init/check/deliver/cleanup), checked HTTP, secrets, errors
    servicenow.py  Table API incidents by correlation_id
    jira.py        Jira Cloud REST v3 / Jira Service Management, dedup label, transitions
    zendesk.py     tickets by external_id, Idempotency-Key, follow-ups for closed tickets
    pagerduty.py   Events API v2 by dedup_key
    webhook.py     JSON, HMAC-signed
`build(spec)` makes the connector a [tickets.connectors.NAME] table names and runs its init().
A connector imports httpx and hub.errors only (it sits beside hub.store and hub.bus): the
intent it delivers is duck-typed (hub.domains.tickets.outbox.Claimed).
"""

from __future__ import annotations

from hub.connectors.base import (AuthFailed, ConfigError, ConnectorError, HttpConnector,
                                 Permanent, Result, Retryable)


def types() -> dict[str, type[HttpConnector]]:
    from hub.connectors.jira import Jira
    from hub.connectors.pagerduty import PagerDuty
    from hub.connectors.servicenow import ServiceNow
    from hub.connectors.webhook import Webhook
    from hub.connectors.zendesk import Zendesk

    return {c.type: c for c in (ServiceNow, Jira, Zendesk, PagerDuty, Webhook)}


def build(spec) -> HttpConnector:
    """Make and init() the connector of a hub.domains.tickets.policy.ConnectorSpec."""
    cls = types().get(spec.type)
    if cls is None:
        raise ConfigError(f"tickets.connectors.{spec.name}.type: unknown type {spec.type!r}")
    conn = cls(spec.name, spec.settings)
    conn.init()
    return conn


__all__ = ["build", "types", "Result", "ConnectorError", "Retryable", "AuthFailed", "Permanent",
           "ConfigError", "HttpConnector"]
