"""The hub's config: TOML into frozen dataclasses, every mistake reported with its key path.

Defaults live here, in one place; hub.example.toml (at the repository root, and a copy in
hub/defaults/ that ships with the package) documents every key with its default, and a test
keeps the three from drifting. `edge-hub check-config FILE` checks a file and names every
mistake by key path (exit 2).

Sections: [broker] (MQTT), [database], [api] (HTTP listener and TLS), [limits] (request size,
rate, list lengths), [ingest], [audit] (checkpoints), [keys] (the hub's signing key), and
[tickets] (the ticket policy, docs/tickets.md: kept here as its raw table, since its parser
lives in the tickets domain above this layer; `hub.ticketing.policy_from_config` parses it with
key paths such as `tickets.families[0].priority`, and check-config and serve call it), and
[approvals], [commands], [rollout] reserved for the work that follows (they accept no keys yet;
a key there is reported as unknown rather than silently ignored).
"""

from __future__ import annotations

import dataclasses
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

from hub.configschema import load, setting
from hub.errors import ConfigError, Problem

EXAMPLE_NAME = "hub.example.toml"
MAX_CONFIG_BYTES = 1 << 20  # a hub config is a page of text; refuse anything far larger


def _check_hostport(value: str) -> str | None:
    """Why a HOST:PORT listener is malformed, or None ('' means off)."""
    if value == "":
        return None
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        return "must be HOST:PORT (such as 127.0.0.1:8443), or empty for no listener"
    return None


def _check_prefix(value: str) -> str | None:
    if not value or value.startswith("/") or value.endswith("/") or any(c in value for c in "+#"):
        return "must be a topic prefix such as edge/v1 (no leading or trailing '/', no + or #)"
    return None


def _check_db(value: str) -> str | None:
    if "://" in value and not value.startswith(("sqlite://", "postgresql://", "postgres://")):
        return "must be a SQLite path, sqlite:///PATH or postgresql://..."
    return None


def _check_topic(value: str) -> str | None:
    if value and (value.startswith("/") or any(c in value for c in "+#\0")):
        return "must be an MQTT topic name (no leading '/', no + or #), or empty"
    return None


@dataclass(frozen=True)
class BrokerSection:
    """The MQTT broker the hub's workers consume from and publish to."""

    host: str = setting("127.0.0.1", doc="Broker host name or address.")
    port: int = setting(1883, doc="Broker port.", min=1, max=65535)
    tls: bool = setting(False, doc="Connect with TLS (and a client certificate when given); "
                                   "not supported by edge-hub serve yet, which refuses it.")
    tls_ca: str = setting("", doc="CA bundle that signed the broker's certificate; "
                                  "empty uses the system's CAs.")
    tls_cert: str = setting("", doc="The hub's client certificate (PEM), if the broker asks.")
    tls_key: str = setting("", doc="The hub's private key (PEM) for tls_cert.")
    username: str = setting("", doc="MQTT user name; empty for none.")
    password_file: str = setting("", doc="File holding the MQTT password (kept out of "
                                         "this config); empty for none.")
    client_id: str = setting("", doc="MQTT client id; each worker needs its own, stable one "
                                     "(empty: edge-hub-HOSTNAME).")
    group: str = setting("hub", doc="Shared subscription group of the hub's workers.")
    prefix: str = setting("edge/v1", doc="Topic prefix.", check=_check_prefix)
    keepalive: int = setting(30, doc="Seconds between MQTT keep-alive pings.", min=5, max=3600)
    embedded: bool = setting(False, doc="Run an embedded MQTT 3.1.1 broker (amqtt) on "
                                        "host:port; one worker, for a single machine.")

    def cross_check(self) -> list[tuple[str, str]]:
        problems = []
        if bool(self.tls_cert) != bool(self.tls_key):
            problems.append(("tls_key" if self.tls_cert else "tls_cert",
                             "tls_cert and tls_key go together"))
        return problems


@dataclass(frozen=True)
class DatabaseSection:
    """The hub database: fleet state, users, the audit log."""

    url: str = setting("", doc="A SQLite path, sqlite:///PATH or postgresql://user@host/db; "
                               "empty: $EDGE_HUB_DB, else ~/.local/state/edge-hub/hub.db.",
                       check=_check_db)


@dataclass(frozen=True)
class ApiSection:
    """The HTTP API listener (edge-hub api, or edge-hub serve alongside ingest)."""

    listen: str = setting("", doc="HOST:PORT the API listens on; empty: no API "
                                  "(edge-hub api --listen and serve --api override it).",
                          check=_check_hostport)
    tls_cert: str = setting("", doc="Server certificate (PEM); with tls_key, the API "
                                    "speaks HTTPS only.")
    tls_key: str = setting("", doc="Private key (PEM) of tls_cert.")
    tls_client_ca: str = setting("", doc="CA of client certificates to require (mutual "
                                         "TLS); empty: no client certificates.")
    public_url: str = setting("", doc="URL clients use to reach the API, written into its "
                                      "OpenAPI description; empty: derived from listen.")
    fleet_cache_s: float = setting(1.0, doc="Seconds the fleet view's per-store states are "
                                            "shared between requests (how stale the fleet "
                                            "summary may be); 0 reads them every time.",
                                   min=0, max=60)

    def cross_check(self) -> list[tuple[str, str]]:
        problems = []
        if bool(self.tls_cert) != bool(self.tls_key):
            problems.append(("tls_key" if self.tls_cert else "tls_cert",
                             "tls_cert and tls_key go together"))
        if self.tls_client_ca and not self.tls_cert:
            problems.append(("tls_client_ca", "needs tls_cert and tls_key"))
        return problems


@dataclass(frozen=True)
class LimitsSection:
    """Bounds on what one caller may ask of the API."""

    max_body_bytes: int = setting(65536, doc="Largest request body accepted; larger is 413.",
                                  min=1024, max=16 * 1024 * 1024)
    rate_per_s: float = setting(20.0, doc="Requests a second one token (or address, before "
                                          "it authenticates) may sustain; more is 429.",
                                gt=0, max=100000)
    rate_burst: int = setting(100, doc="Requests one token may send at once above the rate.",
                              min=1, max=100000)
    rate_clients: int = setting(10000, doc="Callers whose rate is tracked at once (the "
                                           "least recently seen are forgotten first).",
                                min=100, max=10_000_000)
    list_max: int = setting(1000, doc="Rows one list request returns at most (audit list, "
                                      "alerts); ask again with a cursor for more.",
                            min=10, max=100000)
    users_max: int = setting(100000, doc="Users the hub holds at most.", min=1, max=10_000_000)


@dataclass(frozen=True)
class IngestSection:
    """How a worker batches the stores' messages into transactions."""

    batch_max: int = setting(1000, doc="Messages per transaction at most.", min=1, max=100000)
    batch_ms: float = setting(50.0, doc="Longest wait to fill a batch, milliseconds.",
                              gt=0, max=60000)
    flap_max: int = setting(4, doc="An alert with more transitions than this in "
                                   "flap_window is flapping.", min=1, max=1000)
    flap_window: float = setting(300.0, doc="Seconds over which flaps are counted.",
                                 gt=0, max=86400)
    flap_stable: float = setting(60.0, doc="Seconds a flapping alert must be stable before "
                                           "it is sent.", min=0, max=86400)
    hold_stores_after: float = setting(5.0, doc="Seconds a worker may go without committing "
                                                "(its database unreachable) before its hub "
                                                "state says not accepting (reason database), "
                                                "so stores keep their rows rather than fill "
                                                "the broker's bounded queue; online again at "
                                                "its next commit.", gt=0, max=3600)


@dataclass(frozen=True)
class AuditSection:
    """Signed checkpoints of the audit log's head (docs/audit.md)."""

    checkpoint_interval: float = setting(300.0, doc="Seconds between signed checkpoints of "
                                                    "the log's head (when it has grown); 0: "
                                                    "none.", min=0, max=86400)
    checkpoint_file: str = setting("", doc="File the latest checkpoint is written to "
                                           "(outside the database); empty: none.")
    checkpoint_topic: str = setting("", doc="MQTT topic the latest checkpoint is published "
                                            "to, retained; empty: none.",
                                    check=_check_topic)


@dataclass(frozen=True)
class KeysSection:
    """The hub's Ed25519 signing key (signs audit checkpoints, commands, bundles)."""

    directory: str = setting("", doc="Folder of the hub's key ring (edge-hub keys init); "
                                     "empty: ~/.local/state/edge-hub/keys.")
    passphrase_file: str = setting("", doc="File holding the passphrase of the private "
                                           "key; empty: the key is not encrypted.")


@dataclass(frozen=True)
class ApprovalsSection:
    """Reserved for human approvals (issue 13); no keys yet."""


@dataclass(frozen=True)
class CommandsSection:
    """Reserved for signed commands (issue 14); no keys yet."""


@dataclass(frozen=True)
class RolloutSection:
    """Reserved for phased rollouts (issue 14); no keys yet."""


@dataclass(frozen=True)
class LogSection:
    """The hub's log on standard error."""

    format: str = setting("text", doc="Log line format.", choices=("text", "json"))
    level: str = setting("info", doc="Least severe level written.",
                         choices=("debug", "info", "warning", "error"))


@dataclass(frozen=True)
class HubConfig:
    """The whole hub config; every section is optional."""

    broker: BrokerSection = BrokerSection()
    database: DatabaseSection = DatabaseSection()
    api: ApiSection = ApiSection()
    limits: LimitsSection = LimitsSection()
    ingest: IngestSection = IngestSection()
    audit: AuditSection = AuditSection()
    keys: KeysSection = KeysSection()
    log: LogSection = LogSection()
    # The [tickets] policy as its TOML table ({} when absent): free-form here, parsed and
    # checked by hub.domains.tickets.policy.parse (through hub.ticketing.policy_from_config).
    tickets: dict = dataclasses.field(default_factory=dict)
    approvals: ApprovalsSection = ApprovalsSection()
    commands: CommandsSection = CommandsSection()
    rollout: RolloutSection = RolloutSection()
    source: str = dataclasses.field(default="", compare=False)


def parse_config(data: dict[str, Any], source: str = "") -> HubConfig:
    """Build a HubConfig from parsed TOML; raise ConfigError listing every problem."""
    problems: list[Problem] = []
    config = load(HubConfig, data, "", problems, skip=("source", "tickets"))
    if "source" in data:
        problems.append(Problem("source", "unknown key"))
    tickets = data.get("tickets", {})
    if not isinstance(tickets, dict):
        problems.append(Problem("tickets", "expected a table"))
    if problems:
        raise ConfigError(problems, source)
    return dataclasses.replace(config, source=source, tickets=tickets)


def parse_text(text: str, source: str = "<string>") -> HubConfig:
    """Parse TOML text into a HubConfig."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(Problem("", f"not valid TOML: {err}"), source) from err
    except RecursionError as err:  # tomllib recurses once a nesting level (500 deep is enough)
        raise ConfigError(Problem("", "not usable TOML: nested too deeply"), source) from err
    return parse_config(data, source)


def load_config(path: str | Path) -> HubConfig:
    """Read and parse a hub config file; raise ConfigError naming what is wrong."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as err:
        raise ConfigError(Problem("", f"cannot read {path}: {err.strerror or err}"),
                          str(path)) from err
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(Problem("", f"larger than {MAX_CONFIG_BYTES} bytes: not a hub config"),
                          str(path))
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(Problem("", f"not UTF-8 text (byte {err.start})"), str(path)) from err
    return parse_text(text, str(path))


def example_path() -> Path:
    """The example config shipped with the package (a copy of the repository's)."""
    return Path(__file__).resolve().parent / "defaults" / EXAMPLE_NAME


_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:\-]{0,63}\Z")


def check_id(value: str) -> str | None:
    """Why a store, region or user name is not usable (in topics, ACLs, paths), or None."""
    if not isinstance(value, str) or not _ID.match(value):
        return ("must be 1-64 characters of letters, digits, '_', '.', ':' or '-', "
                "starting with a letter or digit")
    return None
