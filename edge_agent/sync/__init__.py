"""Sync the outbox with the hub over MQTT v5; paho is imported only when the service starts.

    state.py    session counter and the sync status kept in the state database's meta table
    birth.py    the birth message: inventory, capabilities, versions, config hash
    backoff.py  reconnect delays (exponential, bounded, jittered)
    machine.py  the link's states: an enum, a transition table, one locked fire(event)
    acks.py     PUBACKs for received messages: after they are recorded, in arrival order
    client.py   the MQTT client: connect, birth and Will, drain the outbox at QoS 1, acks
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from edge_agent.config import AgentConfig, SyncSection
from edge_agent.services import Parts, Service

if TYPE_CHECKING:  # pragma: no cover
    from edge_agent.sync.client import SyncClient


def service(settings: SyncSection, config: Callable[[], AgentConfig], *,
            base_dir: Path | None = None,
            model_version: Callable[[], str | None] = lambda: None,
            on_client: Callable[["SyncClient"], Any] = lambda client: None,
            control: Any = None) -> Service:
    """Build the agent's sync service.

    `config()` is the running config (for births), `base_dir` the folder relative TLS paths
    start from, `model_version()` the model the health engine has loaded (None: read it from
    the state database), `on_client` learns the client once it exists (for summaries, tests),
    `control` is the control plane (edge_agent.control.Controller) whose topics the client
    subscribes and whose messages it hands over, or None.
    """

    async def sync(parts: Parts) -> None:
        """Run the sync client until cancelled."""
        from edge_agent.sync.client import SyncClient  # paho is imported here, not before

        client = SyncClient(settings, config, parts.outbox, parts.db, base_dir=base_dir,
                            model_version=model_version, control=control)
        on_client(client)
        await client.run()

    return sync
