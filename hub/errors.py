"""The hub's exceptions.

    HubError              base of everything the hub raises on purpose
    ├── StoreError        the fleet database cannot be opened, reached or written
    │   └── NoDatabase    a SQLite fleet database that does not exist yet (read commands)
    ├── BrokerError       the MQTT broker cannot be reached
    ├── NotFound          an unknown store or alert id asked for on the command line
    ├── Forbidden         the actor's role or scope does not allow the action
    └── Conflict          the request contradicts the current state (an approval decided)

Library errors (sqlite3, psycopg, socket) are translated into these at one boundary: the
store adapters for databases, hub/bus for the broker.
"""

from __future__ import annotations


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


class Forbidden(HubError):
    """The actor's role or scope does not allow the action (hub.domains.access.authorize)."""


class Conflict(HubError):
    """A request that contradicts the current state (an approval already decided, expired...)."""
