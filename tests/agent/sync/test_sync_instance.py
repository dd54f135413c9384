"""The agent's instance id (issue 15 item 6): made once with its state database and kept, so
the hub can tell a store whose state was lost (a new instance, sessions from 1) from an old
message of the same one."""

from __future__ import annotations

import edge_protocol as wire
from edge_agent.state import db as state_db
from edge_agent.sync import state


def test_the_instance_is_made_once_per_state_database_and_kept(tmp_path):
    first = state_db.connect(tmp_path / "a" / "agent.db")
    try:
        made = state.instance_id(first)
        assert state.instance_id(first) == made
    finally:
        first.close()
    again = state_db.connect(tmp_path / "a" / "agent.db")
    try:
        assert state.instance_id(again) == made  # across restarts
    finally:
        again.close()
    lost = state_db.connect(tmp_path / "b" / "agent.db")  # the state database was lost
    try:
        assert state.instance_id(lost) != made
    finally:
        lost.close()
    body = wire.parse_body("death", {"session": 1, "instance": made})
    assert body.instance == made
