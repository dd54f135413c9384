"""The hub's exceptions.

    HubError              base of everything the hub raises on purpose
    ├── StoreError        the fleet database cannot be opened, reached or written
    │   └── NoDatabase    a SQLite fleet database that does not exist yet (read commands)
    ├── BrokerError       the MQTT broker cannot be reached
    ├── NotFound          an unknown store or alert id asked for on the command line
    ├── ConfigError       a hub config file is invalid (one Problem per mistake)
    ├── Invalid           a bad argument or request field (HTTP 400)
    ├── Conflict          a change that conflicts with stored state (HTTP 409)
    ├── Unauthorized      no, unknown, revoked or disabled credentials (HTTP 401)
    ├── Forbidden         role or scope does not allow the action (HTTP 403)
    └── TamperError       the audit log does not verify

Library errors (sqlite3, psycopg, socket) are translated into these at one boundary: the
store adapters for databases, hub/bus for the broker.
"""

from __future__ import annotations

from edge_common.configschema import ConfigError as SharedConfigError
from edge_common.configschema import Problem  # noqa: F401 (re-exported: hub.errors.Problem)


class HubError(Exception):
    """Base of every error the hub raises on purpose."""


class StoreError(HubError):
    """The fleet database cannot be opened, reached or written."""


class NoDatabase(StoreError):
    """The SQLite fleet database does not exist yet."""


class BrokerError(HubError):
    """The MQTT broker cannot be reached."""


class NotFound(HubError):
    """An unknown store or alert id."""


# Added with the hub's config, access and audit (issue 12) ----------------------------------

class ConfigError(HubError, SharedConfigError):
    """A hub config file is invalid; carries one Problem (edge_common.configschema) per mistake."""


class Invalid(HubError):
    """A request or argument that is not acceptable (a bad name, role, scope): HTTP 400, exit 2."""


class Conflict(HubError):
    """The change conflicts with what is stored (a user that already exists): HTTP 409."""


class Unauthorized(HubError):
    """No credentials, or credentials that are unknown, revoked or disabled: HTTP 401."""


class Forbidden(HubError):
    """The caller is known but its role or scope does not allow the action: HTTP 403."""


class TamperError(HubError):
    """The audit log does not verify: names the first entry edited, inserted, deleted or
    reordered, or a tail cut behind a checkpoint."""
