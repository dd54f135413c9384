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

class Problem:
    """One mistake in a config: where (a key path such as api.tls_cert) and what."""

    __slots__ = ("path", "message")

    def __init__(self, path: str, message: str):
        self.path = path
        self.message = message

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Problem) and (self.path, self.message) == \
            (other.path, other.message)

    def __repr__(self) -> str:
        return f"Problem({self.path!r}, {self.message!r})"

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class ConfigError(HubError):
    """A hub config file is invalid; carries one Problem per mistake."""

    def __init__(self, problems: "list[Problem] | Problem | str", source: str | None = None):
        if isinstance(problems, str):
            problems = [Problem("", problems)]
        elif isinstance(problems, Problem):
            problems = [problems]
        self.problems = list(problems)
        self.source = source
        super().__init__("; ".join(str(p) for p in self.problems))


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
