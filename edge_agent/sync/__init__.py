"""Sync the outbox with the hub over MQTT v5; paho is imported only when the service starts.

    state.py    session counter and the sync status kept in the state database's meta table
    birth.py    the birth message: inventory, capabilities, versions, config hash
    backoff.py  reconnect delays (exponential, bounded, jittered)
    client.py   the MQTT client: connect, birth and Will, drain the outbox at QoS 1, acks
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from edge_agent.agent import Agent


async def sync(agent: "Agent") -> None:
    """The agent service: run the sync client until cancelled."""
    from edge_agent.sync.client import SyncClient

    client = SyncClient.for_agent(agent)
    agent.sync_client = client  # for summaries and tests
    await client.run()
