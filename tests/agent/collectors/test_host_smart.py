"""Register disk health from smartctl --json, fans, and what the service sees without them."""

from __future__ import annotations

import asyncio
import json
import os
import stat
from collections import namedtuple

from hypothesis import given
from hypothesis import strategies as st

from conftest import ROOT
from edge_agent.collectors.host import smart
from edge_agent.collectors.host.collector import slowest_fan
from edge_protocol.vocabulary import check_value

FIX = ROOT / "tests" / "fixtures" / "smart"


def test_an_ata_disk_that_is_failing_reports_its_sectors_by_attribute_id():
    values, why = smart.parse_output((FIX / "ata-failing.json").read_bytes(), 8)
    assert why is None  # exit bit 3 "disk failing" is data, not an error
    assert values == {"host.smart.passed": False, "host.smart.reallocated": 412,
                      "host.smart.pending": 24, "host.smart.uncorrectable": 5,
                      "host.smart.crc_errors": 0, "host.smart.power_on_hours": 17511,
                      "host.smart.temp_c": 40.0}
    assert all(check_value(k, v) is None for k, v in values.items())


def test_an_nvme_disk_reports_life_used_and_media_errors():
    values, why = smart.parse_output((FIX / "nvme-ok.json").read_bytes(), 0)
    assert why is None and values["host.smart.percentage_used"] == 7
    assert values["host.smart.media_errors"] == 0 and values["host.smart.passed"] is True


def test_a_disk_smartctl_cannot_open_gives_no_values_and_a_reason():
    out = json.dumps({"smartctl": {"exit_status": 2, "messages": [
        {"string": "Smartctl open device: /dev/sda failed: Permission denied",
         "severity": "error"}]}}).encode()
    values, why = smart.parse_output(out, 2)
    assert values == {} and "Permission denied" in why
    assert smart.parse_output(b"", 1)[0] == {}
    assert "JSON" in smart.parse_output(b"smartctl 6.6 ...", 0)[1]


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
                    lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner),
                    max_leaves=30))
def test_any_json_gives_only_valid_vocabulary_values(data):
    for k, v in smart.smart_values(data).items():
        assert check_value(k, v) is None, (k, v)


def test_the_reader_runs_a_real_program_and_says_once_why_it_cannot(tmp_path):
    fake = tmp_path / "smartctl"
    fake.write_text("#!/bin/sh\ncat %s\nexit 8\n" % (FIX / "ata-failing.json"))
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    reader = smart.SmartReader("/dev/sda", 3600.0, program=str(fake))
    values = asyncio.run(reader.read(0.0))
    assert values["host.smart.reallocated"] == 412
    assert asyncio.run(reader.read(10.0)) == {}  # not due yet; values kept
    assert reader.values["host.smart.passed"] is False
    missing = smart.SmartReader("/dev/sda", 60.0, program=str(tmp_path / "nope"))
    assert asyncio.run(missing.read(0.0)) == {} and "not installed" in missing.why_not


Fan = namedtuple("Fan", "label current")


def test_the_slowest_fan_is_reported_and_a_stopped_one_counts():
    assert slowest_fan({"it87": [Fan("cpu", 2100), Fan("sys", 0)]}) == 0.0
    assert slowest_fan({"x": [Fan("a", 1800), Fan("b", "bad"), Fan("c", 1e9)]}) == 1800.0
    assert slowest_fan({}) is None
