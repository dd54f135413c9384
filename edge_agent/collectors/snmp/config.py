"""The `[devices.snmp]` table: where the printer is, how to authenticate, how often to read what."""

from __future__ import annotations

from dataclasses import dataclass

from edge_agent.configschema import setting
from edge_agent.errors import Problem

AUTH_PROTOCOLS = ("NONE", "MD5", "SHA", "SHA224", "SHA256", "SHA384", "SHA512")
PRIV_PROTOCOLS = ("NONE", "DES", "3DES", "AES", "AES192", "AES256")


def _check_host(host: str) -> str | None:
    if not host or any(c.isspace() for c in host) or "/" in host or "@" in host:
        return f"{host!r} is not a host name or address"
    return None


@dataclass(frozen=True)
class SnmpConfig:
    """One network printer polled over SNMP."""

    host: str = setting(doc="Printer's host name or IP address.", check=_check_host,
                        example="192.0.2.10")
    port: int = setting(161, doc="UDP port of its SNMP agent.", min=1, max=65535)
    version: str = setting("2c", doc="SNMP version: 1, 2c or 3.", choices=("1", "2c", "3"))
    community: str = setting("public", doc="Community string (versions 1 and 2c).")
    user: str = setting("", doc="SNMPv3 user name (version 3).")
    auth: str = setting("SHA", doc="SNMPv3 authentication protocol: NONE, MD5, SHA, SHA224, "
                                   "SHA256, SHA384 or SHA512.", choices=AUTH_PROTOCOLS)
    auth_key: str = setting("", doc="SNMPv3 authentication pass phrase (8 characters or more).")
    priv: str = setting("AES", doc="SNMPv3 privacy protocol: NONE, DES, 3DES, AES, AES192 or "
                                   "AES256.", choices=PRIV_PROTOCOLS)
    priv_key: str = setting("", doc="SNMPv3 privacy pass phrase (8 characters or more).")
    context: str = setting("", doc="SNMPv3 context name; empty for the default context.")
    timeout: float = setting(1.0, doc="Seconds to wait for one SNMP answer before retrying.",
                             gt=0, max=30)
    retries: int = setting(1, doc="Retries of an unanswered SNMP request.", min=0, max=5)
    supplies_every: int = setting(6, doc="Read supplies, trays, the page counter and alerts "
                                         "every this many polls (status is read every poll).",
                                  min=1, max=10000)
    identity_every: int = setting(360, doc="Re-learn identity and table rows every this many "
                                           "polls (also after a reboot); 0 means only at start.",
                                  min=0, max=1000000)


def problems(cfg: SnmpConfig, path: str = "snmp") -> list[Problem]:
    """Return what makes a combination of keys unusable (each key alone is valid)."""
    out = []
    if cfg.version == "3":
        if not cfg.user:
            out.append(Problem(f"{path}.user", "required for SNMP version 3"))
        if cfg.auth != "NONE" and len(cfg.auth_key) < 8:
            out.append(Problem(f"{path}.auth_key", f"needs 8 characters or more with auth "
                                                  f"{cfg.auth} (or set auth = \"NONE\")"))
        if cfg.priv != "NONE":
            if cfg.auth == "NONE":
                out.append(Problem(f"{path}.priv", "privacy needs authentication (auth)"))
            if len(cfg.priv_key) < 8:
                out.append(Problem(f"{path}.priv_key", f"needs 8 characters or more with priv "
                                                      f"{cfg.priv} (or set priv = \"NONE\")"))
    return out
