"""A hub database with a small fleet in two regions and one user per role, for the API tests."""

from __future__ import annotations

import edge_protocol as wire
from accesskit import ADMIN, Clock, migrated
from hub.domains.access.users import add_user
from hub.ingest.writer import apply as ingest_apply
from hubkit import alert_body, birth_body, decision_body, envelope, telemetry

USERS = {
    "admin": ("hq-admin", [], []),
    "ops": ("it-operator", [], []),
    "north-rm": ("regional-manager", ["north"], []),
    "s3-sm": ("store-manager", [], ["s3"]),
    "audit": ("auditor", [], []),
}


def seed_fleet(db) -> None:
    """Two regions, three stores: s1 (north) with a device at risk and a critical alert, s2
    (north) offline, s3 (south) with an alert."""
    envs = [
        envelope("birth", birth_body(1, ("p1", "p2")), store="s1", region="north", seq=0),
        envelope("telemetry", telemetry(1, "p1"), store="s1", region="north", seq=1),
        envelope("decision", decision_body("p1"), store="s1", region="north", seq=2),
        envelope("alert", alert_body(device="p2"), store="s1", region="north", seq=3),
        envelope("birth", birth_body(4, ("r1",)), store="s2", region="north", seq=0),
        envelope("death", {"session": 4}, store="s2", region="north", seq=0),
        envelope("birth", birth_body(1, ("x1",)), store="s3", region="south", seq=0),
        envelope("alert", alert_body(device="x1", what="cover_open"), store="s3",
                 region="south", seq=5),
    ]
    decoded = [wire.decode(wire.encode(e)) for e in envs]
    with db.transaction() as tx:
        db.insert_new_messages(tx, [(e.id, e.store, e.region, e.seq, e.kind, e.ts, 1.0, "{}")
                                    for e in decoded])
        ingest_apply(db, tx, decoded, 1000.0)


def seed_users(db) -> dict[str, str]:
    """One user per role; return {name: token}."""
    tokens = {}
    with db.transaction() as tx:
        for name, (role, regions, stores) in USERS.items():
            _, tokens[name] = add_user(tx, Clock(), ADMIN, name, role, regions=regions,
                                       stores=stores)
    return tokens


def hub_with_fleet(url: str):
    db = migrated(url)
    seed_fleet(db)
    return db, seed_users(db)
