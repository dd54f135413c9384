"""Users and their API tokens: add, list, show, disable, rotate, authenticate.

A token is `eh_` + 43 base64url characters (256 random bits from `secrets`). It is shown once,
when it is made; the database keeps only its SHA-256 (a slow password hash buys nothing for a
secret that cannot be guessed). Every change records an audit entry in the same transaction.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from typing import Any

from hub.config import check_id
from hub.domains import audit
from hub.domains.access import ROLES, SCOPED_ROLES, Actor, authorize
from hub.errors import Conflict, Invalid, NotFound, Unauthorized
from hub.store.base import Tx

TOKEN_PREFIX = "eh_"
TOKEN_BYTES = 32
MAX_SCOPE = 1000  # regions + stores one user may be given by name
MQTT_ITERATIONS = 101  # Mosquitto 2.0's mosquitto_passwd default for PBKDF2-SHA512 ($7$)


def new_token() -> str:
    """A fresh API token."""
    return TOKEN_PREFIX + secrets.token_urlsafe(TOKEN_BYTES)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


def mqtt_password_hash(password: str, salt: bytes | None = None) -> str:
    """A Mosquitto password-file hash ($7$: PBKDF2-SHA512, as mosquitto_passwd writes it)."""
    salt = salt or secrets.token_bytes(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, MQTT_ITERATIONS)
    return (f"$7${MQTT_ITERATIONS}${base64.b64encode(salt).decode()}$"
            f"{base64.b64encode(digest).decode()}")


def _names(kind: str, values: Any) -> list[str]:
    if values is None:
        return []
    if not isinstance(values, (list, tuple, set, frozenset)):
        raise Invalid(f"{kind} must be a list of names")
    out = sorted(set(values))
    if len(out) > MAX_SCOPE:
        raise Invalid(f"at most {MAX_SCOPE} {kind}")
    for v in out:
        why = check_id(v)
        if why:
            raise Invalid(f"{kind[:-1]} name {v!r}: {why}")
    return out


def _check_user(name: Any, role: Any, regions: list[str], stores: list[str]) -> None:
    why = check_id(name)
    if why:
        raise Invalid(f"user name {name!r}: {why}")
    if role not in ROLES:
        raise Invalid(f"unknown role {role!r}; roles: {', '.join(ROLES)}")
    if role in SCOPED_ROLES and not (regions or stores):
        raise Invalid(f"a {role} needs at least one --region or --store")
    if role not in SCOPED_ROLES and (regions or stores):
        raise Invalid(f"a {role} sees the whole chain; it takes no --region or --store")


def _user(row: tuple) -> dict[str, Any]:
    name, role, regions, stores, created, created_by, disabled, active = row
    return {"name": name, "role": role, "regions": json.loads(regions),
            "stores": json.loads(stores), "created": created, "created_by": created_by,
            "disabled": disabled, "active_tokens": int(active or 0)}


_SELECT = ("SELECT u.name, u.role, u.regions, u.stores, u.created, u.created_by, u.disabled,"
           " (SELECT COUNT(*) FROM api_tokens t WHERE t.name = u.name AND t.revoked IS NULL)"
           " FROM users u")


def add_user(tx: Tx, clock, actor: Actor, name: str, role: str, *, regions=(), stores=(),
             source: str | None = None, max_users: int = 100000) -> tuple[dict[str, Any], str]:
    """Create a user with one token; return (the user, the token). The token is not stored."""
    authorize(actor, "users.manage")
    regions, stores = _names("regions", regions), _names("stores", stores)
    _check_user(name, role, regions, stores)
    tx.execute("SELECT 1 FROM users WHERE name = ?", (name,))
    if tx.fetchone():
        raise Conflict(f"user {name!r} already exists")
    tx.execute("SELECT COUNT(*) FROM users")
    if tx.fetchone()[0] >= max_users:
        raise Conflict(f"the hub holds {max_users} users already (limits.users_max)")
    token = new_token()
    now = clock()
    tx.execute("INSERT INTO users (name, role, regions, stores, created, created_by, mqtt_hash)"
               " VALUES (?, ?, ?, ?, ?, ?, ?)",
               (name, role, json.dumps(regions), json.dumps(stores), now, actor.name,
                mqtt_password_hash(token)))
    tx.execute("INSERT INTO api_tokens (hash, name, created) VALUES (?, ?, ?)",
               (token_hash(token), name, now))
    audit.record(tx, clock, actor, "users.add", f"user:{name}",
                 {"role": role, "regions": regions, "stores": stores}, source)
    return get_user(tx, name), token


def get_user(tx: Tx, name: str) -> dict[str, Any]:
    tx.execute(_SELECT + " WHERE u.name = ?", (name,))
    row = tx.fetchone()
    if row is None:
        raise NotFound(f"unknown user {name!r}")
    return _user(row)


def list_users(tx: Tx, limit: int = 100000) -> list[dict[str, Any]]:
    tx.execute(_SELECT + " ORDER BY u.name LIMIT ?", (limit,))
    return [_user(r) for r in tx.fetchall()]


def disable_user(tx: Tx, clock, actor: Actor, name: str,
                 source: str | None = None) -> dict[str, Any]:
    """Disable a user: every token of theirs is refused from now on (401)."""
    authorize(actor, "users.manage")
    user = get_user(tx, name)
    if user["disabled"] is None:
        now = clock()
        tx.execute("UPDATE users SET disabled = ? WHERE name = ?", (now, name))
        tx.execute("UPDATE api_tokens SET revoked = ? WHERE name = ? AND revoked IS NULL",
                   (now, name))
        audit.record(tx, clock, actor, "users.disable", f"user:{name}", None, source)
    return get_user(tx, name)


def rotate_token(tx: Tx, clock, actor: Actor, name: str,
                 source: str | None = None) -> tuple[dict[str, Any], str]:
    """Revoke a user's tokens and issue a new one; return (the user, the new token)."""
    authorize(actor, "users.manage")
    user = get_user(tx, name)
    if user["disabled"] is not None:
        raise Conflict(f"user {name!r} is disabled; add a new user instead")
    token = new_token()
    now = clock()
    tx.execute("UPDATE api_tokens SET revoked = ? WHERE name = ? AND revoked IS NULL",
               (now, name))
    tx.execute("INSERT INTO api_tokens (hash, name, created) VALUES (?, ?, ?)",
               (token_hash(token), name, now))
    tx.execute("UPDATE users SET mqtt_hash = ? WHERE name = ?", (mqtt_password_hash(token), name))
    audit.record(tx, clock, actor, "users.rotate-token", f"user:{name}", None, source)
    return get_user(tx, name), token


def authenticate(tx: Tx, token: Any) -> Actor:
    """The user a bearer token belongs to; Unauthorized when unknown, revoked or disabled."""
    if not isinstance(token, str) or not token.startswith(TOKEN_PREFIX) \
            or not 20 <= len(token) <= 100:
        raise Unauthorized("missing or malformed API token")
    digest = token_hash(token)
    tx.execute("SELECT t.hash, u.name, u.role, u.regions, u.stores FROM api_tokens t"
               " JOIN users u ON u.name = t.name"
               " WHERE t.hash = ? AND t.revoked IS NULL AND u.disabled IS NULL", (digest,))
    row = tx.fetchone()
    if row is None or not hmac.compare_digest(row[0], digest):
        raise Unauthorized("unknown, revoked or disabled API token")
    _, name, role, regions, stores = row
    return Actor("user", name, role, frozenset(json.loads(regions)), frozenset(json.loads(stores)))


def mqtt_accounts(tx: Tx) -> list[dict[str, Any]]:
    """Enabled users with their broker password hash (for edge-hub acl render)."""
    tx.execute("SELECT name, role, regions, stores, mqtt_hash FROM users"
               " WHERE disabled IS NULL AND mqtt_hash IS NOT NULL ORDER BY name")
    return [{"name": n, "role": r, "regions": json.loads(rg), "stores": json.loads(st),
             "mqtt_hash": h} for n, r, rg, st, h in tx.fetchall()]
