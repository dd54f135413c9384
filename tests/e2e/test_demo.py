"""`edge-agent demo`: a simulated store runs, shows every device, and leaves a usable config."""

from __future__ import annotations

from conftest import run_cli


def test_demo_runs_a_simulated_store_with_both_receipt_printers(tmp_path):
    state = tmp_path / "demo"
    result = run_cli("demo", "--seconds", "4", "--refresh", "1", "--state-dir", str(state),
                     "--no-snmp")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    last_view = result.stdout.rsplit("edge-agent demo:", 1)[1]
    rows = {line.split()[0]: line for line in last_view.splitlines()
            if line.startswith(("receipt-", "register"))}
    assert set(rows) >= {"receipt-front", "receipt-back", "register"}
    assert "model=TM-T88VI" in rows["receipt-front"]
    assert "model=TM-T20III" in rows["receipt-back"]
    # The config it generated names the simulators' real addresses and is valid.
    generated = state / "demo-agent.toml"
    check = run_cli("check-config", str(generated))
    assert check.returncode == 0, check.stderr
    status = run_cli("status", "--config", str(generated), "--json")
    assert status.returncode == 0
    assert '"receipt-back"' in status.stdout and '"printer.paper"' in status.stdout


def test_demo_rejects_a_negative_duration_plainly(tmp_path):
    result = run_cli("demo", "--seconds", "-1", "--state-dir", str(tmp_path))
    assert result.returncode == 2 and "--seconds" in result.stderr
    assert "Traceback" not in result.stderr
