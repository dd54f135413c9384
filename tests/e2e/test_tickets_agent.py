"""End to end with a real agent: a simulated ESC/POS printer that reports an unrecoverable
error and recovers again and again (a cover opened is attention, not failure: docs/alerts.md), `edge-agent run` deciding failed/ok and syncing over real Mosquitto, an
`edge-hub serve --tickets` on PostgreSQL, and the ServiceNow stand-in (tests/support/itsm_standins.py,
written from ServiceNow's documented Table API): one incident for the whole flapping."""

from __future__ import annotations

import pytest

from agentproc import AgentProcess
from test_long_outage import PrinterSim
from test_tickets_e2e import db_rows, hub, pg, settled, sn, tickets_toml  # noqa: F401 (fixtures)
from wait import wait_until

PATIENCE_S = 90.0  # an upper bound on a loaded machine, never a speed


def agent_toml(state_dir, port: int, printer_port: int) -> str:
    return (f'[agent]\nstore = "s1"\nregion = "r1"\nstate_dir = "{state_dir}"\n\n'
            "[telemetry]\nflush_interval = 0.5\n\n"
            "[scoring]\nenabled = false\ninterval = 1.0\noffline_after = 60\n"
            "failed_after = 120\n\n"
            f'[sync]\nenabled = true\nhost = "127.0.0.1"\nport = {port}\ntls = false\n'
            "keepalive = 30\nconnect_timeout = 5.0\nreconnect_min = 0.5\nreconnect_max = 2.0\n\n"
            '[[devices]]\nid = "receipt-front"\nkind = "escpos"\ninterval = 0.5\n'
            "timeout = 5.0\nbackoff_max = 2.0\n\n[devices.escpos]\n"
            f'transport = "tcp"\nhost = "127.0.0.1"\nport = {printer_port}\n'
            "reply_timeout = 1.0\n")


@pytest.mark.slow
def test_a_real_agents_printer_flapping_between_failed_and_ok_opens_one_incident(
        mosquitto, pg, sn, tmp_path):  # noqa: F811
    h = hub(mosquitto, pg, tickets_toml(tmp_path, sn), tmp_path)
    printer = PrinterSim("receipt-front", tmp_path / "printer.log")
    agent = None
    try:
        port = printer.wait_listening()
        config = tmp_path / "agent.toml"
        config.write_text(agent_toml(tmp_path / "state", mosquitto.port, port))
        agent = AgentProcess(config, tmp_path / "agent.log")
        flaps = 4
        for i in range(flaps):
            printer.command("fatal on")
            wait_until(lambda: db_rows(pg, "SELECT COUNT(*) FROM alerts WHERE what = 'failed'"
                                           " AND state = 'raised'")[0][0] == 1,
                       PATIENCE_S, f"failed raised at the hub ({i + 1})")
            printer.command("fatal off")
            wait_until(lambda: db_rows(pg, "SELECT COUNT(*) FROM alerts WHERE what = 'failed'"
                                           " AND state = 'cleared'")[0][0] == i + 1,
                       PATIENCE_S, f"failed cleared at the hub ({i + 1})")
        wait_until(lambda: db_rows(pg, "SELECT events FROM tickets") == [(2 * flaps,)],
                   PATIENCE_S, "every transition applied to the ticket")
        wait_until(lambda: settled(pg), PATIENCE_S, "every intent delivered")
    finally:
        if agent is not None:
            agent.stop()
        printer.kill()
        h.terminate()
    assert len(sn.incidents) == 1
    (inc,) = sn.incidents.values()
    assert "receipt-front" in inc["short_description"] and "escpos" in inc["short_description"]
    assert "unrecoverable" in inc["description"]  # the agent's own explanation is in it
    assert db_rows(pg, "SELECT state, reopened FROM tickets") == [("cleared", 0)]
