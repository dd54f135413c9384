"""USB presence from sysfs.

The one mocked part: there is no USB bus on a build machine, so these tests build a fake sysfs
tree (`bus/usb/devices/<bus path>/idVendor`, `idProduct`, `serial`, interface folders with their
tty or printer node) in tmp_path and add or remove devices between polls, exactly as the kernel
does under /sys. The collector reads that tree through its sysfs root (the constructor argument,
or EDGE_AGENT_TEST_SYSFS for the CLI); everything else is the real code.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import pytest

from conftest import agent_env, run_cli
from edge_agent import collectors
from edge_agent.collectors.usb.collector import SYSFS_ENV, UsbCollector
from edge_agent.reading import validate


def plug(root: Path, bus_path: str, vid: str, pid: str, serial: str | None = None,
         node: str | None = None, product: str | None = None) -> Path:
    """Add a USB device to the fake sysfs tree; node is a path under its first interface."""
    folder = root / "bus/usb/devices" / bus_path
    folder.mkdir(parents=True)
    (folder / "idVendor").write_text(vid + "\n")
    (folder / "idProduct").write_text(pid + "\n")
    if serial is not None:
        (folder / "serial").write_text(serial + "\n")
    if product is not None:
        (folder / "product").write_text(product + "\n")
    interface = folder / f"{bus_path}:1.0"
    interface.mkdir()
    if node:
        (interface / node).mkdir(parents=True)
    return folder


def unplug(root: Path, bus_path: str) -> None:
    shutil.rmtree(root / "bus/usb/devices" / bus_path)


def usb_collector(root: Path, url: str = "usb://0c2e:0b61") -> UsbCollector:
    return UsbCollector(collectors.device_from_url(url), sysfs_root=str(root))


def poll_all(collector: UsbCollector, steps) -> list:
    """Open, then for each step run it (it changes the tree) and poll."""
    async def main():
        await collector.open()
        out = []
        for step in steps:
            step()
            out.append(await collector.poll())
        await collector.close()
        return out
    return asyncio.run(main())


NODES = {
    "a cdc-acm scanner shows its ttyACM node": ("tty/ttyACM0", "/dev/ttyACM0"),
    "a usb-serial bridge shows its ttyUSB node": ("ttyUSB0/tty/ttyUSB0", "/dev/ttyUSB0"),
    "a usblp printer shows its usb/lp node": ("usbmisc/lp0", "/dev/usb/lp0"),
    "an older kernel's usb/lp printer node is found too": ("usb/lp1", "/dev/usb/lp1"),
    "a keyboard-wedge scanner has only a hidraw node": ("hidraw/hidraw2", "/dev/hidraw2"),
}


@pytest.mark.parametrize("node,dev", NODES.values(), ids=NODES.keys())
def test_a_present_device_reports_its_node_path_and_serial(node, dev, tmp_path):
    plug(tmp_path, "1-1.2", "0c2e", "0b61", serial="21012B4F52", node=node, product="Xenon 1902")
    (reading,) = poll_all(usb_collector(tmp_path), [lambda: None])
    assert not reading.stale
    assert reading.values["usb.present"] is True
    assert reading.values["usb.node"] == dev
    assert reading.values["usb.path"] == "1-1.2"
    assert reading.values["device.serial"] == "21012B4F52"
    assert reading.values["device.model"] == "Xenon 1902"
    assert reading.values["device.status"] == "ok"
    assert validate(reading) == []


def test_an_absent_device_is_stale_offline_and_says_which_ids_it_looked_for(tmp_path):
    plug(tmp_path, "1-1", "04b8", "0202")  # Another device (an Epson printer) is there.
    (reading,) = poll_all(usb_collector(tmp_path), [lambda: None])
    assert reading.stale and "0c2e:0b61" in reading.reason
    assert reading.values["usb.present"] is False
    assert reading.values["usb.node"] is None
    assert reading.values["device.status"] == "offline"
    assert validate(reading) == []


def test_removing_and_adding_a_device_between_polls_counts_disconnects_and_connects(tmp_path):
    plug(tmp_path, "1-1", "0c2e", "0b61", node="tty/ttyACM0")
    steps = [lambda: None,
             lambda: unplug(tmp_path, "1-1"),
             lambda: plug(tmp_path, "1-2", "0c2e", "0b61", node="tty/ttyACM1"),
             lambda: None]
    readings = poll_all(usb_collector(tmp_path), steps)
    counts = [(r.values["usb.present"], r.values["usb.connects"], r.values["usb.disconnects"])
              for r in readings]
    # Present at start is the baseline, not a connect; moved to another port: a new node.
    assert counts == [(True, 0, 0), (False, 0, 1), (True, 1, 1), (True, 1, 1)]
    assert readings[2].values["usb.node"] == "/dev/ttyACM1"
    assert readings[2].values["usb.path"] == "1-2"


def test_a_device_plugged_after_start_counts_as_a_connect(tmp_path):
    (tmp_path / "bus/usb/devices").mkdir(parents=True)
    readings = poll_all(usb_collector(tmp_path),
                        [lambda: None, lambda: plug(tmp_path, "2-1", "0c2e", "0b61")])
    assert [r.values["usb.connects"] for r in readings] == [0, 1]
    assert [r.stale for r in readings] == [True, False]


MATCHES = {
    "any product of the vendor matches when no product id is set": ("usb://0c2e", True),
    "another product id does not match": ("usb://0c2e:1234", False),
    "the configured serial matches": ("usb://0c2e:0b61?serial=ABC", True),
    "another serial does not match": ("usb://0c2e:0b61?serial=XYZ", False),
    "ids match in upper case too": ("usb://0C2E:0B61", True),
}


@pytest.mark.parametrize("url,present", MATCHES.values(), ids=MATCHES.keys())
def test_which_devices_match_the_configured_ids(url, present, tmp_path):
    plug(tmp_path, "1-1", "0c2e", "0b61", serial="ABC")
    (reading,) = poll_all(usb_collector(tmp_path, url), [lambda: None])
    assert reading.values["usb.present"] is present


def test_unreadable_or_garbage_sysfs_attributes_never_crash_a_poll(tmp_path):
    folder = plug(tmp_path, "1-1", "0c2e", "0b61")
    (folder / "serial").write_bytes(b"\xff\xfe\x00\x07bad")
    (folder / "product").mkdir()  # A folder where a file should be.
    bad = tmp_path / "bus/usb/devices/1-9"
    bad.mkdir()
    (bad / "idVendor").write_bytes(b"\x00" * 64)
    (reading,) = poll_all(usb_collector(tmp_path), [lambda: None])
    assert reading.values["usb.present"] is True
    assert validate(reading) == []


def test_a_missing_sysfs_tree_means_not_present(tmp_path):
    (reading,) = poll_all(usb_collector(tmp_path / "nowhere"), [lambda: None])
    assert reading.stale and reading.values["usb.present"] is False


def test_probe_finds_a_device_in_the_test_sysfs_tree(tmp_path):
    plug(tmp_path, "1-1", "0c2e", "0b61", node="tty/ttyACM0")
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "edge_agent", "probe", "usb://0c2e:0b61",
                           "--json"], capture_output=True, text=True, timeout=60,
                          env=agent_env(**{SYSFS_ENV: str(tmp_path)}))
    assert done.returncode == 0, done.stderr
    reading = json.loads(done.stdout)
    assert reading["values"]["usb.node"] == "/dev/ttyACM0"


def test_probe_on_this_machine_says_a_usb_device_is_not_present():
    done = run_cli("probe", "usb://0c2e:0b61")
    assert done.returncode == 1
    assert "no USB device 0c2e:0b61" in done.stdout


@pytest.mark.parametrize("url,message", [
    ("usb://", "expected usb://VID:PID"),
    ("usb://12345:0b61", "url.vendor_id"),
    ("usb://0c2e:xyz", "url.product_id"),
    ("usb://0c2e:0b61?colour=red", "url.colour: unknown parameter"),
], ids=["no ids", "a five-digit vendor id", "a non-hex product id", "an unknown parameter"])
def test_probe_rejects_a_bad_usb_url_without_a_traceback(url, message):
    done = run_cli("probe", url)
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr


class UdevEvent(dict):
    """What pyudev hands the observer callback: properties and an action (pyudev is optional)."""

    def __init__(self, action: str, product: str):
        super().__init__(PRODUCT=product)
        self.action = action


def test_udev_events_for_the_configured_ids_are_counted_and_others_ignored():
    from edge_agent.collectors.usb.collector import UdevCounter

    counter = UdevCounter("0c2e", "0b61")
    for action, product in [("add", "c2e/b61/100"), ("remove", "c2e/b61/100"),
                            ("add", "4b8/202/100"), ("bind", "c2e/b61/100"),
                            ("add", "garbage"), ("remove", "")]:
        counter._event(UdevEvent(action, product))
    assert counter.take() == (1, 1)
    assert counter.take() == (0, 0)  # Taken counts are reset for the next poll.


def test_without_pyudev_the_udev_counter_stays_off():
    import importlib.util

    from edge_agent.collectors.usb.collector import UdevCounter

    if importlib.util.find_spec("pyudev") is not None:
        pytest.skip("pyudev is installed here")
    assert UdevCounter("0c2e", "").start() is False
