"""The wheel and sdist install on a clean machine, as the agent alone and as the hub alone.

Built offline from a copy of this checkout (setuptools and wheel from the dev extra, no build
isolation), the sdist is turned into the wheel, so a file missing from the sdist fails here too.
The wheel goes into two fresh virtual environments made without pip and without system
packages, one for each install a user makes (pyproject.toml):

    pip install 'retail-edge[agent]'    the agent: here without psycopg, amqtt, orjson, starlette
                                        and uvicorn
    pip install 'retail-edge[hub]'      the hub: here without pysnmp, pyserial, onnxruntime
                                        and python-escpos

Their libraries come from the test's own environment (no network) through a .pth line naming
a folder of links to it that leaves out the other half's distributions, so an import of one of
those fails there as on the user's machine; each extra's declared requirements are checked to
be met by what is present.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import sysconfig
import tarfile
import venv
import zipfile
from importlib import metadata
from pathlib import Path

import pytest

from conftest import ROOT, free_port
from wait import wait_until

pytest.importorskip("setuptools")
pytest.importorskip("wheel")

MODEL_DIR = "edge_agent/health/model"
STAND_IN_CARD = {"version": "stand-in-0", "sha256": "0" * 64}

# The distributions each install must do without, and the modules that show they are absent.
HUB_ONLY = {"psycopg": "psycopg", "psycopg-binary": "psycopg_binary", "amqtt": "amqtt",
            "orjson": "orjson", "starlette": "starlette", "uvicorn": "uvicorn"}
# (psutil stays: amqtt, the hub's embedded broker, requires it.)
AGENT_ONLY = {"pysnmp": "pysnmp", "pyserial": "serial", "onnxruntime": "onnxruntime",
              "python-escpos": "escpos"}


def run(*args, cwd=None, env=None, timeout=180) -> subprocess.CompletedProcess:
    result = subprocess.run([str(a) for a in args], capture_output=True, text=True, cwd=cwd,
                            env=env, timeout=timeout)
    assert result.returncode == 0, f"{args}: {result.stdout}\n{result.stderr}"
    return result


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def libraries_without(folder: Path, excluded: set[str]) -> Path:
    """A folder of links to this environment's installed libraries, leaving out the
    distributions named, every one that requires them (test tools such as snmpsim; were a
    library the install needs among them, the extra's check would show it missing) and this
    project's own editable install."""
    from packaging.requirements import Requirement

    dists = {_canonical(d.metadata["Name"]): d for d in metadata.distributions()}
    needs = {name: {_canonical(r.name) for r in map(Requirement, d.requires or ())
                    if r.marker is None or r.marker.evaluate({"extra": ""})}
             for name, d in dists.items()}
    gone = set(excluded) | {"retail-edge"}
    while more := {n for n, reqs in needs.items() if n not in gone and reqs & gone}:
        gone |= more
    skip = set()
    for name in gone & set(dists):
        skip |= {f.parts[0] for f in dists[name].files or () if f.parts[0] != ".."}
    folder.mkdir()
    paths = sysconfig.get_paths()
    for site in dict.fromkeys((paths["purelib"], paths["platlib"])):
        for entry in Path(site).iterdir():
            if (entry.name in skip or entry.name.startswith("__editable__")
                    or entry.suffix == ".pth" or (folder / entry.name).exists()):
                continue
            (folder / entry.name).symlink_to(entry)
    return folder


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Build sdist -> wheel from a copy of the checkout."""
    tmp = tmp_path_factory.mktemp("pkg")
    src = tmp / "src"
    files = run("git", "ls-files", "-co", "--exclude-standard", cwd=ROOT).stdout.split()
    for name in files:
        if (ROOT / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            (src / name).write_bytes((ROOT / name).read_bytes())
    model = src / MODEL_DIR / "device_health.onnx"
    if not model.exists():
        # Until branch `health` is merged: a stand-in model, to prove the packaging rule ships
        # edge_agent/**/*.onnx and *.card.json and that --version reads the card.
        model.parent.mkdir(parents=True, exist_ok=True)
        model.write_bytes(b"stand-in, not a model")
        (model.parent / "device_health.card.json").write_text(json.dumps(STAND_IN_CARD))
    card = json.loads((model.parent / "device_health.card.json").read_text())
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "EDGE_AGENT_CONFIG")}
    run(sys.executable, "-c", "from setuptools import build_meta as b; "
        f"b.build_sdist({str(tmp / 'sdist')!r})", cwd=src, env=env)
    sdist = next((tmp / "sdist").glob("*.tar.gz"))
    run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
        "-w", tmp / "dist", sdist, cwd=tmp, env=env)
    wheel = next((tmp / "dist").glob("*.whl"))
    return {"tmp": tmp, "sdist": sdist, "wheel": wheel, "env": env, "card": card}


def install(built, name: str, without: dict[str, str]) -> dict:
    """The wheel in a fresh venv whose libraries leave out the distributions `without`."""
    tmp, env = built["tmp"], built["env"]
    venv.EnvBuilder(with_pip=False, system_site_packages=False).create(tmp / name)
    python = tmp / name / "bin" / "python"
    run(sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps",
        "--no-index", built["wheel"], cwd=tmp, env=env)
    site = Path(run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])",
                    cwd=tmp, env=env).stdout.strip())
    libraries = libraries_without(tmp / f"{name}-libraries", set(without))
    (site / "zz-deps-from-test-env.pth").write_text(f"{libraries}\n")
    return dict(built, bin=tmp / name / "bin", site=site, without=without)


@pytest.fixture(scope="module")
def installed(built):
    """The agent's install: the wheel without the hub's libraries."""
    return install(built, "agent-venv", HUB_ONLY)


@pytest.fixture(scope="module")
def hub_installed(built):
    """The hub's install: the wheel without pysnmp, pyserial, onnxruntime and the other
    agent-only libraries."""
    return install(built, "hub-venv", AGENT_ONLY)


def extra_requirements(wheel: Path, extra: str | None) -> list[str]:
    """Names of the wheel's requirements that apply with `extra` (None: the base ones)."""
    from packaging.requirements import Requirement

    with zipfile.ZipFile(wheel) as zf:
        meta = zf.read(next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA")))
    names = []
    for line in meta.decode().splitlines():
        if line.startswith("Requires-Dist: "):
            req = Requirement(line.split(": ", 1)[1])
            applies = (req.marker is None if extra is None else
                       req.marker is not None and req.marker.evaluate({"extra": extra}))
            if applies:
                names.append(_canonical(req.name))
    return names


def test_the_sdist_carries_the_example_config_the_units_and_the_templates(built):
    with tarfile.open(built["sdist"]) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    for name in ("agent.example.toml", "edge_agent/defaults/agent.example.toml",
                 "packaging/systemd/edge-agent.service", "packaging/systemd/edge-hub.service",
                 "packaging/udev/70-edge-agent.rules", "packaging/mosquitto/acl.template",
                 f"{MODEL_DIR}/device_health.onnx", f"{MODEL_DIR}/device_health.card.json"):
        assert name in names, name


def test_the_wheel_carries_the_model_the_example_config_and_the_units(built):
    names = set(zipfile.ZipFile(built["wheel"]).namelist())
    for name in ("edge_agent/defaults/agent.example.toml", "edge_agent/defaults/demo.toml",
                 "edge_agent/service/units/edge-agent.service",
                 f"{MODEL_DIR}/device_health.onnx", f"{MODEL_DIR}/device_health.card.json"):
        assert name in names, name
    assert not any(n.startswith("tests/") for n in names)


def test_the_wheel_declares_an_agent_and_a_hub_extra_each_without_the_others_libraries(built):
    base = extra_requirements(built["wheel"], None)
    agent = extra_requirements(built["wheel"], "agent")
    hub = extra_requirements(built["wheel"], "hub")
    assert not set(base) & (set(HUB_ONLY) | set(AGENT_ONLY)), base
    assert {"pysnmp", "pyserial", "onnxruntime", "paho-mqtt"} <= set(agent), agent
    assert not set(agent) & set(HUB_ONLY), agent
    assert {"paho-mqtt", "psycopg", "amqtt"} <= set(hub), hub
    assert not set(hub) & set(AGENT_ONLY), hub


@pytest.mark.parametrize("which, extra", [("installed", "agent"), ("hub_installed", "hub")])
def test_each_install_meets_its_extras_requirements_without_the_other_halfs(which, extra,
                                                                          request):
    where = request.getfixturevalue(which)
    python, tmp, env = where["bin"] / "python", where["tmp"], where["env"]
    run(sys.executable, "-m", "pip", "--python", python, "check", cwd=tmp, env=env)
    wanted = [n for n in extra_requirements(where["wheel"], extra) if n != "pywin32"]
    code = ("import sys; from importlib import metadata\n"
            "for name in sys.argv[1:]:\n"
            "    try: metadata.version(name)\n"
            "    except metadata.PackageNotFoundError: print('MISSING', name)\n")
    assert "MISSING" not in run(python, "-c", code, *wanted, cwd=tmp, env=env).stdout
    for dist, module in where["without"].items():
        probe = subprocess.run([python, "-c", f"import {module}"], capture_output=True,
                               text=True, cwd=tmp, env=env, timeout=60)
        assert probe.returncode != 0 and "ModuleNotFoundError" in probe.stderr, \
            f"{dist} should be absent from the {extra} install"


def test_the_installed_agent_runs_from_the_venv_not_from_this_checkout(installed):
    out = run(installed["bin"] / "python", "-c", "import edge_agent; print(edge_agent.__file__)",
              cwd=installed["tmp"], env=installed["env"]).stdout
    assert out.startswith(str(installed["site"]))


def test_edge_agent_version_prints_the_model_version_python_and_libraries(installed):
    out = run(installed["bin"] / "edge-agent", "--version", cwd=installed["tmp"],
              env=installed["env"]).stdout
    assert out.startswith("edge-agent 0.1.0\n")
    assert f"model: {installed['card']['version']}" in out
    assert "Python 3." in out and "onnxruntime " in out and "paho-mqtt " in out


def test_the_hub_alone_imports_every_module_and_runs_without_the_agents_libraries(
        hub_installed, tmp_path):
    where = hub_installed
    python, tmp, env = where["bin"] / "python", where["tmp"], where["env"]
    code = ("import importlib, pkgutil, sys, hub\n"
            "names = [m.name for m in pkgutil.walk_packages(hub.__path__, 'hub.')\n"
            "         if not m.name.endswith('__main__')]\n"
            "for name in names: importlib.import_module(name)\n"
            "print(len(names), hub.__file__)\n"
            "print('LOADED', sorted(m for m in ('edge_agent', 'pysnmp', 'serial', "
            "'onnxruntime', 'escpos', 'psutil') if m in sys.modules))")
    out = run(python, "-c", code, cwd=tmp, env=env).stdout
    assert out.split()[1].startswith(str(where["site"])) and "LOADED []" in out
    assert "serve" in run(where["bin"] / "edge-hub", "--help", cwd=tmp, env=env).stdout
    version = run(where["bin"] / "edge-hub", "--version", cwd=tmp, env=env).stdout
    assert version.startswith("edge-hub 0.1.0\n") and "paho-mqtt " in version
    # It runs: a worker on its embedded broker says READY, stops on SIGTERM with exit 0.
    port = free_port()
    with open(tmp_path / "hub.out", "wb") as out_file, open(tmp_path / "hub.err", "wb") as err:
        proc = subprocess.Popen([where["bin"] / "edge-hub", "serve", "--embedded-broker",
                                 "--broker", f"127.0.0.1:{port}", "--db",
                                 tmp_path / "hub.db"], cwd=tmp, env=env, stdout=out_file,
                                stderr=err)
    try:
        wait_until(lambda: (tmp_path / "hub.out").read_text().startswith("READY edge-hub"),
                   60, "the installed hub's READY line",
                   gone=lambda: proc.poll() is not None and f"exited {proc.poll()}",
                   detail=lambda: (tmp_path / "hub.err").read_text()[-3000:])
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, (tmp_path / "hub.err").read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_the_hub_run_from_the_agents_install_names_the_extra_it_needs(installed):
    """The hub's embedded broker from the agent's install (no amqtt): one line naming the
    extra, no traceback."""
    hub = subprocess.run([installed["bin"] / "edge-hub", "serve", "--embedded-broker",
                          "--broker", f"127.0.0.1:{free_port()}", "--db",
                          installed["tmp"] / "agent-side-hub.db"], capture_output=True,
                         text=True, cwd=installed["tmp"], env=installed["env"], timeout=60)
    assert hub.returncode == 1 and "Traceback" not in hub.stderr, hub.stderr
    assert "amqtt" in hub.stderr
    assert "pip install 'retail-edge[hub]'" in hub.stderr


def test_the_bundled_example_config_checks_out_from_the_installed_package(installed):
    example = installed["site"] / "edge_agent" / "defaults" / "agent.example.toml"
    out = run(installed["bin"] / "edge-agent", "check-config", example, cwd=installed["tmp"],
              env=installed["env"]).stdout
    assert ": ok" in out


def test_model_info_works_from_the_installed_package_when_the_command_exists(installed):
    probe = subprocess.run([installed["bin"] / "edge-agent", "model", "--help"],
                           capture_output=True, text=True, cwd=installed["tmp"],
                           env=installed["env"], timeout=60)
    if probe.returncode != 0:
        pytest.skip("no `model` command on this branch (it comes from branch `health`)")
    out = run(installed["bin"] / "edge-agent", "model", "info", cwd=installed["tmp"],
              env=installed["env"]).stdout
    assert installed["card"]["version"] in out


def test_service_install_from_the_wheel_points_systemd_at_the_venvs_edge_agent(installed):
    image = installed["tmp"] / "image"
    image.mkdir()
    run(installed["bin"] / "edge-agent", "service", "install", "--root", image, "--no-start",
        cwd=installed["tmp"], env=installed["env"])
    unit = (image / "etc/systemd/system/edge-agent.service").read_text()
    assert f"ExecStart={installed['bin'] / 'edge-agent'} run --config /etc/edge-agent/agent.toml" \
        in unit
    config = (image / "etc/edge-agent/agent.toml").read_text()
    assert 'state_dir = "/var/lib/edge-agent"' in config


@pytest.mark.parametrize("case, card_text, expect", [
    ("a card with a version and hash", json.dumps({"version": "2026.11.1", "sha256": "ab" * 32}),
     "model: 2026.11.1 (sha256 abababababab)"),
    ("no card at all", None, "model: no model"),
    ("a card that is not JSON", "{not json", "model: unreadable model card"),
    ("a card without a version", json.dumps({"sha256": "x"}), "model: model card"),
])
def test_version_text_reports_the_model_card(tmp_path, case, card_text, expect):
    from edge_agent.versions import version_text

    card = tmp_path / "device_health.card.json"
    if card_text is not None:
        card.write_text(card_text)
    assert expect in version_text("edge-agent", "9.9", card=card), case


def test_version_does_not_import_the_heavy_libraries():
    code = ("import sys; from edge_agent.cli.main import main; main(['--version']); "
            "heavy = [m for m in ('onnxruntime', 'paho', 'pysnmp', 'escpos', 'psycopg') "
            "if m in sys.modules]; print('HEAVY', heavy)")
    out = run(sys.executable, "-c", code, cwd=ROOT).stdout
    assert "HEAVY []" in out


def test_the_installed_agent_runs_and_an_upgrade_keeps_its_outbox_and_seq(installed):
    """Run the agent from the wheel, reinstall the wheel (an upgrade), run again: state stays."""
    import sqlite3

    tmp, env = installed["tmp"], installed["env"]
    state = tmp / "store-state"
    config = tmp / "store.toml"
    config.write_text(f'[agent]\nstore = "store-0042"\nstate_dir = "{state}"\n\n'
                      '[[devices]]\nid = "register"\nkind = "host"\ninterval = 0.2\n')

    def run_until_rows(more_than: int) -> int:
        proc = subprocess.Popen([installed["bin"] / "edge-agent", "run", "--config", config],
                                cwd=tmp, env=env, stderr=subprocess.PIPE, text=True)
        try:
            wait_until(lambda: last_seq() > more_than, 60, "a commit from the installed agent",
                       interval=0.1, gone=lambda: proc.poll() is not None and
                       f"the agent exited {proc.poll()}: {proc.stderr.read()}")
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stderr.close()
        return last_seq()

    def last_seq() -> int:
        if not (state / "agent.db").exists():
            return 0
        db = sqlite3.connect(f"file:{state / 'agent.db'}?mode=ro", uri=True)
        try:
            row = db.execute("SELECT value FROM meta WHERE key = 'last_seq'").fetchone()
            return int(row[0]) if row else 0
        except sqlite3.OperationalError:  # Not created yet.
            return 0
        finally:
            db.close()

    first = run_until_rows(0)
    rows_before = sqlite3.connect(state / "agent.db").execute(
        "SELECT id FROM outbox ORDER BY seq").fetchall()
    run(sys.executable, "-m", "pip", "--python", installed["bin"] / "python", "install", "-q",
        "--no-deps", "--no-index", "--force-reinstall", installed["wheel"], cwd=tmp, env=env)
    second = run_until_rows(first)
    db = sqlite3.connect(state / "agent.db")
    try:
        ids = db.execute("SELECT id FROM outbox ORDER BY seq").fetchall()
        assert ids[:len(rows_before)] == rows_before  # Nothing sent yet, nothing lost.
        assert second > first
    finally:
        db.close()
