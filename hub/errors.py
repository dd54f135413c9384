"""The hub's exceptions.

    HubError              base of everything the hub raises on purpose
    ├── StoreError        the fleet database cannot be opened, reached or written
    │   └── NoDatabase    a SQLite fleet database that does not exist yet (read commands)
    ├── BrokerError       the MQTT broker cannot be reached
    └── NotFound          an unknown store or alert id asked for on the command line

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
