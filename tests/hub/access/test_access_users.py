"""Users and tokens on both databases: shown once, stored only hashed, revocable, rotated; every
change audited in the same transaction; bad names, roles and scopes refused."""

from __future__ import annotations

import json

import pytest

from accesskit import ADMIN, Clock, migrated
from hub.domains import audit
from hub.domains.access import Actor
from hub.domains.access.users import (add_user, authenticate, disable_user, get_user,
                                      list_users, rotate_token, token_hash)
from hub.errors import Conflict, Forbidden, Invalid, NotFound, Unauthorized


@pytest.fixture
def db(hub_db):
    store = migrated(hub_db)
    yield store
    store.close()


def test_a_token_is_shown_once_stored_only_as_a_hash_and_authenticates(db):
    clock = Clock()
    with db.transaction() as tx:
        user, token = add_user(tx, clock, ADMIN, "ann", "regional-manager",
                               regions=["north", "east"])
    assert token.startswith("eh_") and len(token) >= 40
    assert user["regions"] == ["east", "north"] and token not in json.dumps(user)
    with db.read() as tx:
        tx.execute("SELECT hash FROM api_tokens")
        stored = [r[0] for r in tx.fetchall()]
        tx.execute("SELECT * FROM users")
        row = tx.fetchall()
    assert stored == [token_hash(token)] and token not in repr(row)
    with db.read() as tx:
        who = authenticate(tx, token)
    assert who == Actor("user", "ann", "regional-manager", frozenset({"north", "east"}))


def test_tokens_are_different_each_time(db):
    with db.transaction() as tx:
        tokens = {add_user(tx, Clock(), ADMIN, f"u{i}", "auditor")[1] for i in range(20)}
    assert len(tokens) == 20


def test_disable_and_rotate_revoke_tokens(db):
    clock = Clock()
    with db.transaction() as tx:
        _, t1 = add_user(tx, clock, ADMIN, "bob", "it-operator")
        _, t2 = rotate_token(tx, clock, ADMIN, "bob")
    with db.read() as tx:
        with pytest.raises(Unauthorized):
            authenticate(tx, t1)
        assert authenticate(tx, t2).name == "bob"
    with db.transaction() as tx:
        user = disable_user(tx, clock, ADMIN, "bob")
    assert user["disabled"] is not None and user["active_tokens"] == 0
    with db.read() as tx:
        with pytest.raises(Unauthorized):
            authenticate(tx, t2)
    with db.transaction() as tx, pytest.raises(Conflict):
        rotate_token(tx, clock, ADMIN, "bob")


def test_every_change_is_in_the_audit_log_without_the_token(db):
    clock = Clock()
    with db.transaction() as tx:
        _, token = add_user(tx, clock, ADMIN, "cy", "store-manager", stores=["s1"],
                            source="cli:local")
        rotate_token(tx, clock, ADMIN, "cy")
        disable_user(tx, clock, ADMIN, "cy")
    with db.read() as tx:
        rows = audit.entries(tx)
    assert [r["action"] for r in rows] == ["users.add", "users.rotate-token", "users.disable"]
    assert rows[0]["actor"] == "root" and rows[0]["actor_kind"] == "local"
    assert rows[0]["detail"] == {"role": "store-manager", "regions": [], "stores": ["s1"]}
    assert token not in json.dumps(rows)
    audit.verify(db)


def test_a_failed_change_leaves_neither_the_user_nor_its_audit_entry(db):
    clock = Clock()
    with db.transaction() as tx:
        add_user(tx, clock, ADMIN, "dee", "auditor")
    with pytest.raises(Conflict):
        with db.transaction() as tx:
            add_user(tx, clock, ADMIN, "dee", "auditor")
    with db.read() as tx:
        assert len(list_users(tx)) == 1 and len(audit.entries(tx)) == 1


@pytest.mark.parametrize("name, role, regions, stores, error", [
    ("x\x1b[31m", "auditor", [], [], "user name"),
    ("../etc", "auditor", [], [], "user name"),
    ("a'; DROP TABLE users; --", "auditor", [], [], "user name"),
    ("", "auditor", [], [], "user name"),
    ("ok", "root", [], [], "unknown role"),
    ("ok", "regional-manager", [], [], "at least one"),
    ("ok", "auditor", ["north"], [], "takes no"),
    ("ok", "store-manager", [], ["s 1"], "store name"),
])
def test_bad_users_are_refused(db, name, role, regions, stores, error):
    with db.transaction() as tx, pytest.raises(Invalid, match=error):
        add_user(tx, Clock(), ADMIN, name, role, regions=regions, stores=stores)
    with db.read() as tx:
        assert list_users(tx) == []


def test_only_users_manage_may_change_users(db):
    clock = Clock()
    with db.transaction() as tx:
        add_user(tx, clock, ADMIN, "ann", "auditor")
    auditor = Actor("user", "ann", "auditor")
    with db.transaction() as tx, pytest.raises(Forbidden):
        add_user(tx, clock, auditor, "eve", "hq-admin")
    with db.transaction() as tx, pytest.raises(Forbidden):
        disable_user(tx, clock, auditor, "ann")
    with db.read() as tx, pytest.raises(NotFound):
        get_user(tx, "eve")


@pytest.mark.parametrize("token", [None, "", "Bearer x", "eh_", "eh_" + "A" * 43, "x" * 5000,
                                   "eh_\x00\x01"])
def test_malformed_or_unknown_tokens_are_unauthorized(db, token):
    with db.read() as tx, pytest.raises(Unauthorized):
        authenticate(tx, token)


def test_the_user_count_is_bounded(db):
    with db.transaction() as tx:
        add_user(tx, Clock(), ADMIN, "a1", "auditor", max_users=1)
    with db.transaction() as tx, pytest.raises(Conflict, match="users_max"):
        add_user(tx, Clock(), ADMIN, "a2", "auditor", max_users=1)
