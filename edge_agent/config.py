"""The agent's config: TOML into frozen dataclasses, every mistake reported with its key path.

Defaults live here, in one place; agent.example.toml documents every key and a test keeps the two
from drifting. Each device names a collector (`kind`) and may carry a table of that collector's
own settings named after it (`[devices.escpos]`), whose dataclass lives in the collector's folder.
"""

from __future__ import annotations

import dataclasses
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

from edge_agent import collectors
from edge_agent.configschema import join, load, setting
from edge_agent.errors import ConfigError, Problem

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:\-]{0,63}\Z")


def check_id(value: str) -> str | None:
    """Return why a store, region or device id is not usable in MQTT topics, or None."""
    if not _ID.match(value):
        return ("must be 1-64 characters of letters, digits, '_', '.', ':' or '-', "
                "starting with a letter or digit")
    return None


def check_state_dir(value: str) -> str | None:
    """Return why a state_dir cannot be used, from its text alone (the folder is checked later)."""
    from edge_agent.state.dirs import check_value

    return check_value(value)


@dataclass(frozen=True)
class AgentSection:
    """Who this agent is and where it keeps its state."""

    store: str = setting(doc="Store id, unique in the chain; used in MQTT topics.",
                         check=check_id, example="store-0001")
    region: str = setting("default", doc="Region the store belongs to; routes its alerts.",
                          check=check_id)
    state_dir: str = setting("/var/lib/edge-agent",
                             doc="Folder of the state database (outbox, device state, windows); "
                                 "never the root of the file system.",
                             check=check_state_dir)
    log_level: str = setting("info", doc="Least severe log level written.",
                             choices=("debug", "info", "warning", "error"))


def _check_prefix(value: str) -> str | None:
    if not value or value.startswith("/") or value.endswith("/") or any(c in value for c in "+#"):
        return "must be a topic prefix such as edge/v1 (no leading or trailing '/', no + or #)"
    return None


@dataclass(frozen=True)
class SyncSection:
    """How the agent syncs its outbox with the hub over MQTT v5 (TLS, client certificate)."""

    enabled: bool = setting(False, doc="Sync the outbox with the hub.")
    host: str = setting("", doc="Broker host name or address; required when enabled.")
    port: int = setting(8883, doc="Broker port.", min=1, max=65535)
    tls: bool = setting(True, doc="Use TLS with a client certificate (false only for tests).")
    tls_ca: str = setting("", doc="CA bundle that signed the broker's certificate; "
                                  "empty uses the system's CAs.")
    tls_cert: str = setting("", doc="This store's client certificate (PEM).")
    tls_key: str = setting("", doc="This store's private key (PEM).")
    mqtt_version: str = setting("5", doc="MQTT version: 5, or 3.1.1 for a broker that speaks "
                                         "only that (the hub's embedded broker).",
                                choices=("5", "3.1.1"))
    keepalive: int = setting(60, doc="Seconds between MQTT keep-alive pings.", min=5, max=3600)
    session_expiry: int = setting(7 * 86400, doc="Seconds the broker keeps this store's session "
                                                 "(its subscriptions) while it is offline.",
                                  min=0, max=4294967295)
    inflight: int = setting(100, doc="Messages published but not yet acknowledged, at most.",
                            min=1, max=1000)
    prefix: str = setting("edge/v1", doc="Topic prefix.", check=_check_prefix)
    wait_for_hub: bool = setting(True, doc="Hold the outbox until the hub says it is online "
                                           "and has answered this connection's birth.")
    connect_timeout: float = setting(10.0, doc="Seconds a connection attempt may take.",
                                     gt=0, max=300)
    reconnect_min: float = setting(1.0, doc="Shortest wait before reconnecting.", gt=0, max=3600)
    reconnect_max: float = setting(120.0, doc="Longest wait before reconnecting.", gt=0,
                                   max=3600)

    def cross_check(self) -> list[tuple[str, str]]:
        """Check keys against each other (configschema.load runs it): [(key, problem)]."""
        problems = []
        if self.enabled and not self.host:
            problems.append(("host", "required when enabled is true"))
        if self.enabled and self.tls:
            problems += [(k, "required when tls is true")
                         for k in ("tls_cert", "tls_key") if not getattr(self, k)]
        if self.reconnect_min > self.reconnect_max:
            problems.append(("reconnect_min", "must be <= reconnect_max"))
        return problems


@dataclass(frozen=True)
class OutboxSection:
    """Budgets of the outbox; past them telemetry is dropped first, alerts and decisions last."""

    max_bytes: int = setting(64 * 1024 * 1024, doc="Bytes the outbox may hold.", min=65536)
    max_age_s: float = setting(7 * 86400.0, doc="Age after which unsent telemetry is dropped.",
                               gt=0)


@dataclass(frozen=True)
class TelemetrySection:
    """How readings are batched into telemetry envelopes."""

    flush_interval: float = setting(1.0, doc="Seconds between commits of buffered readings.",
                                    gt=0, max=3600)
    batch_max: int = setting(200, doc="Readings in one telemetry envelope at most.",
                             min=1, max=10000)
    buffer_max: int = setting(5000, doc="Readings held in memory before the oldest is dropped.",
                              min=10, max=1_000_000)


def _check_hours(value: str) -> str | None:
    from edge_agent.health.policy import parse_hours

    try:
        parse_hours(value)
    except ValueError as err:
        return str(err)
    return None


def _check_zone(value: str) -> str | None:
    if not value:
        return None
    try:
        import zoneinfo

        zoneinfo.ZoneInfo(value)
    except (ImportError, ValueError, OSError, KeyError):
        return f"unknown time zone {value!r}"
    except Exception:  # zoneinfo.ZoneInfoNotFoundError and friends
        return f"unknown time zone {value!r}"
    return None


def _esc(default: float, what: str) -> Any:
    return setting(default, doc=f"Seconds {what} must last in trading hours before it is "
                                "escalated to the region; 0 never escalates it.", min=0)


@dataclass(frozen=True)
class EscalateSection:
    """`[scoring.escalate]`: when attention alerts reach the region (docs/alerts.md)."""

    paper_out: float = _esc(900.0, "paper out")
    paper_near_end: float = _esc(0.0, "paper near its end")
    cover_open: float = _esc(900.0, "an open cover")
    paper_jam: float = _esc(900.0, "a paper jam")
    cutter_error: float = _esc(0.0, "a recoverable cutter error")
    toner_low: float = _esc(0.0, "low toner")
    toner_empty: float = _esc(14400.0, "empty toner")
    waste_full: float = _esc(3600.0, "a full waste box")
    drawer_open: float = _esc(1800.0, "an open cash drawer")
    scanner_disconnected: float = _esc(1800.0, "an unplugged scanner")
    disk_full: float = _esc(3600.0, "a full disk")
    offline: float = _esc(0.0, "no answer (failed_after makes it a failure instead)")


@dataclass(frozen=True)
class ScoringSection:
    """Health scoring on the device: the model, how often it runs, and its thresholds."""

    enabled: bool = setting(True, doc="Score devices' failure risk with the health model.")
    model: str = setting("", doc="Path of the ONNX model (its card beside it); "
                                 "empty means the model shipped with the agent.")
    interval: float = setting(60.0, doc="Seconds between scoring cycles.", gt=0, max=86400)
    error_report_every: float = setting(
        300.0, doc="Seconds between two scoring_errors events while devices keep going without a "
                   "model score (the first errors after a quiet spell are sent at once).",
        min=0, max=86400)
    threshold: float = setting(0.0, doc="Score at or above which a device is predicted to "
                                        "fail; 0 means the model card's.", min=0, max=1)
    watch: float = setting(0.0, doc="Score at or above which a device is watched; 0 means the "
                                    "model card's.", min=0, max=1)
    hysteresis: float = setting(0.05, doc="How far below a threshold the score must fall to "
                                          "leave its level (no flapping).", min=0, max=0.5)
    failed_after: float = setting(3600.0, doc="Seconds without an answer after which a device "
                                              "counts as failed (asleep is not failed).", gt=0)
    offline_after: float = setting(300.0, doc="Seconds without an answer before an 'offline' "
                                               "alert is raised.", min=0)
    hold: float = setting(86400.0, doc="Seconds the score must stay below a watch or "
                                       "predicted_failure level before the decision steps down "
                                       "(one episode, one alert).",
                          min=0)
    explain: int = setting(3, doc="Contributing features named in each decision.",
                           min=0, max=40)
    clear: float = setting(0.0, doc="Score under which a predicted_failure starts to clear "
                                    "(it clears after `hold` seconds under it); 0 means the "
                                    "watch level.", min=0, max=1)
    mech_polls: int = setting(3, doc="Consecutive polls an autocutter or mechanical error must "
                                     "last before the device counts as failed (a recoverable "
                                     "error that clears sooner is attention, not failure).",
                              min=1, max=1000)
    trading_hours: str = setting("07:00-22:00", doc="Store trading hours, local time, HH:MM-HH:MM: "
                                                    "attention alerts escalate only within them.",
                                 check=_check_hours)
    timezone: str = setting("", doc="IANA time zone of the store for trading hours, such as "
                                    "Europe/Paris; empty means the system's.",
                            check=_check_zone)
    escalate: EscalateSection = setting(EscalateSection(),
                                        doc="Seconds each attention alert must persist during "
                                            "trading hours before the region sees it; 0 never.")


def _check_hub_keys(value: tuple[str, ...]) -> str | None:
    from edge_protocol import signing
    from edge_protocol.errors import SignatureError

    if len(value) > 8:
        return "at most 8 keys"
    for i, text in enumerate(value):
        try:
            signing.public_from_text(text)
        except SignatureError as err:
            return f"key {i + 1}: {err.detail or err.code} (paste what `edge-hub keys show` prints)"
    return None


@dataclass(frozen=True)
class TrustSection:
    """The hub's public keys this agent trusts for commands, flags and bundles (pinned)."""

    hub_keys: tuple[str, ...] = setting((), doc="Hub Ed25519 public keys (base64), as "
                                                "`edge-hub keys show` prints them.",
                                        check=_check_hub_keys)


_HOURS = re.compile(r"([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-4]):([0-5]\d)\Z")


def _check_hours(value: str) -> str | None:
    if value and not _HOURS.match(value):
        return 'expected HH:MM-HH:MM in local time, such as "08:00-21:00", or ""'
    return None


@dataclass(frozen=True)
class ControlSection:
    """Signed commands and feature flags from the hub (docs/commands.md)."""

    enabled: bool = setting(True, doc="Accept signed commands and flags from the hub "
                                      "(needs [trust].hub_keys).")
    trading_hours: str = setting("", doc="Local HH:MM-HH:MM when the store trades: no test "
                                         "print then unless forced; empty: never trading.",
                                 check=_check_hours)
    rejects_reported_per_hour: int = setting(60, doc="Refused commands reported to the hub "
                                                     "one by one, at most, per hour (all are "
                                                     "counted).", min=0, max=3600)

    def trading(self, minute_of_day: int) -> bool:
        """Whether a local minute of the day (0..1439) is inside the trading hours."""
        m = _HOURS.match(self.trading_hours)
        if not m:
            return False
        start = int(m.group(1)) * 60 + int(m.group(2))
        end = int(m.group(3)) * 60 + int(m.group(4))
        if start <= end:
            return start <= minute_of_day < end
        return minute_of_day >= start or minute_of_day < end  # past midnight


@dataclass(frozen=True)
class DeviceConfig:
    """One device to poll, and how often; the collector's own settings are in `options`."""

    id: str = setting(doc="Device id, unique in this store.", check=check_id,
                      example="receipt-1")
    kind: str = setting(doc="Collector that polls it (host, escpos, snmp, scanner, usb).",
                        example="host")
    interval: float = setting(30.0, doc="Seconds between polls.", gt=0, max=86400)
    timeout: float = setting(5.0, doc="Seconds one poll may take before it counts as a timeout.",
                             gt=0, max=600)
    jitter: float = setting(0.1, doc="Random spread of the interval, as a fraction of it.",
                            min=0, max=0.5)
    max_age: float = setting(0.0, doc="Seconds after which the last good reading is stale; "
                                      "0 means three intervals.", min=0)
    backoff_max: float = setting(300.0, doc="Longest wait between polls of a failing device.",
                                 gt=0)
    enabled: bool = setting(True, doc="Poll this device.")
    options: Any = dataclasses.field(default=None, compare=True)

    @property
    def stale_after(self) -> float:
        """Seconds after which the last good reading is stale (NUT's max_age)."""
        return self.max_age if self.max_age > 0 else 3 * self.interval


@dataclass(frozen=True)
class AgentConfig:
    """The whole agent config."""

    agent: AgentSection
    sync: SyncSection = SyncSection()
    outbox: OutboxSection = OutboxSection()
    telemetry: TelemetrySection = TelemetrySection()
    scoring: ScoringSection = ScoringSection()
    trust: TrustSection = TrustSection()
    control: ControlSection = ControlSection()
    devices: tuple[DeviceConfig, ...] = ()
    source: str = dataclasses.field(default="", compare=False)

    @property
    def state_path(self) -> Path:
        """The state database's path."""
        from edge_agent.state.db import DB_NAME

        return Path(self.agent.state_dir) / DB_NAME

    def device(self, device_id: str) -> DeviceConfig | None:
        """Return the device with this id, or None."""
        return next((d for d in self.devices if d.id == device_id), None)


def load_device(data: Any, path: str, problems: list[Problem]) -> DeviceConfig | None:
    """Build one DeviceConfig, with its collector's table, appending problems."""
    if not isinstance(data, dict):
        problems.append(Problem(path, "expected a table"))
        return None
    names = collectors.names()
    kind = data.get("kind")
    start = len(problems)
    device = load(DeviceConfig, data, path, problems, skip=tuple(names) + ("options",))
    if "options" in data:
        problems.append(Problem(join(path, "options"), "unknown key"))
    for other in names:
        if other in data and other != kind:
            problems.append(Problem(join(path, other),
                                    f"is the table of kind {other!r}, but kind is {kind!r}"))
    if isinstance(kind, str) and kind not in names:
        problems.append(Problem(join(path, "kind"),
                                f"unknown collector {kind!r}; known: {', '.join(names)}"))
        return None
    if not isinstance(kind, str):
        return None
    table = data.get(kind, {})
    if not isinstance(table, dict):
        problems.append(Problem(join(path, kind), "expected a table"))
        return None
    options = load(collectors.get(kind).Config, table, join(path, kind), problems)
    if len(problems) > start or device is None:
        return None
    return dataclasses.replace(device, options=options)


def device_from_url(url: str, **common: object) -> DeviceConfig:
    """Build a DeviceConfig from a probe URL such as `host://` or `snmp://public@10.0.0.5`.

    The collector that handles the URL's scheme builds its own table from the URL; `common`
    sets DeviceConfig fields (id, interval, timeout...). Raises ConfigError naming the problem.
    """
    try:
        parts = urlsplit(url)
    except ValueError as err:  # "Invalid IPv6 URL" for an unbalanced bracket
        raise ConfigError(Problem("url", f"{url!r} is not a URL: {err}")) from err
    if not parts.scheme:
        raise ConfigError(Problem("url", f"{url!r} has no scheme (such as host://)"))
    module = collectors.for_scheme(parts.scheme)
    options = module.config_from_url(parts)
    kind = module.__name__.rsplit(".", 1)[1]
    device = DeviceConfig(id=common.pop("id", None) or kind, kind=kind)
    return dataclasses.replace(device, options=options, **common)


def parse_config(data: dict[str, Any], source: str = "") -> AgentConfig:
    """Build an AgentConfig from parsed TOML; raise ConfigError listing every problem."""
    problems: list[Problem] = []
    config = load(AgentConfig, data, "", problems, skip=("devices", "source"))
    if "source" in data:
        problems.append(Problem("source", "unknown key"))
    raw_devices = data.get("devices", [])
    devices: list[DeviceConfig] = []
    if not isinstance(raw_devices, list):
        problems.append(Problem("devices", "expected an array of tables ([[devices]])"))
        raw_devices = []
    seen: dict[str, int] = {}
    for i, raw in enumerate(raw_devices):
        device = load_device(raw, f"devices[{i}]", problems)
        dev_id = raw.get("id") if isinstance(raw, dict) else None
        if isinstance(dev_id, str):
            if dev_id in seen:
                problems.append(Problem(f"devices[{i}].id",
                                        f"duplicate id {dev_id!r} (also devices[{seen[dev_id]}])"))
            else:
                seen[dev_id] = i
        if device is not None:
            devices.append(device)
    if problems:
        raise ConfigError(problems, source)
    return dataclasses.replace(config, devices=tuple(devices), source=source)


def parse_text(text: str, source: str = "<string>") -> AgentConfig:
    """Parse TOML text into an AgentConfig."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(Problem("", f"not valid TOML: {err}"), source) from err
    except RecursionError as err:
        # tomllib parses nested arrays and inline tables by recursion: 500 levels exhaust it.
        raise ConfigError(Problem("", "not usable TOML: arrays or tables nested too deeply"),
                          source) from err
    return parse_config(data, source)


def load_config(path: str | Path) -> AgentConfig:
    """Read and parse a config file; raise ConfigError naming what is wrong."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise ConfigError(Problem("", f"cannot read {path}: {err.strerror or err}"),
                          str(path)) from err
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(Problem("", f"not UTF-8 text (byte {err.start})"), str(path)) from err
    return parse_text(text, str(path))
