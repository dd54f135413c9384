"""Broker accounts from the hub's registry: the Mosquitto ACL and password file.

Stores authenticate with a client certificate whose common name is the store id
(packaging/mosquitto/mosquitto.conf.template: use_identity_as_username); people with their
user name and their API token as password (the users table keeps a Mosquitto-format PBKDF2
hash of it, made when the token is issued). The ACL grants:

    the hub          reads every store's traffic, writes commands, config, hub state, feeds
    a store          writes only under {prefix}/{region}/{store}/..., reads its cmd and config
    hq-admin, it-operator, auditor     read every region's alert feed and approval requests
    regional-manager reads {prefix}/alerts/{region}/# and {prefix}/approvals/{region}/# for
                     each of its regions
    store-manager    reads {prefix}/alerts/+/{store} for each of its stores (approval requests
                     go out per region, so a store manager's account does not get them)

Nothing is granted before the first `user` line. Every name is checked again here (a `+`, `#`
or newline in a name would widen or break the ACL).
"""

from __future__ import annotations

from typing import Any, Iterable

from hub.config import check_id
from hub.errors import Conflict, Invalid
from hub.store.base import Tx

CHAIN_READERS = ("hq-admin", "it-operator", "auditor")
STORE_WRITES = ("birth", "death", "telemetry", "decision", "alert", "event", "cmd/result")


def _ok(name: str, what: str) -> str:
    why = check_id(name)
    if why:
        raise Invalid(f"{what} {name!r}: {why}")
    return name


def stores(tx: Tx) -> list[tuple[str, str]]:
    """(store, region) of every store the hub has heard from."""
    tx.execute("SELECT store, region FROM stores ORDER BY store")
    return [(s, r) for s, r in tx.fetchall()]


def render_acl(store_regions: Iterable[tuple[str, str]], users: Iterable[dict[str, Any]], *,
               hub_user: str = "hub", prefix: str = "edge/v1",
               checkpoint_topic: str = "") -> str:
    """The ACL file for a set of stores and users (from users.mqtt_accounts)."""
    _ok(hub_user, "hub account")
    lines = ["# Retail Edge broker ACL, written by `edge-hub acl render` from the hub's stores",
             "# and users. Do not edit: render it again after adding stores or users.", "",
             f"user {hub_user}"]
    lines += [f"topic read {prefix}/+/+/{kind}" for kind in STORE_WRITES]
    lines += [f"topic read $share/hub/{prefix}/+/+/#", f"topic write {prefix}/+/+/cmd",
              f"topic write {prefix}/+/+/config", f"topic readwrite {prefix}/hub/state",
              f"topic write {prefix}/alerts/#", f"topic write {prefix}/approvals/#"]
    # The control plane (docs/commands.md): results through the worker's own shared
    # subscription; signed flags and bundle contents, retained.
    lines += [f"topic read $share/hub-cmd/{prefix}/+/+/cmd/result",
              f"topic write {prefix}/+/+/flags", f"topic write {prefix}/bundles/+"]
    if checkpoint_topic:
        lines.append(f"topic write {checkpoint_topic}")
    names = {hub_user: "the hub"}
    for store, region in sorted(store_regions):
        _ok(store, "store")
        _ok(region, "region")
        if store in names:
            raise Conflict(f"store {store!r} has the same broker account name as {names[store]}")
        names[store] = f"store {store}"
        own = f"{prefix}/{region}/{store}"
        lines += ["", f"user {store}"]
        lines += [f"topic write {own}/{kind}" for kind in STORE_WRITES]
        lines += [f"topic read {own}/cmd", f"topic read {own}/config",
                  f"topic read {own}/flags", f"topic read {prefix}/bundles/+",
                  f"topic read {prefix}/hub/state"]
    for user in sorted(users, key=lambda u: u["name"]):
        name = _ok(user["name"], "user")
        if name in names:
            raise Conflict(f"user {name!r} has the same broker account name as {names[name]}; "
                           "rename one of them")
        names[name] = f"user {name}"
        lines += ["", f"user {name}"]
        if user["role"] in CHAIN_READERS:
            lines += [f"topic read {prefix}/alerts/#", f"topic read {prefix}/approvals/#"]
        for r in user.get("regions", ()):
            lines += [f"topic read {prefix}/alerts/{_ok(r, 'region')}/#",
                      f"topic read {prefix}/approvals/{r}/#"]
        lines += [f"topic read {prefix}/alerts/+/{_ok(s, 'store')}"
                  for s in user.get("stores", ())]
        if checkpoint_topic:
            lines.append(f"topic read {checkpoint_topic}")
    return "\n".join(lines) + "\n"


def render_passwords(users: Iterable[dict[str, Any]], extra: dict[str, str] | None = None) -> str:
    """The Mosquitto password file: `name:$7$...` for each user (and extra accounts)."""
    lines = [f"{_ok(n, 'account')}:{h}" for n, h in sorted((extra or {}).items())]
    lines += [f"{_ok(u['name'], 'user')}:{u['mqtt_hash']}" for u in
              sorted(users, key=lambda u: u["name"]) if u.get("mqtt_hash")]
    return "\n".join(lines) + ("\n" if lines else "")
