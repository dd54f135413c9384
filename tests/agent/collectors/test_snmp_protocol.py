"""The SNMP printer mapping, without a network: tables of cases and properties over any value."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from pyasn1.type import univ
from pysnmp.proto import rfc1902, rfc1905

from edge_agent.collectors import snmp
from edge_agent.collectors.snmp import oids, protocol
from edge_agent.collectors.snmp.v3 import plain
from edge_agent.collectors.snmp.vendors import vendor_for
from edge_agent.errors import ConfigError
from edge_agent.reading import Reading, utcnow, validate

ERROR_STATES = {
    "an empty value means no error": (b"", []),
    "0x80 in the first octet is lowPaper (bit 0 is the MSB)": (b"\x80\x00", ["lowPaper"]),
    "0x20 is lowToner": (b"\x20", ["lowToner"]),
    "0x01 is serviceRequested": (b"\x01\x00", ["serviceRequested"]),
    "0x80 in the second octet is inputTrayMissing": (b"\x00\x80", ["inputTrayMissing"]),
    "0x02 in the second octet is overduePreventMaint": (b"\x00\x02", ["overduePreventMaint"]),
    "a space (0x20) printed as text is still lowToner": (" ", ["lowToner"]),
    "noPaper and jammed together": (b"\x44", ["noPaper", "jammed"]),
    "every bit set gives all fifteen names": (b"\xff\xff", list(oids.ERROR_BITS)),
}


@pytest.mark.parametrize("value,expected", ERROR_STATES.values(), ids=ERROR_STATES.keys())
def test_error_state_is_decoded_bit_by_bit_from_the_msb_of_the_first_octet(value, expected):
    assert protocol.error_bits(value) == expected


@given(st.binary(max_size=4))
def test_error_state_bit_n_is_set_exactly_when_its_octet_has_it(value):
    names = set(protocol.error_bits(value))
    for n, name in enumerate(oids.ERROR_BITS):
        octet, shift = divmod(n, 8)
        assert (name in names) == (octet < len(value) and bool(value[octet] & (0x80 >> shift)))


LIBRENMS_STATES = {
    "no bits is 0 Normal": ([], 0),
    "lowPaper alone is 1": (["lowPaper"], 1),
    "lowToner alone is 3": (["lowToner"], 3),
    "two warnings are 9": (["lowPaper", "lowToner"], 9),
    "a warning and a critical bit are 10": (["lowToner", "jammed"], 10),
    "second-octet bits are ignored as LibreNMS does": (["inputTrayMissing"], 0),
}


@pytest.mark.parametrize("bits,expected", LIBRENMS_STATES.values(), ids=LIBRENMS_STATES.keys())
def test_librenms_state_of_error_bits_follows_its_table(bits, expected):
    assert protocol.librenms_error_state(bits) == expected


PERCENTS = {
    "a measured level of a known capacity": (50, 200, 25.0),
    "an empty supply is 0 percent, not unknown": (0, 100, 0.0),
    "-1 unrestricted gives no percentage": (-1, 100, None),
    "-2 unknown gives no percentage": (-2, 100, None),
    "-3 some remaining gives no percentage": (-3, 100, None),
    "an unknown capacity gives no percentage": (40, -2, None),
    "a capacity of 0 gives no percentage": (40, 0, None),
    "a level above capacity is capped at 100": (120, 100, 100.0),
}


@pytest.mark.parametrize("level,capacity,expected", PERCENTS.values(), ids=PERCENTS.keys())
def test_supply_percentage_only_from_real_amounts(level, capacity, expected):
    assert protocol.percent(level, capacity) == expected


LEVEL_STATES = {
    "-1 means unrestricted": (-1, None, "unrestricted"),
    "-2 means unknown": (-2, None, "unknown"),
    "-3 means some remaining": (-3, None, "some_remaining"),
    "a missing value is unknown": (None, None, "unknown"),
    "0 is a measured empty supply": (0, None, "measured"),
    "Ricoh's -100 means almost empty": (-100, "1.3.6.1.4.1.367.1.1", "low"),
    "-100 from another maker is unknown": (-100, "1.3.6.1.4.1.11.2.3.9.1", "unknown"),
}


@pytest.mark.parametrize("level,object_id,expected", LEVEL_STATES.values(),
                         ids=LEVEL_STATES.keys())
def test_level_state_says_what_a_special_level_means(level, object_id, expected):
    assert protocol.level_state(level, vendor_for(object_id)) == expected


def test_uptime_is_timeticks_in_seconds_modulo_two_to_the_32():
    assert protocol.uptime_seconds(12345) == 123.45
    assert protocol.uptime_seconds(2 ** 32 + 100) == 1.0
    assert protocol.uptime_seconds(b"12") is None


@given(st.integers(0, 2 ** 32 - 1), st.floats(0, 86400))
def test_uptime_that_wrapped_in_time_is_not_a_reboot(before, elapsed):
    after = (before + int(elapsed * 100)) % 2 ** 32
    assert not protocol.rebooted(before, after, elapsed)


@given(st.integers(10 ** 6, 2 ** 31), st.integers(0, 10 ** 5), st.floats(0, 600))
def test_uptime_that_went_back_without_a_wrap_is_a_reboot(before, after, elapsed):
    assert protocol.rebooted(before, after, elapsed)


TEXTS = {
    "UTF-8 bytes decode (Ricoh's Chinese supply names)": (bytes.fromhex("E9BB91E889B2E7A2B3E7B289"),
                                                         "黑色碳粉"),
    "bytes that are not UTF-8 decode as Latin-1": (b"Caf\xe9", "Café"),
    "trailing NULs and line breaks are dropped": (b"Tray 1\r\n\x00\x00", "Tray 1"),
    "an empty value is absent": (b"", None),
    "a number is shown as text": (42, "42"),
    "a missing value is absent": (None, None),
}


@pytest.mark.parametrize("value,expected", TEXTS.values(), ids=TEXTS.keys())
def test_text_values_are_decoded_and_cleaned(value, expected):
    assert protocol.as_text(value) == expected


def test_rows_are_named_by_their_last_index_unless_two_share_it():
    assert protocol.row_keys(["1.1", "1.2"]) == (("1.1", "1"), ("1.2", "2"))
    assert protocol.row_keys(["1.1", "2.1"]) == (("1.1", "1_1"), ("2.1", "2_1"))


# ------------------------------------------------------------ every SNMP type at every OID

def _snmp_values():
    """Every kind of value a printer (or a broken agent) may answer, as pysnmp objects."""
    return st.one_of(
        st.integers(-2 ** 31, 2 ** 31 - 1).map(rfc1902.Integer32),
        st.binary(max_size=40).map(rfc1902.OctetString),
        st.text(max_size=40).map(lambda t: rfc1902.OctetString(t.encode("utf-8"))),
        st.integers(0, 2 ** 32 - 1).map(rfc1902.Counter32),
        st.integers(0, 2 ** 32 - 1).map(rfc1902.Gauge32),
        st.integers(0, 2 ** 32 - 1).map(rfc1902.TimeTicks),
        st.integers(0, 2 ** 64 - 1).map(rfc1902.Counter64),
        st.lists(st.integers(0, 2 ** 31), min_size=2, max_size=12).map(
            lambda parts: rfc1902.ObjectName([1, 3] + parts)),
        st.binary(min_size=4, max_size=4).map(rfc1902.IpAddress),
        st.just(univ.Null("")),
        st.just(rfc1905.noSuchObject),
        st.just(rfc1905.noSuchInstance),
        st.just(rfc1905.endOfMibView),
        st.none(),
    )


ROW_COLUMNS = (oids.PRT_SUPPLY_CLASS, oids.PRT_SUPPLY_TYPE, oids.PRT_SUPPLY_DESCRIPTION,
               oids.PRT_SUPPLY_UNIT, oids.PRT_SUPPLY_MAX_CAPACITY, oids.PRT_SUPPLY_LEVEL,
               oids.PRT_INPUT_MAX_CAPACITY, oids.PRT_INPUT_CURRENT_LEVEL, oids.PRT_INPUT_STATUS,
               oids.PRT_INPUT_NAME, oids.PRT_INPUT_DESCRIPTION, oids.PRT_INPUT_MEDIA_NAME,
               oids.PRT_MARKER_LIFE_COUNT, oids.PRT_COVER_STATUS, oids.PRT_GENERAL_SERIAL,
               oids.PRT_ALERT_SEVERITY, oids.PRT_ALERT_CODE, oids.PRT_ALERT_DESCRIPTION)
HR_COLUMNS = (oids.HR_DEVICE_DESCR, oids.HR_DEVICE_STATUS, oids.HR_PRINTER_STATUS,
              oids.HR_PRINTER_ERROR_STATE)


HR_INDEXES = ("1", "2", "7")
ROW_SUFFIXES = ("1.1", "1.2", "1.3", "2.1", "1.10")
CANDIDATES = (list(oids.IDENTITY) + [f"{c}.{i}" for c in HR_COLUMNS for i in HR_INDEXES]
              + [f"{c}.{s}" for c in ROW_COLUMNS for s in ROW_SUFFIXES])


def printers():
    """A raw view of a printer: OIDs the mapping reads, each with any value, converted by plain."""
    return st.dictionaries(st.sampled_from(CANDIDATES), _snmp_values().map(plain), max_size=40)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(printers())
def test_any_snmp_values_map_to_a_valid_reading_without_an_exception(raw):
    layout = protocol.learn(raw)
    values = protocol.reading(raw, layout)
    values.update(protocol.alerts(raw))
    reading = Reading("printer", "snmp", utcnow(), values)
    assert validate(reading) == []
    assert values["device.status"] in ("ok", "warning", "error", "unknown")
    Reading.from_json(reading.to_json())  # it survives its own wire form


@given(_snmp_values())
def test_plain_turns_every_snmp_type_into_int_bytes_oid_text_or_none(value):
    out = plain(value)
    assert out is None or isinstance(out, (int, bytes, str))
    if isinstance(value, univ.Null) or value is None:
        assert out is None


# ------------------------------------------------------------ probe URLs

URLS = {
    "community and port from the URL": (
        "snmp://shop@10.0.0.5:1161", dict(host="10.0.0.5", port=1161, community="shop")),
    "the default port and community": ("snmp://printer.local", dict(port=161, community="public")),
    "v3 from query parameters": (
        "snmp://10.0.0.5?version=3&user=ops&auth=sha&auth_key=secret123&priv=aes"
        "&priv_key=secret456&context=Jetdirect",
        dict(version="3", user="ops", auth="SHA", priv="AES", context="Jetdirect")),
    "timeouts and intervals": ("snmp://h?timeout=0.5&retries=0&supplies_every=3",
                               dict(timeout=0.5, retries=0, supplies_every=3)),
}


@pytest.mark.parametrize("url,expected", URLS.values(), ids=URLS.keys())
def test_probe_url_becomes_the_snmp_table(url, expected):
    config = snmp.config_from_url(urlsplit(url))
    for key, value in expected.items():
        assert getattr(config, key) == value


BAD_URLS = {
    "no host": ("snmp://", "url"),
    "an unknown parameter": ("snmp://h?colour=red", "url.colour"),
    "a version that does not exist": ("snmp://h?version=4", "url.version"),
    "v3 without a user": ("snmp://h?version=3&auth_key=secret123&priv_key=secret456", "url.user"),
    "a v3 key that is too short": ("snmp://h?version=3&user=u&auth_key=short&priv=NONE",
                                   "url.auth_key"),
    "a timeout that is not a number": ("snmp://h?timeout=soon", "url.timeout"),
    "a port out of range": ("snmp://h:99999", "url.port"),
    "a password in place of v3 keys": ("snmp://user:secret@h", "url"),
}


@pytest.mark.parametrize("url,path", BAD_URLS.values(), ids=BAD_URLS.keys())
def test_bad_probe_url_is_refused_naming_the_part(url, path):
    with pytest.raises(ConfigError) as info:
        snmp.config_from_url(urlsplit(url))
    assert any(p.path == path for p in info.value.problems), info.value.problems


@given(st.text(max_size=60))
def test_any_probe_url_gives_a_device_or_a_config_error(text):
    from edge_agent.collectors import device_from_url

    try:
        device_from_url("snmp://" + text)
    except ConfigError:
        pass


def test_the_package_imports_nothing_heavy():
    import subprocess
    import sys

    code = ("import sys, edge_agent.collectors.snmp, edge_agent.collectors.snmp.protocol;"
            "print(','.join(m for m in ('pysnmp', 'pyasn1') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == ""
