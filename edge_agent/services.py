"""What the agent hands its services: the parts that exist once its state database is open.

A service is a long-running coroutine started with the agent (sync client, health cycle,
watchdog notifier) and cancelled at stop. Each is built by a factory in its own module from
what it needs that is known before the agent starts (its settings, getters of the running
config, callbacks that tell the agent what it made), and receives `Parts` when it runs. No
service sees the Agent: the agent (agent.py) is the one place that wires them.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Awaitable, Callable

if TYPE_CHECKING:  # pragma: no cover
    from edge_agent.outbox import Outbox
    from edge_agent.recorder import Recorder

# Run fn(*args) on the agent's single database thread and await its result.
DbCall = Callable[..., Awaitable[Any]]


@dataclass(frozen=True)
class Parts:
    """The started agent's parts a service may use."""

    db: DbCall                  # run a function on the database thread
    conn: sqlite3.Connection    # the state database: use it only inside db(...) calls
    outbox: "Outbox"
    recorder: "Recorder"        # publish(kind, body), observe(fn)


# A service: called with the parts when the agent starts; runs until cancelled. Its __name__
# names its task and its log lines.
Service = Callable[[Parts], Awaitable[None]]
