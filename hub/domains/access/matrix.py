"""The permission matrix: which role may do which action, and whether its scope applies.

This is the ONE place access is decided (`authorize` in hub/domains/access/__init__.py reads
it); docs/access.md prints the same table and tests/hub/access/test_access_matrix.py checks
every cell against a hand-written expectation.

A cell is one of:
    ALL      the role may do the action anywhere in the chain
    SCOPED   the role may do it only inside its scope (its regions and stores)
    (absent) the role may not do it
"""

from __future__ import annotations

ALL = "all"
SCOPED = "scoped"

ROLES = ("hq-admin", "it-operator", "regional-manager", "store-manager", "auditor")

# Every action, with what it covers (docs/access.md repeats this list).
ACTIONS = {
    "fleet.read": "stores, devices, fleet summary, rejected messages",
    "alerts.read": "alerts raised and cleared",
    "alerts.ack": "acknowledge an alert",
    "devices.act": "act on a device (commands, restarts, rollouts to it)",
    "rollouts.read": "bundles and rollouts: stages, state, gates, stores assigned",
    "tickets.read": "ITSM tickets",
    "tickets.write": "open, update, close tickets",
    "approvals.decide": "approve or reject a pending action",
    "audit.read": "read and export the audit log, verify it",
    "users.read": "list users, their roles and scopes (never tokens)",
    "users.manage": "add, disable, rotate tokens of users; render broker accounts",
    "keys.manage": "the hub's signing keys, audit checkpoints",
}

_READ_ALL = {"fleet.read": ALL, "alerts.read": ALL, "tickets.read": ALL}
_READ_SCOPED = {"fleet.read": SCOPED, "alerts.read": SCOPED, "tickets.read": SCOPED}

MATRIX: dict[str, dict[str, str]] = {
    "hq-admin": {action: ALL for action in ACTIONS},
    "it-operator": {**_READ_ALL, "alerts.ack": ALL, "devices.act": ALL, "rollouts.read": ALL,
                    "tickets.write": ALL},
    # Approvals (issue 13): "the approver must hold a role and scope covering the store".
    "regional-manager": {**_READ_SCOPED, "alerts.ack": SCOPED, "approvals.decide": SCOPED},
    "store-manager": {**_READ_SCOPED, "alerts.ack": SCOPED, "approvals.decide": SCOPED},
    "auditor": {**_READ_ALL, "audit.read": ALL, "users.read": ALL},
}

# Roles whose scope is required (a user of these roles must have at least one region or store).
SCOPED_ROLES = frozenset(r for r, cells in MATRIX.items() if SCOPED in cells.values())

# Actors that are not users: the hub acting on its own (from a model's decision, a rule), and
# an administrator on the hub host itself (`--db`, which bypasses the API).
SYSTEM_ROLE = "system"
LOCAL_ROLE = "local-admin"
MATRIX[SYSTEM_ROLE] = {a: ALL for a in ACTIONS if a not in ("users.manage", "keys.manage")}
MATRIX[LOCAL_ROLE] = {action: ALL for action in ACTIONS}


def cell(role: str, action: str) -> str | None:
    """ALL, SCOPED, or None for a role and an action (unknown ones are None)."""
    return MATRIX.get(role, {}).get(action)
