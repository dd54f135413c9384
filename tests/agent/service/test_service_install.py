"""`edge-agent service install|uninstall`, the systemd units and the udev example."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, run_cli
from edge_agent.service import linux, plan as planmod
from edge_agent.service import windows
from edge_agent.service.paths import default_config_path, layout

SYSTEMD_ANALYZE = shutil.which("systemd-analyze") or "/usr/bin/systemd-analyze"
needs_analyze = pytest.mark.skipif(not os.path.exists(SYSTEMD_ANALYZE),
                                   reason="systemd-analyze is not installed "
                                          "(Debian package systemd; scripts/system-deps.sh)")
needs_systemctl = pytest.mark.skipif(shutil.which("systemctl") is None,
                                     reason="systemctl is not installed (Debian package systemd)")


def verify(unit: Path) -> subprocess.CompletedProcess:
    """Run systemd-analyze verify on one unit file; its warnings count as failures."""
    return subprocess.run([SYSTEMD_ANALYZE, "verify", str(unit)], capture_output=True,
                          text=True, timeout=60)


def tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@needs_analyze
@pytest.mark.parametrize("unit, command", [("edge-agent.service", "edge-agent"),
                                           ("edge-hub.service", "edge-hub")])
def test_systemd_analyze_verify_passes_on_the_shipped_units(tmp_path, unit, command):
    stub = tmp_path / command  # verify checks that ExecStart's program exists and runs.
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    text = (ROOT / "packaging/systemd" / unit).read_text()
    assert f"/opt/retail-edge/venv/bin/{command}" in text
    (tmp_path / unit).write_text(text.replace(f"/opt/retail-edge/venv/bin/{command}", str(stub)))
    result = verify(tmp_path / unit)
    assert result.returncode == 0, result.stderr
    assert unit not in result.stderr, f"systemd-analyze warned: {result.stderr}"


@needs_analyze
def test_systemd_analyze_catches_a_misspelt_directive(tmp_path):
    stub = tmp_path / "edge-agent"
    stub.write_text("#!/bin/sh\n")
    stub.chmod(0o755)
    text = (ROOT / "packaging/systemd/edge-agent.service").read_text()
    text = text.replace("/opt/retail-edge/venv/bin/edge-agent", str(stub))
    (tmp_path / "edge-agent.service").write_text(text.replace("WatchdogSec=", "WatchdgSec="))
    assert "edge-agent.service" in verify(tmp_path / "edge-agent.service").stderr


@pytest.mark.parametrize("directive", [
    "Type=notify", "WatchdogSec=", "Restart=on-failure", "StartLimitIntervalSec=",
    "StartLimitBurst=", "User=edge-agent", "SupplementaryGroups=dialout lp",
    "StateDirectory=edge-agent", "ConfigurationDirectory=edge-agent", "ProtectSystem=strict",
    "ProtectHome=yes", "NoNewPrivileges=yes", "PrivateTmp=yes", "DeviceAllow=char-ttyUSB rw",
    "DeviceAllow=char-usb_device rw", "DeviceAllow=char-lp rw",
    "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK",
])
def test_the_agent_unit_sets(directive):
    lines = (ROOT / "packaging/systemd/edge-agent.service").read_text().splitlines()
    assert any(line.startswith(directive) for line in lines)


def test_the_units_inside_the_package_are_the_ones_in_packaging():
    for unit in ("edge-agent.service", "edge-hub.service"):
        assert (ROOT / "edge_agent/service/units" / unit).read_text() == \
            (ROOT / "packaging/systemd" / unit).read_text(), f"copy packaging/systemd/{unit}"


def test_the_example_config_inside_the_package_is_the_one_at_the_root():
    assert (ROOT / "edge_agent/defaults/agent.example.toml").read_text() == \
        (ROOT / "agent.example.toml").read_text(), \
        "cp agent.example.toml edge_agent/defaults/agent.example.toml"


def test_every_udev_rule_names_a_stable_device_for_the_agents_groups():
    rules = [line for line in (ROOT / "packaging/udev/70-edge-agent.rules").read_text()
             .splitlines() if line.strip() and not line.startswith("#")]
    assert len(rules) >= 5
    for rule in rules:
        assert re.search(r'ATTRS?\{idVendor\}=="[0-9a-f]{4}"', rule), rule
        assert re.search(r'ATTRS?\{idProduct\}=="[0-9a-f]{4}"', rule), rule
        assert re.search(r'SYMLINK\+="edge/(printer|scanner)-[\w%-]+"', rule), rule
        assert re.search(r'GROUP="(dialout|lp)"', rule), rule
        assert 'MODE="0660"' in rule, rule


def test_install_dry_run_prints_every_step_and_changes_nothing(tmp_path):
    result = run_cli("service", "install", "--dry-run", "--root", str(tmp_path))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "nothing will be changed" in out
    assert f"write {tmp_path}/etc/edge-agent/agent.toml" in out
    assert f"write {tmp_path}/etc/systemd/system/edge-agent.service" in out
    assert f"systemctl --root={tmp_path} enable edge-agent.service" in out
    assert tree(tmp_path) == []


def test_install_dry_run_on_this_machine_lists_the_account_the_unit_and_systemctl():
    before = os.path.exists("/etc/systemd/system/edge-agent.service")
    result = run_cli("service", "install", "--dry-run")
    assert result.returncode == 0, result.stderr
    out = result.stdout.splitlines()
    expected = ["- write /etc/edge-agent/agent.toml", "- write /etc/systemd/system/edge-agent.service",
                "- systemctl daemon-reload", "- systemctl enable edge-agent.service",
                "- systemctl restart edge-agent.service"]
    found = [next(i for i, line in enumerate(out) if line.startswith(e) or
                  (e.startswith("- write /etc/edge-agent") and "keep existing" in line))
             for e in expected]
    assert found == sorted(found), "steps out of order"
    assert any("useradd --system" in line or "keep existing user" in line for line in out)
    assert os.path.exists("/etc/systemd/system/edge-agent.service") == before


@pytest.mark.skipif(os.path.isdir("/run/systemd/system"), reason="systemd runs here")
def test_a_real_install_without_systemd_stops_with_a_clear_error_before_changing_anything():
    result = run_cli("service", "install")
    assert result.returncode == 1
    assert "systemd is not running" in result.stderr
    assert "Traceback" not in result.stderr
    assert not os.path.exists("/etc/systemd/system/edge-agent.service")


def test_install_as_a_normal_user_is_refused_and_runs_no_step(tmp_path):
    plan = linux.install_plan(euid=1000, booted=True, root=None)
    assert any("needs root" in b for b in plan.blockers)
    ran = []
    plan.steps = [planmod.Step("x", lambda: ran.append(1))]
    with pytest.raises(planmod.InstallError, match="sudo"):
        plan.execute(dry_run=False)
    assert ran == []


def test_a_bad_config_source_is_refused_before_anything_is_written(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[agent]\nstore = 'has space'\n")
    image = tmp_path / "image"
    image.mkdir()
    result = run_cli("service", "install", "--root", str(image), "--config-source", str(bad))
    assert result.returncode == 2
    assert "agent.store" in result.stderr
    assert tree(image) == []


@needs_systemctl
def test_install_into_an_image_writes_config_and_unit_enables_it_and_an_upgrade_keeps_the_config(
        tmp_path):
    image = tmp_path / "image"
    image.mkdir()
    result = run_cli("service", "install", "--root", str(image))
    assert result.returncode == 0, result.stderr
    config = image / "etc/edge-agent/agent.toml"
    unit = image / "etc/systemd/system/edge-agent.service"
    link = image / "etc/systemd/system/multi-user.target.wants/edge-agent.service"
    assert stat.S_IMODE(config.stat().st_mode) == 0o640
    assert stat.S_IMODE(config.parent.stat().st_mode) == 0o750
    assert 'state_dir = "/var/lib/edge-agent"' in config.read_text()
    assert run_cli("check-config", str(config)).returncode == 0
    exec_start = next(line for line in unit.read_text().splitlines()
                      if line.startswith("ExecStart="))
    assert exec_start.split("=", 1)[1].split()[0] in (str(Path(sys.executable).parent /
                                                          "edge-agent"), sys.executable)
    assert link.is_symlink()
    if os.path.exists(SYSTEMD_ANALYZE):
        verified = verify(unit)
        assert verified.returncode == 0 and "edge-agent.service" not in verified.stderr, \
            verified.stderr
    # The store edits its config; an upgrade (install again) rewrites the unit, keeps the config.
    config.write_text(config.read_text().replace("store-0001", "store-0815"))
    unit.write_text("stale unit from the previous release\n")
    again = run_cli("service", "install", "--root", str(image))
    assert again.returncode == 0, again.stderr
    assert "keep existing" in again.stdout
    assert "store-0815" in config.read_text()
    assert "Type=notify" in unit.read_text()
    gone = run_cli("service", "uninstall", "--root", str(image))
    assert gone.returncode == 0, gone.stderr
    assert not unit.exists() and not link.is_symlink()
    assert "store-0815" in config.read_text()


def test_windows_install_dry_run_names_its_paths_and_recovery_commands():
    env = {"ProgramData": r"D:\Data"}
    plan = windows.install_plan(env, admin=True, pywin32=True)
    said = [s.says for s in plan.steps]
    assert plan.blockers == []
    assert said[:3] == [r"create folder D:\Data\RetailEdge", r"create folder D:\Data\RetailEdge\state",
                        r"write D:\Data\RetailEdge\agent.toml"]
    assert any("edge_agent.service.windows.EdgeAgentService" in s for s in said)
    assert "sc.exe failure RetailEdgeAgent reset= 600 actions= restart/5000/restart/5000/" \
           "restart/60000" in said
    assert said[-2:] == ["sc.exe stop RetailEdgeAgent", "sc.exe start RetailEdgeAgent"]


def test_windows_install_is_refused_without_an_administrator_or_pywin32():
    plan = windows.install_plan({}, admin=False, pywin32=False)
    assert any("administrator" in b for b in plan.blockers)
    assert any("pip install pywin32" in b for b in plan.blockers)
    with pytest.raises(planmod.InstallError):
        plan.execute(dry_run=False)


def test_the_windows_example_config_puts_state_under_programdata_and_parses():
    from edge_agent.config import parse_text

    lay = layout(windows=True, environ={"ProgramData": r"C:\ProgramData"})
    config = parse_text(windows.example_config(lay.state_dir), "example")
    assert config.agent.state_dir == r"C:\ProgramData\RetailEdge\state"


@pytest.mark.parametrize("case, environ, windows_, expect", [
    ("linux reads /etc/edge-agent", {}, False, "/etc/edge-agent/agent.toml"),
    ("windows reads ProgramData", {"ProgramData": r"E:\PD"}, True, r"E:\PD\RetailEdge\agent.toml"),
    ("windows without ProgramData uses C:", {}, True, r"C:\ProgramData\RetailEdge\agent.toml"),
    ("the variable overrides on linux", {"EDGE_AGENT_CONFIG": "/srv/a.toml"}, False,
     "/srv/a.toml"),
    ("the variable overrides on windows", {"EDGE_AGENT_CONFIG": r"F:\a.toml"}, True, r"F:\a.toml"),
])
def test_default_config_path(case, environ, windows_, expect):
    assert default_config_path(environ, windows=windows_) == expect, case


@needs_analyze
def test_an_install_path_with_spaces_and_percent_signs_still_verifies(tmp_path):
    folder = tmp_path / "Retail Edge 100%"
    folder.mkdir()
    stub = folder / "edge-agent"
    stub.write_text("#!/bin/sh\n")
    stub.chmod(0o755)
    unit = tmp_path / "edge-agent.service"
    unit.write_text(linux.render_unit([str(stub)]))
    result = verify(unit)
    assert result.returncode == 0 and "edge-agent.service" not in result.stderr, result.stderr
